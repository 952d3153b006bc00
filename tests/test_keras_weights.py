"""Layer guide -> legacy-layout .h5: loads through keras.applications (Keras 3 and tf-keras), bit for bit."""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from convert import cards  # noqa: E402
from convert.factory import fixtures  # noqa: E402
from convert.checkpoint import extract  # noqa: E402
from convert.guide import load_layer_guide  # noqa: E402
from convert.keras_model import build  # noqa: E402
from convert.fsutil import sha256_file  # noqa: E402
from conftest import run_main  # noqa: E402
from convert.keras_weights import WeightAssignmentError, assign_guide, convert_guide  # noqa: E402
from convert.manifest import resolve  # noqa: E402

VARIANTS = ["0.35_96", "mobilenet_v1_0.25_128", "v3-large_224_0.75_float", "v3-small-minimalistic_224_1.0_float"]
V3_VARIANTS = [v for v in VARIANTS if v.startswith("v3-")]
SMALL = "0.35_96"
EMA = "/ExponentialMovingAverage"


def _v2_oracle(layer: str, weight: str) -> tuple[str, bool]:
    fixed = {"Conv1": "Conv", "bn_Conv1": "Conv/BatchNorm", "Conv_1": "Conv_1", "Conv_1_bn": "Conv_1/BatchNorm",
             "predictions": "Logits/Conv2d_1c_1x1"}
    if layer in fixed:
        return fixed[layer], False
    m = re.fullmatch(r"(expanded_conv|block_(\d+))_(expand|depthwise|project)(_BN)?", layer)
    assert m, layer
    scope = f"{'expanded_conv' if m[2] is None else 'expanded_conv_' + m[2]}/{m[3]}"
    return scope + ("/BatchNorm" if m[4] else ""), m[3] == "depthwise"


def _v1_oracle(layer: str, weight: str) -> tuple[str, bool]:
    if layer in ("conv1", "conv1_bn"):
        return "Conv2d_0" + ("/BatchNorm" if layer.endswith("_bn") else ""), False
    if layer == "conv_preds":
        return "Logits/Conv2d_1c_1x1", False
    m = re.fullmatch(r"conv_(dw|pw)_(\d+)(_bn)?", layer)
    assert m, layer
    scope = f"Conv2d_{m[2]}_{'depthwise' if m[1] == 'dw' else 'pointwise'}"
    return scope + ("/BatchNorm" if m[3] else ""), m[1] == "dw"


def _v3_oracle(layer: str, weight: str) -> tuple[str, bool]:
    if "/" in layer or layer in ("Conv", "Conv_1", "Conv_2", "Logits"):  # tf-keras names its layers by slim scope
        return ("Logits/Conv2d_1c_1x1" if layer == "Logits" else layer), layer.endswith("/depthwise")
    fixed = {"conv": "Conv", "conv_bn": "Conv/BatchNorm", "conv_1": "Conv_1", "conv_1_bn": "Conv_1/BatchNorm",
             "conv_2": "Conv_2", "logits": "Logits/Conv2d_1c_1x1"}
    if layer in fixed:
        return fixed[layer], False
    m = re.fullmatch(r"expanded_conv(?:_(\d+))?_(expand|depthwise|project|squeeze_excite_conv|squeeze_excite_conv_1)(_bn)?",
                     layer)
    assert m, layer
    block = "expanded_conv" + (f"_{m[1]}" if m[1] else "")
    part = {"squeeze_excite_conv": "squeeze_excite/Conv", "squeeze_excite_conv_1": "squeeze_excite/Conv_1"}.get(m[2], m[2])
    return f"{block}/{part}" + ("/BatchNorm" if m[3] else ""), m[2] == "depthwise"


# An independent statement, per family, of where a Keras weight lives in the slim checkpoint (Keras 3 and
# tf-keras weight names), used to check the converter's name tables rather than reuse them.
ORACLES = {"v1": ("MobilenetV1", _v1_oracle, ("conv_preds",)), "v2": ("MobilenetV2", _v2_oracle, ("predictions",)),
           "v3": ("MobilenetV3", _v3_oracle, ("logits", "Logits"))}


def oracle_tf_name(family: str, layer: str, weight: str) -> str:
    top, oracle, _ = ORACLES[family]
    weight = weight.split(":")[0]
    scope, depthwise = oracle(layer, weight)
    if scope.endswith("/BatchNorm"):
        return f"{top}/{scope}/{weight}"
    leaf = {"kernel": "depthwise_weights" if depthwise else "weights", "depthwise_kernel": "depthwise_weights",
            "bias": "biases"}[weight]
    return f"{top}/{scope}/{leaf}"


def applications_model(module, v, include_top: bool, weights: str):
    """The keras.applications constructor call a user makes for a variant (``module``: keras or tf_keras)."""
    apps = module.applications
    shape = (v.rows, v.rows, 3)
    if v.family_key == "v1":
        return apps.MobileNet(alpha=float(v.alpha), input_shape=shape, include_top=include_top, weights=weights)
    if v.family_key == "v2":
        return apps.MobileNetV2(alpha=float(v.alpha), input_shape=shape, include_top=include_top, weights=weights)
    ctor = apps.MobileNetV3Large if v.kind == "large" else apps.MobileNetV3Small
    return ctor(alpha=float(v.alpha), minimalistic=v.minimalistic, input_shape=shape, include_top=include_top,
                weights=weights)


def assert_model_equals_checkpoint(model, reader, variant, include_top: bool) -> int:
    """Every weight of a loaded model equals, bit for bit, the checkpoint tensor it must come from (the
    EMA value: a shadow when there is one); the head with slim's background class 0 dropped. Returns the count."""
    names = set(reader.get_variable_to_shape_map())
    head = ORACLES[variant.family_key][2]
    n = 0
    for layer in model.layers:
        for w in layer.weights:
            leaf = w.name.split("/")[-1]
            tf_name = oracle_tf_name(variant.family_key, layer.name, leaf)
            want = reader.get_tensor(tf_name + EMA if tf_name + EMA in names else tf_name)
            if layer.name in head:
                want = want[..., variant.label_offset:]
                want = want[0, 0] if want.ndim == 4 and len(w.shape) == 2 else want
            got = np.asarray(w.numpy())
            assert got.dtype == np.float32 and got.shape == want.shape, (layer.name, leaf)
            assert got.tobytes() == want.tobytes(), f"{layer.name}/{leaf} differs from {tf_name}"
            n += 1
    assert n == len(model.weights) > 0
    assert any(l.name in head for l in model.layers) == include_top
    return n


@dataclasses.dataclass
class Converted:
    facts: object  # what convert_guide returned
    written: cards.Written  # what cards.write wrote at the end of the conversion
    h5: Path
    h5_no_top: Path


def _convert(guide, v, out: Path) -> Converted:
    """A conversion as the pipeline ends it: the .h5 files, then the variant's metadata, once."""
    facts = convert_guide(guide, v, out)
    return Converted(facts, cards.write(out, v, facts), out / v.keras_weights, out / v.keras_weights_no_top)


@pytest.fixture(scope="module", params=VARIANTS)
def converted(request, tmp_path_factory):
    """Factory archive -> extract() -> convert_guide() for one variant."""
    v = resolve(request.param)
    out = tmp_path_factory.mktemp(f"conv_{request.param}")
    archive = fixtures.cached_archive(v.name)
    guide = load_layer_guide(extract(v, archive=archive, out_dir=out / "work"))
    result = _convert(guide, v, out / "weights")
    reader = tf.train.load_checkpoint(fixtures.cached_checkpoint(v.name))  # V3: its ema/ checkpoint
    return {"variant": v, "archive": archive, "guide": guide, "result": result, "reader": reader}


def test_keras3_loads_both_files_bit_for_bit(converted):
    v, result, reader = converted["variant"], converted["result"], converted["reader"]
    counts = {}
    for include_top, path in ((True, result.h5), (False, result.h5_no_top)):
        model = applications_model(keras, v, include_top, str(path))
        counts[include_top] = assert_model_equals_checkpoint(model, reader, v, include_top)
        keras.backend.clear_session()
    assert counts[True] == converted["guide"].counts.consumed
    # the no-top model lacks the head's 2 weights (and V3's conv_2 kernel and bias)
    assert counts[True] - counts[False] == (4 if v.family_key == "v3" else 2)


def test_tf_keras_loads_both_files_bit_for_bit(converted):
    import tf_keras

    v, result, reader = converted["variant"], converted["result"], converted["reader"]
    for include_top, path in ((True, result.h5), (False, result.h5_no_top)):
        model = applications_model(tf_keras, v, include_top, str(path))
        assert_model_equals_checkpoint(model, reader, v, include_top)
        tf_keras.backend.clear_session()


@pytest.mark.parametrize("converted", V3_VARIANTS, indirect=True)
def test_v3_loads_with_the_default_preprocessing_too(converted):
    v, result = converted["variant"], converted["result"]
    ctor = keras.applications.MobileNetV3Large if v.kind == "large" else keras.applications.MobileNetV3Small
    x = np.random.default_rng(0).uniform(-1, 1, (2, v.rows, v.rows, 3)).astype(np.float32)
    plain = ctor(alpha=float(v.alpha), minimalistic=v.minimalistic, input_shape=(v.rows, v.rows, 3),
                 weights=str(result.h5), include_preprocessing=False, classifier_activation=None)
    scaled = ctor(alpha=float(v.alpha), minimalistic=v.minimalistic, input_shape=(v.rows, v.rows, 3),
                  weights=str(result.h5), classifier_activation=None)  # the default: inputs in [0, 255]
    a, b = np.asarray(plain(x)), np.asarray(scaled((x + 1.0) * 127.5))
    assert np.max(np.abs(a - b)) <= 1e-4 * max(1.0, float(np.max(np.abs(a))))
    keras.backend.clear_session()


def test_outputs_sidecar_and_sums(converted):
    v, result, guide = converted["variant"], converted["result"], converted["guide"]
    out = result.h5.parent
    assert result.h5.name == v.keras_weights and result.h5_no_top.name == v.keras_weights_no_top
    stem = Path(v.keras_weights).stem
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [v.keras_weights, v.keras_weights_no_top, stem + ".json", stem + "_card.md", "SHA256SUMS",
         "imagenet_labels.txt"])
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    written = result.written
    assert sums == {p.name: sha256_file(p) for p in (result.h5, result.h5_no_top, written.sidecar, written.card,
                                                     out / "imagenet_labels.txt")}
    assert written.sha256 == sums and result.facts.files == {p.name: sums[p.name] for p in (result.h5, result.h5_no_top)}
    card = written.card.read_text()  # the model card: the sidecar's data, for people
    assert v.url in card and f"MACs {v.macs_m} M" in card and f"top-1 {v.top1} %" in card
    assert f'weights="{v.keras_weights}"' in card and "Apache License 2.0" in card
    assert "not verified yet" in card and "not evaluated" in card
    side = json.loads(written.sidecar.read_text())
    assert side["variant"] == v.name and side["family"] == v.family_key
    assert side["provenance"]["archive_sha256"] == sha256_file(converted["archive"])
    assert side["provenance"]["pin"] == v.sha256 and side["provenance"]["pin_status"] == (
        "no pin" if v.sha256 is None else "differs")  # factory archives never match a genuine pin
    n = len(fixtures.model_variables(v))  # the factory's slim variable table: independent of the converter
    by_source = {"ema": 158, "raw": 104} if v.family_key == "v2" else {"ema": n}  # V1/V3: every value is an EMA value
    assert side["weights"] == {"requested": "auto", "mode": "ema", "by_source": by_source}
    assert side["provenance"]["checkpoint_role"] == ("ema" if v.family_key == "v3" else "combined")
    assert side["files"] == {v.keras_weights: sums[v.keras_weights], v.keras_weights_no_top: sums[v.keras_weights_no_top]}
    assert side["versions"]["keras"] == keras.__version__ and side["versions"]["tensorflow"] == tf.__version__
    assert side["card"]["published"] == {"macs_m": v.macs_m, "params_m": v.params_m, "top1": v.top1, "top5": v.top5}
    assert side["card"]["url"] == v.url and "parity" not in side
    assert guide.counts.consumed == len(guide.records) == {"v2": 262, "v1": 137}.get(v.family_key, n)


# ------------------------------------------------------------------------------------------------
# One variant: layout, reproducibility, one-to-one assignment, CLI


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    guide_path = extract(resolve(SMALL), archive=fixtures.cached_archive(SMALL), out_dir=out / "work")
    return {"guide_path": guide_path, "guide": load_layer_guide(guide_path), "out": out,
            "result": _convert(load_layer_guide(guide_path), resolve(SMALL), out / "weights")}


def _layout(path):
    def attr(obj, name):
        return [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(obj.attrs[name])]

    with h5py.File(path, "r") as f:
        layers = attr(f, "layer_names")
        groups = {}
        for name in layers:
            weight_names = attr(f[name], "weight_names")
            groups[name] = [(w, f[name][w].shape, f[name][w].dtype.str) for w in weight_names]
        return layers, groups, attr(f, "backend")


def test_layout_is_what_tf_keras_save_weights_writes(small, tmp_path):
    import tf_keras

    v = resolve(SMALL)
    for include_top, key in ((True, "h5"), (False, "h5_no_top")):
        tf_keras.backend.clear_session()  # tf-keras numbers auto-named layers per session
        ref = tf_keras.applications.MobileNetV2(alpha=float(v.alpha), input_shape=(v.rows, v.rows, 3),
                                                include_top=include_top, weights=None)
        ref.save_weights(tmp_path / "ref.h5")
        ours, theirs = _layout(getattr(small["result"], key)), _layout(tmp_path / "ref.h5")
        # same layers in the same order, same weight names, shapes and dtypes per layer, same backend
        assert ours[0] == theirs[0] and ours[0][0] == "input_1"
        assert ours[1] == theirs[1] and ours[1]["input_1"] == [] and ours[2] == theirs[2] == ["tensorflow"]
    with h5py.File(small["result"].h5, "r") as f:
        assert f.attrs["keras_version"] == keras.__version__
        assert list(f["block_1_depthwise"].attrs["weight_names"]) == ["block_1_depthwise/depthwise_kernel:0"]
        assert f["predictions/predictions/kernel:0"].shape == (1280, 1000)


def test_conversion_is_byte_reproducible(small, tmp_path):
    again = convert_guide(small["guide"], resolve(SMALL), tmp_path)
    assert again.files == small["result"].facts.files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(again.files)  # the .h5 files only


@pytest.mark.parametrize("name", [*VARIANTS, "v3-large-minimalistic_224_1.0_float", "v3-small_224_1.0_float"])
def test_no_top_view_is_the_constructors_no_top_model(name):
    """The converter writes the no-top file from a view of the top model (no second build): its layers,
    their order, classes, weight names and shapes are those of keras.applications' include_top=False
    model, for every family and every V3 architecture (large/small, with and without squeeze-excite, whose
    blocks hold GlobalAveragePooling2D layers too; alpha and rows change shapes, not the layer list)."""
    from convert.keras_model import features_model, legacy_weights

    def signature(model):
        return [(layer.name, type(layer).__name__, [(w.name, tuple(w.shape)) for w in legacy_weights(layer)])
                for layer in model.layers]

    v = resolve(name)
    view = features_model(build(v, include_top=True))
    assert signature(view) == signature(build(v, include_top=False))
    assert len(view.layers) > 50


@pytest.fixture(scope="module")
def top_model():
    return build(resolve(SMALL), include_top=True)


def _guide_without(guide, pred):
    import copy

    g = copy.copy(guide)
    g.records = [r for r in guide.records if not pred(r)]
    return g


def test_missing_record_leaves_a_named_keras_weight(small, top_model):
    g = _guide_without(small["guide"], lambda r: r.layer == "block_3_expand_BN" and r.weight == "beta")
    with pytest.raises(WeightAssignmentError, match=r"1 Keras weight\(s\) with no guide record: block_3_expand_BN/beta"):
        assign_guide(top_model, g, resolve(SMALL))


def test_extra_record_is_named_as_unused(small, top_model):
    g = _guide_without(small["guide"], lambda r: False)
    extra = dataclasses.replace(g.records[0], layer="block_17_expand", key="MobilenetV2/expanded_conv_17/expand/weights")
    g.records.append(extra)
    g.arrays = dict(g.arrays, **{extra.key: g.arrays[g.records[0].key]})
    with pytest.raises(WeightAssignmentError,
                       match=r"1 guide record\(s\) not used by the model: MobilenetV2/expanded_conv_17/expand/weights"):
        assign_guide(top_model, g, resolve(SMALL))


def test_wrong_shape_record_is_named(small, top_model):
    g = _guide_without(small["guide"], lambda r: False)
    rec = next(r for r in g.records if r.layer == "Conv_1" and r.weight == "kernel")
    g.arrays = dict(g.arrays, **{rec.key: np.zeros((1, 1, 112, 1279), np.float32)})
    with pytest.raises(WeightAssignmentError, match=r"MobilenetV2/Conv_1/weights/ExponentialMovingAverage \(shape "
                                                    r"\[1, 1, 112, 1279\]\) does not fit Keras weight Conv_1/kernel"):
        assign_guide(top_model, g, resolve(SMALL))


def test_head_must_have_the_background_class(small, top_model):
    g = _guide_without(small["guide"], lambda r: False)
    rec = next(r for r in g.records if r.layer == "predictions" and r.weight == "bias")
    g.arrays = dict(g.arrays, **{rec.key: np.zeros((1000,), np.float32)})
    with pytest.raises(WeightAssignmentError, match=r"Conv2d_1c_1x1/biases/ExponentialMovingAverage has shape "
                                                    r"\[1000\], expected \[1001\]"):
        assign_guide(top_model, g, resolve(SMALL))


def _load_cli(argv, capsys):
    import load_weights

    return run_main(load_weights.main, argv, capsys)


def test_load_weights_cli(small, tmp_path, capsys):
    code, out, err = _load_cli([SMALL, "--guide", str(small["guide_path"]), "--out", str(tmp_path)], capsys)
    assert code == 0, err
    for name, digest in small["result"].written.sha256.items():  # the .h5 files, the sidecar and the card
        assert f"{digest}  {tmp_path / name}" in out
    code, out, err = _load_cli(["0.5_96", "--guide", str(small["guide_path"]), "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and err.startswith("error: layer guide ") and "is for variant 0.35_96, not 0.5_96" in err
    code, out, err = _load_cli([SMALL, "--guide", str(tmp_path / "none.p"), "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and err.startswith("error: layer guide not found:")
    assert not (tmp_path / "x").exists()
