"""What the archive factory knows of a family beyond its :class:`~convert.families.base.Family` data:
the slim conv layers it builds and the TF1 inference graph (both from :mod:`convert.reference`), and which
extra variables each checkpoint of the layout holds. None of this module is read by the conversion path."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..families.base import ArchiveLayout
from ..reference import Architecture, Block, Layer

FactoryLayer = Layer  # one conv layer of the slim graph (graph order): the reference package's record
__all__ = ["Architecture", "Block", "CheckpointRecipe", "FactoryLayer", "FactorySpec", "QuantRecipe",
           "architecture_of"]


def architecture_of(variant) -> Architecture:
    """The reference :class:`~convert.reference.Architecture` of a catalogue variant (a quantization-aware
    variant: its float sibling's graph)."""
    return Architecture(family=variant.family.float_family or variant.family_key, alpha=variant.depth_multiplier,
                        rows=variant.rows, cols=variant.rows, classes=variant.classes, kind=variant.kind,
                        minimalistic=bool(variant.minimalistic))


@dataclass(frozen=True)
class CheckpointRecipe:
    """The training-time variables a factory checkpoint of one layout role holds besides the model's."""

    shadows: str = "trainable"  # which variables carry /ExponentialMovingAverage shadows: trainable|all|none
    slots: bool = True  # RMSProp slots (and they come with global_step)


@dataclass(frozen=True)
class QuantRecipe:
    """What a quantization-aware (QAT) archive of a family holds beyond its float sibling's graph: the
    contrib.quantize eval graph's extras and how its ``.tflite`` is converted (as the genuine file)."""

    # where the factory writes each member: the family layout's concrete instance (the family's own layout
    # discovers members by ``*`` patterns, as the genuine names are not all certain), ``tflite`` included
    layout: ArchiveLayout
    # the frozen graph's node the .tflite outputs; None: the family's predictions node (V1: the softmax
    # reshape); V2's genuine model.tflite outputs the logits under a top-level "output" identity
    tflite_output: str | None = None
    output_alias: str | None = None  # a top-level Identity of the logits the quant graph adds ("output")
    # quantized_input_stats (mean, std) of the input: real = (q - mean) / std; the genuine V1/V2 files
    # use (128, 128) (scale 1/128), the genuine v3-small uint8 file (128, 127) (scale 1/127)
    input_stats: tuple[float, float] = (128.0, 128.0)
    # x of the logits conv's kernel and biases: peaked logits as a trained classifier has (see qat.py)
    head_gain: float = 6.0
    # the head naming (:class:`~.graphs.ops.Ops`) of the form "tflite_names": the TF node names Google's
    # .tflite file of the family shows (V1's are slim's own: "slim")
    tflite_naming: str = "slim"


@dataclass(frozen=True)
class FactorySpec:
    """A family's archive builder."""

    # layers(variant) -> list[FactoryLayer] in graph order (every variable-owning slim scope)
    layers: Callable[[Any], list[FactoryLayer]]
    # forward(tf, x, variant, weight, batch_norm) -> logits tensor. Builds slim's inference graph on ``x``
    # with slim's node names (the family's ``nodes`` must exist afterwards, the predictions node too).
    # ``weight(var_name)`` gives the tensor of a model variable (full name); ``batch_norm(x, scope)``
    # applies the BN of a ``conv``/``depthwise`` scope (full scope name).
    forward: Callable[..., Any]
    checkpoints: dict[str, CheckpointRecipe]  # by the role of each CheckpointFile of the family's layout
    # graph(ops, x, variant) -> logits: ``forward`` over any :class:`~.graphs.ops.Ops` (the QAT graph's)
    graph: Callable[..., Any] | None = None
    quant: QuantRecipe | None = None  # set for the quantization-aware families (v1-quant, ...)
