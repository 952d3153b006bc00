"""A user's checkpoint as a variant description: what :func:`convert.architecture.infer_architecture` read
from the checkpoint, plus what a checkpoint cannot say (the input size, the name, the label offset).

The result is a :class:`convert.manifest.Variant` with ``origin="checkpoint"``: the same record the
catalogue's variants are, so every stage (layer guide, .h5 writer, parity, cards) takes it unchanged; its
file names come from ``--name``, never from a catalogue template.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..architecture import Inferred
from ..errors import UserError
from ..families import FAMILIES
from ..manifest import Variant

DEFAULT_ROWS = 224
MIN_SIZE = 32  # keras.applications' MobileNets refuse inputs smaller than 32 x 32
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class DescriptionError(UserError):
    """Options that contradict the checkpoint or one another, or that keras.applications cannot build."""


@dataclass(frozen=True)
class Options:
    """What the user says of a checkpoint beyond its variables."""

    rows: int | None = None
    cols: int | None = None
    name: str | None = None
    label_offset: int | None = None  # default: 1 for 1001 classes (class 0 is background), else 0


def safe_name(name: str) -> str:
    """A file-name stem from a directory or prefix name (``model.ckpt-5000`` stays as it is)."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "model"
    return cleaned if cleaned[0].isalnum() else f"m{cleaned}"


def describe(inferred: Inferred, options: Options, default_name: str) -> Variant:
    """The variant of a checkpoint: the inferred architecture, sized and named by ``options``."""
    rows = options.rows or DEFAULT_ROWS
    cols = options.cols or rows
    for what, value in (("rows", rows), ("cols", cols)):
        if value < MIN_SIZE:
            raise DescriptionError(f"--input-size: {what} {value} is below {MIN_SIZE}, the smallest input "
                                   f"keras.applications' MobileNets take")
    if inferred.family == "v1" and (rows % 32 or cols % 32):
        raise DescriptionError(
            f"--input-size {rows} x {cols}: keras.applications' MobileNet (V1) pads its stride-2 convs by (0, 1) "
            f"while slim's 'SAME' pads (1, 1) where a feature map is odd, so the two differ at this size; a V1 "
            f"input must be a multiple of 32 in both dimensions (e.g. {max(32, rows // 32 * 32)} x "
            f"{max(32, cols // 32 * 32)}, or 224)")
    name = options.name or safe_name(default_name)
    if not _NAME.match(name):
        raise DescriptionError(f"--name {name!r} is not a file name stem: use letters, digits and . _ + - "
                               f"(starting with a letter or digit)")
    classes = inferred.classes if inferred.head else 1001
    if options.label_offset is None:
        offset = 1 if classes == 1001 else 0
    else:
        offset = options.label_offset
        if not inferred.head:
            raise DescriptionError("--label-offset applies to a model with logits; this checkpoint is a backbone "
                                   f"without {inferred.scope}/Logits")
        if not 0 <= offset < classes:
            raise DescriptionError(f"--label-offset {offset} does not fit the checkpoint's {classes} classes "
                                   f"(logits {inferred.scope}/Logits/Conv2d_1c_1x1): it must be in 0..{classes - 1}")
    family = FAMILIES[inferred.family]
    return Variant(
        family_key=inferred.family, alpha=inferred.alpha, rows=rows, cols=cols if cols != rows else None,
        macs_m=None, params_m=None, top1=None, url="", keras_weights=f"{name}.h5",
        keras_weights_no_top=f"{name}_no_top.h5", kind=inferred.kind,
        minimalistic=inferred.minimalistic if family.keras_app.variant_args else False,
        classes=classes, label_offset=offset, origin="checkpoint", label=name,
        scope_prefix=inferred.prefix.rstrip("/"), has_head=inferred.head)
