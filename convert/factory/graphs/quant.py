"""contrib.quantize's eval graph, written by hand (contrib is gone from TF 2): the float builders of
:mod:`.v1`/:mod:`.v2`/:mod:`.v3` over :class:`QuantOps`, and the quantization-aware families' specs.

Per conv with BN (``S`` = the layer's op scope)::

    S/BatchNorm_Fold/mul   = gamma * rsqrt(moving_variance + eps)          (depthwise: S/scale_reshape [C, 1])
    S/mul_fold             = weights * mult
    S/weights_quant/FakeQuantWithMinMaxVars   (8 bit, narrow range, S/weights_quant/min|max)
    S/Conv2D_Fold | S/depthwise_Fold
    S/add_fold             = conv + S/BatchNorm_Fold/bias   (beta - moving_mean * mult; TF1 ``Add``)

Convs without BN (logits, V3's squeeze-excite and ``Conv_2``) quantize ``weights`` the same way and add
``biases`` (``Conv2D`` + ``BiasAdd``). Activations are fake-quantized (8 bit, wide range,
``<scope>/<name>_quant/min|max``) at :meth:`Ops.quantized`'s points: after every Relu6/Relu, every
projection's ``add_fold``, every residual ``add``, the logits ``BiasAdd``; V3: the input and the output of
``hard_swish``, the squeeze-excite gate's pre-activation, Relu6 and ``mul``, and the gating multiply (the
tensors the genuine ``v3-small_224_1.0_uint8.tflite`` holds as quantized activations). Not after pools or
reshapes; the graph's ``input`` is float in [-1, 1], not fake-quantized.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ...families.base import ArchiveLayout, CheckpointFile, has_bn, kernel_leaf
from ..spec import CheckpointRecipe, FactorySpec, QuantRecipe
from . import v1, v2, v3
from .ops import Ops

BN_EPSILON = 1e-3
WEIGHTS_QUANT = "weights_quant"


@dataclass(frozen=True)
class QuantOps(Ops):
    """:class:`Ops` building the QAT eval graph: folded convs and fake-quant points.

    ``fake_quant(tensor, scope, narrow_range)`` returns the tensor as the next op reads it; ``scope`` is
    the quantizer's full scope (its range variables are ``<scope>/min`` and ``<scope>/max``). The archive
    graph inserts ``FakeQuantWithMinMaxVars``; the calibration pass records the tensor and returns it."""

    fake_quant: Callable[[Any, str, bool], Any]

    def _quant(self, net, name: str, narrow: bool):
        scope = self.tf.compat.v1.get_default_graph().get_name_scope()
        return self.fake_quant(net, f"{scope}/{name}", narrow)

    def quantized(self, net, name: str):
        return self._quant(net, name, False)

    def activation(self, net, act: str | None, scope: str):
        if act is None:  # a projection: its add_fold is quantized as it is (no Identity between)
            return self.quantized(net, "act_quant")
        return super().activation(net, act, scope)

    def linear(self, net, scope: str, kind: str, stride: int):
        tf, strides = self.tf, [1, stride, stride, 1]
        kernel = self.weight(f"{scope}/{kernel_leaf(kind)}")
        if not has_bn(kind):
            kernel = self._quant(kernel, WEIGHTS_QUANT, True)
            net = tf.raw_ops.Conv2D(input=net, filter=kernel, strides=strides, padding="SAME", name="Conv2D")
            return tf.nn.bias_add(net, self.weight(f"{scope}/biases"), name="BiasAdd")
        bn = f"{scope}/BatchNorm/"
        with tf.compat.v1.name_scope("BatchNorm_Fold"):
            mult = tf.multiply(self.weight(bn + "gamma"),
                               tf.math.rsqrt(self.weight(bn + "moving_variance") + BN_EPSILON, name="Rsqrt"),
                               name="mul")
            bias = tf.subtract(self.weight(bn + "beta"), self.weight(bn + "moving_mean") * mult, name="bias")
        return self.fold(net, kernel, mult, bias, kind, strides)

    def fold(self, net, kernel, mult, bias, kind: str, strides):
        """The folded conv: ``kernel · mult`` fake-quantized (``mul_fold``), the conv, then ``add_fold``."""
        tf = self.tf
        if kind == "depthwise":  # depthwise_weights are [k, k, C, 1]: scale along C
            mult = tf.reshape(mult, [-1, 1], name="scale_reshape")
        kernel = self._quant(tf.multiply(kernel, mult, name="mul_fold"), WEIGHTS_QUANT, True)
        if kind == "depthwise":
            net = tf.raw_ops.DepthwiseConv2dNative(input=net, filter=kernel, strides=strides, padding="SAME",
                                                   name="depthwise_Fold")
        else:
            net = tf.raw_ops.Conv2D(input=net, filter=kernel, strides=strides, padding="SAME", name="Conv2D_Fold")
        return tf.raw_ops.Add(x=net, y=bias, name="add_fold")  # TF1's "Add", as contrib in TF 1.x


@dataclass(frozen=True)
class TrainingQuantOps(QuantOps):
    """:class:`QuantOps` building contrib.quantize's *training* rewrite instead (what a ``.meta`` saved during
    quantization-aware training holds): each BN conv also runs its float conv through a training-mode
    ``FusedBatchNormV3`` whose batch statistics fold the kernel, and dropout is random. The ranges are the
    ``fake_quant``'s (:func:`convert.factory.qat.fake_quant_training`: moving averages in the graph)."""

    def dropout(self, net, scope: str):
        with self.scope(scope):
            return self.tf.nn.dropout(net, rate=0.2, seed=1, name="dropout")

    def linear(self, net, scope: str, kind: str, stride: int):
        tf, strides = self.tf, [1, stride, stride, 1]
        if not has_bn(kind):
            return super().linear(net, scope, kind, stride)
        kernel = self.weight(f"{scope}/{kernel_leaf(kind)}")
        bn = f"{scope}/BatchNorm/"
        if kind == "depthwise":
            raw = tf.raw_ops.DepthwiseConv2dNative(input=net, filter=kernel, strides=strides, padding="SAME",
                                                   name="depthwise")
        else:
            raw = tf.raw_ops.Conv2D(input=net, filter=kernel, strides=strides, padding="SAME", name="Conv2D")
        with tf.compat.v1.name_scope("BatchNorm"):
            _, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                raw, self.weight(bn + "gamma"), self.weight(bn + "beta"), epsilon=BN_EPSILON, is_training=True,
                name="FusedBatchNormV3")
            for stat, batch in (("moving_mean", mean), ("moving_variance", variance)):  # the update ops
                with tf.compat.v1.name_scope(f"AssignMovingAvg_{stat}"):
                    var = self.weight(bn + stat)
                    tf.compat.v1.assign_sub(var, (var - batch) * 0.003, name="AssignMovingAvg")
        with tf.compat.v1.name_scope("BatchNorm_Fold"):
            mult = tf.multiply(self.weight(bn + "gamma"), tf.math.rsqrt(variance + BN_EPSILON, name="Rsqrt"), name="mul")
            bias = tf.subtract(self.weight(bn + "beta"), mean * mult, name="bias")
        return self.fold(net, kernel, mult, bias, kind, strides)


def _quant_spec(float_spec: FactorySpec, checkpoints: dict[str, CheckpointRecipe], quant: QuantRecipe) -> FactorySpec:
    """A QAT family's spec: its float sibling's layers and graph, its own checkpoint recipes."""
    return FactorySpec(layers=float_spec.layers, forward=float_spec.forward, graph=float_spec.graph,
                       checkpoints=checkpoints, quant=quant)


# Checkpoint recipes. V1 `_quant`: no EMA shadows (the issue: the data file's size fits the model variables
# plus the ranges) and no optimizer slots. V2 quantized and V3 uint8 keep a training checkpoint
# (`model.ckpt-STEP`) from the same scripts as their float siblings, so the float siblings' recipes for a
# raw checkpoint; nothing public says otherwise. The ranges never carry shadows or slots (contrib creates them
# non-trainable, outside the model and moving-average collections).
NO_SHADOWS = CheckpointRecipe(shadows="none", slots=False)
STEP = 1_000_000  # the training step in the factory's V2/V3 checkpoint names (the genuine ones are discovered)
V2_FOLDER = "v2_{rows}_{alpha_percent}"
QUANT_FACTORIES: dict[str, FactorySpec] = {
    "v1-quant": _quant_spec(v1.FACTORY, {"combined": NO_SHADOWS}, QuantRecipe(layout=ArchiveLayout(
        checkpoints=(CheckpointFile("combined", "{stem}.ckpt", "raw"),), reference_graphs=("{stem}_eval.pbtxt",),
        frozen="{stem}_frozen.pb", info="{stem}_info.txt", tflite="{stem}.tflite"))),
    "v2-quant": _quant_spec(v2.FACTORY, {"combined": v2.FACTORY.checkpoints["combined"]}, QuantRecipe(
        tflite_output="output", output_alias="output", tflite_naming="reshape_output", layout=ArchiveLayout(
            checkpoints=(CheckpointFile("combined", f"{V2_FOLDER}/model.ckpt-{STEP}", "raw"),),
            reference_graphs=(), frozen=f"{V2_FOLDER}/frozen_graph.pb", info=None,
            tflite=f"{V2_FOLDER}/model.tflite"))),
    "v3-quant": _quant_spec(v3.FACTORY, {"pristine": v3.FACTORY.checkpoints["pristine"]}, QuantRecipe(
        input_stats=(128.0, 127.0), tflite_naming="spatial_squeeze", layout=ArchiveLayout(
            checkpoints=(CheckpointFile("pristine", f"{{stem}}/pristine/model.ckpt-{STEP}", "raw"),),
            reference_graphs=(), frozen="{stem}/{stem}.pb", info=None, tflite="{stem}/{stem}.tflite"))),
}
