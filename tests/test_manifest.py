"""Manifest contents, validation messages, name resolution and the models_to_load.py CLI."""
from __future__ import annotations

import copy
import re
import json
import subprocess
import sys

import pytest

import models_to_load
from convert.env import PROJECT_ROOT
from convert.manifest import ManifestError, UnknownVariantError, default_manifest, parse_manifest

ALPHAS = ("1.4", "1.3", "1.0", "0.75", "0.5", "0.35")

DOC = json.loads((PROJECT_ROOT / "manifests" / "mobilenet_v2.json").read_text())  # the V2 manifest


def test_manifests_hold_the_85_official_variants():
    m = default_manifest()
    keys = ("v1", "v2", "v3", "v1-quant", "v2-quant", "v3-quant")
    assert len(m) == 85 and [len([v for v in m if v.family_key == f]) for f in keys] == [16, 22, 6, 16, 22, 3]
    v1 = m.resolve("mobilenet_v1_0.5_160")
    assert v1.url == "http://download.tensorflow.org/models/mobilenet_v1_2018_08_02/mobilenet_v1_0.5_160.tgz"
    assert [a.url for a in v1.alternatives] == [
        "http://download.tensorflow.org/models/mobilenet_v1_2018_02_22/mobilenet_v1_0.5_160.tgz"]
    assert (v1.keras_weights, v1.keras_weights_no_top) == ("mobilenet_5_0_160_tf.h5", "mobilenet_5_0_160_tf_no_top.h5")
    v3 = m.resolve("v3-large-minimalistic_224_1.0_float.tgz")
    assert (v3.kind, v3.minimalistic, v3.step, v3.sha256) == ("large", True, 342500, None)
    assert v3.keras_weights_no_top == "weights_mobilenet_v3_large_minimalistic_224_1.0_float_no_top_v2.h5"
    assert m.resolve("v3-small_224_0.75_float").step == 497500


def test_manifest_has_the_22_official_v2_variants_with_their_published_facts():
    m = default_manifest().select(["v2"])
    assert len(m) == 22
    assert {v.alpha for v in m} == set(ALPHAS)
    assert [v.name for v in m if v.rows != 224] == [f"{a}_{r}" for a in ("1.0", "0.75", "0.5", "0.35")
                                                    for r in (192, 160, 128, 96)]
    m = default_manifest()
    v = m.resolve("1.0_224")
    assert (v.macs_m, v.params_m, v.top1, v.top5, v.pixel1_latency_ms) == (300, 3.47, 71.8, 91.0, 73.8)
    assert v.url == "https://storage.googleapis.com/mobilenet_v2/checkpoints/mobilenet_v2_1.0_224.tgz"
    assert m.resolve("0.35_96").quantized_url.endswith("/quantized_v2_96_35.tgz")
    assert m.resolve("1.4_224").keras_weights_no_top == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_224_no_top.h5"


@pytest.mark.parametrize("name", ["1.0_224", "mobilenet_v2_1.0_224", "mobilenet_v2_1.0_224.tgz"])
def test_names_resolve_in_both_spellings(name):
    assert default_manifest().resolve(name).name == "1.0_224"


def test_unknown_name_suggests_the_closest_valid_names():
    with pytest.raises(UnknownVariantError, match=r"unknown variant '1\.0_225'.*closest: 1\.0_224"):
        default_manifest().resolve("1.0_225")


def _bad(mutate):
    doc = copy.deepcopy(DOC)
    mutate(doc)
    with pytest.raises(ManifestError) as info:
        parse_manifest(doc)
    return str(info.value)


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["variants"][2].update(colour="red"), r"variants\[2\] \(1\.0_224\): unknown key\(s\) \['colour'\]"),
    (lambda d: d["variants"].append(copy.deepcopy(d["variants"][0])), r"variants\[22\] \(1\.4_224\): duplicate variant"),
    (lambda d: d.update(family="v4"), r"top-level field 'family' is 'v4'; valid: v1, v2, v3, v1-quant, v2-quant, v3-quant"),
    (lambda d: d["variants"][0].update(alpha="1.2"), r"variants\[0\] \(1\.2_224\): field 'alpha' is '1\.2'; valid alphas"),
    (lambda d: d["variants"][3].update(rows=200), r"variants\[3\] \(1\.0_200\): field 'rows' is 200; valid rows"),
    (lambda d: d["variants"][1].update(url="storage/mobilenet_v2_1.3_224.tgz"), r"variants\[1\] \(1\.3_224\): field 'url' is not"),
    (lambda d: d["variants"][1].update(url="https://x/mobilenet_v2_1.4_224.tgz"), r"field 'url' must end in 'mobilenet_v2_1\.3_224\.tgz'"),
    (lambda d: d["variants"][4].update(sha256="abc"), r"variants\[4\] \(1\.0_160\): field 'sha256' must be 64"),
    (lambda d: d["variants"][5].pop("top1"), r"variants\[5\] \(1\.0_128\): missing field 'top1'"),
    (lambda d: d["variants"][6].update(macs_m="56"), r"variants\[6\] \(1\.0_96\): field 'macs_m' must be int"),
    (lambda d: d["variants"][2].update(quantized_url=d["variants"][2]["url"]),
     r"variants\[2\] \(1\.0_224\): field 'quantized_url' must end in 'quantized_v2_224_100\.tgz'"),
    (lambda d: d.update(colour="red"), r"unknown top-level key\(s\) \['colour'\]"),
    (lambda d: d.update(classes="x"), r"top-level field 'classes' must be int"),
])
def test_validation_names_the_entry_and_the_field(mutate, expected):
    assert re.search(expected, _bad(mutate))


def test_models_to_load_filters_and_json():
    assert [v.name for v in models_to_load.models_to_load(alpha="0.5", family="v2")] == [
        f"0.5_{r}" for r in (224, 192, 160, 128, 96)]
    assert [v.name for v in models_to_load.models_to_load(rows=224, family="v2")] == [f"{a}_224" for a in ALPHAS]
    assert len(models_to_load.models_to_load(rows=224)) == 4 + 6 + 6 + 4 + 6 + 3  # float, then quantized families


def _run(*args):
    return subprocess.run([sys.executable, "models_to_load.py", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)


def test_models_to_load_cli_json_table_and_errors():
    out = _run("--json", "--rows", "96", "--family", "v2")
    assert out.returncode == 0
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == ["1.0_96", "0.75_96", "0.5_96", "0.35_96"]
    assert {"name", "alpha", "rows", "url"} <= set(rows[0])
    table = _run("--alpha", "1.4")
    assert table.returncode == 0 and "1.4_224" in table.stdout and "1.0_224" not in table.stdout
    bad = _run("--alpha", "0.3", "--family", "v2")
    assert bad.returncode == 2 and "valid: 1.4, 1.3, 1.0, 0.75, 0.5, 0.35" in bad.stderr and "Traceback" not in bad.stderr
    bad = _run("--family", "v4")
    assert bad.returncode == 2 and "--family 'v4' is not a family; valid: v1, v2, v3" in bad.stderr


def test_family_selectors_cover_the_quantized_families_and_unknown_names_get_close_matches():
    m = default_manifest()
    assert len(m.select(["all"])) == 85
    assert [len(m.select([key])) for key in ("v1-quant", "v2-quant", "v3-quant")] == [16, 22, 3]
    assert {v.family_key for v in m.select(["v2-quant", "v3"])} == {"v2-quant", "v3"}
    with pytest.raises(UnknownVariantError, match=r"unknown variant 'v2-qaunt'; closest: v2-quant"):
        m.select(["v2-qaunt"])
    with pytest.raises(UnknownVariantError, match=r"closest: quantized_v2_224_140"):
        m.select(["quantized_v2_224_14"])


V1_DOC = json.loads((PROJECT_ROOT / "manifests" / "mobilenet_v1.json").read_text())


@pytest.mark.parametrize("alternative, message", [
    ({"url": "http://example.org/other_name.tgz"}, "must be an http(s)/file URL of the same file name"),
    ({"url": "http://example.org/mobilenet_v1_1.0_224.tgz", "sha256": "ABC"}, "'sha256' must be 64 lowercase hex"),
    ({"url": "http://example.org/mobilenet_v1_1.0_224.tgz", "size": 0}, "'size' must be a positive byte count"),
    ({"sha256": None}, "keys must be 'url' (required)"),
    ("http://example.org/mobilenet_v1_1.0_224.tgz", "expected an object"),
])
def test_alternatives_are_validated(alternative, message):
    doc = copy.deepcopy(V1_DOC)
    doc["variants"][0]["alternatives"] = [alternative]
    with pytest.raises(ManifestError, match=r"variants\[0\].*alternatives\[0\].*" + re.escape(message)):
        parse_manifest(doc)


def test_alternatives_are_typed_records_tried_after_the_primary():
    v = parse_manifest(copy.deepcopy(V1_DOC)).resolve("mobilenet_v1_1.0_224")
    assert v.urls[0] == (v.url, v.sha256, v.size)
    assert [type(a).__name__ for a in v.alternatives] == ["Alternative"]
    assert v.urls[1] == (v.alternatives[0].url, v.alternatives[0].sha256, v.alternatives[0].size)
    assert "2018_02_22" in v.urls[1][0] and "2018_08_02" in v.urls[0][0]
