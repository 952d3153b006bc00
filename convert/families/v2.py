"""MobileNetV2: the 22 ``mobilenet_v2_{alpha}_{rows}.tgz`` archives -> ``keras.applications.MobileNetV2``.

Slim scopes (under ``MobilenetV2/``): ``Conv``, ``expanded_conv`` (block 0, no expansion),
``expanded_conv_{1..16}`` with ``expand``/``depthwise``/``project``, ``Conv_1``, ``Logits/Conv2d_1c_1x1``.
Widths follow slim's ``_make_divisible`` (multiples of 8, at least 8, the 10 % rule); ``Conv_1`` keeps 1280
channels for alpha <= 1 and scales above 1. The Keras head is a Dense layer: the logits 1x1 conv is
squeezed to ``[C, 1000]``.
"""
from __future__ import annotations

from .base import ArchiveLayout, CheckpointFile, FactoryLayer, Family, GraphNodes, NameRule, make_divisible

SCOPE = "MobilenetV2"
# (expansion factor, output channels before alpha, stride) of slim's V2_DEF, block ids 0..16.
BLOCKS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 64, 2), (6, 64, 1),
          (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2), (6, 160, 1), (6, 160, 1),
          (6, 320, 1))
FIRST_CHANNELS, LAST_CHANNELS = 32, 1280

NAMES = (
    NameRule("Conv", "conv", "Conv1", "bn_Conv1"),
    NameRule("expanded_conv/depthwise", "depthwise", "expanded_conv_depthwise", "expanded_conv_depthwise_BN"),
    NameRule("expanded_conv/project", "conv", "expanded_conv_project", "expanded_conv_project_BN"),
    NameRule("expanded_conv_{block}/expand", "conv", "block_{block}_expand", "block_{block}_expand_BN"),
    NameRule("expanded_conv_{block}/depthwise", "depthwise", "block_{block}_depthwise", "block_{block}_depthwise_BN"),
    NameRule("expanded_conv_{block}/project", "conv", "block_{block}_project", "block_{block}_project_BN"),
    NameRule("Conv_1", "conv", "Conv_1", "Conv_1_bn"),
    NameRule("Logits/Conv2d_1c_1x1", "head", "predictions"),
)


def block_scope(block_id: int) -> str:
    return f"{SCOPE}/expanded_conv" + (f"_{block_id}" if block_id else "")


def factory_layers(variant) -> list[FactoryLayer]:
    """slim's MobileNetV2 conv layers for the variant's width multiplier, in graph order."""
    alpha = variant.depth_multiplier
    first = make_divisible(FIRST_CHANNELS * alpha)
    layers = [FactoryLayer(f"{SCOPE}/Conv", "conv", 3, 3, first)]
    cin = first
    for block_id, (factor, channels, _stride) in enumerate(BLOCKS):
        scope, cout = block_scope(block_id), make_divisible(channels * alpha)
        inner = make_divisible(cin * factor) if factor > 1 else cin
        if inner > cin:
            layers.append(FactoryLayer(f"{scope}/expand", "conv", 1, cin, inner))
        layers.append(FactoryLayer(f"{scope}/depthwise", "depthwise", 3, inner, inner))
        layers.append(FactoryLayer(f"{scope}/project", "conv", 1, inner, cout))
        cin = cout
    last = make_divisible(LAST_CHANNELS * alpha) if alpha > 1.0 else LAST_CHANNELS
    layers.append(FactoryLayer(f"{SCOPE}/Conv_1", "conv", 1, cin, last))
    layers.append(FactoryLayer(f"{SCOPE}/Logits/Conv2d_1c_1x1", "head", 1, last, variant.classes))
    return layers


def forward(tf, x, variant, weight, batch_norm):
    """slim's MobileNetV2 inference graph on ``x``, with the genuine 2018 graph's node names."""
    v1 = tf.compat.v1
    layers = {layer.scope: layer for layer in factory_layers(variant)}
    strides = {f"{block_scope(i)}/depthwise": s for i, (_, _, s) in enumerate(BLOCKS)}
    strides[f"{SCOPE}/Conv"] = 2

    def conv(net, scope: str, relu6: bool = True):
        layer = layers[scope]
        s = strides.get(scope, 1)
        with v1.name_scope(scope + "/"):
            if layer.kind == "depthwise":
                net = tf.nn.depthwise_conv2d(net, weight(f"{scope}/depthwise_weights"), [1, s, s, 1], "SAME",
                                             name="depthwise")
            else:
                net = tf.nn.conv2d(net, weight(f"{scope}/weights"), [1, s, s, 1], "SAME", name="Conv2D")
            if layer.kind == "head":
                return tf.nn.bias_add(net, weight(f"{scope}/biases"), name="BiasAdd")
            net = batch_norm(net, scope)
            return tf.nn.relu6(net, name="Relu6") if relu6 else tf.identity(net, name="Identity")

    with v1.name_scope(f"{SCOPE}/"):
        net = tf.identity(x, name="input")
    net = conv(net, f"{SCOPE}/Conv")
    for block_id in range(len(BLOCKS)):
        scope = block_scope(block_id)
        with v1.name_scope(scope + "/"):
            block_input = net = tf.identity(net, name="input")
        if f"{scope}/expand" in layers:
            net = conv(net, f"{scope}/expand")
            with v1.name_scope(scope + "/"):
                net = tf.identity(net, name="expansion_output")
        net = conv(net, f"{scope}/depthwise")
        with v1.name_scope(scope + "/"):
            net = tf.identity(net, name="depthwise_output")
        net = conv(net, f"{scope}/project", relu6=False)
        with v1.name_scope(scope + "/"):
            if strides[f"{scope}/depthwise"] == 1 and block_input.shape[-1] == net.shape[-1]:
                net = tf.raw_ops.Add(x=net, y=block_input, name="add")  # v1 "Add", as the genuine graph
            net = tf.identity(net, name="output")
    net = conv(net, f"{SCOPE}/Conv_1")
    with v1.name_scope(f"{SCOPE}/"):
        net = tf.identity(net, name="embedding")
    with v1.name_scope(f"{SCOPE}/Logits/"):
        size = int(net.shape[1])  # slim's reduced kernel: the whole final feature map
        net = tf.nn.avg_pool2d(net, [1, size, size, 1], [1, 1, 1, 1], "VALID", name="AvgPool")
        with v1.name_scope(f"{SCOPE}/Logits/Dropout/"):
            net = tf.identity(net, name="Identity")
    net = conv(net, f"{SCOPE}/Logits/Conv2d_1c_1x1")
    with v1.name_scope(f"{SCOPE}/Logits/"):
        net = tf.squeeze(net, [1, 2], name="Squeeze")
        logits = tf.identity(net, name="output")
    with v1.name_scope(f"{SCOPE}/Predictions/"):
        flat = tf.reshape(logits, [-1, variant.classes], name="Reshape")
        probs = tf.nn.softmax(flat, name="Softmax")
        tf.reshape(probs, tf.shape(logits, name="Shape"), name="Reshape_1")
    return logits


def keras_model(variant, include_top: bool, **kwargs):
    import keras

    return keras.applications.MobileNetV2(
        alpha=float(variant.alpha), input_shape=kwargs.pop("input_shape", (variant.rows, variant.rows, 3)), include_top=include_top,
        weights=kwargs.pop("weights", None), classes=variant.classes - variant.label_offset, **kwargs)


def stem(variant) -> str:
    return f"mobilenet_v2_{variant.alpha}_{variant.rows}"


def keras_files(variant) -> tuple[str, str]:
    base = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{variant.alpha}_{variant.rows}"
    return f"{base}.h5", f"{base}_no_top.h5"


def validate(variant) -> str | None:
    quantized = f"quantized_v2_{variant.rows}_{round(float(variant.alpha) * 100)}.tgz"
    if variant.quantized_url.rsplit("/", 1)[-1] != quantized:
        return f"field 'quantized_url' must end in {quantized!r}, got {variant.quantized_url!r}"
    return None


def keras_call(variant) -> str:
    return (f"model = keras.applications.MobileNetV2(alpha={variant.alpha}, input_shape=({variant.rows}, {variant.rows}, 3), "
            f'weights="{keras_files(variant)[0]}")')


FAMILY = Family(
    keras_call=keras_call,
    key="v2", title="MobileNetV2", scope=SCOPE, manifest="mobilenet_v2.json", names=NAMES,
    layout=ArchiveLayout(
        checkpoints=(CheckpointFile("combined", "{stem}.ckpt", "raw", factory_shadows="trainable"),),
        reference_graphs=("{stem}_eval.pbtxt", "{stem}.ckpt.meta"),
        frozen="{stem}_frozen.pb", info="{stem}_info.txt", extra_members=("{stem}.tflite",)),
    nodes=GraphNodes(input="input:0", logits=f"{SCOPE}/Logits/output:0", pooled=f"{SCOPE}/Logits/AvgPool:0",
                     predictions=f"{SCOPE}/Predictions/Reshape_1"),
    keras_model=keras_model, factory_layers=factory_layers, forward=forward,
    alphas=("1.4", "1.3", "1.0", "0.75", "0.5", "0.35"), rows=(224, 192, 160, 128, 96),
    extra_fields={"quantized_url": str, "pixel1_latency_ms": (int, float)},
    stem=stem, keras_files=keras_files, short_name=lambda v: f"{v.alpha}_{v.rows}", validate=validate,
)
