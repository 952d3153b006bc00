"""A MobileNet's architecture read from its checkpoint alone: the variable -> shape map of a TF1 TF-slim checkpoint
(``tf.train.load_checkpoint(prefix).get_variable_to_shape_map()``) in, a typed :class:`Inferred` out.

What is read, and from where:

* the family, from the scope the model variables sit under (``MobilenetV1/``, ``MobilenetV2/``,
  ``MobilenetV3/``), or under ``scope`` (``FeatureExtractor/MobilenetV2``: a backbone inside another model);
* for V3, large or small from the number of ``expanded_conv`` blocks (15 / 11), minimalistic from the
  squeeze-excite variables and depthwise kernel sizes (none and all 3x3 / slim's pattern);
* the depth multiplier (alpha), by trying alphas against every layer's output channels with slim's rounding
  (V1 ``max(int(d * alpha), 8)``; V2/V3 ``make_divisible(d * alpha, 8)``, the last layer kept at 1280 / 1024
  for alpha < 1 when slim's ``finegrain_classification_mode`` was on, else scaled too). The alpha kept is the
  first that reproduces every width in this order: the catalogue's alphas, then one, two and three decimals,
  each tier nearest first to the widest layer's ratio. It must also be one for which keras.applications
  builds the same widths (Keras' own rules, restated below from its source): a checkpoint no such alpha
  explains is an error naming the layer and both widths;
* the class count from the logits ``Logits/Conv2d_1c_1x1`` (its output channels; whether class 0 is a
  background class cannot be read); no logits: a backbone, convertible without top only;
* the rest, counted: EMA shadows, optimizer slots (RMSProp, Momentum, Adam, Adagrad, Ftrl, Adadelta, ...),
  ``global_step``, quantization range variables (``.../min|max`` under ``*_quant`` scopes), variables
  outside the scope, variables inside it that are none of these.

The input size is not in a checkpoint (convolutions and the pools are size-agnostic): the caller takes it
from options (``--rows``, ``--input-size H W``).

Without ``scope``, exactly one MobileNet scope must be at the top level. A MobileNet found only nested inside
another scope (the Object Detection API's ``FeatureExtractor/MobilenetV2/...``) is an error that names the
``--scope`` to pass: converting part of another model is the user's explicit choice.

Overrides (:class:`Overrides`) are checked against the checkpoint, never trusted: one that contradicts it is
an :class:`OverrideError` naming the override, what the checkpoint says and the variable that says it. An
alpha override picks among alphas that all reproduce the widths (they build the same model).

The width tables restate slim's (``nets/mobilenet_v1.py``, ``nets/mobilenet/mobilenet_v2.py``,
``mobilenet_v3.py``) and Keras' (``keras/src/applications/mobilenet*.py``) here on purpose: the conversion
path never imports the archive factory, which has its own copy of slim's; the tests hold this one against
the factory's checkpoints, the genuine V2 checkpoint's variable table and Keras' own models.

Pure: no TensorFlow or Keras import.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import NoReturn

from .errors import ConversionError
from .families import FAMILIES
from .families.base import BN_LEAVES, has_bn, kernel_leaf, make_divisible
from .mapping import EMA_SUFFIX, keras_target

# the float families by their top scope: {"MobilenetV1": "v1", ...}
SCOPES: dict[str, str] = {f.scope: f.key for f in FAMILIES.values() if f.float_family is None}
HEAD = "Logits/Conv2d_1c_1x1"
GLOBAL_STEP = "global_step"
# slot variables ``<variable>/<Optimizer>[_N]`` of TF1's optimizers (slim's train_image_classifier --optimizer)
OPTIMIZERS = ("RMSProp", "Momentum", "Adam", "Adagrad", "AdagradDA", "ProximalAdagrad", "Ftrl", "Adadelta",
              "Nadam", "AdaMax")
_SLOT = re.compile(r"^(?P<optimizer>" + "|".join(OPTIMIZERS) + r")(?:_\d+)?$")
_ADAM_POWER = re.compile(r"^beta[12]_power(?:_\d+)?$")  # Adam's (and Nadam's) non-slot accumulators
_RANGE_LEAVES = ("min", "max")
_BLOCK = re.compile(r"^expanded_conv(?:_(?P<id>[1-9][0-9]*))?/")

MAX_ALPHA = 4  # alphas tried: the catalogue's, then 0.1 .. 4.0, 0.01 .. 4.00, 0.001 .. 4.000
V1_MIN_DEPTH = 8


class ArchitectureError(ConversionError):
    """The checkpoint's architecture cannot be read, or is not one keras.applications can hold."""


class ScopeError(ArchitectureError):
    """No MobileNet scope, several, one only nested inside another scope, or a ``scope`` that holds none."""


class OverrideError(ArchitectureError):
    """An option contradicts the checkpoint (or is invalid)."""


class KerasIncompatibleError(ArchitectureError):
    """slim's widths for the inferred alpha are not those keras.applications builds for it."""


@dataclass(frozen=True)
class Overrides:
    """Architecture options given by the user; each one given is checked against the checkpoint."""

    family: str | None = None  # "v1" | "v2" | "v3" (or a quantization-aware key: "v2-quant", ...)
    alpha: str | float | None = None
    kind: str | None = None  # V3: "large" | "small"
    minimalistic: bool | None = None  # V3
    classes: int | None = None  # the logits' output channels


@dataclass(frozen=True)
class OptimizerSlots:
    """The slot variables of one optimizer (Adam's ``beta1_power``/``beta2_power`` counted with Adam's)."""

    name: str  # "RMSProp", "Adam", ...
    variables: int
    suffixes: tuple[str, ...]  # the leaves seen: ("RMSProp", "RMSProp_1"), ("Adam", "Adam_1", "beta1_power", ...)


@dataclass(frozen=True)
class Inferred:
    """What a checkpoint says its MobileNet is, and what else it holds."""

    family: str  # the float family: "v1" | "v2" | "v3"
    alpha: str  # canonical text: "0.35", "0.6", "1.0"
    kind: str | None  # V3: "large" | "small"; None for V1/V2
    minimalistic: bool  # V3 only (False otherwise)
    head: bool  # the logits exist (False: a backbone, no-top model only)
    classes: int | None  # the logits' output channels (None without a head)
    finegrain: bool  # V2/V3: the last layer keeps 1280 (V3 small: 1024) channels for alpha < 1
    scope: str  # the MobileNet scope path: "MobilenetV2", "FeatureExtractor/MobilenetV2"
    model_variables: int  # model variables under the scope (the name table's, every shape checked)
    unused: tuple[str, ...]  # model variables a no-top model does not use (V3 ``Conv_2`` of a backbone)
    ema_shadows: int  # ``/ExponentialMovingAverage`` shadows of model variables
    optimizers: tuple[OptimizerSlots, ...]
    global_step: bool
    quant_ranges: int  # quantization range variables (and their shadows) under the scope
    outside: tuple[str, ...]  # variables outside the scope (not part of the MobileNet), sorted
    unrecognised: tuple[str, ...]  # variables inside the scope that are none of the above, sorted
    evidence: tuple[str, ...]  # what was read from which variable, one short line each
    alpha_range: tuple[str, str]  # the lowest and highest alpha of 0.001 steps that reproduce every width

    @property
    def prefix(self) -> str:
        """What precedes the MobileNet scope: ``""`` or ``"FeatureExtractor/"``."""
        return self.scope[: len(self.scope) - len(FAMILIES[self.family].scope)]

    @property
    def quantized(self) -> bool:
        return self.quant_ranges > 0

    @property
    def family_key(self) -> str:
        """The project's family key: ``v2``, or ``v2-quant`` when the checkpoint holds quantization ranges."""
        return f"{self.family}-quant" if self.quantized else self.family

    @property
    def keras_constructor(self) -> str:
        """The keras.applications constructor: ``MobileNet``, ``MobileNetV2``, ``MobileNetV3Small``, ..."""
        return FAMILIES[self.family].keras_constructor(self)

    def outside_scopes(self) -> dict[str, int]:
        """The variables outside the scope counted by their top-level scope."""
        return dict(Counter(name.split("/", 1)[0] for name in self.outside))

    def describe(self, evidence: bool = False) -> str:
        """A few lines for printing (with ``evidence``: then one line per piece of evidence)."""
        fam = FAMILIES[self.family]
        what = fam.title + (f" {self.kind}{' minimalistic' if self.minimalistic else ''}" if self.kind else "")
        top = (f"{self.classes} classes (logits {self.scope}/{HEAD})" if self.head
               else "no head: a backbone (no-top only)")
        extra = "" if self.prefix == "" else f", as a backbone of {self.prefix.rstrip('/')}"
        opt = ", ".join(f"{o.name} ({o.variables})" for o in self.optimizers) or "none"
        lines = [
            f"{what}, alpha {self.alpha}, {top}; scope {self.scope}/{extra}",
            f"keras: keras.applications.{self.keras_constructor}(alpha={self.alpha}"
            + (f", minimalistic={self.minimalistic}" if self.kind else "") + ")",
            f"checkpoint: {self.model_variables} model variables, {self.ema_shadows} EMA shadows, optimizer slots: "
            f"{opt}, global_step: {'yes' if self.global_step else 'no'}, quantization ranges: {self.quant_ranges}",
        ]
        if self.outside:
            scopes = ", ".join(f"{s} ({n})" for s, n in self.outside_scopes().items())
            lines.append(f"not part of the MobileNet: {len(self.outside)} variables outside {self.scope}/: {scopes}")
        if self.unrecognised:
            lines.append(f"unrecognised inside {self.scope}/: {len(self.unrecognised)} variables, e.g. "
                         f"{', '.join(self.unrecognised[:3])}")
        lines.append("input size: not stored in a checkpoint; give --rows N or --input-size H W")
        if evidence:
            lines += [f"  {line}" for line in self.evidence]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Width tables: slim's and Keras', as layers (scope below the family scope, kind, kernel, cin, cout)


@dataclass(frozen=True)
class Layer:
    """One variable-owning slim scope as a model of some alpha builds it."""

    scope: str  # below the family scope, e.g. "expanded_conv_3/expand"
    kind: str  # conv / depthwise / conv_bias / head
    kernel: int
    cin: int
    cout: int
    rule: str = ""  # how ``cout`` comes about, e.g. "make_divisible(32*0.6)"
    top: bool = False  # only in a model with top (V3's Conv_2, the logits)

    @property
    def kernel_variable(self) -> str:
        return f"{self.scope}/{kernel_leaf(self.kind)}"

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        k = self.kernel
        return (k, k, self.cin, 1) if self.kind == "depthwise" else (k, k, self.cin, self.cout)

    def variables(self) -> dict[str, tuple[int, ...]]:
        """The scope's variables (below the family scope) and their checkpoint shapes."""
        out = {self.kernel_variable: self.kernel_shape}
        if has_bn(self.kind):
            out.update({f"{self.scope}/BatchNorm/{leaf}": (self.cout,) for leaf in BN_LEAVES})
        else:
            out[f"{self.scope}/biases"] = (self.cout,)
        return out


@dataclass(frozen=True)
class _Arch:
    """What the widths depend on besides alpha."""

    family: str
    kind: str | None = None
    minimalistic: bool = False
    finegrain: bool = True
    classes: int = 0  # the logits' output channels (0: no head)


# slim's MobileNetV1 _CONV_DEFS output channels (Conv2d_0, then the 13 separable layers' pointwise convs)
V1_WIDTHS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
# slim's V2_DEF (and keras'): (expansion factor, output channels) of expanded_conv .. expanded_conv_16
V2_BLOCKS = ((1, 16), (6, 24), (6, 24), (6, 32), (6, 32), (6, 32), (6, 64), (6, 64), (6, 64), (6, 64), (6, 96),
             (6, 96), (6, 96), (6, 160), (6, 160), (6, 160), (6, 320))
V2_FIRST, V2_LAST = 32, 1280
# slim's V3_LARGE / V3_SMALL (and keras'): (expansion factor, output channels, depthwise kernel, squeeze-excite);
# minimalistic: every kernel 3x3, no squeeze-excite
V3_BLOCKS = {
    "large": ((1, 16, 3, False), (4, 24, 3, False), (3, 24, 3, False), (3, 40, 5, True), (3, 40, 5, True),
              (3, 40, 5, True), (6, 80, 3, False), (2.5, 80, 3, False), (184 / 80.0, 80, 3, False),
              (184 / 80.0, 80, 3, False), (6, 112, 3, True), (6, 112, 3, True), (6, 160, 5, True),
              (6, 160, 5, True), (6, 160, 5, True)),
    "small": ((1, 16, 3, True), (72.0 / 16, 24, 3, False), (88.0 / 24, 24, 3, False), (4, 40, 5, True),
              (6, 40, 5, True), (6, 40, 5, True), (3, 48, 5, True), (3, 48, 5, True), (6, 96, 5, True),
              (6, 96, 5, True), (6, 96, 5, True)),
}
V3_FIRST = 16
V3_HEAD = {"large": (960, 1280), "small": (576, 1024)}  # (Conv_1 before alpha, Conv_2)
V3_SE_FACTOR = 4


def _block_scope(block_id: int) -> str:
    return "expanded_conv" + (f"_{block_id}" if block_id else "")


def _v3_pattern(kind: str, minimalistic: bool) -> tuple[tuple[bool, int], ...]:
    """(squeeze-excite, depthwise kernel) per block."""
    return tuple((se and not minimalistic, 3 if minimalistic else k) for _f, _c, k, se in V3_BLOCKS[kind])


def _head(arch: _Arch, cin: int) -> Iterator[Layer]:
    if arch.classes:
        yield Layer(HEAD, "head", 1, cin, arch.classes, "the class count", top=True)


def slim_layers(arch: _Arch, alpha: float, a: str) -> Iterator[Layer]:
    """The layers slim builds for ``alpha`` (``a``: its text, for the rules), in graph order."""
    if arch.family == "v1":
        def depth(d):
            return max(int(d * alpha), V1_MIN_DEPTH), f"max(int({d}*{a}), {V1_MIN_DEPTH})"
        cin, rule = depth(V1_WIDTHS[0])
        yield Layer("Conv2d_0", "conv", 3, 3, cin, rule)
        for i, d in enumerate(V1_WIDTHS[1:], 1):
            yield Layer(f"Conv2d_{i}_depthwise", "depthwise", 3, cin, cin, "its input")
            cout, rule = depth(d)
            yield Layer(f"Conv2d_{i}_pointwise", "conv", 1, cin, cout, rule)
            cin = cout
        yield from _head(arch, cin)
    elif arch.family == "v2":
        cin = make_divisible(V2_FIRST * alpha)
        yield Layer("Conv", "conv", 3, 3, cin, f"make_divisible({V2_FIRST}*{a})")
        for block_id, (factor, c) in enumerate(V2_BLOCKS):
            s = _block_scope(block_id)
            inner = make_divisible(cin * factor) if factor > 1 else cin
            if inner > cin:
                yield Layer(f"{s}/expand", "conv", 1, cin, inner, f"make_divisible({cin}*{factor})")
            yield Layer(f"{s}/depthwise", "depthwise", 3, inner, inner, "its input")
            cout = make_divisible(c * alpha)
            yield Layer(f"{s}/project", "conv", 1, inner, cout, f"make_divisible({c}*{a})")
            cin = cout
        if alpha > 1 or not arch.finegrain:
            last, rule = make_divisible(V2_LAST * alpha), f"make_divisible({V2_LAST}*{a})"
        else:
            last, rule = V2_LAST, f"{V2_LAST}: finegrain_classification_mode"
        yield Layer("Conv_1", "conv", 1, cin, last, rule)
        yield from _head(arch, last)
    else:
        cin = make_divisible(V3_FIRST * alpha)
        yield Layer("Conv", "conv", 3, 3, cin, f"make_divisible({V3_FIRST}*{a})")
        for block_id, ((factor, c, _k, _se), (se, k)) in enumerate(
                zip(V3_BLOCKS[arch.kind], _v3_pattern(arch.kind, arch.minimalistic))):
            s = _block_scope(block_id)
            inner = make_divisible(cin * factor)
            inner = inner if inner > cin else cin  # slim expands only when that widens the input
            if inner > cin:
                yield Layer(f"{s}/expand", "conv", 1, cin, inner, f"make_divisible({cin}*{factor:g})")
            yield Layer(f"{s}/depthwise", "depthwise", k, inner, inner, "its input")
            if se:
                squeeze = make_divisible(inner / V3_SE_FACTOR)
                yield Layer(f"{s}/squeeze_excite/Conv", "conv_bias", 1, inner, squeeze,
                            f"make_divisible({inner}/{V3_SE_FACTOR})")
                yield Layer(f"{s}/squeeze_excite/Conv_1", "conv_bias", 1, squeeze, inner, "the block's inner width")
            cout = make_divisible(c * alpha)
            yield Layer(f"{s}/project", "conv", 1, inner, cout, f"make_divisible({c}*{a})")
            cin = cout
        conv_1, conv_2 = V3_HEAD[arch.kind]
        width = make_divisible(conv_1 * alpha)
        yield Layer("Conv_1", "conv", 1, cin, width, f"make_divisible({conv_1}*{a})")
        if alpha > 1 or not arch.finegrain:
            last, rule = make_divisible(conv_2 * alpha), f"make_divisible({conv_2}*{a})"
        else:
            last, rule = conv_2, f"{conv_2}: finegrain_classification_mode"
        yield Layer("Conv_2", "conv_bias", 1, width, last, rule, top=True)
        yield from _head(arch, last)


def keras_layers(arch: _Arch, alpha: float, a: str) -> Iterator[Layer]:
    """The layers keras.applications builds for ``alpha``, by slim scope, with Keras' own rules
    (``mobilenet.py``: ``int(d * alpha)``; ``mobilenet_v2.py``: ``_make_divisible(int(d * alpha), 8)``, expand
    ``6 * cin``, ``Conv_1`` 1280 unless alpha > 1; ``mobilenet_v3.py``: a fixed 16-channel stem, ``_depth`` =
    make_divisible, ``conv_1`` = ``_depth(6 * cin)``, ``conv_2`` 1280/1024 unless alpha > 1)."""
    if arch.family == "v1":
        cin = int(V1_WIDTHS[0] * alpha)
        yield Layer("Conv2d_0", "conv", 3, 3, cin, f"int({V1_WIDTHS[0]}*{a})")
        for i, d in enumerate(V1_WIDTHS[1:], 1):
            yield Layer(f"Conv2d_{i}_depthwise", "depthwise", 3, cin, cin, "its input")
            cout = int(d * alpha)
            yield Layer(f"Conv2d_{i}_pointwise", "conv", 1, cin, cout, f"int({d}*{a})")
            cin = cout
        yield from _head(arch, cin)
    elif arch.family == "v2":
        cin = make_divisible(V2_FIRST * alpha)
        yield Layer("Conv", "conv", 3, 3, cin, f"_make_divisible({V2_FIRST}*{a})")
        for block_id, (factor, c) in enumerate(V2_BLOCKS):
            s = _block_scope(block_id)
            inner = cin
            if block_id:
                inner = factor * cin
                yield Layer(f"{s}/expand", "conv", 1, cin, inner, f"{factor}*{cin}")
            yield Layer(f"{s}/depthwise", "depthwise", 3, inner, inner, "its input")
            cout = make_divisible(int(c * alpha))
            yield Layer(f"{s}/project", "conv", 1, inner, cout, f"_make_divisible(int({c}*{a}))")
            cin = cout
        last, rule = ((make_divisible(V2_LAST * alpha), f"_make_divisible({V2_LAST}*{a})") if alpha > 1
                      else (V2_LAST, f"{V2_LAST} (alpha <= 1)"))
        yield Layer("Conv_1", "conv", 1, cin, last, rule)
        yield from _head(arch, last)
    else:
        cin = V3_FIRST
        yield Layer("Conv", "conv", 3, 3, cin, f"{V3_FIRST} (fixed in Keras)")
        for block_id, ((factor, c, _k, _se), (se, k)) in enumerate(
                zip(V3_BLOCKS[arch.kind], _v3_pattern(arch.kind, arch.minimalistic))):
            s = _block_scope(block_id)
            inner = cin
            if block_id:
                inner = make_divisible(cin * factor)
                yield Layer(f"{s}/expand", "conv", 1, cin, inner, f"_depth({cin}*{factor:g})")
            yield Layer(f"{s}/depthwise", "depthwise", k, inner, inner, "its input")
            if se:
                filters = make_divisible(cin * factor)
                squeeze = make_divisible(filters * 0.25)
                yield Layer(f"{s}/squeeze_excite/Conv", "conv_bias", 1, inner, squeeze, f"_depth({filters}*0.25)")
                yield Layer(f"{s}/squeeze_excite/Conv_1", "conv_bias", 1, squeeze, filters, f"_depth({cin}*{factor:g})")
            cout = make_divisible(c * alpha)
            yield Layer(f"{s}/project", "conv", 1, inner, cout, f"_depth({c}*{a})")
            cin = cout
        _conv_1, conv_2 = V3_HEAD[arch.kind]
        width = make_divisible(cin * 6)
        yield Layer("Conv_1", "conv", 1, cin, width, f"_depth({cin}*6)")
        last, rule = ((make_divisible(conv_2 * alpha), f"_depth({conv_2}*{a})") if alpha > 1
                      else (conv_2, f"{conv_2} (alpha <= 1)"))
        yield Layer("Conv_2", "conv_bias", 1, width, last, rule, top=True)
        yield from _head(arch, last)


@dataclass(frozen=True)
class _Match:
    """How far a table's layers agree with the checkpoint's kernels."""

    matched: int  # layers compared and equal before the first difference (all when ``ok``)
    mismatch: tuple[Layer, tuple[int, ...]] | None  # the first layer that differs and the checkpoint's shape

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def _match(layers: Iterable[Layer], model: Mapping[str, tuple[int, ...]]) -> _Match:
    """Compare each table layer's kernel with the checkpoint's (absent kernels are skipped here: the
    structure check reports them)."""
    matched = 0
    for layer in layers:
        got = model.get(layer.kernel_variable)
        if got is None:
            continue
        if got != layer.kernel_shape:
            return _Match(matched, (layer, got))
        matched += 1
    return _Match(matched, None)


# ------------------------------------------------------------------------------------------------
# Alphas


def alpha_text(value: str | float | Decimal) -> str:
    """Canonical alpha text: ``"0.6"``, ``"1.0"``, ``"0.35"`` (``1``, ``"1.00"``, ``0.60`` included)."""
    try:
        d = Decimal(str(value)).normalize()
    except InvalidOperation:
        raise OverrideError(f"--alpha {value!r} is not a number; give a depth multiplier such as 0.75") from None
    if not d.is_finite() or d <= 0:
        raise OverrideError(f"--alpha {value!r} must be a positive depth multiplier, e.g. 0.75")
    text = format(d, "f")
    return text if "." in text else text + ".0"


def _candidates(family: str, estimate: float) -> Iterator[str]:
    """Alpha texts in preference order: the catalogue's, then 1, 2, 3 decimals (each nearest ``estimate`` first)."""
    seen: set[str] = set()
    tiers = [list(FAMILIES[family].alphas)]
    for decimals in (1, 2, 3):
        scale = 10 ** decimals
        tiers.append([alpha_text(Decimal(n) / scale) for n in range(1, MAX_ALPHA * scale + 1)])
    for tier in tiers:
        for a in sorted(tier, key=lambda t: (abs(float(t) - estimate), float(t))):
            if a not in seen:
                seen.add(a)
                yield a


# ------------------------------------------------------------------------------------------------
# The variables


@dataclass(frozen=True)
class _Scope:
    path: str  # "MobilenetV2", "FeatureExtractor/MobilenetV2"
    family: str
    given: bool


@dataclass(frozen=True)
class _Sorted:
    model: dict[str, tuple[int, ...]]  # below the family scope -> shape
    shadows: int
    slots: dict[str, list[str]]  # optimizer -> the leaves of its variables
    ranges: int
    global_step: bool
    outside: tuple[str, ...]
    unrecognised: tuple[str, ...]


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _scope_list(counts: Mapping[str, int], limit: int = 12) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{s} ({_count(n, 'variable')})" for s, n in items[:limit])
    return text + (f", and {len(items) - limit} more" if len(items) > limit else "")


def _nested(names: Iterable[str]) -> Counter:
    """MobileNet scopes below the top level: ``FeatureExtractor/MobilenetV2`` -> variable count."""
    found: Counter = Counter()
    for name in names:
        parts = name.split("/")
        for i, part in enumerate(parts[:-1]):
            if part in SCOPES:
                if i:
                    found["/".join(parts[: i + 1])] += 1
                break
    return found


def _find_scope(names: list[str], scope: str | None) -> _Scope:
    valid = ", ".join(f"{s}/" for s in SCOPES)
    if scope is not None:
        path = scope.strip().strip("/")
        if not path:
            raise ScopeError(f"--scope {scope!r} is empty; give the scope the MobileNet's variables are under, e.g. "
                             f"FeatureExtractor/MobilenetV2")
        under = [n for n in names if n.startswith(path + "/")]
        last = path.rsplit("/", 1)[-1]
        if last in SCOPES and under:
            return _Scope(path, SCOPES[last], True)
        inner = Counter(f"{path}/{n[len(path) + 1:].split('/', 1)[0]}" for n in under if "/" in n[len(path) + 1:])
        mobilenets = {s: c for s, c in inner.items() if s.rsplit("/", 1)[-1] in SCOPES}
        if len(mobilenets) == 1:
            (found,) = mobilenets
            return _Scope(found, SCOPES[found.rsplit("/", 1)[-1]], True)
        if len(mobilenets) > 1:
            raise ScopeError(f"--scope {path} holds several MobileNet scopes: {_scope_list(mobilenets)}; pass one of "
                             f"them as --scope")
        if not under:
            top = Counter(n.split("/", 1)[0] for n in names)
            raise ScopeError(f"--scope {path}: no variable of the checkpoint is under {path}/; its top-level scopes: "
                             f"{_scope_list(top)}")
        raise ScopeError(f"--scope {path} holds no MobileNet scope ({valid} directly below it); the scopes under it: "
                         f"{_scope_list(inner)}")
    top = Counter(n.split("/", 1)[0] for n in names if "/" in n)
    mobilenets = {s: top[s] for s in SCOPES if top[s]}
    if len(mobilenets) == 1:
        (found,) = mobilenets
        return _Scope(found, SCOPES[found], False)
    if len(mobilenets) > 1:
        raise ScopeError(f"the checkpoint holds several MobileNet scopes: {_scope_list(mobilenets)}; pass --scope to "
                         f"choose one")
    nested = _nested(names)
    if nested:
        best = max(nested, key=lambda s: (nested[s], s))
        raise ScopeError(f"no MobileNet scope at the checkpoint's top level, but one nested inside another model: "
                         f"{_scope_list(nested)}; pass --scope {best} to convert it as a backbone (no-top model; "
                         f"the variables outside it are not converted)")
    everything = Counter(n.split("/", 1)[0] for n in names)
    raise ScopeError(f"not a MobileNet checkpoint: no variable under {valid}; its top-level scopes: "
                     f"{_scope_list(everything) or 'none (the checkpoint is empty)'}")


def _is_range(rel: str) -> bool:
    parts = rel.split("/")
    return len(parts) >= 2 and parts[-1] in _RANGE_LEAVES and parts[-2].endswith("_quant")


def _sort(shapes: Mapping[str, tuple[int, ...]], found: _Scope) -> _Sorted:
    fam = FAMILIES[found.family]
    head = found.path + "/"
    model, inside, outside = {}, [], []
    slots: dict[str, list[str]] = {}
    global_step = False
    for name, shape in shapes.items():
        if name == GLOBAL_STEP:
            global_step = True
        elif not name.startswith(head):
            if _ADAM_POWER.match(name):
                slots.setdefault("Adam", []).append(name)
            else:
                outside.append(name)
        elif keras_target(fam.key, f"{fam.scope}/{name[len(head):]}") is not None:
            model[name[len(head):]] = shape
        else:
            inside.append(name[len(head):])
    shadows = ranges = 0
    unrecognised = []
    for rel in inside:
        base, _, leaf = rel.rpartition("/")
        slot = _SLOT.match(leaf)
        if leaf == EMA_SUFFIX and base in model:
            shadows += 1
        elif _is_range(rel) or (leaf == EMA_SUFFIX and _is_range(base)):
            ranges += 1
        elif slot and base in model:
            slots.setdefault(slot["optimizer"], []).append(leaf)
        else:
            unrecognised.append(head + rel)
    return _Sorted(model, shadows, slots, ranges, global_step, tuple(sorted(outside)), tuple(sorted(unrecognised)))


# ------------------------------------------------------------------------------------------------
# Inference


class _Reading:
    """The evidence gathered so far, for the record and for error messages."""

    def __init__(self, scope: _Scope, model: Mapping[str, tuple[int, ...]]):
        self.scope, self.model = scope, model
        self.lines: list[str] = []
        self.facts: list[str] = [f"family {scope.family}"]

    def var(self, rel: str) -> str:
        return f"{self.scope.path}/{rel}"

    def fail(self, error: type[ArchitectureError], message: str) -> NoReturn:
        raise error(f"{message} (read so far: {', '.join(self.facts)})")


def _v3_kind(r: _Reading, model: Mapping[str, tuple[int, ...]], ov: Overrides) -> tuple[str, bool]:
    blocks = sorted({int(m["id"] or 0) for rel in model if (m := _BLOCK.match(rel))})
    counts = {kind: len(table) for kind, table in V3_BLOCKS.items()}
    if blocks != list(range(len(blocks))):
        missing = sorted(set(range(max(blocks, default=-1) + 1)) - set(blocks))
        r.fail(ArchitectureError, "MobileNetV3 blocks are missing: "
               + ", ".join(r.var(_block_scope(b)) for b in missing)
               + (" (no expanded_conv block at all)" if not blocks else ""))
    kind = next((k for k, n in counts.items() if n == len(blocks)), None)
    seen = f"{len(blocks)} expanded_conv blocks ({r.var('expanded_conv')} .. {r.var(_block_scope(len(blocks) - 1))})"
    if kind is None:
        r.fail(ArchitectureError, f"the V3 block pattern matches neither large nor small: {seen}; large has "
               f"{counts['large']}, small {counts['small']}")
    if ov.kind is not None and ov.kind != kind:
        r.fail(OverrideError, f"--kind {ov.kind} contradicts the checkpoint: it has {seen}, a MobileNetV3 {kind} "
               f"({ov.kind} has {counts[ov.kind]})")
    r.lines.append(f"kind {kind}: {seen}")
    r.facts.append(f"kind {kind}")

    pattern = []
    for b in blocks:
        dw = model.get(f"{_block_scope(b)}/depthwise/depthwise_weights")
        if dw is None or len(dw) != 4:
            r.fail(ArchitectureError, f"{r.var(_block_scope(b) + '/depthwise/depthwise_weights')} is "
                   + ("absent" if dw is None else f"{list(dw)}, not a [k, k, C, 1] depthwise kernel"))
        se = any(rel.startswith(f"{_block_scope(b)}/squeeze_excite/") for rel in model)
        pattern.append((se, dw[0]))
    pattern = tuple(pattern)

    def text(p):
        se = [str(i) for i, (s, _k) in enumerate(p) if s]
        k5 = [str(i) for i, (_s, k) in enumerate(p) if k != 3]
        return (f"squeeze-excite in blocks {','.join(se)}" if se else "no squeeze-excite") + ", " + (
            f"kernels other than 3x3 in blocks {','.join(k5)}" if k5 else "3x3 depthwise kernels only")

    matches = [m for m in (False, True) if _v3_pattern(kind, m) == pattern]
    if not matches:
        r.fail(ArchitectureError, f"the V3 block pattern matches neither {kind} nor {kind} minimalistic: the "
               f"checkpoint has {text(pattern)}; {kind}: {text(_v3_pattern(kind, False))}; {kind} minimalistic: "
               f"{text(_v3_pattern(kind, True))}")
    minimalistic = matches[0]
    if ov.minimalistic is not None and bool(ov.minimalistic) != minimalistic:
        se_var = next((r.var(rel) for rel in sorted(model) if "/squeeze_excite/" in rel), None)
        said = (f"it has squeeze-excite variables ({se_var}), so it is not minimalistic" if se_var
                else "it has no squeeze-excite variable and only 3x3 depthwise kernels: it is minimalistic")
        r.fail(OverrideError, f"--minimalistic {bool(ov.minimalistic)} contradicts the checkpoint: {said}")
    r.lines.append(f"{'minimalistic' if minimalistic else 'not minimalistic'}: {text(pattern)}")
    r.facts.append("minimalistic" if minimalistic else "not minimalistic")
    return kind, minimalistic


def _estimate_layer(arch: _Arch) -> tuple[str, int]:
    """The kernel of the last block's output (the widest layer alpha scales) and its width before alpha."""
    if arch.family == "v1":
        return f"Conv2d_{len(V1_WIDTHS) - 1}_pointwise/weights", V1_WIDTHS[-1]
    if arch.family == "v2":
        return f"{_block_scope(len(V2_BLOCKS) - 1)}/project/weights", V2_BLOCKS[-1][1]
    table = V3_BLOCKS[arch.kind]
    return f"{_block_scope(len(table) - 1)}/project/weights", table[-1][1]


def _estimate(arch: _Arch, model: Mapping[str, tuple[int, ...]]) -> float:
    """A first guess at alpha: the last block's output channels over slim's base width."""
    rel, base = _estimate_layer(arch)
    shape = model.get(rel)
    return shape[-1] / base if shape and len(shape) == 4 else 1.0


def _modes(arch: _Arch, alpha: float) -> list[_Arch]:
    """The finegrain modes to try: both for V2/V3 below alpha 1 (finegrain first), else one."""
    if arch.family == "v1" or alpha >= 1:
        return [arch]
    return [arch, _Arch(arch.family, arch.kind, arch.minimalistic, False, arch.classes)]


def _describe_mismatch(r: _Reading, layer: Layer, got: tuple[int, ...], a: str) -> str:
    want = layer.kernel_shape
    if len(got) == len(want) and got[:-1] == want[:-1] and layer.kind != "depthwise":
        return (f"{r.var(layer.kernel_variable)} has {got[-1]} output channels where slim builds {layer.cout} "
                f"({layer.rule}) for alpha {a}")
    return f"{r.var(layer.kernel_variable)} is {list(got)} where slim builds {list(want)} for alpha {a}"


def _keras_mismatch(r: _Reading, arch: _Arch, a: str) -> str | None:
    """None when keras.applications builds the checkpoint's widths for alpha ``a``, else why not."""
    keras = _match(keras_layers(arch, float(a), a), r.model)
    if keras.ok:
        return None
    layer, got = keras.mismatch
    slim = {s.kernel_variable: s for s in slim_layers(arch, float(a), a)}[layer.kernel_variable]
    target = keras_target(arch.family, f"{FAMILIES[arch.family].scope}/{layer.kernel_variable}")
    fam = FAMILIES[arch.family]
    return (f"for alpha {a}, keras.applications.{fam.keras_constructor(_KindOnly(arch.kind))} builds layer "
            f"{target.layer} with kernel {list(layer.kernel_shape)} ({layer.rule}), but the checkpoint's "
            f"{r.var(layer.kernel_variable)} is {list(got)} (slim: {slim.rule})")


@dataclass(frozen=True)
class _KindOnly:
    """The fields a family's Keras constructor name reads (V3: ``kind``)."""

    kind: str | None
    minimalistic: bool = False


def _alpha(r: _Reading, arch: _Arch, ov: Overrides) -> tuple[str, _Arch, tuple[str, str]]:
    model = r.model
    estimate = _estimate(arch, model)
    if ov.alpha is not None:
        a = alpha_text(ov.alpha)
        tries = [(m, _match(slim_layers(m, float(a), a), model)) for m in _modes(arch, float(a))]
        good = [m for m, res in tries if res.ok]
        if not good:
            m, res = tries[0]
            inferred = next(_search(arch, model, estimate), None)
            says = f"the checkpoint's widths give alpha {inferred[0]}" if inferred else "no alpha explains them"
            r.fail(OverrideError, f"--alpha {ov.alpha} contradicts the checkpoint: "
                   f"{_describe_mismatch(r, *res.mismatch, a)}; {says}")
        for m in good:
            if _keras_mismatch(r, m, a) is None:
                return a, m, _range(m, model, a)
        r.fail(KerasIncompatibleError,
               f"{_keras_mismatch(r, good[0], a)}: keras.applications cannot hold this checkpoint")
    found = []
    for a, m in _search(arch, model, estimate):
        if _keras_mismatch(r, m, a) is None:
            if found:
                r.lines.append(f"alpha {found[0][0]} (preferred) also reproduces the widths, but "
                               f"{_keras_mismatch(r, found[0][1], found[0][0])}")
            return a, m, _range(m, model, a)
        found.append((a, m))
    if not found:
        best = _closest(arch, model, estimate)
        layer, got = best[1].mismatch
        r.fail(ArchitectureError, f"no depth multiplier reproduces the checkpoint's channel counts: the closest, alpha "
               f"{best[0]}, matches {best[1].matched} layers, then {_describe_mismatch(r, layer, got, best[0])} "
               f"(tried the catalogue's alphas and 0.001 .. {MAX_ALPHA} in steps of 0.001"
               + (", with and without finegrain_classification_mode)" if arch.family != "v1" else ")"))
    a, m = found[0]
    r.fail(KerasIncompatibleError, f"{_keras_mismatch(r, m, a)}; no alpha that reproduces the checkpoint "
           f"({', '.join(x for x, _ in found[:5])}{' ...' if len(found) > 5 else ''}) gives Keras' widths: "
           f"keras.applications cannot hold this checkpoint")


def _search(arch: _Arch, model, estimate: float) -> Iterator[tuple[str, _Arch]]:
    """Every (alpha, mode) that reproduces every width, in preference order (finegrain first)."""
    for a in _candidates(arch.family, estimate):
        for m in _modes(arch, float(a)):
            if _match(slim_layers(m, float(a), a), model).ok:
                yield a, m
                break


def _closest(arch: _Arch, model, estimate: float) -> tuple[str, _Match]:
    best: tuple[str, _Match] | None = None
    for a in _candidates(arch.family, estimate):
        for m in _modes(arch, float(a)):
            res = _match(slim_layers(m, float(a), a), model)
            if best is None or res.matched > best[1].matched:
                best = (a, res)
    return best


def _range(arch: _Arch, model, a: str) -> tuple[str, str]:
    """The lowest and highest alpha of 0.001 steps (and ``a`` itself) reproducing every width in ``arch``'s
    finegrain mode."""
    ok = [Decimal(n) / 1000 for n in range(1, MAX_ALPHA * 1000 + 1)
          if _match(slim_layers(arch, n / 1000, ""), model).ok]
    ok.append(Decimal(a))
    return alpha_text(min(ok)), alpha_text(max(ok))


def _normalise(shapes: Mapping[str, Iterable[int]]) -> dict[str, tuple[int, ...]]:
    try:
        return {str(k): tuple(int(d) for d in v) for k, v in shapes.items()}
    except (TypeError, ValueError) as exc:
        raise ArchitectureError(f"the variable -> shape map is malformed ({exc}); pass "
                                f"tf.train.load_checkpoint(prefix).get_variable_to_shape_map()") from None


def _check_override_values(ov: Overrides) -> None:
    if ov.family is not None and ov.family not in FAMILIES:
        raise OverrideError(f"--family {ov.family!r} is not a family; valid: {', '.join(FAMILIES)}")
    if ov.kind is not None and ov.kind not in V3_BLOCKS:
        raise OverrideError(f"--kind {ov.kind!r} is not a MobileNetV3 kind; valid: {', '.join(V3_BLOCKS)}")
    if ov.classes is not None and (isinstance(ov.classes, bool) or not isinstance(ov.classes, int) or ov.classes < 1):
        raise OverrideError(f"--classes {ov.classes!r} must be a positive class count")
    if ov.alpha is not None:
        alpha_text(ov.alpha)


def infer_architecture(shapes: Mapping[str, Iterable[int]], scope: str | None = None,
                       overrides: Overrides = Overrides()) -> Inferred:
    """The architecture of the MobileNet in a checkpoint's variable -> shape map (see the module's docstring).

    ``scope``: the MobileNet's scope path when it is not at the top level (``FeatureExtractor/MobilenetV2``), or
    the scope directly above it (``FeatureExtractor``). ``overrides``: options, each checked against the checkpoint.
    Raises :class:`ScopeError`, :class:`OverrideError`, :class:`KerasIncompatibleError` or
    :class:`ArchitectureError` (all :class:`~convert.errors.ConversionError`)."""
    ov = overrides
    _check_override_values(ov)
    shapes = _normalise(shapes)
    found = _find_scope(list(shapes), scope)
    variables = _sort(shapes, found)
    model = variables.model
    fam = FAMILIES[found.family]
    r = _Reading(found, model)
    if not model:
        r.fail(ScopeError, f"no {fam.title} model variable under {found.path}/ (none matches the family's name table, "
               f"e.g. {found.path}/{fam.names[0].scope}/{kernel_leaf(fam.names[0].kind)})")
    where = "given by --scope" if found.given else "the checkpoint's MobileNet scope"
    r.lines.append(f"family {fam.key} from scope {found.path}/ ({where}; {_count(len(model), 'model variable')})")
    if ov.family is not None:
        wanted = FAMILIES[ov.family]
        if (wanted.float_family or wanted.key) != fam.key:
            example = next(iter(sorted(model)))
            r.fail(OverrideError, f"--family {ov.family} contradicts the checkpoint: its model variables are under "
                   f"{found.path}/ (e.g. {r.var(example)}), a {fam.title} ({fam.key})")
        if wanted.quantized and not variables.ranges:
            r.fail(OverrideError, f"--family {ov.family} contradicts the checkpoint: it holds no quantization range "
                   f"variable (.../min, .../max under *_quant scopes), so it is not quantization-aware; use "
                   f"--family {wanted.float_family}")
    if found.family != "v3":
        for name, value in (("kind", ov.kind), ("minimalistic", ov.minimalistic)):
            if value is not None:
                r.fail(OverrideError, f"--{name} {value} applies to MobileNetV3 only; the checkpoint is a "
                       f"{fam.title} (scope {found.path}/)")
        kind, minimalistic = None, False
    else:
        kind, minimalistic = _v3_kind(r, model, ov)

    head_rel = f"{HEAD}/weights"
    head_shape = model.get(head_rel)
    head = head_shape is not None
    if head and len(head_shape) != 4:
        r.fail(ArchitectureError, f"{r.var(head_rel)} is {list(head_shape)}, not a [1, 1, C, classes] logits kernel")
    classes = head_shape[-1] if head else None
    if ov.classes is not None and ov.classes != classes:
        if not head:
            r.fail(OverrideError, f"--classes {ov.classes} contradicts the checkpoint: it has no logits "
                   f"({r.var(head_rel)} is absent), so it is a backbone: convert it without top")
        hint = (f"; if its class 0 is a background class, keep {classes} classes and drop it with the label offset"
                if classes == ov.classes + 1 else "")
        r.fail(OverrideError, f"--classes {ov.classes} contradicts the checkpoint: {r.var(head_rel)} is "
               f"{list(head_shape)}, {classes} classes{hint}")
    if head:
        r.lines.append(f"classes {classes}: {r.var(head_rel)} is {list(head_shape)} (whether class 0 is a "
                       f"background class is not in the checkpoint)")
        r.facts.append(f"{classes} classes")
    else:
        r.lines.append(f"no head: {r.var(head_rel)} is absent: a backbone (no-top model only)")
        r.facts.append("no head")

    arch = _Arch(fam.key, kind, minimalistic, True, classes or 0)
    alpha, arch, alpha_range = _alpha(r, arch, ov)
    layers = list(slim_layers(arch, float(alpha), alpha))
    unused = _check_structure(r, layers, head, alpha)

    by_var = {layer.kernel_variable: layer for layer in layers}
    first, widest = layers[0], by_var[_estimate_layer(arch)[0]]
    lo, hi = alpha_range
    span = f"every alpha {lo} .. {hi} (0.001 steps) gives these widths" if lo != hi else "no other alpha does"
    given = " (--alpha, confirmed)" if ov.alpha is not None else ""
    r.lines.append(f"alpha {alpha}{given}: {r.var(first.kernel_variable)} has {first.cout} output channels = "
                   f"{first.rule}, {r.var(widest.kernel_variable)} {widest.cout} = {widest.rule}; {span}")
    last = by_var.get("Conv_2/weights" if fam.key == "v3" else "Conv_1/weights")
    if last is not None and last.kernel_variable in model and float(alpha) < 1:
        mode = ("slim's finegrain_classification_mode" if arch.finegrain
                else "scaled: trained without finegrain_classification_mode")
        r.lines.append(f"last layer: {r.var(last.kernel_variable)} has {last.cout} output channels ({mode})")
    r.lines.append(f"keras: keras.applications.{fam.keras_constructor(_KindOnly(kind))}(alpha={alpha}) builds the "
                   f"same widths ({_count(len([x for x in layers if x.kernel_variable in model]), 'layer')} compared)")
    if unused:
        r.lines.append(f"unused by a no-top model: {', '.join(r.var(u) for u in unused)}")
    r.lines.append(f"EMA shadows: {variables.shadows}" + (" (/ExponentialMovingAverage: trained with "
                                                          "--moving_average_decay)" if variables.shadows else ""))
    optimizers = tuple(OptimizerSlots(name, len(leaves), tuple(sorted(set(leaves))))
                       for name, leaves in sorted(variables.slots.items()))
    for o in optimizers:
        r.lines.append(f"optimizer {o.name}: {_count(o.variables, 'slot variable')} ({', '.join(o.suffixes)})")
    r.lines.append(f"global_step {'present' if variables.global_step else 'absent'}")
    if variables.ranges:
        r.lines.append(f"quantization ranges: {variables.ranges} (.../min, .../max under *_quant scopes): "
                       f"quantization-aware ({fam.key}-quant)")
    if variables.outside:
        scopes = Counter(n.split("/", 1)[0] for n in variables.outside)
        r.lines.append(f"outside {found.path}/: {_count(len(variables.outside), 'variable')}, not part of the "
                       f"MobileNet: {_scope_list(scopes)}")
    if variables.unrecognised:
        r.lines.append(f"unrecognised inside {found.path}/: {_count(len(variables.unrecognised), 'variable')}, e.g. "
                       f"{', '.join(variables.unrecognised[:3])}")
    r.lines.append("input size: not stored in a checkpoint (convolutions are size-agnostic): --rows / --input-size")
    return Inferred(family=fam.key, alpha=alpha, kind=kind, minimalistic=minimalistic, head=head, classes=classes,
                    finegrain=arch.finegrain, scope=found.path, model_variables=len(model), unused=unused,
                    ema_shadows=variables.shadows, optimizers=optimizers, global_step=variables.global_step,
                    quant_ranges=variables.ranges, outside=variables.outside, unrecognised=variables.unrecognised,
                    evidence=tuple(r.lines), alpha_range=alpha_range)


def _check_structure(r: _Reading, layers: list[Layer], head: bool, alpha: str) -> tuple[str, ...]:
    """Every model variable the Keras model needs is present with slim's shape, and nothing else is; returns
    the variables present that a no-top model does not use (V3's ``Conv_2`` of a backbone)."""
    expected: dict[str, tuple[int, ...]] = {}
    unused: list[str] = []
    for layer in layers:
        if layer.top and not head:
            if layer.kind == "head":
                continue
            present = [v for v in layer.variables() if v in r.model]
            if not present:
                continue
            unused += present
        expected.update(layer.variables())
    missing = [v for v in expected if v not in r.model]
    unexpected = sorted(v for v in r.model if v not in expected)
    wrong = [(v, r.model[v], s) for v, s in expected.items() if v in r.model and r.model[v] != s]
    parts = []

    def listed(names: list[str]) -> str:
        return ", ".join(r.var(n) for n in names[:10]) + (f", and {len(names) - 10} more" if len(names) > 10 else "")

    if missing:
        parts.append(f"{_count(len(missing), 'missing variable')}: {listed(missing)}")
    if unexpected:
        parts.append(f"{_count(len(unexpected), 'variable')} the architecture does not have: {listed(unexpected)}")
    if wrong:
        parts.append(f"{_count(len(wrong), 'wrong shape')}: " + ", ".join(
            f"{r.var(v)} is {list(got)}, expected {list(want)}" for v, got, want in wrong[:10]))
    if parts:
        r.facts.append(f"alpha {alpha}")
        r.fail(ArchitectureError, f"the checkpoint's model variables do not form that MobileNet: {'; '.join(parts)}")
    return tuple(r.var(u) for u in unused)


__all__ = ["ArchitectureError", "Inferred", "KerasIncompatibleError", "Layer", "OptimizerSlots", "OverrideError",
           "Overrides", "ScopeError", "alpha_text", "infer_architecture", "keras_layers", "slim_layers"]
