"""slim's MobileNetV2 (``nets/mobilenet/mobilenet_v2.py``): layers and the inference graph of an architecture.

Widths follow slim's ``_make_divisible`` (multiples of 8, at least 8, the 10 % rule). ``Conv_1``: with
``finegrain_classification_mode`` slim divides its 1280 by alpha when alpha < 1 before the multiplier
scales it back (1280 channels), otherwise ``make_divisible(1280 * alpha)``.

The classifier's tail is ``mobilenet.mobilenet``'s: ``embedding``, ``Logits/AvgPool`` (a global pool),
``Logits/Dropout``, the logits conv, ``Logits/Squeeze`` and ``Logits/output``; a backbone (no classes)
stops after ``Logits/AvgPool``, what ``mobilenet`` returns for ``num_classes=None``.
"""
from __future__ import annotations

from .ops import Ops
from .slim import HEAD_SCOPE, Block, Layer, base_layers, classifier_endpoints, make_divisible

# (expansion factor, output channels before alpha, stride) of slim's V2_DEF, block ids 0..16.
BLOCKS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 64, 2), (6, 64, 1),
          (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2), (6, 160, 1), (6, 160, 1),
          (6, 320, 1))
FIRST_CHANNELS, LAST_CHANNELS = 32, 1280


def block_scope(scope: str, block_id: int) -> str:
    return f"{scope}/expanded_conv" + (f"_{block_id}" if block_id else "")


def blocks(arch) -> list[Block]:
    """The architecture's ``expanded_conv`` blocks in graph order."""
    alpha = arch.alpha
    cin, out = make_divisible(FIRST_CHANNELS * alpha), []
    for block_id, (factor, channels, stride) in enumerate(BLOCKS):
        cout = make_divisible(channels * alpha)
        inner = make_divisible(cin * factor) if factor > 1 else cin
        out.append(Block(block_scope(arch.scope, block_id), cin, inner, cout, 3, stride, 0, "relu6"))
        cin = cout
    return out


def last_channels(arch) -> int:
    """``Conv_1``'s width (see the module doc)."""
    alpha = arch.alpha
    if arch.finegrain and alpha < 1.0:
        return make_divisible(LAST_CHANNELS / alpha * alpha)
    return make_divisible(LAST_CHANNELS * alpha)


def layers(arch) -> list[Layer]:
    """slim's MobileNetV2 conv layers of the architecture, in graph order."""
    scope = arch.scope
    bs = blocks(arch)
    out = base_layers(scope, make_divisible(FIRST_CHANNELS * arch.alpha), bs)
    last = last_channels(arch)
    out.append(Layer(f"{scope}/Conv_1", "conv", 1, bs[-1].cout, last))
    if arch.head:
        out.append(Layer(f"{scope}/{HEAD_SCOPE}", "head", 1, last, arch.classes))
    return out


def endpoint_names(arch) -> dict[str, str | None]:
    """Node names of the graph's endpoints (slim naming): logits, pooled, head conv, softmax."""
    return classifier_endpoints(arch, f"{arch.scope}/Logits/AvgPool")


def graph(ops: Ops, x, arch):
    """slim's MobileNetV2 inference graph on ``x``, with the genuine 2018 graph's node names. Returns the
    logits (a backbone: the pooled features)."""
    scope = arch.scope
    net = ops.identity(x, scope, "input")
    net = ops.conv(net, f"{scope}/Conv", "conv", 2, "relu6")
    for b in blocks(arch):
        net = ops.expanded_conv(net, b, legacy_add=True)  # v1 "Add", as the genuine graph
    net = ops.conv(net, f"{scope}/Conv_1", "conv", 1, "relu6")
    if not arch.head:
        return ops.global_pool(ops.identity(net, scope, "embedding"), f"{scope}/Logits")
    return ops.classify(net, scope, arch.classes)
