"""MobileNetV1: the 16 ``mobilenet_v1_{alpha}_{rows}.tgz`` archives (2018_02_22) -> ``keras.applications.MobileNet``.

Slim scopes (under ``MobilenetV1/``): ``Conv2d_0`` (3x3 conv, stride 2), ``Conv2d_{1..13}_depthwise``
(3x3 depthwise) and ``Conv2d_{1..13}_pointwise`` (1x1 conv), each with BatchNorm and ReLU6, then
``Logits/Conv2d_1c_1x1`` (1x1 conv with biases, 1001 classes). The Keras head ``conv_preds`` is a 1x1
Conv2D, so the logits kernel keeps its ``[1, 1, C, classes]`` shape. The ops of the base network sit under
``MobilenetV1/MobilenetV1/<layer>/`` (slim re-enters its variable scope), the head's under
``MobilenetV1/Logits/``.
"""
from __future__ import annotations

from .base import TOP_LEVEL_LAYOUT, Family, FileNames, GraphNodes, KerasApp, Lookup, NameRule

SCOPE = "MobilenetV1"

NAMES = (
    NameRule("Conv2d_0", "conv", "conv1", "conv1_bn"),
    NameRule("Conv2d_{block}_depthwise", "depthwise", "conv_dw_{block}", "conv_dw_{block}_bn"),
    NameRule("Conv2d_{block}_pointwise", "conv", "conv_pw_{block}", "conv_pw_{block}_bn"),
    NameRule("Logits/Conv2d_1c_1x1", "head", "conv_preds", None),
)

FAMILY = Family(
    key="v1", title="MobileNetV1", scope=SCOPE, manifest="mobilenet_v1.json", names=NAMES,
    layout=TOP_LEVEL_LAYOUT,
    nodes=GraphNodes(input="input:0", logits=f"{SCOPE}/Logits/SpatialSqueeze:0",
                     pooled=f"{SCOPE}/Logits/AvgPool_1a/AvgPool:0", predictions=f"{SCOPE}/Predictions/Reshape_1"),
    files=FileNames(
        stem="mobilenet_v1_{alpha}_{rows}",
        keras_top="mobilenet_{keras_alpha}_{rows}_tf.h5", keras_no_top="mobilenet_{keras_alpha}_{rows}_tf_no_top.h5",
        # keras.applications.mobilenet's alpha text in the weight file names
        parts={"keras_alpha": Lookup("alpha", {"1.0": "1_0", "0.75": "7_5", "0.5": "5_0", "0.25": "2_5"})}),
    keras_app=KerasApp("MobileNet"),
    alphas=("1.0", "0.75", "0.5", "0.25"), rows=(224, 192, 160, 128),
)
