"""The archive factory against reality: the genuine 1.0_224 variable table and eval graph."""
from __future__ import annotations

import tarfile

import numpy as np
import pytest
import tensorflow as tf

from convert import fixtures, parity
from convert.manifest import default_manifest, resolve

ALL = default_manifest().names


def _table(prefix: str) -> dict[str, tuple[tuple[int, ...], str]]:
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    return {k: (tuple(s), dtypes[k].name) for k, s in reader.get_variable_to_shape_map().items()}


def test_1_0_224_variable_table_equals_the_genuine_index(reference_dir):
    genuine = _table(str(reference_dir / "mobilenet_v2_1.0_224.ckpt"))
    built = _table(fixtures.cached_checkpoint("1.0_224"))
    assert len(genuine) == 737
    assert sorted(set(genuine) ^ set(built)) == []
    assert {k: v for k, v in built.items() if genuine[k] != v} == {}


def test_genuine_variable_list_text_matches_the_factory_table(reference_dir):
    lines = (reference_dir / "mobilenet_v2_1.0_224.variables.txt").read_text().split("\n")
    genuine = {}
    for line in filter(None, lines):
        name, shape = line.split(" [", 1)
        genuine[name] = tuple(int(d) for d in shape.rstrip("]").split(",") if d.strip())
    expected = {k: shape for k, (shape, _) in fixtures.checkpoint_variables(resolve("1.0_224")).items()}
    assert genuine == expected


@pytest.mark.parametrize("name", ALL)
def test_conv_and_logits_parameters_match_the_published_count(name):
    variant = resolve(name)
    params = sum(int(np.prod(shape)) for var, (shape, _) in fixtures.model_variables(variant).items()
                 if "/BatchNorm/" not in var)
    assert abs(params / 1e6 - variant.params_m) <= 0.01, (name, params)


def test_archive_members_follow_the_official_layout(small_archive):
    with tarfile.open(small_archive) as tar:
        names = sorted(tar.getnames())
        assert all(m.isfile() for m in tar.getmembers())
    model = "mobilenet_v2_0.35_96"
    assert names == sorted(f"./{model}{s}" for s in fixtures.MEMBER_SUFFIXES)


def test_small_checkpoint_holds_exactly_the_official_variable_set(small_archive):
    variant = resolve("0.35_96")
    built = _table(fixtures.cached_checkpoint("0.35_96"))
    expected = {k: (shape, dtype) for k, (shape, dtype) in fixtures.checkpoint_variables(variant).items()}
    assert built == expected
    reader = tf.train.load_checkpoint(fixtures.cached_checkpoint("0.35_96"))
    gamma = reader.get_tensor("MobilenetV2/Conv/BatchNorm/gamma")
    assert np.all(reader.get_tensor("MobilenetV2/Conv/BatchNorm/moving_variance") > 0)
    assert 0.7 < float(gamma.mean()) < 1.3
    ema = reader.get_tensor("MobilenetV2/Conv/weights/ExponentialMovingAverage")
    raw = reader.get_tensor("MobilenetV2/Conv/weights")
    assert np.abs(ema - raw).max() > 0.01 * np.abs(ema).max()


@pytest.fixture(scope="module")
def parity_1_0_224(reference_dir):
    """Logits of the genuine eval graph fed the factory's EMA values, and of the factory frozen graph."""
    folder = fixtures.cached_dir("1.0_224")
    model = "mobilenet_v2_1.0_224"
    prefix = fixtures.cached_checkpoint("1.0_224")
    images = parity.random_inputs(224, count=4, seed=1)
    genuine = parity.load_graph_def(reference_dir / f"{model}_eval.pbtxt")
    feeds = parity.checkpoint_feeds(genuine, prefix)
    return {
        "genuine": parity.run_graph(genuine, images, feeds.slim),
        "frozen": parity.run_graph(parity.load_graph_def(folder / model / f"{model}_frozen.pb"), images),
        "genuine_graph": genuine, "sources": feeds.sources, "images": images, "prefix": prefix,
    }


def test_genuine_eval_graph_and_factory_frozen_graph_agree(parity_1_0_224):
    genuine, frozen = parity_1_0_224["genuine"], parity_1_0_224["frozen"]
    assert genuine.shape == frozen.shape == (4, 1001)
    assert np.abs(genuine - frozen).max() <= parity.logit_tolerance(genuine)
    assert np.array_equal(genuine.argmax(1), frozen.argmax(1))
    sources = parity_1_0_224["sources"]
    assert len(sources) == 262
    assert sum(s == "ema" for s in sources.values()) == 158


def test_raw_weights_visibly_change_the_genuine_graph_logits(parity_1_0_224):
    """The EMA shadows differ enough that a converter reading raw values would fail parity."""
    genuine_graph, prefix = parity_1_0_224["genuine_graph"], parity_1_0_224["prefix"]
    reader = tf.train.load_checkpoint(prefix)
    raw_feeds = {f"{v}/read:0": reader.get_tensor(v) for v in parity.read_variables(genuine_graph)}
    raw = parity.run_graph(genuine_graph, parity_1_0_224["images"], raw_feeds)
    ema = parity_1_0_224["genuine"]
    assert np.abs(raw - ema).max() > 100 * parity.logit_tolerance(ema)


def test_factory_eval_graph_has_the_genuine_inference_nodes(reference_dir):
    """Every op on the genuine inference path exists in the factory graph with the same name and type."""
    model = "mobilenet_v2_1.0_224"
    genuine = parity.load_graph_def(reference_dir / f"{model}_eval.pbtxt")
    built = parity.load_graph_def(fixtures.cached_dir("1.0_224") / model / f"{model}_eval.pbtxt")
    path_ops = {"Placeholder", "Conv2D", "DepthwiseConv2dNative", "FusedBatchNorm", "Relu6", "Add", "AvgPool",
                "BiasAdd", "Squeeze", "Softmax", "Reshape", "Shape", "Identity", "VariableV2"}
    ops = lambda g: {(n.name, n.op) for n in g.node if n.op in path_ops and "Initializer" not in n.name}
    assert sorted(ops(genuine) - ops(built)) == []
    assert parity.read_variables(genuine) == parity.read_variables(built)


def test_factory_cli_builds_and_rejects_bad_names(tmp_path, monkeypatch):
    import subprocess
    import sys

    from convert.manifest import PROJECT_ROOT

    bad = subprocess.run([sys.executable, "-m", "convert.fixtures", "0.35_97", "--out", str(tmp_path)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown variant '0.35_97'; closest: 0.35_96" in bad.stderr
    assert "Traceback" not in bad.stderr and not list(tmp_path.iterdir())
    monkeypatch.setenv("MOBILENET_FIXTURES", str(tmp_path / "cache"))
    assert fixtures.cache_root() == tmp_path / "cache"


def test_builds_are_byte_reproducible(small_archive, tmp_path):
    """Same (variant, seed) -> the same archive bytes; another seed -> other values."""
    from convert.fsutil import sha256_file

    again = fixtures.build_archive("0.35_96", tmp_path / "a", seed=0)
    assert sha256_file(again) == sha256_file(small_archive)
    other = fixtures.build_archive("0.35_96", tmp_path / "b", seed=1)
    assert sha256_file(other) != sha256_file(small_archive)
