"""The TF1 ops every family's slim graph is made of, with slim's node names: one conv + BN/bias +
activation helper, the pools, the ``expanded_conv`` block (V2, V3) and the predictions head.

The constants are slim's (:mod:`.slim`): the squeeze-excite gate ``0.16667``, hard-swish's ``1/6``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .slim import HARD_SWISH_SCALE, SE_GATE, Block, has_bn, kernel_leaf


@dataclass(frozen=True)
class Ops:
    """Graph-building helpers over one ``forward`` call's ``weight`` and ``batch_norm``.

    Three hooks let a subclass change how a layer is built without copying the family builders:
    :meth:`linear` (conv + BN or biases), :meth:`quantized` (a point where a quantization-aware
    graph fake-quantizes an activation; the float graph adds nothing there) and :meth:`dropout`.

    ``naming`` names the classifier's tail (:meth:`classify`): ``slim`` (``Logits/Squeeze``,
    ``Logits/output``, ``Predictions/...``), or as Google's ``.tflite`` files of the quantized families show
    their TF nodes: ``reshape_output`` (V2: the logits conv's output reshaped into a top-level ``output``, no
    softmax) or ``spatial_squeeze`` (V3: ``Logits/SpatialSqueeze`` into ``Predictions/Softmax``)."""

    tf: Any
    weight: Callable[[str], Any]
    batch_norm: Callable[[Any, str], Any]
    naming: str = field(default="slim", kw_only=True)

    def quantized(self, net, name: str):
        """``net`` as the next op reads it at a quantization point; ``name`` names the quantizer's scope
        below the current name scope. The float graph: ``net`` itself."""
        return net

    def scope(self, name: str):
        """The absolute name scope ``name/`` (re-entered, never uniquified)."""
        return self.tf.compat.v1.name_scope(name + "/")

    def dropout(self, net, scope: str):
        """slim.dropout at inference: an ``Identity`` in ``scope``."""
        return self.identity(net, scope, "Identity")

    def identity(self, net, scope: str, name: str):
        with self.scope(scope):
            return self.tf.identity(net, name=name)

    def activation(self, net, act: str | None, scope: str):
        tf = self.tf
        if act == "relu6":
            return self.quantized(tf.nn.relu6(net, name="Relu6"), "act_quant")
        if act == "relu":
            return self.quantized(tf.nn.relu(net, name="Relu"), "act_quant")
        if act == "hard_swish":  # slim: x * relu6(x + 3) * (1/6), in a name scope of its own
            net = self.quantized(net, "conv_quant")  # QAT: the input of hard_swish too (one fused op in TFLite)
            with self.scope(f"{scope}/hard_swish"):
                gate = tf.nn.relu6(tf.math.add(net, np.float32(3.0), name="add"), name="Relu6")
                out = tf.math.multiply(tf.math.multiply(net, gate, name="mul"), HARD_SWISH_SCALE, name="mul_1")
            return self.quantized(out, "act_quant")
        if act == "se_gate":  # slim's squeeze-excite gate: relu6(x + 3) * 0.16667
            net = self.quantized(net, "conv_quant")
            gate = tf.nn.relu6(tf.math.add(net, np.float32(3.0), name="add"), name="Relu6")
            gate = self.quantized(gate, "act_quant")
            return self.quantized(tf.math.multiply(gate, tf.constant(SE_GATE, name="mul/y"), name="mul"), "mul_quant")
        if act is None:  # a linear activation (the projections)
            return tf.identity(net, name="Identity")
        raise ValueError(f"unknown activation {act!r}; valid: relu6, relu, hard_swish, se_gate, None")

    def conv(self, net, scope: str, kind: str, stride: int = 1, act: str | None = None, ops_scope: str | None = None):
        """Conv (or depthwise conv) of variable scope ``scope``, then its BN or biases, then ``act``
        (none for the ``head``); ops under ``ops_scope`` (default: ``scope``)."""
        with self.scope(ops_scope or scope):
            net = self.linear(net, scope, kind, stride)
            if kind == "head":
                return self.quantized(net, "act_quant")
            return self.activation(net, act, ops_scope or scope)

    def linear(self, net, scope: str, kind: str, stride: int):
        """The conv (or depthwise conv) of variable scope ``scope`` and its BN or biases, in the current
        name scope."""
        tf, strides = self.tf, [1, stride, stride, 1]
        kernel = self.weight(f"{scope}/{kernel_leaf(kind)}")
        if kind == "depthwise":
            net = tf.nn.depthwise_conv2d(net, kernel, strides, "SAME", name="depthwise")
        else:
            net = tf.nn.conv2d(net, kernel, strides, "SAME", name="Conv2D")
        if has_bn(kind):
            return self.batch_norm(net, scope)
        return tf.nn.bias_add(net, self.weight(f"{scope}/biases"), name="BiasAdd")

    def global_pool(self, net, scope: str, name: str = "AvgPool"):
        """slim's reduced average-pool kernel: the whole feature map."""
        with self.scope(scope):
            h, w = int(net.shape[1]), int(net.shape[2])
            return self.tf.nn.avg_pool2d(net, [1, h, w, 1], [1, 1, 1, 1], "VALID", name=name)

    def expanded_conv(self, net, b: Block, legacy_add: bool = False):
        """slim's ``conv_blocks.expanded_conv``: expand, depthwise, squeeze-excite, project, residual.
        ``legacy_add``: the residual as TF's v1 ``Add`` op (the 2018 V2 graphs) instead of ``AddV2``."""
        tf = self.tf
        block_input = net = self.identity(net, b.scope, "input")
        if b.expands:
            net = self.identity(self.conv(net, f"{b.scope}/expand", "conv", 1, b.act), b.scope, "expansion_output")
        net = self.conv(net, f"{b.scope}/depthwise", "depthwise", b.stride, b.act)
        net = self.identity(net, b.scope, "depthwise_output")
        if b.squeeze:
            se = f"{b.scope}/squeeze_excite"
            excite = self.global_pool(net, se)
            excite = self.conv(excite, f"{se}/Conv", "conv_bias", 1, "relu")
            excite = self.conv(excite, f"{se}/Conv_1", "conv_bias", 1, "se_gate")
            with self.scope(se):
                net = self.quantized(tf.math.multiply(net, excite, name="mul"), "mul_quant")
        net = self.conv(net, f"{b.scope}/project", "conv", 1, None)
        with self.scope(b.scope):
            if b.residual:
                net = (tf.raw_ops.Add(x=net, y=block_input, name="add") if legacy_add
                       else tf.math.add(net, block_input, name="add"))
                net = self.quantized(net, "add_quant")
            return tf.identity(net, name="output")

    def classify(self, net, family_scope: str, classes: int):
        """V2/V3's classifier after the base: ``embedding``, ``Logits/AvgPool``, ``Logits/Dropout``, the
        logits conv, ``Logits/Squeeze`` and ``Logits/output`` (returned), then the predictions."""
        tf, logits_scope = self.tf, f"{family_scope}/Logits"
        net = self.identity(net, family_scope, "embedding")
        net = self.dropout(self.global_pool(net, logits_scope), f"{logits_scope}/Dropout")
        net = self.conv(net, f"{logits_scope}/Conv2d_1c_1x1", "head")
        if self.naming == "reshape_output":
            return tf.reshape(net, [-1, classes], name="output")
        if self.naming == "spatial_squeeze":
            with self.scope(logits_scope):
                logits = tf.squeeze(net, [1, 2], name="SpatialSqueeze")
            with self.scope(f"{family_scope}/Predictions"):
                tf.nn.softmax(logits, name="Softmax")
            return logits
        if self.naming != "slim":
            raise ValueError(f"unknown head naming {self.naming!r}; valid: slim, reshape_output, spatial_squeeze")
        with self.scope(logits_scope):
            logits = tf.identity(tf.squeeze(net, [1, 2], name="Squeeze"), name="output")
        self.predictions(logits, family_scope, classes)
        return logits

    def predictions(self, logits, family_scope: str, classes: int) -> None:
        """``tf.contrib.layers.softmax(logits, scope="Predictions")``."""
        tf = self.tf
        with self.scope(f"{family_scope}/Predictions"):
            flat = tf.reshape(logits, [-1, classes], name="Reshape")
            probs = tf.nn.softmax(flat, name="Softmax")
            tf.reshape(probs, tf.shape(logits, name="Shape"), name="Reshape_1")
