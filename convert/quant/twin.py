"""The quantization-faithful Keras 3 twin of a quantized archive.

The twin is the float sibling's keras.applications model rebuilt with ``keras.models.clone_model``'s
``call_function`` (which walks ``model.operations``, so V3's raw Add/Multiply ops of the squeeze-excite
gate are visited too), keeping the Keras layer names where the layers exist:

* each Conv2D/DepthwiseConv2D with its BatchNormalization -> :class:`~.layers.FoldedConvBN` named like the
  conv (the BN layer disappears into it);
* each conv or Dense with bias -> :class:`~.layers.QuantKernelBias` of the same name;
* an :class:`~.layers.ActQuant` named ``<op>_quant`` after every op where the archive's graph has an
  activation FakeQuant (:mod:`.walk`'s kinds), with the archive's own min/max;
* a ``Softmax`` named ``probabilities`` on the logits: the output is the 1000-class probabilities (Keras
  class k = slim class k + 1), the input float in [-1, 1] like the graph's ``input``.

Values: the model variables from the layer guide (set on the float model as for the ``.h5``, through
:func:`convert.keras_weights.assign_guide`), the ranges from the walk. Every quantizer of the walk must be
placed and every conv must have its weight quantizer, else :class:`TwinError` names them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError
from ..fsutil import atomic_write_bytes, replacing
from ..families.base import has_bn
from ..mapping import keras_target, tf_name_for
from ..timing import timed
from .tflite import tflite_bytes
from .walk import Quantizer

OUTPUT_LAYER = "probabilities"
HARD_SWISH = ("hard_swish", "hard_silu")  # Keras 3 names Activation("hard_swish") hard_silu
INPUT_NAME = "input"


class TwinError(ConversionError):
    """The archive's quantizers and the Keras architecture do not fit together."""


@dataclass
class _Rebuild:
    """State of one rebuild: the quantizer slots, which were used, and the slim origin of new tensors."""

    family: object
    base: object
    slots: dict[tuple[str, str], Quantizer]
    used: set[str] = field(default_factory=set)
    origin: dict[int, tuple[str, str]] = field(default_factory=dict)  # id(tensor) -> (slim scope, what made it)
    bn_by_scope: dict[str, object] = field(default_factory=dict)  # slim scope -> the float model's BN layer

    def take(self, scope: str, kind: str) -> Quantizer | None:
        q = self.slots.get((scope, kind))
        if q is not None:
            self.used.add(q.node)
        return q

    def quantize(self, tensor, scope: str, kind: str, name: str):
        """``tensor`` through an ActQuant when the archive quantizes (scope, kind); its origin recorded."""
        from .layers import ActQuant

        q = self.take(scope, kind)
        if q is not None:
            layer = ActQuant(num_bits=q.num_bits, narrow_range=q.narrow_range, name=name)
            out = layer(tensor)
            layer.set_weights([np.float32(q.min), np.float32(q.max)])
            tensor = out
        self.origin[id(tensor)] = (scope, kind)
        return tensor

    def scope_of(self, layer_name: str, weight: str) -> tuple[str, str]:
        """(slim scope, layer kind) of a Keras layer, from the family's name table."""
        tf_name = tf_name_for(self.family, layer_name, weight)
        target = tf_name and keras_target(self.family, tf_name)
        if not target:
            raise TwinError(f"Keras layer {layer_name!r} has no slim scope in the {self.family.key} name table")
        scope = tf_name.rpartition("/")[0]
        return (scope[: -len("/BatchNorm")] if scope.endswith("/BatchNorm") else scope), target.kind

    def weight_quantizer(self, scope: str, layer_name: str) -> Quantizer:
        q = self.take(scope, "folded_weights") or self.take(scope, "weights")
        if q is None:
            raise TwinError(f"the archive graph has no weight quantizer for slim scope {scope!r} (Keras layer "
                            f"{layer_name!r})")
        return q


def _conv(rb: _Rebuild, op, x):
    import keras

    from .layers import FoldedConvBN, QuantKernelBias

    original = rb.base.get_layer(op.name)
    scope, kind = rb.scope_of(op.name, "kernel")
    q = rb.weight_quantizer(scope, op.name)
    depthwise = isinstance(op, keras.layers.DepthwiseConv2D)
    if has_bn(kind):
        bn = rb.bn_by_scope.get(scope)
        if bn is None:
            raise TwinError(f"Keras layer {op.name!r} (slim {scope}) has no BatchNormalization in the model")
        layer = FoldedConvBN(int(original.output.shape[-1]), original.kernel_size[0], original.strides[0],
                             original.padding, depthwise, bn.epsilon, q.num_bits, name=op.name)
        y = layer(x)
        layer.set_weights([*original.get_weights(), *bn.get_weights(), np.float32(q.min), np.float32(q.max)])
        return rb.quantize(y, scope, "add_fold", f"{op.name}_quant")
    dense = isinstance(op, keras.layers.Dense)
    if not dense and (original.kernel_size != (1, 1) or original.strides != (1, 1)):
        raise TwinError(f"Keras layer {op.name!r}: a conv with bias must be 1x1, stride 1 (got "
                        f"{original.kernel_size}, {original.strides})")
    units = original.units if dense else original.filters
    layer = QuantKernelBias(units, 1, dense, q.num_bits, name=op.name)
    y = layer(x)
    layer.set_weights([*original.get_weights(), np.float32(q.min), np.float32(q.max)])
    return rb.quantize(y, scope, "bias_add", f"{op.name}_quant")


def _call(rb: _Rebuild, op, *args, **kwargs):
    """clone_model's call_function: every operation of the float model, in graph order."""
    import keras

    if isinstance(op, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
        return _conv(rb, op, args[0])
    if isinstance(op, keras.layers.BatchNormalization):
        scope, _ = rb.scope_of(op.name, "gamma")
        if rb.origin.get(id(args[0]), ("",))[0] != scope:
            raise TwinError(f"BatchNormalization {op.name!r} (slim {scope}) does not follow its conv")
        return args[0]  # folded into the conv
    y = op(*args, **kwargs)
    x = args[0]
    if isinstance(op, keras.layers.ReLU):
        scope, made = rb.origin.get(id(x), (None, None))
        if scope is None:
            return y
        if made == "gate_add":
            return rb.quantize(y, scope, "se_gate_relu6", f"{op.name}_quant")
        kind = "relu6" if op.max_value is not None and float(op.max_value) == 6.0 else "relu"
        return rb.quantize(y, scope, kind, f"{op.name}_quant")
    if isinstance(op, keras.layers.Activation) and op.get_config()["activation"] in HARD_SWISH:
        scope, _ = rb.origin.get(id(x), (None, None))
        if scope is None:
            raise TwinError(f"hard_swish {op.name!r} does not follow a conv")
        return rb.quantize(y, scope, "hard_swish", f"{op.name}_quant")
    if isinstance(op, keras.layers.Add):  # a residual: keras.applications adds [shortcut, projection]
        scope = rb.origin.get(id(x[-1]), ("", ""))[0]
        if not scope.endswith("/project"):
            raise TwinError(f"residual add {op.name!r}: its last input is not a block's projection")
        return rb.quantize(y, scope.rpartition("/")[0], "residual_add", f"{op.name}_quant")
    if isinstance(op, keras.layers.Multiply):  # the squeeze-excite: [features, gate]
        gates = [rb.origin.get(id(t), ("", ""))[0] for t in x if rb.origin.get(id(t), ("", ""))[1] == "se_gate"]
        if not gates:
            raise TwinError(f"multiply {op.name!r} does not apply a squeeze-excite gate")
        return rb.quantize(y, gates[0].rpartition("/")[0], "se_mul", f"{op.name}_quant")
    if not isinstance(op, keras.layers.Layer) and id(x) in rb.origin:  # V3's raw ops: hard_sigmoid's + 3, · 1/6
        scope, made = rb.origin[id(x)]
        if type(op).__name__ == "Add" and made == "bias_add":
            rb.origin[id(y)] = (scope, "gate_add")
            return y
        if type(op).__name__ == "Multiply" and made == "se_gate_relu6":
            return rb.quantize(y, scope, "se_gate", f"{op.name}_quant")
    return y


def float_model(variant):
    """The float sibling's keras.applications model for the variant, logits head, input in [-1, 1]."""
    from ..keras_model import build

    extra = {"include_preprocessing": False} if "include_preprocessing" in variant.family.keras_app.defaults else {}
    return build(variant, True, classifier_activation=None, **extra)


@timed("twin build")
def build_twin(variant, guide, quantizers: list[Quantizer]):
    """The fake-quant twin of ``variant``: model variables from ``guide`` (a :class:`convert.guide.LayerGuide`
    of the archive's checkpoint), ranges from ``quantizers`` (:func:`.walk.walk` + :func:`.walk.read_ranges`)."""
    import keras

    from ..keras_weights import assign_guide

    unread = [q.node for q in quantizers if q.min is None or q.max is None]
    if unread:
        raise TwinError(f"{len(unread)} quantizer(s) without range values (read them first): {unread[:3]}")
    base = float_model(variant)
    assign_guide(base, guide, variant)
    rb = _Rebuild(variant.family, base, {q.key: q for q in quantizers})
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            rb.bn_by_scope[rb.scope_of(layer.name, "gamma")[0]] = layer
    inputs = keras.Input(shape=(*variant.input_size, 3), name=INPUT_NAME)
    clone = keras.models.clone_model(base, input_tensors=[inputs] if isinstance(base.input, list) else inputs, call_function=lambda op, *a, **k: _call(rb, op, *a, **k))
    unplaced = [q.node for q in quantizers if q.node not in rb.used]
    if unplaced:
        raise TwinError(f"{len(unplaced)} FakeQuant node(s) of the archive graph have no place in the Keras "
                        f"{variant.family.keras_constructor(variant)}: {', '.join(unplaced[:6])}")
    probabilities = keras.layers.Softmax(name=OUTPUT_LAYER)(clone.outputs[0])
    return keras.Model(inputs, probabilities, name=f"{base.name}_quant")


def logits_model(twin):
    """A view of the twin that outputs its (quantized) 1000-class logits, before the softmax."""
    import keras

    return keras.Model(twin.inputs[0], twin.get_layer(OUTPUT_LAYER).input)


@timed("twin save")
def save_twin(twin, path: str | Path) -> Path:
    """Save the twin as a ``.keras`` file atomically (:func:`convert.fsutil.replacing`)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"a twin is saved as a .keras file, got {path}")
    with replacing(path, suffix=".keras") as tmp:
        twin.save(tmp)
    return path


@dataclass(frozen=True)
class QuantBuild:
    """A quantized variant's twin and its 8-bit ``.tflite``, built in memory (nothing written yet)."""

    twin: Any  # the keras.Model
    tflite: bytes

    def write(self, variant, out_dir: str | Path) -> list[Path]:
        """``<stem>.keras`` and ``<stem>.tflite`` in ``out_dir`` (each atomically)."""
        out_dir = Path(out_dir)
        return [save_twin(self.twin, out_dir / variant.family.twin_file(variant)),
                atomic_write_bytes(out_dir / variant.family.tflite_file(variant), self.tflite)]


def build_outputs(variant, guide, quantizers: list[Quantizer], input_quant) -> QuantBuild:
    """The twin and its 8-bit ``.tflite``, input quantized as the archive's own ``.tflite`` (``input_quant``):
    every step that can refuse the input runs here, before anything is written."""
    model = build_twin(variant, guide, quantizers)
    return QuantBuild(model, tflite_bytes(model, input_quant))


def write_outputs(variant, guide, quantizers: list[Quantizer], input_quant, out_dir: str | Path):
    """A quantized variant's two outputs besides its .h5 files, in ``out_dir``: the twin (``<stem>.keras``)
    and its 8-bit ``<stem>.tflite``. Returns the twin (parity runs it next)."""
    built = build_outputs(variant, guide, quantizers, input_quant)
    built.write(variant, out_dir)
    return built.twin
