"""The three proofs of a quantized variant, as one typed record (:class:`QuantParity`):

(a) the float ``.h5`` against the archive's graph with every FakeQuant bypassed (``<= tolerance · scale``,
    as for the float archives; V3 also against the graph with its squeeze-excite gate rewritten to 1/6);
(b) the twin's logits against the archive's graph as it is, in steps of the graph's logit quantization
    grid (pass: at most one step, top-1 identical);
(c) our ``.tflite`` against the archive's ``.tflite`` on the same uint8 inputs: top-1 identical on every
    input (background excluded; where either uint8 output ties classes first, any of them), max |Δprob| over the 1000 classes (the archive's output renormalized
    without the background class), the fraction of inputs whose top-5 lists are identical.

The verify inputs are uint8 images (seeded random, plus any given image files) read through the archive
``.tflite``'s input quantization, ``(q - 128) / 128`` (V3: ``/ 127``), so that the graph, the twin and both
``.tflite`` files see the same values.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..archive import find_checkpoint, tflite_file
from ..fsutil import sha256_file
from ..records import Digests, FloatFigures, ParityRecord, QuantParity, Source, TfliteFigures, TwinFigures
from ..parity import (checkpoint_feeds, choose_reference, compare, keras_outputs, load_image,
                      run_graph, versions)
from .tflite import InputQuant, input_quant, output_is_softmax, run_tflite
from ..endpoints import Endpoints
from .walk import Quantizer, bypass, read_ranges, walk

TWIN_MAX_STEPS = 1.0  # the twin's logits stay within one step of the graph's logit grid (float32 slack: 1e-4 of it)


def verify_inputs(rows: int, quant: InputQuant, images=(), count: int = 8, seed: int = 0) -> np.ndarray:
    """uint8 verify images [n, rows, rows, 3]: the image files (decoded, resized, snapped to ``quant``'s
    grid), then ``count`` seeded uniform random ones."""
    loaded = [load_image(p, rows) for p in images]  # in [-1, 1]
    snapped = [quant.to_uint8(x) for x in loaded]
    noise = np.random.default_rng(seed).integers(0, 256, (count, rows, rows, 3), dtype=np.uint8)
    return np.concatenate([np.stack(snapped), noise]) if snapped else noise


@dataclass
class GraphReference:
    """The archive's own graph, ready to run: the inference graph fed from the checkpoint, or the frozen one."""

    graph_def: object
    path: Path
    feeds: dict[str, np.ndarray] | None
    kind: str  # eval_pbtxt | ckpt_meta | graph_pb | frozen_pb
    endpoints: Endpoints  # its input, logits and pooled tensors (found by structure)
    passed_over: tuple[str, ...] = ()  # the layout's graphs not taken, and why


def graph_reference(model_dir: Path, variant) -> GraphReference:
    """The archive's reference graph as :func:`convert.parity.choose_reference` chooses it (its eval / ``.meta``
    inference graph fed slim's checkpoint values, else its frozen graph), ready to run."""
    choice = choose_reference(model_dir, variant)
    feeds = checkpoint_feeds(choice.graph_def, str(choice.checkpoint)).slim if choice.checkpoint else None
    return GraphReference(choice.graph_def, choice.path, feeds, choice.kind, choice.endpoints, choice.passed_over)


def _run(ref: GraphReference, graph_def, x: np.ndarray, output):
    """``output`` (a node's tensor, or a list of them) of ``graph_def`` (the reference graph, or a rewrite
    of it keeping its node names) on ``x``, one row per input."""
    got = run_graph(graph_def, x, ref.feeds, output, ref.endpoints.input)
    return [np.asarray(g).reshape(len(x), -1) for g in got] if isinstance(output, list) else \
        np.asarray(got).reshape(len(x), -1)


def logit_quantizer(quantizers: list[Quantizer], variant) -> Quantizer:
    """The quantizer of the graph's logits (after the head's BiasAdd)."""
    head = [r.scope for r in variant.family.names if r.kind == "head"][0]
    scope = f"{variant.family.scope}/{head}"
    found = [q for q in quantizers if q.key == (scope, "bias_add")]
    if not found:
        raise ValueError(f"the archive graph quantizes no logits at {scope}/BiasAdd")
    return found[0]


def float_figures(variant, ref: GraphReference, top: Path, no_top: Path,
                  x: np.ndarray) -> tuple[list[FloatFigures], list[str]]:
    """(a): the float .h5 files (keras.applications model) against the bypassed graph, as is and rewritten:
    the logits and the no-top file's pooled features, as :func:`convert.parity.verify` proves a float
    variant's; and where the no-top file differs from the no-top model loaded from the top file."""
    family, ends = variant.family, ref.endpoints
    bypassed, _ = bypass(ref.graph_def)
    # x in [-1, 1]: keras_outputs maps them to the model's range
    keras_logits, _, embedding, mismatches = keras_outputs(variant, top, no_top, x)
    graphs = [(None, (bypassed, 0), family.tolerance)]
    graphs += [(name, rewrite(bypassed), family.rewrite_tolerance)
               for name, (_, rewrite) in family.reference_rewrites.items()]
    out = []
    for name, (graph_def, constants), tolerance in graphs:
        logits, pooled = _run(ref, graph_def, x, [ends.logits, ends.pooled])
        c = compare(logits, keras_logits, variant.label_offset, tolerance)
        pooled = pooled.reshape(embedding.shape)
        no_top_diff = float(np.max(np.abs(pooled - embedding)))
        no_top_ok = no_top_diff <= tolerance * max(1.0, float(np.max(np.abs(pooled))))
        out.append(FloatFigures(name, c.max_abs_dlogit, c.tolerance, c.top1_agree,
                                bool(c.passed and no_top_ok), constants, no_top_diff))
    return out, mismatches


def twin_figures(variant, ref: GraphReference, twin, quantizers: list[Quantizer], x: np.ndarray) -> list[TwinFigures]:
    """(b): the twin's logits against the graph's (as is, then each of the family's rewrites)."""
    from .twin import logits_model

    step = logit_quantizer(quantizers, variant).step
    mine = np.asarray(logits_model(twin)(x, training=False))
    graphs = [(None, ref.graph_def)] + [(name, rewrite(ref.graph_def)[0])
                                        for name, (_, rewrite) in variant.family.reference_rewrites.items()]
    out = []
    for name, graph_def in graphs:
        theirs = _run(ref, graph_def, x, ref.endpoints.logits)[:, variant.label_offset:]
        d = float(np.max(np.abs(mine - theirs)))
        top1 = int(np.sum(mine.argmax(1) == theirs.argmax(1)))
        out.append(TwinFigures(name, step, d, d / step, top1, bool(d / step <= TWIN_MAX_STEPS * (1 + 1e-4) and top1 == len(x))))
    return out


def _probabilities_without_background(outputs: np.ndarray, softmax: bool, offset: int) -> np.ndarray:
    if softmax:
        p = outputs[:, offset:]
        return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    z = outputs[:, offset:]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _top5_up_to_ties(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of rows where each side's top-5 classes are a top-5 of the other's output, ties included
    (uint8 probabilities tie often: an order among equal values is no disagreement)."""
    def within(p, q):  # p's top-5 classes all score at least q's 5th best value in q
        fifth = np.sort(q, axis=1)[:, -5]
        return np.all(np.take_along_axis(q, np.argsort(-p, axis=1, kind="stable")[:, :5], axis=1) >= fifth[:, None], axis=1)

    return float(np.mean(within(a, b) & within(b, a)))


def tflite_figures(variant, archive_tflite: Path, ours: Path, q: np.ndarray, quant: InputQuant) -> TfliteFigures:
    """(c): our .tflite (1000-class probabilities) against the archive's (1001 classes, logits or
    probabilities), on the same uint8 inputs."""
    softmax = output_is_softmax(archive_tflite)
    theirs = _probabilities_without_background(run_tflite(archive_tflite, q), softmax, variant.label_offset)
    mine = run_tflite(ours, q)
    top = lambda p, k: np.argsort(-p, axis=1, kind="stable")[:, :k]  # noqa: E731
    # top-1 agrees when a class comes first in both outputs; a uint8 output that ties several classes first
    # ranks each of them first (an argmax would pick the lowest index: an artefact of the grid, not a ranking)
    theirs_first, mine_first = theirs == theirs.max(axis=1)[:, None], mine == mine.max(axis=1)[:, None]
    top1 = int(np.sum(np.any(theirs_first & mine_first, axis=1)))
    ties = int(np.sum((theirs_first.sum(axis=1) > 1) | (mine_first.sum(axis=1) > 1)))
    top5 = float(np.mean([list(a) == list(b) for a, b in zip(top(mine, 5), top(theirs, 5))]))
    return TfliteFigures(top1, ties, float(np.max(np.abs(mine - theirs))), top5, _top5_up_to_ties(mine, theirs),
                         "probabilities" if softmax else "logits", quant.scale, quant.zero_point, top1 == len(q))


def verify_quant(variant, model_dir: str | Path, weights_dir: str | Path, quantizers: list[Quantizer], twin=None,
                 images=(), random_count: int = 8, seed: int = 0,
                 reference: GraphReference | None = None) -> QuantParity:
    """All three figures of a converted quantized variant: the files ``weights_dir/<stem>.h5``,
    ``_no_top.h5``, ``.keras`` (or the ``twin`` given) and ``.tflite`` against the extracted archive in
    ``model_dir``; ``quantizers``: the archive graph's walk with ranges read; ``reference``: that graph, ready to
    run (:func:`graph_reference` of ``model_dir``, read again when not given)."""
    import keras

    model_dir, weights_dir = Path(model_dir), Path(weights_dir)
    archive_tflite = tflite_file(model_dir, variant)
    quant = input_quant(archive_tflite, variant.rows)
    q = verify_inputs(variant.rows, quant, images, random_count, seed)
    x = quant.to_real(q)
    ref = reference or graph_reference(model_dir, variant)
    family = variant.family
    top, no_top = weights_dir / variant.keras_weights, weights_dir / variant.keras_weights_no_top
    if twin is None:
        twin = keras.saving.load_model(weights_dir / family.twin_file(variant))
    floats, no_top_mismatches = float_figures(variant, ref, top, no_top, x)
    return QuantParity(
        variant=variant.name, inputs=len(q), images=[str(p) for p in images], seed=seed,
        reference=ref.path.relative_to(model_dir).as_posix(), reference_kind=ref.kind,
        reference_logits=ref.endpoints.logits, passed_over=list(ref.passed_over),
        ranges="constants" if any(q.from_constants for q in quantizers) else "variables", floats=floats,
        twin=twin_figures(variant, ref, twin, quantizers, x),
        tflite=tflite_figures(variant, archive_tflite, weights_dir / family.tflite_file(variant), q, quant),
        no_top_file_mismatches=no_top_mismatches)


@dataclass
class QuantArchive:
    """What a quantized variant's conversion reads from its extracted archive, every bad-input check done
    (a graph without quantizers, one the twin cannot place, a checkpoint without the ranges, a .tflite of
    another input size) before anything is written."""

    reference: GraphReference
    checkpoint: Path
    quantizers: list[Quantizer]  # walked, ranges read
    tflite: Path  # the archive's own .tflite
    input: InputQuant  # its input quantization (the twin's .tflite takes the same)


def open_quant_archive(model_dir: str | Path, variant) -> QuantArchive:
    """Walk the archive's reference graph, read the ranges, check its ``.tflite`` input against the graph's."""
    model_dir = Path(model_dir)
    archive_tflite = tflite_file(model_dir, variant)
    quant = input_quant(archive_tflite, variant.rows)
    ref = graph_reference(model_dir, variant)
    prefix, _ = find_checkpoint(model_dir, variant, "auto")
    quantizers = read_ranges(walk(ref.graph_def, str(ref.path.relative_to(model_dir))), str(prefix))
    return QuantArchive(ref, prefix, quantizers, archive_tflite, quant)


def verify(variant, model_dir: str | Path, weights_dir: str | Path, source: Source | None = None, images=(),
           random_count: int = 4, seed: int = 0, archive: QuantArchive | None = None, twin=None) -> ParityRecord:
    """A quantized variant's parity record (:meth:`convert.records.ParityRecord.of_quant`): its three proofs
    against the extracted archive in ``model_dir``. ``archive`` (:func:`open_quant_archive` of ``model_dir``: the
    graph walked, its ranges read) and ``twin`` (the model just built) spare reading them again; the same
    signature as :func:`convert.parity.verify`."""
    archive = archive or open_quant_archive(model_dir, variant)
    figures = verify_quant(variant, model_dir, weights_dir, archive.quantizers, twin=twin, images=images,
                           random_count=random_count, seed=seed, reference=archive.reference)
    weights_dir = Path(weights_dir)
    digests = Digests(top=sha256_file(weights_dir / variant.keras_weights),
                      no_top=sha256_file(weights_dir / variant.keras_weights_no_top))
    return ParityRecord.of_quant(variant, figures, source or Source(), digests, *versions(),
                                 datetime.now(timezone.utc).isoformat(timespec="seconds"), random_count)
