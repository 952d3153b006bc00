"""MobileNetV1: the 16 ``mobilenet_v1_{alpha}_{rows}.tgz`` archives (2018_02_22) -> ``keras.applications.MobileNet``.

Slim scopes (under ``MobilenetV1/``): ``Conv2d_0`` (3x3 conv, stride 2), ``Conv2d_{1..13}_depthwise``
(3x3 depthwise) and ``Conv2d_{1..13}_pointwise`` (1x1 conv), each with BatchNorm and ReLU6, then
``Logits/Conv2d_1c_1x1`` (1x1 conv with biases, 1001 classes). Widths are ``max(int(d * alpha), 8)``
(slim's ``min_depth``; Keras' ``int(d * alpha)`` agrees for every released alpha). The Keras head
``conv_preds`` is a 1x1 Conv2D, so the logits kernel keeps its ``[1, 1, C, classes]`` shape.

Graph names: ``mobilenet_v1`` re-enters its ``MobilenetV1`` variable scope object inside itself for
``mobilenet_v1_base``, which opens a second name scope, so the ops of the base network sit under
``MobilenetV1/MobilenetV1/<layer>/`` (``Conv2D``, ``depthwise``, ``BatchNorm/FusedBatchNorm``, ``Relu6``)
while their variables are ``MobilenetV1/<layer>/weights`` etc. The head ops are under
``MobilenetV1/Logits/`` (``AvgPool_1a/AvgPool``, ``Dropout_1b/Identity``, ``Conv2d_1c_1x1/{Conv2D,BiasAdd}``,
``SpatialSqueeze``) and the softmax under ``MobilenetV1/Predictions/`` (``Reshape``, ``Softmax``, ``Shape``,
``Reshape_1``).
"""
from __future__ import annotations

from .base import ArchiveLayout, CheckpointFile, FactoryLayer, Family, GraphNodes, NameRule

SCOPE = "MobilenetV1"
BASE_OPS = f"{SCOPE}/{SCOPE}"  # name scope of the base network's ops (the re-entered variable scope)
MIN_DEPTH = 8
# slim's _CONV_DEFS: (layer id, stride, output channels before alpha); layer 0 is the full 3x3 conv,
# layers 1..13 are depthwise-separable (the stride belongs to the depthwise conv).
CONV_DEFS = ((0, 2, 32), (1, 1, 64), (2, 2, 128), (3, 1, 128), (4, 2, 256), (5, 1, 256), (6, 2, 512),
             (7, 1, 512), (8, 1, 512), (9, 1, 512), (10, 1, 512), (11, 1, 512), (12, 2, 1024), (13, 1, 1024))
AVG_POOL_KERNEL = 7  # slim's [7, 7], reduced to the feature map for small inputs
AVG_POOL_STRIDE = 2  # slim.avg_pool2d's default stride (irrelevant: the pool covers the whole map)

NAMES = (
    NameRule("Conv2d_0", "conv", "conv1", "conv1_bn"),
    NameRule("Conv2d_{block}_depthwise", "depthwise", "conv_dw_{block}", "conv_dw_{block}_bn"),
    NameRule("Conv2d_{block}_pointwise", "conv", "conv_pw_{block}", "conv_pw_{block}_bn"),
    NameRule("Logits/Conv2d_1c_1x1", "head", "conv_preds", None),
)

# keras.applications.mobilenet's alpha text in the weight file names
KERAS_ALPHA_TEXT = {"1.0": "1_0", "0.75": "7_5", "0.5": "5_0", "0.25": "2_5"}


def depth(channels: int, alpha: float) -> int:
    """slim's ``depth``: ``max(int(d * depth_multiplier), min_depth)``."""
    return max(int(channels * alpha), MIN_DEPTH)


def _strides() -> dict[str, int]:
    out = {f"{SCOPE}/Conv2d_0": CONV_DEFS[0][1]}
    out.update({f"{SCOPE}/Conv2d_{i}_depthwise": stride for i, stride, _ in CONV_DEFS[1:]})
    return out


def factory_layers(variant) -> list[FactoryLayer]:
    """slim's MobileNetV1 conv layers for the variant's width multiplier, in graph order."""
    alpha = variant.depth_multiplier
    first = depth(CONV_DEFS[0][2], alpha)
    layers = [FactoryLayer(f"{SCOPE}/Conv2d_0", "conv", 3, 3, first)]
    cin = first
    for i, _stride, channels in CONV_DEFS[1:]:
        cout = depth(channels, alpha)
        layers.append(FactoryLayer(f"{SCOPE}/Conv2d_{i}_depthwise", "depthwise", 3, cin, cin))
        layers.append(FactoryLayer(f"{SCOPE}/Conv2d_{i}_pointwise", "conv", 1, cin, cout))
        cin = cout
    layers.append(FactoryLayer(f"{SCOPE}/Logits/Conv2d_1c_1x1", "head", 1, cin, variant.classes))
    return layers


def forward(tf, x, variant, weight, batch_norm):
    """slim's MobileNetV1 inference graph on ``x`` (``is_training=False``), with the genuine node names.

    Returns the logits tensor ``MobilenetV1/Logits/SpatialSqueeze``.
    """
    v1 = tf.compat.v1
    layers = factory_layers(variant)
    strides = _strides()
    net = x
    for layer in layers[:-1]:
        local = layer.scope[len(SCOPE) + 1:]
        s = strides.get(layer.scope, 1)
        with v1.name_scope(f"{BASE_OPS}/{local}/"):
            if layer.kind == "depthwise":
                net = tf.nn.depthwise_conv2d(net, weight(f"{layer.scope}/depthwise_weights"), [1, s, s, 1], "SAME",
                                             name="depthwise")
            else:
                net = tf.nn.conv2d(net, weight(f"{layer.scope}/weights"), [1, s, s, 1], "SAME", name="Conv2D")
            net = batch_norm(net, layer.scope)
            net = tf.nn.relu6(net, name="Relu6")

    head = layers[-1]
    logits_scope = f"{SCOPE}/Logits"
    kernel = [min(int(d), AVG_POOL_KERNEL) if d is not None else AVG_POOL_KERNEL for d in net.shape[1:3]]
    with v1.name_scope(f"{logits_scope}/AvgPool_1a/"):
        net = tf.nn.avg_pool2d(net, [1, *kernel, 1], [1, AVG_POOL_STRIDE, AVG_POOL_STRIDE, 1], "VALID",
                               name="AvgPool")
    with v1.name_scope(f"{logits_scope}/Dropout_1b/"):  # slim.dropout at inference: an identity
        net = tf.identity(net, name="Identity")
    with v1.name_scope(f"{head.scope}/"):
        net = tf.nn.conv2d(net, weight(f"{head.scope}/weights"), [1, 1, 1, 1], "SAME", name="Conv2D")
        net = tf.nn.bias_add(net, weight(f"{head.scope}/biases"), name="BiasAdd")
    with v1.name_scope(f"{logits_scope}/"):
        logits = tf.squeeze(net, [1, 2], name="SpatialSqueeze")
    with v1.name_scope(f"{SCOPE}/Predictions/"):  # tf.contrib.layers.softmax(logits, scope="Predictions")
        flat = tf.reshape(logits, [-1, variant.classes], name="Reshape")
        probs = tf.nn.softmax(flat, name="Softmax")
        tf.reshape(probs, tf.shape(logits, name="Shape"), name="Reshape_1")
    return logits


def keras_model(variant, include_top: bool, **kwargs):
    import keras

    return keras.applications.MobileNet(
        alpha=float(variant.alpha), input_shape=kwargs.pop("input_shape", (variant.rows, variant.rows, 3)), include_top=include_top,
        weights=kwargs.pop("weights", None), classes=variant.classes - variant.label_offset, **kwargs)


def stem(variant) -> str:
    return f"mobilenet_v1_{variant.alpha}_{variant.rows}"


def keras_files(variant) -> tuple[str, str]:
    base = f"mobilenet_{KERAS_ALPHA_TEXT[variant.alpha]}_{variant.rows}_tf"
    return f"{base}.h5", f"{base}_no_top.h5"


def keras_call(variant) -> str:
    return (f"model = keras.applications.MobileNet(alpha={variant.alpha}, input_shape=({variant.rows}, {variant.rows}, 3), "
            f'weights="{keras_files(variant)[0]}")')


FAMILY = Family(
    keras_call=keras_call,
    key="v1", title="MobileNetV1", scope=SCOPE, manifest="mobilenet_v1.json", names=NAMES,
    layout=ArchiveLayout(
        # slim's train_image_classifier keeps EMA shadows of every model variable, BN moving statistics too
        checkpoints=(CheckpointFile("combined", "{stem}.ckpt", "raw", factory_shadows="all", factory_slots=True),),
        reference_graphs=("{stem}_eval.pbtxt", "{stem}.ckpt.meta"),
        frozen="{stem}_frozen.pb", info="{stem}_info.txt", extra_members=("{stem}.tflite",)),
    nodes=GraphNodes(input="input:0", logits=f"{SCOPE}/Logits/SpatialSqueeze:0",
                     pooled=f"{SCOPE}/Logits/AvgPool_1a/AvgPool:0", predictions=f"{SCOPE}/Predictions/Reshape_1"),
    keras_model=keras_model, factory_layers=factory_layers, forward=forward,
    reference_rewrites={}, tolerance=1e-4, rewrite_tolerance=1e-4, require_top5=False,
    alphas=("1.0", "0.75", "0.5", "0.25"), rows=(224, 192, 160, 128), extra_fields={},
    stem=stem, keras_files=keras_files, short_name=None, validate=None,
)
