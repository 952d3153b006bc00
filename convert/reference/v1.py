"""slim's MobileNetV1 (``nets/mobilenet_v1.py``): layers and the inference graph of an architecture.

Widths are slim's ``depth``: ``max(int(d * alpha), 8)``. ``mobilenet_v1`` re-enters its ``MobilenetV1``
variable scope object inside itself for ``mobilenet_v1_base``, which opens a second name scope, so the ops
of the base network sit under ``MobilenetV1/MobilenetV1/<layer>/`` (``Conv2D``, ``depthwise``,
``BatchNorm/FusedBatchNorm``, ``Relu6``) while their variables are ``MobilenetV1/<layer>/weights`` etc. The
head ops are under ``MobilenetV1/Logits/`` (``AvgPool_1a/AvgPool``, ``Dropout_1b/Identity``,
``Conv2d_1c_1x1/{Conv2D,BiasAdd}``, ``SpatialSqueeze``) and the softmax under ``MobilenetV1/Predictions/``.
The average pool's kernel is slim's ``_reduced_kernel_size_for_small_input``: ``[min(h, 7), min(w, 7)]``
(with slim's default stride 2), a global pool whenever the last feature map is at most 7x7.

A backbone (no classes) is ``mobilenet_v1_base`` called directly (as the Object Detection API does: no
doubled name scope) followed by the same ``Logits/AvgPool_1a`` pool, what ``mobilenet_v1`` returns for
``num_classes=0``.
"""
from __future__ import annotations

from .ops import Ops
from .slim import HEAD_SCOPE, Layer, classifier_endpoints

NAME = "MobilenetV1"
MIN_DEPTH = 8
# slim's _CONV_DEFS: (layer id, stride, output channels before alpha); layer 0 is the full 3x3 conv,
# layers 1..13 are depthwise-separable (the stride belongs to the depthwise conv).
CONV_DEFS = ((0, 2, 32), (1, 1, 64), (2, 2, 128), (3, 1, 128), (4, 2, 256), (5, 1, 256), (6, 2, 512),
             (7, 1, 512), (8, 1, 512), (9, 1, 512), (10, 1, 512), (11, 1, 512), (12, 2, 1024), (13, 1, 1024))
AVG_POOL_KERNEL = 7  # slim's [7, 7], reduced to the feature map for small inputs
AVG_POOL_STRIDE = 2  # slim.avg_pool2d's default stride


def depth(channels: int, alpha: float) -> int:
    """slim's ``depth``: ``max(int(d * depth_multiplier), min_depth)``."""
    return max(int(channels * alpha), MIN_DEPTH)


def _strides(scope: str) -> dict[str, int]:
    out = {f"{scope}/Conv2d_0": CONV_DEFS[0][1]}
    out.update({f"{scope}/Conv2d_{i}_depthwise": stride for i, stride, _ in CONV_DEFS[1:]})
    return out


def base_ops_scope(arch) -> str:
    """The name scope of the base network's ops: doubled inside ``mobilenet_v1`` (the classifier)."""
    return f"{arch.scope}/{NAME}" if arch.head else arch.scope


def layers(arch) -> list[Layer]:
    """slim's MobileNetV1 conv layers of the architecture, in graph order."""
    scope, alpha = arch.scope, arch.alpha
    first = depth(CONV_DEFS[0][2], alpha)
    out = [Layer(f"{scope}/Conv2d_0", "conv", 3, 3, first)]
    cin = first
    for i, _stride, channels in CONV_DEFS[1:]:
        cout = depth(channels, alpha)
        out.append(Layer(f"{scope}/Conv2d_{i}_depthwise", "depthwise", 3, cin, cin))
        out.append(Layer(f"{scope}/Conv2d_{i}_pointwise", "conv", 1, cin, cout))
        cin = cout
    if arch.head:
        out.append(Layer(f"{scope}/{HEAD_SCOPE}", "head", 1, cin, arch.classes))
    return out


def endpoint_names(arch) -> dict[str, str | None]:
    """Node names of the graph's endpoints: logits, pooled, head conv, softmax."""
    return classifier_endpoints(arch, f"{arch.scope}/Logits/AvgPool_1a/AvgPool", "Logits/SpatialSqueeze")


def graph(ops: Ops, x, arch):
    """slim's MobileNetV1 inference graph on ``x`` (``is_training=False``), with the genuine node names.

    Returns the logits tensor ``MobilenetV1/Logits/SpatialSqueeze`` (a backbone: the pooled features)."""
    tf, scope = ops.tf, arch.scope
    all_layers = layers(arch)
    base, head = (all_layers[:-1], all_layers[-1]) if arch.head else (all_layers, None)
    strides, base_ops = _strides(scope), base_ops_scope(arch)
    net = x
    for layer in base:
        ops_scope = f"{base_ops}/{layer.scope[len(scope) + 1:]}"
        net = ops.conv(net, layer.scope, layer.kind, strides.get(layer.scope, 1), "relu6", ops_scope=ops_scope)

    logits_scope = f"{scope}/Logits"
    kernel = [min(int(d), AVG_POOL_KERNEL) if d is not None else AVG_POOL_KERNEL for d in net.shape[1:3]]
    with ops.scope(f"{logits_scope}/AvgPool_1a"):
        net = tf.nn.avg_pool2d(net, [1, *kernel, 1], [1, AVG_POOL_STRIDE, AVG_POOL_STRIDE, 1], "VALID",
                               name="AvgPool")
    if head is None:
        return net
    net = ops.dropout(net, f"{logits_scope}/Dropout_1b")
    net = ops.conv(net, head.scope, head.kind)
    with ops.scope(logits_scope):
        logits = tf.squeeze(net, [1, 2], name="SpatialSqueeze")
    ops.predictions(logits, scope, arch.classes)
    return logits
