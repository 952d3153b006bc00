"""MobileNetV3: the six ``v3-{large,small}[-minimalistic]_224_{alpha}_float.tgz`` archives ->
``keras.applications.MobileNetV3Large`` / ``MobileNetV3Small``.

Slim scopes (under ``MobilenetV3/``, slim ``mobilenet_v3.py`` V3_LARGE / V3_SMALL and their
``_MINIMALISTIC`` twins): ``Conv`` (3x3 stride 2), ``expanded_conv`` (block 0, no expansion),
``expanded_conv_{i}`` with ``expand``/``depthwise``/``project`` and, in squeeze-excite blocks,
``squeeze_excite/Conv`` and ``squeeze_excite/Conv_1`` (1x1 convs with biases, no BatchNorm) between the
depthwise and the projection; ``Conv_1`` (1x1 + BN), the average pool ``AvgPool2D`` inside the base,
``Conv_2`` (1x1 with biases, no BN), then ``Logits/Conv2d_1c_1x1``.

The released 0.75 checkpoints were trained with ``finegrain_classification_mode``: ``Conv_2`` keeps 1280
(large) / 1024 (small) channels whatever the multiplier, as Keras does. Minimalistic variants use 3x3
kernels, no squeeze-excite and ReLU everywhere.

Slim's squeeze-excite gate is ``relu6(x + 3) * 0.16667``; Keras' hard sigmoid multiplies by ``1/6``. The
``gate_1/6`` reference rewrite swaps that constant so the two graphs compute the same function.
"""
from __future__ import annotations

import numpy as np

from .base import ArchiveLayout, CheckpointFile, Family, FileNames, GraphNodes, KerasApp, Lookup, NameRule

SCOPE = "MobilenetV3"
SE_GATE = np.float32(0.16667)  # slim's hard-sigmoid constant in the squeeze-excite gate
KERAS_GATE = np.float32(1.0 / 6.0)  # Keras' (and slim's hard_swish') 1/6

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


def check(variant) -> str | None:
    if variant.step <= 0:
        return f"field 'step' must be a positive training step, got {variant.step!r}"
    if variant.minimalistic and variant.alpha != "1.0":
        return f"field 'alpha' is {variant.alpha!r}; minimalistic checkpoints exist for alpha 1.0 only"
    return None


# keras.applications.mobilenet_v3's model_name: "{kind}[_minimalistic]_224_{alpha}_float"
KERAS_FILE = "weights_mobilenet_v3_{kind}{_minimalistic}_{rows}_{alpha}_float"

FAMILY = Family(
    key="v3", title="MobileNetV3", scope=SCOPE, manifest="mobilenet_v3.json", names=NAMES,
    layout=ArchiveLayout(
        checkpoints=(CheckpointFile("ema", "{stem}/ema/model-{step}", plain_values="ema"),
                     CheckpointFile("pristine", "{stem}/pristine/model.ckpt-{step}", plain_values="raw")),
        reference_graphs=("{stem}/ema/model-{step}.meta",),
        frozen="{stem}/{stem}.pb", info=None, extra_members=("{stem}/{stem}.tflite",)),
    nodes=GraphNodes(input="input:0", logits=f"{SCOPE}/Logits/output:0", pooled=f"{SCOPE}/AvgPool2D/AvgPool:0",
                     predictions=f"{SCOPE}/Predictions/Softmax"),
    files=FileNames(
        stem="v3-{kind}{-minimalistic}_{rows}_{alpha}_float",
        keras_top=f"{KERAS_FILE}.h5", keras_no_top=f"{KERAS_FILE}_no_top_v2.h5",
        parts={"Kind": Lookup("kind", {"large": "Large", "small": "Small"}),
               "-minimalistic": Lookup("minimalistic", {False: "", True: "-minimalistic"}),
               "_minimalistic": Lookup("minimalistic", {False: "", True: "_minimalistic"})}),
    keras_app=KerasApp("MobileNetV3{Kind}", variant_args=("minimalistic",), defaults={"include_preprocessing": True},
                       call_note="  # inputs in [0, 255]; include_preprocessing=False for [-1, 1]"),
    reference_rewrites={"gate_1/6": (
        "squeeze-excite gate constant 0.16667 -> 1/6 (Keras' hard sigmoid)", rewrite_gate)},
    tolerance=1e-3, rewrite_tolerance=1e-4, require_top5=True,
    keras_input_range=(0.0, 255.0),  # the default model starts with Rescaling(1/127.5, offset=-1)
    alphas=("1.0", "0.75"), rows=(224,), extra_fields={"kind": str, "minimalistic": bool, "step": int},
    check=check,
)
