"""MobileNetV3, quantization-aware trained: the three ``v3-{large,small,large-minimalistic}_224_1.0_uint8.tgz``
archives -> float weights for ``keras.applications.MobileNetV3Large`` / ``Small``, a fake-quant Keras twin and
an 8-bit TFLite.

Same scopes as :mod:`.v3`, plus the quantization ranges. Layout as the float archives' without the ``ema/``
folder: ``{stem}/pristine/model.ckpt-STEP.*`` (the step is discovered), ``{stem}/{stem}.pb`` (frozen) and
``{stem}/{stem}.tflite``.
"""
from __future__ import annotations

import dataclasses

from . import v3
from .base import ArchiveLayout, CheckpointFile, FileNames


def check(variant) -> str | None:
    if variant.alpha != "1.0":
        return f"field 'alpha' is {variant.alpha!r}; the uint8 checkpoints exist for alpha 1.0 only"
    return None


STEM = "v3-{kind}{-minimalistic}_{rows}_{alpha}_uint8"

FAMILY = dataclasses.replace(
    v3.FAMILY, key="v3-quant", title="MobileNetV3 (quantization-aware)", manifest="mobilenet_v3_quant.json",
    layout=ArchiveLayout(
        checkpoints=(CheckpointFile("pristine", "{stem}/pristine/*", plain_values="raw"),),
        reference_graphs=("{stem}/pristine/*.meta",),
        frozen="{stem}/*.pb", info=None, tflite="{stem}/*.tflite"),
    files=dataclasses.replace(v3.FAMILY.files, stem=STEM, keras_top=f"{STEM}.h5", keras_no_top=f"{STEM}_no_top.h5",
                              twin=f"{STEM}.keras", tflite=f"{STEM}.tflite"),
    extra_fields={"kind": str, "minimalistic": bool},
    float_family="v3", quantized=True, check=check,
)
