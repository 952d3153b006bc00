"""Architecture inference from a checkpoint's variable -> shape map (:mod:`convert.architecture`).

Expected values come from elsewhere, never from the code under test: the manifests (factory checkpoints of
catalogue variants, the genuine V2 checkpoint's table), keras.applications' own constructors (shape maps
of non-catalogue alphas and class counts, named with the family name tables), and the factory's slim
layer tables (a second implementation of slim's widths) for the Keras-incompatible cases."""
from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from convert.architecture import (ArchitectureError, KerasIncompatibleError, Overrides, OverrideError,  # noqa: E402
                                  ScopeError, alpha_text, infer_architecture)
from convert.errors import ConversionError  # noqa: E402
from convert.factory import fixtures  # noqa: E402
from convert.manifest import default_manifest, resolve  # noqa: E402
from convert.mapping import EMA_SUFFIX, head_tf_shape, keras_target, tf_name_for  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GENUINE_TABLE = Path(__file__).parent / "data" / "genuine" / "mobilenet_v2_1.0_224.variables.txt"


def checkpoint_shapes(prefix: str) -> dict[str, tuple[int, ...]]:
    import tensorflow as tf

    return {k: tuple(v) for k, v in tf.train.load_checkpoint(prefix).get_variable_to_shape_map().items()}


def genuine_table() -> dict[str, tuple[int, ...]]:
    """The official mobilenet_v2_1.0_224.ckpt's variable table, from its vendored text form."""
    out = {}
    for line in GENUINE_TABLE.read_text().splitlines():
        name, shape = line.split(" ", 1)
        out[name] = tuple(ast.literal_eval(shape))
    return out


def keras_shapes(family: str, constructor: str, include_top: bool = True, **kwargs) -> dict[str, tuple[int, ...]]:
    """The slim variable -> shape map of a keras.applications model (named through the family's name table)."""
    import keras

    from convert.keras_model import legacy_weights

    model = getattr(keras.applications, constructor)(weights=None, include_top=include_top,
                                                     input_shape=(224, 224, 3), **kwargs)
    out = {}
    for layer in model.layers:
        for w in legacy_weights(layer):
            name = tf_name_for(family, layer.name, w.name)
            assert name is not None, f"{constructor}: {layer.name}/{w.name} has no slim name"
            shape = tuple(int(d) for d in w.shape)
            target = keras_target(family, name)
            out[name] = head_tf_shape(shape, target.leaf, 0) if target.is_head else shape
    return out


def factory_table(name: str, **changes) -> dict[str, tuple[int, ...]]:
    """The factory's slim model variables of a variant (fields changed by ``changes``, e.g. another alpha)."""
    variant = dataclasses.replace(resolve(name), **changes)
    return {k: shape for k, (shape, _trainable) in fixtures.model_variables(variant).items()}


def arch(inf) -> tuple:
    return inf.family_key, inf.alpha, inf.kind, inf.minimalistic, inf.classes


def manifest_arch(variant) -> tuple:
    return variant.family_key, variant.alpha, variant.kind, variant.minimalistic, variant.classes


# ------------------------------------------------------------------------------------------------
# Catalogue variants: factory checkpoints against the manifest

CACHED = ("mobilenet_v1_0.25_128", "mobilenet_v1_0.25_128_quant", "0.35_96", "1.0_224", "1.4_224",
          "quantized_v2_96_35", "v3-large_224_0.75_float", "v3-small-minimalistic_224_1.0_float",
          "v3-small_224_1.0_uint8")


@pytest.mark.parametrize("name", CACHED)
def test_factory_checkpoints_infer_the_manifest_variant(name):
    variant = resolve(name)
    inf = infer_architecture(checkpoint_shapes(fixtures.cached_checkpoint(name)))
    assert arch(inf) == manifest_arch(variant)
    assert inf.head and inf.scope == variant.family.scope and inf.prefix == ""
    assert inf.quantized == variant.family.quantized and inf.global_step
    assert not inf.outside and not inf.unrecognised
    assert inf.keras_constructor == variant.family.keras_constructor(variant)
    assert float(inf.alpha_range[0]) <= float(variant.alpha) <= float(inf.alpha_range[1])


def test_v3_pristine_checkpoint_slots_and_shadows():
    """V3's pristine checkpoint: raw values with shadows of every model variable and RMSProp slots of the
    trainable ones; its ema/ twin holds neither."""
    name = "v3-large_224_0.75_float"
    shapes = checkpoint_shapes(fixtures.cached_checkpoint(name, role="pristine"))
    inf = infer_architecture(shapes)
    assert arch(inf) == manifest_arch(resolve(name))
    assert inf.ema_shadows == sum(n.endswith("/" + EMA_SUFFIX) for n in shapes) > 0
    (rmsprop,) = inf.optimizers
    assert (rmsprop.name, rmsprop.suffixes) == ("RMSProp", ("RMSProp", "RMSProp_1"))
    assert rmsprop.variables == sum(n.rsplit("/", 1)[-1] in ("RMSProp", "RMSProp_1") for n in shapes)
    ema = infer_architecture(checkpoint_shapes(fixtures.cached_checkpoint(name, role="ema")))
    assert (ema.ema_shadows, ema.optimizers, ema.alpha) == (0, (), inf.alpha)


def test_every_catalogue_variant_by_the_factory_tables():
    """All 85 variants' slim model variables as the factory lays them out (a second implementation of slim's
    widths); the quantized ones without range variables read as their float family."""
    for variant in default_manifest():
        inf = infer_architecture({k: s for k, (s, _t) in fixtures.model_variables(variant).items()})
        want = (variant.family.float_family or variant.family_key, *manifest_arch(variant)[1:])
        assert arch(inf) == want, variant.name


@pytest.mark.parametrize("name,top,must_read", [
    # V1: Keras' int(d * alpha) is slim's max(int(d * alpha), 8) once every width is >= 8 (alpha >= 0.25)
    ("mobilenet_v1_0.25_128", 20, {f"{n / 10:.1f}" for n in range(3, 21)}),
    ("0.5_160", 20, {"0.5", "1.0", "1.5", "2.0"}),
    ("v3-large_224_0.75_float", 10, {"1.0"}),
    ("v3-small-minimalistic_224_1.0_float", 10, {"1.0"}),
])
def test_non_catalogue_alphas_by_the_factory_tables(name, top, must_read):
    """Alphas 0.1 .. top/10 in the factory's slim tables (classes n + 1): each is read back (within the alphas
    that build the same widths), or is one keras.applications cannot build (V1 below 0.25: slim's min_depth;
    V3: Keras' stem is 16 channels whatever alpha, its conv_1 _depth(6 * cin) not slim's 960/576 * alpha)."""
    read = set()
    for n in range(1, top + 1):
        alpha = f"{n / 10:.1f}"
        try:
            inf = infer_architecture(factory_table(name, alpha=alpha, classes=n + 1))
        except KerasIncompatibleError:
            continue
        assert float(inf.alpha_range[0]) <= n / 10 <= float(inf.alpha_range[1]) and inf.classes == n + 1, alpha
        read.add(alpha)
    assert must_read <= read


@pytest.mark.genuine
def test_the_genuine_v2_checkpoint_table():
    shapes = genuine_table()
    inf = infer_architecture(shapes)
    assert arch(inf) == manifest_arch(resolve("1.0_224"))
    assert inf.model_variables == sum(n.split("/")[-1] in ("weights", "depthwise_weights", "biases", "gamma", "beta",
                                                           "moving_mean", "moving_variance") for n in shapes)
    assert inf.ema_shadows == sum(n.endswith("/ExponentialMovingAverage") for n in shapes)
    assert [(o.name, o.variables) for o in inf.optimizers] == [
        ("RMSProp", sum(n.endswith(("/RMSProp", "/RMSProp_1")) for n in shapes))]
    assert inf.global_step and inf.quant_ranges == 0 and inf.finegrain
    text = inf.describe(evidence=True)
    assert "MobileNetV2, alpha 1.0, 1001 classes" in text and "--rows" in text
    assert any("MobilenetV2/Logits/Conv2d_1c_1x1/weights is [1, 1, 1280, 1001]" in e for e in inf.evidence)


# ------------------------------------------------------------------------------------------------
# Non-catalogue alphas and class counts: shape maps from keras.applications itself

KERAS_CASES = [
    ("v1", "MobileNet", dict(alpha=0.6, classes=5), ("v1", "0.6", None, False, 5)),
    ("v2", "MobileNetV2", dict(alpha=0.6, classes=3), ("v2", "0.6", None, False, 3)),
    ("v2", "MobileNetV2", dict(alpha=1.3, classes=10), ("v2", "1.3", None, False, 10)),
    ("v3", "MobileNetV3Large", dict(alpha=1.0, classes=3), ("v3", "1.0", "large", False, 3)),
    ("v3", "MobileNetV3Small", dict(alpha=0.75, classes=5), ("v3", "0.75", "small", False, 5)),
    ("v3", "MobileNetV3Large", dict(alpha=1.0, minimalistic=True, classes=10), ("v3", "1.0", "large", True, 10)),
]


@pytest.mark.parametrize("family,constructor,kwargs,want", KERAS_CASES, ids=[f"{c[1]}-{c[2]}" for c in KERAS_CASES])
def test_keras_built_models(family, constructor, kwargs, want):
    shapes = keras_shapes(family, constructor, **kwargs)
    inf = infer_architecture(shapes)
    assert arch(inf) == want
    assert inf.head and inf.model_variables == len(shapes) and not inf.unused
    assert inf.keras_constructor == constructor
    # the backbone of the same model: no head, the same alpha
    top = ("Logits/",) if family != "v3" else ("Logits/", "Conv_2/")
    backbone = {k: v for k, v in shapes.items() if not k.split("/", 1)[1].startswith(top)}
    inf = infer_architecture(backbone)
    assert (inf.alpha, inf.head, inf.classes) == (want[1], False, None)


def test_a_keras_no_top_model_is_a_backbone():
    shapes = keras_shapes("v2", "MobileNetV2", include_top=False, alpha=1.4)
    inf = infer_architecture(shapes)
    assert (inf.family, inf.alpha, inf.head, inf.classes) == ("v2", "1.4", False, None)
    assert "no-top" in inf.describe()


def test_v3_conv_2_of_a_backbone_is_listed_unused():
    shapes = factory_table("v3-small_224_1.0_float")
    del shapes["MobilenetV3/Logits/Conv2d_1c_1x1/weights"], shapes["MobilenetV3/Logits/Conv2d_1c_1x1/biases"]
    inf = infer_architecture(shapes)
    assert not inf.head and inf.unused == ("MobilenetV3/Conv_2/weights", "MobilenetV3/Conv_2/biases")


# ------------------------------------------------------------------------------------------------
# Training directories: slots, EMA, global_step


def with_training_state(model: dict[str, tuple[int, ...]], slots: tuple[str, ...], ema: bool = True, extra=()):
    out = dict(model)
    for name, shape in model.items():
        for slot in slots:
            out[f"{name}/{slot}"] = shape
        if ema and not name.endswith(("moving_mean", "moving_variance")):
            out[f"{name}/{EMA_SUFFIX}"] = shape
    out["global_step"] = ()
    out.update({name: () for name in extra})
    return out


@pytest.mark.parametrize("slots,extra,want", [
    (("RMSProp", "RMSProp_1"), (), {"RMSProp": 2}),
    (("Momentum",), (), {"Momentum": 1}),
    (("Adam", "Adam_1"), ("beta1_power", "beta2_power"), {"Adam": 2}),
    (("Adagrad",), (), {"Adagrad": 1}),
    (("Ftrl", "Ftrl_1"), (), {"Ftrl": 2}),
    (("Adadelta", "Adadelta_1"), (), {"Adadelta": 2}),
])
def test_optimizer_slots_ema_and_global_step(slots, extra, want):
    model = factory_table("0.5_160", alpha="0.6", classes=7)  # a fine-tuned V2 0.6 with 7 classes
    shapes = with_training_state(model, slots, extra=extra)
    inf = infer_architecture(shapes)
    assert arch(inf) == ("v2", "0.6", None, False, 7)
    assert inf.global_step and inf.model_variables == len(model)
    assert inf.ema_shadows == sum(not n.endswith(("moving_mean", "moving_variance")) for n in model)
    assert {o.name: o.variables for o in inf.optimizers} == {k: n * len(model) + len(extra) for k, n in want.items()}
    assert set(inf.optimizers[0].suffixes) == {*slots, *extra}
    assert not inf.outside and not inf.unrecognised


def test_no_ema_no_slots():
    model = factory_table("mobilenet_v1_0.25_128", alpha="0.6", classes=3)
    inf = infer_architecture(model)
    assert (inf.ema_shadows, inf.optimizers, inf.global_step) == (0, (), False)
    assert arch(inf) == ("v1", "0.6", None, False, 3)


# ------------------------------------------------------------------------------------------------
# A backbone inside another checkpoint


@pytest.fixture(scope="module")
def detector() -> tuple[dict[str, tuple[int, ...]], list[str], list[str]]:
    """An Object Detection API-like checkpoint: a V2 1.0 backbone under FeatureExtractor/, SSD extra layers
    inside its scope, box predictors outside, RMSProp slots and global_step."""
    backbone = {k: v for k, v in genuine_table().items() if "/Logits/" not in k and k != "global_step"}
    shapes = {"global_step": (), **{f"FeatureExtractor/{k}": v for k, v in backbone.items()}}
    extra_inside = ["FeatureExtractor/MobilenetV2/layer_19_1_Conv2d_2_1x1_256/weights",
                    "FeatureExtractor/MobilenetV2/layer_19_1_Conv2d_2_1x1_256/BatchNorm/gamma"]
    outside = [f"BoxPredictor_{i}/{p}/{leaf}" for i in range(3) for p in ("BoxEncodingPredictor", "ClassPredictor")
               for leaf in ("weights", "biases")]
    shapes.update({n: (1, 1, 256, 256) for n in extra_inside})
    shapes.update({n: (3,) for n in outside})
    return shapes, extra_inside, outside


@pytest.mark.parametrize("scope", ["FeatureExtractor/MobilenetV2", "FeatureExtractor/MobilenetV2/", "FeatureExtractor"])
def test_a_scoped_backbone(detector, scope):
    shapes, extra_inside, outside = detector
    inf = infer_architecture(shapes, scope=scope)
    assert (inf.family, inf.alpha, inf.head, inf.classes) == ("v2", "1.0", False, None)
    assert inf.scope == "FeatureExtractor/MobilenetV2" and inf.prefix == "FeatureExtractor/"
    assert inf.outside == tuple(sorted(outside)) and inf.outside_scopes() == {f"BoxPredictor_{i}": 4 for i in range(3)}
    assert inf.unrecognised == tuple(sorted(extra_inside))
    assert inf.global_step and inf.ema_shadows > 0
    text = inf.describe()
    assert "12 variables outside FeatureExtractor/MobilenetV2/" in text and "BoxPredictor_0 (4)" in text


def test_a_nested_backbone_without_scope_names_the_scope_to_pass(detector):
    with pytest.raises(ScopeError, match=r"pass --scope FeatureExtractor/MobilenetV2 ") as exc:
        infer_architecture(detector[0])
    assert "FeatureExtractor/MobilenetV2 (" in str(exc.value)


def test_a_scope_without_a_mobilenet(detector):
    with pytest.raises(ScopeError, match=r"--scope BoxPredictor_0 holds no MobileNet scope"
                                         r".*BoxPredictor_0/ClassPredictor"):
        infer_architecture(detector[0], scope="BoxPredictor_0")
    with pytest.raises(ScopeError, match=r"no variable of the checkpoint is under Nope/.*FeatureExtractor \("):
        infer_architecture(detector[0], scope="Nope")


# ------------------------------------------------------------------------------------------------
# Bad inputs


def test_not_a_mobilenet_names_the_scopes():
    resnet = {f"resnet_v1_50/block{b}/unit_{u}/bottleneck_v1/conv{c}/weights": (1, 1, 64, 64)
              for b in range(1, 5) for u in range(1, 4) for c in range(1, 4)}
    resnet.update({"resnet_v1_50/logits/weights": (1, 1, 2048, 1000), "global_step": ()})
    with pytest.raises(ScopeError) as exc:
        infer_architecture(resnet)
    message = str(exc.value)
    assert "not a MobileNet checkpoint" in message and "resnet_v1_50 (37 variables)" in message
    assert "MobilenetV1/, MobilenetV2/, MobilenetV3/" in message
    assert isinstance(exc.value, ConversionError)


def test_several_mobilenets_need_a_scope():
    shapes = {**factory_table("mobilenet_v1_0.25_128"), **factory_table("0.35_96")}
    with pytest.raises(ScopeError, match=r"several MobileNet scopes: MobilenetV2 \(\d+ variables\), MobilenetV1"):
        infer_architecture(shapes)
    inf = infer_architecture(shapes, scope="MobilenetV1")
    assert arch(inf) == ("v1", "0.25", None, False, 1001)
    assert len(inf.outside) == len(factory_table("0.35_96"))


def test_confirming_overrides():
    shapes = genuine_table()
    inf = infer_architecture(shapes, overrides=Overrides(family="v2", alpha="1", classes=1001))
    assert (inf.alpha, inf.classes) == ("1.0", 1001)
    assert any("--alpha, confirmed" in e for e in inf.evidence)
    # an alpha among those that build the same widths is the user's choice
    assert infer_architecture(shapes, overrides=Overrides(alpha=0.995)).alpha == "0.995"
    v3 = factory_table("v3-small-minimalistic_224_1.0_float")
    inf = infer_architecture(v3, overrides=Overrides(family="v3", kind="small", minimalistic=True))
    assert arch(inf) == ("v3", "1.0", "small", True, 1001)


@pytest.mark.parametrize("overrides,pattern", [
    (Overrides(family="v1"), r"--family v1 contradicts the checkpoint: its model variables are under MobilenetV2/ "
                             r"\(e\.g\. MobilenetV2/"),
    (Overrides(family="v2-quant"), r"--family v2-quant contradicts .* no quantization range variable"),
    (Overrides(alpha="0.75"), r"--alpha 0\.75 contradicts the checkpoint: MobilenetV2/Conv/weights has 32 output "
                              r"channels where slim builds 24 \(make_divisible\(32\*0\.75\)\) .*give alpha 1\.0"),
    (Overrides(classes=1000), r"--classes 1000 contradicts the checkpoint: MobilenetV2/Logits/Conv2d_1c_1x1/weights is "
                              r"\[1, 1, 1280, 1001\], 1001 classes; if its class 0 is a background class"),
    (Overrides(kind="large"), r"--kind large applies to MobileNetV3 only; the checkpoint is a MobileNetV2"),
    (Overrides(minimalistic=True), r"--minimalistic True applies to MobileNetV3 only"),
    (Overrides(family="v9"), r"--family 'v9' is not a family; valid: v1, v2, v3"),
    (Overrides(alpha="wide"), r"--alpha 'wide' is not a number"),
    (Overrides(classes=0), r"--classes 0 must be a positive class count"),
])
def test_contradicting_overrides(overrides, pattern):
    with pytest.raises(OverrideError, match=pattern):
        infer_architecture(genuine_table(), overrides=overrides)


def test_contradicting_v3_overrides():
    large = factory_table("v3-large_224_0.75_float")
    with pytest.raises(OverrideError, match=r"--kind small contradicts the checkpoint: it has 15 expanded_conv blocks "
                                            r".*a MobileNetV3 large \(small has 11\)"):
        infer_architecture(large, overrides=Overrides(kind="small"))
    with pytest.raises(OverrideError, match=r"--minimalistic True contradicts .* squeeze-excite variables "
                                            r"\(MobilenetV3/expanded_conv_10/squeeze_excite/"):
        infer_architecture(large, overrides=Overrides(minimalistic=True))
    backbone = {k: v for k, v in large.items() if "/Logits/" not in k}
    with pytest.raises(OverrideError, match=r"--classes 10 contradicts the checkpoint: it has no logits"):
        infer_architecture(backbone, overrides=Overrides(classes=10))


def test_widths_no_alpha_explains():
    shapes = factory_table("0.35_96", alpha="0.6", classes=5)
    # one projection 8 channels wider than slim builds for any alpha
    for name in [n for n in shapes if n.startswith("MobilenetV2/expanded_conv_5/project/")]:
        *rest, c = shapes[name]
        shapes[name] = (*rest, c + 8)
    with pytest.raises(ArchitectureError, match=r"no depth multiplier reproduces the checkpoint's channel counts: "
                                                r"the closest, alpha 0\.6, matches \d+ layers, then "
                                                r"MobilenetV2/expanded_conv_5/project/weights has 32 output channels "
                                                r"where slim builds 24 \(make_divisible\(32\*0\.6\)\)"):
        infer_architecture(shapes)


def test_slim_widths_keras_cannot_build_v1_min_depth():
    """V1 alpha 0.2: slim's min_depth keeps Conv2d_0 at 8 channels, Keras builds int(32*0.2) = 6."""
    shapes = factory_table("mobilenet_v1_0.25_128", alpha="0.2")
    with pytest.raises(KerasIncompatibleError, match=r"keras\.applications\.MobileNet builds layer conv1 with kernel "
                                                     r"\[3, 3, 3, 6\] \(int\(32\*0\.2\)\), but the checkpoint's "
                                                     r"MobilenetV1/Conv2d_0/weights is \[3, 3, 3, 8\]"):
        infer_architecture(shapes)


def test_slim_widths_keras_cannot_build_v2_without_finegrain():
    """V2 0.5 trained without finegrain_classification_mode: Conv_1 = make_divisible(1280*0.5) = 640; Keras
    keeps 1280 for alpha <= 1."""
    shapes = factory_table("0.5_160")
    assert shapes["MobilenetV2/Conv_1/weights"] == (1, 1, 160, 1280)  # the factory's (finegrain) table
    for name in [n for n in shapes if n.startswith("MobilenetV2/Conv_1/")]:
        *rest, _c = shapes[name]
        shapes[name] = (*rest, 640)
    shapes["MobilenetV2/Logits/Conv2d_1c_1x1/weights"] = (1, 1, 640, 1001)
    with pytest.raises(KerasIncompatibleError, match=r"builds layer Conv_1 with kernel \[1, 1, 160, 1280\] .* the "
                                                     r"checkpoint's MobilenetV2/Conv_1/weights is \[1, 1, 160, 640\] "
                                                     r"\(slim: make_divisible\(1280\*0\.5\)\)"):
        infer_architecture(shapes)


def test_slim_widths_keras_cannot_build_v3_small_alpha():
    """V3 alpha 0.5: slim scales the stem to make_divisible(16*0.5) = 8; Keras' stem is 16 whatever alpha."""
    with pytest.raises(KerasIncompatibleError, match=r"MobileNetV3Small builds layer conv with kernel \[3, 3, 3, 16\] "
                                                     r".*MobilenetV3/Conv/weights is \[3, 3, 3, 8\]"):
        infer_architecture(factory_table("v3-small_224_1.0_float", alpha="0.5"))


def test_v3_block_patterns_matching_neither_kind():
    large = factory_table("v3-large_224_0.75_float")
    fourteen = {k: v for k, v in large.items() if "/expanded_conv_14/" not in k}
    with pytest.raises(ArchitectureError, match=r"matches neither large nor small: 14 expanded_conv blocks "
                                                r"\(MobilenetV3/expanded_conv \.\. MobilenetV3/expanded_conv_13\)"):
        infer_architecture(fourteen)
    no_se_in_3 = {k: v for k, v in large.items() if "/expanded_conv_3/squeeze_excite/" not in k}
    with pytest.raises(ArchitectureError, match=r"matches neither large nor large minimalistic: the checkpoint has "
                                                r"squeeze-excite in blocks 4,5,10"):
        infer_architecture(no_se_in_3)
    gap = {k: v for k, v in large.items() if "/expanded_conv_7/" not in k}
    with pytest.raises(ArchitectureError, match=r"MobileNetV3 blocks are missing: MobilenetV3/expanded_conv_7 "):
        infer_architecture(gap)


def test_incomplete_and_extra_variables():
    shapes = genuine_table()
    no_conv_1 = {k: v for k, v in shapes.items() if not k.startswith("MobilenetV2/Conv_1/BatchNorm/gamma")}
    with pytest.raises(ArchitectureError, match=r"1 missing variable: MobilenetV2/Conv_1/BatchNorm/gamma "
                                                r"\(read so far: family v2, 1001 classes, alpha 1.0\)"):
        infer_architecture(no_conv_1)
    extra = {**shapes, "MobilenetV2/expanded_conv_17/expand/weights": (1, 1, 320, 1920)}
    with pytest.raises(ArchitectureError, match=r"1 variable the architecture does not have: "
                                                r"MobilenetV2/expanded_conv_17/expand/weights"):
        infer_architecture(extra)


def test_alpha_text():
    assert [alpha_text(a) for a in ("1", 1.0, "0.60", 0.35, "1.40")] == ["1.0", "1.0", "0.6", "0.35", "1.4"]
    with pytest.raises(OverrideError):
        alpha_text("-1")


def test_the_module_imports_neither_tensorflow_nor_keras():
    code = ("import sys, convert.architecture; "
            "assert not {'tensorflow', 'keras'} & set(sys.modules), sorted({'tensorflow', 'keras'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
