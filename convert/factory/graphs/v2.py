"""The factory's MobileNetV2 builder: the reference graph (:mod:`convert.reference.v2`) of a catalogue
variant's architecture, and the checkpoint recipes of the family's archive layout."""
from __future__ import annotations

from ...reference import v2 as reference
from ...reference.build import forward as _forward
from ..spec import CheckpointRecipe, FactorySpec, architecture_of
from .ops import Ops


def layers(variant):
    """slim's MobileNetV2 conv layers of the variant, in graph order."""
    return reference.layers(architecture_of(variant))


def graph(ops: Ops, x, variant):
    """slim's MobileNetV2 inference graph of the variant on ``x`` over ``ops``; returns the logits."""
    return reference.graph(ops, x, architecture_of(variant))


def forward(tf, x, variant, weight, batch_norm):
    """:func:`graph` with the float ops (inference BN)."""
    return _forward(tf, x, architecture_of(variant), weight, batch_norm)


def _spec(checkpoints) -> FactorySpec:
    return FactorySpec(layers=layers, forward=forward, graph=graph, checkpoints=checkpoints)


FACTORY = _spec({"combined": CheckpointRecipe(shadows="trainable")})
