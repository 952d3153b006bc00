"""End to end: factory archives on a loopback mirror -> download -> guide -> .h5 -> parity -> report.

Every test writes under its own ``tmp_path``, never into the checkout.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from convert import pipeline, report
from convert.factory import fixtures
from convert.factory.demo import demo_main
from convert.env import PROJECT_ROOT
from convert.manifest import resolve
from convert.factory.serve import serve_directory

from conftest import REFERENCE_DIR, run_main

CI_VARIANTS = ["0.35_96", "1.0_224", "1.4_224", "mobilenet_v1_0.25_128", "v3-large_224_0.75_float"]
PANDA = REFERENCE_DIR / "panda.jpg"


def _mirror(tmp: Path, names: list[str]) -> Path:
    return fixtures.publish(names, tmp / "mirror")


def _options(tmp: Path, **kw) -> pipeline.Options:
    base = dict(cache=tmp / "cache", work=tmp / "work", weights_dir=tmp / "weights", results=tmp / "results",
                lock=tmp / "checksums.lock.json", quiet=True, ignore_pins=True)
    return pipeline.Options(**{**base, **kw})


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """One pipeline run of the CI variants over a loopback HTTP mirror (the vendored panda image plus the seeded
    random inputs), in two worker processes, then a re-run in this process."""
    tmp = tmp_path_factory.mktemp("e2e")
    assert PANDA.is_file(), f"{PANDA} is missing: it is vendored in tests/data/genuine"
    images = [PANDA]
    with serve_directory(_mirror(tmp, CI_VARIANTS)) as url:
        opts = _options(tmp, mirror=url, images=images, jobs=2)
        rows = pipeline.run([resolve(n) for n in CI_VARIANTS], opts)
        again = pipeline.run([resolve(n) for n in CI_VARIANTS], opts)
    return {"tmp": tmp, "opts": opts, "rows": rows, "again": again, "images": images}


def test_end_to_end_parity_report(e2e):
    opts = e2e["opts"]
    assert [r.name for r in e2e["rows"]] == CI_VARIANTS
    assert [r.error for r in e2e["rows"]] == [None] * len(CI_VARIANTS)
    records = {r.name: r for r in report.load_results(opts.results)}
    assert sorted(records) == sorted(CI_VARIANTS)
    for name in CI_VARIANTS:
        r, v = records[name], resolve(name)
        assert r.passed is True, r
        assert r.top1_agree == r.inputs == len(e2e["images"]) + 4
        assert r.top5_agree == r.inputs
        assert r.no_top_passed is True
        assert r.frozen == "ema"
        assert r.archive_source.startswith("http://127.0.0.1:")
        if v.family_key == "v3":  # two figures: the graph as it is, and with the SE gate constant set to 1/6
            assert r.reference == "ckpt_meta" and r.reference_checkpoint == f"{v.stem}/ema/model-{v.step}"
            assert r.max_abs_dlogit <= 1e-3 * max(1.0, r.max_abs_ref_logit)
            gate = r.rewrites["gate_1/6"]
            assert gate.passed and gate.constants > 0
            assert gate.max_abs_dlogit <= 1e-4 * max(1.0, r.max_abs_ref_logit)
            assert gate.max_abs_dlogit < r.max_abs_dlogit / 10  # the gate constant was the difference
            assert r.reference_sources == {"ema": 266, "raw": 0} and r.weight_source == "ema 266"
        else:
            assert r.reference == "eval_pbtxt" and r.rewrites == {}
            assert r.max_abs_dlogit <= 1e-4 * max(1.0, r.max_abs_ref_logit)
            n = {"v1": {"ema": 137, "raw": 0}, "v2": {"ema": 158, "raw": 104}}[v.family_key]
            assert r.reference_sources == n
            assert r.weight_source == ", ".join(f"{k} {c}" for k, c in sorted(n.items()) if c)
    # test_results.p carries the original converter's keys; PARITY.md has one row per variant
    with open(opts.results / "test_results.p", "rb") as fh:
        legacy = pickle.load(fh)
    assert all(set(report.LEGACY_KEYS) <= set(r) for r in legacy)
    table = (opts.results / "PARITY.md").read_text()
    assert all(f"| {n} | pass |" in table for n in CI_VARIANTS)
    assert all(f"## {t}" in table for t in ("MobileNetV1", "MobileNetV2", "MobileNetV3"))
    for name in CI_VARIANTS:  # every converted variant has a model card carrying its parity figures
        v = resolve(name)
        side = json.loads((opts.weights_dir / (Path(v.keras_weights).stem + ".json")).read_text())
        assert side["parity"]["passed"] is True and side["parity"]["max_abs_dlogit"] == records[name].max_abs_dlogit
        card = (opts.weights_dir / (Path(v.keras_weights).stem + "_card.md")).read_text()
        assert f"- pass: max |Δlogit| {records[name].max_abs_dlogit:.2e}" in card
        assert ("gate_1/6" in card) == (v.family_key == "v3")


@pytest.mark.parametrize("name", CI_VARIANTS)
def test_converted_h5_matches_the_archives_frozen_graph(e2e, name):
    """An oracle independent of convert.parity: plain TF runs the archive's frozen graph (EMA values
    baked in by the factory), plain Keras loads the .h5; logits must agree on the 1000 shared classes."""
    import keras
    import tensorflow as tf

    v = resolve(name)
    opts = e2e["opts"]
    member, logits = {"v1": ("{stem}_frozen.pb", "MobilenetV1/Logits/SpatialSqueeze:0"),
                      "v2": ("{stem}_frozen.pb", "MobilenetV2/Logits/output:0"),
                      "v3": ("{stem}/{stem}.pb", "MobilenetV3/Logits/output:0")}[v.family_key]
    frozen = opts.cache / "extracted" / name / member.format(stem=v.stem)
    graph_def = tf.compat.v1.GraphDef.FromString(frozen.read_bytes())
    x = np.random.default_rng(123).uniform(-1, 1, (3, v.rows, v.rows, 3)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        slim = sess.run(logits, {"input:0": x})
    apps, shape, path = keras.applications, (v.rows, v.rows, 3), str(opts.weights_dir / v.keras_weights)
    if v.family_key == "v1":
        model = apps.MobileNet(alpha=float(v.alpha), input_shape=shape, weights=path, classifier_activation=None)
    elif v.family_key == "v2":
        model = apps.MobileNetV2(alpha=float(v.alpha), input_shape=shape, weights=path, classifier_activation=None)
    else:
        ctor = apps.MobileNetV3Large if v.kind == "large" else apps.MobileNetV3Small
        model = ctor(alpha=float(v.alpha), minimalistic=v.minimalistic, input_shape=shape, weights=path,
                     classifier_activation=None, include_preprocessing=False)
    ours = np.asarray(model(x, training=False)).reshape(3, -1)
    keras.backend.clear_session()
    assert slim.shape == (3, 1001) and ours.shape == (3, 1000)
    # V3's frozen graph keeps slim's gate constant 0.16667 (keras: 1/6): the as-is bound is 1e-3
    bound = 1e-3 if v.family_key == "v3" else 1e-4
    assert np.abs(slim[:, 1:] - ours).max() <= bound * max(1.0, np.abs(slim).max())
    assert np.array_equal(slim[:, 1:].argmax(1), ours.argmax(1))


def test_rerun_is_a_no_op(e2e):
    for row in e2e["again"]:
        assert row.passed is True and row.downloaded is False
        assert row.stage_status == {"extract": "skipped", "write_h5": "skipped", "verify": "skipped"}


def test_keras_outputs_are_legacy_h5_with_sidecars(e2e):
    weights = e2e["opts"].weights_dir
    for name in CI_VARIANTS:
        v = resolve(name)
        with h5py.File(weights / v.keras_weights, "r") as f:
            assert "predictions" in [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        sidecar = json.loads((weights / (Path(v.keras_weights).stem + ".json")).read_text())
        assert sidecar["variant"] == name
    sums = (weights / "SHA256SUMS").read_text()
    assert all(resolve(n).keras_weights_no_top in sums for n in CI_VARIANTS)


def _verify(cache: Path, name: str, weights_dir: Path):
    from convert import download, parity

    variant = resolve(name)
    model_dir = download.extracted_dir(cache, variant)
    return parity.verify(variant, model_dir, weights_dir)


def test_raw_weights_fail_parity(tmp_path):
    """A deliberately wrong conversion (raw values where slim evaluates EMA shadows) is caught."""
    with serve_directory(_mirror(tmp_path, ["0.35_96"])) as url:
        rows = pipeline.run([resolve("0.35_96")], _options(tmp_path, mirror=url, value_source="raw"))
    (row,) = rows
    assert row.passed is False and row.error is None
    record = report.load_results(tmp_path / "results")[0]
    assert record.max_abs_dlogit > 10 * record.tolerance
    assert record.weight_source == "raw 262"
    assert "| 0.35_96 | FAIL |" in (tmp_path / "results" / "PARITY.md").read_text()


def test_bn_gamma_beta_swap_fails_parity(e2e, tmp_path):
    v = resolve("0.35_96")
    weights = tmp_path / "weights"  # a copy of the passing conversion, with one BN layer's gamma and beta swapped
    weights.mkdir()
    for name in (v.keras_weights, v.keras_weights_no_top):
        shutil.copyfile(e2e["opts"].weights_dir / name, weights / name)
    with h5py.File(weights / v.keras_weights, "r+") as f:
        group = f["block_5_project_BN"]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
        gamma, beta = (group[n] for n in names[:2])
        assert names[0].endswith("gamma:0") and names[1].endswith("beta:0")
        g, b = gamma[...], beta[...]
        gamma[...], beta[...] = b, g
    record = _verify(e2e["opts"].cache, "0.35_96", weights)
    assert record.passed is False
    assert record.max_abs_dlogit > 10 * record.tolerance


def test_a_no_top_file_that_differs_from_the_top_file_fails(e2e, tmp_path):
    """Parity loads the top file into Keras and holds the no-top file to exactly that model's weights:
    one changed array in the no-top file fails the variant and is named, though the top file passes."""
    v = resolve("0.35_96")
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in (v.keras_weights, v.keras_weights_no_top):
        shutil.copyfile(e2e["opts"].weights_dir / name, weights / name)
    with h5py.File(weights / v.keras_weights_no_top, "r+") as f:
        group = f["block_3_project_BN"]
        gamma = group[[n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]][0]]
        gamma[0] = gamma[0] * np.float32(1.001)
    record = _verify(e2e["opts"].cache, "0.35_96", weights)
    assert record.max_abs_dlogit <= record.tolerance and record.top1_agree == record.inputs
    assert record.no_top_file_mismatches == ["block_3_project_BN/gamma"]
    assert record.no_top_passed is False and record.passed is False


def _truncated_copy(archive: Path, out: Path) -> Path:
    """The archive with its checkpoint data member cut to half its size."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as src, gzip.open(out, "wb", compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith(".data-00000-of-00001"):
                data = data[: len(data) // 2]
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out


def test_truncated_checkpoint_and_missing_archive_fail_only_their_variants(tmp_path, capsys):
    mirror = _mirror(tmp_path, ["0.35_96"])
    _truncated_copy(fixtures.cached_archive("0.5_96"), mirror / "mobilenet_v2_0.5_96.tgz")
    with serve_directory(mirror) as url:
        argv = ["0.35_96", "0.5_96", "0.35_128", "--mirror", url, "--cache", str(tmp_path / "cache"), "--work",
                str(tmp_path / "work"), "--weights-dir", str(tmp_path / "weights"), "--results",
                str(tmp_path / "results"), "--lock", str(tmp_path / "lock.json"), "--quiet", "--ignore-pins"]
        code = pipeline.main(argv)
    out = capsys.readouterr().out
    assert code == 1
    records = {r.name: r for r in report.load_results(tmp_path / "results")}
    assert records["0.35_96"].passed is True
    bad = records["0.5_96"]
    assert bad.passed is False
    assert "mobilenet_v2_0.5_96.ckpt" in bad.error
    assert "0.5_96: " in out and "1 of 3 variants passed." in out
    assert not (tmp_path / "weights" / resolve("0.5_96").keras_weights).exists()
    missing = records["0.35_128"]  # not on the mirror: a download failure, reported, the others unaffected
    assert missing.passed is False and missing.error.startswith("download: ") and "404" in missing.error
    assert not (tmp_path / "cache" / "archives" / "mobilenet_v2_0.35_128.tgz").exists()


def test_cli_help_and_bad_variant():
    run = lambda *a: subprocess.run([sys.executable, "-m", "convert", *a], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert run("run", "--help").returncode == 0
    assert run("demo", "--help").returncode == 0
    bad = run("run", "1.0_225", "--quiet")
    assert bad.returncode == 2 and "closest: 1.0_224" in bad.stderr and "Traceback" not in bad.stderr
    assert run("frobnicate").returncode == 2


def test_verify_cli_updates_one_row_and_keeps_the_others(e2e, tmp_path, capsys):
    import verify

    opts = e2e["opts"]
    results = tmp_path / "results"
    shutil.copytree(opts.results, results)
    before = {r.name: r for r in report.load_results(results)}
    archive = opts.cache / "archives" / "mobilenet_v2_0.35_96.tgz"
    # the script runs as a script (its --help exits before importing TF); the cases run in this process
    usage = subprocess.run([sys.executable, "verify.py", "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert usage.returncode == 0 and "--archive" in usage.stdout, usage.stderr
    code, out, err = run_main(verify.main, ["0.35_96", "--archive", str(archive), "--weights-dir", str(opts.weights_dir),
                                            "--results", str(results)], capsys)
    assert code == 0 and "0.35_96: PASS" in out, err
    after = {r.name: r for r in report.load_results(results)}
    assert sorted(after) == sorted(before)
    assert after["1.0_224"] == before["1.0_224"] and after["1.4_224"] == before["1.4_224"]
    assert after["0.35_96"].random_inputs == 4 and after["0.35_96"].images == []
    assert after["0.35_96"].archive_source == str(archive) and after["0.35_96"].weight_source == "ema 158, raw 104"
    code, _, err = run_main(verify.main, ["0.35_96", "--weights-dir", str(tmp_path / "none"), "--archive",
                                          str(archive), "--results", str(results)], capsys)
    assert code == 2 and "converted weights not found" in err
    # without --archive and without a download cache: the checkpoint named in the weights' sidecar
    code, out, err = run_main(verify.main, ["0.35_96", "--cache", str(tmp_path / "no-cache"), "--weights-dir",
                                            str(opts.weights_dir), "--results", str(results)], capsys)
    assert code == 0 and "0.35_96: PASS" in out, err
    code, _, err = run_main(verify.main, ["0.35_96", "--random-inputs", "0", "--weights-dir", str(opts.weights_dir),
                                          "--archive", str(archive), "--results", str(results)], capsys)
    assert code == 2 and "error: --random-inputs 0: give at least one input" in err


def test_reference_falls_back_to_the_ckpt_meta_graph(e2e, tmp_path):
    """An archive without an eval graph is checked against the graph in its .ckpt.meta."""
    from convert import download, parity

    v = resolve("0.35_96")
    model_dir = tmp_path / "model"
    shutil.copytree(download.extracted_dir(e2e["opts"].cache, v), model_dir)
    (model_dir / f"{v.stem}_eval.pbtxt").unlink()
    record = parity.verify(v, model_dir, e2e["opts"].weights_dir)
    assert record.reference == "ckpt_meta"
    assert record.passed is True
    assert record.max_abs_dlogit <= record.tolerance


def test_an_archive_without_an_inference_graph_is_checked_against_its_frozen_graph(e2e, tmp_path):
    """No eval graph and no .meta: the frozen graph is the reference, and V3's gate rewrite runs on it."""
    from convert import download, parity

    v = resolve("v3-large_224_0.75_float")
    model_dir = tmp_path / "model"
    shutil.copytree(download.extracted_dir(e2e["opts"].cache, v), model_dir)
    for meta in model_dir.rglob("*.meta"):
        meta.unlink()
    record = parity.verify(v, model_dir, e2e["opts"].weights_dir)
    assert record.reference == "frozen_pb" and record.frozen == "is the reference"
    assert record.reference_sources == {} and record.reference_checkpoint is None
    gate = record.rewrites["gate_1/6"]
    assert gate.constants == 8 and gate.passed and gate.max_abs_dlogit < record.max_abs_dlogit / 10
    assert record.passed is True


def test_demo_command_runs_offline_end_to_end(tmp_path, capsys):
    """`make demo`'s command on one variant: factory archive -> loopback server -> pipeline -> PARITY.md."""
    code = demo_main(["0.35_96", "--cache", str(tmp_path / "demo"), "--results", str(tmp_path / "results"),
                      "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| 0.35_96 | pass |" in out and "| loopback |" in out
    assert (tmp_path / "demo" / "weights" / resolve("0.35_96").keras_weights).exists()
    assert json.loads((tmp_path / "demo" / "checksums.lock.json").read_text()).keys() == {"mobilenet_v2_0.35_96.tgz"}


@pytest.mark.genuine
def test_converted_1_0_224_matches_the_genuine_2018_eval_graph(e2e, reference_dir, tmp_path):
    """The reference swapped for the genuine release's own eval graph: the Keras weights converted from
    the factory checkpoint reproduce what the real 2018 slim graph computes from that checkpoint."""
    from convert import download, parity

    v = resolve("1.0_224")
    model_dir = tmp_path / "model"
    shutil.copytree(download.extracted_dir(e2e["opts"].cache, v), model_dir)
    shutil.copyfile(reference_dir / f"{v.stem}_eval.pbtxt", model_dir / f"{v.stem}_eval.pbtxt")
    record = parity.verify(v, model_dir, e2e["opts"].weights_dir, images=e2e["images"])
    assert record.reference == "eval_pbtxt"
    assert record.reference_sources == {"ema": 158, "raw": 104}
    assert record.passed is True and record.top1_agree == record.inputs
    assert record.max_abs_dlogit <= record.tolerance


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise(e2e, monkeypatch):
    """convert-all's progress: on a terminal an overall bar with the variant count and an estimate; on a
    pipe or file one plain line per variant and no bar. (A re-run: every stage up to date, no TF work.)"""
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    variants = [resolve(n) for n in CI_VARIANTS]
    opts = dataclasses.replace(e2e["opts"], quiet=False)
    for stream in (io.StringIO(), Terminal()):
        monkeypatch.setattr(sys, "stderr", stream)
        rows = pipeline.run(variants, opts)
        assert all(r.passed for r in rows)
        text = stream.getvalue()
        lines = [line for line in text.splitlines() if ": pass  max|dlogit|" in line]
        assert len(lines) == len(CI_VARIANTS)
        if stream.isatty():
            assert "variants: 100%" in text and f"{len(CI_VARIANTS)}/{len(CI_VARIANTS)}" in text
            assert re.search(r"variants: +\d+%.*\[\d\d:\d\d<(\d\d:\d\d|\?)", text)  # elapsed<estimate left
        else:
            assert "variants:" not in text and "\r" not in text


def test_a_worker_that_dies_fails_only_its_own_variant():
    """A worker process killed under one variant (os._exit, as the OOM killer would) breaks its pool: the
    variants that pool had not finished are tried again, each alone, and pass; the one that kills its
    worker by itself gets a failure row naming that; nothing is lost or raised."""
    from _worker_faults import DIES, die_on_one, no_init
    from convert.download import FetchFailure

    names = ["0.35_96", "0.35_128", DIES, "0.5_128", "0.75_96", "1.0_96"]
    workers = pipeline._Workers(pipeline.Options(jobs=2), len(names), fn=die_on_one, init=no_init)
    try:
        for name in names:
            workers.submit(FetchFailure(resolve(name), "not used"))
        rows = {item.variant.name: row for item, row in workers.finished(block=True)}
    finally:
        workers.close()
    assert sorted(rows) == sorted(names)
    assert rows[DIES].passed is False and "worker process died while converting it, alone" in rows[DIES].error
    assert all(rows[n].passed is True for n in names if n != DIES), rows
