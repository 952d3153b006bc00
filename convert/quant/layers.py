"""Keras 3 layers of the fake-quant twin, registered serializable under the package ``mobilenet_quant``.

Each quantizer is ``keras.quantizers.fake_quant_with_min_max_vars`` with the archive's own min/max (kept as
non-trainable weights): weights 8 bit narrow range, activations 8 bit wide range, as contrib.quantize's
eval graph has them. Its gradient passes straight through inside [min, max] (TF's FakeQuant gradient), so
the twin fine-tunes; the ranges stay fixed (no EMA update during ``fit``).

``import convert`` makes ``keras.saving.load_model`` find these classes without importing Keras itself:
see :mod:`convert.quant.keras_hook`.
"""
from __future__ import annotations

import keras
from keras import ops

PACKAGE = "mobilenet_quant"


def _range_weights(layer, prefix: str):
    lo = layer.add_weight(name=f"{prefix}min", shape=(), initializer="zeros", trainable=False)
    hi = layer.add_weight(name=f"{prefix}max", shape=(), initializer="ones", trainable=False)
    return lo, hi


def _quantize_kernel(kernel, lo, hi, num_bits: int):
    return keras.quantizers.fake_quant_with_min_max_vars(kernel, lo, hi, num_bits=num_bits, narrow_range=True)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FoldedConvBN(keras.layers.Layer):
    """A Conv2D or DepthwiseConv2D and its inference BatchNormalization, folded as contrib.quantize folds
    them: ``mult = gamma · rsqrt(moving_variance + eps)``, kernel ``· mult`` (``mul_fold``), fake-quantized
    (narrow range), convolved (``Conv2D_Fold`` / ``depthwise_Fold``), ``+ (beta − moving_mean · mult)``
    (``add_fold``). The BN statistics are used in training too (contrib's frozen-BN phase)."""

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, padding: str = "same",
                 depthwise: bool = False, epsilon: float = 1e-3, num_bits: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = int(filters), int(kernel_size), int(strides)
        self.padding, self.depthwise = str(padding), bool(depthwise)
        self.epsilon, self.num_bits = float(epsilon), int(num_bits)

    def build(self, input_shape):
        k, cin = self.kernel_size, int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(k, k, cin, 1) if self.depthwise else (k, k, cin, self.filters))
        self.gamma = self.add_weight(name="gamma", shape=(self.filters,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(self.filters,), initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=(self.filters,), initializer="zeros",
                                           trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(self.filters,), initializer="ones",
                                               trainable=False)
        self.kernel_min, self.kernel_max = _range_weights(self, "kernel_")

    def call(self, x):
        mult = self.gamma * ops.rsqrt(self.moving_variance + self.epsilon)
        bias = self.beta - self.moving_mean * mult
        scale = ops.reshape(mult, (self.filters, 1)) if self.depthwise else mult
        kernel = _quantize_kernel(self.kernel * scale, self.kernel_min, self.kernel_max, self.num_bits)
        conv = ops.depthwise_conv if self.depthwise else ops.conv
        return conv(x, kernel, strides=self.strides, padding=self.padding) + bias

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape

        def size(d):
            if d is None:
                return None
            return -(-d // self.strides) if self.padding == "same" else (d - self.kernel_size) // self.strides + 1

        return (n, size(h), size(w), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "depthwise": self.depthwise,
                "epsilon": self.epsilon, "num_bits": self.num_bits}


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantKernelBias(keras.layers.Layer):
    """A layer without BN whose kernel is fake-quantized (narrow range) and whose bias is added as is: a
    1x1 ``Conv2D`` with bias (V1's ``conv_preds``, V3's squeeze-excite convs, ``conv_2`` and ``logits``)
    or, with ``dense``, a ``Dense`` (V2's ``predictions``). Not a subclass of the Keras layer it replaces:
    their ``save_own_variables`` would store the kernel and bias only."""

    def __init__(self, units: int, kernel_size: int = 1, dense: bool = False, num_bits: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.units, self.kernel_size, self.dense, self.num_bits = int(units), int(kernel_size), bool(dense), int(num_bits)

    def build(self, input_shape):
        cin, k = int(input_shape[-1]), self.kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(cin, self.units) if self.dense else (k, k, cin, self.units))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.kernel_min, self.kernel_max = _range_weights(self, "kernel_")

    def call(self, x):
        kernel = _quantize_kernel(self.kernel, self.kernel_min, self.kernel_max, self.num_bits)
        y = ops.matmul(x, kernel) if self.dense else ops.conv(x, kernel, strides=1, padding="same")
        return y + self.bias

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "kernel_size": self.kernel_size, "dense": self.dense,
                "num_bits": self.num_bits}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ActQuant(keras.layers.Layer):
    """Fake quantization of an activation (wide range) with fixed min/max: the archive's ``act_quant`` /
    ``add_quant`` at this point."""

    def __init__(self, num_bits: int = 8, narrow_range: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_bits, self.narrow_range = int(num_bits), bool(narrow_range)

    def build(self, input_shape):
        self.min, self.max = _range_weights(self, "")

    def call(self, x):
        return keras.quantizers.fake_quant_with_min_max_vars(x, self.min, self.max, num_bits=self.num_bits,
                                                             narrow_range=self.narrow_range)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_bits": self.num_bits, "narrow_range": self.narrow_range}

