"""Layer guide -> legacy-layout .h5: loads through keras.applications (Keras 3 and tf-keras), bit for bit."""
from __future__ import annotations

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

from convert import fixtures  # noqa: E402
from convert.checkpoint import extract, load_layer_guide  # noqa: E402
from convert.fsutil import sha256_file  # noqa: E402
from conftest import run_main  # noqa: E402
from convert.keras_weights import (WeightAssignmentError, assign_guide, build_keras_model,  # noqa: E402
                                   convert_guide)
from convert.manifest import resolve  # noqa: E402

VARIANTS = ["0.35_96", "0.75_160", "1.0_224", "1.4_224"]
SMALL = "0.35_96"
EMA = "/ExponentialMovingAverage"


def oracle_tf_name(layer: str, weight: str) -> str:
    """An independent statement of where a Keras MobileNetV2 weight lives in the slim checkpoint (Keras 3
    and tf-keras weight names), used to check the converter's mapping rather than reuse it."""
    weight = weight.split(":")[0]
    fixed = {"Conv1": ("Conv", False), "bn_Conv1": ("Conv", True), "Conv_1": ("Conv_1", False),
             "Conv_1_bn": ("Conv_1", True), "predictions": ("Logits/Conv2d_1c_1x1", False)}
    if layer in fixed:
        scope, bn = fixed[layer]
        depthwise = False
    else:
        m = re.fullmatch(r"(expanded_conv|block_(\d+))_(expand|depthwise|project)(_BN)?", layer)
        assert m, layer
        scope = f"{'expanded_conv' if m[2] is None else 'expanded_conv_' + m[2]}/{m[3]}"
        bn, depthwise = m[4] is not None, m[3] == "depthwise"
    if bn:
        return f"MobilenetV2/{scope}/BatchNorm/{weight}"
    leaf = {"kernel": "depthwise_weights" if depthwise else "weights", "depthwise_kernel": "depthwise_weights",
            "bias": "biases"}[weight]
    return f"MobilenetV2/{scope}/{leaf}"


def assert_model_equals_checkpoint(model, reader, variant, include_top: bool) -> int:
    """Every weight of a loaded model equals, bit for bit, the checkpoint tensor it must come from (the
    EMA shadow when there is one); the head with slim's background class 0 dropped. Returns the count."""
    names = set(reader.get_variable_to_shape_map())
    n = 0
    for layer in model.layers:
        for w in layer.weights:
            leaf = w.name.split("/")[-1]
            tf_name = oracle_tf_name(layer.name, leaf)
            want = reader.get_tensor(tf_name + EMA if tf_name + EMA in names else tf_name)
            if layer.name == "predictions":
                want = want[0, 0, :, variant.label_offset:] if want.ndim == 4 else want[variant.label_offset:]
            got = np.asarray(w.numpy())
            assert got.dtype == np.float32 and got.shape == want.shape, (layer.name, leaf)
            assert got.tobytes() == want.tobytes(), f"{layer.name}/{leaf} differs from {tf_name}"
            n += 1
    assert n == len(model.weights) == (262 if include_top else 260)
    assert ("predictions" in [l.name for l in model.layers]) == include_top
    return n


@pytest.fixture(scope="module", params=VARIANTS)
def converted(request, tmp_path_factory):
    """Factory archive -> extract() -> convert_guide() for one variant."""
    name = request.param
    out = tmp_path_factory.mktemp(f"conv_{name}")
    archive = fixtures.cached_archive(name)
    guide = load_layer_guide(extract(name, archive=archive, out_dir=out / "work"))
    result = convert_guide(guide, out / "weights")
    reader = tf.train.load_checkpoint(fixtures.cached_checkpoint(name))
    return {"variant": resolve(name), "archive": archive, "guide": guide, "result": result, "reader": reader}


def _shape(v):
    return (v.rows, v.rows, 3)


def test_keras3_loads_both_files_bit_for_bit(converted):
    v, result, reader = converted["variant"], converted["result"], converted["reader"]
    for include_top, key in ((True, "h5"), (False, "h5_no_top")):
        model = keras.applications.MobileNetV2(alpha=float(v.alpha), input_shape=_shape(v), include_top=include_top,
                                               weights=str(result[key]))
        assert_model_equals_checkpoint(model, reader, v, include_top)
        keras.backend.clear_session()


def test_tf_keras_loads_both_files_bit_for_bit(converted):
    import tf_keras

    v, result, reader = converted["variant"], converted["result"], converted["reader"]
    for include_top, key in ((True, "h5"), (False, "h5_no_top")):
        model = tf_keras.applications.MobileNetV2(alpha=float(v.alpha), input_shape=_shape(v),
                                                  include_top=include_top, weights=str(result[key]))
        assert_model_equals_checkpoint(model, reader, v, include_top)
        tf_keras.backend.clear_session()


def test_outputs_sidecar_and_sums(converted):
    v, result, guide = converted["variant"], converted["result"], converted["guide"]
    out = result["h5"].parent
    assert result["h5"].name == v.keras_weights and result["h5_no_top"].name == v.keras_weights_no_top
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [v.keras_weights, v.keras_weights_no_top, Path(v.keras_weights).stem + ".json", "SHA256SUMS"])
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert sums == {p.name: sha256_file(p) for p in (result["h5"], result["h5_no_top"], result["sidecar"])}
    side = json.loads(result["sidecar"].read_text())
    assert side["variant"] == v.name and side["source_archive_sha256"] == sha256_file(converted["archive"])
    assert side["weights"] == {"requested": "auto", "mode": "ema", "by_source": {"ema": 158, "raw": 104}}
    assert side["files"] == {v.keras_weights: sums[v.keras_weights], v.keras_weights_no_top: sums[v.keras_weights_no_top]}
    assert side["versions"]["keras"] == keras.__version__ and side["versions"]["tensorflow"] == tf.__version__
    assert guide.counts["consumed"] == 262


# ------------------------------------------------------------------------------------------------
# One variant: layout, reproducibility, one-to-one assignment, CLI


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    guide_path = extract(SMALL, archive=fixtures.cached_archive(SMALL), out_dir=out / "work")
    return {"guide_path": guide_path, "guide": load_layer_guide(guide_path), "out": out,
            "result": convert_guide(load_layer_guide(guide_path), out / "weights")}


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
        ref = tf_keras.applications.MobileNetV2(alpha=float(v.alpha), input_shape=_shape(v),
                                                include_top=include_top, weights=None)
        ref.save_weights(tmp_path / "ref.h5")
        ours, theirs = _layout(small["result"][key]), _layout(tmp_path / "ref.h5")
        # same layers in the same order, same weight names, shapes and dtypes per layer, same backend
        assert ours[0] == theirs[0] and ours[0][0] == "input_1"
        assert ours[1] == theirs[1] and ours[1]["input_1"] == [] and ours[2] == theirs[2] == ["tensorflow"]
    with h5py.File(small["result"]["h5"], "r") as f:
        assert f.attrs["keras_version"] == keras.__version__
        assert list(f["block_1_depthwise"].attrs["weight_names"]) == ["block_1_depthwise/depthwise_kernel:0"]
        assert f["predictions/predictions/kernel:0"].shape == (1280, 1000)


def test_conversion_is_byte_reproducible(small, tmp_path):
    again = convert_guide(small["guide"], tmp_path)
    assert again["sha256"] == small["result"]["sha256"]


@pytest.fixture(scope="module")
def top_model():
    return build_keras_model(resolve(SMALL), include_top=True)


def _guide_without(guide, pred):
    import copy

    g = copy.copy(guide)
    g.records = [dict(r) for r in guide.records if not pred(r)]
    return g


def test_missing_record_leaves_a_named_keras_weight(small, top_model):
    g = _guide_without(small["guide"], lambda r: r["layer"] == "block_3_expand_BN" and r["weight"] == "beta")
    with pytest.raises(WeightAssignmentError, match=r"1 Keras weight\(s\) with no guide record: block_3_expand_BN/beta"):
        assign_guide(top_model, g, resolve(SMALL))


def test_extra_record_is_named_as_unused(small, top_model):
    g = _guide_without(small["guide"], lambda r: False)
    extra = dict(g.records[0], layer="block_17_expand", key="MobilenetV2/expanded_conv_17/expand/weights")
    g.records.append(extra)
    g.arrays = dict(g.arrays, **{extra["key"]: g.arrays[g.records[0]["key"]]})
    with pytest.raises(WeightAssignmentError,
                       match=r"1 guide record\(s\) not used by the model: MobilenetV2/expanded_conv_17/expand/weights"):
        assign_guide(top_model, g, resolve(SMALL))


def test_wrong_shape_record_is_named(small, top_model):
    g = _guide_without(small["guide"], lambda r: False)
    rec = next(r for r in g.records if r["layer"] == "Conv_1" and r["weight"] == "kernel")
    g.arrays = dict(g.arrays, **{rec["key"]: np.zeros((1, 1, 112, 1279), np.float32)})
    with pytest.raises(WeightAssignmentError, match=r"MobilenetV2/Conv_1/weights/ExponentialMovingAverage \(shape "
                                                    r"\[1, 1, 112, 1279\]\) does not fit Keras weight Conv_1/kernel"):
        assign_guide(top_model, g, resolve(SMALL))


def test_head_must_have_the_background_class(small, top_model):
    g = _guide_without(small["guide"], lambda r: False)
    rec = next(r for r in g.records if r["layer"] == "predictions" and r["weight"] == "bias")
    g.arrays = dict(g.arrays, **{rec["key"]: np.zeros((1000,), np.float32)})
    with pytest.raises(WeightAssignmentError, match=r"Conv2d_1c_1x1/biases/ExponentialMovingAverage has shape "
                                                    r"\[1000\], expected \[1001\]"):
        assign_guide(top_model, g, resolve(SMALL))


def _load_cli(argv, capsys):
    import load_weights

    return run_main(load_weights.main, argv, capsys)


def test_load_weights_cli(small, tmp_path, capsys):
    code, out, err = _load_cli([SMALL, "--guide", str(small["guide_path"]), "--out", str(tmp_path)], capsys)
    assert code == 0, err
    for name, digest in small["result"]["sha256"].items():
        assert f"{digest}  {tmp_path / name}" in out
    code, out, err = _load_cli(["0.5_96", "--guide", str(small["guide_path"]), "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and err.startswith("error: layer guide ") and "is for variant 0.35_96, not 0.5_96" in err
    code, out, err = _load_cli([SMALL, "--guide", str(tmp_path / "none.p"), "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and err.startswith("error: layer guide not found:")
    assert not (tmp_path / "x").exists()
