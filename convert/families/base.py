"""What a MobileNet family is, as data: the contract every ``convert/families/<key>.py`` fills in.

A family module defines one :class:`Family` instance named ``FAMILY``. Everything family-specific
lives there; the stages (manifest, download, checkpoint reading, layer guide, .h5 writing, parity,
report, factory) only read these fields and call these functions. Adding a family means adding one
module, one manifest and its tests.

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
class FactoryLayer:
    """One conv layer of the slim graph, as the archive factory builds it (graph order)."""

    scope: str  # full scope, e.g. "MobilenetV3/expanded_conv_3/squeeze_excite/Conv"
    kind: str  # one of KINDS
    kernel: int  # spatial kernel size (1, 3 or 5)
    cin: int
    cout: int


@dataclass(frozen=True)
class CheckpointFile:
    """One checkpoint inside an extracted archive.

    ``prefix`` is a template relative to the extraction root with ``{stem}`` and ``{step}``.
    ``plain_values`` says what the variables under their plain names hold: ``raw`` (training values;
    EMA values, if any, are ``/ExponentialMovingAverage`` shadows) or ``ema`` (the EMA values saved
    under the plain names, as in V3's ``ema/`` folder).
    """

    role: str  # "combined" (V1/V2 single checkpoint), "ema", "pristine"
    prefix: str
    plain_values: str  # "raw" | "ema"
    # which variables carry /ExponentialMovingAverage shadows in factory builds: "trainable", "all", "none"
    factory_shadows: str = "trainable"
    factory_slots: bool = True  # RMSProp slots + global_step in factory builds


@dataclass(frozen=True)
class ArchiveLayout:
    """Where things are in an extracted archive (templates with ``{stem}`` and ``{step}``)."""

    checkpoints: tuple[CheckpointFile, ...]  # preference order for EMA values
    reference_graphs: tuple[str, ...]  # candidate reference graph files: ``.pbtxt``/``.pb`` GraphDef or ``.meta``
    frozen: str  # the frozen inference graph (EMA values baked in)
    info: str | None  # ``_info.txt`` (V1/V2) or None
    extra_members: tuple[str, ...] = ()  # genuine members the factory does not build (e.g. .tflite)


@dataclass(frozen=True)
class GraphNodes:
    """Tensor names of the slim inference graph."""

    input: str  # "input:0"
    logits: str  # 1001-class logits, e.g. "MobilenetV1/Logits/SpatialSqueeze:0"
    pooled: str  # what keras' no-top model with pooling="avg" outputs, e.g. ".../AvgPool_1a/AvgPool:0"
    predictions: str  # the frozen graph's output node (no ":0"), e.g. "MobilenetV1/Predictions/Reshape_1"


@dataclass(frozen=True)
class Family:
    key: str  # "v1", "v2", "v3"
    title: str  # "MobileNetV1"
    scope: str  # top variable scope, e.g. "MobilenetV1"
    manifest: str  # file name under manifests/
    names: tuple[NameRule, ...]  # the name table
    layout: ArchiveLayout
    nodes: GraphNodes
    # keras_model(variant, include_top, **kwargs) -> keras.Model: the keras.applications constructor
    # (weights=None unless given), for the variant's alpha/rows/kind; kwargs pass through
    # (input_tensor, weights, classifier_activation, pooling, ...).
    keras_model: Callable[..., Any]
    # factory_layers(variant) -> list[FactoryLayer] in graph order (every variable-owning slim scope)
    factory_layers: Callable[[Any], list[FactoryLayer]]
    # forward(tf, x, variant, weight, batch_norm) -> logits tensor. Builds slim's inference graph on
    # ``x`` with slim's node names (the tensors in ``nodes`` must exist afterwards, including the
    # predictions node). ``weight(var_name)`` gives the tensor of a model variable (full name);
    # ``batch_norm(x, scope)`` applies the BN of a ``conv``/``depthwise`` scope (full scope name).
    forward: Callable[..., Any]
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
    # stem(variant) -> archive stem; keras_files(variant) -> (top .h5 name, no-top .h5 name)
    stem: Callable[[Any], str] | None = None
    keras_files: Callable[[Any], tuple[str, str]] | None = None
    # short_name(variant) -> the variant's name (default: the stem); V2 keeps "1.0_224"
    short_name: Callable[[Any], str] | None = None
    # keras_call(variant) -> the constructor call a user writes to load the converted top file (model cards)
    keras_call: Callable[[Any], str] | None = None
    # validate(variant) -> an error message naming the field, or None (checks beyond the generic ones)
    validate: Callable[[Any], str | None] | None = None
