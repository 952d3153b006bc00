"""What a MobileNet family is, as data: the contract every ``convert/families/<key>.py`` fills in.

A family module defines one :class:`Family` instance named ``FAMILY``: data (name table, archive layout,
graph nodes, file-name templates, the keras.applications constructor's name), read by the stages
(manifest, download, checkpoint reading, layer guide, .h5 writing, parity, report) through the generic
methods of :class:`Family`. Adding a family, or a sibling with other file names or another layout, means
adding data: one module, one manifest, its tests and, for a new architecture, a graph builder in the
archive factory (``convert/factory/graphs``), which the conversion path never imports.

Vocabulary
----------
* *stem*: the archive's file name without ``.tgz`` (``mobilenet_v1_0.25_128``, ``v3-large_224_1.0_float``).
* *scope*: a slim variable scope below the family's top scope, e.g. ``Conv2d_3_pointwise``.
* *layer kind* (:data:`KINDS`): which variables a slim scope owns.

  - ``conv``:      ``<scope>/weights`` + ``<scope>/BatchNorm/{gamma,beta,moving_mean,moving_variance}``
  - ``depthwise``: ``<scope>/depthwise_weights`` + the same four BatchNorm variables
  - ``conv_bias``: ``<scope>/weights`` + ``<scope>/biases`` (no BatchNorm)
  - ``head``:      like ``conv_bias``; the 1001-class logits conv, written to Keras without the
    background class (``label_offset``)
"""
from __future__ import annotations

from collections.abc import Mapping

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

KINDS = ("conv", "depthwise", "conv_bias", "head")
BN_LEAVES = ("gamma", "beta", "moving_mean", "moving_variance")
MOVING_STATS = ("moving_mean", "moving_variance")
# TF variable leaf -> Keras weight name
LEAF_TO_KERAS = {"weights": "kernel", "depthwise_weights": "kernel", "biases": "bias", "gamma": "gamma",
                 "beta": "beta", "moving_mean": "moving_mean", "moving_variance": "moving_variance"}


def kernel_leaf(kind: str) -> str:
    return "depthwise_weights" if kind == "depthwise" else "weights"


def has_bn(kind: str) -> bool:
    return kind in ("conv", "depthwise")


def to_keras_input(x, keras_input_range: tuple[float, float]):
    """Inputs in [-1, 1] (slim's range) mapped linearly onto a Keras model's ``keras_input_range``."""
    lo, hi = keras_input_range
    return x if (lo, hi) == (-1.0, 1.0) else (x + 1.0) * ((hi - lo) / 2.0) + lo


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """slim's ``_make_divisible`` (``nets/mobilenet/mobilenet.py``, shared by V2 and V3): the nearest multiple
    of ``divisor``, at least ``min_value``, and never more than 10 % below ``v``."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


@dataclass(frozen=True)
class NameRule:
    """One row of a family's name table: a slim scope template and its Keras layer(s).

    Templates may hold ``{block}`` (an integer >= 1). ``keras_bn`` names the Keras BatchNormalization
    layer of ``conv``/``depthwise`` scopes (None for ``conv_bias``/``head``).
    """

    scope: str  # below the family scope, e.g. "expanded_conv_{block}/expand"
    kind: str  # one of KINDS
    keras: str  # Keras layer holding kernel (and bias), e.g. "block_{block}_expand"
    keras_bn: str | None = None


@dataclass(frozen=True)
class CheckpointFile:
    """One checkpoint inside an extracted archive.

    ``prefix`` is a template relative to the extraction root with ``{stem}`` and ``{step}``.
    ``plain_values`` says what the variables under their plain names hold: ``raw`` (training values;
    EMA values, if any, are ``/ExponentialMovingAverage`` shadows) or ``ema`` (the EMA values saved
    under the plain names, as in V3's ``ema/`` folder).
    """

    role: str  # "combined" (V1/V2 single checkpoint), "ema", "pristine"
    prefix: str  # a template; ``*`` in it: discovered (the one ``<prefix>.index`` matching the pattern)
    plain_values: str  # "raw" | "ema"


@dataclass(frozen=True)
class ArchiveLayout:
    """Where things are in an extracted archive (templates with ``{stem}`` and ``{step}``)."""

    checkpoints: tuple[CheckpointFile, ...]  # preference order for EMA values
    reference_graphs: tuple[str, ...]  # candidate reference graph files: ``.pbtxt``/``.pb`` GraphDef or ``.meta``
    frozen: str  # the frozen inference graph (EMA values baked in)
    info: str | None  # ``_info.txt`` (V1/V2) or None
    extra_members: tuple[str, ...] = ()  # genuine members the factory does not build (e.g. .tflite)
    tflite: str | None = None  # the archive's own ``.tflite`` (quantized families: the deployment reference)
    # Any template above may hold ``*`` (a glob within one folder): the member is then *discovered* by that
    # pattern (e.g. ``v2_{rows}_{alpha_percent}/*.pb``); no match or more than one is an error listing the
    # extracted members (:mod:`convert.archive`).


# The 2018 slim classifier releases (V1, V2): one checkpoint of raw values with EMA shadows, the eval graph,
# the frozen graph and an info file, all at the archive's top level.
TOP_LEVEL_LAYOUT = ArchiveLayout(
    checkpoints=(CheckpointFile("combined", "{stem}.ckpt", "raw"),),
    reference_graphs=("{stem}_eval.pbtxt", "{stem}.ckpt.meta"),
    frozen="{stem}_frozen.pb", info="{stem}_info.txt", extra_members=("{stem}.tflite",))


@dataclass(frozen=True)
class GraphNodes:
    """Tensor names of the slim inference graph."""

    input: str  # "input:0"
    logits: str  # 1001-class logits, e.g. "MobilenetV1/Logits/SpatialSqueeze:0"
    pooled: str  # what keras' no-top model with pooling="avg" outputs, e.g. ".../AvgPool_1a/AvgPool:0"
    predictions: str  # the frozen graph's output node (no ":0"), e.g. "MobilenetV1/Predictions/Reshape_1"


@dataclass(frozen=True)
class Lookup:
    """A name part looked up from one variant field: e.g. keras' V1 alpha text (``alpha`` "0.75" -> "7_5")
    or V3's constructor suffix (``kind`` "large" -> "Large"). A value outside the table is invalid."""

    field: str  # a Variant field
    table: dict[Any, str]


@dataclass(frozen=True)
class FileNames:
    """A family's names as ``str.format`` templates over a variant's fields (``alpha``, ``rows``, ``kind``,
    ``minimalistic``, ``step``, ...), ``alpha_percent`` (``round(alpha * 100)``) and the family's ``parts``."""

    stem: str  # the archive stem, e.g. "mobilenet_v1_{alpha}_{rows}"
    keras_top: str  # keras.applications' weight file with top
    keras_no_top: str  # ... and without
    short_name: str | None = None  # the variant's name when not its stem (V2: "{alpha}_{rows}")
    twin: str | None = None  # quantized families: the fake-quant Keras twin ("{stem}.keras")
    tflite: str | None = None  # quantized families: the converted 8-bit TFLite model ("{stem}.tflite")
    # URL fields of the manifest and the file name each must end in (V2: quantized_url)
    linked_files: dict[str, str] = field(default_factory=dict)
    parts: dict[str, Lookup] = field(default_factory=dict)


@dataclass(frozen=True)
class KerasApp:
    """How the family's keras.applications constructor is called for a variant."""

    constructor: str  # a ``keras.applications`` name, a template like FileNames' ("MobileNetV3{Kind}")
    variant_args: tuple[str, ...] = ()  # Variant fields passed as keyword arguments (V3: minimalistic)
    defaults: dict[str, Any] = field(default_factory=dict)  # keyword defaults a caller may override
    call_note: str = ""  # appended to the call shown in model cards


@dataclass(frozen=True)
class Family:
    """One family as data. The name and Keras methods read only ``files`` and ``keras_app``."""

    key: str  # "v1", "v2", "v3", "v1-quant", "v2-quant", "v3-quant"
    title: str  # "MobileNetV1"
    scope: str  # top variable scope, e.g. "MobilenetV1"
    manifest: str  # file name under manifests/
    names: tuple[NameRule, ...]  # the name table
    layout: ArchiveLayout
    nodes: GraphNodes
    files: FileNames
    keras_app: KerasApp
    # graph rewrites parity reports as extra figures: name -> (description, fn(graph_def) -> (graph_def, count))
    reference_rewrites: dict[str, tuple[str, Callable[[Any], tuple[Any, int]]]] = field(default_factory=dict)
    # per-rewrite tolerance factor (relative); the as-is graph uses ``tolerance``
    tolerance: float = 1e-4  # pass: max |dlogit| <= tolerance * max(1, max |reference logit|)
    rewrite_tolerance: float = 1e-4
    # top-5 must agree on every input for the as-is comparison (V3, whose gate constant differs)
    require_top5: bool = False
    # the input range of the default keras.applications model: (-1, 1) for V1/V2; V3's includes its
    # Rescaling layer and takes (0, 255). Parity and evaluate map [-1, 1] inputs onto it.
    keras_input_range: tuple[float, float] = (-1.0, 1.0)
    # manifest data: released alphas / rows, the family's extra per-variant fields {name: type(s)}
    alphas: tuple[str, ...] = ()
    rows: tuple[int, ...] = ()
    extra_fields: dict[str, Any] = field(default_factory=dict)
    # check(variant) -> an error message naming the field, or None: rules no template states (V3)
    check: Callable[[Any], str | None] | None = None
    # quantization-aware families: the float sibling's key (its keras.applications constructor builds the
    # float .h5) and whether the archive's graph holds FakeQuant ops with range variables in the checkpoint
    float_family: str | None = None
    quantized: bool = False
    # generic manifest fields (``macs_m``, ``params_m``, ``top1``) this family allows to be null
    nullable_fields: tuple[str, ...] = ()

    def format_fields(self, variant) -> dict[str, Any]:
        """The values the templates may name (a lookup whose value is outside its table is left out:
        :meth:`validate` reports it)."""
        fields = _TemplateFields(self, variant)
        names = [f.name for f in dataclasses.fields(variant)] + ["alpha_percent", *self.files.parts]
        return {name: fields[name] for name in names if name in fields}

    def _format(self, template: str, variant) -> str:
        # only the fields the template names are read (the Keras model's cache key relies on what is read)
        return template.format_map(_TemplateFields(self, variant))

    def stem(self, variant) -> str:
        """The archive's file name without ``.tgz``."""
        return self._format(self.files.stem, variant)

    def short_name(self, variant) -> str:
        """The variant's name: the stem unless the family has a shorter one (V2's ``1.0_224``)."""
        return self._format(self.files.short_name or self.files.stem, variant)

    def keras_files(self, variant) -> tuple[str, str]:
        """(top, no-top) weight file names, as keras.applications names them."""
        return self._format(self.files.keras_top, variant), self._format(self.files.keras_no_top, variant)

    def twin_file(self, variant) -> str | None:
        """The fake-quant Keras twin's file name (quantized families), else None."""
        return self._format(self.files.twin, variant) if self.files.twin else None

    def tflite_file(self, variant) -> str | None:
        """The converted 8-bit ``.tflite`` file name (quantized families), else None."""
        return self._format(self.files.tflite, variant) if self.files.tflite else None

    def keras_constructor(self, variant) -> str:
        return self._format(self.keras_app.constructor, variant)

    def keras_model(self, variant, include_top: bool, **kwargs):
        """The keras.applications model of the variant (``weights=None`` unless given); kwargs pass
        through (input_tensor, weights, classifier_activation, pooling, ...)."""
        import keras  # lazily: reading families and manifests does not load Keras

        options = {**self.keras_app.defaults, **{k: getattr(variant, k) for k in self.keras_app.variant_args}, **kwargs}
        constructor = getattr(keras.applications, self.keras_constructor(variant))
        return constructor(alpha=float(variant.alpha),
                           input_shape=options.pop("input_shape", (*variant.input_size, 3)),
                           include_top=include_top, weights=options.pop("weights", None),
                           classes=variant.classes - variant.label_offset, **options)

    def keras_call(self, variant) -> str:
        """The constructor call a user writes to load the converted top file (model cards)."""
        rows, cols = variant.input_size
        classes = variant.classes - variant.label_offset
        top = ([f"classes={classes}"] if classes != 1000 else []) + [f'weights="{variant.keras_weights}"'] \
            if variant.has_head else ['include_top=False', 'pooling="avg"', f'weights="{variant.keras_weights_no_top}"']
        args = [f"alpha={variant.alpha}", *(f"{k}={getattr(variant, k)}" for k in self.keras_app.variant_args),
                f"input_shape=({rows}, {cols}, 3)", *top]
        return f"model = keras.applications.{self.keras_constructor(variant)}({', '.join(args)}){self.keras_app.call_note}"

    def validate(self, variant) -> str | None:
        """An error message naming the first bad field (beyond the manifest's generic checks), or None."""
        for lookup in self.files.parts.values():
            value = getattr(variant, lookup.field)
            if value not in lookup.table:
                return f"field '{lookup.field}' is {value!r}; valid {lookup.field}s: {', '.join(map(str, lookup.table))}"
        for url_field, template in self.files.linked_files.items():
            want, url = self._format(template, variant), getattr(variant, url_field)
            if url.rsplit("/", 1)[-1] != want:
                return f"field '{url_field}' must end in {want!r}, got {url!r}"
        return self.check(variant) if self.check else None


class _TemplateFields(Mapping):
    """A variant's template values, each read when a template names it: the variant's fields, ``alpha_percent``
    and the family's lookup parts (absent when the variant's value is outside the lookup's table)."""

    def __init__(self, family: Family, variant):
        self._family, self._variant = family, variant

    def __getitem__(self, name: str):
        parts = self._family.files.parts
        if name in parts:
            key = getattr(self._variant, parts[name].field)
            if key not in parts[name].table:
                raise KeyError(name)
            return parts[name].table[key]
        if name == "alpha_percent":
            return round(float(self._variant.alpha) * 100)
        if name.startswith("_") or not hasattr(self._variant, name):
            raise KeyError(name)
        return getattr(self._variant, name)

    def __iter__(self):
        raise TypeError("template fields are read by name only")

    def __len__(self) -> int:
        raise TypeError("template fields are read by name only")
