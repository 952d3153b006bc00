"""slim's MobileNetV3 (``nets/mobilenet/mobilenet_v3.py`` V3_LARGE / V3_SMALL and their ``_MINIMALISTIC``
twins) for the factory: layers and the inference graph.

Widths follow slim's ``_make_divisible`` (multiples of 8, at least 8, the 10 % rule); ``Conv_2`` keeps
1280 (large) / 1024 (small) channels whatever the multiplier (``finegrain_classification_mode``).
Minimalistic variants use 3x3 kernels, no squeeze-excite and ReLU everywhere.
"""
from __future__ import annotations

from ...families.base import make_divisible
from ...families.v3 import SCOPE
from ..spec import Block, CheckpointRecipe, FactoryLayer, FactorySpec
from .ops import Ops

FIRST_CHANNELS = 16
SE_SQUEEZE_FACTOR = 4
# Blocks of slim's conv defs: (expansion factor, output channels before alpha, depthwise kernel, stride,
# squeeze-excite, hard-swish inner activation), three a line. Minimalistic variants drop SE and
# hard-swish and use 3x3 kernels.
BLOCKS = {
    "large": (
        (1, 16, 3, 1, False, False), (4, 24, 3, 2, False, False), (3, 24, 3, 1, False, False),
        (3, 40, 5, 2, True, False), (3, 40, 5, 1, True, False), (3, 40, 5, 1, True, False),
        (6, 80, 3, 2, False, True), (2.5, 80, 3, 1, False, True), (184 / 80.0, 80, 3, 1, False, True),
        (184 / 80.0, 80, 3, 1, False, True), (6, 112, 3, 1, True, True), (6, 112, 3, 1, True, True),
        (6, 160, 5, 2, True, True), (6, 160, 5, 1, True, True), (6, 160, 5, 1, True, True),
    ),
    "small": (
        (1, 16, 3, 2, True, False), (72.0 / 16, 24, 3, 2, False, False), (88.0 / 24, 24, 3, 1, False, False),
        (4, 40, 5, 2, True, True), (6, 40, 5, 1, True, True), (6, 40, 5, 1, True, True),
        (3, 48, 5, 1, True, True), (3, 48, 5, 1, True, True), (6, 96, 5, 2, True, True),
        (6, 96, 5, 1, True, True), (6, 96, 5, 1, True, True),
    ),
}
# (Conv_1 channels before alpha, Conv_2 channels: not scaled, finegrain_classification_mode)
HEAD_CHANNELS = {"large": (960, 1280), "small": (576, 1024)}


def block_scope(block_id: int) -> str:
    return f"{SCOPE}/expanded_conv" + (f"_{block_id}" if block_id else "")


def blocks(variant) -> list[Block]:
    """The variant's ``expanded_conv`` blocks in graph order."""
    if variant.kind not in BLOCKS:
        raise ValueError(f"unknown MobileNetV3 kind {variant.kind!r}; valid: {', '.join(BLOCKS)}")
    alpha, minimal = variant.depth_multiplier, bool(variant.minimalistic)
    cin = make_divisible(FIRST_CHANNELS * alpha)
    out = []
    for block_id, (factor, channels, kernel, stride, se, hswish) in enumerate(BLOCKS[variant.kind]):
        cout = make_divisible(channels * alpha)
        inner = make_divisible(cin * factor)  # slim's expand_input_by_factor
        inner = inner if inner > cin else cin  # slim only expands when that widens the input
        squeeze = make_divisible(inner / SE_SQUEEZE_FACTOR) if se and not minimal else 0
        act = "hard_swish" if hswish and not minimal else "relu"
        out.append(Block(block_scope(block_id), cin, inner, cout, 3 if minimal else kernel, stride, squeeze, act))
        cin = cout
    return out


def head_channels(variant) -> tuple[int, int]:
    """(``Conv_1``, ``Conv_2``) output channels: ``Conv_1`` scales with alpha, ``Conv_2`` does not."""
    conv_1, conv_2 = HEAD_CHANNELS[variant.kind]
    return make_divisible(conv_1 * variant.depth_multiplier), conv_2


def layers(variant) -> list[FactoryLayer]:
    """Every variable-owning slim scope of the variant, in graph order."""
    first = make_divisible(FIRST_CHANNELS * variant.depth_multiplier)
    out = [FactoryLayer(f"{SCOPE}/Conv", "conv", 3, 3, first)]
    bs = blocks(variant)
    for b in bs:
        out += b.layers()
    conv_1, conv_2 = head_channels(variant)
    out.append(FactoryLayer(f"{SCOPE}/Conv_1", "conv", 1, bs[-1].cout, conv_1))
    out.append(FactoryLayer(f"{SCOPE}/Conv_2", "conv_bias", 1, conv_1, conv_2))
    out.append(FactoryLayer(f"{SCOPE}/Logits/Conv2d_1c_1x1", "head", 1, conv_2, variant.classes))
    return out


def graph(ops: Ops, x, variant):
    """slim's MobileNetV3 inference graph on ``x``, with slim's node names (``mobilenet_v3.py``,
    ``conv_blocks.expanded_conv``/``squeeze_excite``, ``mobilenet.mobilenet``). Returns the logits
    (``MobilenetV3/Logits/output``)."""
    outer_act = "relu" if variant.minimalistic else "hard_swish"  # Conv, Conv_1, Conv_2
    net = ops.identity(x, SCOPE, "input")
    net = ops.conv(net, f"{SCOPE}/Conv", "conv", 2, outer_act)
    for b in blocks(variant):
        net = ops.expanded_conv(net, b)
    net = ops.conv(net, f"{SCOPE}/Conv_1", "conv", 1, outer_act)
    net = ops.global_pool(net, f"{SCOPE}/AvgPool2D")  # reduce_to_1x1, inside the base
    net = ops.conv(net, f"{SCOPE}/Conv_2", "conv_bias", 1, outer_act)
    return ops.classify(net, SCOPE, variant.classes)


def forward(tf, x, variant, weight, batch_norm):
    """:func:`graph` with the float ops (inference BN)."""
    return graph(Ops(tf, weight, batch_norm), x, variant)


FACTORY = FactorySpec(layers=layers, forward=forward, graph=graph, checkpoints={
    "ema": CheckpointRecipe(shadows="none", slots=False),  # EMA values under the plain names only
    "pristine": CheckpointRecipe(shadows="all", slots=True),
})
