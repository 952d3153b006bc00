"""slim's MobileNetV1 (``nets/mobilenet_v1.py``) for the factory: layers and the inference graph.

Widths are ``max(int(d * alpha), 8)`` (slim's ``min_depth``; Keras' ``int(d * alpha)`` agrees for every
released alpha). ``mobilenet_v1`` re-enters its ``MobilenetV1`` variable scope object inside itself for
``mobilenet_v1_base``, which opens a second name scope, so the ops of the base network sit under
``MobilenetV1/MobilenetV1/<layer>/`` (``Conv2D``, ``depthwise``, ``BatchNorm/FusedBatchNorm``, ``Relu6``)
while their variables are ``MobilenetV1/<layer>/weights`` etc. The head ops are under
``MobilenetV1/Logits/`` (``AvgPool_1a/AvgPool``, ``Dropout_1b/Identity``, ``Conv2d_1c_1x1/{Conv2D,BiasAdd}``,
``SpatialSqueeze``) and the softmax under ``MobilenetV1/Predictions/``.
"""
from __future__ import annotations

from ...families.v1 import SCOPE
from ..spec import CheckpointRecipe, FactoryLayer, FactorySpec
from .ops import Ops

BASE_OPS = f"{SCOPE}/{SCOPE}"  # name scope of the base network's ops (the re-entered variable scope)
MIN_DEPTH = 8
# slim's _CONV_DEFS: (layer id, stride, output channels before alpha); layer 0 is the full 3x3 conv,
# layers 1..13 are depthwise-separable (the stride belongs to the depthwise conv).
CONV_DEFS = ((0, 2, 32), (1, 1, 64), (2, 2, 128), (3, 1, 128), (4, 2, 256), (5, 1, 256), (6, 2, 512),
             (7, 1, 512), (8, 1, 512), (9, 1, 512), (10, 1, 512), (11, 1, 512), (12, 2, 1024), (13, 1, 1024))
AVG_POOL_KERNEL = 7  # slim's [7, 7], reduced to the feature map for small inputs
AVG_POOL_STRIDE = 2  # slim.avg_pool2d's default stride (irrelevant: the pool covers the whole map)


def depth(channels: int, alpha: float) -> int:
    """slim's ``depth``: ``max(int(d * depth_multiplier), min_depth)``."""
    return max(int(channels * alpha), MIN_DEPTH)


def _strides() -> dict[str, int]:
    out = {f"{SCOPE}/Conv2d_0": CONV_DEFS[0][1]}
    out.update({f"{SCOPE}/Conv2d_{i}_depthwise": stride for i, stride, _ in CONV_DEFS[1:]})
    return out


def layers(variant) -> list[FactoryLayer]:
    """slim's MobileNetV1 conv layers for the variant's width multiplier, in graph order."""
    alpha = variant.depth_multiplier
    first = depth(CONV_DEFS[0][2], alpha)
    out = [FactoryLayer(f"{SCOPE}/Conv2d_0", "conv", 3, 3, first)]
    cin = first
    for i, _stride, channels in CONV_DEFS[1:]:
        cout = depth(channels, alpha)
        out.append(FactoryLayer(f"{SCOPE}/Conv2d_{i}_depthwise", "depthwise", 3, cin, cin))
        out.append(FactoryLayer(f"{SCOPE}/Conv2d_{i}_pointwise", "conv", 1, cin, cout))
        cin = cout
    out.append(FactoryLayer(f"{SCOPE}/Logits/Conv2d_1c_1x1", "head", 1, cin, variant.classes))
    return out


def graph(ops: Ops, x, variant):
    """slim's MobileNetV1 inference graph on ``x`` (``is_training=False``), with the genuine node names.

    Returns the logits tensor ``MobilenetV1/Logits/SpatialSqueeze``.
    """
    tf = ops.tf
    *base, head = layers(variant)
    strides = _strides()
    net = x
    for layer in base:
        ops_scope = f"{BASE_OPS}/{layer.scope[len(SCOPE) + 1:]}"
        net = ops.conv(net, layer.scope, layer.kind, strides.get(layer.scope, 1), "relu6", ops_scope=ops_scope)

    logits_scope = f"{SCOPE}/Logits"
    kernel = [min(int(d), AVG_POOL_KERNEL) if d is not None else AVG_POOL_KERNEL for d in net.shape[1:3]]
    with ops.scope(f"{logits_scope}/AvgPool_1a"):
        net = tf.nn.avg_pool2d(net, [1, *kernel, 1], [1, AVG_POOL_STRIDE, AVG_POOL_STRIDE, 1], "VALID",
                               name="AvgPool")
    net = ops.dropout(net, f"{logits_scope}/Dropout_1b")
    net = ops.conv(net, head.scope, head.kind)
    with ops.scope(logits_scope):
        logits = tf.squeeze(net, [1, 2], name="SpatialSqueeze")
    ops.predictions(logits, SCOPE, variant.classes)
    return logits


def forward(tf, x, variant, weight, batch_norm):
    """:func:`graph` with the float ops (inference BN)."""
    return graph(Ops(tf, weight, batch_norm), x, variant)


# slim's train_image_classifier keeps EMA shadows of every model variable, BN moving statistics too
FACTORY = FactorySpec(layers=layers, forward=forward, graph=graph,
                      checkpoints={"combined": CheckpointRecipe(shadows="all")})
