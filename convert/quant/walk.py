"""Every quantizer of a quantization-aware (contrib.quantize-style) graph, found by walking the graph.

For each ``FakeQuantWithMinMaxVars`` node the walk follows its min/max inputs through ``Identity`` /
``<var>/read`` / ``ReadVariableOp`` to the variable (eval or ``.meta`` graph) or the constant (frozen graph)
that holds them, and its data input to the op it quantizes, which gives its placement:

* ``folded_weights``: the BN-folded kernel ``S/mul_fold`` of slim scope ``S``;
* ``weights``: a kernel read straight from its variable (convs without BN: logits, V3's squeeze-excite
  and ``Conv_2``);
* an activation after an op of scope ``S``: ``relu6`` / ``relu``, ``add_fold`` (a BN conv's output before
  its activation: projections, V3's pre-hard-swish), ``bias_add`` (a conv with biases), ``residual_add``
  (a block's bypass add; ``S`` is the block scope), ``hard_swish`` (V3; ``S`` is the conv's scope), and
  V3's squeeze-excite gate: ``se_gate_relu6`` (relu6(x + 3)), ``se_gate`` (its · 1/6), ``se_mul`` (the
  features times the gate; ``S`` is the ``squeeze_excite`` scope).

Checkpoint scope names of the ranges changed across TF versions (``weights_quant``, ``act_quant``,
``add_quant``, ``conv_quant``...), so nothing here relies on them: only the graph's edges are read.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import ConversionError

FAKE_QUANT = "FakeQuantWithMinMaxVars"
_PASS_THROUGH = ("Identity", "StopGradient")
_VARIABLE_OPS = ("VariableV2", "Variable", "VarHandleOp")
_ADDS = ("Add", "AddV2")
EMA_SUFFIX = "/ExponentialMovingAverage"

WEIGHT_KINDS = ("folded_weights", "weights")
ACTIVATION_KINDS = ("relu6", "relu", "add_fold", "bias_add", "residual_add", "hard_swish", "se_gate_relu6",
                    "se_gate", "se_mul")
KINDS = WEIGHT_KINDS + ACTIVATION_KINDS


class QuantGraphError(ConversionError):
    """A quantized archive's graph or checkpoint the converter cannot take (the message names the node)."""


@dataclass(frozen=True)
class Quantizer:
    """One FakeQuant node of the archive's graph and where it sits."""

    node: str  # the FakeQuantWithMinMaxVars node
    kind: str  # one of KINDS
    scope: str  # slim scope: the layer (weights, activations after a layer's op) or the block (residual_add)
    min_var: str  # the variable (or, in a frozen graph, the constant) holding the range's min
    max_var: str
    num_bits: int
    narrow_range: bool
    min: float | None = None  # the range's values: from a frozen graph's constants, or :func:`read_ranges`
    max: float | None = None
    from_constants: bool = False  # min/max are constants of the graph (a frozen graph), not variables
    # the checkpoint variables holding the range: ``min_var``/``max_var`` themselves, or for constants the
    # variables matched to them by scope and value (:func:`read_ranges`); None until matched
    checkpoint_vars: tuple[str, str] | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(scope, kind): the twin's slot for this quantizer."""
        return self.scope, self.kind

    @property
    def is_weights(self) -> bool:
        return self.kind in WEIGHT_KINDS

    @property
    def step(self) -> float:
        """The quantization step of the range (needs the values)."""
        levels = 2 ** self.num_bits - (2 if self.narrow_range else 1)
        return (self.max - self.min) / levels


def _name(tensor: str) -> str:
    return tensor.split(":")[0].lstrip("^")


def _data_inputs(node) -> list[str]:
    return [i for i in node.input if not i.startswith("^")]


def _follow(nodes, tensor: str, through=_PASS_THROUGH):
    node = nodes[_name(tensor)]
    while node.op in through:
        node = nodes[_name(_data_inputs(node)[0])]
    return node


def _parent(name: str) -> str:
    return name.rpartition("/")[0]


def _leaf(name: str) -> str:
    return name.rpartition("/")[2]


def _const_value(node) -> float:
    import tensorflow as tf

    return float(tf.make_ndarray(node.attr["value"].tensor))


def _is_kernel(node) -> bool:
    return node.op in _VARIABLE_OPS or (node.op == "Const" and _leaf(node.name) in ("weights", "depthwise_weights"))


def _kernel_scope(nodes, fq, mul_fold) -> str:
    """The variable scope of a folded kernel: the scope of the kernel variable (a constant in a frozen graph)
    ``mul_fold`` multiplies, which may differ from the ops' scope (V1's ops are under ``MobilenetV1/MobilenetV1``)."""
    kernels = [k for k in (_follow(nodes, i, _PASS_THROUGH + ("ReadVariableOp",)) for i in _data_inputs(mul_fold))
               if _is_kernel(k)]
    if len(kernels) != 1:
        raise QuantGraphError(f"FakeQuant node {fq.name!r}: its folded kernel {mul_fold.name!r} multiplies "
                              f"{len(kernels)} kernel variables, not one")
    return _parent(kernels[0].name)


def _variable_scoped(q: Quantizer, op_scopes: dict[str, str]) -> Quantizer:
    """An activation quantizer's scope in variable-scope terms (its layer's; a block's: its parent's)."""
    if q.is_weights:
        return q
    parents = {_parent(k): _parent(v) for k, v in op_scopes.items()}
    scope = op_scopes.get(q.scope) or parents.get(q.scope) or q.scope
    return q if scope == q.scope else dataclasses.replace(q, scope=scope)


def _activation_kind(nodes, fq, prod) -> tuple[str, str]:
    """(kind, scope) of an activation quantizer, or QuantGraphError naming the node."""
    name, op, leaf = prod.name, prod.op, _leaf(prod.name)
    in_se = "squeeze_excite" in name.split("/")
    if "hard_swish" in name.split("/") and op == "Mul":
        return "hard_swish", name.split("/hard_swish/")[0]
    if op == "Relu6" and in_se:
        return "se_gate_relu6", _parent(name)
    if op in ("Relu6", "Relu"):
        return op.lower(), _parent(name)
    if op in _ADDS and leaf == "add_fold":
        return "add_fold", _parent(name)
    if op == "BiasAdd":
        return "bias_add", _parent(name)
    if op == "Mul" and in_se:
        return ("se_mul" if _leaf(_parent(name)) == "squeeze_excite" else "se_gate"), _parent(name)
    if op in _ADDS and len(_data_inputs(prod)) == 2:
        producers = [_follow(nodes, i) for i in _data_inputs(prod)]
        if all(p.op not in ("Const", *_VARIABLE_OPS) for p in producers):
            return "residual_add", _parent(name)
    raise QuantGraphError(f"FakeQuant node {fq.name!r} quantizes {name!r} (op {op}): the converter has no "
                          f"Keras placement for a quantizer there (it places them on folded or plain conv "
                          f"weights and after {', '.join(ACTIVATION_KINDS)})")


def walk(graph_def, where: str = "the graph") -> list[Quantizer]:
    """Every FakeQuant of ``graph_def``, in graph order, placed. ``where`` names the graph in errors.

    A graph without any FakeQuant, a FakeQuant of another op type, a range that is neither a variable nor
    a constant, a quantizer that cannot be placed, or two at one placement: :class:`QuantGraphError`."""
    nodes = {n.name: n for n in graph_def.node}
    consumers: dict[str, list] = {}
    for n in graph_def.node:
        for i in _data_inputs(n):
            consumers.setdefault(_name(i), []).append(n)
    op_scopes: dict[str, str] = {}  # op scope -> variable scope (they differ in V1: MobilenetV1/MobilenetV1/...)
    found: list[Quantizer] = []
    for fq in graph_def.node:
        if not fq.op.startswith("FakeQuant"):
            continue
        if fq.op != FAKE_QUANT:
            raise QuantGraphError(f"FakeQuant node {fq.name!r} in {where} is a {fq.op}; the converter takes "
                                  f"{FAKE_QUANT} (per-tensor ranges) only")
        data, lo, hi = _data_inputs(fq)
        ranges = [_follow(nodes, t, _PASS_THROUGH + ("ReadVariableOp",)) for t in (lo, hi)]
        for src in ranges:
            if src.op not in (*_VARIABLE_OPS, "Const"):
                raise QuantGraphError(f"FakeQuant node {fq.name!r} in {where} takes its range from {src.name!r} "
                                      f"(op {src.op}), not from a variable or a constant")
        constants = all(src.op == "Const" for src in ranges)
        common = dict(node=fq.name, min_var=ranges[0].name, max_var=ranges[1].name,
                      num_bits=int(fq.attr["num_bits"].i), narrow_range=bool(fq.attr["narrow_range"].b),
                      from_constants=constants)
        if constants:
            common.update(min=_const_value(ranges[0]), max=_const_value(ranges[1]))
        prod = _follow(nodes, data)
        kernel = _follow(nodes, data, _PASS_THROUGH + ("ReadVariableOp",))
        if prod.op == "Mul" and _leaf(prod.name) == "mul_fold":
            kind, scope = "folded_weights", _kernel_scope(nodes, fq, prod)
            op_scopes[_parent(prod.name)] = scope
        elif _is_kernel(kernel):
            kind, scope = "weights", _parent(kernel.name)
            op_scopes.update((_parent(c.name), scope) for c in consumers.get(fq.name, ()))
        else:
            kind, scope = _activation_kind(nodes, fq, prod)
        found.append(Quantizer(kind=kind, scope=scope, **common))
    found = [_variable_scoped(q, op_scopes) for q in found]
    if not found:
        raise QuantGraphError(f"{where} has no {FAKE_QUANT} node: it is not a quantization-aware graph "
                              "(a float archive? use its float family)")
    keys = Counter(q.key for q in found)
    twice = sorted(k for k, n in keys.items() if n > 1)
    if twice:
        names = [q.node for q in found if q.key in twice]
        raise QuantGraphError(f"{where} has several FakeQuants at one placement {twice[:3]}: {names[:6]}")
    return found


def kind_counts(quantizers: list[Quantizer]) -> dict[str, int]:
    """How many quantizers of each kind (in KINDS order)."""
    counts = Counter(q.kind for q in quantizers)
    return {k: counts[k] for k in KINDS if counts[k]}


def range_variables(quantizers: list[Quantizer]) -> frozenset[str]:
    """The checkpoint variables holding the quantizers' ranges (what the twin consumes; the checkpoint's
    classification counts them as consumed, not as unknown): a graph's range variables, or the checkpoint
    variables a frozen graph's range constants were matched to (:func:`read_ranges`)."""
    return frozenset(name for q in quantizers
                     for name in (q.checkpoint_vars or (() if q.from_constants else (q.min_var, q.max_var))))


RANGE_LEAVES = ("min", "max")


def _checkpoint_ranges(table: dict) -> dict[str, dict[str, str]]:
    """The checkpoint's range variables by scope: scalars named ``<scope>/min`` and ``<scope>/max``."""
    out: dict[str, dict[str, str]] = {}
    for name, shape in table.items():
        if _leaf(name) in RANGE_LEAVES and not list(shape):
            out.setdefault(_parent(name), {})[_leaf(name)] = name
    return out


def _match_constants(quantizers: list[Quantizer], table: dict, value, prefix: str) -> list[Quantizer]:
    """A frozen graph's constant ranges, each matched by scope to the checkpoint's ``<scope>/min|max`` (the
    scope of the FakeQuant node, or of the constants, which freezing names after the variables) and checked
    equal to their values. A quantizer without its variables, a variable of no quantizer, a value that
    differs: :class:`QuantGraphError` naming both sides."""
    by_scope = {s: r for s, r in _checkpoint_ranges(table).items() if set(r) == set(RANGE_LEAVES)}
    used: set[str] = set()
    out = []
    for q in quantizers:
        if not q.from_constants:
            out.append(q)
            continue
        scopes = list(dict.fromkeys((_parent(q.node), _parent(q.min_var), _parent(q.max_var))))
        scope = next((s for s in scopes if s in by_scope and s not in used), None)
        if scope is None:
            raise QuantGraphError(
                f"FakeQuant node {q.node!r} of the frozen graph (range constants {q.min_var} = {q.min!r}, "
                f"{q.max_var} = {q.max!r}) matches no range variables of checkpoint {prefix}: looked for "
                f"{' or '.join(s + '/min|max' for s in scopes)}")
        names = (by_scope[scope]["min"], by_scope[scope]["max"])
        for var, const, got in zip(names, (q.min_var, q.max_var), (q.min, q.max)):
            if value(var) != np.float32(got):
                raise QuantGraphError(
                    f"checkpoint {prefix}: range variable {var} = {value(var)!r} differs from the frozen graph's "
                    f"constant {const} = {np.float32(got)!r} of FakeQuant node {q.node!r} (weights and ranges "
                    f"of two trainings?)")
        used.add(scope)
        out.append(dataclasses.replace(q, checkpoint_vars=names))
    if any(q.from_constants for q in quantizers):
        taken = range_variables(out)
        left = sorted(name for r in _checkpoint_ranges(table).values() for name in r.values() if name not in taken)
        if left:
            nodes = [q.node for q in quantizers]
            near = difflib.get_close_matches(left[0], nodes, n=1, cutoff=0.0)
            raise QuantGraphError(
                f"checkpoint {prefix} holds {len(left)} range variable(s) that match no FakeQuant node of the frozen "
                f"graph: {', '.join(left[:6])}{' …' if len(left) > 6 else ''} (the nearest node to {left[0]} is "
                f"{near[0] if near else 'none'}; the graph has {len(nodes)} FakeQuant nodes)")
    return out


def read_ranges(quantizers: list[Quantizer], checkpoint_prefix: str) -> list[Quantizer]:
    """The quantizers with their min/max read from the checkpoint (the ``/ExponentialMovingAverage``
    shadow when the checkpoint holds one, as slim's evaluation restores it). A checkpoint lacking range
    variables: :class:`QuantGraphError` naming them (a quantized archive without its ranges)."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(checkpoint_prefix))
    except Exception as exc:  # tf.errors.* on a missing or corrupt index
        raise QuantGraphError(f"cannot open checkpoint {checkpoint_prefix}: {exc}") from None
    table = reader.get_variable_to_shape_map()

    def value(v):  # as slim's evaluation restores it: the shadow when there is one
        return np.float32(reader.get_tensor(v + EMA_SUFFIX if v + EMA_SUFFIX in table else v))

    quantizers = _match_constants(quantizers, table, value, str(checkpoint_prefix))
    wanted = sorted(name for q in quantizers if not q.from_constants for name in (q.min_var, q.max_var))
    missing = [v for v in wanted if v not in table]
    if missing:
        raise QuantGraphError(f"checkpoint {checkpoint_prefix} lacks {len(missing)} of the {len(wanted)} "
                              f"quantization range variables its graph reads: {', '.join(missing[:6])}"
                              f"{' …' if len(missing) > 6 else ''} (a quantized archive without its ranges)")
    values = {v: float(value(v)) for v in wanted}
    return [q if q.from_constants else dataclasses.replace(q, min=values[q.min_var], max=values[q.max_var],
                                                          checkpoint_vars=(q.min_var, q.max_var))
            for q in quantizers]


def bypass(graph_def):
    """A copy of ``graph_def`` with every FakeQuant rewired to identity: the archive's float network.
    Returns (graph_def, number of FakeQuant nodes bypassed)."""
    import tensorflow as tf

    out = type(graph_def)()
    out.CopyFrom(graph_def)
    count = 0
    for node in out.node:
        if not node.op.startswith("FakeQuant"):
            continue
        data = _data_inputs(node)[0]
        node.op = "Identity"
        del node.input[:]
        node.input.append(data)
        for key in list(node.attr):
            del node.attr[key]
        node.attr["T"].type = tf.float32.as_datatype_enum
        count += 1
    return out, count
