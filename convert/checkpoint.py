"""TF1 slim checkpoint -> layer guide: exact, exhaustive, name-based reading.

The checkpoint is read with ``tf.train.load_checkpoint`` (no graph). The variables it must hold come from
the family's name table and the Keras architecture (:func:`convert.mapping.expected_variables`). Every
checkpoint variable is consumed once, ignored and counted (optimizer slots, ``global_step``, the EMA/raw
alternative not chosen), or an error that lists it. A quantization-aware checkpoint's range variables
(``.../min``, ``.../max``) are consumed by the fake-quant twin, not the .h5: which they are is decided by
walking the archive's graph (:mod:`convert.quant.walk`), and the caller passes their names in
(``twin_ranges``); without that, they are unexpected, like any other unknown variable.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .architecture import OPTIMIZERS
from .archive import VALUE_SOURCES, fill, find_checkpoint, member_matches
from .download import DownloadError, fetch
from .env import default_cache, quiet_tf
from .errors import ConversionError
from .extraction import extracted
from .fsutil import package_versions, sha256_file
from .guide import Accounting, GuideRecord, LayerGuide, Provenance, save_layer_guide, sha256_array
from .manifest import Variant
from .mapping import EMA_SUFFIX, Expected, expected_variables
from .quant import walk
from .quant.parity import open_quant_archive
from .timing import timed

quiet_tf()

# Variables that are not model weights and are deliberately ignored (but counted).
# A slot counts as optimizer state only when the variable it belongs to is an expected one.
# TF1's optimizers' slots (``<variable>/<Optimizer>[_N]``; slim's ``train_image_classifier --optimizer``) and Adam's
# non-slot accumulators
_SLOT = re.compile(r"^(?:(?P<base>.+)/(?:" + "|".join(OPTIMIZERS) + r")(?:_\d+)?|beta[12]_power(?:_\d+)?)$")
_GLOBAL_STEP = "global_step"


class CheckpointMismatchError(ConversionError):
    """The checkpoint's variables are not exactly those of the variant; lists every offender."""

    def __init__(self, prefix: str, variant: Variant, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                 wrong_shape: Iterable[tuple[str, tuple, tuple]] = (), wrong_dtype: Iterable[tuple[str, str]] = (),
                 missing_shadows: Iterable[str] = ()):
        self.prefix, self.variant = prefix, variant.name
        self.missing, self.unexpected = sorted(missing), sorted(unexpected)
        self.wrong_shape, self.wrong_dtype = sorted(wrong_shape), sorted(wrong_dtype)
        self.missing_shadows = sorted(missing_shadows)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing variable(s): {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected variable(s) (neither a {variant.family.title} weight nor "
                         f"an optimizer slot/global_step): {', '.join(self.unexpected)}")
        if self.wrong_shape:
            parts.append(f"{len(self.wrong_shape)} wrong shape(s): " + ", ".join(
                f"{n} is {list(got)}, expected {list(want)}" for n, got, want in self.wrong_shape))
        if self.wrong_dtype:
            parts.append(f"{len(self.wrong_dtype)} wrong dtype(s) (expected float32): " + ", ".join(
                f"{n} is {d}" for n, d in self.wrong_dtype))
        if self.missing_shadows:
            parts.append(f"{len(self.missing_shadows)} trainable variable(s) without /{EMA_SUFFIX} shadow in a "
                         f"checkpoint that has shadows (refusing to mix EMA and raw weights; use --value-source raw "
                         f"to convert the raw values): {', '.join(self.missing_shadows)}")
        hint = ""
        if len(self.wrong_shape) > 10:
            hint = f" (many shapes differ: is this the checkpoint of another variant? {variant.name} is {variant.stem})"
        super().__init__(f"checkpoint {prefix} does not match {variant.family.title} {variant.name}{hint}: "
                         + "; ".join(parts))


class WeightSourceError(ConversionError):
    """``--value-source ema`` on a checkpoint without EMA values, or an unknown weight mode."""


def normalize_prefix(prefix: str | Path) -> str:
    """Accept ``x.ckpt``, ``x.ckpt.index``, ``x.ckpt.data-00000-of-00001`` or ``x.ckpt.meta``."""
    p = re.sub(r"\.(index|meta|data-\d{5}-of-\d{5})$", "", str(prefix))
    if not Path(p + ".index").is_file():
        raise FileNotFoundError(f"no TF checkpoint at prefix {p!r}: {p}.index does not exist (pass the "
                                f"checkpoint prefix, e.g. .../mobilenet_v2_1.0_224.ckpt or .../ema/model-540000)")
    return p


def _layout_file(prefix: str, variant: Variant):
    """The layout checkpoint a prefix is (by its path's tail), or None."""
    for cf in variant.family.layout.checkpoints:
        template = fill(cf.prefix, variant)
        depth = template.count("/") + 1
        if member_matches("/".join(prefix.split("/")[-depth:]), template):
            return cf
    return None


@dataclass(frozen=True)
class Classes:
    """Every variable of a checkpoint in exactly one class (names in checkpoint order), and the expected
    model variables it lacks (in model order)."""

    model: tuple[str, ...]  # expected model variables present under their plain names
    shadows: dict[str, str]  # model variable -> its /ExponentialMovingAverage shadow
    slots: tuple[str, ...]  # optimizer slots of model variables, and beta1/beta2 powers
    global_step: tuple[str, ...]
    unexpected: tuple[str, ...]  # none of the above
    missing: tuple[str, ...]  # expected model variables that are absent
    twin_ranges: tuple[str, ...] = ()  # quantization ranges (and their shadows) named by the caller: the twin's


@dataclass(frozen=True)
class Choice:
    """The checkpoint variable read for one model variable, and whose value it holds."""

    key: str
    source: str  # "ema" | "raw"


@dataclass(frozen=True)
class Selection:
    """The value chosen for every model variable (model order) under a value mode."""

    mode: str  # "ema" | "raw": the values the guide holds
    chosen: dict[str, Choice]
    missing_shadows: tuple[str, ...]  # trainables without a shadow while shadows are used (an error)


def classify(names: Iterable[str], expected: Collection[str], twin_ranges: Collection[str] = ()) -> Classes:
    """Sort a checkpoint's variable names: the model variables ``expected``, their EMA shadows, optimizer
    slots (a slot counts only when the variable it belongs to is expected), ``global_step``, the
    quantization range variables ``twin_ranges`` (found by the graph walk; with their shadows, if any), the rest."""
    names = list(names)
    twin_ranges = frozenset(twin_ranges)
    overlap = sorted(twin_ranges & set(expected))
    if overlap:
        raise ValueError(f"range variables named by the graph walk are model variables: {', '.join(overlap)}")
    model, shadows, slots, global_step, unexpected, ranges = [], {}, [], [], [], []
    for name in names:
        base = name[: -len(EMA_SUFFIX) - 1] if name.endswith("/" + EMA_SUFFIX) else None
        if name == _GLOBAL_STEP:
            global_step.append(name)
        elif name in expected:
            model.append(name)
        elif name in twin_ranges or (base is not None and base in twin_ranges):
            ranges.append(name)
        elif base is not None and base in expected:
            shadows[base] = name
        elif (slot := _SLOT.match(name)) and (slot["base"] is None or slot["base"] in expected):
            slots.append(name)
        else:
            unexpected.append(name)
    present = set(names)
    return Classes(tuple(model), shadows, tuple(slots), tuple(global_step), tuple(unexpected),
                   tuple(n for n in expected if n not in present), tuple(ranges))


def choose(classes: Classes, expected: Mapping[str, Expected], value_source: str, plain: str, prefix: str) -> Selection:
    """Which value each model variable takes. ``value_source`` ``raw`` reads the plain names;
    ``auto`` and ``ema`` read every existing shadow (BN moving statistics included) when the checkpoint has shadows,
    else the plain names, which hold EMA values when ``plain`` is ``ema`` (an EMA checkpoint). ``ema``
    on a checkpoint without EMA values raises :class:`WeightSourceError` (naming ``prefix``)."""
    shadows = classes.shadows
    if value_source == "raw" or (plain == "raw" and not shadows):
        if value_source == "ema":
            raise WeightSourceError(
                f"--value-source ema needs EMA values, but checkpoint {prefix} has no /{EMA_SUFFIX} shadows; "
                f"use --value-source raw (or auto, which falls back to the raw values)")
        mode, use_shadows = "raw", False
    else:
        mode, use_shadows = "ema", bool(shadows)
    plain_source = "ema" if plain == "ema" and mode == "ema" else "raw"
    chosen = {name: Choice(shadows[name], "ema") if use_shadows and name in shadows else Choice(name, plain_source)
              for name in expected}
    absent = set(classes.missing)
    missing_shadows = tuple(n for n, e in expected.items()
                            if use_shadows and not e.target.is_moving_stat and n not in shadows and n not in absent)
    return Selection(mode, chosen, missing_shadows)


def _check_table(prefix: str, variant: Variant, expected: Mapping[str, Expected], classes: Classes,
                 selection: Selection, shapes: Mapping[str, tuple], dtypes: Mapping[str, str]) -> None:
    """Raise :class:`CheckpointMismatchError` listing every missing, unexpected, wrong-shape or
    wrong-dtype variable (a model variable or its shadow) and every missing shadow; else nothing."""
    wrong_shape, wrong_dtype = [], []
    for name, e in expected.items():
        for key in (name, classes.shadows.get(name)):
            if key is None or key not in shapes:
                continue
            if shapes[key] != e.shape:
                wrong_shape.append((key, shapes[key], e.shape))
            elif dtypes[key] != "float32":
                wrong_dtype.append((key, dtypes[key]))
    if classes.missing or classes.unexpected or wrong_shape or wrong_dtype or selection.missing_shadows:
        raise CheckpointMismatchError(prefix, variant, classes.missing, classes.unexpected, wrong_shape, wrong_dtype,
                                      selection.missing_shadows)


def read(reader, prefix: str, variant: Variant, expected: Mapping[str, Expected],
         selection: Selection, scope: str = "") -> tuple[list[GuideRecord], dict[str, np.ndarray]]:
    """Read the chosen tensor of every model variable from ``reader`` (a ``tf.train.load_checkpoint``
    reader of ``prefix``) in Keras model order, whatever order the checkpoint has: its guide records and
    the arrays by checkpoint key (under ``scope``, a backbone's ``FeatureExtractor/``)."""
    records, arrays = [], {}
    for name, e in expected.items():
        key = scope + selection.chosen[name].key
        try:
            a = np.ascontiguousarray(reader.get_tensor(key))
        except Exception as exc:  # IndexError / tf.errors.DataLossError on a truncated or corrupt data file
            raise ConversionError(f"cannot read {key} from checkpoint {prefix}: {type(exc).__name__}: {exc} "
                                  f"(is its .data file truncated or corrupt?)") from None
        if a.shape != e.shape or a.dtype != np.float32:  # the reader disagreeing with its own table
            raise CheckpointMismatchError(prefix, variant, wrong_shape=[(key, a.shape, e.shape)])
        t = e.target
        records.append(GuideRecord(key=key, name=name, layer=t.layer, weight=t.weight, kind=t.kind, leaf=t.leaf,
                                   block=t.block, shape=tuple(a.shape), dtype=a.dtype.name,
                                   source=selection.chosen[name].source, sha256=sha256_array(a)))
        arrays[key] = a
    return records, arrays


def _open_checkpoint(prefix: str):
    # TF imported here, not at module level: it costs 2.8-3.1 s (measured), which every importer of this
    # module would pay, e.g. a pipeline process that settles up-to-date variants without TF
    import tensorflow as tf

    try:
        return tf.train.load_checkpoint(prefix)
    except Exception as exc:  # tf.errors.* for a corrupt or unreadable bundle
        raise ConversionError(f"cannot read TF checkpoint {prefix}: {exc}") from None


@timed("layer guide")
def build_layer_guide(checkpoint_prefix: str | Path, variant: Variant, value_source: str = "auto",
                      provenance: Provenance | None = None, twin_ranges: Collection[str] = (),
                      not_in_model: Collection[str] = ()) -> LayerGuide:
    """Read a TF1 checkpoint by name and build the layer guide of ``variant``: :func:`classify` its
    variables, :func:`choose` a value per model variable, check the table, :func:`read` the values.

    ``value_source``: ``auto`` uses EMA values when the checkpoint has them, else the raw values; ``ema``
    requires EMA values; ``raw`` ignores shadows. EMA values are the ``/ExponentialMovingAverage`` shadows
    (each one that exists, BN moving statistics included, as slim's evaluation with
    ``--moving_average_decay`` restores them), or the plain values of an EMA checkpoint (V3's ``ema/``).
    Optimizer slots and ``global_step`` are ignored and counted; ``twin_ranges`` (the quantization range
    variables the graph walk found, for a quantization-aware archive) are counted as the twin's
    (``counts.twin_ranges``); anything else not consumed, any expected variable missing, any wrong shape or
    dtype raises :class:`CheckpointMismatchError`.

    A variant under a ``scope_prefix`` (a backbone inside another model's checkpoint) reads the variables under
    ``<scope_prefix>/``; the variables outside it, and ``not_in_model`` (model variables the Keras model does not
    hold: a backbone's V3 ``Conv_2``), are counted (``counts.outside_scope``) and listed in no error.
    """
    if value_source not in VALUE_SOURCES:
        raise WeightSourceError(f"unknown weight source {value_source!r}; valid: {', '.join(VALUE_SOURCES)}")
    prefix = normalize_prefix(checkpoint_prefix)
    layout_file = _layout_file(prefix, variant)
    plain = layout_file.plain_values if layout_file else "raw"
    if provenance is None:
        provenance = Provenance(checkpoint=str(Path(prefix).resolve()),
                                checkpoint_role=layout_file.role if layout_file else "given")
    if value_source == "raw" and plain == "ema":
        raise WeightSourceError(f"--value-source raw needs the training values, but {prefix} is the "
                                f"{layout_file.role} checkpoint (EMA values under the plain names)")
    reader = _open_checkpoint(prefix)
    table = {k: tuple(int(d) for d in v) for k, v in reader.get_variable_to_shape_map().items()}
    scope = variant.scope_prefix + "/" if variant.scope_prefix else ""

    def key(name: str) -> str:  # the checkpoint key of a name below the scope
        return name if name == _GLOBAL_STEP else scope + name

    def of_not_in_model(name: str) -> bool:  # such a variable, its shadow or its slots
        return any(name == n or name.startswith(n + "/") for n in not_in_model)

    not_in_model = set(not_in_model)
    model_scope = scope + variant.family.scope + "/"  # a backbone's: FeatureExtractor/MobilenetV2/; siblings are outside
    inside = ([k[len(scope):] for k in table if k.startswith(model_scope)] if scope else list(table)) \
        + ([_GLOBAL_STEP] if scope and _GLOBAL_STEP in table else [])
    shapes = {k: table[key(k)] for k in inside if not of_not_in_model(k)}
    outside = len(table) - len(shapes)
    all_dtypes = reader.get_variable_to_dtype_map()
    dtypes = {k: all_dtypes[key(k)].name for k in shapes}
    expected = expected_variables(variant)
    absent = sorted(set(twin_ranges) - set(shapes))
    if absent:
        raise ConversionError(f"checkpoint {prefix} lacks {len(absent)} quantization range variable(s) the graph "
                              f"names: {', '.join(absent)}")
    classes = classify(shapes, expected, twin_ranges)
    selection = choose(classes, expected, value_source, plain, prefix)
    _check_table(prefix, variant, expected, classes, selection, shapes, dtypes)
    records, arrays = read(reader, prefix, variant, expected, selection, scope)
    by_source: dict[str, int] = {}
    for r in records:
        by_source[r.source] = by_source.get(r.source, 0) + 1
    counts = Accounting(checkpoint_variables=len(shapes), consumed=len(records), ignored_slots=len(classes.slots),
                        ignored_global_step=len(classes.global_step),
                        unselected=len(expected) + len(classes.shadows) - len(records), by_source=by_source,
                        mode=selection.mode, twin_ranges=len(classes.twin_ranges), outside_scope=outside)
    counts = dataclasses.replace(counts, checkpoint_variables=len(table))
    assert (counts.consumed + counts.ignored_slots + counts.ignored_global_step + counts.unselected
            + counts.twin_ranges + counts.outside_scope == len(table))
    return LayerGuide(variant.name, variant.family_key, value_source, provenance, records, arrays, counts,
                      versions=package_versions())


# ------------------------------------------------------------------------------------------------
# Extraction entry point


def guide_from_extracted(root: str | Path, variant: Variant, value_source: str = "auto", archive: Path | None = None,
                         archive_sha256: str | None = None, url: str | None = None,
                         twin_ranges: Collection[str] | None = None) -> LayerGuide:
    """The layer guide of an extracted archive: the layout's checkpoint for ``value_source``, read by name.
    ``twin_ranges`` (see :func:`build_layer_guide`): a quantized variant's are found by walking the archive's
    graph when not given. The pin recorded is that of the URL that served it."""
    if twin_ranges is None:
        twin_ranges = walk.range_variables(open_quant_archive(root, variant).quantizers) if variant.family.quantized else ()
    prefix, cf = find_checkpoint(root, variant, value_source)
    pin = next((sha for u, sha, _ in variant.urls if u == url), variant.sha256)
    provenance = Provenance(checkpoint=Path(prefix).relative_to(root).as_posix(), checkpoint_role=cf.role,
                            archive=str(Path(archive).resolve()) if archive else None,
                            archive_sha256=archive_sha256, pin=pin, url=url)
    return build_layer_guide(prefix, variant, value_source, provenance, twin_ranges)


def extract(variant: Variant, *, archive: str | Path | None = None, checkpoint: str | Path | None = None,
            value_source: str = "auto", out_dir: str | Path = "work", cache_dir: str | Path | None = None,
            ignore_pins: bool = False) -> Path:
    """Build and save the layer guide of a variant; returns ``out_dir/<name>/layer_guide.p``.

    Source: ``checkpoint`` (a prefix), else ``archive`` (an official-layout .tgz, extracted safely to a
    temporary directory), else the variant's archive in ``cache_dir`` (fetched by ``convert.download``:
    reused when cached and verified, downloaded otherwise).
    """
    if archive is not None and checkpoint is not None:
        raise ConversionError("give either an archive or a checkpoint, not both")
    out = Path(out_dir) / variant.name
    if checkpoint is not None:
        return save_layer_guide(build_layer_guide(checkpoint, variant, value_source), out)
    if archive is None:
        cache_dir = cache_dir if cache_dir is not None else default_cache()
        try:
            result = fetch(variant, cache_dir=cache_dir, ignore_pins=ignore_pins)
        except DownloadError as exc:
            raise ConversionError(f"no usable archive of {variant.name} in cache {cache_dir}: {exc}; pass "
                                  f"--archive TGZ or --checkpoint PREFIX") from None
        guide = guide_from_extracted(result.extracted, variant, value_source, result.archive, result.sha256, result.source)
        return save_layer_guide(guide, out)
    archive = Path(archive)
    digest = sha256_file(archive) if archive.is_file() else None
    with extracted(variant, archive, digest) as root:
        guide = guide_from_extracted(root, variant, value_source, archive, digest)
    return save_layer_guide(guide, out)
