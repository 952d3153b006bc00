"""Parity: the checkpoint's own TF1 graph ("slim logits") against the converted Keras model.

The reference runs the archive's genuine-layout eval graph with every ``<variable>/read`` tensor fed
the value slim's evaluation restores (the ``/ExponentialMovingAverage`` shadow when the checkpoint has
one, else the raw value). This module is deliberately independent of ``convert.checkpoint``: the
reference must not share the converter's weight-choice code it is meant to check.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .archive import find_checkpoint, frozen_graph, reference_graphs
from .endpoints import EndpointError, Endpoints, find_endpoints, training_signals
from .env import quiet_tf
from .fsutil import sha256_file
from .keras_model import input_range, legacy_weights, model_for
from .families.base import CheckpointFile, to_keras_input
from .manifest import Variant
from .preprocessing import Preprocessing
from .records import Comparison, Digests, ParityRecord, RewriteFigures, Source
from .timing import stage, timed

# TensorFlow, Keras and h5py are imported inside the functions that use them: importing this module must not
# import TF (~2 s), so that an up-to-date pipeline run settles its variants without it (tests/test_records.py)

quiet_tf()

READ_SUFFIX = "/read"
EMA_SUFFIX = "/ExponentialMovingAverage"


def load_graph_def(path: str | Path):
    """A GraphDef from a ``.pbtxt`` (text) or ``.pb`` (binary) file."""
    import tensorflow as tf

    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".pbtxt":
        return parse_text_graph_def(data, path)
    return tf.compat.v1.GraphDef.FromString(data)


def parse_text_graph_def(text: bytes, path: str | Path = "<text>"):
    """Parse a text-format GraphDef with protobuf's C++ text parser, through ``tf.io.decode_proto``
    (``message_format="text"``; each message field comes back serialized): ~10x faster than the pure
    Python ``google.protobuf.text_format`` (0.05 s instead of 0.5 s for V2 1.0_224's 0.8 MB eval graph).
    Text it cannot take goes to ``text_format``, whose error names the line."""
    import tensorflow as tf
    from google.protobuf import text_format

    graph_def = tf.compat.v1.GraphDef()
    fields = graph_def.DESCRIPTOR.fields
    kinds = {f.name: (tf.string if f.message_type is not None else tf.int32) for f in fields
             if f.message_type is not None or f.type == f.TYPE_INT32}
    try:
        if len(kinds) != len(fields):
            raise ValueError("GraphDef has a field decode_proto is not asked for")
        sizes, values = tf.io.decode_proto(tf.constant([text]), graph_def.DESCRIPTOR.full_name, list(kinds),
                                           list(kinds.values()), message_format="text")
    except (tf.errors.OpError, ValueError):
        try:
            text_format.Parse(text.decode("utf-8"), graph_def)
        except (text_format.ParseError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot parse {path} as a text GraphDef: {exc}") from None
        return graph_def
    sizes = sizes.numpy()[0]
    for field, count, value in zip(fields, sizes, values):
        items = value.numpy()[0][:count]
        if field.message_type is None:
            if count:
                setattr(graph_def, field.name, int(items[0]))
        elif field.is_repeated:
            container = getattr(graph_def, field.name)
            for item in items:
                container.add().ParseFromString(item)
        elif count:
            getattr(graph_def, field.name).ParseFromString(items[0])
    return graph_def


def read_variables(graph_def) -> list[str]:
    """Names of the model variables an eval graph reads through ``<name>/read`` (``global_step``, which a
    checkpoint's ``.meta`` graph may hold, is not one and is never on the inference path)."""
    variables = {n.name for n in graph_def.node if n.op in ("VariableV2", "Variable") and n.name != "global_step"}
    return sorted(n.name[: -len(READ_SUFFIX)] for n in graph_def.node
                  if n.name.endswith(READ_SUFFIX) and n.name[: -len(READ_SUFFIX)] in variables)


@dataclass
class CheckpointFeeds:
    """Values for every ``<var>/read:0`` tensor of an eval graph, read once from a checkpoint."""

    slim: dict[str, np.ndarray]  # what slim's evaluation restores: the EMA shadow when there is one
    raw: dict[str, np.ndarray]  # the raw variable values (only the unshadowed ones unless asked for all)
    sources: dict[str, str]  # variable -> "ema" or "raw" (the source of its ``slim`` value)


def checkpoint_feeds(graph_def, checkpoint_prefix: str, raw: bool = False) -> CheckpointFeeds:
    """Read the values an eval graph needs from a checkpoint (with ``raw``, also every raw value; else
    only those slim's evaluation uses). A variable the graph reads but the checkpoint lacks, or a tensor
    that cannot be read, is a ValueError naming it."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(checkpoint_prefix)
    except Exception as exc:  # tf.errors.* on a missing or corrupt index
        raise ValueError(f"cannot open checkpoint {checkpoint_prefix}: {exc}") from None
    table = reader.get_variable_to_shape_map()
    variables = read_variables(graph_def)
    missing = [v for v in variables if v not in table]
    if missing:
        raise ValueError(f"checkpoint {checkpoint_prefix} lacks {len(missing)} variable(s) the graph reads: "
                         f"{', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}")

    def read(key):
        try:
            return reader.get_tensor(key)
        except Exception as exc:  # IndexError / tf.errors.DataLossError on a truncated or corrupt data file
            raise ValueError(f"cannot read {key} from checkpoint {checkpoint_prefix}: {type(exc).__name__}: "
                             f"{exc} (is its .data file truncated or corrupt?)") from None

    feeds = CheckpointFeeds({}, {}, {})
    for var in variables:
        tensor = f"{var}{READ_SUFFIX}:0"
        has_shadow = var + EMA_SUFFIX in table
        if raw or not has_shadow:
            feeds.raw[tensor] = read(var)
        feeds.slim[tensor] = read(var + EMA_SUFFIX) if has_shadow else feeds.raw[tensor]
        feeds.sources[var] = "ema" if has_shadow else "raw"
    return feeds


def _node(tensor: str) -> str:
    return tensor.split(":")[0]


@contextlib.contextmanager
def graph_session(graph_def, input_tensor: str = "input:0", fetches=None):
    """Import ``graph_def`` into a fresh graph once; yields ``run(images, feeds, output)``, which feeds
    ``input_tensor`` (and ``feeds``) and returns ``output`` (a tensor name or a list of them).

    With ``fetches`` (the tensor name, or names, ``run`` will be asked for), only the nodes they depend on are
    imported (``tf.compat.v1.graph_util.extract_sub_graph``): an inference graph's initialisers, a ``.meta``'s
    saver and training ops never reach the importer, whose Python side costs per node (a QAT archive's ``.meta``:
    1.8k of its 8.5k nodes, imported in 0.07 s instead of 0.4 s, measured). A feed of a tensor of the graph outside
    that part is dropped (it cannot change what is fetched); one the graph does not hold at all is a ValueError,
    as TF would raise for the whole graph."""
    import tensorflow as tf

    kept = whole = None
    if fetches is not None:
        fetches = [fetches] if isinstance(fetches, str) else fetches
        whole = {n.name for n in graph_def.node}
        graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, sorted({_node(t) for t in fetches}))
        kept = {n.name for n in graph_def.node}
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    # not entered as the default session: that would put the whole thread in graph mode (tf.data, eager
    # Keras models and `convert evaluate`'s input pipeline need eager mode)
    threading = tf.config.threading  # the process's TF thread pools (a --jobs worker sizes them down)
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threading.get_intra_op_parallelism_threads(),
                                      inter_op_parallelism_threads=threading.get_inter_op_parallelism_threads())
    # the graph runs as written: grappler's rewrites (op fusion, layout changes) cost ~0.4 s on a session's
    # first run, more than the model's own compute, and reassociate float sums (~3e-6 on V2 1.0_224's logits)
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    sess = tf.compat.v1.Session(graph=graph, config=config)

    def run(images, feeds, output):
        feeds = feeds or {}
        if kept is not None:
            unknown = sorted(t for t in feeds if _node(t) not in whole)
            if unknown:
                raise ValueError(f"feeds of tensors the graph does not hold: {', '.join(unknown[:5])}")
            feeds = {t: v for t, v in feeds.items() if _node(t) in kept}
        return sess.run(output, {input_tensor: images, **feeds})

    try:
        yield run
    finally:
        sess.close()


def run_graph(graph_def, images: np.ndarray, feeds: dict[str, np.ndarray] | None, output,
              input_tensor: str = "input:0"):
    """One run of ``graph_def`` in its own session (see :func:`graph_session`), of the part ``output`` needs."""
    with graph_session(graph_def, input_tensor, output) as run:
        return run(images, feeds, output)


def random_inputs(rows: int, count: int = 4, seed: int = 0) -> np.ndarray:
    """A seeded batch of inputs in [-1, 1] (the model's input range)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (count, rows, rows, 3)).astype(np.float32)


def logit_tolerance(reference_logits: np.ndarray, factor: float = 1e-4) -> float:
    """The pass threshold on max |Δlogit|: factor · max(1, max |reference logit|) (V1/V2: 1e-4)."""
    return factor * max(1.0, float(np.max(np.abs(reference_logits))))


# --------------------------------------------------------------------------------------------------
# Verification of one converted variant

def load_image(path: str | Path, rows: int) -> np.ndarray:
    """One image as the graph's input, float32 rows x rows x 3 in [-1, 1]: slim's evaluation preprocessing
    (:func:`convert.preprocessing.Preprocessing.for_input`; a file it cannot decode is a ValueError)."""
    return Preprocessing.for_input(rows).load(path)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def inference_problem(graph_def, variant, where: str = "the graph") -> str | None:
    """Why ``graph_def`` cannot be the reference of ``variant`` (None: it can): a training graph, or a graph
    without a findable input, logits or pooled features (:mod:`convert.endpoints`)."""
    signals = training_signals(graph_def, variant.family.scope)
    if signals:
        return f"a training graph ({'; '.join(signals)})"
    try:
        find_endpoints(graph_def, variant.family.scope, where)
    except EndpointError as exc:
        return str(exc)
    return None


def archive_graph(model_dir: Path, variant):
    """The reference graph of an extracted archive: the first of the layout's reference graphs that
    exists and is an inference graph (an ``_eval.pbtxt``, or the GraphDef in a ``.meta``). Returns
    (graph_def, kind, path, passed_over): (None, None, None, passed_over) when there is none (the frozen
    graph is then the reference); ``passed_over`` says which candidates were not taken, and why."""
    import tensorflow as tf

    passed_over = []
    for path in reference_graphs(model_dir, variant):
        if path.suffix == ".meta":
            meta_graph = tf.compat.v1.MetaGraphDef()
            meta_graph.ParseFromString(path.read_bytes())
            graph_def, kind = meta_graph.graph_def, "ckpt_meta"
        else:
            graph_def, kind = load_graph_def(path), "eval_pbtxt" if path.suffix == ".pbtxt" else "graph_pb"
        relative = path.relative_to(model_dir).as_posix()
        problem = inference_problem(graph_def, variant, relative)
        if problem is None:
            return graph_def, kind, path, tuple(passed_over)
        passed_over.append(f"{relative}: {problem}")
    return None, None, None, tuple(passed_over)


@dataclass(frozen=True)
class ReferenceChoice:
    """The reference graph of an extraction: the first inference graph of the layout, fed slim's evaluation
    values from the EMA checkpoint, or, when there is none, the frozen graph (values inside, nothing fed).
    Parity's :func:`slim_reference` and ``convert evaluate``'s slim scorer both start here."""

    graph_def: object  # a tf GraphDef
    kind: str  # eval_pbtxt | ckpt_meta | graph_pb | frozen_pb
    path: Path
    checkpoint: Path | None  # the checkpoint prefix to feed slim's values from; None for the frozen graph
    checkpoint_file: CheckpointFile | None
    endpoints: Endpoints  # its input, logits and pooled tensors, found by structure
    passed_over: tuple[str, ...] = ()  # the layout's graphs not taken, each with the reason


def choose_reference(model_dir: str | Path, variant: Variant, inference_graph=archive_graph) -> ReferenceChoice:
    """The reference graph of the extraction ``model_dir``. ``inference_graph(model_dir, variant)`` returns
    ``(graph_def, kind, path, passed_over)`` as :func:`archive_graph` (its default; a caller may memoise
    it). Raises FileNotFoundError when there is no reference graph, or no checkpoint to feed it; an
    :class:`~convert.endpoints.EndpointError` when the frozen graph's tensors cannot be found."""
    model_dir = Path(model_dir)
    graph_def, kind, path, passed_over = inference_graph(model_dir, variant)
    scope = variant.family.scope
    if graph_def is not None:
        prefix, cf = find_checkpoint(model_dir, variant, "ema")
        endpoints = find_endpoints(graph_def, scope, path.relative_to(model_dir).as_posix())
        return ReferenceChoice(graph_def, kind, path, prefix, cf, endpoints, passed_over)
    frozen = frozen_graph(model_dir, variant)
    if not frozen.exists():
        raise FileNotFoundError(f"{model_dir} holds no reference graph of {variant.name}: none of "
                                f"{', '.join(variant.family.layout.reference_graphs)} is an inference graph "
                                f"({'; '.join(passed_over) or 'none exists'}) and {frozen.name} is missing")
    graph_def = load_graph_def(frozen)
    endpoints = find_endpoints(graph_def, scope, frozen.relative_to(model_dir).as_posix())
    return ReferenceChoice(graph_def, "frozen_pb", frozen, None, None, endpoints, passed_over)


def versions() -> tuple[str, str]:
    """(TensorFlow, Keras) versions a parity record was made with."""
    import keras  # lazily: importing this module does not load TF
    import tensorflow as tf

    return tf.__version__, keras.__version__


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def legacy_file_mismatches(model, path: Path) -> list[str]:
    """Where the legacy-layout HDF5 weights file ``path`` would not set ``model`` to exactly its current
    weights, read the way Keras' legacy loader reads such a file (``load_weights`` with ``by_name=False``):
    the file's layers that hold weights, in ``layer_names`` order, against the model's layers that hold
    weights, in order; per layer, the arrays in its ``weight_names`` order against the layer's trainable
    then non-trainable weights. Empty when the file holds every weight of the model, bit for bit."""
    import h5py

    def names(attrs, key):
        return [n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(attrs.get(key, []))]

    layers = [layer for layer in model.layers if legacy_weights(layer)]
    problems = []
    with h5py.File(path, "r") as f:
        stored = [n for n in names(f.attrs, "layer_names") if names(f[n].attrs, "weight_names")]
        if stored != [layer.name for layer in layers]:
            extra, missing = sorted(set(stored) - {l.name for l in layers}), sorted({l.name for l in layers} - set(stored))
            return [f"{path.name} holds {len(stored)} layers with weights, the model {len(layers)} "
                    f"(only in the file: {extra[:5]}; only in the model: {missing[:5]})"]
        for layer in layers:
            group, weights = f[layer.name], legacy_weights(layer)
            arrays = [group[n][()] for n in names(group.attrs, "weight_names")]
            if len(arrays) != len(weights):
                problems.append(f"{layer.name}: {len(arrays)} arrays in the file, {len(weights)} weights")
                continue
            problems += [f"{w.path}" for w, a in zip(weights, arrays)
                         if a.shape != tuple(w.shape) or not np.array_equal(a, np.asarray(w))]
    return problems


def keras_outputs(variant, top: Path, no_top: Path, images: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, list[str]]:
    """Logits (no softmax) of the keras.applications model loaded from ``top``, the seconds its one
    (eager, first) call took, the average-pooled features of that call (what the no-top model with
    ``pooling="avg"`` outputs), and where the no-top file differs from the no-top model so loaded.

    ``images`` are in [-1, 1]; they are mapped onto the model's input range (V3's default model rescales
    0..255 itself). The model is the conversion's own (:func:`convert.keras_model.model_for`, built once
    per variant; the no-top model is a view of its layers). The top file is loaded with
    ``model.load_weights``, the call the constructors make for ``weights=path``, which sets every weight
    from the file or fails; the no-top file must then hold exactly the no-top model's weights, read as
    Keras' loader reads it (:func:`legacy_file_mismatches`): then its features are the ones computed."""
    import keras

    inputs = to_keras_input(images, input_range(variant)).astype(np.float32)
    with stage("keras build"):
        model, features = model_for(variant, True), model_for(variant, False)
        both = keras.Model(model.inputs, [model.outputs[0], features.outputs[0]])  # one pass, two outputs
    with stage("keras load"):
        model.load_weights(str(top))
    with stage("keras inference"):
        (logits, pooled), seconds = _timed(lambda: [np.asarray(t) for t in both([inputs], training=False)])
    with stage("keras load"):
        mismatches = legacy_file_mismatches(features, Path(no_top))
    return logits.reshape(len(images), -1), seconds, pooled.mean(axis=(1, 2)), mismatches


def compare(reference: np.ndarray, candidate: np.ndarray, label_offset: int = 1, tolerance: float = 1e-4,
            require_top5: bool = False) -> Comparison:
    """Parity metrics over the classes both models share (slim ``label_offset..`` == keras ``0..``)."""
    shared = reference[:, label_offset:]
    ref_prob, cand_prob = _softmax(shared), _softmax(candidate)
    top5 = lambda x: np.argsort(-x, axis=1)[:, :5]
    tolerance = logit_tolerance(reference, tolerance)
    max_dlogit = float(np.max(np.abs(shared - candidate)))
    top1 = shared.argmax(1) == candidate.argmax(1)
    top5_agree = int(sum(set(a) == set(b) for a, b in zip(top5(shared), top5(candidate))))
    return Comparison(
        max_abs_dlogit=max_dlogit, tolerance=tolerance, max_abs_ref_logit=float(np.max(np.abs(reference))),
        max_abs_dprob=float(np.max(np.abs(ref_prob - cand_prob))), top1_agree=int(top1.sum()),
        top5_agree=top5_agree, inputs=int(len(reference)),
        passed=bool(max_dlogit <= tolerance and top1.all() and (not require_top5 or top5_agree == len(reference))),
        ref_top1=shared.argmax(1).tolist(), keras_top1=candidate.argmax(1).tolist(),
        pred_tf_score=float(ref_prob[0].max()), pred_keras_score=float(cand_prob[0].max()))


@dataclass
class SlimReference:
    """What the archive's own graph computes for a batch (see :func:`slim_reference`)."""

    graph_def: object  # the graph that was run: the inference graph, or the frozen graph (kind frozen_pb)
    kind: str  # eval_pbtxt | ckpt_meta | graph_pb | frozen_pb
    graph_path: Path
    endpoints: Endpoints  # the tensors run, found by structure
    passed_over: tuple[str, ...]  # the layout's graphs not taken as the reference, and why
    feeds: CheckpointFeeds | None
    sources: dict[str, int]  # how many fed variables hold EMA / raw values
    checkpoint: str | None  # the layout path of the checkpoint fed
    logits: np.ndarray
    pooled: np.ndarray
    seconds: float  # one timed run (after a warm-up with the same fetches)
    frozen_logits: np.ndarray | None  # the archive's frozen graph on the batch (when it is not the reference)
    raw_logits: np.ndarray | None  # the graph fed the raw values: only when the frozen graph is not slim's values


@timed("tf reference")
def slim_reference(variant, model_dir: Path, batch: np.ndarray) -> SlimReference:
    """Run the archive's inference graph fed slim's evaluation values (or its frozen graph, when it has no
    inference graph) on ``batch``, and the frozen graph for the cross-check; with the raw values too
    when the frozen graph does not match slim's evaluation values (does it hold the raw ones?)."""
    choice = choose_reference(model_dir, variant)
    graph_def, frozen_path, ends = choice.graph_def, frozen_graph(model_dir, variant), choice.endpoints
    outputs = [ends.logits, ends.pooled]
    rows = lambda a: np.asarray(a).reshape(len(batch), -1)  # noqa: E731 (graphs may keep [n, 1, 1, classes])
    if choice.checkpoint is None:  # the frozen graph is the reference
        with graph_session(graph_def, ends.input, outputs) as run:
            run(batch[:1], None, outputs)  # warm-up with the same fetches, outside the timed run
            (logits, pooled), seconds = _timed(lambda: run(batch, None, outputs))
        return SlimReference(graph_def, choice.kind, choice.path, ends, choice.passed_over, None, {}, None,
                             rows(logits), pooled, seconds, None, None)
    kind, graph_path, cf = choice.kind, choice.path, choice.checkpoint_file
    feeds = checkpoint_feeds(graph_def, str(choice.checkpoint))
    frozen = raw = None
    with graph_session(graph_def, ends.input, outputs) as run:  # _raw_logits fetches the logits too
        run(batch[:1], feeds.slim, outputs)  # warm-up with the same fetches, outside the timed run
        (logits, pooled), seconds = _timed(lambda: run(batch, feeds.slim, outputs))
        logits = rows(logits)
        if frozen_path.exists():
            with stage("frozen cross-check"):
                frozen_def = load_graph_def(frozen_path)
                frozen_ends = find_endpoints(frozen_def, variant.family.scope, frozen_path.name)
                frozen = rows(run_graph(frozen_def, batch, None, frozen_ends.logits, frozen_ends.input))
                # the raw values only matter when the frozen graph does not hold slim's evaluation values
                if np.max(np.abs(frozen - logits)) > logit_tolerance(logits):
                    raw = _raw_logits(run, choice, model_dir, variant, batch)
    ema = sum(s == "ema" for s in feeds.sources.values())
    if cf.plain_values == "ema":  # an EMA checkpoint: its plain values are the EMA values
        ema = len(feeds.sources)
    sources = {"ema": ema, "raw": len(feeds.sources) - ema}
    checkpoint = Path(choice.checkpoint).relative_to(model_dir).as_posix()  # as found (layouts may discover it)
    return SlimReference(graph_def, kind, graph_path, ends, choice.passed_over, feeds, sources, checkpoint, logits,
                         pooled, seconds, frozen, raw)


def _raw_logits(run, choice: ReferenceChoice, model_dir: Path, variant, batch):
    """The reference graph fed the raw training values (V3: the ``pristine`` checkpoint's), or None when
    the archive holds none."""
    try:
        raw_prefix, _ = find_checkpoint(model_dir, variant, "raw")
    except FileNotFoundError:
        return None
    raw = checkpoint_feeds(choice.graph_def, str(raw_prefix), raw=True).raw
    return np.asarray(run(batch, raw, choice.endpoints.logits)).reshape(len(batch), -1)


def verify(variant, model_dir: Path, weights_dir: Path, source: Source | None = None, images=(),
           random_count: int = 4, seed: int = 0) -> ParityRecord:
    """Prove one conversion: slim logits (the archive's own inference graph, fed slim's evaluation values;
    or its frozen graph when it has no inference graph) against the Keras model loaded from the converted
    .h5 files, plus the family's graph rewrites (V3: the SE gate constant). ``source`` is what the caller
    knows of the weights' origin (archive location, sha256, pin status, values used): it is reported, not
    checked. Returns the parity record."""
    import keras
    import tensorflow as tf

    spec = variant.family
    model_dir, weights_dir, source = Path(model_dir), Path(weights_dir), source or Source()
    rows = variant.rows
    top, no_top = weights_dir / variant.keras_weights, weights_dir / variant.keras_weights_no_top
    for path in (top, no_top):
        if not path.exists():
            raise FileNotFoundError(f"converted weights not found: {path} (run load_weights.py {variant.name} first)")
    batch = np.concatenate([*(load_image(p, rows)[None] for p in images), random_inputs(rows, random_count, seed)])

    ref = slim_reference(variant, model_dir, batch)
    outputs = [ref.endpoints.logits, ref.endpoints.pooled]
    reference, pooled, raw = ref.logits, ref.pooled, ref.raw_logits
    candidate, keras_seconds, embedding, no_top_mismatches = keras_outputs(variant, top, no_top, batch)
    figures = compare(reference, candidate, variant.label_offset, spec.tolerance, spec.require_top5)
    no_top_reference, no_top_factor = pooled, spec.tolerance

    rewrites = {}
    for name, (description, rewrite) in spec.reference_rewrites.items():
        with stage("tf reference"):
            rewritten, count = rewrite(ref.graph_def)
            rewritten_logits, rewritten_pooled = run_graph(rewritten, batch, ref.feeds and ref.feeds.slim, outputs,
                                                           ref.endpoints.input)
            rewritten_logits = np.asarray(rewritten_logits).reshape(len(batch), -1)
        r = compare(rewritten_logits, candidate, variant.label_offset, spec.rewrite_tolerance)
        rewrites[name] = RewriteFigures(
            description=description, constants=count, max_abs_dlogit=r.max_abs_dlogit, tolerance=r.tolerance,
            top1_agree=r.top1_agree, top5_agree=r.top5_agree, passed=r.passed,
            no_top_max_abs_diff=float(np.max(np.abs(rewritten_pooled.reshape(embedding.shape) - embedding))))
        # the no-top weights are proven against the rewritten graph, with the rewrite's bound
        no_top_reference, no_top_factor = rewritten_pooled, spec.rewrite_tolerance
    no_top_diff = float(np.max(np.abs(no_top_reference.reshape(embedding.shape) - embedding)))
    # the no-top file must hold exactly the no-top model's weights (no mismatches)
    no_top_passed = (not no_top_mismatches and
                     no_top_diff <= no_top_factor * max(1.0, float(np.max(np.abs(no_top_reference)))))

    frozen, frozen_dlogit, frozen_vs_raw = "absent", None, None
    if ref.frozen_logits is not None:
        tol = logit_tolerance(reference)
        frozen_dlogit = float(np.max(np.abs(ref.frozen_logits - reference)))
        frozen = "ema" if frozen_dlogit <= tol else "neither"
        if raw is not None:
            frozen_vs_raw = float(np.max(np.abs(ref.frozen_logits - raw)))
            if frozen == "neither" and frozen_vs_raw <= tol:
                frozen = "raw"
    elif ref.kind == "frozen_pb":
        frozen = "is the reference"

    return ParityRecord(
        **dataclasses.asdict(figures) | {"passed": bool(figures.passed and no_top_passed
                                                        and all(r.passed for r in rewrites.values()))},
        model=variant.stem, name=variant.name, family=variant.family_key, alpha=variant.alpha, rows=rows,
        kind=variant.kind, minimalistic=variant.minimalistic,
        archive_source=source.location, archive_sha256=source.sha256, archive_pin=source.pin_status,
        weight_source=source.values, tolerance_factor=spec.tolerance,
        no_top_max_abs_diff=float(np.max(np.abs(pooled.reshape(embedding.shape) - embedding))),
        no_top_file_mismatches=no_top_mismatches, no_top_passed=no_top_passed, rewrites=rewrites,
        frozen=frozen, frozen_max_abs_dlogit=frozen_dlogit, frozen_vs_raw_max_abs_dlogit=frozen_vs_raw,
        reference=ref.kind, reference_graph=str(Path(ref.graph_path).relative_to(model_dir)),
        reference_checkpoint=ref.checkpoint, reference_sources=ref.sources, reference_logits=ref.endpoints.logits,
        reference_passed_over=list(ref.passed_over),
        inference_time_tf=ref.seconds, inference_time_keras=keras_seconds,
        images=[str(p) for p in images], random_inputs=random_count, seed=seed,
        sha256=Digests(top=sha256_file(top), no_top=sha256_file(no_top)),
        tf_version=versions()[0], keras_version=versions()[1],
        verified_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
