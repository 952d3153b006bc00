"""The proof of a user checkpoint's conversion, against a TF1 graph that is not the Keras model:

* ``builder``: the project's own slim-faithful inference graph of the inferred architecture
  (:mod:`convert.reference`, which reads nothing from the Keras side), its variables fed the checkpoint's
  values by name;
* ``graph``: an inference graph the user gives (``--graph``: a ``.pb``/``.pbtxt`` GraphDef, such as
  ``export_inference_graph.py`` writes, fed the checkpoint's values; or a frozen graph, values inside). Its
  input, logits and pooled features are found by structure (:mod:`convert.endpoints`); a training graph
  (``graph.pbtxt`` of a training directory) is refused, naming why.

The values fed are those the conversion used: the EMA shadows when the checkpoint has them and the value
source is ``auto`` or ``ema`` (what slim's evaluation restores), else the raw values. The figures and
tolerances are parity's (:func:`convert.parity.compare`): logits within ``tolerance · max(1, max |logit|)``
(V3 as is 1e-3, with the squeeze-excite gate rewritten to Keras' 1/6 1e-4), top-1 on every input, the no-top
file's pooled features within the same bound; then ``NAME.keras`` and ``NAME.tflite`` against the same graph.

Each side is run once on the verify batch: every reference graph (:func:`run_reference`), the ``.h5`` pair
loaded into the conversion's model (:func:`keras_run`), ``NAME.keras`` reloaded (:func:`keras_file_outputs`)
and ``NAME.tflite``; :func:`prove` then compares arrays, once per reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..endpoints import Endpoints, find_endpoints, training_signals
from ..errors import UserError
from ..families.base import to_keras_input
from ..parity import (_softmax, checkpoint_feeds, compare, keras_outputs, legacy_file_mismatches,
                      load_graph_def, logit_tolerance, read_variables, run_graph)
from ..preprocessing import Preprocessing
from ..records import RewriteFigures
from ..timing import stage
from .records import FileCheck, ReferenceFigures

FILE_TOLERANCE = 1e-4  # max |Δprob| of NAME.keras / NAME.tflite against the reference's probabilities


class GraphError(UserError):
    """A ``--graph`` that cannot be a reference (a training graph, no findable tensors, unreadable)."""


@dataclass
class Reference:
    """A reference graph ready to run."""

    name: str  # "builder" | "graph"
    description: str
    graph_def: object
    endpoints: Endpoints
    feeds: dict | None  # the checkpoint values of its variables (None: a frozen graph)


def _feeds(graph_def, prefix: Path, mode: str) -> dict | None:
    if not read_variables(graph_def):
        return None
    feeds = checkpoint_feeds(graph_def, str(prefix), raw=mode == "raw")
    return feeds.raw if mode == "raw" else feeds.slim


def read_graph(path: Path):
    """A GraphDef from a ``.pb`` (binary), ``.pbtxt`` (text) or a checkpoint's ``.meta`` (its graph)."""
    import tensorflow as tf

    if Path(path).suffix == ".meta":
        meta = tf.compat.v1.MetaGraphDef()
        meta.ParseFromString(Path(path).read_bytes())
        return meta.graph_def
    return load_graph_def(path)


def builder_reference(variant, prefix: Path, mode: str) -> Reference:
    """The project's slim graph of ``variant``'s architecture, fed the checkpoint's values (``mode``: ema | raw)."""
    from ..reference import Architecture, build_reference

    rows, cols = variant.input_size
    arch = Architecture(family=variant.family.float_family or variant.family_key, alpha=float(variant.alpha),
                        rows=rows, cols=cols, classes=variant.classes if variant.has_head else None,
                        kind=variant.kind, minimalistic=variant.minimalistic, scope_prefix=variant.scope_prefix)
    with stage("reference graph build"):
        built = build_reference(arch, initializers=False)  # fed by name, never initialised
    with stage("tf reference"):  # the checkpoint's values for its variables, as parity reads them for any graph
        feeds = _feeds(built.graph_def, prefix, mode)
    return Reference("builder", f"convert.reference {arch.label}", built.graph_def, built.endpoints, feeds)


def given_reference(path: str | Path, variant, prefix: Path, mode: str) -> Reference:
    """The user's ``--graph`` as a reference; a training graph, or one without a findable head, a GraphError."""
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"--graph {path}: no such file")
    try:
        graph_def = read_graph(path)
    except Exception as exc:  # a file that is no GraphDef
        raise GraphError(f"--graph {path}: not a GraphDef (.pb binary, .pbtxt text, or a .meta): {exc}") from None
    scope = f"{variant.scope_prefix}/{variant.family.scope}" if variant.scope_prefix else variant.family.scope
    signals = training_signals(graph_def, scope)
    if signals:
        raise GraphError(f"--graph {path} is a training graph ({'; '.join(signals)}): pass an inference graph "
                         f"(export_inference_graph.py's, or that graph frozen), or leave --graph out to prove "
                         f"against the project's own slim graph")
    if not variant.has_head:
        raise GraphError(f"--graph {path}: a backbone (no logits) is proven against the project's own slim graph "
                         f"only; leave --graph out")
    try:
        endpoints = find_endpoints(graph_def, scope, str(path))
    except Exception as exc:
        raise GraphError(str(exc)) from None
    description = str(path)
    if any(n.op.startswith("FakeQuant") for n in graph_def.node):  # a quantization-aware graph: its float network
        from ..quant.walk import bypass

        graph_def, count = bypass(graph_def)
        description = f"{path}, its {count} FakeQuant nodes bypassed"
    check_input_size(graph_def, endpoints, variant, f"--graph {path}")
    try:
        feeds = _feeds(graph_def, prefix, mode)
    except ValueError as exc:  # variables of the graph the checkpoint lacks
        raise GraphError(f"--graph {path}: {exc}") from None
    return Reference("graph", description, graph_def, endpoints, feeds)


def check_input_size(graph_def, endpoints: Endpoints, variant, what: str) -> None:
    """A graph with a fixed input size must take the variant's (its placeholder's static H and W)."""
    name = endpoints.input.split(":")[0]
    node = next((n for n in graph_def.node if n.name == name), None)
    dims = [d.size for d in node.attr["shape"].shape.dim] if node is not None and "shape" in node.attr else []
    if len(dims) == 4 and dims[1] > 0 and dims[2] > 0 and (dims[1], dims[2]) != tuple(variant.input_size):
        rows, cols = variant.input_size
        raise GraphError(f"{what} takes {dims[1]} x {dims[2]} inputs (its placeholder {name!r}), the conversion "
                         f"{rows} x {cols}: pass --input-size {dims[1]} {dims[2]}")


def verify_inputs(variant, images=(), count: int = 4, seed: int = 0) -> np.ndarray:
    """The verify batch in [-1, 1]: the image files through slim's preprocessing, then seeded uniform noise."""
    rows, cols = variant.input_size
    pre = Preprocessing.for_input(rows, cols)
    loaded = [pre.load(p) for p in images]
    noise = np.random.default_rng(seed).uniform(-1.0, 1.0, (count, rows, cols, 3)).astype(np.float32)
    return np.concatenate([np.stack(loaded), noise]) if loaded else noise


@dataclass
class ReferenceRun:
    """A reference graph's outputs on the verify batch: what :func:`prove` holds the converted files against."""

    name: str  # Reference.name
    description: str
    kind: str  # "variables" (fed the checkpoint's values) | "frozen"
    logits_tensor: str | None  # None: a backbone
    pooled_tensor: str
    logits: np.ndarray | None  # [inputs, classes]
    pooled: np.ndarray  # [inputs, channels]
    rewrites: dict[str, RewriteRun]  # the family's reference rewrites (V3: the gate at 1/6), by name


@dataclass
class RewriteRun:
    """A reference graph rewritten by one of the family's reference rewrites, run on the verify batch."""

    description: str
    count: int  # the nodes rewritten
    logits: np.ndarray
    pooled: np.ndarray


@dataclass
class KerasRun:
    """The written ``.h5`` files loaded into the conversion's model, on the verify batch."""

    model: object  # the conversion's model (a backbone's: the no-top one) holding the written file's values
    logits: np.ndarray | None  # the top file's (None: a backbone)
    embedding: np.ndarray  # the no-top file's average-pooled features
    mismatches: list[str]  # where the no-top file differs from the no-top model


def _run(ref: Reference, graph_def, batch: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    return [np.asarray(a) for a in run_graph(graph_def, batch, ref.feeds, outputs, ref.endpoints.input)]


def run_reference(variant, ref: Reference, batch: np.ndarray) -> ReferenceRun:
    """``ref`` run on ``batch``: its logits and pooled features, and those of the family's reference rewrites (V3:
    the squeeze-excite gate's 0.16667 rewritten to Keras' 1/6)."""
    ends, n = ref.endpoints, len(batch)
    with stage("tf reference"):
        got = _run(ref, ref.graph_def, batch, [ends.logits, ends.pooled] if variant.has_head else [ends.pooled])
        rewrites = {}
        for name, (description, rewrite) in (variant.family.reference_rewrites.items() if variant.has_head else ()):
            rewritten, count = rewrite(ref.graph_def)
            r_logits, r_pooled = _run(ref, rewritten, batch, [ends.logits, ends.pooled])
            rewrites[name] = RewriteRun(description, count, r_logits.reshape(n, -1), r_pooled.reshape(n, -1))
    return ReferenceRun(ref.name, ref.description, "frozen" if ref.feeds is None else "variables", ends.logits,
                        ends.pooled, got[0].reshape(n, -1) if variant.has_head else None, got[-1].reshape(n, -1),
                        rewrites)


def builder_run(variant, prefix: Path, mode: str, batch: np.ndarray) -> ReferenceRun:
    """The project's slim graph of ``variant`` (:func:`builder_reference`), run on ``batch``."""
    return run_reference(variant, builder_reference(variant, prefix, mode), batch)


def keras_run(variant, weights_dir: Path, batch: np.ndarray) -> KerasRun:
    """The ``.h5`` pair in ``weights_dir`` loaded into the conversion's model (:func:`convert.parity.keras_outputs`;
    a backbone's no-top file into the no-top model), run on ``batch``; with that model, which then holds the
    written file's values (:func:`convert.user.outputs.whole_model` makes ``NAME.keras`` of it)."""
    from ..keras_model import model_for

    weights_dir = Path(weights_dir)
    no_top = weights_dir / variant.keras_weights_no_top
    if variant.has_head:
        logits, _, embedding, mismatches = keras_outputs(variant, weights_dir / variant.keras_weights, no_top, batch)
    else:
        logits, (embedding, mismatches) = None, _backbone_features(variant, no_top, batch)
    return KerasRun(model_for(variant, variant.has_head), logits, embedding, mismatches)  # the model just loaded


def keras_file_outputs(path: Path, batch: np.ndarray) -> np.ndarray:
    """``NAME.keras`` loaded as a user loads it (``keras.saving.load_model``, no constructor arguments: a second
    build) and run on ``batch``."""
    import keras

    with stage("keras reload"):
        model = keras.saving.load_model(path)
    with stage("output checks"):
        return np.asarray(model(batch, training=False)).reshape(len(batch), -1)


def _backbone_features(variant, no_top: Path, batch: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The no-top file loaded into the no-top model: its average-pooled features, and where the file differs."""
    from ..keras_model import input_range, model_for

    features = model_for(variant, False)
    with stage("keras load"):
        features.load_weights(str(no_top))
        mismatches = legacy_file_mismatches(features, no_top)
    with stage("keras inference"):
        out = np.asarray(features([to_keras_input(batch, input_range(variant))], training=False))
    return out.mean(axis=(1, 2)), mismatches


def _file_checks(outputs: dict[str, np.ndarray], expected: np.ndarray, tolerance: float = FILE_TOLERANCE,
                 classes: bool = True) -> list[FileCheck]:
    """NAME.keras / NAME.tflite (``outputs``: their names and their outputs on the verify batch) against
    ``expected`` (the reference's probabilities; a backbone's: its pooled features)."""
    out, n = [], len(expected)
    for name, got in outputs.items():
        got = np.asarray(got).reshape(n, -1)
        if got.shape != expected.shape:
            out.append(FileCheck(name, float("inf"), 0, n, tolerance, False))
            continue
        d = float(np.max(np.abs(got - expected)))
        top1 = int(np.sum(got.argmax(1) == expected.argmax(1)))
        ok = d <= tolerance and (top1 == n or not classes)  # features: no top-1 (ReLU6 ties at 6)
        out.append(FileCheck(name, d, top1, n, tolerance, bool(ok)))
    return out


def prove(variant, ref: ReferenceRun, keras_side: KerasRun, files: dict[str, np.ndarray]) -> ReferenceFigures:
    """The converted files against one reference's outputs on the verify batch: the ``.h5`` pair (``keras_side``)
    and the whole models (``files``: NAME.keras's and NAME.tflite's outputs on the same batch)."""
    family, n = variant.family, len(ref.pooled)
    embedding, mismatches = keras_side.embedding, keras_side.mismatches
    if not variant.has_head:
        diff = float(np.max(np.abs(ref.pooled - embedding)))
        tol = family.tolerance * max(1.0, float(np.max(np.abs(ref.pooled))))
        checks = _file_checks(files, ref.pooled, tol, classes=False)
        return ReferenceFigures(ref.name, ref.description, ref.kind, None, ref.pooled_tensor, n, None, None, None,
                                None, diff, tol, mismatches, {}, checks,
                                passed=bool(diff <= tol and not mismatches and all(c.passed for c in checks)))
    keras_logits = keras_side.logits
    figures = compare(ref.logits, keras_logits, variant.label_offset, family.tolerance, family.require_top5)
    no_top_reference, no_top_factor, reference_logits = ref.pooled, family.tolerance, ref.logits
    rewrites = {}
    for name, run in ref.rewrites.items():
        r = compare(run.logits, keras_logits, variant.label_offset, family.rewrite_tolerance)
        rewrites[name] = RewriteFigures(run.description, run.count, r.max_abs_dlogit, r.tolerance, r.top1_agree,
                                        r.top5_agree, r.passed, float(np.max(np.abs(run.pooled - embedding))))
        no_top_reference, no_top_factor, reference_logits = run.pooled, family.rewrite_tolerance, run.logits
    no_top_diff = float(np.max(np.abs(no_top_reference - embedding)))
    no_top_tol = no_top_factor * max(1.0, float(np.max(np.abs(no_top_reference))))
    checks = _file_checks(files, _softmax(reference_logits[:, variant.label_offset:]))
    passed = (figures.passed and all(r.passed for r in rewrites.values()) and no_top_diff <= no_top_tol
              and not mismatches and all(c.passed for c in checks))
    return ReferenceFigures(ref.name, ref.description, ref.kind, ref.logits_tensor, ref.pooled_tensor, n,
                            figures.max_abs_dlogit, figures.tolerance, figures.top1_agree, figures.top5_agree,
                            no_top_diff, no_top_tol, mismatches, rewrites, checks, bool(passed))


__all__ = ["Reference", "ReferenceRun", "RewriteRun", "KerasRun", "GraphError", "builder_reference", "given_reference",
           "run_reference", "builder_run", "keras_run", "keras_file_outputs", "verify_inputs", "prove",
           "logit_tolerance"]
