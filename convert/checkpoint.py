"""TF1 slim checkpoint -> layer guide: exact, exhaustive, name-based extraction of MobileNetV2 weights.

The TF-name <-> Keras-layer correspondence lives in one place, :data:`LAYER_MAP` (+ :data:`META_TO_KERAS`),
read in both directions by :func:`keras_layer_for` and :func:`tf_name_for`. The set of variables a
checkpoint must hold is derived from it and the Keras architecture (:func:`expected_variables`), never
from a second list, and nothing is ever aligned by position.

A *layer guide* is the result of extraction: one record per Keras-destined weight (which TF variable was
read, which Keras layer/weight it is for, shape, dtype, EMA or raw, sha256 of the bytes) plus the arrays.
On disk it is ``layer_guide.p`` (a pickle of plain containers only: records, counts, provenance) next to
``weights.npz`` (the arrays, read back with ``allow_pickle=False``); every array is checked against the
sha256 in its record when the guide is loaded.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .cli import quiet_tf
from .fsutil import atomic_write_bytes, package_versions, sha256_file
from .manifest import Variant, resolve

quiet_tf()

SCOPE = "MobilenetV2"
EMA_SUFFIX = "ExponentialMovingAverage"
HEAD_LAYER = "predictions"
GUIDE_FILENAME = "layer_guide.p"
ARRAYS_FILENAME = "weights.npz"
GUIDE_FORMAT = "mobilenet_v2_layer_guide"
GUIDE_VERSION = 1
WEIGHT_MODES = ("auto", "ema", "raw")

# ------------------------------------------------------------------------------------------------
# The mapping (the only place where TF names and Keras names meet)

# One row per slim layer scope (under ``MobilenetV2/``): the Keras layer holding its conv/dense weights
# and the Keras BatchNormalization layer holding its ``BatchNorm/*`` variables (None: no BN).
# ``{block}`` is an inverted-residual block id >= 1, ``{mod}`` one of expand/depthwise/project.
LAYER_MAP: tuple[tuple[str, str, str | None], ...] = (
    ("Conv", "Conv1", "bn_Conv1"),
    ("expanded_conv/{mod}", "expanded_conv_{mod}", "expanded_conv_{mod}_BN"),
    ("expanded_conv_{block}/{mod}", "block_{block}_{mod}", "block_{block}_{mod}_BN"),
    ("Conv_1", "Conv_1", "Conv_1_bn"),
    ("Logits/Conv2d_1c_1x1", HEAD_LAYER, None),
)
# TF variable leaf name (``meta``) -> Keras weight name. ``weights``/``biases`` belong to the conv/dense
# layer, the BatchNorm leaves (stored under ``<scope>/BatchNorm/``) to the BN layer.
META_TO_KERAS = {
    "weights": "kernel", "depthwise_weights": "kernel", "biases": "bias",
    "gamma": "gamma", "beta": "beta", "moving_mean": "moving_mean", "moving_variance": "moving_variance",
}
BN_METAS = ("gamma", "beta", "moving_mean", "moving_variance")
MOVING_STATS = ("moving_mean", "moving_variance")  # not trainable: no EMA shadow in official checkpoints
MODS = ("expand", "depthwise", "project")

# Variables that are not model weights and are deliberately ignored (but counted).
# A slot counts as optimizer state only when the variable it belongs to is an expected one.
_SLOT = re.compile(r"^(?:(?P<base>.+)/(?:RMSProp(?:_\d+)?|Momentum(?:_\d+)?|Adam(?:_\d+)?)|beta[12]_power(?:_\d+)?)$")
_GLOBAL_STEP = "global_step"


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{block\}", r"(?P<block>[1-9][0-9]*)")
    pattern = pattern.replace(r"\{mod\}", "(?P<mod>" + "|".join(MODS) + ")")
    return re.compile(f"^{pattern}$")


_RULES = [(_template_regex(tf), tf, keras, bn, _template_regex(keras), bn and _template_regex(bn))
          for tf, keras, bn in LAYER_MAP]


@dataclass(frozen=True)
class Target:
    """Where one TF model variable goes in Keras."""

    tf_name: str  # the model variable, e.g. MobilenetV2/expanded_conv_3/expand/BatchNorm/gamma
    layer: str  # Keras layer name, e.g. block_3_expand_BN
    weight: str  # Keras weight name inside the layer, e.g. gamma
    block_id: int | None  # inverted-residual block (0 = expanded_conv), None for Conv/Conv_1/Logits
    mod: str | None  # expand / depthwise / project, None outside blocks
    meta: str  # TF leaf: weights, depthwise_weights, biases, gamma, beta, moving_mean, moving_variance

    @property
    def is_moving_stat(self) -> bool:
        return self.meta in MOVING_STATS


def _kernel_meta(mod: str | None) -> str:
    return "depthwise_weights" if mod == "depthwise" else "weights"


def keras_layer_for(tf_name: str) -> Target | None:
    """The Keras destination of a TF model variable (no shadow/slot suffix), or None if it is not one."""
    if not tf_name.startswith(SCOPE + "/"):
        return None
    rest = tf_name[len(SCOPE) + 1:]
    scope, _, meta = rest.rpartition("/")
    in_bn = scope.endswith("/BatchNorm")
    if in_bn:
        scope = scope[: -len("/BatchNorm")]
    if meta not in META_TO_KERAS or in_bn != (meta in BN_METAS):
        return None
    for tf_re, _tf, keras, bn, _kre, _bre in _RULES:
        m = tf_re.match(scope)
        if not m:
            continue
        groups = m.groupdict()
        mod = groups.get("mod")
        if in_bn:
            if bn is None:
                return None
            layer = bn.format(**groups)
        else:
            if meta == "biases" and bn is not None:
                return None  # only the head has a bias; conv layers have BN instead
            if meta != "biases" and meta != _kernel_meta(mod):
                return None  # depthwise_weights only under depthwise/, weights everywhere else
            layer = keras.format(**groups)
        block = groups.get("block")
        block_id = int(block) if block is not None else (0 if mod is not None else None)
        return Target(tf_name, layer, META_TO_KERAS[meta], block_id, mod, meta)
    return None


def tf_name_for(keras_layer: str, keras_weight: str) -> str | None:
    """Inverse of :func:`keras_layer_for`: the TF model variable a Keras weight comes from, or None."""
    for _tf_re, tf, _keras, _bn, keras_re, bn_re in _RULES:
        for regex, in_bn in ((keras_re, False), (bn_re, True)):
            m = regex.match(keras_layer) if regex is not None else None
            if not m:
                continue
            groups = m.groupdict()
            scope = f"{SCOPE}/{tf.format(**groups)}"
            if in_bn:
                meta = keras_weight if keras_weight in BN_METAS else None
                name = f"{scope}/BatchNorm/{meta}"
            elif keras_weight == "kernel":
                meta = _kernel_meta(groups.get("mod"))
                name = f"{scope}/{meta}"
            elif keras_weight == "bias":
                meta = "biases"
                name = f"{scope}/{meta}"
            else:
                meta = None
            if meta is None:
                return None
            target = keras_layer_for(name)  # one mapping: the inverse must round-trip
            return name if target and (target.layer, target.weight) == (keras_layer, keras_weight) else None
    return None


def head_tf_shape(meta: str, keras_shape: tuple[int, ...], label_offset: int) -> tuple[int, ...]:
    """Shape of the slim logits variable for a Keras ``predictions`` weight: the 1x1 conv kernel
    ``[1, 1, C, K + label_offset]`` for the Dense kernel ``[C, K]``, ``[K + label_offset]`` for the bias."""
    if meta == "weights":
        c, k = keras_shape
        return (1, 1, c, k + label_offset)
    (k,) = keras_shape
    return (k + label_offset,)


# ------------------------------------------------------------------------------------------------
# Errors


class ConversionError(ValueError):
    """Base class of this converter's input errors; the message is one clear paragraph."""


class CheckpointMismatchError(ConversionError):
    """The checkpoint's variables are not exactly those of the variant; lists every offender."""

    def __init__(self, prefix: str, variant: str, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                 wrong_shape: Iterable[tuple[str, tuple, tuple]] = (), wrong_dtype: Iterable[tuple[str, str]] = (),
                 missing_shadows: Iterable[str] = ()):
        self.prefix, self.variant = prefix, variant
        self.missing, self.unexpected = sorted(missing), sorted(unexpected)
        self.wrong_shape, self.wrong_dtype = sorted(wrong_shape), sorted(wrong_dtype)
        self.missing_shadows = sorted(missing_shadows)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing variable(s): {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected variable(s) (neither a MobileNetV2 weight nor an "
                         f"optimizer slot/global_step): {', '.join(self.unexpected)}")
        if self.wrong_shape:
            parts.append(f"{len(self.wrong_shape)} wrong shape(s): " + ", ".join(
                f"{n} is {list(got)}, expected {list(want)}" for n, got, want in self.wrong_shape))
        if self.wrong_dtype:
            parts.append(f"{len(self.wrong_dtype)} wrong dtype(s) (expected float32): " + ", ".join(
                f"{n} is {d}" for n, d in self.wrong_dtype))
        if self.missing_shadows:
            parts.append(f"{len(self.missing_shadows)} trainable variable(s) without /{EMA_SUFFIX} shadow in a "
                         f"checkpoint that has shadows (refusing to mix EMA and raw weights; use --weights raw "
                         f"to convert the raw values): {', '.join(self.missing_shadows)}")
        hint = ""
        if len(self.wrong_shape) > 10:
            hint = (f" (many shapes differ: is this the checkpoint of another alpha? {variant} is "
                    f"mobilenet_v2_{variant}.ckpt)")
        super().__init__(f"checkpoint {prefix} does not match MobileNetV2 {variant}{hint}: " + "; ".join(parts))


class WeightSourceError(ConversionError):
    """``--weights ema`` on a checkpoint without EMA shadows, or an unknown weight mode."""


class LayerGuideError(ConversionError):
    """A layer guide file that is not one, was tampered with, or does not match its arrays."""


# ------------------------------------------------------------------------------------------------
# The expected variable set, derived from the mapping + the Keras architecture


@dataclass(frozen=True)
class Expected:
    target: Target
    shape: tuple[int, ...]  # the TF (checkpoint) shape


@functools.lru_cache(maxsize=None)
def _keras_weight_shapes(variant: Variant) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """(layer, weight, shape) of every weight of the Keras model with top that load_weights builds, in
    the legacy order."""
    from .keras_weights import build_keras_model, legacy_weights

    model = build_keras_model(variant, include_top=True)
    return tuple((layer.name, w.name, tuple(int(d) for d in w.shape))
                 for layer in model.layers for w in legacy_weights(layer))


def expected_variables(variant: Variant | str) -> dict[str, Expected]:
    """TF model variable -> (Keras target, checkpoint shape) for every weight of the Keras model with top."""
    variant = _variant(variant)
    out: dict[str, Expected] = {}
    for layer, weight, shape in _keras_weight_shapes(variant):
        name = tf_name_for(layer, weight)
        if name is None:
            raise RuntimeError(f"Keras weight {layer}/{weight} has no TF counterpart in LAYER_MAP")
        target = keras_layer_for(name)
        if layer == HEAD_LAYER:
            shape = head_tf_shape(target.meta, shape, variant.label_offset)
        out[name] = Expected(target, shape)
    return out


# ------------------------------------------------------------------------------------------------
# The layer guide


@dataclass
class LayerGuide:
    """Records (one per Keras-destined weight, Keras model order), the arrays by record ``key``, counts."""

    variant: str
    weights: str  # the requested mode: auto / ema / raw
    checkpoint: str
    records: list[dict]
    arrays: dict[str, np.ndarray]
    counts: dict[str, Any]
    source_archive_sha256: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def array_for(self, record: dict) -> np.ndarray:
        return self.arrays[record["key"]]

    def summary(self) -> str:
        c = self.counts
        by = ", ".join(f"{n} {s}" for s, n in sorted(c["by_source"].items()))
        return (f"{c['consumed']} weights ({by}); ignored {c['ignored_slots']} optimizer slot(s), "
                f"{c['ignored_global_step']} global_step, {c['unselected']} unselected EMA/raw alternative(s)")


def sha256_array(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _variant(variant: Variant | str) -> Variant:
    return variant if isinstance(variant, Variant) else resolve(variant)


def normalize_prefix(prefix: str | Path) -> str:
    """Accept ``x.ckpt``, ``x.ckpt.index``, ``x.ckpt.data-00000-of-00001`` or ``x.ckpt.meta``."""
    p = str(prefix)
    p = re.sub(r"\.(index|meta|data-\d{5}-of-\d{5})$", "", p)
    if not os.path.isfile(p + ".index"):
        raise FileNotFoundError(f"no TF checkpoint at prefix {p!r}: {p}.index does not exist (pass the "
                                f"checkpoint prefix, e.g. .../mobilenet_v2_1.0_224.ckpt)")
    return p


def build_layer_guide(checkpoint_prefix: str | Path, variant: Variant | str, weights: str = "auto") -> LayerGuide:
    """Read a TF1 checkpoint by name and build the layer guide of ``variant``.

    ``weights``: ``auto`` uses the ``/ExponentialMovingAverage`` shadows when the checkpoint has any (and then
    requires one for every trainable), else the raw values; ``ema`` requires shadows; ``raw`` ignores them.
    BN moving statistics are read raw, or from their shadow if the checkpoint has one and the mode is not
    ``raw``. Optimizer slots and ``global_step`` are ignored and counted; anything else not consumed, any
    expected variable missing, any wrong shape or dtype raises :class:`CheckpointMismatchError`.
    """
    import tensorflow as tf

    variant = _variant(variant)
    if weights not in WEIGHT_MODES:
        raise WeightSourceError(f"unknown weight source {weights!r}; valid: {', '.join(WEIGHT_MODES)}")
    prefix = normalize_prefix(checkpoint_prefix)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as exc:  # tf.errors.* for a corrupt or unreadable bundle
        raise ConversionError(f"cannot read TF checkpoint {prefix}: {exc}") from None
    shapes = {k: tuple(int(d) for d in v) for k, v in reader.get_variable_to_shape_map().items()}
    dtypes = {k: v.name for k, v in reader.get_variable_to_dtype_map().items()}
    expected = expected_variables(variant)

    slots, global_step, shadows, unexpected = [], [], {}, []
    for name in shapes:
        if name == _GLOBAL_STEP:
            global_step.append(name)
        elif name in expected:
            continue
        elif name.endswith("/" + EMA_SUFFIX) and name[: -len(EMA_SUFFIX) - 1] in expected:
            shadows[name[: -len(EMA_SUFFIX) - 1]] = name
        elif (slot := _SLOT.match(name)) and (slot["base"] is None or slot["base"] in expected):
            slots.append(name)
        else:
            unexpected.append(name)
    missing = [n for n in expected if n not in shapes]

    if weights == "raw":
        mode = "raw"
    elif shadows:
        mode = "ema"
    elif weights == "ema":
        raise WeightSourceError(
            f"--weights ema needs /{EMA_SUFFIX} shadows, but checkpoint {prefix} has none; "
            f"use --weights raw (or auto, which falls back to the raw values)")
    else:
        mode = "raw"
    missing_shadows = [n for n, e in expected.items()
                       if mode == "ema" and not e.target.is_moving_stat and n not in shadows and n in shapes]

    chosen: dict[str, tuple[str, str]] = {}  # model variable -> (key read, source)
    for name, e in expected.items():
        if mode == "ema" and name in shadows:
            chosen[name] = (shadows[name], "ema")
        else:
            chosen[name] = (name, "raw")
    wrong_shape, wrong_dtype = [], []
    for name, e in expected.items():
        for key in (name, shadows.get(name)):
            if key is None or key not in shapes:
                continue
            if shapes[key] != e.shape:
                wrong_shape.append((key, shapes[key], e.shape))
            elif dtypes[key] != "float32":
                wrong_dtype.append((key, dtypes[key]))
    if missing or unexpected or wrong_shape or wrong_dtype or missing_shadows:
        raise CheckpointMismatchError(prefix, variant.name, missing, unexpected, wrong_shape, wrong_dtype,
                                      missing_shadows)

    records, arrays = [], {}
    for name, e in expected.items():  # Keras model order, whatever order the checkpoint has
        key, source = chosen[name]
        try:
            a = np.ascontiguousarray(reader.get_tensor(key))
        except Exception as exc:  # IndexError / tf.errors.DataLossError on a truncated or corrupt data file
            raise ConversionError(f"cannot read {key} from checkpoint {prefix}: {type(exc).__name__}: {exc} "
                                  f"(is its .data file truncated or corrupt?)") from None
        if a.shape != e.shape or a.dtype != np.float32:  # the reader disagreeing with its own table
            raise CheckpointMismatchError(prefix, variant.name, wrong_shape=[(key, a.shape, e.shape)])
        t = e.target
        records.append({
            "key": key, "name": name, "block_id": t.block_id, "layer": t.layer, "weight": t.weight,
            "mod": t.mod, "meta": t.meta, "shape": tuple(a.shape), "size": int(a.size), "dtype": a.dtype.name,
            "source": source, "sha256": sha256_array(a),
        })
        arrays[key] = a
    by_source: dict[str, int] = {}
    for r in records:
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    counts = {
        "checkpoint_variables": len(shapes), "consumed": len(records), "ignored_slots": len(slots),
        "ignored_global_step": len(global_step),
        "unselected": len(expected) + len(shadows) - len(records), "by_source": by_source, "mode": mode,
    }
    assert counts["consumed"] + counts["ignored_slots"] + counts["ignored_global_step"] + counts["unselected"] \
        == len(shapes), counts
    return LayerGuide(variant.name, weights, prefix, records, arrays, counts, versions=package_versions())


# ------------------------------------------------------------------------------------------------
# Saving and loading (atomic writes, restricted unpickler)


def save_layer_guide(guide: LayerGuide, out_dir: str | Path) -> Path:
    """Write ``out_dir/weights.npz`` then ``out_dir/layer_guide.p`` (both atomically); returns the pickle."""
    out_dir = Path(out_dir)
    buf = io.BytesIO()
    np.savez(buf, **{r["key"]: guide.arrays[r["key"]] for r in guide.records})
    atomic_write_bytes(out_dir / ARRAYS_FILENAME, buf.getvalue())
    doc = {
        "format": GUIDE_FORMAT, "version": GUIDE_VERSION, "variant": guide.variant, "weights": guide.weights,
        "checkpoint": guide.checkpoint, "source_archive_sha256": guide.source_archive_sha256,
        "arrays_file": ARRAYS_FILENAME, "records": [dict(r) for r in guide.records], "counts": dict(guide.counts),
        "versions": dict(guide.versions),
    }
    return atomic_write_bytes(out_dir / GUIDE_FILENAME, pickle.dumps(doc, protocol=4))


_ALLOWED_GLOBALS = {
    # numpy arrays (and their dtypes) are admitted; nothing else that names a callable is.
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits plain containers, numbers, strings, bytes, None/bools and numpy arrays; refuses any other
    global (so no ``__reduce__`` payload can name a callable to run)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise LayerGuideError(f"refers to {module}.{name}, which a layer guide may not contain")

    def persistent_load(self, pid):
        raise LayerGuideError("uses persistent ids, which a layer guide may not contain")


_PLAIN = (str, int, float, bool, type(None), bytes)


def _check_plain(obj: Any, where: str = "guide") -> None:
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise LayerGuideError(f"{where} is an object array")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, where)
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise LayerGuideError(f"{where} has type {type(obj).__name__}")


_RECORD_FIELDS = ("key", "name", "block_id", "layer", "weight", "mod", "meta", "shape", "size", "dtype",
                  "source", "sha256")


def load_layer_guide(path: str | Path) -> LayerGuide:
    """Load ``layer_guide.p`` (or a directory holding it) with a restricted unpickler, then its arrays from
    the sibling ``weights.npz`` (``allow_pickle=False``), checking each array against its record."""
    path = Path(path)
    if path.is_dir():
        path = path / GUIDE_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"layer guide not found: {path} (run extract_weights.py first)")
    bad = f"{path} is not a valid layer guide"
    try:
        with open(path, "rb") as f:
            doc = _RestrictedUnpickler(f).load()
    except LayerGuideError as exc:
        raise LayerGuideError(f"refusing to load {path}: the pickle {exc}; it was not written by "
                              f"extract_weights.py or has been tampered with (nothing in it was executed)") from None
    except Exception as exc:
        raise LayerGuideError(f"{bad}: cannot unpickle it ({type(exc).__name__}: {exc})") from None
    _check_plain(doc)
    if not isinstance(doc, dict) or doc.get("format") != GUIDE_FORMAT:
        raise LayerGuideError(f"{bad}: missing format marker {GUIDE_FORMAT!r}")
    if doc.get("version") != GUIDE_VERSION:
        raise LayerGuideError(f"{bad}: format version {doc.get('version')!r}, this converter reads {GUIDE_VERSION}")
    records = doc.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) and set(_RECORD_FIELDS) <= set(r)
                                                for r in records):
        raise LayerGuideError(f"{bad}: 'records' must be a list of records with fields {', '.join(_RECORD_FIELDS)}")
    arrays_file = doc.get("arrays_file")
    if arrays_file != ARRAYS_FILENAME:
        raise LayerGuideError(f"{bad}: 'arrays_file' must be {ARRAYS_FILENAME!r}, got {arrays_file!r}")
    npz_path = path.parent / arrays_file
    if not npz_path.is_file():
        raise FileNotFoundError(f"arrays of layer guide {path} not found: {npz_path}")
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise LayerGuideError(f"{npz_path} is not a valid weights archive: {type(exc).__name__}: {exc}") from None
    keys = [r["key"] for r in records]
    if len(set(keys)) != len(keys):
        raise LayerGuideError(f"{bad}: duplicate record keys")
    extra, absent = sorted(set(arrays) - set(keys)), sorted(set(keys) - set(arrays))
    if extra or absent:
        raise LayerGuideError(f"{npz_path} does not match {path}: arrays without record: {extra or 'none'}; "
                              f"records without array: {absent or 'none'}")
    for r in records:
        a = arrays[r["key"]]
        if tuple(a.shape) != tuple(r["shape"]) or a.dtype.name != r["dtype"] or sha256_array(a) != r["sha256"]:
            raise LayerGuideError(f"{npz_path}: array {r['key']} does not match its record in {path} "
                                  f"(shape/dtype/sha256 differ); re-run extract_weights.py")
        r["shape"] = tuple(r["shape"])
    return LayerGuide(doc["variant"], doc["weights"], doc["checkpoint"], records, arrays, doc["counts"],
                      doc.get("source_archive_sha256"), doc.get("versions", {}))


# ------------------------------------------------------------------------------------------------
# Extraction entry point


def _extract_tgz(tgz: Path, dest: Path, variant: Variant) -> Path:
    """Safely extract an archive with the download module's extractor (refuses links, ``..``, absolute
    paths, special files; requires the variant's checkpoint); returns the extraction directory."""
    from .download import DownloadError, extract_archive

    try:
        return extract_archive(tgz, dest, variant.model_name)
    except DownloadError as exc:
        raise ConversionError(f"cannot use archive {tgz}: {exc}") from None


def extract(variant_name: str, *, archive: str | Path | None = None, checkpoint: str | Path | None = None,
            weights: str = "auto", out_dir: str | Path = "work", cache_dir: str | Path = "cache") -> Path:
    """Build and save the layer guide of a variant; returns ``out_dir/<name>/layer_guide.p``.

    Source: ``checkpoint`` (a prefix), else ``archive`` (an official-layout .tgz, extracted safely to a
    temporary directory), else the variant's archive in ``cache_dir`` (fetched by ``convert.download``:
    reused when cached and verified, downloaded otherwise).
    """
    variant = _variant(variant_name)
    if archive is not None and checkpoint is not None:
        raise ConversionError("give either an archive or a checkpoint, not both")
    if checkpoint is not None:
        guide = build_layer_guide(checkpoint, variant, weights)
        return save_layer_guide(guide, Path(out_dir) / variant.name)
    if archive is None:
        from .download import DownloadError, fetch

        try:
            result = fetch(variant, cache_dir=cache_dir)
        except DownloadError as exc:
            raise ConversionError(f"no usable archive of {variant.name} in cache {cache_dir}: {exc}; pass "
                                  f"--archive TGZ or --checkpoint PREFIX") from None
        guide = build_layer_guide(result.checkpoint_prefix, variant, weights)
        guide.checkpoint = f"{Path(result.archive).resolve()}:{variant.model_name}.ckpt"
        guide.source_archive_sha256 = result.sha256
        return save_layer_guide(guide, Path(out_dir) / variant.name)
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    digest = sha256_file(archive)
    with tempfile.TemporaryDirectory(prefix="extract_") as tmp:
        root = _extract_tgz(archive, Path(tmp) / "archive", variant)
        guide = build_layer_guide(root / f"{variant.model_name}.ckpt", variant, weights)
    guide.checkpoint = f"{archive.resolve()}:{variant.model_name}.ckpt"
    guide.source_archive_sha256 = digest
    return save_layer_guide(guide, Path(out_dir) / variant.name)
