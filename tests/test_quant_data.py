"""The quantization-aware families as data: names, manifests, pins, layout discovery, member checks, and
the checkpoint accounting of quantization range variables. Expected values are typed from the issue and
the catalogue (tensorflow/models), not derived from the code under test."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from convert import archive
from convert.checkpoint import CheckpointMismatchError, build_layer_guide, classify
from convert.download import DownloadError, verify_members
from convert.env import PROJECT_ROOT
from convert.errors import ConversionError
from convert.families import FAMILIES
from convert.manifest import default_manifest, resolve

QUANT_TSV = Path(__file__).parent / "data" / "genuine" / "quant_archives.tsv"
QUANT_KEYS = ("v1-quant", "v2-quant", "v3-quant")


# ----------------------------------------------------------------------------- families and names

@pytest.mark.parametrize("name, float_key, constructor, keras_call_part", [
    ("mobilenet_v1_0.25_128_quant", "v1", "MobileNet", "alpha=0.25"),
    ("quantized_v2_224_100", "v2", "MobileNetV2", "alpha=1.0"),
    ("quantized_v2_96_35", "v2", "MobileNetV2", "alpha=0.35"),
    ("v3-small_224_1.0_uint8", "v3", "MobileNetV3Small", "minimalistic=False"),
    ("v3-large-minimalistic_224_1.0_uint8", "v3", "MobileNetV3Large", "minimalistic=True"),
])
def test_a_quant_variant_is_named_by_its_stem_and_reuses_its_float_sibling(name, float_key, constructor, keras_call_part):
    v = resolve(name)
    fam = v.family
    assert (v.name, v.stem, v.archive_filename) == (name, name, f"{name}.tgz")
    assert fam.quantized and fam.float_family == float_key and not FAMILIES[float_key].quantized
    sibling = FAMILIES[float_key]
    assert (fam.names, fam.nodes, fam.keras_app, fam.scope) == (sibling.names, sibling.nodes, sibling.keras_app, sibling.scope)
    assert (v.keras_weights, v.keras_weights_no_top) == (f"{name}.h5", f"{name}_no_top.h5")
    assert fam.keras_files(v) == (f"{name}.h5", f"{name}_no_top.h5")
    assert (fam.twin_file(v), fam.tflite_file(v)) == (f"{name}.keras", f"{name}.tflite")
    assert fam.keras_constructor(v) == constructor
    assert keras_call_part in fam.keras_call(v) and f'weights="{name}.h5"' in fam.keras_call(v)


def test_float_families_have_no_twin_or_tflite_file():
    v = resolve("1.0_224")
    assert not v.family.quantized and v.family.float_family is None
    assert (v.family.twin_file(v), v.family.tflite_file(v)) == (None, None)


def test_family_module_names_map_underscore_to_dash():
    from convert.families import module_key

    assert [module_key(m) for m in ("v1", "v2_quant", "v3_quant")] == ["v1", "v2-quant", "v3-quant"]
    assert list(FAMILIES) == ["v1", "v2", "v3", "v1-quant", "v2-quant", "v3-quant"]


# ----------------------------------------------------------------------------- manifests

def test_the_quant_manifests_hold_the_41_archives_of_the_catalogue():
    m = default_manifest()
    by_family = {key: [v for v in m if v.family_key == key] for key in QUANT_KEYS}
    assert [len(by_family[k]) for k in QUANT_KEYS] == [16, 22, 3]
    assert {v.url.rsplit("/", 1)[0] for v in by_family["v1-quant"]} == {
        "http://download.tensorflow.org/models/mobilenet_v1_2018_08_02"}
    assert {v.url.rsplit("/", 1)[0] for v in by_family["v2-quant"]} == {
        "https://storage.googleapis.com/mobilenet_v2/checkpoints"}
    assert [v.url for v in by_family["v3-quant"]] == [
        f"https://storage.googleapis.com/mobilenet_v3/checkpoints/v3-{k}_224_1.0_uint8.tgz"
        for k in ("large", "small", "large-minimalistic")]
    # V2: the stems are the float manifest's linked quantized_url file names, one per float variant
    assert sorted(v.url for v in by_family["v2-quant"]) == sorted(v.quantized_url for v in m if v.family_key == "v2")


def test_published_figures_are_the_catalogues_and_v2_keeps_only_the_float_siblings():
    # research/slim/nets/mobilenet_v1.md: MobileNet_v1_1.0_224_quant 569 MACs, 4.24 M, 69.7 / 89.5
    v = resolve("mobilenet_v1_1.0_224_quant")
    assert (v.macs_m, v.params_m, v.top1, v.top5) == (569, 4.24, 69.7, 89.5)
    assert (resolve("mobilenet_v1_0.25_128_quant").top1, resolve("mobilenet_v1_0.25_128_quant").top5) == (39.9, 65.8)
    # research/slim/nets/mobilenet/README.md, uint8 rows
    assert [resolve(f"v3-{k}_224_1.0_uint8").top1 for k in ("large", "small", "large-minimalistic")] == [73.9, 64.9, 71.3]
    for v in default_manifest().select(["v2-quant"]):
        assert v.top1 is None and v.top5 is None, f"{v.name}: no quantized top-1 is published"
    # the catalogue's mobilenet_v2_1.0_224 row: 71.8 (float), given only as the float sibling's figure
    assert resolve("quantized_v2_224_100").float_sibling_top1 == 71.8
    assert resolve("quantized_v2_224_100").to_dict()["float_sibling_top1"] == 71.8


def test_the_403_archive_is_kept_and_marked_unavailable():
    v = resolve("quantized_v2_224_130")
    assert v.url == "https://storage.googleapis.com/mobilenet_v2/checkpoints/quantized_v2_224_130.tgz"
    assert "403" in v.unavailable and "tensorflow/models#8861" in v.unavailable
    assert [x.name for x in default_manifest() if x.unavailable] == ["quantized_v2_224_130"]


def test_every_v1_quant_archive_is_pinned_as_the_vendored_list_says():
    lines = [line.split("\t") for line in QUANT_TSV.read_text().splitlines() if not line.startswith("#")]
    vendored = {row[1]: row[3] for row in lines}
    assert len(vendored) == 16 and all(len(sha) == 64 for sha in vendored.values())
    assert {v.archive_filename: v.sha256 for v in default_manifest().select(["v1-quant"])} == vendored
    # the issue quotes TensorFlow's workspace.bzl pin of the 1.0_224 one
    assert vendored["mobilenet_v1_1.0_224_quant.tgz"] == "d32432d28673a936b2d6281ab0600c71cf7226dfe4cdcef3012555f691744166"
    assert resolve("v3-large-minimalistic_224_1.0_uint8").sha256 is None  # no public pin: none invented


def test_nullable_figures_are_refused_where_the_family_requires_them():
    from convert.manifest import ManifestError, parse_manifest

    doc = json.loads((PROJECT_ROOT / "manifests" / "mobilenet_v3_quant.json").read_text())
    doc["variants"][0]["top1"] = None
    with pytest.raises(ManifestError, match=r"field 'top1' must be int or float, got None"):
        parse_manifest(doc)
    doc = json.loads((PROJECT_ROOT / "manifests" / "mobilenet_v2_quant.json").read_text())
    del doc["variants"][0]["float_sibling_top1"]
    with pytest.raises(ManifestError, match="missing field 'float_sibling_top1'"):
        parse_manifest(doc)
    doc["variants"][0]["float_sibling_top1"] = 75.0
    doc["variants"][0]["unavailable"] = " "
    with pytest.raises(ManifestError, match="field 'unavailable' must give the reason"):
        parse_manifest(doc)


# ----------------------------------------------------------------------------- layouts: discovery by suffix

def touch(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


DATA = ".data-00000-of-00001"
LAYOUTS = {  # the layouts, with a step the family does not know
    "mobilenet_v1_0.25_128_quant": ("mobilenet_v1_0.25_128_quant.ckpt", "mobilenet_v1_0.25_128_quant_eval.pbtxt",
                                    "mobilenet_v1_0.25_128_quant_frozen.pb", "mobilenet_v1_0.25_128_quant.tflite",
                                    ("mobilenet_v1_0.25_128_quant_info.txt", "mobilenet_v1_0.25_128_quant.ckpt.meta")),
    "quantized_v2_96_35": ("v2_96_35/model.ckpt-123456", "v2_96_35/model.ckpt-123456.meta",
                           "v2_96_35/frozen_graph.pb", "v2_96_35/model.tflite", ()),
    "v3-small_224_1.0_uint8": ("v3-small_224_1.0_uint8/pristine/model.ckpt-388500",
                               "v3-small_224_1.0_uint8/pristine/model.ckpt-388500.meta",
                               "v3-small_224_1.0_uint8/v3-small_224_1.0_uint8.pb",
                               "v3-small_224_1.0_uint8/v3-small_224_1.0_uint8.tflite", ()),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_members_are_discovered_by_suffix(name, tmp_path):
    v = resolve(name)
    prefix, graph, frozen, tflite, extra = LAYOUTS[name]
    root = touch(tmp_path, prefix + ".index", prefix + DATA, graph, frozen, tflite, *extra)
    found, cf = archive.find_checkpoint(root, v)
    assert found == root / prefix and cf.plain_values == "raw"
    assert archive.reference_graph(root, v) == root / graph
    assert archive.frozen_graph(root, v) == root / frozen
    assert archive.tflite_file(root, v) == root / tflite


def test_an_ambiguous_checkpoint_is_an_error_listing_the_members(tmp_path):
    v = resolve("quantized_v2_96_35")
    root = touch(tmp_path, *(f"v2_96_35/model.ckpt-{s}{x}" for s in (100, 200) for x in (".index", DATA)),
                 "v2_96_35/model.tflite")
    with pytest.raises(archive.LayoutError) as info:
        archive.find_checkpoint(root, v)
    text = str(info.value)
    assert "ambiguous" in text and "v2_96_35/model.ckpt-100.index" in text and "v2_96_35/model.ckpt-200.index" in text
    assert "the archive holds: " in text and "v2_96_35/model.tflite" in text


@pytest.mark.parametrize("what", ["checkpoint", "tflite", "frozen"])
def test_a_missing_member_is_an_error_listing_the_members(tmp_path, what):
    v = resolve("mobilenet_v1_0.25_128_quant")
    prefix, graph, frozen, tflite, _ = LAYOUTS[v.name]
    keep = {"checkpoint": (graph, frozen, tflite), "tflite": (prefix + ".index", prefix + DATA, frozen),
            "frozen": (prefix + ".index", prefix + DATA, tflite)}[what]
    root = touch(tmp_path, *keep)
    call = {"checkpoint": archive.find_checkpoint, "tflite": archive.tflite_file, "frozen": archive.frozen_graph}[what]
    with pytest.raises(archive.LayoutError) as info:
        call(root, v)
    assert all(member in str(info.value) for member in keep), str(info.value)


def test_a_float_family_has_no_tflite_member_to_discover(tmp_path):
    with pytest.raises(archive.LayoutError, match="names no .tflite"):
        archive.tflite_file(tmp_path, resolve("1.0_224"))


def tar_members(*names: str) -> list[tarfile.TarInfo]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        return tar.getmembers()


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_the_download_member_check_accepts_the_quant_layouts(name):
    prefix, graph, frozen, tflite, extra = LAYOUTS[name]
    names = ["./" + n for n in (prefix + ".index", prefix + DATA, graph, frozen, tflite, *extra)]
    assert verify_members(tar_members(*names), resolve(name), "a.tgz") == [n[2:] for n in names]


def test_the_download_member_check_refuses_a_quant_archive_without_its_checkpoint():
    with pytest.raises(DownloadError) as info:
        verify_members(tar_members("v2_96_35/model.ckpt-1.index", "v2_96_35/model.tflite", "elsewhere/m.ckpt-1" + DATA),
                       resolve("quantized_v2_96_35"), "quantized_v2_96_35.tgz")
    assert "lacks the checkpoint" in str(info.value) and "v2_96_35/model.tflite" in str(info.value)


# ----------------------------------------------------------------------------- checkpoint accounting of ranges

RANGES = ("MobilenetV2/Conv/weights_quant/min", "MobilenetV2/Conv/weights_quant/max",
          "MobilenetV2/Conv/act_quant/min", "MobilenetV2/Conv/act_quant/max")


def test_classify_counts_named_ranges_apart_and_leaves_others_unexpected():
    expected = ["MobilenetV2/Conv/weights"]
    names = [*expected, *RANGES, "global_step"]
    plain = classify(names, expected)
    assert plain.unexpected == RANGES and plain.twin_ranges == ()
    walked = classify(names, expected, twin_ranges=RANGES[:2])
    assert walked.twin_ranges == RANGES[:2] and walked.unexpected == RANGES[2:]
    with pytest.raises(ValueError, match="are model variables"):
        classify(names, expected, twin_ranges=expected)


@pytest.fixture(scope="module")
def quant_checkpoint(tmp_path_factory) -> tuple[str, int]:
    """The factory's 0.35_96 variable table (the quantized sibling has the same model variables) plus four
    range variables, written as a TF1 checkpoint; returns (prefix, number of variables)."""
    import tensorflow as tf
    from convert.factory import fixtures

    values = dict(fixtures.checkpoint_values(resolve("0.35_96"), seed=0))
    values.update({name: np.float32(i - 2) for i, name in enumerate(RANGES)})
    prefix = str(tmp_path_factory.mktemp("qckpt") / "model.ckpt-1")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(values), shape_and_slices=[""] * len(values),
                      tensors=[tf.constant(values[n]) for n in values])
    return prefix, len(values)


def test_a_quant_checkpoint_needs_the_walks_range_names(quant_checkpoint):
    prefix, _ = quant_checkpoint
    with pytest.raises(CheckpointMismatchError) as info:
        build_layer_guide(prefix, resolve("quantized_v2_96_35"))
    assert info.value.unexpected == sorted(RANGES)


def test_the_walks_ranges_are_counted_as_the_twins_and_the_model_variables_feed_the_h5(quant_checkpoint):
    prefix, total = quant_checkpoint
    quant = build_layer_guide(prefix, resolve("quantized_v2_96_35"), twin_ranges=RANGES)
    assert quant.counts.twin_ranges == len(RANGES)
    assert (quant.counts.consumed + quant.counts.ignored_slots + quant.counts.ignored_global_step
            + quant.counts.unselected + quant.counts.twin_ranges) == total
    assert not any(r.key in RANGES for r in quant.records)
    # the same values as the float sibling reading the same variables
    float_guide = build_layer_guide(prefix, resolve("0.35_96"), twin_ranges=RANGES)
    assert [(r.key, r.layer, r.weight, r.sha256) for r in quant.records] == [
        (r.key, r.layer, r.weight, r.sha256) for r in float_guide.records]


def test_a_range_the_walk_names_but_the_checkpoint_lacks_is_an_error(quant_checkpoint):
    prefix, _ = quant_checkpoint
    with pytest.raises(ConversionError, match="lacks 1 quantization range variable.*MobilenetV2/Conv_1/act_quant/min"):
        build_layer_guide(prefix, resolve("quantized_v2_96_35"), twin_ranges=(*RANGES, "MobilenetV2/Conv_1/act_quant/min"))


def test_layout_checkpoints_lists_the_discovered_prefixes(tmp_path):
    v = resolve("v3-small_224_1.0_uint8")
    prefix = LAYOUTS[v.name][0]
    assert archive.layout_checkpoints(touch(tmp_path, prefix + ".index", prefix + DATA), v) == [
        (tmp_path / prefix, v.family.layout.checkpoints[0])]
    assert archive.layout_checkpoints(tmp_path / "empty", v) == []
