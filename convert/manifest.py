"""The 22 MobileNetV2 variants as data, validated on load, and variant-name resolution.

Everything downstream asks this module which variants exist and what their archive, URL and Keras
output file names are; nothing else hard-codes a variant.
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = PROJECT_ROOT / "manifests" / "mobilenet_v2.json"

ALPHAS = ("1.4", "1.3", "1.0", "0.75", "0.5", "0.35")
ROWS = (224, 192, 160, 128, 96)
PREFIX = "mobilenet_v2_"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URL = re.compile(r"^(https?|file)://[^\s/]*(/[^\s]*)?$")
_REQUIRED = {
    "alpha": str, "rows": int, "macs_m": int, "params_m": float, "top1": float, "top5": float,
    "pixel1_latency_ms": float, "url": str, "quantized_url": str, "keras_weights": str,
    "keras_weights_no_top": str,
}
_OPTIONAL = {"sha256": (str, type(None))}


class ManifestError(ValueError):
    """A manifest file or entry is malformed; the message names the entry and the field."""


class UnknownVariantError(KeyError):
    """A variant name that is not in the manifest; the message lists the closest valid names."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0])


@dataclass(frozen=True)
class Variant:
    """One released checkpoint: every published fact plus the names derived from alpha and rows."""

    alpha: str
    rows: int
    macs_m: int
    params_m: float
    top1: float
    top5: float
    pixel1_latency_ms: float
    url: str
    quantized_url: str
    keras_weights: str
    keras_weights_no_top: str
    sha256: str | None = None
    classes: int = 1001  # slim logits; index 0 is "background"
    label_offset: int = 1  # keras class k == slim class k + label_offset

    @property
    def name(self) -> str:
        """Short name, e.g. ``1.0_224``."""
        return f"{self.alpha}_{self.rows}"

    @property
    def model_name(self) -> str:
        """Name used inside the archive, e.g. ``mobilenet_v2_1.0_224``."""
        return PREFIX + self.name

    @property
    def archive_filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def depth_multiplier(self) -> float:
        return float(self.alpha)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "model_name": self.model_name, "alpha": self.alpha, "rows": self.rows,
            "macs_m": self.macs_m, "params_m": self.params_m, "top1": self.top1, "top5": self.top5,
            "pixel1_latency_ms": self.pixel1_latency_ms, "url": self.url,
            "quantized_url": self.quantized_url, "sha256": self.sha256,
            "keras_weights": self.keras_weights, "keras_weights_no_top": self.keras_weights_no_top,
            "classes": self.classes, "label_offset": self.label_offset,
        }


def _check_entry(i: int, entry: object, classes: int, label_offset: int) -> Variant:
    where = f"variants[{i}]"
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected an object, got {type(entry).__name__}")
    if "alpha" in entry and "rows" in entry:
        where = f"variants[{i}] ({entry['alpha']}_{entry['rows']})"
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted({**_REQUIRED, **_OPTIONAL})}")
    for key, typ in _REQUIRED.items():
        if key not in entry:
            raise ManifestError(f"{where}: missing field '{key}'")
        value = entry[key]
        ok = isinstance(value, typ) and not isinstance(value, bool)
        if typ is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise ManifestError(f"{where}: field '{key}' must be {typ.__name__}, got {value!r}")
    alpha, rows = entry["alpha"], entry["rows"]
    if alpha not in ALPHAS:
        raise ManifestError(f"{where}: field 'alpha' is {alpha!r}; valid alphas: {', '.join(ALPHAS)}")
    if rows not in ROWS:
        raise ManifestError(f"{where}: field 'rows' is {rows!r}; valid rows: {', '.join(map(str, ROWS))}")
    for key in ("url", "quantized_url"):
        if not _URL.match(entry[key]) or not entry[key].endswith(".tgz"):
            raise ManifestError(f"{where}: field '{key}' is not an http(s)/file URL of a .tgz: {entry[key]!r}")
    quantized = f"quantized_v2_{rows}_{round(float(alpha) * 100)}.tgz"
    for key, expected_file in (("url", f"{PREFIX}{alpha}_{rows}.tgz"), ("quantized_url", quantized)):
        if entry[key].rsplit("/", 1)[-1] != expected_file:
            raise ManifestError(f"{where}: field '{key}' must end in {expected_file!r}, got {entry[key]!r}")
    sha = entry.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        raise ManifestError(f"{where}: field 'sha256' must be 64 lowercase hex digits or null, got {sha!r}")
    for key, suffix in (("keras_weights", ".h5"), ("keras_weights_no_top", "_no_top.h5")):
        want = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}{suffix}"
        if entry[key] != want:
            raise ManifestError(f"{where}: field '{key}' must be {want!r}, got {entry[key]!r}")
    fields = {k: entry[k] for k in _REQUIRED}
    fields["params_m"] = float(fields["params_m"])
    for k in ("top1", "top5", "pixel1_latency_ms"):
        fields[k] = float(fields[k])
    return Variant(**fields, sha256=sha, classes=classes, label_offset=label_offset)


class Manifest:
    """The validated list of variants, in manifest order."""

    def __init__(self, variants: Iterable[Variant], path: Path | None = None):
        self.variants = list(variants)
        self.path = path
        self._by_name = {v.name: v for v in self.variants}

    def __iter__(self):
        return iter(self.variants)

    def __len__(self) -> int:
        return len(self.variants)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    def resolve(self, name: str) -> Variant:
        """Accept ``1.0_224`` or ``mobilenet_v2_1.0_224`` (and a trailing ``.tgz``)."""
        key = str(name).strip()
        key = key[: -len(".tgz")] if key.endswith(".tgz") else key
        key = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if key in self._by_name:
            return self._by_name[key]
        close = difflib.get_close_matches(key, self.names, n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"valid: {', '.join(self.names)}"
        raise UnknownVariantError(f"unknown variant {name!r}; {hint} (run `python models_to_load.py` for the list)")

    def select(self, names: Iterable[str] = ("all",), alpha: str | None = None, rows: int | None = None) -> list[Variant]:
        """Resolve names (``all`` means every variant), then filter by alpha/rows; manifest order kept."""
        names = list(names) or ["all"]
        if alpha is not None:  # "1" and "1.00" mean 1.0
            alpha = next((a for a in ALPHAS if _same_number(a, alpha)), alpha)
        if alpha is not None and alpha not in ALPHAS:
            raise ManifestError(f"--alpha {alpha!r} is not a released alpha; valid: {', '.join(ALPHAS)}")
        if rows is not None and rows not in ROWS:
            raise ManifestError(f"--rows {rows!r} is not a released resolution; valid: {', '.join(map(str, ROWS))}")
        if any(n == "all" for n in names):
            chosen = list(self.variants)
        else:
            wanted = {self.resolve(n).name for n in names}
            chosen = [v for v in self.variants if v.name in wanted]
        return [v for v in chosen if (alpha is None or v.alpha == alpha) and (rows is None or v.rows == rows)]


_TOP_LEVEL = {"schema": int, "family": str, "source": str, "classes": int, "label_offset": int, "variants": list}


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def parse_manifest(doc: object, path: Path | None = None) -> Manifest:
    if not isinstance(doc, dict) or not isinstance(doc.get("variants"), list):
        raise ManifestError(f"{path or 'manifest'}: top level must be an object with a 'variants' list")
    unknown = sorted(set(doc) - set(_TOP_LEVEL))
    if unknown:
        raise ManifestError(f"unknown top-level key(s) {unknown}; valid keys: {sorted(_TOP_LEVEL)}")
    for key, typ in _TOP_LEVEL.items():
        if key in doc and (not isinstance(doc[key], typ) or isinstance(doc[key], bool)):
            raise ManifestError(f"top-level field '{key}' must be {typ.__name__}, got {doc[key]!r}")
    classes = doc.get("classes", 1001)
    label_offset = doc.get("label_offset", 1)
    if not 0 <= label_offset < classes:
        raise ManifestError(f"top-level 'label_offset' {label_offset} must be in [0, classes={classes})")
    variants, seen = [], set()
    for i, entry in enumerate(doc["variants"]):
        v = _check_entry(i, entry, classes, label_offset)
        if v.name in seen:
            raise ManifestError(f"variants[{i}] ({v.name}): duplicate variant {v.name!r}")
        seen.add(v.name)
        variants.append(v)
    return Manifest(variants, path)


def load_manifest(path: str | Path | None = None) -> Manifest:
    path = Path(path) if path else DEFAULT_MANIFEST
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from None
    try:
        return parse_manifest(doc, path)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


_default: Manifest | None = None


def default_manifest() -> Manifest:
    global _default
    if _default is None:
        _default = load_manifest()
    return _default


def resolve(name: str) -> Variant:
    return default_manifest().resolve(name)
