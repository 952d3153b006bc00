"""The archive factory against reality: the genuine 1.0_224 variable table and eval graph."""
from __future__ import annotations

import tarfile

import numpy as np
import pytest
import tensorflow as tf

from convert import parity
from convert.factory import fixtures
from convert.manifest import default_manifest, resolve

ALL = default_manifest().names
LOGITS = "MobilenetV2/Logits/output:0"
pytestmark = pytest.mark.genuine  # most of this file holds the factory against the genuine artifacts


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


@pytest.mark.parametrize("name", [n for n in ALL if not n.startswith("v3-small")])
def test_parameters_match_the_published_count(name):
    """Conv + logits parameters of the factory architecture against the slim README tables. V1's published
    figures also count 3 values per BatchNorm channel; V3-small's published figures do not follow from the
    architecture (keras.applications agrees with slim's layer shapes), so only the large models are held to them."""
    variant = resolve(name)
    variables = fixtures.model_variables(variant)
    params = sum(int(np.prod(shape)) for var, (shape, _) in variables.items() if "/BatchNorm/" not in var)
    if variant.family_key == "v1":
        params += 3 * sum(shape[0] for var, (shape, _) in variables.items() if var.endswith("/BatchNorm/gamma"))
    assert abs(params / 1e6 - variant.params_m) <= (0.1 if variant.family_key == "v3" else 0.01), (name, params)


@pytest.mark.parametrize("name", ["v3-large_224_0.75_float", "v3-small_224_0.75_float"])
def test_v3_alpha_0_75_keeps_the_last_conv_unscaled(name):
    """slim's finegrain_classification_mode: Conv_2 keeps 1280 (large) / 1024 (small) channels."""
    variant = resolve(name)
    shapes = {n: shape for n, (shape, _) in fixtures.model_variables(variant).items()}
    width = 1280 if variant.kind == "large" else 1024
    conv_1 = 720 if variant.kind == "large" else 432  # 960 * 0.75, 576 * 0.75
    assert shapes["MobilenetV3/Conv_2/weights"] == (1, 1, conv_1, width)
    assert shapes["MobilenetV3/Logits/Conv2d_1c_1x1/weights"] == (1, 1, width, 1001)


def test_archive_members_follow_the_official_layout(small_archive):
    with tarfile.open(small_archive) as tar:
        names = sorted(tar.getnames())
        assert all(m.isfile() for m in tar.getmembers())
    model = "mobilenet_v2_0.35_96"
    assert names == sorted(f"./{model}{s}" for s in (".ckpt.data-00000-of-00001", ".ckpt.index", ".ckpt.meta",
                                                      "_frozen.pb", "_eval.pbtxt", "_info.txt"))


def test_v3_archive_is_one_folder_with_ema_and_pristine_checkpoints():
    variant = resolve("v3-small-minimalistic_224_1.0_float")
    stem, step = variant.stem, variant.step
    with tarfile.open(fixtures.cached_archive(variant.name)) as tar:
        files = sorted(m.name for m in tar.getmembers() if m.isfile())
    ckpt = (".index", ".data-00000-of-00001", ".meta")
    assert files == sorted([f"{stem}/ema/model-{step}{s}" for s in ckpt]
                           + [f"{stem}/pristine/model.ckpt-{step}{s}" for s in ckpt] + [f"{stem}/{stem}.pb"])


def test_small_checkpoint_holds_exactly_the_official_variable_set(small_archive, reference_dir):
    """The 0.35_96 checkpoint has the genuine 1.0_224 release's variable names (names do not depend on
    alpha or rows), dtypes, and the shapes the Keras architecture implies (not the factory's own table)."""
    from convert.mapping import expected_variables

    genuine = _table(str(reference_dir / "mobilenet_v2_1.0_224.ckpt"))
    built = _table(fixtures.cached_checkpoint("0.35_96"))
    assert sorted(built) == sorted(genuine)
    assert {k: d for k, (_, d) in built.items()} == {k: d for k, (_, d) in genuine.items()}
    keras_shapes = {n: e.shape for n, e in expected_variables(resolve("0.35_96")).items()}
    for name, (shape, _) in built.items():
        base = name.rsplit("/", 1)[0] if name.endswith(("/ExponentialMovingAverage", "/RMSProp", "/RMSProp_1")) else name
        assert shape == (() if name == "global_step" else keras_shapes[base]), name
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
    folder = fixtures.cached_extracted("1.0_224")
    model = "mobilenet_v2_1.0_224"
    prefix = fixtures.cached_checkpoint("1.0_224")
    images = parity.random_inputs(224, count=4, seed=1)
    genuine = parity.load_graph_def(reference_dir / f"{model}_eval.pbtxt")
    feeds = parity.checkpoint_feeds(genuine, prefix)
    return {
        "genuine": parity.run_graph(genuine, images, feeds.slim, LOGITS),
        "frozen": parity.run_graph(parity.load_graph_def(folder / f"{model}_frozen.pb"), images, None, LOGITS),
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
    raw = parity.run_graph(genuine_graph, parity_1_0_224["images"], raw_feeds, LOGITS)
    ema = parity_1_0_224["genuine"]
    assert np.abs(raw - ema).max() > 100 * parity.logit_tolerance(ema)


def test_factory_eval_graph_has_the_genuine_inference_nodes(reference_dir):
    """Every op on the genuine inference path exists in the factory graph with the same name and type."""
    model = "mobilenet_v2_1.0_224"
    genuine = parity.load_graph_def(reference_dir / f"{model}_eval.pbtxt")
    built = parity.load_graph_def(fixtures.cached_extracted("1.0_224") / f"{model}_eval.pbtxt")
    path_ops = {"Placeholder", "Conv2D", "DepthwiseConv2dNative", "FusedBatchNorm", "Relu6", "Add", "AvgPool",
                "BiasAdd", "Squeeze", "Softmax", "Reshape", "Shape", "Identity", "VariableV2"}
    ops = lambda g: {(n.name, n.op) for n in g.node if n.op in path_ops and "Initializer" not in n.name}
    assert sorted(ops(genuine) - ops(built)) == []
    assert parity.read_variables(genuine) == parity.read_variables(built)


def test_factory_cli_rejects_a_bad_name_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    from convert.env import PROJECT_ROOT

    bad = subprocess.run([sys.executable, "-m", "convert.factory", "0.35_97", "--out", str(tmp_path)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown variant '0.35_97'; closest: 0.35_96" in bad.stderr
    assert "Traceback" not in bad.stderr and not list(tmp_path.iterdir())


def test_every_family_has_a_graph_builder_and_a_recipe_per_checkpoint():
    """The factory's registry covers the families' registry, and each builder a recipe for every
    checkpoint role of its family's layout."""
    from convert.factory.graphs import FACTORIES
    from convert.families import FAMILIES

    assert sorted(FACTORIES) == sorted(FAMILIES)
    for key, fam in FAMILIES.items():
        assert sorted(FACTORIES[key].checkpoints) == sorted(cf.role for cf in fam.layout.checkpoints), key


def test_builds_are_byte_reproducible(small_archive, tmp_path):
    """Same (variant, seed) -> the same archive bytes; another seed -> other values, every one of them."""
    from convert.fsutil import sha256_file

    again = fixtures.build_archive("0.35_96", tmp_path / "a", seed=0)
    assert sha256_file(again) == sha256_file(small_archive)
    v = resolve("0.35_96")
    seed0, seed1 = fixtures.checkpoint_values(v, seed=0), fixtures.checkpoint_values(v, seed=1)
    assert seed0.keys() == seed1.keys()
    assert all(not np.array_equal(seed0[k], seed1[k]) for k in seed0), "every value depends on the seed"


def test_text_graph_parser_equals_protobufs_text_format(reference_dir):
    """parity's C++ text parse (tf.io.decode_proto) gives exactly what google.protobuf.text_format
    gives, on the genuine 2018 eval graph and on the factory's; bad text is an error naming the file."""
    from google.protobuf import text_format

    for path in (reference_dir / "mobilenet_v2_1.0_224_eval.pbtxt",
                 fixtures.cached_extracted("mobilenet_v1_0.25_128") / "mobilenet_v1_0.25_128_eval.pbtxt"):
        expected = text_format.Parse(path.read_text(), tf.compat.v1.GraphDef())
        parsed = parity.load_graph_def(path)
        assert len(parsed.node) > 100 and parsed.versions.producer > 0
        assert parsed.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    with pytest.raises(ValueError, match=r"cannot parse broken\.pbtxt as a text GraphDef: 4:1"):
        parity.parse_text_graph_def(b'node {\n  name: "a"\n  op: \n', "broken.pbtxt")


# ---------------------------------------------------------------------------------- quantization-aware archives
QUANT_SMALLEST = ("mobilenet_v1_0.25_128_quant", "quantized_v2_96_35", "v3-small_224_1.0_uint8")


def test_quant_archive_members_follow_the_release_layouts():
    """The issue's layouts: V1 flat `{stem}.ckpt.*`, `.tflite`, `_eval.pbtxt`, `_frozen.pb`, `_info.txt`;
    V2 one folder `v2_{rows}_{alpha·100}/` with `model.ckpt-STEP.*`, `model.tflite` and the frozen graph;
    V3 `{stem}/pristine/model.ckpt-STEP.*`, `{stem}/{stem}.pb`, `{stem}/{stem}.tflite`."""
    ckpt = (".data-00000-of-00001", ".index", ".meta")
    files = {}
    for name in QUANT_SMALLEST:
        with tarfile.open(fixtures.cached_archive(name)) as tar:
            files[name] = sorted(m.name for m in tar.getmembers() if m.isfile())
    v1 = "mobilenet_v1_0.25_128_quant"
    assert files[v1] == sorted([f"./{v1}.ckpt{s}" for s in ckpt]
                               + [f"./{v1}{s}" for s in (".tflite", "_eval.pbtxt", "_frozen.pb", "_info.txt")])
    (step,) = {m.split("model.ckpt-")[1].split(".")[0] for m in files["quantized_v2_96_35"] if "model.ckpt-" in m}
    assert step.isdigit() and files["quantized_v2_96_35"] == sorted(
        [f"v2_96_35/model.ckpt-{step}{s}" for s in ckpt] + ["v2_96_35/model.tflite", "v2_96_35/frozen_graph.pb"])
    v3 = "v3-small_224_1.0_uint8"
    assert files[v3] == sorted([f"{v3}/pristine/model.ckpt-{step}{s}" for s in ckpt]
                               + [f"{v3}/{v3}.pb", f"{v3}/{v3}.tflite"])


def test_quant_checkpoint_tables_are_the_float_siblings_plus_ranges():
    """A QAT checkpoint holds its float sibling's model variables (same architecture), two scalar range
    variables per quantizer and, V1 `_quant`, nothing else (no EMA shadows, no optimizer slots: the issue's
    data-file size argument); V2 quantized keeps a training checkpoint's shadows and slots."""
    def split(table):
        ranges = {n for n in table if n.endswith(("_quant/min", "_quant/max"))}
        model = {n for n in table if "/ExponentialMovingAverage" not in n and "/RMSProp" not in n} - ranges
        return model - {"global_step"}, ranges, set(table) - model - ranges - {"global_step"}

    quant_v1, ranges, extra = split(fixtures.checkpoint_variables(resolve("mobilenet_v1_0.25_128_quant")))
    float_v1, _, _ = split(fixtures.checkpoint_variables(resolve("mobilenet_v1_0.25_128")))
    assert quant_v1 == float_v1 and not extra
    # Google's V1 quant .tflite: 28 convs (27 + logits), each with a weight quantizer and a quantized output
    assert len(ranges) == 2 * (28 + 28)
    assert all(fixtures.checkpoint_variables(resolve("mobilenet_v1_0.25_128_quant"))[n] == ((), "float32")
               for n in ranges)
    quant_v2, ranges_v2, extra_v2 = split(fixtures.checkpoint_variables(resolve("quantized_v2_96_35")))
    assert quant_v2 == split(fixtures.checkpoint_variables(resolve("0.35_96")))[0]
    # Google's V2 quant .tflite: 53 weight quantizers + 63 quantized activations (tests/test_factory_quant.py)
    assert len(ranges_v2) == 2 * 116
    assert {n.rsplit("/", 1)[0] for n in extra_v2} <= quant_v2 and any("ExponentialMovingAverage" in n for n in extra_v2)


def test_quant_builds_are_byte_reproducible(tmp_path):
    """A QAT archive (graph, calibration, checkpoint, frozen graph, .tflite) rebuilds to the same bytes."""
    from convert.fsutil import sha256_file

    name = "mobilenet_v1_0.25_128_quant"
    assert sha256_file(fixtures.build_archive(name, tmp_path)) == sha256_file(fixtures.cached_archive(name))
