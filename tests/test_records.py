"""Typed records and their writers: one writer per output, each file written once per variant.

The write counts come from ``os.replace``, the last step of every atomic write in the project (the
metadata and results through ``convert.fsutil.atomic_write_bytes``, the .h5 files through
``keras_weights.write_legacy_h5``): each call is recorded with the module that asked for it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from convert import pipeline, report
from convert.factory import fixtures
from convert.env import PROJECT_ROOT
from convert.manifest import resolve
from convert.records import LEGACY_KEYS, ConversionFacts, ParityRecord, RewriteFigures, RunRow
from convert.factory.serve import serve_directory
from convert.guide import load_layer_guide

from conftest import REFERENCE_DIR  # noqa: E402
from test_quant import genuine_counts  # noqa: E402  (reads a .tflite's quantized tensors by kind)

NAME = "0.35_96"
_PLUMBING = {"convert.fsutil", "os", "contextlib", __name__}  # contextlib: fsutil.replacing is a context manager


def test_importing_the_pipeline_does_not_import_tensorflow():
    """An up-to-date run settles its variants without TF: importing the pipeline (and the scripts) must
    not import it."""
    code = ("import sys, convert.pipeline, convert.records, convert.report, convert.cards\n"
            "heavy = sorted(m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules)\n"
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _writer() -> str:
    """The module that asked for the write being made (the first frame outside the plumbing)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__") in _PLUMBING:
        frame = frame.f_back
    return frame.f_globals.get("__name__") if frame else "?"


@pytest.fixture()
def writes(monkeypatch):
    """Every file moved into place while the test runs: [(destination, writing module)]."""
    seen: list[tuple[Path, str]] = []
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        seen.append((Path(dst).resolve(), _writer()))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return seen


def _under(seen, folder: Path) -> Counter:
    folder = folder.resolve()
    return Counter((p.relative_to(folder).as_posix(), who) for p, who in seen if folder in p.parents)


def test_one_variant_writes_each_output_once(tmp_path, writes):
    v = resolve(NAME)
    stem = Path(v.keras_weights).stem
    with serve_directory(fixtures.publish([NAME], tmp_path / "mirror")) as url:
        opts = pipeline.Options(cache=tmp_path / "cache", work=tmp_path / "work", weights_dir=tmp_path / "weights",
                                results=tmp_path / "results", lock=tmp_path / "lock.json", quiet=True,
                                ignore_pins=True, mirror=url)
        writes.clear()  # the mirror's archive is not the pipeline's
        (row,) = pipeline.run([v], opts)
        assert row.passed and row.stage_status == {"extract": "ran", "write_h5": "ran", "verify": "ran"}
        # the .h5 files by keras_weights; the sidecar, card, SHA256SUMS and the folder's class names by cards:
        # each exactly once
        assert _under(writes, opts.weights_dir) == Counter({
            (v.keras_weights, "convert.keras_weights"): 1, (v.keras_weights_no_top, "convert.keras_weights"): 1,
            (f"{stem}.json", "convert.cards"): 1, (f"{stem}_card.md", "convert.cards"): 1,
            ("SHA256SUMS", "convert.cards"): 1, ("imagenet_labels.txt", "convert.cards"): 1})
        results = _under(writes, opts.results)
        assert {who for _, who in results} == {"convert.report"}
        assert sorted(results.values()) == [1, 1, 1]  # test_results.json, test_results.p, PARITY.md
        sidecar = json.loads((opts.weights_dir / f"{stem}.json").read_text())
        assert sidecar["parity"]["passed"] is True and sidecar["files"].keys() == {v.keras_weights,
                                                                                    v.keras_weights_no_top}

        writes.clear()  # only verify re-runs (new seed): the metadata is written once again, the .h5 not (nor
        # imagenet_labels.txt, which already holds the names)
        opts.seed = 1
        (row,) = pipeline.run([v], opts)
        assert row.stage_status == {"extract": "skipped", "write_h5": "skipped", "verify": "ran"}
        assert _under(writes, opts.weights_dir) == Counter({
            (f"{stem}.json", "convert.cards"): 1, (f"{stem}_card.md", "convert.cards"): 1,
            ("SHA256SUMS", "convert.cards"): 1})

        writes.clear()  # all up to date: nothing in weights/ is touched
        pipeline.run([v], opts)
        assert _under(writes, opts.weights_dir) == Counter()
        assert {who for _, who in _under(writes, opts.results)} == {"convert.report"}


def _facts_json() -> dict:
    """A sidecar's conversion section as written by the converter (keys per the README)."""
    return {"variant": NAME, "family": "v2", "stem": "mobilenet_v2_0.35_96", "alpha": "0.35", "rows": 96,
            "kind": None, "minimalistic": False, "files": {"a.h5": "1" * 64, "a_no_top.h5": "2" * 64},
            "provenance": {"checkpoint": "x.ckpt", "checkpoint_role": "combined", "archive": "/c/a.tgz",
                           "archive_sha256": "3" * 64, "pin": "4" * 64, "url": "http://h/a.tgz",
                           "pin_status": "differs"},
            "weights": {"requested": "auto", "mode": "ema", "by_source": {"ema": 158, "raw": 104}},
            "label_offset": 1, "classes": 1000,
            "counts": {"checkpoint_variables": 900, "consumed": 262, "ignored_slots": 0, "ignored_global_step": 1,
                       "unselected": 158, "by_source": {"ema": 158, "raw": 104}, "mode": "ema", "twin_ranges": 0,
                       "outside_scope": 0},
            "versions": {"keras": "3"}}


def test_conversion_facts_round_trip_and_name_their_source():
    doc = _facts_json()
    facts = ConversionFacts.from_json(doc)
    assert facts.to_json() == doc
    source = facts.source()
    assert (source.location, source.sha256, source.pin_status, source.values) == (
        "http://h/a.tgz", "3" * 64, "differs", "ema 158, raw 104")
    with pytest.raises(ValueError, match="ConversionFacts lacks files"):
        ConversionFacts.from_json({k: v for k, v in doc.items() if k != "files"})


def test_parity_record_json_keeps_the_documented_keys():
    record = ParityRecord(model="m", name=NAME, family="v3", alpha="1.0", rows=224, passed=True, max_abs_dlogit=2e-5,
                          tolerance=1e-3, top1_agree=4, inputs=4, pred_tf_score=0.5, pred_keras_score=0.5,
                          inference_time_tf=0.1, inference_time_keras=0.2,
                          rewrites={"gate_1/6": RewriteFigures("gate", 8, 1e-6, 1e-4, 4, 4, True, 1e-7)})
    doc = record.to_json()
    assert set(LEGACY_KEYS) <= set(doc) and "error" not in doc and "frozen_max_abs_dlogit" not in doc
    assert doc["preds_agree"] is True and doc["max_vector_difference"] == 2e-5
    assert doc["rewrites"]["gate_1/6"]["constants"] == 8
    assert ParityRecord.from_json(json.loads(json.dumps(doc))) == record

    failed = ParityRecord.failure(resolve(NAME), "download: 404", "http://h/a.tgz").to_json()
    # the failure row of the original report: its keys, with no figures
    assert set(failed) == {*LEGACY_KEYS, "name", "family", "passed", "error", "archive_source"}
    assert failed["preds_agree"] is False and failed["max_vector_difference"] is None
    with pytest.raises(ValueError, match="ParityRecord lacks"):
        ParityRecord.from_json({"model": "m"})


def test_run_row_json_has_the_stage_names():
    row = RunRow(NAME, passed=False, error="verify: boom", downloaded=True,
                 stage_status={"extract": "ran", "write_h5": "ran"}, seconds=1.5)
    doc = row.to_json()
    assert doc["write_h5"] == "ran" and "load" not in doc and doc["error"] == "verify: boom"
    assert RunRow.from_json(doc) == row


QUANT = "quantized_v2_96_35"
GENUINE_V2_QUANT = REFERENCE_DIR / "mobilenet_v2_1.0_224_quant.tflite"


def test_one_quantized_variant_writes_each_output_once(tmp_path, writes):
    """A quantized variant adds write_quant's two files; cards still writes its metadata once, and SHA256SUMS
    lists the .keras twin and the .tflite with their sha256 (hashlib over the files written)."""
    import hashlib

    v = resolve(QUANT)
    twin, tflite = f"{v.stem}.keras", f"{v.stem}.tflite"
    with serve_directory(fixtures.publish([QUANT], tmp_path / "mirror")) as url:
        opts = pipeline.Options(cache=tmp_path / "cache", work=tmp_path / "work", weights_dir=tmp_path / "weights",
                                results=tmp_path / "results", lock=tmp_path / "lock.json", quiet=True,
                                ignore_pins=True, mirror=url)
        writes.clear()
        (row,) = pipeline.run([v], opts)
        seen = _under(writes, opts.weights_dir)
        (again,) = pipeline.run([v], opts)  # up to date: every stage skipped
    assert row.passed and row.stage_status == {"extract": "ran", "write_h5": "ran", "write_quant": "ran", "verify": "ran"}
    assert set(again.stage_status.values()) == {"skipped"}, again.stage_status
    assert {(f, who): n for (f, who), n in seen.items() if who == "convert.cards"} == {
        (f"{v.stem}.json", "convert.cards"): 1, (f"{v.stem}_card.md", "convert.cards"): 1,
        ("SHA256SUMS", "convert.cards"): 1, ("imagenet_labels.txt", "convert.cards"): 1,
        (f"{v.stem}_labels.txt", "convert.cards"): 1}  # the .tflite's labels, in the order of its output
    assert {f for f, _ in seen} >= {twin, tflite} and all(n == 1 for n in seen.values())
    sums = {n: d for d, n in (li.split("  ") for li in (opts.weights_dir / "SHA256SUMS").read_text().splitlines())}
    for name in (twin, tflite, v.keras_weights, v.keras_weights_no_top):
        assert sums[name] == hashlib.sha256((opts.weights_dir / name).read_bytes()).hexdigest()
    card = (opts.weights_dir / f"{v.stem}_card.md").read_text()
    assert f"- `{twin}`  sha256 `{sums[twin]}`" in card and f"- `{tflite}`  sha256 `{sums[tflite]}`" in card
    assert "## Parity: three proofs" in card and "float sibling's top-1" in card
    # the results row and PARITY.md's quantized section
    (record,) = report.load_results(opts.results)
    q = record.quant
    assert record.family == "v2-quant" and record.passed and q is not None and q.inputs == opts.random_inputs
    assert q.twin[0].max_steps <= 1.0 and q.tflite.top1_agree == q.inputs
    table = (opts.results / "PARITY.md").read_text()
    assert "## MobileNetV2 (quantization-aware)" in table and f"| {QUANT} | pass |" in table
    # the guide consumed a min and a max per quantizer: as many quantizers as the genuine V2 file quantizes tensors
    guide = load_layer_guide(opts.work / QUANT / "layer_guide.p")
    assert guide.counts.twin_ranges == 2 * sum(genuine_counts(GENUINE_V2_QUANT).values())


def test_a_results_file_this_converter_cannot_read_is_named(tmp_path):
    """A test_results.json of unknown shape stops the report with an error naming the file, not a traceback, and
    is left as it was."""
    from convert import report
    from convert.errors import ConversionError

    bad = tmp_path / report.RESULTS_JSON
    bad.write_text(json.dumps([{"unexpected": 1}]))
    with pytest.raises(ConversionError, match=rf"{bad} is not a results file"):
        report.update_results([], tmp_path)
    assert json.loads(bad.read_text()) == [{"unexpected": 1}]
