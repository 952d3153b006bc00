"""MobileNetV2, quantization-aware trained: the 22 ``quantized_v2_{rows}_{alpha_percent}.tgz`` archives ->
float weights for ``keras.applications.MobileNetV2``, a fake-quant Keras twin and an 8-bit TFLite.

Same scopes as :mod:`.v2`, plus the quantization ranges. The archive holds one folder
``v2_{rows}_{alpha_percent}/`` with ``model.ckpt-STEP.*``, ``model.tflite`` and the frozen graph; the step and
the member names are not certain, so the checkpoint prefix, the graphs and the ``.tflite`` are discovered by
suffix inside that folder. The catalogue publishes only the float sibling's top-1 for these archives
(``float_sibling_top1`` in the manifest; ``top1`` is null).
"""
from __future__ import annotations

import dataclasses

from . import v2
from .base import ArchiveLayout, CheckpointFile, FileNames

STEM = "quantized_v2_{rows}_{alpha_percent}"
FOLDER = "v2_{rows}_{alpha_percent}"

FAMILY = dataclasses.replace(
    v2.FAMILY, key="v2-quant", title="MobileNetV2 (quantization-aware)", manifest="mobilenet_v2_quant.json",
    layout=ArchiveLayout(
        checkpoints=(CheckpointFile("combined", f"{FOLDER}/*", "raw"),),
        reference_graphs=(f"{FOLDER}/*_eval.pbtxt", f"{FOLDER}/*.meta"),
        frozen=f"{FOLDER}/*.pb", info=None, tflite=f"{FOLDER}/*.tflite"),
    files=FileNames(stem=STEM, keras_top=f"{STEM}.h5", keras_no_top=f"{STEM}_no_top.h5",
                    twin=f"{STEM}.keras", tflite=f"{STEM}.tflite"),
    extra_fields={"float_sibling_top1": (int, float)},
    float_family="v2", quantized=True, nullable_fields=("top1",),
)
