"""MobileNetV2: the 22 ``mobilenet_v2_{alpha}_{rows}.tgz`` archives -> ``keras.applications.MobileNetV2``.

Slim scopes (under ``MobilenetV2/``): ``Conv``, ``expanded_conv`` (block 0, no expansion),
``expanded_conv_{1..16}`` with ``expand``/``depthwise``/``project``, ``Conv_1``, ``Logits/Conv2d_1c_1x1``.
The Keras head is a Dense layer: the logits 1x1 conv is squeezed to ``[C, 1000]``.
"""
from __future__ import annotations

from .base import TOP_LEVEL_LAYOUT, Family, FileNames, GraphNodes, KerasApp, NameRule

SCOPE = "MobilenetV2"

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
KERAS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}"

FAMILY = Family(
    key="v2", title="MobileNetV2", scope=SCOPE, manifest="mobilenet_v2.json", names=NAMES,
    layout=TOP_LEVEL_LAYOUT,
    nodes=GraphNodes(input="input:0", logits=f"{SCOPE}/Logits/output:0", pooled=f"{SCOPE}/Logits/AvgPool:0",
                     predictions=f"{SCOPE}/Predictions/Reshape_1"),
    files=FileNames(stem="mobilenet_v2_{alpha}_{rows}", short_name="{alpha}_{rows}",
                    keras_top=f"{KERAS_FILE}.h5", keras_no_top=f"{KERAS_FILE}_no_top.h5",
                    linked_files={"quantized_url": "quantized_v2_{rows}_{alpha_percent}.tgz"}),
    keras_app=KerasApp("MobileNetV2"),
    alphas=("1.4", "1.3", "1.0", "0.75", "0.5", "0.35"), rows=(224, 192, 160, 128, 96),
    extra_fields={"quantized_url": str, "pixel1_latency_ms": (int, float)},
)
