"""The models under evaluation, each as a :class:`Scorer` per preprocessing.

* ``converted`` / ``keras-imagenet``: the family's keras.applications model (an .h5 path, or Keras'
  own ``weights="imagenet"``), built once and shared by every preprocessing;
* ``slim``: the archive's reference graph as :func:`convert.parity.choose_reference` chooses it
  (fed slim's evaluation values: EMA), one session for every preprocessing. Parsed graphs are kept in a
  small cache keyed by the reference file's content (a ``.pbtxt`` takes seconds to parse). A quantized
  archive's graph is taken as :func:`convert.quant.parity.graph_reference` takes it, FakeQuants included;
* quantized variants also: ``twin`` (the fake-quant ``.keras``), ``tflite`` (our uint8 ``.tflite``) and
  ``archive-tflite`` (the archive's own), the two ``.tflite`` run with LiteRT on the input quantized as
  each file says.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..archive import reference_graph
from ..errors import UserError
from ..families.base import to_keras_input
from ..fsutil import sha256_file
from ..manifest import Variant
from ..parity import archive_graph, checkpoint_feeds, choose_reference, graph_session
from .preprocess import to_unit_range

GRAPH_CACHE_SIZE = 3


@dataclass
class Scorer:
    """One model under one preprocessing: ``predict(batch) -> logits over the 1000 Keras classes``."""

    model: str  # one of records.MODELS
    preprocessing: str
    predict: object  # callable(np.ndarray) -> np.ndarray
    seconds: float = 0.0
    top1: int = 0
    top5: int = 0
    images: int = 0

    def logits(self, images: np.ndarray, pad_to: int | None = None) -> np.ndarray:
        """Logits of a batch; a short batch is zero-padded to ``pad_to`` (one traced shape)."""
        n = len(images)
        if pad_to and n < pad_to:
            images = np.concatenate([images, np.zeros((pad_to - n, *images.shape[1:]), images.dtype)])
        return np.asarray(self.predict(images)).reshape(len(images), -1)[:n]

    def score(self, images: np.ndarray, labels: np.ndarray, pad_to: int | None = None) -> None:
        start = time.perf_counter()
        logits = self.logits(images, pad_to)
        self.seconds += time.perf_counter() - start
        top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]  # ties (uint8 outputs): the lower class first
        self.top1 += int(np.sum(top5[:, 0] == labels))
        self.top5 += int(np.sum(np.any(top5 == labels[:, None], axis=1)))
        self.images += len(images)


def _compiled(model):
    """``model`` as one traced inference function (batches are padded to one shape: one trace)."""
    import tensorflow as tf  # lazy: importing TF takes 3.4 s (measured), which `--help` and dataset errors do not pay

    fn = tf.function(lambda x: model(x, training=False))
    return lambda x: fn(tf.constant(x, tf.float32)).numpy()


def keras_scorers(variant: Variant, model: str, preprocessings, weights: str) -> list[Scorer]:
    """The keras.applications model as a user builds it (``weights``: an .h5 path or "imagenet"), built
    once and shared by every preprocessing. Under keras preprocessing it gets what keras' own
    ``preprocess_input`` gives (V3's model rescales 0..255 itself); under slim preprocessing, the [-1, 1]
    input mapped onto the model's input range."""
    predict = _compiled(variant.family.keras_model(variant, True, weights=weights, classifier_activation=None))
    takes_pixels = tuple(variant.family.keras_input_range) == (0.0, 255.0)
    scorers = []
    for p in preprocessings:
        if p == "keras":
            fn = predict if takes_pixels else (lambda x: predict(to_unit_range(x)))
        else:
            fn = lambda x: predict(to_keras_input(x, variant.family.keras_input_range))  # noqa: E731
        scorers.append(Scorer(model, p, fn))
    return scorers


def imagenet_scorers(variant: Variant, preprocessings) -> list[Scorer]:
    try:
        return keras_scorers(variant, "keras-imagenet", preprocessings, "imagenet")
    except Exception as exc:  # offline (URL fetch failure), no such weights, a corrupt cached file
        raise UserError(f"cannot load keras.applications' own weights=\"imagenet\" for {variant.name}: "
                        f"{type(exc).__name__}: {exc} (Keras downloads them into ~/.keras/models/ on first "
                        f"use, which needs the internet; run without --compare-keras offline)") from None


def _fixed_batch(graph_def, input_name: str) -> int | None:
    for node in graph_def.node:
        if node.name == input_name and "shape" in node.attr:
            dims = node.attr["shape"].shape.dim
            if dims and dims[0].size > 0:
                return int(dims[0].size)
    return None


_graph_cache: dict[str, tuple] = {}


def cached_archive_graph(model_dir: Path, variant: Variant):
    """:func:`convert.parity.archive_graph`, memoised by the reference file's content (the same archive
    is often evaluated again in one process, from another temporary extraction)."""
    path = reference_graph(model_dir, variant)
    if path is None:
        return archive_graph(model_dir, variant)
    key = f"{variant.stem}:{sha256_file(path)}"
    if key not in _graph_cache:
        graph_def, kind, found, passed_over = archive_graph(model_dir, variant)
        while len(_graph_cache) >= GRAPH_CACHE_SIZE:
            _graph_cache.pop(next(iter(_graph_cache)))
        _graph_cache[key] = (graph_def, kind, None if found is None else found.relative_to(model_dir), passed_over)
    graph_def, kind, relative, passed_over = _graph_cache[key]
    return graph_def, kind, None if relative is None else Path(model_dir) / relative, passed_over


def _graph_scorers(stack: contextlib.ExitStack, variant: Variant, graph_def, endpoints, feeds,
                   preprocessings) -> list[Scorer]:
    """An archive graph (``endpoints``: its tensors; ``feeds``: its variables' values, or None for a frozen
    graph) as the ``slim`` scorers of every preprocessing, one session for all; the background class is dropped."""
    run = stack.enter_context(graph_session(graph_def, endpoints.input, [endpoints.logits]))
    fixed = _fixed_batch(graph_def, endpoints.input.split(":")[0])
    offset = variant.label_offset

    def predict(x):
        if not fixed:
            return np.asarray(run(x, feeds, endpoints.logits)).reshape(len(x), -1)[:, offset:]
        out = [Scorer("", "", lambda c: run(c, feeds, endpoints.logits)).logits(x[i:i + fixed], fixed)
               for i in range(0, len(x), fixed)]  # a graph with a fixed batch size (frozen graphs)
        return np.concatenate(out)[:, offset:]

    return [Scorer("slim", p, predict if p == "slim" else (lambda x: predict(to_unit_range(x))))
            for p in preprocessings]


def slim_scorers(stack: contextlib.ExitStack, variant: Variant, model_dir: Path, preprocessings) -> list[Scorer]:
    """The archive's own slim graph, restored as parity restores it (one session for all preprocessings)."""
    try:
        choice = choose_reference(model_dir, variant, cached_archive_graph)
        feeds = None if choice.checkpoint is None else checkpoint_feeds(choice.graph_def, str(choice.checkpoint)).slim
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"{variant.name}: cannot restore the archive's slim graph: {exc}") from None
    return _graph_scorers(stack, variant, choice.graph_def, choice.endpoints, feeds, preprocessings)


# --------------------------------------------------------------------------------------------------
# Quantized variants (slim preprocessing only: the graph's input, and the .tflite input grid, are [-1, 1])

def quant_graph_scorers(stack: contextlib.ExitStack, variant: Variant, model_dir: Path, preprocessings) -> list[Scorer]:
    """A quantized archive's own graph as it is, FakeQuants included (:func:`convert.quant.parity.graph_reference`:
    its inference graph fed the checkpoint's values, ranges too, else its frozen graph)."""
    from ..quant.parity import graph_reference

    try:
        ref = graph_reference(Path(model_dir), variant)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"{variant.name}: cannot restore the archive's quantized graph: {exc}") from None
    return _graph_scorers(stack, variant, ref.graph_def, ref.endpoints, ref.feeds, preprocessings)


def twin_scorers(variant: Variant, path: Path, preprocessings) -> list[Scorer]:
    """The fake-quant Keras twin as a user loads it (``keras.saving.load_model``; its layers are registered by
    ``import convert``): input [-1, 1], output the 1000-class probabilities (ranked as they are)."""
    import keras

    if not path.is_file():
        raise UserError(f"quantized twin of {variant.name} not found: {path} (run `python -m convert run "
                        f"{variant.name}` first, or pass --weights-dir)")
    try:
        model = keras.saving.load_model(path)
    except Exception as exc:  # a truncated or foreign file: Keras raises several kinds
        raise UserError(f"cannot load the quantized twin {path}: {type(exc).__name__}: {exc}") from None
    return [Scorer("twin", p, _compiled(model)) for p in preprocessings]


def tflite_scorers(variant: Variant, model: str, path: Path, preprocessings, background: int = 0) -> list[Scorer]:
    """A uint8 ``.tflite`` run with LiteRT (:func:`convert.quant.tflite.run_tflite`), fed the [-1, 1] input
    quantized as the file's input says (:meth:`~convert.quant.tflite.InputQuant.to_uint8`); its first
    ``background`` output classes are dropped (the archive's .tflite: 1001 classes). Its input must be
    [1, rows, rows, 3] uint8, else a :class:`~convert.quant.tflite.TfliteInputError` names the file. One
    interpreter serves every batch."""
    from ..quant.tflite import TfliteRunner, input_quant

    quant = input_quant(path, variant.rows)
    run = TfliteRunner(path)

    def predict(x):
        out = run(quant.to_uint8(x))[:, background:]
        if out.shape[1] != variant.classes - variant.label_offset:
            raise UserError(f"{path}: {out.shape[1] + background} output classes, expected "
                            f"{variant.classes - variant.label_offset + background}")
        return out

    return [Scorer(model, p, predict) for p in preprocessings]


def quant_scorers(stack: contextlib.ExitStack, variant: Variant, weights_dir: Path, model_dir: Path | None,
                  preprocessings) -> list[Scorer]:
    """A quantized variant's models beyond the float .h5: the twin and our .tflite (``weights_dir``), and,
    with ``model_dir`` (the extracted archive), the archive's own .tflite and graph."""
    from ..archive import tflite_file

    family = variant.family
    ours = Path(weights_dir) / family.tflite_file(variant)
    if not ours.is_file():
        raise UserError(f"converted .tflite of {variant.name} not found: {ours} (run `python -m convert run "
                        f"{variant.name}` first, or pass --weights-dir)")
    scorers = twin_scorers(variant, Path(weights_dir) / family.twin_file(variant), preprocessings)
    scorers += tflite_scorers(variant, "tflite", ours, preprocessings)
    if model_dir is not None:
        try:
            theirs = tflite_file(model_dir, variant)
        except FileNotFoundError as exc:
            raise UserError(f"{variant.name}: {exc}") from None
        scorers += tflite_scorers(variant, "archive-tflite", theirs, preprocessings, background=variant.label_offset)
        scorers += quant_graph_scorers(stack, variant, model_dir, preprocessings)
    return scorers
