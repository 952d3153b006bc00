"""A quantization-aware user checkpoint's two more outputs, as for the catalogue's quantized archives: the
fake-quant Keras twin (``NAME_quant.keras``) and an 8-bit ``.tflite`` (``NAME_quant.tflite``).

Its quantizers come from a graph that holds the FakeQuant nodes: ``--graph`` (an eval graph fed the checkpoint,
or a frozen one), else an inference graph found beside the checkpoint (its ``.meta``, ``*.pb``, ``*.pbtxt``;
training graphs are passed over, with the reason). The walk (:mod:`convert.quant.walk`) places them and reads
their ranges from the checkpoint's variables, or matches a frozen graph's constants to them; the layer guide
then counts those variables as the twin's. The 8-bit file takes uint8 input with the catalogue's V1/V2 mapping
(scale 1/128, zero point 128: [-1, 1)).

The proofs, beside the float ones (the builder's graph and the FakeQuant graph with every FakeQuant bypassed):
the twin's logits against the FakeQuant graph as it is (at most one step of its logit grid, top-1 on every
input), and the 8-bit file's top-1 against the twin's on the same uint8 inputs (a tie in either uint8 output
counts any of its first classes).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..endpoints import find_endpoints, training_signals
from ..errors import UserError
from ..quant.parity import GraphReference, twin_figures
from ..quant.tflite import InputQuant, TfliteRunner
from ..quant.walk import Quantizer, QuantGraphError, read_ranges, walk
from ..records import TwinFigures
from .prove import read_graph

INPUT_SCALE, INPUT_ZERO_POINT = 1.0 / 128.0, 128


@dataclass(frozen=True)
class QuantSource:
    """The FakeQuant graph of a quantization-aware checkpoint and its quantizers (ranges read or matched)."""

    path: Path
    graph_def: object
    quantizers: list[Quantizer]
    passed_over: tuple[str, ...]


def find_quant_graph(given: Path | None, folder: Path, prefix: Path, scope: str) -> QuantSource:
    """The FakeQuant inference graph (``given``, else the first inference graph with FakeQuant nodes beside the
    checkpoint) and its quantizers; none: a UserError naming what was looked at and why each was passed over."""
    candidates = [given] if given else [Path(str(prefix) + ".meta"), *sorted(folder.glob("*.pb")),
                                        *sorted(folder.glob("*.pbtxt"))]
    passed_over = []
    for path in candidates:
        if path is None or not path.is_file():
            continue
        try:
            graph_def = read_graph(path)
        except Exception as exc:  # not a GraphDef
            passed_over.append(f"{path.name}: not a GraphDef ({type(exc).__name__})")
            continue
        if not any(n.op.startswith("FakeQuant") for n in graph_def.node):
            passed_over.append(f"{path.name}: no FakeQuant nodes")
            continue
        signals = training_signals(graph_def, scope)
        if signals:
            passed_over.append(f"{path.name}: a training graph ({'; '.join(signals)})")
            continue
        try:
            find_endpoints(graph_def, scope, path.name)
            quantizers = read_ranges(walk(graph_def, path.name), str(prefix))
        except (QuantGraphError, ValueError) as exc:
            if given:
                raise UserError(f"--graph {path}: {exc}") from None
            passed_over.append(f"{path.name}: {exc}")
            continue
        return QuantSource(path, graph_def, quantizers, tuple(passed_over))
    raise UserError(
        f"{prefix} is quantization-aware (its checkpoint holds quantization ranges), and its ranges need the graph "
        f"that holds its FakeQuant nodes: pass its eval or frozen graph with --graph"
        + (f" (passed over: {'; '.join(passed_over)})" if passed_over else " (none found beside the checkpoint)"))


@dataclass(frozen=True)
class QuantFigures:
    """The twin against the FakeQuant graph, and the 8-bit file against the twin."""

    graph: str
    twin: TwinFigures
    tflite_top1_agree: int
    tflite_ties: int
    tflite_max_abs_dprob: float
    inputs: int
    passed: bool


def input_quant(variant) -> InputQuant:
    return InputQuant(INPUT_SCALE, INPUT_ZERO_POINT, (1, *variant.input_size, 3))


def prove_quant(variant, source: QuantSource, feeds, twin, tflite_path: Path, count: int = 4,
                seed: int = 0) -> QuantFigures:
    """The twin's logits against the FakeQuant graph (fed ``feeds``, or frozen), and our 8-bit file against the
    twin, on seeded uint8 inputs read through the file's input mapping."""
    quant = input_quant(variant)
    q = np.random.default_rng(seed).integers(0, 256, (count, *variant.input_size, 3), dtype=np.uint8)
    x = quant.to_real(q)
    scope = f"{variant.scope_prefix}/{variant.family.scope}" if variant.scope_prefix else variant.family.scope
    ref = GraphReference(source.graph_def, source.path, feeds, "given", find_endpoints(source.graph_def, scope))
    twin_fig = twin_figures(variant, ref, twin, source.quantizers, x)[0]
    theirs = np.asarray(twin(x, training=False))
    mine = TfliteRunner(tflite_path)(q)
    first = lambda p: p == p.max(axis=1, keepdims=True)  # noqa: E731  (a uint8 output ties classes)
    top1 = int(np.sum(np.any(first(theirs) & first(mine), axis=1)))
    ties = int(np.sum((first(theirs).sum(1) > 1) | (first(mine).sum(1) > 1)))
    d = float(np.max(np.abs(theirs - mine)))
    return QuantFigures(str(source.path), twin_fig, top1, ties, d, count, bool(twin_fig.passed and top1 == count))
