"""Parity: the checkpoint's own TF1 graph ("slim logits") against the converted Keras model.

The reference runs the archive's genuine-layout eval graph with every ``<variable>/read`` tensor fed
the value slim's evaluation restores (the ``/ExponentialMovingAverage`` shadow when the checkpoint has
one, else the raw value). This module is deliberately independent of ``convert.checkpoint``: the
reference must not share the converter's weight-choice code it is meant to check.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .cli import quiet_tf

quiet_tf()

READ_SUFFIX = "/read"
EMA_SUFFIX = "/ExponentialMovingAverage"
INPUT_TENSOR = "input:0"
LOGITS_TENSOR = "MobilenetV2/Logits/output:0"


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


def slim_eval_feeds(graph_def, checkpoint_prefix: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Feeds ``{"<var>/read:0": value}`` with slim's evaluation values, and the source of each
    (``ema`` or ``raw``). A variable the graph reads but the checkpoint lacks is an error."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint_prefix)
    table = reader.get_variable_to_shape_map()
    feeds, sources = {}, {}
    missing = [v for v in read_variables(graph_def) if v not in table]
    if missing:
        raise ValueError(f"checkpoint {checkpoint_prefix} lacks {len(missing)} variable(s) the graph reads: "
                         f"{', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}")
    for var in read_variables(graph_def):
        key = var + EMA_SUFFIX if var + EMA_SUFFIX in table else var
        feeds[f"{var}{READ_SUFFIX}:0"] = reader.get_tensor(key)
        sources[var] = "ema" if key != var else "raw"
    return feeds, sources


def run_graph(graph_def, images: np.ndarray, feeds: dict[str, np.ndarray] | None = None,
              output: str = LOGITS_TENSOR) -> np.ndarray:
    """Import ``graph_def`` into a fresh graph, feed ``input:0`` (and ``feeds``), return ``output``."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run(output, {INPUT_TENSOR: images, **(feeds or {})})


def random_inputs(rows: int, count: int = 4, seed: int = 0) -> np.ndarray:
    """A seeded batch of inputs in [-1, 1] (the model's input range)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (count, rows, rows, 3)).astype(np.float32)


def logit_tolerance(reference_logits: np.ndarray) -> float:
    """The pass threshold on max |Δlogit|: 1e-4 · max(1, max |reference logit|)."""
    return 1e-4 * max(1.0, float(np.max(np.abs(reference_logits))))
