"""slim's MobileNetV2 (``nets/mobilenet/mobilenet_v2.py``) for the factory: layers and the inference graph.

Widths follow slim's ``_make_divisible`` (multiples of 8, at least 8, the 10 % rule); ``Conv_1`` keeps 1280
channels for alpha <= 1 and scales above 1.
"""
from __future__ import annotations

from ...families.base import make_divisible
from ...families.v2 import SCOPE
from ..spec import Block, CheckpointRecipe, FactoryLayer, FactorySpec
from .ops import Ops

# (expansion factor, output channels before alpha, stride) of slim's V2_DEF, block ids 0..16.
BLOCKS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 64, 2), (6, 64, 1),
          (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2), (6, 160, 1), (6, 160, 1),
          (6, 320, 1))
FIRST_CHANNELS, LAST_CHANNELS = 32, 1280


def block_scope(block_id: int) -> str:
    return f"{SCOPE}/expanded_conv" + (f"_{block_id}" if block_id else "")


def blocks(variant) -> list[Block]:
    """The variant's ``expanded_conv`` blocks in graph order."""
    alpha = variant.depth_multiplier
    cin, out = make_divisible(FIRST_CHANNELS * alpha), []
    for block_id, (factor, channels, stride) in enumerate(BLOCKS):
        cout = make_divisible(channels * alpha)
        inner = make_divisible(cin * factor) if factor > 1 else cin
        out.append(Block(block_scope(block_id), cin, inner, cout, 3, stride, 0, "relu6"))
        cin = cout
    return out


def last_channels(variant) -> int:
    alpha = variant.depth_multiplier
    return make_divisible(LAST_CHANNELS * alpha) if alpha > 1.0 else LAST_CHANNELS


def layers(variant) -> list[FactoryLayer]:
    """slim's MobileNetV2 conv layers for the variant's width multiplier, in graph order."""
    out = [FactoryLayer(f"{SCOPE}/Conv", "conv", 3, 3, make_divisible(FIRST_CHANNELS * variant.depth_multiplier))]
    bs = blocks(variant)
    for b in bs:
        out += b.layers()
    last = last_channels(variant)
    out.append(FactoryLayer(f"{SCOPE}/Conv_1", "conv", 1, bs[-1].cout, last))
    out.append(FactoryLayer(f"{SCOPE}/Logits/Conv2d_1c_1x1", "head", 1, last, variant.classes))
    return out


def graph(ops: Ops, x, variant):
    """slim's MobileNetV2 inference graph on ``x``, with the genuine 2018 graph's node names."""
    net = ops.identity(x, SCOPE, "input")
    net = ops.conv(net, f"{SCOPE}/Conv", "conv", 2, "relu6")
    for b in blocks(variant):
        net = ops.expanded_conv(net, b, legacy_add=True)  # v1 "Add", as the genuine graph
    net = ops.conv(net, f"{SCOPE}/Conv_1", "conv", 1, "relu6")
    return ops.classify(net, SCOPE, variant.classes)


def forward(tf, x, variant, weight, batch_norm):
    """:func:`graph` with the float ops (inference BN)."""
    return graph(Ops(tf, weight, batch_norm), x, variant)


FACTORY = FactorySpec(layers=layers, forward=forward, graph=graph,
                      checkpoints={"combined": CheckpointRecipe(shadows="trainable")})
