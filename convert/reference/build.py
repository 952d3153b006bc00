"""``build_reference``: slim's inference graph of an :class:`~.arch.Architecture` as a GraphDef that a
checkpoint feeds by variable name (every model variable a TF1 ref variable read through ``<name>/read``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..endpoints import Endpoints
from . import v1, v2, v3
from .arch import Architecture
from .ops import Ops
from .slim import BN_EPSILON, Layer

BUILDERS = {"v1": v1, "v2": v2, "v3": v3}
INPUT = "input"


def layers(arch: Architecture) -> list[Layer]:
    """Every variable-owning slim scope of the architecture, in graph order."""
    return BUILDERS[arch.family].layers(arch)


def model_variables(arch: Architecture) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Every model variable of the architecture's slim graph: name -> (shape, trainable), in graph order."""
    out: dict[str, tuple[tuple[int, ...], bool]] = {}
    for layer in layers(arch):
        out.update(layer.variables())
    return out


def graph(ops: Ops, x, arch: Architecture):
    """The architecture's slim inference graph on ``x`` over ``ops``; returns the logits tensor (a
    backbone: the pooled features)."""
    return BUILDERS[arch.family].graph(ops, x, arch)


def inference_batch_norm(tf, weight: Callable[[str], Any]):
    """slim.batch_norm at inference (``is_training=False``): ``BatchNorm/FusedBatchNorm`` over the
    scope's moving statistics, in the caller's name scope."""
    def batch_norm(x, scope):
        b = f"{scope}/BatchNorm/"
        # relative: the node lands under the caller's op scope (V1's doubled MobilenetV1/MobilenetV1/...)
        with tf.compat.v1.name_scope("BatchNorm"):
            y, *_ = tf.raw_ops.FusedBatchNorm(
                x=x, scale=weight(b + "gamma"), offset=weight(b + "beta"), mean=weight(b + "moving_mean"),
                variance=weight(b + "moving_variance"), epsilon=BN_EPSILON, data_format="NHWC",
                is_training=False, name="FusedBatchNorm")
            return y
    return batch_norm


def forward(tf, x, arch: Architecture, weight: Callable[[str], Any], batch_norm):
    """:func:`graph` with the float ops: ``weight(name)`` gives a model variable's tensor, ``batch_norm(x,
    scope)`` applies a BN scope's normalisation."""
    return graph(Ops(tf, weight, batch_norm), x, arch)


def initializer(tf, name: str):
    """The initializer a reference variable is created with (never run when a checkpoint feeds the graph)."""
    v1c = tf.compat.v1
    if name.endswith(("gamma", "moving_variance")):
        return v1c.ones_initializer()
    if name.endswith(("beta", "moving_mean", "biases")):
        return v1c.zeros_initializer()
    return v1c.glorot_uniform_initializer()


@dataclass(frozen=True)
class ReferenceGraph:
    """slim's inference graph of an architecture and what it reads."""

    arch: Architecture
    graph_def: Any  # tf.compat.v1.GraphDef
    endpoints: Endpoints  # a backbone: logits, head and softmax None, pooled the global pool of the last map
    variables: dict[str, tuple[int, ...]]  # every model variable the graph reads (name -> shape), graph order

    @property
    def trainable(self) -> frozenset[str]:
        """The trainable model variables (all but the BN moving statistics)."""
        return frozenset(n for n, (_, t) in model_variables(self.arch).items() if t)


def build_reference(arch: Architecture, initializers: bool = True) -> ReferenceGraph:
    """slim's inference graph (``is_training=False``: FusedBatchNorm on the moving statistics, dropout an
    ``Identity``) of ``arch``: a float ``Placeholder`` ``input`` of shape [None, rows, cols, 3], every model
    variable a ``VariableV2`` read through ``<name>/read`` (feed those from a checkpoint by name), slim's node
    names, and the endpoints' tensor names.

    With ``initializers`` each variable is made by ``get_variable``, with the initializer and ``Assign`` nodes
    slim's graphs (and so ``export_inference_graph.py``'s) hold. Without them, each is a bare ``VariableV2`` and its
    ``<name>/read`` ``Identity``: the same inference nodes (every node of the graph but those), never initialised,
    only fed by name, as a proof runs it. That builds in about a fifth of the time (V2 1.0_224: 0.1 s against
    0.5 s, measured), since ``get_variable``'s variable-scope machinery is most of the build."""
    import tensorflow as tf

    v1c = tf.compat.v1
    specs = model_variables(arch)
    variables: dict[str, Any] = {}
    g = tf.Graph()
    with g.as_default():
        x = v1c.placeholder(tf.float32, [None, arch.rows, arch.cols, 3], name=INPUT)

        def weight(name):
            if name not in variables:
                shape, trainable = specs[name]
                if initializers:
                    variables[name] = v1c.get_variable(name, shape, tf.float32, initializer(tf, name),
                                                       trainable=trainable, use_resource=False)
                else:
                    with v1c.name_scope(None):  # absolute names, wherever the graph's op scope is
                        var = tf.raw_ops.VariableV2(shape=shape, dtype=tf.float32, name=name)
                        with v1c.name_scope(f"{name}/"):
                            variables[name] = tf.identity(var, name="read")
            return variables[name]

        forward(tf, x, arch, weight, inference_batch_norm(tf, weight))
    missing = sorted(set(specs) - set(variables))
    if missing:
        raise AssertionError(f"{arch.label}: the graph never read {missing}")
    names = BUILDERS[arch.family].endpoint_names(arch)
    graph_def = g.as_graph_def()
    nodes = {n.name for n in graph_def.node}
    absent = [n for n in names.values() if n is not None and n not in nodes]
    if absent:
        raise AssertionError(f"{arch.label}: endpoint nodes {absent} are not in the graph")
    tensor = lambda n: n and f"{n}:0"  # noqa: E731
    endpoints = Endpoints(f"{INPUT}:0", tensor(names["logits"]), tensor(names["pooled"]), names["head"],
                          names["softmax"])
    return ReferenceGraph(arch, graph_def, endpoints, {n: shape for n, (shape, _) in specs.items()})
