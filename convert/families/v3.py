"""MobileNetV3: the six ``v3-{large,small}[-minimalistic]_224_{alpha}_float.tgz`` archives ->
``keras.applications.MobileNetV3Large`` / ``MobileNetV3Small``.

Slim scopes (under ``MobilenetV3/``, slim ``mobilenet_v3.py`` V3_LARGE / V3_SMALL and their
``_MINIMALISTIC`` twins): ``Conv`` (3x3 stride 2), ``expanded_conv`` (block 0, no expansion),
``expanded_conv_{i}`` with ``expand``/``depthwise``/``project`` and, in squeeze-excite blocks,
``squeeze_excite/Conv`` and ``squeeze_excite/Conv_1`` (1x1 convs with biases, no BatchNorm) between the
depthwise and the projection; ``Conv_1`` (1x1 + BN), the average pool ``AvgPool2D`` inside the base,
``Conv_2`` (1x1 with biases, no BN), then ``Logits/Conv2d_1c_1x1``.

Widths follow slim's ``_make_divisible`` (multiples of 8, at least 8, the 10 % rule). The released
0.75 checkpoints were trained with ``finegrain_classification_mode``: ``Conv_2`` keeps 1280 (large) /
1024 (small) channels whatever the multiplier, as Keras does. Minimalistic variants use 3x3 kernels,
no squeeze-excite and ReLU everywhere.

Slim's squeeze-excite gate is ``relu6(x + 3) * 0.16667``; Keras' hard sigmoid multiplies by ``1/6``. The
``gate_1/6`` reference rewrite swaps that constant so the two graphs compute the same function.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import ArchiveLayout, CheckpointFile, FactoryLayer, Family, GraphNodes, NameRule, make_divisible

SCOPE = "MobilenetV3"
KINDS = ("large", "small")
FIRST_CHANNELS = 16
SE_SQUEEZE_FACTOR = 4
SE_GATE = np.float32(0.16667)  # slim's hard-sigmoid constant in the squeeze-excite gate
KERAS_GATE = np.float32(1.0 / 6.0)  # Keras' (and slim's hard_swish') 1/6

# Blocks of slim's conv defs: (expansion factor, output channels before alpha, depthwise kernel, stride,
# squeeze-excite, hard-swish inner activation). Minimalistic variants drop SE and hard-swish and use 3x3.
LARGE_BLOCKS = (
    (1, 16, 3, 1, False, False),
    (4, 24, 3, 2, False, False),
    (3, 24, 3, 1, False, False),
    (3, 40, 5, 2, True, False),
    (3, 40, 5, 1, True, False),
    (3, 40, 5, 1, True, False),
    (6, 80, 3, 2, False, True),
    (2.5, 80, 3, 1, False, True),
    (184 / 80.0, 80, 3, 1, False, True),
    (184 / 80.0, 80, 3, 1, False, True),
    (6, 112, 3, 1, True, True),
    (6, 112, 3, 1, True, True),
    (6, 160, 5, 2, True, True),
    (6, 160, 5, 1, True, True),
    (6, 160, 5, 1, True, True),
)
SMALL_BLOCKS = (
    (1, 16, 3, 2, True, False),
    (72.0 / 16, 24, 3, 2, False, False),
    (88.0 / 24, 24, 3, 1, False, False),
    (4, 40, 5, 2, True, True),
    (6, 40, 5, 1, True, True),
    (6, 40, 5, 1, True, True),
    (3, 48, 5, 1, True, True),
    (3, 48, 5, 1, True, True),
    (6, 96, 5, 2, True, True),
    (6, 96, 5, 1, True, True),
    (6, 96, 5, 1, True, True),
)
BLOCKS = {"large": LARGE_BLOCKS, "small": SMALL_BLOCKS}
# (Conv_1 channels before alpha, Conv_2 channels: not scaled, finegrain_classification_mode)
HEAD_CHANNELS = {"large": (960, 1280), "small": (576, 1024)}

NAMES = (
    NameRule("Conv", "conv", "conv", "conv_bn"),
    NameRule("expanded_conv/depthwise", "depthwise", "expanded_conv_depthwise", "expanded_conv_depthwise_bn"),
    NameRule("expanded_conv/squeeze_excite/Conv", "conv_bias", "expanded_conv_squeeze_excite_conv"),
    NameRule("expanded_conv/squeeze_excite/Conv_1", "conv_bias", "expanded_conv_squeeze_excite_conv_1"),
    NameRule("expanded_conv/project", "conv", "expanded_conv_project", "expanded_conv_project_bn"),
    NameRule("expanded_conv_{block}/expand", "conv", "expanded_conv_{block}_expand", "expanded_conv_{block}_expand_bn"),
    NameRule("expanded_conv_{block}/depthwise", "depthwise", "expanded_conv_{block}_depthwise",
             "expanded_conv_{block}_depthwise_bn"),
    NameRule("expanded_conv_{block}/squeeze_excite/Conv", "conv_bias", "expanded_conv_{block}_squeeze_excite_conv"),
    NameRule("expanded_conv_{block}/squeeze_excite/Conv_1", "conv_bias",
             "expanded_conv_{block}_squeeze_excite_conv_1"),
    NameRule("expanded_conv_{block}/project", "conv", "expanded_conv_{block}_project",
             "expanded_conv_{block}_project_bn"),
    NameRule("Conv_1", "conv", "conv_1", "conv_1_bn"),
    NameRule("Conv_2", "conv_bias", "conv_2"),
    NameRule("Logits/Conv2d_1c_1x1", "head", "logits"),
)


def block_scope(block_id: int) -> str:
    return f"{SCOPE}/expanded_conv" + (f"_{block_id}" if block_id else "")


@dataclass(frozen=True)
class Block:
    """One ``expanded_conv`` block as slim builds it for a variant."""

    scope: str  # full scope, e.g. "MobilenetV3/expanded_conv_3"
    cin: int
    inner: int  # expansion width (== cin when there is no expand conv)
    cout: int
    kernel: int
    stride: int
    squeeze: int  # squeeze-excite bottleneck width, 0 without squeeze-excite
    hard_swish: bool  # inner activation: hard-swish, else ReLU

    @property
    def expands(self) -> bool:
        return self.inner > self.cin

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.cin == self.cout


def blocks(variant) -> list[Block]:
    """The variant's ``expanded_conv`` blocks in graph order."""
    if variant.kind not in BLOCKS:
        raise ValueError(f"unknown MobileNetV3 kind {variant.kind!r}; valid: {', '.join(KINDS)}")
    alpha, minimal = variant.depth_multiplier, bool(variant.minimalistic)
    cin = make_divisible(FIRST_CHANNELS * alpha)
    out = []
    for block_id, (factor, channels, kernel, stride, se, hswish) in enumerate(BLOCKS[variant.kind]):
        cout = make_divisible(channels * alpha)
        inner = make_divisible(cin * factor)  # slim's expand_input_by_factor
        inner = inner if inner > cin else cin  # slim only expands when that widens the input
        squeeze = make_divisible(inner / SE_SQUEEZE_FACTOR) if se and not minimal else 0
        out.append(Block(block_scope(block_id), cin, inner, cout, 3 if minimal else kernel, stride, squeeze,
                         hswish and not minimal))
        cin = cout
    return out


def head_channels(variant) -> tuple[int, int]:
    """(``Conv_1``, ``Conv_2``) output channels: ``Conv_1`` scales with alpha, ``Conv_2`` does not."""
    conv_1, conv_2 = HEAD_CHANNELS[variant.kind]
    return make_divisible(conv_1 * variant.depth_multiplier), conv_2


def factory_layers(variant) -> list[FactoryLayer]:
    """Every variable-owning slim scope of the variant, in graph order."""
    first = make_divisible(FIRST_CHANNELS * variant.depth_multiplier)
    layers = [FactoryLayer(f"{SCOPE}/Conv", "conv", 3, 3, first)]
    cin = first
    for b in blocks(variant):
        if b.expands:
            layers.append(FactoryLayer(f"{b.scope}/expand", "conv", 1, b.cin, b.inner))
        layers.append(FactoryLayer(f"{b.scope}/depthwise", "depthwise", b.kernel, b.inner, b.inner))
        if b.squeeze:
            layers.append(FactoryLayer(f"{b.scope}/squeeze_excite/Conv", "conv_bias", 1, b.inner, b.squeeze))
            layers.append(FactoryLayer(f"{b.scope}/squeeze_excite/Conv_1", "conv_bias", 1, b.squeeze, b.inner))
        layers.append(FactoryLayer(f"{b.scope}/project", "conv", 1, b.inner, b.cout))
        cin = b.cout
    conv_1, conv_2 = head_channels(variant)
    layers.append(FactoryLayer(f"{SCOPE}/Conv_1", "conv", 1, cin, conv_1))
    layers.append(FactoryLayer(f"{SCOPE}/Conv_2", "conv_bias", 1, conv_1, conv_2))
    layers.append(FactoryLayer(f"{SCOPE}/Logits/Conv2d_1c_1x1", "head", 1, conv_2, variant.classes))
    return layers


# --------------------------------------------------------------------------------------------------
# The graph


def forward(tf, x, variant, weight, batch_norm):
    """slim's MobileNetV3 inference graph on ``x``, with slim's node names (``mobilenet_v3.py``,
    ``conv_blocks.expanded_conv``/``squeeze_excite``, ``mobilenet.mobilenet``). Returns the logits
    (``MobilenetV3/Logits/output``)."""
    v1 = tf.compat.v1
    minimal = bool(variant.minimalistic)
    outer_act = "relu" if minimal else "hard_swish"  # Conv, Conv_1, Conv_2

    def activation(net, scope: str, kind: str | None):
        if kind == "relu":
            return tf.nn.relu(net, name="Relu")
        if kind == "hard_swish":  # slim: x * relu6(x + 3) * (1/6), in a name scope of its own
            with v1.name_scope(f"{scope}/hard_swish/"):
                gate = tf.nn.relu6(tf.math.add(net, np.float32(3.0), name="add"), name="Relu6")
                return tf.math.multiply(tf.math.multiply(net, gate, name="mul"), KERAS_GATE, name="mul_1")
        if kind == "se_gate":  # slim's squeeze-excite gate: relu6(x + 3) * 0.16667
            gate = tf.nn.relu6(tf.math.add(net, np.float32(3.0), name="add"), name="Relu6")
            return tf.math.multiply(gate, tf.constant(SE_GATE, name="mul/y"), name="mul")
        return tf.identity(net, name="Identity")  # the projection's linear activation

    def conv(net, scope: str, kind: str, stride: int = 1, act: str | None = None):
        with v1.name_scope(scope + "/"):
            if kind == "depthwise":
                net = tf.nn.depthwise_conv2d(net, weight(f"{scope}/depthwise_weights"), [1, stride, stride, 1],
                                             "SAME", name="depthwise")
            else:
                net = tf.nn.conv2d(net, weight(f"{scope}/weights"), [1, stride, stride, 1], "SAME", name="Conv2D")
            if kind in ("conv_bias", "head"):
                net = tf.nn.bias_add(net, weight(f"{scope}/biases"), name="BiasAdd")
            else:
                net = batch_norm(net, scope)
            return net if kind == "head" else activation(net, scope, act)

    def global_pool(net, scope: str, name: str):
        with v1.name_scope(scope + "/"):
            h, w = int(net.shape[1]), int(net.shape[2])  # slim's reduced kernel: the whole feature map
            return tf.nn.avg_pool2d(net, [1, h, w, 1], [1, 1, 1, 1], "VALID", name=name)

    with v1.name_scope(f"{SCOPE}/"):
        net = tf.identity(x, name="input")
    net = conv(net, f"{SCOPE}/Conv", "conv", 2, outer_act)
    for b in blocks(variant):
        inner_act = "hard_swish" if b.hard_swish else "relu"
        with v1.name_scope(b.scope + "/"):
            block_input = net = tf.identity(net, name="input")
        if b.expands:
            net = conv(net, f"{b.scope}/expand", "conv", 1, inner_act)
            with v1.name_scope(b.scope + "/"):
                net = tf.identity(net, name="expansion_output")
        net = conv(net, f"{b.scope}/depthwise", "depthwise", b.stride, inner_act)
        with v1.name_scope(b.scope + "/"):
            net = tf.identity(net, name="depthwise_output")
        if b.squeeze:
            se = f"{b.scope}/squeeze_excite"
            excite = global_pool(net, se, "AvgPool")
            excite = conv(excite, f"{se}/Conv", "conv_bias", 1, "relu")
            excite = conv(excite, f"{se}/Conv_1", "conv_bias", 1, "se_gate")
            with v1.name_scope(se + "/"):
                net = tf.math.multiply(net, excite, name="mul")
        net = conv(net, f"{b.scope}/project", "conv", 1, None)
        with v1.name_scope(b.scope + "/"):
            if b.residual:
                net = tf.math.add(net, block_input, name="add")
            net = tf.identity(net, name="output")
    net = conv(net, f"{SCOPE}/Conv_1", "conv", 1, outer_act)
    net = global_pool(net, f"{SCOPE}/AvgPool2D", "AvgPool")  # reduce_to_1x1, inside the base
    net = conv(net, f"{SCOPE}/Conv_2", "conv_bias", 1, outer_act)
    with v1.name_scope(f"{SCOPE}/"):
        net = tf.identity(net, name="embedding")
    net = global_pool(net, f"{SCOPE}/Logits", "AvgPool")
    with v1.name_scope(f"{SCOPE}/Logits/Dropout/"):
        net = tf.identity(net, name="Identity")
    net = conv(net, f"{SCOPE}/Logits/Conv2d_1c_1x1", "head")
    with v1.name_scope(f"{SCOPE}/Logits/"):
        net = tf.squeeze(net, [1, 2], name="Squeeze")
        logits = tf.identity(net, name="output")
    with v1.name_scope(f"{SCOPE}/Predictions/"):
        flat = tf.reshape(logits, [-1, variant.classes], name="Reshape")
        probs = tf.nn.softmax(flat, name="Softmax")
        tf.reshape(probs, tf.shape(logits, name="Shape"), name="Reshape_1")
    return logits


def rewrite_gate(graph_def):
    """A copy of ``graph_def`` with every float ``Const`` equal to slim's gate constant ``0.16667`` inside a
    ``squeeze_excite`` scope set to ``1/6``; returns (new graph_def, number of constants rewritten).
    Raises ValueError when the graph has squeeze-excite blocks but no such constant."""
    import tensorflow as tf

    out = type(graph_def)()
    out.CopyFrom(graph_def)
    count, has_se = 0, False
    for node in out.node:
        if "squeeze_excite" not in node.name.split("/"):
            continue
        has_se = True
        if node.op != "Const" or node.attr["dtype"].type != tf.float32.as_datatype_enum:
            continue
        value = tf.make_ndarray(node.attr["value"].tensor)
        if value.size and np.all(value == SE_GATE):
            node.attr["value"].tensor.CopyFrom(
                tf.make_tensor_proto(np.full(value.shape, KERAS_GATE, np.float32), tf.float32, value.shape))
            count += 1
    if has_se and not count:
        raise ValueError(f"the graph has squeeze_excite blocks but no gate constant {float(SE_GATE)!r} in them")
    return out, count


# --------------------------------------------------------------------------------------------------
# Names, Keras


def keras_model(variant, include_top: bool, **kwargs):
    import keras

    constructor = {"large": keras.applications.MobileNetV3Large, "small": keras.applications.MobileNetV3Small}
    return constructor[variant.kind](
        input_shape=kwargs.pop("input_shape", (variant.rows, variant.rows, 3)), alpha=float(variant.alpha),
        minimalistic=bool(variant.minimalistic), include_top=include_top, weights=kwargs.pop("weights", None),
        classes=variant.classes - variant.label_offset,
        include_preprocessing=kwargs.pop("include_preprocessing", True), **kwargs)


def _model_name(variant) -> str:
    return f"{variant.kind}{'_minimalistic' if variant.minimalistic else ''}_{variant.rows}_{variant.alpha}_float"


def stem(variant) -> str:
    return f"v3-{variant.kind}{'-minimalistic' if variant.minimalistic else ''}_{variant.rows}_{variant.alpha}_float"


def keras_files(variant) -> tuple[str, str]:
    """keras.applications' file names (``mobilenet_v3.py``: ``weights_mobilenet_v3_{model_name}.h5`` and
    ``…_no_top_v2.h5``)."""
    base = f"weights_mobilenet_v3_{_model_name(variant)}"
    return f"{base}.h5", f"{base}_no_top_v2.h5"


def validate(variant) -> str | None:
    if variant.kind not in KINDS:
        return f"field 'kind' is {variant.kind!r}; valid kinds: {', '.join(KINDS)}"
    if variant.step <= 0:
        return f"field 'step' must be a positive training step, got {variant.step!r}"
    if variant.minimalistic and variant.alpha != "1.0":
        return f"field 'alpha' is {variant.alpha!r}; minimalistic checkpoints exist for alpha 1.0 only"
    return None


def keras_call(variant) -> str:
    ctor = "MobileNetV3Large" if variant.kind == "large" else "MobileNetV3Small"
    return (f"model = keras.applications.{ctor}(alpha={variant.alpha}, minimalistic={variant.minimalistic}, "
            f'input_shape=({variant.rows}, {variant.rows}, 3), weights="{keras_files(variant)[0]}")  '
            f"# inputs in [0, 255]; include_preprocessing=False for [-1, 1]")


FAMILY = Family(
    keras_call=keras_call,
    key="v3", title="MobileNetV3", scope=SCOPE, manifest="mobilenet_v3.json", names=NAMES,
    layout=ArchiveLayout(
        checkpoints=(
            CheckpointFile("ema", "{stem}/ema/model-{step}", plain_values="ema", factory_shadows="none",
                           factory_slots=False),
            CheckpointFile("pristine", "{stem}/pristine/model.ckpt-{step}", plain_values="raw",
                           factory_shadows="all", factory_slots=True),
        ),
        reference_graphs=("{stem}/ema/model-{step}.meta",),
        frozen="{stem}/{stem}.pb", info=None, extra_members=("{stem}/{stem}.tflite",)),
    nodes=GraphNodes(input="input:0", logits=f"{SCOPE}/Logits/output:0", pooled=f"{SCOPE}/AvgPool2D/AvgPool:0",
                     predictions=f"{SCOPE}/Predictions/Softmax"),
    keras_model=keras_model, factory_layers=factory_layers, forward=forward,
    reference_rewrites={"gate_1/6": (
        "squeeze-excite gate constant 0.16667 -> 1/6 (Keras' hard sigmoid)", rewrite_gate)},
    tolerance=1e-3, rewrite_tolerance=1e-4, require_top5=True,
    keras_input_range=(0.0, 255.0),  # the default model starts with Rescaling(1/127.5, offset=-1)
    alphas=("1.0", "0.75"), rows=(224,), extra_fields={"kind": str, "minimalistic": bool, "step": int},
    stem=stem, keras_files=keras_files, short_name=None, validate=validate,
)
