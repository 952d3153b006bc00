"""Parity: the checkpoint's own TF1 graph ("slim logits") against the converted Keras model.

The reference runs the archive's genuine-layout eval graph with every ``<variable>/read`` tensor fed
the value slim's evaluation restores (the ``/ExponentialMovingAverage`` shadow when the checkpoint has
one, else the raw value). This module is deliberately independent of ``convert.checkpoint``: the
reference must not share the converter's weight-choice code it is meant to check.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .cli import quiet_tf
from .fsutil import sha256_file

quiet_tf()

READ_SUFFIX = "/read"
EMA_SUFFIX = "/ExponentialMovingAverage"
INPUT_TENSOR = "input:0"
LOGITS_TENSOR = "MobilenetV2/Logits/output:0"
POOLED_TENSOR = "MobilenetV2/Logits/AvgPool:0"


def load_graph_def(path: str | Path):
    """A GraphDef from a ``.pbtxt`` (text) or ``.pb`` (binary) file."""
    import tensorflow as tf
    from google.protobuf import text_format

    path = Path(path)
    graph_def = tf.compat.v1.GraphDef()
    if path.suffix == ".pbtxt":
        text_format.Parse(path.read_text(), graph_def)
    else:
        graph_def.ParseFromString(path.read_bytes())
    return graph_def


def read_variables(graph_def) -> list[str]:
    """Names of the variables an eval graph reads through ``<name>/read``."""
    variables = {n.name for n in graph_def.node if n.op in ("VariableV2", "Variable")}
    return sorted(n.name[: -len(READ_SUFFIX)] for n in graph_def.node
                  if n.name.endswith(READ_SUFFIX) and n.name[: -len(READ_SUFFIX)] in variables)


@dataclass
class CheckpointFeeds:
    """Values for every ``<var>/read:0`` tensor of an eval graph, read once from a checkpoint."""

    slim: dict[str, np.ndarray]  # what slim's evaluation restores: the EMA shadow when there is one
    raw: dict[str, np.ndarray]  # the raw variable values
    sources: dict[str, str]  # variable -> "ema" or "raw" (the source of its ``slim`` value)


def checkpoint_feeds(graph_def, checkpoint_prefix: str) -> CheckpointFeeds:
    """Read the values an eval graph needs from a checkpoint. A variable the graph reads but the
    checkpoint lacks, or a tensor that cannot be read, is a ValueError naming it."""
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
        feeds.raw[tensor] = read(var)
        has_shadow = var + EMA_SUFFIX in table
        feeds.slim[tensor] = read(var + EMA_SUFFIX) if has_shadow else feeds.raw[tensor]
        feeds.sources[var] = "ema" if has_shadow else "raw"
    return feeds


@contextlib.contextmanager
def graph_session(graph_def):
    """Import ``graph_def`` into a fresh graph once; yields ``run(images, feeds=None, output=LOGITS_TENSOR)``,
    which feeds ``input:0`` (and ``feeds``) and returns ``output`` (a tensor name or a list of them)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        yield lambda images, feeds=None, output=LOGITS_TENSOR: sess.run(output, {INPUT_TENSOR: images, **(feeds or {})})


def run_graph(graph_def, images: np.ndarray, feeds: dict[str, np.ndarray] | None = None, output=LOGITS_TENSOR):
    """One run of ``graph_def`` in its own session (see :func:`graph_session`)."""
    with graph_session(graph_def) as run:
        return run(images, feeds, output)


def random_inputs(rows: int, count: int = 4, seed: int = 0) -> np.ndarray:
    """A seeded batch of inputs in [-1, 1] (the model's input range)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (count, rows, rows, 3)).astype(np.float32)


def logit_tolerance(reference_logits: np.ndarray) -> float:
    """The pass threshold on max |Δlogit|: 1e-4 · max(1, max |reference logit|)."""
    return 1e-4 * max(1.0, float(np.max(np.abs(reference_logits))))


# --------------------------------------------------------------------------------------------------
# Verification of one converted variant

def load_image(path: str | Path, rows: int) -> np.ndarray:
    """One image as the model input: decode as 8-bit RGB -> float32 -> bilinear resize (no antialiasing)
    to rows x rows -> x / 127.5 - 1."""
    import tensorflow as tf

    try:
        image = tf.io.decode_image(Path(path).read_bytes(), channels=3, dtype=tf.uint8, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        raise ValueError(f"cannot decode image {path}: not a JPEG, PNG, GIF or BMP file") from None
    image = tf.image.resize(tf.cast(image, tf.float32), (rows, rows), method="bilinear")
    return (image.numpy() / 127.5 - 1.0).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def archive_graph(model_dir: Path, model_name: str):
    """The reference graph of an extracted archive: its ``_eval.pbtxt``, else the ``.ckpt.meta`` graph."""
    eval_graph = model_dir / f"{model_name}_eval.pbtxt"
    if eval_graph.exists():
        return load_graph_def(eval_graph), "eval_pbtxt"
    meta = model_dir / f"{model_name}.ckpt.meta"
    if not meta.exists():
        raise FileNotFoundError(f"{model_dir} has neither {eval_graph.name} nor {meta.name}: no reference graph")
    import tensorflow as tf

    meta_graph = tf.compat.v1.MetaGraphDef()
    meta_graph.ParseFromString(meta.read_bytes())
    return meta_graph.graph_def, "ckpt_meta"


def _timed(fn):
    import time

    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def keras_logits(alpha: str, rows: int, weights_path: Path, images: np.ndarray) -> tuple[np.ndarray, float]:
    """Logits (no softmax) of ``keras.applications.MobileNetV2`` loaded from ``weights_path``, and the
    inference time in seconds. The model is released afterwards."""
    import keras

    try:
        model = keras.applications.MobileNetV2(alpha=float(alpha), input_shape=(rows, rows, 3),
                                               weights=str(weights_path), classifier_activation=None)
        model(images[:1], training=False)  # build/trace outside the timed call
        out, seconds = _timed(lambda: np.asarray(model(images, training=False)))
        return out, seconds
    finally:
        keras.backend.clear_session(free_memory=True)


def keras_embedding(alpha: str, rows: int, weights_path: Path, images: np.ndarray) -> np.ndarray:
    """Average-pooled features of the no-top model loaded from ``weights_path``."""
    import keras

    try:
        model = keras.applications.MobileNetV2(alpha=float(alpha), input_shape=(rows, rows, 3), include_top=False,
                                               weights=str(weights_path), pooling="avg")
        return np.asarray(model(images, training=False))
    finally:
        keras.backend.clear_session(free_memory=True)


def compare(reference: np.ndarray, candidate: np.ndarray, label_offset: int = 1) -> dict:
    """Parity metrics over the classes both models share (slim ``label_offset..`` == keras ``0..``)."""
    shared = reference[:, label_offset:]
    ref_prob, cand_prob = _softmax(shared), _softmax(candidate)
    top5 = lambda x: np.argsort(-x, axis=1)[:, :5]
    tolerance = logit_tolerance(reference)
    max_dlogit = float(np.max(np.abs(shared - candidate)))
    top1 = shared.argmax(1) == candidate.argmax(1)
    return {
        "max_abs_dlogit": max_dlogit,
        "tolerance": tolerance,
        "max_abs_ref_logit": float(np.max(np.abs(reference))),
        "max_abs_dprob": float(np.max(np.abs(ref_prob - cand_prob))),
        "top1_agree": int(top1.sum()),
        "top5_agree": int(sum(set(a) == set(b) for a, b in zip(top5(shared), top5(candidate)))),
        "inputs": int(len(reference)),
        "passed": bool(max_dlogit <= tolerance and top1.all()),
        "ref_top1": shared.argmax(1).tolist(),
        "keras_top1": candidate.argmax(1).tolist(),
        "pred_tf_score": float(ref_prob[0].max()),
        "pred_keras_score": float(cand_prob[0].max()),
    }


def sidecar_weight_source(weights_dir: Path, variant) -> str | None:
    """What the converted weights were read from, per the converter's JSON sidecar (e.g. ``ema 158, raw 104``)."""
    from .keras_weights import read_sidecar

    by_source = (read_sidecar(weights_dir, variant) or {}).get("weights", {}).get("by_source", {})
    return ", ".join(f"{k} {v}" for k, v in sorted(by_source.items())) or None


def verify(variant, model_dir: Path, weights_dir: Path, images=(), random_count: int = 4, seed: int = 0,
           ) -> dict:
    """Prove one conversion: slim logits (the archive's graph, fed slim's evaluation values) against
    the Keras model loaded from the converted .h5 files. Returns the parity record."""
    import keras
    import tensorflow as tf

    model_dir, weights_dir = Path(model_dir), Path(weights_dir)
    rows, name = variant.rows, variant.model_name
    prefix = str(model_dir / f"{name}.ckpt")
    top, no_top = weights_dir / variant.keras_weights, weights_dir / variant.keras_weights_no_top
    for path in (top, no_top):
        if not path.exists():
            raise FileNotFoundError(f"converted weights not found: {path} (run load_weights.py {variant.name} first)")
    batch = np.concatenate([*(load_image(p, rows)[None] for p in images), random_inputs(rows, random_count, seed)])

    graph_def, kind = archive_graph(model_dir, name)
    feeds = checkpoint_feeds(graph_def, prefix)
    frozen_path = model_dir / f"{name}_frozen.pb"
    outputs = [LOGITS_TENSOR, POOLED_TENSOR]
    with graph_session(graph_def) as run:
        run(batch, feeds.slim, outputs)  # warm-up with the same fetches, outside the timed run
        (reference, pooled), tf_seconds = _timed(lambda: run(batch, feeds.slim, outputs))
        raw = run(batch, feeds.raw) if frozen_path.exists() else None
    candidate, keras_seconds = keras_logits(variant.alpha, rows, top, batch)
    record = compare(reference, candidate, variant.label_offset)
    embedding = keras_embedding(variant.alpha, rows, no_top, batch)
    no_top_diff = float(np.max(np.abs(pooled.reshape(embedding.shape) - embedding)))
    no_top_tol = 1e-4 * max(1.0, float(np.max(np.abs(pooled))))
    record["no_top_max_abs_diff"], record["no_top_passed"] = no_top_diff, no_top_diff <= no_top_tol

    record["frozen"] = "absent"
    if raw is not None:
        frozen = run_graph(load_graph_def(frozen_path), batch)
        record["frozen_max_abs_dlogit"] = float(np.max(np.abs(frozen - reference)))
        record["frozen_vs_raw_max_abs_dlogit"] = float(np.max(np.abs(frozen - raw)))
        tol = logit_tolerance(reference)
        record["frozen"] = ("ema" if record["frozen_max_abs_dlogit"] <= tol
                            else "raw" if record["frozen_vs_raw_max_abs_dlogit"] <= tol else "neither")

    record["passed"] = bool(record["passed"] and record["no_top_passed"])
    record.update({
        "model": name, "name": variant.name, "alpha": variant.alpha, "rows": rows,
        "reference": kind, "reference_sources": {"ema": sum(s == "ema" for s in feeds.sources.values()),
                                                 "raw": sum(s == "raw" for s in feeds.sources.values())},
        "weight_source": sidecar_weight_source(weights_dir, variant),
        "preds_agree": record["top1_agree"] == record["inputs"],
        "max_vector_difference": record["max_abs_dlogit"],
        "inference_time_tf": tf_seconds, "inference_time_keras": keras_seconds,
        "images": [str(p) for p in images], "random_inputs": random_count, "seed": seed,
        "sha256": {"top": sha256_file(top), "no_top": sha256_file(no_top)},
        "tf_version": tf.__version__, "keras_version": keras.__version__,
        "verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    return record
