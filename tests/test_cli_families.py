"""The three single-stage scripts for V1 and V3 (V2: test_checkpoint, test_keras_weights, test_pipeline):
extract_weights.py -> load_weights.py -> verify.py on a factory archive, as a user runs them."""
from __future__ import annotations

import gzip
import json

import pytest

from conftest import run_main
from convert.factory import fixtures
from convert.manifest import resolve


@pytest.mark.parametrize("name", ["mobilenet_v1_0.25_128", "v3-small-minimalistic_224_1.0_float"])
def test_extract_load_verify_scripts(name, tmp_path, capsys):
    import extract_weights
    import load_weights
    import verify

    v = resolve(name)
    archive = fixtures.cached_archive(name)
    work, weights, results = tmp_path / "work", tmp_path / "weights", tmp_path / "results"
    code, out, err = run_main(extract_weights.main, [v.stem + ".tgz", "--archive", str(archive), "--out", str(work)],
                              capsys)
    assert code == 0, err
    role = "ema" if v.family_key == "v3" else "combined"
    assert f"from the {role} checkpoint" in out and "(0 raw)" not in out
    code, out, err = run_main(load_weights.main, [name, "--guide", str(work / name / "layer_guide.p"),
                                                  "--out", str(weights)], capsys)
    assert code == 0, err
    assert (weights / v.keras_weights).is_file() and (weights / v.keras_weights_no_top).is_file()
    code, out, err = run_main(verify.main, [name, "--archive", str(archive), "--weights-dir", str(weights),
                                            "--results", str(results), "--random-inputs", "2"], capsys)
    assert code == 0, err + out
    assert out.startswith(f"{name}: PASS")
    [record] = json.loads((results / "test_results.json").read_text())
    assert record["family"] == v.family_key and record["passed"] is True and record["inputs"] == 2
    assert record["archive_pin"] == ("no pin" if v.sha256 is None else "differs")
    if v.family_key == "v3":
        assert "gate_1/6: max|dlogit|" in out and record["reference"] == "ckpt_meta"
    else:
        assert record["reference"] == "eval_pbtxt" and record["rewrites"] == {}
    md = (results / "PARITY.md").read_text()
    assert f"## {v.family.title}" in md and f"| {name} | pass |" in md


def test_extract_load_verify_scripts_for_a_quantized_variant(tmp_path, capsys):
    """load_weights.py writes a quantized variant's twin and .tflite too (from the archive the guide was made
    from), so the three scripts alone convert and prove it; without any archive it names what it tried and
    writes nothing."""
    import extract_weights
    import load_weights
    import verify

    name = "mobilenet_v1_0.25_128_quant"
    v = resolve(name)
    archive = tmp_path / f"{v.stem}.tgz"
    archive.write_bytes(fixtures.cached_archive(name).read_bytes())
    work, weights, results, empty = tmp_path / "work", tmp_path / "weights", tmp_path / "results", tmp_path / "none"
    code, out, err = run_main(extract_weights.main, [name, "--archive", str(archive), "--out", str(work)], capsys)
    assert code == 0, err
    guide = str(work / name / "layer_guide.p")
    # no --archive, an empty cache: the archive named by the guide's provenance
    code, out, err = run_main(load_weights.main, [name, "--guide", guide, "--out", str(weights), "--cache", str(empty)],
                              capsys)
    assert code == 0, err
    outputs = [v.keras_weights, v.keras_weights_no_top, f"{v.stem}.keras", f"{v.stem}.tflite"]
    sums = (weights / "SHA256SUMS").read_text()
    for file in outputs:
        assert (weights / file).stat().st_size > 0 and f"{weights / file}" in out and f"  {file}\n" in sums
    code, out, err = run_main(verify.main, [name, "--archive", str(archive), "--weights-dir", str(weights),
                                            "--results", str(results), "--random-inputs", "2"], capsys)
    assert code == 0, err + out
    [record] = json.loads((results / "test_results.json").read_text())
    assert record["family"] == "v1-quant" and record["passed"] is True and record["quant"]["tflite"]["top1_agree"] == 2
    # another archive file of the variant (the same members, recompressed: other bytes): refused before anything
    # is written, since the twin's ranges must come from the archive the guide's weights came from
    other_archive = tmp_path / "other-bytes" / f"{v.stem}.tgz"
    other_archive.parent.mkdir()
    other_archive.write_bytes(gzip.compress(gzip.decompress(archive.read_bytes()), compresslevel=1, mtime=0))
    mixed = tmp_path / "mixed"
    code, out, err = run_main(load_weights.main, [name, "--guide", guide, "--out", str(mixed), "--archive",
                                                  str(other_archive)], capsys)
    assert code != 0 and "is not the one required" in err and str(other_archive) in err and not mixed.exists()
    # the archive gone and none in the cache: a clear error, nothing written
    archive.unlink()
    other = tmp_path / "other"
    code, out, err = run_main(load_weights.main, [name, "--guide", guide, "--out", str(other), "--cache", str(empty)],
                              capsys)
    assert code != 0 and f"no archive of {name}" in err and "--archive" in err
    assert not other.exists()
