"""The layer guide: typed records of what was read from a checkpoint for which Keras weight, the arrays,
the accounting and the provenance; saved and loaded safely.

On disk a guide is ``layer_guide.p`` (a pickle of plain containers only, loaded with a restricted
unpickler) next to ``weights.npz`` (the arrays, read with ``allow_pickle=False``); every array is checked
against the sha256 in its record when the guide is loaded. In memory everything is a dataclass.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .timing import timed
from .errors import ConversionError
from .fsutil import atomic_write_bytes

GUIDE_FILENAME = "layer_guide.p"
ARRAYS_FILENAME = "weights.npz"
GUIDE_FORMAT = "mobilenet_layer_guide"
GUIDE_VERSION = 4  # 3: the value mode is "value_source"; 4: counts.outside_scope


class LayerGuideError(ConversionError):
    """A layer guide file that is not one, was tampered with, or does not match its arrays."""


@dataclass(frozen=True)
class GuideRecord:
    """One Keras-destined weight: the checkpoint key actually read and where it goes."""

    key: str  # the checkpoint key read, e.g. ".../weights/ExponentialMovingAverage"
    name: str  # the model variable, e.g. "MobilenetV1/Conv2d_3_pointwise/weights"
    layer: str  # Keras layer
    weight: str  # Keras weight inside the layer
    kind: str  # slim scope kind: conv / depthwise / conv_bias / head
    leaf: str  # TF leaf name: weights, depthwise_weights, biases, gamma, beta, moving_mean, moving_variance
    block: int | None
    shape: tuple[int, ...]
    dtype: str
    source: str  # "ema" (an EMA value: a shadow, or an EMA checkpoint's plain value) or "raw"
    sha256: str  # of the array's bytes

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Provenance:
    """Where a guide's values came from, as data."""

    checkpoint: str  # the checkpoint prefix as found in the archive (member path) or as given
    checkpoint_role: str  # "combined" (V1/V2), "ema" / "pristine" (V3), "given" (--checkpoint)
    archive: str | None = None  # absolute path of the .tgz, when the checkpoint came from one
    archive_sha256: str | None = None
    pin: str | None = None  # the manifest's sha256 pin for that archive, if any
    url: str | None = None  # where the archive was downloaded from, if it was

    @property
    def pin_status(self) -> str:
        """``matches``, ``differs`` or ``no pin`` (``unknown`` without an archive hash)."""
        if self.pin is None:
            return "no pin"
        if self.archive_sha256 is None:
            return "unknown"
        return "matches" if self.archive_sha256 == self.pin else "differs"


@dataclass(frozen=True)
class Accounting:
    """How every checkpoint variable was accounted for."""

    checkpoint_variables: int
    consumed: int
    ignored_slots: int
    ignored_global_step: int
    unselected: int  # the EMA/raw alternative not chosen
    by_source: dict[str, int]
    mode: str  # the values used: "ema" or "raw"
    twin_ranges: int = 0  # quantization range variables (and their shadows) the fake-quant twin consumes
    outside_scope: int = 0  # variables outside a backbone's scope, or that its Keras model does not hold


@dataclass
class LayerGuide:
    variant: str
    family: str
    value_source: str  # the requested mode: auto / ema / raw
    provenance: Provenance
    records: list[GuideRecord]
    arrays: dict[str, np.ndarray]
    counts: Accounting
    versions: dict[str, str] = field(default_factory=dict)

    def array_for(self, record: GuideRecord) -> np.ndarray:
        return self.arrays[record.key]

    def summary(self) -> str:
        c = self.counts
        by = ", ".join(f"{n} {s}" for s, n in sorted(c.by_source.items()))
        return (f"{c.consumed} weights ({by}) from the {self.provenance.checkpoint_role} checkpoint "
                f"{self.provenance.checkpoint}; ignored {c.ignored_slots} optimizer slot(s), "
                f"{c.ignored_global_step} global_step, {c.unselected} unselected EMA/raw alternative(s)")


def sha256_array(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@timed("layer guide")
def save_layer_guide(guide: LayerGuide, out_dir: str | Path) -> Path:
    """Write ``out_dir/weights.npz`` then ``out_dir/layer_guide.p`` (both atomically); returns the pickle."""
    out_dir = Path(out_dir)
    buf = io.BytesIO()
    np.savez(buf, **{r.key: guide.arrays[r.key] for r in guide.records})
    atomic_write_bytes(out_dir / ARRAYS_FILENAME, buf.getvalue())
    doc = {
        "format": GUIDE_FORMAT, "version": GUIDE_VERSION, "variant": guide.variant, "family": guide.family,
        "value_source": guide.value_source, "provenance": dataclasses.asdict(guide.provenance),
        "arrays_file": ARRAYS_FILENAME, "records": [dataclasses.asdict(r) for r in guide.records],
        "counts": dataclasses.asdict(guide.counts), "versions": dict(guide.versions),
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


def _typed(cls, data: Any, bad: str, what: str):
    """Rebuild a dataclass from a plain dict, refusing missing or unknown fields."""
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(data, dict) or set(data) != set(names):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise LayerGuideError(f"{bad}: {what} must have exactly the fields {', '.join(names)}; got {got}")
    return cls(**data)


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
    if not isinstance(doc.get("records"), list):
        raise LayerGuideError(f"{bad}: 'records' must be a list")
    records = []
    for i, r in enumerate(doc["records"]):
        record = _typed(GuideRecord, r, bad, f"record {i}")
        records.append(dataclasses.replace(record, shape=tuple(record.shape)))
    provenance = _typed(Provenance, doc.get("provenance"), bad, "'provenance'")
    counts = _typed(Accounting, doc.get("counts"), bad, "'counts'")
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
    keys = [r.key for r in records]
    if len(set(keys)) != len(keys):
        raise LayerGuideError(f"{bad}: duplicate record keys")
    extra, absent = sorted(set(arrays) - set(keys)), sorted(set(keys) - set(arrays))
    if extra or absent:
        raise LayerGuideError(f"{npz_path} does not match {path}: arrays without record: {extra or 'none'}; "
                              f"records without array: {absent or 'none'}")
    for r in records:
        a = arrays[r.key]
        if tuple(a.shape) != r.shape or a.dtype.name != r.dtype or sha256_array(a) != r.sha256:
            raise LayerGuideError(f"{npz_path}: array {r.key} does not match its record in {path} "
                                  f"(shape/dtype/sha256 differ); re-run extract_weights.py")
    return LayerGuide(doc["variant"], doc.get("family", ""), doc["value_source"], provenance, records, arrays, counts,
                      doc.get("versions", {}))
