"""MobileNetV1, quantization-aware trained: the 16 ``mobilenet_v1_{alpha}_{rows}_quant.tgz`` archives
(2018_08_02) -> float weights for ``keras.applications.MobileNet``, a fake-quant Keras twin and an 8-bit TFLite.

The checkpoint holds V1's model variables (same scopes as :mod:`.v1`; no EMA shadows) plus the
quantization ranges (``.../min``, ``.../max``); the eval graph folds batch norm and fake-quantizes. The
archive's members are flat (``{stem}.ckpt.*``, ``{stem}.tflite``, ``{stem}_eval.pbtxt``, ``{stem}_frozen.pb``,
``{stem}_info.txt``); the checkpoint, graphs and ``.tflite`` are discovered by suffix.
"""
from __future__ import annotations

import dataclasses

from . import v1
from .base import ArchiveLayout, CheckpointFile, FileNames

STEM = "mobilenet_v1_{alpha}_{rows}_quant"

FAMILY = dataclasses.replace(
    v1.FAMILY, key="v1-quant", title="MobileNetV1 (quantization-aware)", manifest="mobilenet_v1_quant.json",
    layout=ArchiveLayout(
        checkpoints=(CheckpointFile("combined", "*.ckpt", "raw"),),
        reference_graphs=("*_eval.pbtxt", "*.ckpt.meta"),
        frozen="*_frozen.pb", info="*_info.txt", tflite="*.tflite"),
    files=FileNames(stem=STEM, keras_top=f"{STEM}.h5", keras_no_top=f"{STEM}_no_top.h5",
                    twin=f"{STEM}.keras", tflite=f"{STEM}.tflite"),
    float_family="v1", quantized=True,
)
