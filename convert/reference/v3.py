"""slim's MobileNetV3 (``nets/mobilenet/mobilenet_v3.py`` V3_LARGE / V3_SMALL and their ``_MINIMALISTIC``
twins): layers and the inference graph of an architecture.

Widths follow slim's ``_make_divisible`` (multiples of 8, at least 8, the 10 % rule). ``Conv_2``, the last
entry of the conv defs: ``finegrain_classification_mode`` replaces its multiplier function by the identity,
so it keeps 1280 (large) / 1024 (small) channels whatever the multiplier; without it,
``make_divisible(c * alpha)``. Minimalistic variants use 3x3 kernels, no squeeze-excite and ReLU everywhere.
``reduce_to_1x1`` (the base's ``AvgPool2D``) pools the whole map when it is square, else a 7x7 window.

A backbone (no classes) stops after ``AvgPool2D``: the pooled ``Conv_1`` features, what keras.applications'
no-top model with ``pooling="avg"`` gives (``Conv_2`` belongs to the classifier there).
"""
from __future__ import annotations

from .ops import Ops
from .slim import HEAD_SCOPE, Block, Layer, base_layers, classifier_endpoints, make_divisible

FIRST_CHANNELS = 16
SE_SQUEEZE_FACTOR = 4
REDUCE_DEFAULT_SIZE = 7  # reduce_to_1x1's default_size
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
# (Conv_1 channels, Conv_2 channels), before alpha
HEAD_CHANNELS = {"large": (960, 1280), "small": (576, 1024)}


def block_scope(scope: str, block_id: int) -> str:
    return f"{scope}/expanded_conv" + (f"_{block_id}" if block_id else "")


def blocks(arch) -> list[Block]:
    """The architecture's ``expanded_conv`` blocks in graph order."""
    alpha, minimal = arch.alpha, bool(arch.minimalistic)
    cin = make_divisible(FIRST_CHANNELS * alpha)
    out = []
    for block_id, (factor, channels, kernel, stride, se, hswish) in enumerate(BLOCKS[arch.kind]):
        cout = make_divisible(channels * alpha)
        inner = make_divisible(cin * factor)  # slim's expand_input_by_factor
        inner = inner if inner > cin else cin  # slim only expands when that widens the input
        squeeze = make_divisible(inner / SE_SQUEEZE_FACTOR) if se and not minimal else 0
        act = "hard_swish" if hswish and not minimal else "relu"
        out.append(Block(block_scope(arch.scope, block_id), cin, inner, cout, 3 if minimal else kernel, stride,
                         squeeze, act))
        cin = cout
    return out


def head_channels(arch) -> tuple[int, int]:
    """(``Conv_1``, ``Conv_2``) output channels (see the module doc for ``Conv_2``)."""
    conv_1, conv_2 = HEAD_CHANNELS[arch.kind]
    return make_divisible(conv_1 * arch.alpha), conv_2 if arch.finegrain else make_divisible(conv_2 * arch.alpha)


def layers(arch) -> list[Layer]:
    """Every variable-owning slim scope of the architecture, in graph order."""
    scope = arch.scope
    bs = blocks(arch)
    out = base_layers(scope, make_divisible(FIRST_CHANNELS * arch.alpha), bs)
    conv_1, conv_2 = head_channels(arch)
    out.append(Layer(f"{scope}/Conv_1", "conv", 1, bs[-1].cout, conv_1))
    if arch.head:
        out.append(Layer(f"{scope}/Conv_2", "conv_bias", 1, conv_1, conv_2))
        out.append(Layer(f"{scope}/{HEAD_SCOPE}", "head", 1, conv_2, arch.classes))
    return out


def endpoint_names(arch) -> dict[str, str | None]:
    """Node names of the graph's endpoints (slim naming): logits, pooled, head conv, softmax."""
    return classifier_endpoints(arch, f"{arch.scope}/AvgPool2D/AvgPool")


def _reduce_to_1x1(ops: Ops, net, scope: str):
    h, w = int(net.shape[1]), int(net.shape[2])
    if h == w:
        return ops.global_pool(net, scope)
    with ops.scope(scope):
        k = REDUCE_DEFAULT_SIZE
        return ops.tf.nn.avg_pool2d(net, [1, k, k, 1], [1, 1, 1, 1], "VALID", name="AvgPool")


def graph(ops: Ops, x, arch):
    """slim's MobileNetV3 inference graph on ``x``, with slim's node names (``mobilenet_v3.py``,
    ``conv_blocks.expanded_conv``/``squeeze_excite``, ``mobilenet.mobilenet``). Returns the logits
    (``MobilenetV3/Logits/output``; a backbone: the pooled features)."""
    scope = arch.scope
    outer_act = "relu" if arch.minimalistic else "hard_swish"  # Conv, Conv_1, Conv_2
    net = ops.identity(x, scope, "input")
    net = ops.conv(net, f"{scope}/Conv", "conv", 2, outer_act)
    for b in blocks(arch):
        net = ops.expanded_conv(net, b)
    net = ops.conv(net, f"{scope}/Conv_1", "conv", 1, outer_act)
    net = _reduce_to_1x1(ops, net, f"{scope}/AvgPool2D")  # inside the base
    if not arch.head:
        return net
    net = ops.conv(net, f"{scope}/Conv_2", "conv_bias", 1, outer_act)
    return ops.classify(net, scope, arch.classes)
