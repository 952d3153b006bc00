"""A MobileNet graph's input, logits and pooled features, found by the graph's structure, never by one
spelling of their node names.

Google's own files name these tensors differently from one release to another (its ``.tflite`` files keep
the TF node names): slim's ``{scope}/Logits/output``; V1's and V3's ``{scope}/Logits/SpatialSqueeze``; V2
quantized's top-level ``output`` with no softmax after it. So the finder starts from what every slim
MobileNet has, the head conv whose kernel is the model variable ``{scope}/Logits/Conv2d_1c_1x1/weights``
(a variable in an eval or ``.meta`` graph, a constant of that name in a frozen one), and walks from there:

* **logits**: from the head conv forward through ``BiasAdd``, FakeQuant, ``Squeeze``, ``Reshape`` and
  ``Identity``, up to the last tensor before any softmax (one with the same values as slim's
  ``Logits/output``, quantized where the graph quantizes the logits);
* **pooled**: backward from the head conv along its data path, the nearest average pool that reduces a
  spatial map (a kernel larger than 1x1), else the farthest one: what keras.applications' no-top model with ``pooling="avg"``
  outputs (V3: ``AvgPool2D`` inside the base, before ``Conv_2``, as slim's ``Logits/AvgPool`` of V3 pools
  a 1x1 map);
* **input**: the one float ``Placeholder`` the head conv depends on.

:func:`training_signals` tells a training graph (a ``.meta`` saved during training) from an inference one.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .errors import ConversionError

HEAD_SCOPE = "Logits/Conv2d_1c_1x1"
_PASS_THROUGH = ("Identity", "StopGradient", "ReadVariableOp")
_FAKE_QUANT = ("FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxArgs", "FakeQuantWithMinMaxVarsPerChannel")
_LOGIT_OPS = ("BiasAdd", "Squeeze", "Reshape", "Identity", *_FAKE_QUANT)
_SOFTMAX = ("Softmax",)
_POOLS = ("AvgPool", "Mean")
_PLACEHOLDERS = ("Placeholder", "PlaceholderWithDefault")
_SOURCES = ("VariableV2", "Variable", "VarHandleOp", "Const")
_ASSIGNS = ("Assign", "AssignSub", "AssignAdd", "AssignVariableOp", "AssignSubVariableOp")
_RANDOM = ("RandomUniform", "RandomStandardNormal", "TruncatedNormal")
_DT_FLOAT = 1  # types_pb2.DT_FLOAT


class EndpointError(ConversionError):
    """A graph in which the finder cannot find a MobileNet's input, logits or pooled features (the message
    says what it looked for and what it found)."""


@dataclass(frozen=True)
class Endpoints:
    """The tensors of one MobileNet graph that parity and evaluation run."""

    input: str  # e.g. "input:0"
    logits: str | None  # None: a backbone without a head. E.g. "MobilenetV2/Logits/output:0", "output:0", "MobilenetV1/Logits/SpatialSqueeze:0"
    pooled: str  # e.g. "MobilenetV2/Logits/AvgPool:0", "MobilenetV3/AvgPool2D/AvgPool:0"
    head: str | None  # the head conv node (None: a backbone)
    softmax: str | None  # the softmax node after the logits, when the graph has one

    def describe(self) -> str:
        if self.logits is None:
            return f"input {self.input}, no head, pooled {self.pooled}"
        return (f"input {self.input}, logits {self.logits} ({'then ' + self.softmax if self.softmax else 'no softmax'}),"
                f" pooled {self.pooled}")


def _name(tensor: str) -> str:
    return tensor.split(":")[0].lstrip("^")


def _data_inputs(node) -> list[str]:
    return [i for i in node.input if not i.startswith("^")]


class _Graph:
    def __init__(self, graph_def):
        self.nodes = {n.name: n for n in graph_def.node}
        self.order = {n.name: i for i, n in enumerate(graph_def.node)}
        self.consumers: dict[str, list[tuple[object, int]]] = {}
        for n in graph_def.node:
            for slot, i in enumerate(_data_inputs(n)):
                self.consumers.setdefault(_name(i), []).append((n, slot))

    def source(self, tensor: str):
        """The node a tensor's value comes from, through identities and FakeQuants' data inputs."""
        node = self.nodes.get(_name(tensor))
        while node is not None and (node.op in _PASS_THROUGH or node.op in _FAKE_QUANT):
            node = self.nodes.get(_name(_data_inputs(node)[0]))
        return node


def head_convs(graph_def, scope: str, g: _Graph | None = None) -> list[str]:
    """The Conv2D nodes whose kernel is the model variable ``{scope}/Logits/Conv2d_1c_1x1/weights`` (``g``: the
    graph's index, when the caller has built it already: indexing a QAT ``.meta``'s 8.5k nodes takes ~0.1 s)."""
    g, kernel = g or _Graph(graph_def), f"{scope}/{HEAD_SCOPE}/weights"
    found = []
    for n in graph_def.node:
        if n.op == "Conv2D" and len(_data_inputs(n)) > 1:
            src = g.source(_data_inputs(n)[1])
            if src is not None and src.op in _SOURCES and src.name == kernel:
                found.append(n.name)
    return found


def _logits(g: _Graph, head) -> tuple[str, str | None]:
    node, softmax = head, None
    while True:
        following = [(c, slot) for c, slot in g.consumers.get(node.name, ()) if slot == 0]
        softmaxes = [c for c, _ in following if c.op in _SOFTMAX]
        if softmaxes:
            softmax = softmaxes[0].name
            break
        flatten = [c for c, _ in following if c.op in _LOGIT_OPS and _flattens_for_softmax(g, c)]
        nxt = [c for c, _ in following if c.op in _LOGIT_OPS and c not in flatten]
        if flatten:  # contrib's softmax flattens this tensor: the logits (or, beside an alias, their value)
            softmax = next(c.name for c, slot in g.consumers[flatten[0].name] if slot == 0)
        if not nxt:
            break
        # branches of equal values (an Identity beside a Reshape): any; a quantized branch before a float one
        nxt.sort(key=lambda c: (c.op not in _FAKE_QUANT, g.order[c.name]))
        node = nxt[0]
    return f"{node.name}:0", softmax


def _flattens_for_softmax(g: _Graph, node) -> bool:
    """A Reshape that only feeds a softmax (contrib's ``softmax`` flattening its input inside ``Predictions``):
    the logits are the tensor before it."""
    users = [c for c, slot in g.consumers.get(node.name, ()) if slot == 0]
    return node.op == "Reshape" and bool(users) and all(c.op in _SOFTMAX for c in users)


def _chain(g: _Graph, start):
    """The nodes ``start``'s data comes through: each node's first data input, back to the source (the data
    path of a MobileNet is every op's input 0: a conv's input, a FakeQuant's, BiasAdd's, a hard-swish product's;
    a select's is its input 1)."""
    node = start
    while True:
        inputs = _data_inputs(node)
        if node.op in ("Select", "SelectV2") and len(inputs) == 3:  # dropout's where(keep, x / keep_prob, 0)
            inputs = inputs[1:]
        src = g.nodes.get(_name(inputs[0])) if inputs else None
        if src is None or src.op in _SOURCES:
            return
        yield src
        node = src


def _upstream(g: _Graph, start):
    """Nodes the data input of ``start`` depends on, nearest first (breadth first; constants and variables
    are not walked into)."""
    seen, queue = {start.name}, deque([start])
    while queue:
        node = queue.popleft()
        inputs = _data_inputs(node)[:1] if node.op in ("Conv2D", "DepthwiseConv2dNative") else _data_inputs(node)
        for i in inputs:
            src = g.nodes.get(_name(i))
            if src is None or src.name in seen or src.op in _SOURCES:
                continue
            seen.add(src.name)
            yield src
            queue.append(src)


def _reduces(pool) -> bool:
    if pool.op != "AvgPool":
        return True
    ksize = list(pool.attr["ksize"].list.i)
    return not ksize or any(k > 1 for k in ksize)


def find_endpoints(graph_def, scope: str, where: str = "the graph") -> Endpoints:
    """Input, logits and pooled features of a MobileNet graph whose model variables live under ``scope``
    (e.g. ``MobilenetV2``). A graph where they cannot be found is an :class:`EndpointError` saying what
    was looked for and what was found; ``where`` names the graph."""
    g = _Graph(graph_def)
    heads = head_convs(graph_def, scope, g)
    if len(heads) != 1:
        convs = [n.name for n in graph_def.node if n.op == "Conv2D"]
        kernels = sorted({getattr(g.source(_data_inputs(g.nodes[c])[1]), "name", "?") for c in convs})
        heads_like = [k for k in kernels if "Logits" in k.split("/")] or kernels[-4:]
        raise EndpointError(
            f"{where}: looked for one Conv2D whose kernel is {scope}/{HEAD_SCOPE}/weights (the head conv), found "
            f"{len(heads)}{': ' + ', '.join(heads) if heads else ''}; its {len(convs)} Conv2D nodes read "
            f"{len(kernels)} kernels, {'under a Logits scope: ' if 'Logits' in ''.join(heads_like) else 'e.g. '}"
            f"{', '.join(heads_like) or 'none'}")
    head = g.nodes[heads[0]]
    logits, softmax = _logits(g, head)
    if logits == f"{head.name}:0":
        users = sorted({c.op for c, _ in g.consumers.get(head.name, ())})
        raise EndpointError(f"{where}: the head conv {head.name} is not followed by its BiasAdd (its consumers: "
                            f"{', '.join(users) or 'none'}); looked for BiasAdd, FakeQuant, Squeeze, Reshape, Identity")
    upstream = list(_upstream(g, head))
    # on the data path only (a squeeze-excite's pools are beside it): the nearest pool that reduces a map, else
    # the farthest (at the smallest inputs every map at the end is 1 x 1: V3's AvgPool2D, before Conv_2)
    pools = [n for n in _chain(g, head) if n.op in _POOLS]
    if not pools:
        raise EndpointError(f"{where}: no average pool (AvgPool or Mean) on the data path into the head conv {head.name}")
    pooled = next((p for p in pools if _reduces(p)), pools[-1])
    placeholders = [n.name for n in upstream
                    if n.op in _PLACEHOLDERS and n.attr["dtype"].type == _DT_FLOAT]
    if len(placeholders) != 1:
        others = sorted({n.op for n in upstream if not _data_inputs(n)})
        raise EndpointError(
            f"{where}: looked for the one float Placeholder the head conv {head.name} depends on (the input), "
            f"found {len(placeholders)}{': ' + ', '.join(placeholders) if placeholders else ''} (its sources "
            f"are {', '.join(others) or 'none'}: a training graph reads its images from a queue or a dataset)")
    return Endpoints(f"{placeholders[0]}:0", logits, f"{pooled.name}:0", head.name, softmax)


def training_signals(graph_def, scope: str) -> list[str]:
    """Why ``graph_def`` is a training graph rather than an inference graph (empty: it is an inference one),
    judged on the ops the head conv of ``scope`` depends on (a ``.meta`` also holds the variables'
    initializers, random ones among them): quantization ranges updated in the graph (contrib.quantize's
    training rewrite: ``AssignMovingAvg`` of the activations' ranges; the weights', beside the data path, are
    not looked at), batch norm in training mode, random ops (dropout)."""
    g = _Graph(graph_def)
    heads = head_convs(graph_def, scope, g)
    if len(heads) != 1:  # no head to judge the graph by: find_endpoints says what is missing
        return []
    path = list(_upstream(g, g.nodes[heads[0]]))
    signals, assigned = [], []
    for n in path:
        if n.op in _FAKE_QUANT and n.op != "FakeQuantWithMinMaxArgs":
            for t in _data_inputs(n)[1:]:
                node = g.nodes.get(_name(t))
                while node is not None and node.op in _PASS_THROUGH:
                    node = g.nodes.get(_name(_data_inputs(node)[0]))
                if node is not None and (node.op in _ASSIGNS or "AssignMovingAvg" in node.name):
                    assigned.append(n.name)
                    break
    if assigned:
        signals.append(f"{len(assigned)} FakeQuant range(s) updated by the graph (e.g. {assigned[0]})")
    training_bn = [n.name for n in path if n.op.startswith("FusedBatchNorm")
                   and "is_training" in n.attr and n.attr["is_training"].b]
    if training_bn:
        signals.append(f"{len(training_bn)} batch norm(s) in training mode (e.g. {training_bn[0]})")
    random = [n.name for n in path if n.op in _RANDOM]
    if random:
        signals.append(f"{len(random)} random op(s) on the way to the logits (dropout; e.g. {random[0]})")
    return signals
