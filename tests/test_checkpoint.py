"""Checkpoint -> layer guide: name-based mapping, weight choice, accounting, guide file safety, CLI."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from convert.factory import fixtures  # noqa: E402
from convert.checkpoint import (CheckpointMismatchError, Choice, WeightSourceError, build_layer_guide,  # noqa: E402
                                choose, classify, extract)
from convert.errors import ConversionError  # noqa: E402
from convert.guide import LayerGuideError, load_layer_guide, save_layer_guide  # noqa: E402
from convert.mapping import EMA_SUFFIX, expected_variables, keras_target, tf_name_for  # noqa: E402
from conftest import run_main  # noqa: E402
from convert.manifest import default_manifest, resolve  # noqa: E402

SMALL = "0.35_96"
V = resolve(SMALL)


def keras_layer_for(name):
    return keras_target("v2", name)
EMA = "/" + EMA_SUFFIX


# ------------------------------------------------------------------------------------------------
# Hand-made checkpoints


def write_checkpoint(prefix: Path, values: dict[str, np.ndarray], order: list[str] | None = None) -> str:
    """Write a TF1 (V2 bundle) checkpoint holding exactly ``values``, the tensors laid out in the data
    file in ``order`` (default: the dict's order). Uses the SaveV2 op that ``tf.compat.v1.train.Saver``
    runs, called directly, because the Saver always sorts by name and so cannot produce a shuffled file."""
    names = list(order or values)
    assert sorted(names) == sorted(values)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(values[n]) for n in names])
    return str(prefix)


@pytest.fixture(scope="module")
def values() -> dict[str, np.ndarray]:
    """The factory's full official variable table of the small variant (seeded)."""
    return fixtures.checkpoint_values(V, seed=0)


@pytest.fixture(scope="module")
def ckpt(values, tmp_path_factory) -> str:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "full.ckpt", values)


def variant_of(values, tmp_path, name="m", drop=(), add=None, order=None, **kw):
    vals = {k: v for k, v in values.items() if k not in drop}
    vals.update(add or {})
    return write_checkpoint(tmp_path / f"{name}.ckpt", vals, order)


# ------------------------------------------------------------------------------------------------
# The mapping


@pytest.mark.genuine
def test_expected_set_is_the_genuine_1_0_224_table(reference_dir):
    genuine = reference_dir / "mobilenet_v2_1.0_224.ckpt"
    table = dict((n, tuple(s)) for n, s in tf.train.list_variables(str(genuine)))
    assert len(table) == 737
    model = {n: s for n, s in table.items()
             if n != "global_step" and not n.endswith((EMA, "/RMSProp", "/RMSProp_1"))}
    expected = expected_variables(resolve("1.0_224"))
    assert len(expected) == len(model) == 262
    assert {n: e.shape for n, e in expected.items()} == model
    # every trainable of the genuine table has a shadow, the BN moving statistics have none
    trainables = {n for n in model if not n.endswith(("moving_mean", "moving_variance"))}
    assert {n[: -len(EMA)] for n in table if n.endswith(EMA)} == trainables



# family, TF variable, Keras layer, Keras weight, block (- for none), layer kind
NAME_TABLE_CASES = """
v2  MobilenetV2/Conv/weights Conv1 kernel - conv
v2  MobilenetV2/Conv/BatchNorm/moving_variance bn_Conv1 moving_variance - conv
v2  MobilenetV2/expanded_conv/depthwise/depthwise_weights expanded_conv_depthwise kernel - depthwise
v2  MobilenetV2/expanded_conv/project/BatchNorm/beta expanded_conv_project_BN beta - conv
v2  MobilenetV2/expanded_conv_1/expand/weights block_1_expand kernel 1 conv
v2  MobilenetV2/expanded_conv_16/project/BatchNorm/gamma block_16_project_BN gamma 16 conv
v2  MobilenetV2/Conv_1/weights Conv_1 kernel - conv
v2  MobilenetV2/Conv_1/BatchNorm/moving_mean Conv_1_bn moving_mean - conv
v2  MobilenetV2/Logits/Conv2d_1c_1x1/weights predictions kernel - head
v2  MobilenetV2/Logits/Conv2d_1c_1x1/biases predictions bias - head
v1  MobilenetV1/Conv2d_0/weights conv1 kernel - conv
v1  MobilenetV1/Conv2d_0/BatchNorm/gamma conv1_bn gamma - conv
v1  MobilenetV1/Conv2d_13_depthwise/depthwise_weights conv_dw_13 kernel 13 depthwise
v1  MobilenetV1/Conv2d_7_pointwise/BatchNorm/moving_mean conv_pw_7_bn moving_mean 7 conv
v1  MobilenetV1/Logits/Conv2d_1c_1x1/biases conv_preds bias - head
v3  MobilenetV3/Conv/weights conv kernel - conv
v3  MobilenetV3/expanded_conv/squeeze_excite/Conv/biases expanded_conv_squeeze_excite_conv bias - conv_bias
v3  MobilenetV3/expanded_conv_11/squeeze_excite/Conv_1/weights expanded_conv_11_squeeze_excite_conv_1 kernel 11 conv_bias
v3  MobilenetV3/expanded_conv_2/expand/BatchNorm/beta expanded_conv_2_expand_bn beta 2 conv
v3  MobilenetV3/expanded_conv_5/depthwise/depthwise_weights expanded_conv_5_depthwise kernel 5 depthwise
v3  MobilenetV3/Conv_1/BatchNorm/moving_variance conv_1_bn moving_variance - conv
v3  MobilenetV3/Conv_2/biases conv_2 bias - conv_bias
v3  MobilenetV3/Logits/Conv2d_1c_1x1/weights logits kernel - head
"""


def _name_cases():
    for line in NAME_TABLE_CASES.strip().splitlines():
        family, tf_name, layer, weight, block, kind = line.split()
        yield family, tf_name, layer, weight, None if block == "-" else int(block), kind


@pytest.mark.parametrize("family, tf_name, layer, weight, block, kind", list(_name_cases()))
def test_name_table_both_directions(family, tf_name, layer, weight, block, kind):
    t = keras_target(family, tf_name)
    assert (t.layer, t.weight, t.block, t.kind) == (layer, weight, block, kind)
    assert t.leaf == tf_name.rsplit("/", 1)[-1]
    assert tf_name_for(family, layer, weight) == tf_name


@pytest.mark.parametrize("tf_name", [
    "MobilenetV2/expanded_conv_3/depthwise/weights",  # depthwise kernels are depthwise_weights
    "MobilenetV2/expanded_conv_3/project/depthwise_weights",
    "MobilenetV2/Conv/biases",  # convs have BN, not biases
    "MobilenetV2/Logits/Conv2d_1c_1x1/BatchNorm/gamma",
    "MobilenetV2/expanded_conv_0/project/weights",  # block 0 is spelled expanded_conv
    "MobilenetV2/expanded_conv_3/squeeze/weights",
    "MobilenetV2/Conv/weights/ExponentialMovingAverage",  # shadows are not model variables
    "MobilenetV1/Conv/weights",
    "global_step",
])
def test_keras_layer_for_rejects(tf_name):
    assert keras_layer_for(tf_name) is None


@pytest.mark.parametrize("name", [v.name for v in default_manifest()])
def test_name_table_and_keras_agree_with_the_slim_architecture(name):
    """For all 44 variants: the variables the name table derives from the Keras model (names and
    checkpoint shapes) are exactly those of the slim architecture the factory builds from slim's layer
    definitions, which never consult the name table or Keras."""
    variant = resolve(name)
    expected = expected_variables(variant)
    slim = fixtures.model_variables(variant)
    assert {n: e.shape for n, e in expected.items()} == {n: tuple(s) for n, (s, _) in slim.items()}
    for n, e in expected.items():  # and reading the table backwards gives the same Keras weight
        assert tf_name_for(variant.family_key, e.target.layer, e.target.weight) == n


# ------------------------------------------------------------------------------------------------
# classify and choose, on the genuine 1.0_224 variable table (tests/data/genuine: 737 names =
# 158 trainables x {raw, EMA shadow, RMSProp, RMSProp_1} + 52 BN layers x {moving_mean, moving_variance}
# + global_step)

GENUINE = resolve("1.0_224")
MOVING = ("/moving_mean", "/moving_variance")


@pytest.fixture(scope="module")
def genuine_names(reference_dir) -> list[str]:
    """The genuine checkpoint's variable names, from its text table (``name [shape]`` a line)."""
    lines = (reference_dir / "mobilenet_v2_1.0_224.variables.txt").read_text().splitlines()
    return [line.rsplit(" [", 1)[0] for line in lines if line.strip()]


@pytest.fixture(scope="module")
def genuine_expected():
    return expected_variables(GENUINE)


@pytest.mark.genuine
def test_classify_puts_each_genuine_variable_in_one_class(genuine_names, genuine_expected):
    classes = classify(genuine_names, genuine_expected)
    assert len(genuine_names) == 737
    assert (len(classes.model), len(classes.shadows), len(classes.slots), len(classes.global_step)) == \
        (158 + 52 * 2, 158, 158 * 2, 1)
    assert classes.unexpected == () and classes.missing == ()
    placed = [*classes.model, *classes.shadows.values(), *classes.slots, *classes.global_step]
    assert sorted(placed) == sorted(genuine_names)  # no name in two classes, none left out
    assert classes.global_step == ("global_step",)
    assert classes.shadows["MobilenetV2/Conv/weights"] == "MobilenetV2/Conv/weights/ExponentialMovingAverage"
    assert {"MobilenetV2/Conv_1/BatchNorm/beta/RMSProp", "MobilenetV2/Conv_1/BatchNorm/beta/RMSProp_1"} <= \
        set(classes.slots)
    assert "MobilenetV2/Conv/BatchNorm/moving_mean" in classes.model
    assert len([n for n in classes.model if n.endswith(MOVING)]) == 104
    assert not any(n.endswith(MOVING) for n in classes.shadows)  # the release has no shadow of a BN statistic


@pytest.mark.genuine
def test_classify_names_strays_and_absentees(genuine_names, genuine_expected):
    gone = "MobilenetV2/expanded_conv_5/project/weights"
    stray = ["MobilenetV2/expanded_conv_17/project/weights/RMSProp",  # a slot of a variable the model lacks
             "MobilenetV2/Conv/weights/Foo", "MobilenetV2/Conv/weights/ExponentialMovingAverage/RMSProp"]
    slots = ["beta1_power", "MobilenetV2/Logits/Conv2d_1c_1x1/biases/Momentum"]
    classes = classify([n for n in genuine_names if n != gone] + stray + slots, genuine_expected)
    assert classes.missing == (gone,)
    assert classes.unexpected == tuple(stray)
    assert set(slots) <= set(classes.slots) and len(classes.slots) == 316 + 2
    assert classes.shadows[gone] == gone + EMA  # a shadow belongs to the model's variable, present or not


@pytest.mark.genuine
@pytest.mark.parametrize("weights", ["auto", "ema"])
def test_choose_takes_every_genuine_shadow(genuine_names, genuine_expected, weights):
    selection = choose(classify(genuine_names, genuine_expected), genuine_expected, weights, "raw", "genuine.ckpt")
    assert selection.mode == "ema" and selection.missing_shadows == ()
    assert Counter(c.source for c in selection.chosen.values()) == {"ema": 158, "raw": 104}
    assert {c.key for c in selection.chosen.values()} <= set(genuine_names)
    for name, choice in selection.chosen.items():  # the BN statistics, which have no shadow, keep their value
        assert choice == (Choice(name, "raw") if name.endswith(MOVING) else Choice(name + EMA, "ema"))


@pytest.mark.genuine
def test_choose_raw_reads_the_plain_names(genuine_names, genuine_expected):
    selection = choose(classify(genuine_names, genuine_expected), genuine_expected, "raw", "raw", "genuine.ckpt")
    assert selection.mode == "raw" and selection.missing_shadows == ()
    assert len(selection.chosen) == 262 and all(c == Choice(n, "raw") for n, c in selection.chosen.items())


@pytest.mark.genuine
def test_choose_without_shadows(genuine_names, genuine_expected):
    plain = classify([n for n in genuine_names if not n.endswith(EMA)], genuine_expected)
    auto = choose(plain, genuine_expected, "auto", "raw", "genuine.ckpt")
    assert auto.mode == "raw" and Counter(c.source for c in auto.chosen.values()) == {"raw": 262}
    with pytest.raises(WeightSourceError, match=r"--value-source ema needs EMA values, but checkpoint genuine\.ckpt has no"):
        choose(plain, genuine_expected, "ema", "raw", "genuine.ckpt")
    # an EMA checkpoint (V3's ema/) holds EMA values under the plain names
    ema = choose(plain, genuine_expected, "auto", "ema", "model-1")
    assert ema.mode == "ema" and all(c == Choice(n, "ema") for n, c in ema.chosen.items())


@pytest.mark.genuine
def test_choose_refuses_partial_shadows_and_takes_a_statistic_shadow(genuine_names, genuine_expected):
    gone = "MobilenetV2/expanded_conv_9/depthwise/depthwise_weights"
    stat = "MobilenetV2/expanded_conv_4/expand/BatchNorm/moving_mean"
    classes = classify([n for n in genuine_names if n != gone + EMA] + [stat + EMA], genuine_expected)
    auto = choose(classes, genuine_expected, "auto", "raw", "genuine.ckpt")
    assert auto.missing_shadows == (gone,)
    assert auto.chosen[stat] == Choice(stat + EMA, "ema") and auto.chosen[gone] == Choice(gone, "raw")
    assert choose(classes, genuine_expected, "raw", "raw", "genuine.ckpt").missing_shadows == ()


# ------------------------------------------------------------------------------------------------
# Weight choice and accounting


def test_auto_picks_ema_when_the_checkpoint_has_shadows(ckpt):
    guide = build_layer_guide(ckpt, V)
    reader = tf.train.load_checkpoint(ckpt)
    assert dataclasses.asdict(guide.counts) == {"checkpoint_variables": 737, "consumed": 262, "ignored_slots": 316,
                            "ignored_global_step": 1, "unselected": 158, "by_source": {"ema": 158, "raw": 104},
                            "mode": "ema", "twin_ranges": 0, "outside_scope": 0}
    for r in guide.records:
        stat = r.leaf in ("moving_mean", "moving_variance")
        assert r.source == ("raw" if stat else "ema")
        assert r.key == (r.name if stat else r.name + EMA)
        want = reader.get_tensor(r.name if stat else r.name + EMA)
        a = guide.arrays[r.key]
        assert a.dtype == want.dtype == np.float32 and a.tobytes() == want.tobytes()
        assert r.shape == want.shape and r.size == want.size and r.dtype == "float32"
        if not stat:  # the factory's raw values differ from the shadows: the choice is visible
            assert not np.array_equal(a, reader.get_tensor(r.name))
    assert [(r.layer, r.weight) for r in guide.records][:2] == [("Conv1", "kernel"), ("bn_Conv1", "gamma")]


def test_auto_picks_raw_without_shadows_and_ema_refuses(values, tmp_path):
    prefix = variant_of(values, tmp_path, drop=[n for n in values if n.endswith(EMA)])
    guide = build_layer_guide(prefix, V, "auto")
    reader = tf.train.load_checkpoint(prefix)
    assert guide.counts.by_source == {"raw": 262} and guide.counts.unselected == 0
    assert guide.counts.mode == "raw"
    for r in guide.records:
        assert r.key == r.name and guide.arrays[r.key].tobytes() == reader.get_tensor(r.name).tobytes()
    with pytest.raises(WeightSourceError, match=r"--value-source ema needs EMA values, but checkpoint .* has no /ExponentialMovingAverage shadows"):
        build_layer_guide(prefix, V, "ema")


def test_raw_ignores_shadows_and_ema_matches_auto(ckpt, values):
    raw = build_layer_guide(ckpt, V, "raw")
    assert raw.counts.by_source == {"raw": 262} and raw.counts.unselected == 158
    for r in raw.records:
        assert r.key == r.name and np.array_equal(raw.arrays[r.key], values[r.name])
    ema = build_layer_guide(ckpt, V, "ema")
    auto = build_layer_guide(ckpt, V, "auto")
    assert ema.records == auto.records


def test_bn_statistics_use_their_shadow_when_the_checkpoint_has_one(values, tmp_path):
    stat = "MobilenetV2/expanded_conv_4/expand/BatchNorm/moving_mean"
    shadow = (values[stat] * 0.5).astype(np.float32)
    prefix = variant_of(values, tmp_path, add={stat + EMA: shadow})
    by_name = {r.name: r for r in build_layer_guide(prefix, V).records}
    assert by_name[stat].source == "ema" and by_name[stat].key == stat + EMA
    raw = {r.name: r for r in build_layer_guide(prefix, V, "raw").records}
    assert raw[stat].source == "raw" and raw[stat].key == stat


def test_partial_shadows_are_refused_not_mixed(values, tmp_path):
    gone = "MobilenetV2/expanded_conv_9/depthwise/depthwise_weights" + EMA
    prefix = variant_of(values, tmp_path, drop=[gone])
    with pytest.raises(CheckpointMismatchError, match="without /ExponentialMovingAverage shadow") as exc:
        build_layer_guide(prefix, V)
    assert exc.value.missing_shadows == [gone[: -len(EMA)]]
    assert build_layer_guide(prefix, V, "raw").counts.unselected == 157


def test_shuffled_order_converts_identically(ckpt, values, tmp_path):
    order = list(values)
    random.Random(7).shuffle(order)
    shuffled = variant_of(values, tmp_path, name="shuffled", order=order)
    data = ".data-00000-of-00001"
    assert Path(shuffled + data).read_bytes() != Path(ckpt + data).read_bytes()  # the layout really differs
    a, b = build_layer_guide(ckpt, V), build_layer_guide(shuffled, V)
    assert a.records == b.records and a.counts == b.counts
    assert all(a.arrays[k].tobytes() == b.arrays[k].tobytes() for k in a.arrays)


def test_missing_variables_are_all_named(values, tmp_path):
    gone = ["MobilenetV2/expanded_conv_7/project/BatchNorm/moving_variance", "MobilenetV2/Conv_1/weights"]
    prefix = variant_of(values, tmp_path, drop=gone)
    with pytest.raises(CheckpointMismatchError) as exc:
        build_layer_guide(prefix, V)
    assert exc.value.missing == sorted(gone)
    assert "2 missing variable(s)" in str(exc.value) and all(n in str(exc.value) for n in gone)


def test_unexpected_variables_are_named_but_optimizer_state_is_ignored(values, tmp_path):
    extra = "MobilenetV2/expanded_conv_17/project/weights"
    slots = {"MobilenetV2/Conv/weights/Momentum": values["MobilenetV2/Conv/weights"],
             "beta1_power": np.float32(0.9)}
    prefix = variant_of(values, tmp_path, name="slots", add=slots)
    assert build_layer_guide(prefix, V).counts.ignored_slots == 318
    orphan = extra + "/RMSProp"  # a slot of a variable the model does not have is not optimizer state
    prefix = variant_of(values, tmp_path, add={**slots, extra: np.zeros((1, 1, 8, 8), np.float32),
                                               orphan: np.zeros((1, 1, 8, 8), np.float32),
                                               "MobilenetV2/Conv/weights/Foo": values["MobilenetV2/Conv/weights"]})
    with pytest.raises(CheckpointMismatchError) as exc:
        build_layer_guide(prefix, V)
    assert exc.value.unexpected == ["MobilenetV2/Conv/weights/Foo", extra, orphan]
    assert extra in str(exc.value) and not exc.value.missing


def test_wrong_shape_is_named_with_both_shapes(values, tmp_path):
    name = "MobilenetV2/Conv_1/weights"
    bad = np.zeros((1, 1, 120, 1280), np.float32)
    prefix = variant_of(values, tmp_path, add={name: bad, name + EMA: bad})
    with pytest.raises(CheckpointMismatchError) as exc:
        build_layer_guide(prefix, V)
    good = list(values[name].shape)
    assert [n for n, *_ in exc.value.wrong_shape] == [name, name + EMA]
    assert f"{name} is [1, 1, 120, 1280], expected {good}" in str(exc.value)


def test_wrong_variant_is_a_mismatch(ckpt):
    with pytest.raises(CheckpointMismatchError, match=r"does not match MobileNetV2 1\.0_224 \(many shapes differ: "
                                                      r"is this the checkpoint of another variant\? 1\.0_224 is mobilenet_v2_1\.0_224\).*wrong shape"):
        build_layer_guide(ckpt, resolve("1.0_224"))


def test_missing_checkpoint_is_a_clear_file_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no TF checkpoint at prefix .*nothing\.ckpt\.index does not exist"):
        build_layer_guide(tmp_path / "nothing.ckpt", V)


# ------------------------------------------------------------------------------------------------
# Guide files


def test_guide_round_trip(ckpt, tmp_path):
    guide = build_layer_guide(ckpt + ".index", V)  # a suffixed prefix is accepted
    path = save_layer_guide(guide, tmp_path / "g")
    assert sorted(p.name for p in path.parent.iterdir()) == ["layer_guide.p", "weights.npz"]
    back = load_layer_guide(path.parent)
    assert back.records == guide.records and back.counts == guide.counts and back.variant == SMALL
    assert all(back.arrays[k].tobytes() == guide.arrays[k].tobytes() for k in guide.arrays)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_tampered_guide_is_refused_without_running_its_payload(ckpt, tmp_path):
    path = save_layer_guide(build_layer_guide(ckpt, V), tmp_path / "g")
    marker = tmp_path / "pwned"
    with open(path, "rb") as f:
        doc = pickle.load(f)
    doc["records"][0]["layer"] = _Payload(marker)
    evil = pickle.dumps(doc)
    pickle.loads(evil)  # the payload is live: plain pickle runs it
    assert marker.read_text() == "pwned"
    marker.unlink()
    path.write_bytes(evil)
    with pytest.raises(LayerGuideError, match=r"refusing to load .*refers to builtins\.exec.*nothing in it was executed"):
        load_layer_guide(path)
    assert not marker.exists()


def test_tampered_arrays_and_garbage_are_refused(ckpt, tmp_path):
    path = save_layer_guide(build_layer_guide(ckpt, V), tmp_path / "g")
    npz = path.parent / "weights.npz"
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    key = "MobilenetV2/Conv_1/BatchNorm/moving_mean"
    arrays[key] = arrays[key] + np.float32(1)
    np.savez(npz, **arrays)
    with pytest.raises(LayerGuideError, match=f"array {key} does not match its record"):
        load_layer_guide(path)
    with zipfile.ZipFile(npz, "w") as z:  # an object array needs pickle: np.load(allow_pickle=False) refuses
        buf = __import__("io").BytesIO()
        np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
        z.writestr(key + ".npy", buf.getvalue())
    with pytest.raises(LayerGuideError, match="not a valid weights archive"):
        load_layer_guide(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(LayerGuideError, match="is not a valid layer guide: cannot unpickle"):
        load_layer_guide(path)
    path.write_bytes(pickle.dumps({"format": "something else"}))
    with pytest.raises(LayerGuideError, match="missing format marker"):
        load_layer_guide(path)


# ------------------------------------------------------------------------------------------------
# extract() and the CLI


@pytest.fixture(scope="module")
def archive() -> Path:
    return fixtures.cached_archive(SMALL)


def test_extract_from_archive_records_its_sha256(archive, tmp_path):
    from convert.fsutil import sha256_file

    path = extract(V, archive=archive, out_dir=tmp_path)
    assert path == tmp_path / SMALL / "layer_guide.p"
    guide = load_layer_guide(path)
    assert guide.provenance.archive_sha256 == sha256_file(archive)
    assert guide.provenance.archive == str(archive.resolve())
    assert (guide.provenance.checkpoint, guide.provenance.checkpoint_role) == ("mobilenet_v2_0.35_96.ckpt", "combined")
    reader = tf.train.load_checkpoint(fixtures.cached_checkpoint(SMALL))
    for r in guide.records:
        assert guide.arrays[r.key].tobytes() == reader.get_tensor(r.key).tobytes()


def _cli(argv, capsys):
    import extract_weights

    return run_main(extract_weights.main, argv, capsys)


def test_cli_extracts_and_reports(archive, tmp_path, capsys):
    code, out, err = _cli([SMALL, "--archive", str(archive), "--value-source", "raw", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert ("262 weights (262 raw) from the combined checkpoint mobilenet_v2_0.35_96.ckpt; ignored 316 optimizer "
            "slot(s), 1 global_step, 158 unselected") in out
    assert load_layer_guide(tmp_path / SMALL).value_source == "raw"


@pytest.mark.parametrize("argv, message", [
    (["9.9_224", "--checkpoint", "x"], "error: unknown variant '9.9_224'"),
    ([SMALL, "--checkpoint", "/nonexistent/m.ckpt"], "error: no TF checkpoint at prefix '/nonexistent/m.ckpt'"),
    (["1.0_224", "--archive", "ARCHIVE"], "error: cannot use archive"),
])
def test_cli_errors_are_one_line_and_non_zero(argv, message, archive, tmp_path, capsys):
    argv = [str(archive) if a == "ARCHIVE" else a for a in argv] + ["--out", str(tmp_path)]
    code, out, err = _cli(argv, capsys)
    assert code == 2 and err.startswith(message), err
    assert not (tmp_path / "1.0_224").exists()


def test_extract_without_source_uses_the_download_cache(archive, tmp_path, monkeypatch, capsys):
    import shutil

    from convert import download
    from convert.fsutil import sha256_file

    monkeypatch.setenv(download.LOCK_ENV, str(tmp_path / "lock.json"))  # never touch the repo's lock file
    cached = download.archive_path(tmp_path / "cache", resolve(SMALL))
    cached.parent.mkdir(parents=True)
    shutil.copyfile(archive, cached)
    # the factory archive cannot match the genuine pin: without --ignore-pins the cached file is refused
    # (quarantined, naming the pin) and a fresh download is attempted, which fails offline
    monkeypatch.setattr(download.fetcher, "sources", lambda v, mirror=None: [
        download.Source("file:///nonexistent/" + v.archive_filename, frozenset({v.sha256}), v.size)])
    with pytest.raises(ConversionError, match="no usable archive of 0.35_96"):
        extract(V, out_dir=tmp_path / "work", cache_dir=tmp_path / "cache")
    assert f"but the manifest pin says {V.sha256}" in capsys.readouterr().err
    assert not cached.exists() and len(list((tmp_path / "cache" / "quarantine").iterdir())) == 1
    shutil.copyfile(archive, cached)  # the mismatching file was quarantined; put it back
    guide = load_layer_guide(extract(V, out_dir=tmp_path / "work", cache_dir=tmp_path / "cache", ignore_pins=True))
    assert guide.provenance.archive_sha256 == sha256_file(archive)
    assert guide.provenance.archive == str(cached.resolve()) and guide.provenance.pin == V.sha256
    assert guide.provenance.pin_status == "differs"
    assert guide.counts.by_source == {"ema": 158, "raw": 104}
    assert json.loads((tmp_path / "cache" / "checksums.lock.json").read_text())[cached.name]["sha256"] == sha256_file(archive)


def test_truncated_data_file_is_a_clear_error(ckpt, tmp_path):
    import shutil

    prefix = tmp_path / "cut.ckpt"
    shutil.copyfile(ckpt + ".index", str(prefix) + ".index")
    data = Path(ckpt + ".data-00000-of-00001").read_bytes()
    Path(str(prefix) + ".data-00000-of-00001").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match=rf"cannot read .* from checkpoint {prefix}: .*truncated or corrupt"):
        build_layer_guide(prefix, V)


# ------------------------------------------------------------------------------------------------
# Every family: the same discipline on a small variant of V1 and V3 (V2 above)

FAMILY_SMALL = {"v1": "mobilenet_v1_0.25_128", "v3": "v3-small-minimalistic_224_1.0_float"}


@pytest.fixture(scope="module", params=sorted(FAMILY_SMALL))
def family_ckpt(request, tmp_path_factory):
    """(variant, values, prefix) of a hand-written checkpoint holding the family's full factory table
    (V3: its pristine checkpoint, raw values + shadows + slots)."""
    variant = resolve(FAMILY_SMALL[request.param])
    role = "pristine" if request.param == "v3" else None
    values = fixtures.checkpoint_values(variant, seed=0, role=role)
    prefix = write_checkpoint(tmp_path_factory.mktemp(request.param) / "full.ckpt", values)
    return variant, values, prefix


def test_family_ema_choice_reads_every_shadow(family_ckpt):
    variant, values, prefix = family_ckpt
    guide = build_layer_guide(prefix, variant)
    expected = expected_variables(variant)
    assert [r.name for r in guide.records] == list(expected)
    for r in guide.records:  # every model variable of these checkpoints has a shadow, BN statistics included
        assert r.key == r.name + EMA and r.source == "ema"
        assert guide.arrays[r.key].tobytes() == values[r.name + EMA].tobytes()
        assert not np.array_equal(guide.arrays[r.key], values[r.name])  # the raw value differs
    n = len(expected)
    assert guide.counts.by_source == {"ema": n} and guide.counts.unselected == n
    raw = build_layer_guide(prefix, variant, "raw")
    assert all(raw.arrays[r.key].tobytes() == values[r.name].tobytes() and r.source == "raw" for r in raw.records)


def test_family_shuffled_order_converts_identically(family_ckpt, tmp_path):
    variant, values, prefix = family_ckpt
    order = list(values)
    random.Random(3).shuffle(order)
    shuffled = variant_of(values, tmp_path, name="shuffled", order=order)
    a, b = build_layer_guide(prefix, variant), build_layer_guide(shuffled, variant)
    assert a.records == b.records and a.counts == b.counts
    assert all(a.arrays[k].tobytes() == b.arrays[k].tobytes() for k in a.arrays)


def test_family_missing_extra_and_wrong_shape_are_all_named(family_ckpt, tmp_path):
    variant, values, prefix = family_ckpt
    names = list(expected_variables(variant))
    gone = [names[5], names[-1]]  # a BN variable and the logits bias
    kernel = next(n for n in names if n.endswith("/weights") and "Logits" not in n)
    bad = np.zeros((1, 1, 3, 5), np.float32)
    extra = f"{variant.family.scope}/Conv2d_99/weights"
    ckpt = variant_of(values, tmp_path, drop=gone + [g + EMA for g in gone],
                      add={kernel: bad, kernel + EMA: bad, extra: bad, extra + "/RMSProp": bad})
    with pytest.raises(CheckpointMismatchError) as exc:
        build_layer_guide(ckpt, variant)
    assert exc.value.missing == sorted(gone)
    assert exc.value.unexpected == sorted([extra, extra + "/RMSProp"])
    assert [n for n, *_ in exc.value.wrong_shape] == [kernel, kernel + EMA]
    assert variant.family.title in str(exc.value) and all(g in str(exc.value) for g in gone)


def test_v3_ema_checkpoint_is_preferred_and_named(tmp_path):
    variant = resolve(FAMILY_SMALL["v3"])
    guide = load_layer_guide(extract(variant, archive=fixtures.cached_archive(variant.name), out_dir=tmp_path))
    assert guide.provenance.checkpoint == f"{variant.stem}/ema/model-{variant.step}"
    assert guide.provenance.checkpoint_role == "ema" and guide.counts.mode == "ema"
    ema = tf.train.load_checkpoint(fixtures.cached_checkpoint(variant.name, role="ema"))
    pristine = tf.train.load_checkpoint(fixtures.cached_checkpoint(variant.name, role="pristine"))
    for r in guide.records:  # plain names of the ema/ checkpoint = the pristine checkpoint's shadows
        assert r.key == r.name and r.source == "ema"
        assert guide.arrays[r.key].tobytes() == ema.get_tensor(r.name).tobytes()
        assert guide.arrays[r.key].tobytes() == pristine.get_tensor(r.name + EMA).tobytes()
    raw = load_layer_guide(extract(variant, archive=fixtures.cached_archive(variant.name), out_dir=tmp_path / "raw",
                                   value_source="raw"))
    assert raw.provenance.checkpoint == f"{variant.stem}/pristine/model.ckpt-{variant.step}"
    assert raw.counts.by_source == {"raw": len(raw.records)}
    with pytest.raises(WeightSourceError, match="--value-source raw needs the training values"):
        build_layer_guide(fixtures.cached_checkpoint(variant.name, role="ema"), variant, "raw")
