"""ImageNet accuracy: ``python -m convert evaluate NAME… --imagenet-dir DIR`` (top-1 / top-5).

Evaluates, per variant and per preprocessing:

* ``converted``: the converted Keras weights (``weights/<keras file>.h5``) loaded with the family's
  keras.applications constructor, as a user would;
* ``slim``: the archive's own slim inference graph, restored as :mod:`convert.parity` restores it
  (every ``<var>/read`` fed the values slim's evaluation restores: the EMA values);
* ``keras-imagenet`` (``--compare-keras``): keras.applications' own ``weights="imagenet"``.

Preprocessing (``--preprocess slim|keras|both``):

* ``slim``: ``inception_preprocessing.preprocess_for_eval`` — decode to float in [0, 1], central crop of
  87.5 %, bilinear resize with TF1 semantics (``align_corners=False, half_pixel_centers=False``) to
  rows x rows, then ``(x - 0.5) * 2``;
* ``keras``: what the keras.applications docs show — ``keras.utils.load_img(path, target_size=(r, r))``
  (the whole image, nearest-neighbour resize, as load_img's default ``interpolation="nearest"``;
  computed here with TF ops, ``tf.image.resize(method="nearest")``, which samples the same source
  pixel ``floor((i + 0.5) * in / out)`` as PIL's NEAREST) then the family's ``preprocess_input``
  (V1/V2: ``x / 127.5 - 1``; V3: raw 0..255 into the model's own ``Rescaling`` layer,
  ``include_preprocessing=True``). The slim graph is fed ``x / 127.5 - 1`` of the same pixels.

Dataset layouts: ``DIR/<wnid>/*.JPEG`` (the ILSVRC2012 val folder layout), or a flat folder with
``--labels FILE``: slim's ``imagenet_2012_validation_synset_labels.txt`` (one wnid per line, for the
files in sorted name order) or lines ``filename,wnid`` (a header line, file names without extension and
more fields after the wnid, as in Kaggle's ``LOC_val_solution.csv``, are accepted). Class ids are Keras' (``convert/data/
imagenet_class_index.json``, the 1000 ILSVRC2012 wnids in sorted order); slim class k = Keras class
k - label_offset. Results merge into ``results/accuracy.json`` and ``results/ACCURACY.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .env import default_cache, quiet_tf
from .errors import UserError
from . import cards
from .fsutil import atomic_write_bytes, file_lock

quiet_tf()

DATA_DIR = Path(__file__).resolve().parent / "data"
CLASS_INDEX_PATH = DATA_DIR / "imagenet_class_index.json"
PREPROCESSINGS = ("slim", "keras")
MODELS = ("converted", "slim", "keras-imagenet")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".gif")
MAX_UNREADABLE = 0.01  # more than 1 % unreadable images is an error
CENTRAL_FRACTION = 0.875
ACCURACY_JSON, ACCURACY_MD, LOCK_NAME = "accuracy.json", "ACCURACY.md", ".accuracy.lock"
RECORD_KEYS = ("name", "model", "preprocessing", "images", "top1", "top5", "published_top1", "published_top5",
               "images_per_s")
_WNID = re.compile(r"^n\d{8}$")


# --------------------------------------------------------------------------------------------------
# Classes

_class_index: list[tuple[str, str]] | None = None


def class_index() -> list[tuple[str, str]]:
    """The 1000 ILSVRC2012 classes in Keras order: [(wnid, name), …] (shipped, never downloaded)."""
    global _class_index
    if _class_index is None:
        doc = json.loads(CLASS_INDEX_PATH.read_text())
        _class_index = [tuple(doc[str(i)]) for i in range(len(doc))]
    return _class_index


def wnid_to_class() -> dict[str, int]:
    """wnid -> Keras class index (0..999)."""
    return {wnid: i for i, (wnid, _) in enumerate(class_index())}


# --------------------------------------------------------------------------------------------------
# Datasets

@dataclass
class Dataset:
    """Image files and their Keras class indices (parallel lists), in evaluation order."""

    root: Path
    files: list[Path]
    labels: list[int]
    layout: str  # "folders" | "synset-lines" | "filename,wnid"

    def __len__(self) -> int:
        return len(self.files)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _folder_layout(root: Path) -> tuple[list[Path], list[int]]:
    known = wnid_to_class()
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if p.name not in known]
    if unknown:
        raise UserError(f"{root}: unknown wnid folder(s) {', '.join(repr(u) for u in unknown[:5])}"
                        f"{' …' if len(unknown) > 5 else ''}; expected only ILSVRC2012 class folders such as "
                        f"n01440764/ (or a flat folder with --labels FILE)")
    files, labels = [], []
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if _is_image(path):
                files.append(path)
                labels.append(known[folder.name])
    return files, labels


def _read_labels(labels_file: Path, root: Path) -> tuple[list[Path], list[int], str]:
    known = wnid_to_class()
    try:
        lines = [(i + 1, line.strip()) for i, line in enumerate(labels_file.read_text().splitlines())]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read labels file {labels_file}: {exc}") from None
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise UserError(f"labels file {labels_file} is empty")
    images = sorted(p for p in root.iterdir() if _is_image(p))
    if not images:
        raise UserError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}) for labels file {labels_file}")

    def cls(n: int, wnid: str) -> int:
        if wnid not in known:
            raise UserError(f"{labels_file}:{n}: {wnid!r} is not an ILSVRC2012 wnid (like n01440764)")
        return known[wnid]

    if "," in lines[0][1]:  # filename,wnid (also Kaggle's LOC_val_solution.csv: a header, no extension, boxes)
        by_name: dict[str, int] = {}
        for n, line in lines:
            name, _, rest = (part.strip() for part in line.partition(","))
            wnid = rest.split()[0] if rest.split() else ""
            if n == lines[0][0] and not _WNID.match(wnid):
                continue  # a header line
            if not name:
                raise UserError(f"{labels_file}:{n}: expected 'filename,wnid', got {line!r}")
            if name in by_name:
                raise UserError(f"{labels_file}:{n}: {name!r} is listed twice")
            by_name[name] = cls(n, wnid)
        key = lambda p: p.name if p.name in by_name else p.stem  # noqa: E731 (file name, or without extension)
        present = {key(p) for p in images}
        missing = [name for name in by_name if name not in present]
        unlabelled = [p.name for p in images if key(p) not in by_name]
        if missing or unlabelled:
            parts = []
            if missing:
                parts.append(f"{len(missing)} listed file(s) not in {root} (e.g. {', '.join(missing[:3])})")
            if unlabelled:
                parts.append(f"{len(unlabelled)} image(s) in {root} not listed (e.g. {', '.join(unlabelled[:3])})")
            raise UserError(f"labels file {labels_file} does not match the files: {'; '.join(parts)}")
        return images, [by_name[key(p)] for p in images], "filename,wnid"
    if len(lines) != len(images):
        raise UserError(f"labels file {labels_file} does not match the files: it has {len(lines)} wnid line(s) "
                        f"but {root} holds {len(images)} image(s) (one wnid per image, in sorted file-name order)")
    return images, [cls(n, line) for n, line in lines], "synset-lines"


def balanced_subset(files: list[Path], labels: list[int], limit: int) -> tuple[list[Path], list[int]]:
    """A deterministic class-balanced subset: round-robin over the classes (sorted), each class's files
    in sorted order, until ``limit`` images are taken."""
    by_class: dict[int, list[Path]] = {}
    for path, label in zip(files, labels):
        by_class.setdefault(label, []).append(path)
    queues = [sorted(by_class[c]) for c in sorted(by_class)]
    order = [c for c in sorted(by_class)]
    out_files, out_labels, depth = [], [], 0
    while len(out_files) < limit and any(depth < len(q) for q in queues):
        for c, q in zip(order, queues):
            if depth < len(q) and len(out_files) < limit:
                out_files.append(q[depth])
                out_labels.append(c)
        depth += 1
    return out_files, out_labels


def scan_dataset(root: str | Path, labels_file: str | Path | None = None, limit: int | None = None) -> Dataset:
    """The images of an ImageNet-style folder and their Keras class indices; bad input is a UserError."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--imagenet-dir {root} is not a directory")
    if labels_file is not None:
        labels_file = Path(labels_file)
        if not labels_file.is_file():
            raise UserError(f"labels file not found: {labels_file}")
        files, labels, layout = _read_labels(labels_file, root)
    else:
        if not any(p.is_dir() for p in root.iterdir()):
            loose = any(_is_image(p) for p in root.iterdir())
            raise UserError(f"{root} holds no images" if not loose else
                            f"{root} holds images but no <wnid>/ class folders; give --labels FILE for a flat folder")
        files, labels = _folder_layout(root)
        layout = "folders"
    if not files:
        raise UserError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit must be at least 1, got {limit}")
        files, labels = balanced_subset(files, labels, limit)
    return Dataset(root, files, labels, layout)


# --------------------------------------------------------------------------------------------------
# Preprocessing (TF ops, run inside tf.data)

def decode(tf, data, as_pillow: bool = False):
    """Encoded bytes -> uint8 RGB (grey and RGBA images become RGB; animations their first frame).

    ``as_pillow``: JPEGs with libjpeg's accurate integer IDCT, which gives Pillow's pixels exactly (what
    ``keras.utils.load_img`` reads); otherwise TF's default JPEG decoding, as slim's evaluation reads."""
    if not as_pillow:
        return tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    return tf.cond(tf.io.is_jpeg(data),
                   lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                   lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False))


def slim_preprocess(tf, image, rows: int):
    """slim ``inception_preprocessing.preprocess_for_eval``: uint8 image -> [-1, 1] float32 rows x rows x 3."""
    image = tf.image.convert_image_dtype(image, tf.float32)  # [0, 1]
    image = tf.image.central_crop(image, central_fraction=CENTRAL_FRACTION)
    image = tf.compat.v1.image.resize_bilinear(image[None], [rows, rows], align_corners=False,
                                               half_pixel_centers=False)[0]
    return (image - 0.5) * 2.0


def keras_pixels(tf, image, rows: int):
    """``keras.utils.load_img(path, target_size=(rows, rows))`` as float32 pixels in 0..255 (whole image,
    nearest-neighbour resize)."""
    image = tf.image.resize(image, (rows, rows), method="nearest")
    return tf.cast(image, tf.float32)


def to_unit_range(x):
    """0..255 pixels -> [-1, 1]: keras' ``preprocess_input`` for V1/V2 (mode "tf"), V3's Rescaling layer."""
    return x / 127.5 - 1.0


def preprocess_file(path: str | Path, rows: int, preprocessing: str) -> np.ndarray:
    """One image through one preprocessing, as the evaluation feeds it: ``slim`` -> [-1, 1];
    ``keras`` -> 0..255 pixels (the model's own preprocessing follows)."""
    import tensorflow as tf

    data = tf.io.read_file(str(path))
    if preprocessing == "slim":
        return slim_preprocess(tf, decode(tf, data), rows).numpy()
    return keras_pixels(tf, decode(tf, data, as_pillow=True), rows).numpy()


def make_pipeline(dataset: Dataset, rows: int, preprocessings: tuple[str, ...], batch_size: int):
    """A tf.data pipeline yielding batches ``{"index": int32[b], <preprocessing>: float32[b, r, r, 3]}``;
    decoding runs in parallel with inference (AUTOTUNE map + prefetch). Unreadable images are dropped
    (their indices are missing from the batches)."""
    import tensorflow as tf

    paths = [str(p) for p in dataset.files]

    def load(index, path):
        data = tf.io.read_file(path)
        out = {"index": index}
        if "slim" in preprocessings:
            out["slim"] = slim_preprocess(tf, decode(tf, data), rows)
        if "keras" in preprocessings:
            out["keras"] = keras_pixels(tf, decode(tf, data, as_pillow=True), rows)
        return out

    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int32), tf.constant(paths)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=False)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------------------
# Models

@dataclass
class Scorer:
    """One model under one preprocessing: ``predict(batch) -> logits over the 1000 Keras classes``."""

    model: str  # "converted" | "slim" | "keras-imagenet"
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
        top5 = np.argsort(-logits, axis=1)[:, :5]
        self.top1 += int(np.sum(top5[:, 0] == labels))
        self.top5 += int(np.sum(np.any(top5 == labels[:, None], axis=1)))
        self.images += len(images)


def _compiled(model):
    """``model`` as one traced inference function (batches are padded to one shape: one trace)."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False))
    return lambda x: fn(tf.constant(x, tf.float32)).numpy()


def keras_scorers(variant, model: str, preprocessings, weights: str) -> list[Scorer]:
    """The keras.applications model as a user builds it (``weights``: an .h5 path or "imagenet"), built
    once and shared by every preprocessing. Under keras preprocessing it gets what keras' own
    ``preprocess_input`` gives (V3's model rescales 0..255 itself); under slim preprocessing, the [-1, 1]
    input mapped onto the model's input range."""
    from .families.base import to_keras_input

    built = []

    def net():
        if not built:
            built.append(_compiled(variant.spec.keras_model(variant, True, weights=weights,
                                                            classifier_activation=None)))
        return built[0]

    takes_pixels = tuple(variant.spec.keras_input_range) == (0.0, 255.0)
    scorers = []
    for p in preprocessings:
        predict = net()
        if p == "keras":
            fn = predict if takes_pixels else (lambda x, predict=predict: predict(to_unit_range(x)))
        else:
            fn = lambda x, predict=predict: predict(to_keras_input(x, variant.spec.keras_input_range))
        scorers.append(Scorer(model, p, fn))
    return scorers


def imagenet_scorers(variant, preprocessings) -> list[Scorer]:
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


_graph_cache: dict[str, object] = {}


def _archive_graph(model_dir: Path, variant):
    """:func:`convert.parity.archive_graph`'s GraphDef, memoised by the reference file's content (parsing a
    ``.pbtxt`` takes seconds; the same archive is often evaluated again in one process)."""
    from .archive import reference_graph
    from .fsutil import sha256_file
    from .parity import archive_graph

    path = reference_graph(model_dir, variant)
    key = f"{variant.stem}:{sha256_file(path)}" if path is not None else None
    if key is None or key not in _graph_cache:
        graph_def = archive_graph(model_dir, variant)[0]
        if key is None:
            return graph_def
        while len(_graph_cache) >= 3:  # keep a few graphs at most
            _graph_cache.pop(next(iter(_graph_cache)))
        _graph_cache[key] = graph_def
    return _graph_cache[key]


def slim_scorers(stack: contextlib.ExitStack, variant, model_dir: Path, preprocessings) -> list[Scorer]:
    """The archive's own slim graph, restored as parity restores it (one session for all preprocessings)."""
    from .archive import find_checkpoint, frozen_graph
    from .parity import checkpoint_feeds, graph_session, load_graph_def

    nodes = variant.spec.nodes
    graph_def = _archive_graph(model_dir, variant)
    feeds = None
    if graph_def is not None:
        try:
            prefix, _ = find_checkpoint(model_dir, variant, "ema")
            feeds = checkpoint_feeds(graph_def, str(prefix)).slim
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(f"{variant.name}: cannot restore the archive's slim graph: {exc}") from None
    elif frozen_graph(model_dir, variant).exists():
        graph_def = load_graph_def(frozen_graph(model_dir, variant))
    else:
        raise UserError(f"{model_dir} holds no slim graph of {variant.name} (neither an inference graph nor "
                        f"{frozen_graph(model_dir, variant).name})")
    run = stack.enter_context(graph_session(graph_def, nodes.input))
    fixed = _fixed_batch(graph_def, nodes.input.split(":")[0])
    offset = variant.label_offset

    def predict(x):
        if not fixed:
            return np.asarray(run(x, feeds, nodes.logits)).reshape(len(x), -1)[:, offset:]
        out = [Scorer("", "", lambda c: run(c, feeds, nodes.logits)).logits(x[i:i + fixed], fixed)
               for i in range(0, len(x), fixed)]  # a graph with a fixed batch size (frozen graphs)
        return np.concatenate(out)[:, offset:]

    return [Scorer("slim", p, predict if p == "slim" else (lambda x: predict(to_unit_range(x))))
            for p in preprocessings]


# --------------------------------------------------------------------------------------------------
# Evaluation

@dataclass
class Evaluation:
    records: list[dict]
    unreadable: list[str] = field(default_factory=list)


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not sys.stderr.isatty(), leave=False)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def evaluate_variant(variant, dataset: Dataset, *, weights_dir: Path, model_dir: Path | None,
                     preprocessings=PREPROCESSINGS, compare_keras: bool = False, batch_size: int = 32,
                     include_slim: bool = True) -> Evaluation:
    """Score one variant's models on ``dataset`` (one pass: every image decoded once, fed to every model)."""
    import keras

    top = Path(weights_dir) / variant.keras_weights
    if not top.is_file():
        raise UserError(f"converted weights of {variant.name} not found: {top} (run `python -m convert run "
                        f"{variant.name}` first, or pass --weights-dir)")
    rows = variant.rows
    labels = np.asarray(dataset.labels, dtype=np.int64)
    try:
        with contextlib.ExitStack() as stack:
            # keras' own weights first: offline, that fails before the other models are built
            reference = imagenet_scorers(variant, preprocessings) if compare_keras else []
            scorers = keras_scorers(variant, "converted", preprocessings, str(top))
            if include_slim:
                scorers += slim_scorers(stack, variant, Path(model_dir), preprocessings)
            scorers += reference
            warm = np.zeros((min(batch_size, len(dataset)), rows, rows, 3), np.float32)
            for scorer in scorers:  # trace/build outside the timed calls
                scorer.logits(warm, min(batch_size, len(dataset)))
            seen = np.zeros(len(dataset), dtype=bool)
            pad_to = min(batch_size, len(dataset))
            start = time.perf_counter()
            with _progress(len(dataset), variant.name) as bar:
                for batch in make_pipeline(dataset, rows, tuple(preprocessings), batch_size):
                    index = batch["index"].numpy()
                    seen[index] = True
                    for scorer in scorers:
                        scorer.score(batch[scorer.preprocessing].numpy(), labels[index], pad_to)
                    bar.update(len(index))
            wall = time.perf_counter() - start
    finally:
        keras.backend.clear_session(free_memory=True)
    unreadable = [_relative(dataset.files[i], dataset.root) for i in np.flatnonzero(~seen)]
    if len(unreadable) > MAX_UNREADABLE * len(dataset):
        raise UserError(f"{len(unreadable)} of {len(dataset)} images in {dataset.root} are unreadable (more than "
                        f"{MAX_UNREADABLE:.0%}): {', '.join(unreadable[:10])}{' …' if len(unreadable) > 10 else ''}")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records = []
    for s in scorers:
        records.append({
            "name": variant.name, "model": s.model, "preprocessing": s.preprocessing, "images": s.images,
            "top1": 100.0 * s.top1 / s.images if s.images else None,
            "top5": 100.0 * s.top5 / s.images if s.images else None,
            "published_top1": variant.top1, "published_top5": variant.top5,
            "images_per_s": s.images / s.seconds if s.seconds else None,
            "pipeline_images_per_s": s.images / wall if wall else None,
            "unreadable": unreadable, "family": variant.family, "stem": variant.stem,
            "dataset": str(dataset.root), "layout": dataset.layout, "batch_size": batch_size,
            "evaluated_at": now,
        })
    return Evaluation(records, unreadable)


# --------------------------------------------------------------------------------------------------
# Results

def load_accuracy(results_dir: str | Path) -> list[dict]:
    path = Path(results_dir) / ACCURACY_JSON
    return json.loads(path.read_text()) if path.exists() else []


def _order(record: dict):
    from .manifest import default_manifest

    names = default_manifest().names
    rank = names.index(record["name"]) if record.get("name") in names else len(names)
    model = MODELS.index(record["model"]) if record.get("model") in MODELS else len(MODELS)
    pre = PREPROCESSINGS.index(record["preprocessing"]) if record.get("preprocessing") in PREPROCESSINGS else 9
    return rank, record.get("name", ""), pre, model


def update_accuracy(records: list[dict], results_dir: str | Path) -> list[dict]:
    """Merge ``records`` into ``results_dir``: every name evaluated now replaces all of its earlier
    records; other names are kept. Writes accuracy.json and ACCURACY.md atomically, under a lock."""
    results_dir = Path(results_dir)
    with file_lock(results_dir / LOCK_NAME):
        names = {r["name"] for r in records}
        rows = [r for r in load_accuracy(results_dir) if r.get("name") not in names] + list(records)
        rows.sort(key=_order)
        atomic_write_bytes(results_dir / ACCURACY_JSON, (json.dumps(rows, indent=2, sort_keys=True) + "\n").encode())
        atomic_write_bytes(results_dir / ACCURACY_MD, render_accuracy(rows).encode())
    return rows


def _pct(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def _delta(x, ref) -> str:
    return "–" if x is None or ref is None else f"{x - ref:+.2f}"


def render_accuracy(rows: list[dict]) -> str:
    out = ["# ImageNet accuracy", "",
           f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. Top-1 / top-5 in %; Δ against the "
           "published figures of the manifests. `converted`: the converted Keras weights; `slim`: the archive's "
           "own slim graph (EMA values); `keras-imagenet`: keras.applications' own `weights=\"imagenet\"`. "
           "`slim` preprocessing: inception_preprocessing.preprocess_for_eval (87.5 % central crop, TF1 bilinear "
           "resize); `keras`: keras.utils.load_img (nearest resize of the whole image) + preprocess_input. "
           "images/s: model inference only.", "",
           "| name | model | preprocessing | images | top-1 | Δ top-1 | top-5 | Δ top-5 | images/s |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ips = r.get("images_per_s")
        out.append(f"| {r['name']} | {r['model']} | {r['preprocessing']} | {r['images']} | {_pct(r['top1'])} | "
                   f"{_delta(r['top1'], r.get('published_top1'))} | {_pct(r['top5'])} | "
                   f"{_delta(r['top5'], r.get('published_top5'))} | {'–' if ips is None else f'{ips:.0f}'} |")
    unreadable = {}
    for r in rows:
        if r.get("unreadable"):
            unreadable.setdefault(r["name"], r["unreadable"])
    if unreadable:
        out += ["", "Unreadable images (excluded from the totals):"]
        out += [f"- {name}: {', '.join(files)}" for name, files in unreadable.items()]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------
# CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert evaluate",
        description="ImageNet top-1/top-5 of the converted Keras weights and of the archive's own slim graph "
                    "(and, with --compare-keras, of keras.applications' weights=\"imagenet\").")
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="variants (0.35_96, mobilenet_v1_0.25_128, v3-large_224_1.0_float), a family (v1, v2, v3) "
                        "or 'all'")
    p.add_argument("--imagenet-dir", required=True, type=Path, metavar="DIR",
                   help="DIR/<wnid>/*.JPEG (ILSVRC2012 val folder layout), or a flat folder with --labels")
    p.add_argument("--labels", type=Path, metavar="FILE",
                   help="for a flat folder: slim's imagenet_2012_validation_synset_labels.txt (one wnid per line, "
                        "sorted file-name order) or lines 'filename,wnid'")
    p.add_argument("--limit", type=int, metavar="N", help="a deterministic class-balanced subset of N images")
    p.add_argument("--preprocess", choices=("slim", "keras", "both"), default="both",
                   help="slim: inception_preprocessing (central crop 87.5%%, bilinear); keras: load_img + "
                        "preprocess_input; default both")
    p.add_argument("--weights-dir", type=Path, default=Path("weights"), metavar="DIR",
                   help="folder of the converted .h5 files (default: weights/)")
    p.add_argument("--archive", type=Path, action="append", default=[], metavar="TGZ",
                   help="the variant's checkpoint archive (repeat for several names); default: the extraction "
                        "in the download cache")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="download cache (default: <project>/cache or $MOBILENET_CACHE)")
    p.add_argument("--compare-keras", action="store_true",
                   help="also score keras.applications' own weights=\"imagenet\" (downloaded by Keras)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="inference batch size (default 32)")
    p.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="where accuracy.json and ACCURACY.md go (default: results/)")
    return p


def _archive_for(variant, archives: list[Path], single: bool) -> Path | None:
    for path in archives:
        if path.name in (variant.archive_filename, f"{variant.stem}.tgz"):
            return path
    return archives[0] if single and len(archives) == 1 else None


@contextlib.contextmanager
def model_dir_for(variant, archive: Path | None, cache: Path | None):
    """The extracted archive of a variant: ``archive`` extracted to a temporary folder, or the download
    cache's extraction."""
    from .download import DownloadError, extract_archive, extracted_dir

    if archive is not None:
        if not archive.is_file():
            raise UserError(f"archive not found: {archive}")
        with tempfile.TemporaryDirectory(prefix="evaluate_") as tmp:
            try:
                root = extract_archive(archive, Path(tmp) / "archive", variant)
            except DownloadError as exc:
                raise UserError(str(exc)) from None
            yield root
        return
    root = extracted_dir(cache or default_cache(), variant)
    if not root.is_dir():
        raise UserError(f"no extracted archive of {variant.name} in {root}; run `python -m convert download "
                        f"{variant.name}` or pass --archive TGZ")
    yield root


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .manifest import default_manifest

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    variants = default_manifest().select(args.names)
    preprocessings = PREPROCESSINGS if args.preprocess == "both" else (args.preprocess,)
    for path in args.archive:
        if not any(_archive_for(v, [path], False) for v in variants) and len(variants) > 1:
            raise UserError(f"--archive {path}: its file name matches none of {', '.join(v.name for v in variants)}")
    dataset = scan_dataset(args.imagenet_dir, args.labels, args.limit)
    print(f"{len(dataset)} images in {dataset.root} ({dataset.layout} layout, "
          f"{len(set(dataset.labels))} classes)", file=sys.stderr)
    all_records = []
    for variant in variants:
        archive = _archive_for(variant, args.archive, len(variants) == 1)
        with model_dir_for(variant, archive, args.cache) as model_dir:
            result = evaluate_variant(variant, dataset, weights_dir=args.weights_dir, model_dir=model_dir,
                                      preprocessings=preprocessings, compare_keras=args.compare_keras,
                                      batch_size=args.batch_size)
        update_accuracy(result.records, args.results)
        if cards.read_sidecar(args.weights_dir, variant) is not None:  # weights this project converted
            cards.update(args.weights_dir, variant, accuracy=result.records)  # the model card's measured accuracy
        all_records += result.records
        for r in result.records:
            print(f"{r['name']:<36} {r['model']:<15} {r['preprocessing']:<6} top-1 {_pct(r['top1']):>6} "
                  f"({_delta(r['top1'], r['published_top1'])})  top-5 {_pct(r['top5']):>6} "
                  f"({_delta(r['top5'], r['published_top5'])})  {r['images']} images  "
                  f"{r['images_per_s'] or 0:.0f} images/s")
        if result.unreadable:
            print(f"{len(result.unreadable)} unreadable image(s), excluded from the totals: "
                  f"{', '.join(result.unreadable)}", file=sys.stderr)
    print(f"wrote {args.results / ACCURACY_JSON} and {args.results / ACCURACY_MD}")
    return 0


if __name__ == "__main__":
    from .cli import run_cli

    run_cli(main)
