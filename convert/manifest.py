"""Every released variant of every family as data (``manifests/*.json``), validated on load, and
variant-name resolution.

Everything downstream asks this module which variants exist and what their archive, URL and Keras
output file names are; nothing else hard-codes a variant. Each family has one manifest; the generic
fields are checked here, the family's own fields and names through its :class:`~convert.families.base.Family`.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .env import manifest_dir
from .families import FAMILIES, family as family_of
from .families.base import Family

MANIFEST_DIR = manifest_dir()  # the checkout's manifests/, or the installed package's copy

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URL = re.compile(r"^(https?|file)://[^\s/]*(/[^\s]*)?$")
_NUMBER = (int, float)
_COMMON = {
    "alpha": str, "rows": int, "macs_m": int, "params_m": _NUMBER, "top1": _NUMBER, "url": str,
    "keras_weights": str, "keras_weights_no_top": str,
}
_COMMON_OPTIONAL = {"top5": (*_NUMBER, type(None)), "sha256": (str, type(None)), "size": (int, type(None)),
                    "unavailable": str, "alternatives": list}
_ALTERNATIVE = {"url": str, "sha256": (str, type(None)), "size": (int, type(None))}


class ManifestError(ValueError):
    """A manifest file or entry is malformed; the message names the entry and the field."""


class UnknownVariantError(KeyError):
    """A variant name that is not in the manifest; the message lists the closest valid names."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0])


@dataclass(frozen=True)
class Alternative:
    """Another URL serving the same archive (an older release of the same bytes' name), with its own pins:
    the downloader tries it when the primary URL fails to download."""

    url: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Variant:
    """One released float checkpoint archive: its published facts, where it lives, where it goes."""

    family_key: str  # "v1" | "v2" | "v3": the key of :attr:`family`
    alpha: str
    rows: int
    macs_m: int | None  # null only where the family allows it (``Family.nullable_fields``)
    params_m: float | None
    top1: float | None  # the catalogue's top-1 of this archive (V2 quantized: null, see float_sibling_top1)
    url: str
    keras_weights: str
    keras_weights_no_top: str
    top5: float | None = None
    sha256: str | None = None  # the public pin of the genuine archive, when one is known
    size: int | None = None  # its size in bytes, when known
    kind: str | None = None  # V3: "large" | "small"
    minimalistic: bool = False  # V3
    step: int | None = None  # V3: the training step in the checkpoint file names
    quantized_url: str | None = None  # V2
    pixel1_latency_ms: float | None = None  # V2
    float_sibling_top1: float | None = None  # V2 quantized: the catalogue gives only the float sibling's top-1
    unavailable: str | None = None  # why the upstream URL cannot serve it (then only a mirror can)
    alternatives: tuple[Alternative, ...] = ()  # other URLs of the same archive, each with its own pins
    classes: int = 1001  # slim logits; index 0 is "background"
    label_offset: int = 1  # keras class k == slim class k + label_offset
    # a variant described by a checkpoint (``convert checkpoint``) rather than by a catalogue row:
    origin: str = "catalogue"  # "catalogue" | "checkpoint"
    label: str | None = None  # its name (``--name``): the stem of its file names
    cols: int | None = None  # the input's width, when not ``rows`` (any size keras.applications takes)
    scope_prefix: str = ""  # the scope it sits under inside another model's checkpoint (``--scope``), e.g. "FeatureExtractor"
    has_head: bool = True  # False: a backbone without logits (converted without top only)

    @property
    def input_size(self) -> tuple[int, int]:
        """(rows, cols) of the model's input."""
        return self.rows, self.cols or self.rows

    @property
    def family(self) -> Family:
        """The family this variant belongs to (its name table, layout, graph, Keras constructor)."""
        return family_of(self.family_key)

    @property
    def stem(self) -> str:
        """The archive's file name without ``.tgz``, e.g. ``mobilenet_v1_0.25_128`` (a checkpoint's variant:
        its ``label``)."""
        return self.label or self.family.stem(self)

    @property
    def name(self) -> str:
        """The variant's name: the stem, or for V2 the short ``1.0_224`` (a checkpoint's variant: its ``label``)."""
        if self.label:
            return self.label
        return self.family.short_name(self) if self.family.short_name else self.stem

    @property
    def archive_filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def depth_multiplier(self) -> float:
        return float(self.alpha)

    @property
    def urls(self) -> list[tuple[str, str | None, int | None]]:
        """(url, sha256, size) of the primary URL, then of each alternative, in the order to try them."""
        return [(self.url, self.sha256, self.size), *((a.url, a.sha256, a.size) for a in self.alternatives)]

    def to_dict(self) -> dict:
        fields = dataclasses.asdict(self)
        return {"name": self.name, "stem": self.stem, "family": fields.pop("family_key"), **fields}


def _typename(typ) -> str:
    return " or ".join(t.__name__ for t in typ) if isinstance(typ, tuple) else typ.__name__


def _check_type(where: str, key: str, value, typ) -> None:
    types = typ if isinstance(typ, tuple) else (typ,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        raise ManifestError(f"{where}: field '{key}' must be {_typename(typ)}, got {value!r}")


def _check_pins(where: str, entry: dict) -> None:
    sha = entry.get("sha256")
    if sha is not None and not _SHA256.match(sha):
        raise ManifestError(f"{where}: field 'sha256' must be 64 lowercase hex digits or null, got {sha!r}")
    if entry.get("size") is not None and entry["size"] <= 0:
        raise ManifestError(f"{where}: field 'size' must be a positive byte count or null, got {entry['size']!r}")


def _check_alternative(where: str, alt: object, primary: str) -> Alternative:
    if not isinstance(alt, dict):
        raise ManifestError(f"{where}: expected an object with {sorted(_ALTERNATIVE)}, got {alt!r}")
    unknown = sorted(set(alt) - set(_ALTERNATIVE))
    if unknown or "url" not in alt:
        raise ManifestError(f"{where}: keys must be 'url' (required), 'sha256', 'size'; got {sorted(alt)}")
    for key, typ in _ALTERNATIVE.items():
        if key in alt:
            _check_type(where, key, alt[key], typ)
    _check_pins(where, alt)
    if not _URL.match(alt["url"]) or alt["url"].rsplit("/", 1)[-1] != primary.rsplit("/", 1)[-1]:
        raise ManifestError(f"{where}: field 'url' must be an http(s)/file URL of the same file name as the "
                            f"primary {primary.rsplit('/', 1)[-1]!r}, got {alt['url']!r}")
    return Alternative(alt["url"], alt.get("sha256"), alt.get("size"))


def _check_entry(i: int, entry: object, fam: Family, classes: int, label_offset: int) -> Variant:
    where = f"variants[{i}]"
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected an object, got {type(entry).__name__}")
    if "alpha" in entry and "rows" in entry:
        label = f"{entry.get('kind', '')}{'-minimalistic' if entry.get('minimalistic') else ''}"
        where = f"variants[{i}] ({(label + ' ') if label else ''}{entry['alpha']}_{entry['rows']})"
    required = {**_COMMON, **fam.extra_fields}
    unknown = sorted(set(entry) - set(required) - set(_COMMON_OPTIONAL))
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted({**required, **_COMMON_OPTIONAL})}")
    for key, typ in required.items():
        if key not in entry:
            raise ManifestError(f"{where}: missing field '{key}'")
        if key in fam.nullable_fields:
            typ = (*(typ if isinstance(typ, tuple) else (typ,)), type(None))
        _check_type(where, key, entry[key], typ)
    for key, typ in _COMMON_OPTIONAL.items():
        if key in entry:
            _check_type(where, key, entry[key], typ)
    _check_pins(where, entry)
    fields = dict(entry)
    fields["alternatives"] = tuple(_check_alternative(f"{where}: alternatives[{j}]", alt, entry["url"])
                                   for j, alt in enumerate(entry.get("alternatives", ())))
    for key in ("params_m", "top1", "top5", "pixel1_latency_ms", "float_sibling_top1"):
        if fields.get(key) is not None:
            fields[key] = float(fields[key])
    # every field has its type: the values are checked on the typed record
    variant = Variant(family_key=fam.key, classes=classes, label_offset=label_offset, **fields)
    if variant.alpha not in fam.alphas:
        raise ManifestError(f"{where}: field 'alpha' is {variant.alpha!r}; valid alphas: {', '.join(fam.alphas)}")
    if variant.rows not in fam.rows:
        raise ManifestError(f"{where}: field 'rows' is {variant.rows!r}; valid rows: {', '.join(map(str, fam.rows))}")
    for key, url in (("url", variant.url), ("quantized_url", variant.quantized_url)):
        if url is not None and (not _URL.match(url) or not url.endswith(".tgz")):
            raise ManifestError(f"{where}: field '{key}' is not an http(s)/file URL of a .tgz: {url!r}")
    if variant.unavailable is not None and not variant.unavailable.strip():
        raise ManifestError(f"{where}: field 'unavailable' must give the reason, got {variant.unavailable!r}")
    expected_file = f"{variant.stem}.tgz"
    if variant.archive_filename != expected_file:
        raise ManifestError(f"{where}: field 'url' must end in {expected_file!r}, got {variant.url!r}")
    for key, got, want in zip(("keras_weights", "keras_weights_no_top"),
                              (variant.keras_weights, variant.keras_weights_no_top), fam.keras_files(variant)):
        if got != want:
            raise ManifestError(f"{where}: field '{key}' must be {want!r}, got {got!r}")
    problem = fam.validate(variant) if fam.validate else None
    if problem:
        raise ManifestError(f"{where}: {problem}")
    return variant


class Manifest:
    """The validated variants of one or more families, in manifest order."""

    def __init__(self, variants: Iterable[Variant], path: Path | None = None):
        self.variants = list(variants)
        self.path = path
        self._by_name: dict[str, Variant] = {}
        for v in self.variants:
            for alias in (v.name, v.stem):
                self._by_name.setdefault(alias, v)

    def __iter__(self):
        return iter(self.variants)

    def __len__(self) -> int:
        return len(self.variants)

    def __add__(self, other: "Manifest") -> "Manifest":
        return Manifest([*self.variants, *other.variants])

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(v.family_key for v in self.variants))

    def resolve(self, name: str) -> Variant:
        """Accept a variant's name, its archive stem, or the archive file name: ``1.0_224`` (V2),
        ``mobilenet_v2_1.0_224``, ``mobilenet_v1_0.25_128``, ``v3-large_224_1.0_float.tgz``."""
        return self._resolve(name, ())

    def _resolve(self, name: str, selectors: Iterable[str]) -> Variant:
        """:meth:`resolve`; an unknown name's hint also considers ``selectors`` (family keys, ``all``)."""
        key = str(name).strip()
        key = key[: -len(".tgz")] if key.endswith(".tgz") else key
        if key in self._by_name:
            return self._by_name[key]
        selectors = list(selectors)
        close = difflib.get_close_matches(key, [*selectors, *self._by_name], n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"valid: {', '.join([*selectors, *self.names])}"
        raise UnknownVariantError(f"unknown variant {name!r}; {hint} (run `python models_to_load.py` for the list)")

    def select(self, names: Iterable[str] = ("all",), alpha: str | None = None, rows: int | None = None,
               family: str | None = None) -> list[Variant]:
        """Resolve names (``all`` means every variant, a family key such as ``v1`` every variant of that
        family), then filter by family/alpha/rows; manifest order kept."""
        names = list(names) or ["all"]
        pool = [v for v in self.variants if family is None or v.family_key == family]
        if family is not None and family not in self.families:
            raise ManifestError(f"--family {family!r} is not a family; valid: {', '.join(self.families)}")
        alphas = sorted({v.alpha for v in pool}, key=float, reverse=True)
        rows_all = sorted({v.rows for v in pool}, reverse=True)
        if alpha is not None:  # "1" and "1.00" mean 1.0
            alpha = next((a for a in alphas if _same_number(a, alpha)), alpha)
            if alpha not in alphas:
                raise ManifestError(f"--alpha {alpha!r} is not a released alpha; valid: {', '.join(alphas)}")
        if rows is not None and rows not in rows_all:
            raise ManifestError(f"--rows {rows!r} is not a released resolution; valid: {', '.join(map(str, rows_all))}")
        wanted: set[str] = set()
        for n in names:
            if n == "all":
                wanted.update(v.name for v in pool)
            elif n in self.families:
                wanted.update(v.name for v in pool if v.family_key == n)
            else:
                wanted.add(self._resolve(n, ["all", *self.families]).name)
        return [v for v in pool if v.name in wanted and (alpha is None or v.alpha == alpha)
                and (rows is None or v.rows == rows)]


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
    if doc.get("family") not in FAMILIES:
        raise ManifestError(f"top-level field 'family' is {doc.get('family')!r}; valid: {', '.join(FAMILIES)}")
    fam = FAMILIES[doc["family"]]
    classes = doc.get("classes", 1001)
    label_offset = doc.get("label_offset", 1)
    if not 0 <= label_offset < classes:
        raise ManifestError(f"top-level 'label_offset' {label_offset} must be in [0, classes={classes})")
    variants, seen = [], set()
    for i, entry in enumerate(doc["variants"]):
        v = _check_entry(i, entry, fam, classes, label_offset)
        if v.name in seen:
            raise ManifestError(f"variants[{i}] ({v.name}): duplicate variant {v.name!r}")
        seen.add(v.name)
        variants.append(v)
    return Manifest(variants, path)


def load_manifest(path: str | Path | None = None) -> Manifest:
    """One manifest file, or (no path) every family's manifest, families in registry order."""
    if path is None:
        return sum((load_manifest(MANIFEST_DIR / f.manifest) for f in FAMILIES.values()), Manifest([]))
    path = Path(path)
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
