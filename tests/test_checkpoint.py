"""Checkpoint -> layer guide: name-based mapping, weight choice, accounting, guide file safety, CLI."""
from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from convert import fixtures  # noqa: E402
from convert.checkpoint import (EMA_SUFFIX, CheckpointMismatchError, ConversionError, LayerGuideError,  # noqa: E402
                                WeightSourceError, build_layer_guide, expected_variables, extract,
                                keras_layer_for, load_layer_guide, save_layer_guide, tf_name_for)
from conftest import run_main  # noqa: E402
from convert.manifest import resolve  # noqa: E402

SMALL = "0.35_96"
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
    return fixtures.checkpoint_values(resolve(SMALL), seed=0)


@pytest.fixture(scope="module")
def ckpt(values, tmp_path_factory) -> str:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "full.ckpt", values)


def variant_of(values, tmp_path, name="m", drop=(), add=None, order=None, **kw):
    vals = {k: v for k, v in values.items() if k not in drop}
    vals.update(add or {})
    return write_checkpoint(tmp_path / f"{name}.ckpt", vals, order)


# ------------------------------------------------------------------------------------------------
# The mapping


def test_expected_set_is_the_genuine_1_0_224_table(reference_dir):
    genuine = reference_dir / "mobilenet_v2_1.0_224.ckpt"
    table = dict((n, tuple(s)) for n, s in tf.train.list_variables(str(genuine)))
    assert len(table) == 737
    model = {n: s for n, s in table.items()
             if n != "global_step" and not n.endswith((EMA, "/RMSProp", "/RMSProp_1"))}
    expected = expected_variables("1.0_224")
    assert len(expected) == len(model) == 262
    assert {n: e.shape for n, e in expected.items()} == model
    # every trainable of the genuine table has a shadow, the BN moving statistics have none
    trainables = {n for n in model if not n.endswith(("moving_mean", "moving_variance"))}
    assert {n[: -len(EMA)] for n in table if n.endswith(EMA)} == trainables


@pytest.mark.parametrize("name", ["1.4_224", "1.3_224", "1.0_224", "0.75_160", "0.5_128", "0.35_96"])
def test_expected_set_matches_the_slim_architecture(name):
    variant = resolve(name)
    expected = expected_variables(variant)
    slim = fixtures.model_variables(variant)
    assert {n: e.shape for n, e in expected.items()} == {n: tuple(s) for n, (s, _) in slim.items()}


@pytest.mark.parametrize("tf_name, layer, weight, block_id, mod", [
    ("MobilenetV2/Conv/weights", "Conv1", "kernel", None, None),
    ("MobilenetV2/Conv/BatchNorm/moving_variance", "bn_Conv1", "moving_variance", None, None),
    ("MobilenetV2/expanded_conv/depthwise/depthwise_weights", "expanded_conv_depthwise", "kernel", 0, "depthwise"),
    ("MobilenetV2/expanded_conv/project/BatchNorm/beta", "expanded_conv_project_BN", "beta", 0, "project"),
    ("MobilenetV2/expanded_conv_1/expand/weights", "block_1_expand", "kernel", 1, "expand"),
    ("MobilenetV2/expanded_conv_16/project/BatchNorm/gamma", "block_16_project_BN", "gamma", 16, "project"),
    ("MobilenetV2/Conv_1/weights", "Conv_1", "kernel", None, None),
    ("MobilenetV2/Conv_1/BatchNorm/moving_mean", "Conv_1_bn", "moving_mean", None, None),
    ("MobilenetV2/Logits/Conv2d_1c_1x1/weights", "predictions", "kernel", None, None),
    ("MobilenetV2/Logits/Conv2d_1c_1x1/biases", "predictions", "bias", None, None),
])
def test_keras_layer_for(tf_name, layer, weight, block_id, mod):
    t = keras_layer_for(tf_name)
    assert (t.layer, t.weight, t.block_id, t.mod) == (layer, weight, block_id, mod)
    assert t.meta == tf_name.rsplit("/", 1)[-1]
    assert tf_name_for(layer, weight) == tf_name


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


def test_mapping_round_trips_for_every_weight():
    for name, e in expected_variables("1.0_224").items():
        assert keras_layer_for(name) == e.target
        assert tf_name_for(e.target.layer, e.target.weight) == name


# ------------------------------------------------------------------------------------------------
# Weight choice and accounting


def test_auto_picks_ema_when_the_checkpoint_has_shadows(ckpt):
    guide = build_layer_guide(ckpt, SMALL)
    reader = tf.train.load_checkpoint(ckpt)
    assert guide.counts == {"checkpoint_variables": 737, "consumed": 262, "ignored_slots": 316,
                            "ignored_global_step": 1, "unselected": 158, "by_source": {"ema": 158, "raw": 104},
                            "mode": "ema"}
    for r in guide.records:
        stat = r["meta"] in ("moving_mean", "moving_variance")
        assert r["source"] == ("raw" if stat else "ema")
        assert r["key"] == (r["name"] if stat else r["name"] + EMA)
        want = reader.get_tensor(r["name"] if stat else r["name"] + EMA)
        a = guide.arrays[r["key"]]
        assert a.dtype == want.dtype == np.float32 and a.tobytes() == want.tobytes()
        assert r["shape"] == want.shape and r["size"] == want.size and r["dtype"] == "float32"
        if not stat:  # the factory's raw values differ from the shadows: the choice is visible
            assert not np.array_equal(a, reader.get_tensor(r["name"]))
    assert [(r["layer"], r["weight"]) for r in guide.records][:2] == [("Conv1", "kernel"), ("bn_Conv1", "gamma")]


def test_auto_picks_raw_without_shadows_and_ema_refuses(values, tmp_path):
    prefix = variant_of(values, tmp_path, drop=[n for n in values if n.endswith(EMA)])
    guide = build_layer_guide(prefix, SMALL, "auto")
    reader = tf.train.load_checkpoint(prefix)
    assert guide.counts["by_source"] == {"raw": 262} and guide.counts["unselected"] == 0
    assert guide.counts["mode"] == "raw"
    for r in guide.records:
        assert r["key"] == r["name"] and guide.arrays[r["key"]].tobytes() == reader.get_tensor(r["name"]).tobytes()
    with pytest.raises(WeightSourceError, match=r"--weights ema needs /ExponentialMovingAverage shadows.*has none"):
        build_layer_guide(prefix, SMALL, "ema")


def test_raw_ignores_shadows_and_ema_matches_auto(ckpt, values):
    raw = build_layer_guide(ckpt, SMALL, "raw")
    assert raw.counts["by_source"] == {"raw": 262} and raw.counts["unselected"] == 158
    for r in raw.records:
        assert r["key"] == r["name"] and np.array_equal(raw.arrays[r["key"]], values[r["name"]])
    ema = build_layer_guide(ckpt, SMALL, "ema")
    auto = build_layer_guide(ckpt, SMALL, "auto")
    assert ema.records == auto.records


def test_bn_statistics_use_their_shadow_when_the_checkpoint_has_one(values, tmp_path):
    stat = "MobilenetV2/expanded_conv_4/expand/BatchNorm/moving_mean"
    shadow = (values[stat] * 0.5).astype(np.float32)
    prefix = variant_of(values, tmp_path, add={stat + EMA: shadow})
    by_name = {r["name"]: r for r in build_layer_guide(prefix, SMALL).records}
    assert by_name[stat]["source"] == "ema" and by_name[stat]["key"] == stat + EMA
    raw = {r["name"]: r for r in build_layer_guide(prefix, SMALL, "raw").records}
    assert raw[stat]["source"] == "raw" and raw[stat]["key"] == stat


def test_partial_shadows_are_refused_not_mixed(values, tmp_path):
    gone = "MobilenetV2/expanded_conv_9/depthwise/depthwise_weights" + EMA
    prefix = variant_of(values, tmp_path, drop=[gone])
    with pytest.raises(CheckpointMismatchError, match="without /ExponentialMovingAverage shadow") as exc:
        build_layer_guide(prefix, SMALL)
    assert exc.value.missing_shadows == [gone[: -len(EMA)]]
    assert build_layer_guide(prefix, SMALL, "raw").counts["unselected"] == 157


def test_shuffled_order_converts_identically(ckpt, values, tmp_path):
    order = list(values)
    random.Random(7).shuffle(order)
    shuffled = variant_of(values, tmp_path, name="shuffled", order=order)
    data = ".data-00000-of-00001"
    assert Path(shuffled + data).read_bytes() != Path(ckpt + data).read_bytes()  # the layout really differs
    a, b = build_layer_guide(ckpt, SMALL), build_layer_guide(shuffled, SMALL)
    assert a.records == b.records and a.counts == b.counts
    assert all(a.arrays[k].tobytes() == b.arrays[k].tobytes() for k in a.arrays)


def test_missing_variables_are_all_named(values, tmp_path):
    gone = ["MobilenetV2/expanded_conv_7/project/BatchNorm/moving_variance", "MobilenetV2/Conv_1/weights"]
    prefix = variant_of(values, tmp_path, drop=gone)
    with pytest.raises(CheckpointMismatchError) as exc:
        build_layer_guide(prefix, SMALL)
    assert exc.value.missing == sorted(gone)
    assert "2 missing variable(s)" in str(exc.value) and all(n in str(exc.value) for n in gone)


def test_unexpected_variables_are_named_but_optimizer_state_is_ignored(values, tmp_path):
    extra = "MobilenetV2/expanded_conv_17/project/weights"
    slots = {"MobilenetV2/Conv/weights/Momentum": values["MobilenetV2/Conv/weights"],
             "beta1_power": np.float32(0.9)}
    prefix = variant_of(values, tmp_path, name="slots", add=slots)
    assert build_layer_guide(prefix, SMALL).counts["ignored_slots"] == 318
    orphan = extra + "/RMSProp"  # a slot of a variable the model does not have is not optimizer state
    prefix = variant_of(values, tmp_path, add={**slots, extra: np.zeros((1, 1, 8, 8), np.float32),
                                               orphan: np.zeros((1, 1, 8, 8), np.float32),
                                               "MobilenetV2/Conv/weights/Foo": values["MobilenetV2/Conv/weights"]})
    with pytest.raises(CheckpointMismatchError) as exc:
        build_layer_guide(prefix, SMALL)
    assert exc.value.unexpected == ["MobilenetV2/Conv/weights/Foo", extra, orphan]
    assert extra in str(exc.value) and not exc.value.missing


def test_wrong_shape_is_named_with_both_shapes(values, tmp_path):
    name = "MobilenetV2/Conv_1/weights"
    bad = np.zeros((1, 1, 120, 1280), np.float32)
    prefix = variant_of(values, tmp_path, add={name: bad, name + EMA: bad})
    with pytest.raises(CheckpointMismatchError) as exc:
        build_layer_guide(prefix, SMALL)
    good = list(values[name].shape)
    assert [n for n, *_ in exc.value.wrong_shape] == [name, name + EMA]
    assert f"{name} is [1, 1, 120, 1280], expected {good}" in str(exc.value)


def test_wrong_variant_is_a_mismatch(ckpt):
    with pytest.raises(CheckpointMismatchError, match=r"does not match MobileNetV2 1\.0_224 \(many shapes differ: "
                                                      r"is this the checkpoint of another alpha\?.*wrong shape"):
        build_layer_guide(ckpt, "1.0_224")


def test_missing_checkpoint_is_a_clear_file_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no TF checkpoint at prefix .*nothing\.ckpt\.index does not exist"):
        build_layer_guide(tmp_path / "nothing.ckpt", SMALL)


# ------------------------------------------------------------------------------------------------
# Guide files


def test_guide_round_trip(ckpt, tmp_path):
    guide = build_layer_guide(ckpt + ".index", SMALL)  # a suffixed prefix is accepted
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
    path = save_layer_guide(build_layer_guide(ckpt, SMALL), tmp_path / "g")
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
    path = save_layer_guide(build_layer_guide(ckpt, SMALL), tmp_path / "g")
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

    path = extract(SMALL, archive=archive, out_dir=tmp_path)
    assert path == tmp_path / SMALL / "layer_guide.p"
    guide = load_layer_guide(path)
    assert guide.source_archive_sha256 == sha256_file(archive)
    assert guide.checkpoint.endswith(":mobilenet_v2_0.35_96.ckpt")
    reader = tf.train.load_checkpoint(fixtures.cached_checkpoint(SMALL))
    for r in guide.records:
        assert guide.arrays[r["key"]].tobytes() == reader.get_tensor(r["key"]).tobytes()


def _cli(argv, capsys):
    import extract_weights

    return run_main(extract_weights.main, argv, capsys)


def test_cli_extracts_and_reports(archive, tmp_path, capsys):
    code, out, err = _cli([SMALL, "--archive", str(archive), "--weights", "raw", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "262 weights (262 raw); ignored 316 optimizer slot(s), 1 global_step, 158 unselected" in out
    assert load_layer_guide(tmp_path / SMALL).weights == "raw"


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


def test_extract_without_source_uses_the_download_cache(archive, tmp_path, monkeypatch):
    import shutil

    from convert import download
    from convert.fsutil import sha256_file

    monkeypatch.setenv(download.LOCK_ENV, str(tmp_path / "lock.json"))  # never touch the repo's lock file
    cached = download.archive_path(tmp_path / "cache", resolve(SMALL))
    cached.parent.mkdir(parents=True)
    shutil.copyfile(archive, cached)
    guide = load_layer_guide(extract(SMALL, out_dir=tmp_path / "work", cache_dir=tmp_path / "cache"))
    assert guide.source_archive_sha256 == sha256_file(archive)
    assert guide.checkpoint == f"{cached.resolve()}:mobilenet_v2_0.35_96.ckpt"
    assert guide.counts["by_source"] == {"ema": 158, "raw": 104}


def test_truncated_data_file_is_a_clear_error(ckpt, tmp_path):
    import shutil

    prefix = tmp_path / "cut.ckpt"
    shutil.copyfile(ckpt + ".index", str(prefix) + ".index")
    data = Path(ckpt + ".data-00000-of-00001").read_bytes()
    Path(str(prefix) + ".data-00000-of-00001").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match=rf"cannot read .* from checkpoint {prefix}: .*truncated or corrupt"):
        build_layer_guide(prefix, SMALL)
