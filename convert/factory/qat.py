"""The quantization-aware (QAT) half of the archive factory: contrib.quantize's eval graph of a
``v1-quant``/``v2-quant``/``v3-quant`` variant (the float sibling's builder over
:class:`~.graphs.quant.QuantOps`), the ranges of its quantizers, and its uint8 ``.tflite``.

Values (:mod:`.fixtures` writes the archive): the float factory's seeded values for the variant (He
kernels, gamma ~ 1, beta ~ 0.5, data-calibrated BN statistics), with the logits conv scaled by the recipe's
``head_gain``, and the range of every quantizer from one float pass on a seeded calibration batch in
[-1, 1]: weights ``[min(w, 0), max(w, 0)]`` of the (folded) kernel (contrib's last-value quantizer),
activations ``[min(a, 0), max(a, 0)]`` over the batch (contrib's EMA quantizer after it has settled).

Why ``head_gain`` (x6): with He-scaled random head weights the 1001 logits span about [-4, 4] and the
softmax is nearly flat (max probability 0.01-0.03), so a uint8 softmax (step 1/256) ties many classes;
comparing two ``.tflite`` files of such an archive, top-1 agreed on 13/16 inputs and top-5 on 6 %, purely
from ties. x6 gives logits of about [-23, 23] and max probabilities 0.28-0.96, as a trained classifier
(the genuine V2 quant ``model.tflite``'s logits range is [-5.7, 19.5]): top-1 16/16, top-5 88 %
(measured on V2 0.35_96 by the issue-16 prototype).
"""
from __future__ import annotations

import functools

import numpy as np

from .graphs import factory_of
from .graphs.quant import QuantOps, TrainingQuantOps

NUM_BITS = 8
CALIBRATION_BATCH = 8


def quant_graph(tf, x, variant, weight, fake_quant, naming: str = "slim", training: bool = False):
    """The variant's QAT inference graph on ``x`` (see :class:`~.graphs.quant.QuantOps` for ``weight``
    and ``fake_quant``), its head named by ``naming``; with ``training``, contrib's training rewrite instead
    (:class:`~.graphs.quant.TrainingQuantOps`). Returns the logits tensor."""
    spec = factory_of(variant.family_key)
    ops = (TrainingQuantOps if training else QuantOps)(tf, weight, None, fake_quant, naming=naming)
    logits = spec.graph(ops, x, variant)
    if spec.quant.output_alias and naming == "slim":
        tf.identity(logits, name=spec.quant.output_alias)
    return logits


@functools.lru_cache(maxsize=None)
def quantizers(variant, specs_key: tuple) -> tuple[tuple[str, bool], ...]:
    """Every quantizer of the variant's graph, in graph order: (scope, narrow_range). ``specs_key``:
    the model variables' (name, shape) pairs (hashable)."""
    import tensorflow as tf

    shapes = dict(specs_key)
    found: list[tuple[str, bool]] = []
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, variant.rows, variant.rows, 3])

        def record(t, scope, narrow):
            found.append((scope, narrow))
            return t

        quant_graph(tf, x, variant, lambda name: tf.zeros(shapes[name]), record)
    return tuple(found)


def range_names(scope: str) -> tuple[str, str]:
    return f"{scope}/min", f"{scope}/max"


def with_head_gain(variant, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``values`` with the logits conv's kernel and biases scaled by the recipe's ``head_gain``."""
    gain = np.float32(factory_of(variant.family_key).quant.head_gain)
    head = f"{variant.family.scope}/Logits/Conv2d_1c_1x1"
    return {**values, f"{head}/weights": values[f"{head}/weights"] * gain,
            f"{head}/biases": values[f"{head}/biases"] * gain}


def calibrate(variant, values: dict[str, np.ndarray], rng) -> dict[str, np.ndarray]:
    """The range variables of every quantizer from one float pass of the graph (model ``values``) on a
    seeded batch in [-1, 1]: ``{<scope>/min: value, <scope>/max: value}``, each range containing 0."""
    import tensorflow as tf

    batch = rng.uniform(-1.0, 1.0, (CALIBRATION_BATCH, variant.rows, variant.rows, 3)).astype(np.float32)
    taps = {}
    graph = tf.Graph()
    with graph.as_default():
        def record(t, scope, narrow):
            taps[scope] = t
            return t

        quant_graph(tf, tf.constant(batch), variant, lambda name: tf.constant(values[name]), record)
        with tf.compat.v1.Session(graph=graph) as sess:
            seen = sess.run(taps)
    ranges: dict[str, np.ndarray] = {}
    for scope, value in seen.items():
        lo, hi = range_names(scope)
        ranges[lo] = np.array(min(float(value.min()), 0.0), np.float32)
        ranges[hi] = np.array(max(float(value.max()), 0.0), np.float32)
    return ranges


def fake_quant_with(tf, range_variable):
    """A ``fake_quant`` for :func:`quant_graph` inserting ``<scope>/FakeQuantWithMinMaxVars`` over the
    range variables ``range_variable(name)`` gives."""
    def fake_quant(t, scope, narrow):
        lo, hi = (range_variable(name) for name in range_names(scope))
        with tf.compat.v1.name_scope(scope + "/"):
            return tf.quantization.fake_quant_with_min_max_vars(t, lo, hi, num_bits=NUM_BITS, narrow_range=narrow,
                                                                name="FakeQuantWithMinMaxVars")
    return fake_quant


def fake_quant_training(tf, range_variable):
    """contrib.quantize's training quantizers: an activation's range follows a moving average of the batch's
    min/max (``<scope>/AssignMovingAvg`` / ``AssignMovingAvg_1``, assign-subs of its variables), a weight's is
    assigned its last value (``<scope>/AssignMinLast`` / ``AssignMaxLast``); the FakeQuant reads the updated
    variables."""
    def fake_quant(t, scope, narrow):
        lo, hi = (range_variable(name) for name in range_names(scope))
        with tf.compat.v1.name_scope(scope + "/"):
            batch_lo, batch_hi = tf.minimum(tf.reduce_min(t), 0.0), tf.maximum(tf.reduce_max(t), 0.0)
            if narrow:  # weights
                lo = tf.compat.v1.assign(lo, batch_lo, name="AssignMinLast")
                hi = tf.compat.v1.assign(hi, batch_hi, name="AssignMaxLast")
            else:
                lo = tf.compat.v1.assign_sub(lo, (lo - batch_lo) * 0.001, name="AssignMovingAvg")
                hi = tf.compat.v1.assign_sub(hi, (hi - batch_hi) * 0.001, name="AssignMovingAvg_1")
            return tf.quantization.fake_quant_with_min_max_vars(t, lo, hi, num_bits=NUM_BITS, narrow_range=narrow,
                                                                name="FakeQuantWithMinMaxVars")
    return fake_quant


NAMING_OUTPUTS = {"reshape_output": "output", "spatial_squeeze": "{scope}/Predictions/Softmax"}


def tflite_output(variant, naming: str = "slim") -> str:
    """The frozen graph's node the archive's ``.tflite`` outputs, for the head ``naming``."""
    quant = factory_of(variant.family_key).quant
    if naming != "slim":
        return NAMING_OUTPUTS[naming].format(scope=variant.family.scope)
    return quant.tflite_output or variant.family.nodes.predictions


def tflite_model(variant, frozen_path, naming: str = "slim") -> bytes:
    """The archive's ``.tflite``: the frozen graph through TF's legacy uint8 path, as the genuine files
    (uint8 input with the recipe's (mean, std) input statistics, the recipe's output node)."""
    import tensorflow as tf

    quant = factory_of(variant.family_key).quant
    output = tflite_output(variant, naming)
    input_name = variant.family.nodes.input.split(":")[0]
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(frozen_path), [input_name], [output], input_shapes={input_name: [1, variant.rows, variant.rows, 3]})
    converter.inference_type = tf.uint8
    converter.quantized_input_stats = {input_name: quant.input_stats}
    return converter.convert()
