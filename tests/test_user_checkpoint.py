"""``convert checkpoint`` on user-like training directories (issue 21): V1, V2 and V3 with 3, 5 and 10 classes, a depth multiplier and input sizes outside the catalogue, RMSProp and Momentum, with and without
EMA; a training directory, a prefix and an archive; a backbone under another model's scope.

Expected values come from the factory's own artifacts, run here with TF directly: the training directory's
frozen graph (``frozen_graph.pb``: the values slim's evaluation restores) and the Architecture it was built for;
never from the converter's figures."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import run_main
from convert.factory.training import cached_training_dir
from convert.reference import Architecture
from convert.user.cli import main

# (id, Architecture, optimizer, ema, how the checkpoint is given, --graph)
CASES = {
    "v1-0.6-128x96-c3": (Architecture("v1", 0.6, 128, 96, 3), "momentum", False, "directory", "inference_graph.pbtxt"),
    "v2-0.6-200x160-c5": (Architecture("v2", 0.6, 200, 160, 5), "rmsprop", True, "prefix", "frozen_graph.pb"),
    "v3-small-1.0-96-c10": (Architecture("v3", 1.0, 96, 96, 10, kind="small"), "momentum", True, "archive",
                            "inference_graph.pbtxt"),
}
_DONE: dict[str, tuple] = {}


def frozen_probabilities(train_dir: Path, x: np.ndarray, offset: int = 0) -> np.ndarray:
    """The training directory's frozen graph on ``x`` (TF1 session, its own input and softmax), classes from
    ``offset`` renormalised: an independent computation of what the converted model must output."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef.FromString((train_dir / "frozen_graph.pb").read_bytes())
    softmax = [n.name for n in graph_def.node if n.op == "Softmax"]
    with tf.Graph().as_default() as g:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            p = sess.run(f"{softmax[0]}:0", {"input:0": x}).reshape(len(x), -1)[:, offset:]
    return p / p.sum(axis=1, keepdims=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed here (not the converter's)."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def converted(case: str, tmp_root: Path, capsys):
    """The case's training directory converted once per test process: (arch, dir, out, sidecar, stdout)."""
    if case not in _DONE:
        arch, optimizer, ema, given, graph = CASES[case]
        train_dir = cached_training_dir(arch, optimizer, ema)
        path = {"directory": train_dir, "prefix": train_dir / "model.ckpt-5000"}.get(given)
        if given == "archive":
            path = tmp_root / f"{case}.tgz"
            with tarfile.open(path, "w:gz") as tar:
                for f in sorted(train_dir.iterdir()):
                    tar.add(f, arcname=f"{case}/{f.name}")
        out = tmp_root / case
        labels = tmp_root / f"{case}-labels.txt"
        if given == "prefix":  # TF-slim's own labels.txt (dataset_utils.write_label_file: "%d:%s\n"), reversed
            labels.write_text("".join(f"{i}:class_{i}\n" for i in reversed(range(arch.classes))))
        else:
            labels.write_text("".join(f"class_{i}\n" for i in range(arch.classes)))
        code, stdout, err = run_main(main, [str(path), "--input-size", str(arch.rows), str(arch.cols), "--name", case,
                                            "--graph", str(train_dir / graph), "--labels", str(labels),
                                            "--out", str(out)], capsys)
        assert code == 0, err[-3000:]
        _DONE[case] = (arch, train_dir, out, json.loads((out / f"{case}.json").read_text()), stdout)
    return _DONE[case]


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("user")


@pytest.mark.parametrize("case", list(CASES))
def test_every_output_is_written_and_proven_against_both_references(case, tmp_root, capsys):
    arch, train_dir, out, sidecar, stdout = converted(case, tmp_root, capsys)
    files = {f"{case}{s}" for s in (".h5", "_no_top.h5", ".keras", ".tflite", ".json", "_card.md", "_labels.txt")}
    assert files <= {p.name for p in out.iterdir()} and not list(out.glob(".*staging*"))
    # what was read from the checkpoint is the architecture the directory was built for
    v = sidecar["variant"]
    assert (v["family"], float(v["alpha"]), v["kind"], v["classes"], v["label_offset"]) == \
           (arch.family, arch.alpha, arch.kind, arch.classes, 0)
    assert (v["rows"], v["cols"] or v["rows"]) == (arch.rows, arch.cols)
    refs = {r["reference"]: r for r in sidecar["references"]}
    assert set(refs) == {"builder", "graph"} and sidecar["passed"] is True
    for r in refs.values():
        assert r["passed"] and r["max_abs_dlogit"] <= r["tolerance"] and r["top1_agree"] == r["inputs"], r
        assert {f["file"] for f in r["files"]} == {f"{case}.keras", f"{case}.tflite"}
    assert refs["graph"]["kind"] == ("frozen" if CASES[case][4].endswith(".pb") else "variables")
    if arch.family == "v3":  # slim's gate 0.16667 against Keras' 1/6: the rewritten graph is the tight proof
        assert refs["builder"]["rewrites"]["gate_1/6"]["passed"]
    # the values used: the EMA shadows when the checkpoint has them
    assert sidecar["values"]["mode"] == ("ema" if CASES[case][2] else "raw")
    # every checkpoint file read is hashed
    assert {n.split(".")[-1].split("-")[0] for n in sidecar["checkpoint_files"]} == {"index", "data", "meta"}
    assert (out / f"{case}_labels.txt").read_text().splitlines() == [f"class_{i}" for i in range(arch.classes)]
    assert f"{arch.classes} classes" in stdout or f"{arch.classes} classes" in sidecar["inferred"][0]
    # where the checkpoint came from, as the user can find it again (an archive's extraction is temporary)
    given = CASES[case][3]
    expected = {"directory": str(train_dir / "model.ckpt-5000"), "prefix": str(train_dir / "model.ckpt-5000"),
                "archive": f"{(tmp_root / f'{case}.tgz').resolve()}:{case}/model.ckpt-5000"}[given]
    assert sidecar["checkpoint"] == expected and f"`{expected}`" in (out / f"{case}_card.md").read_text()
    assert sums_of(out) == {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                            for p in out.iterdir() if p.name != "SHA256SUMS" and not p.name.startswith(".")}


def sums_of(out: Path) -> dict[str, str]:
    return {name: digest for digest, _, name in (line.partition("  ") for line in
                                                  (out / "SHA256SUMS").read_text().splitlines())}


def test_a_rerun_replaces_the_earlier_files_and_removes_what_it_no_longer_makes(tmp_root, capsys, tmp_path):
    """The same name converted again into the same folder, now without --labels and as a float checkpoint: the
    earlier run's labels file and (simulated: its sidecar edited to list them) quantized files go, with their
    SHA256SUMS entries; files the earlier sidecar names that are not that conversion's own, or that changed
    since, stay."""
    case = "v1-0.6-128x96-c3"
    arch, train_dir, first, sidecar, _ = converted(case, tmp_root, capsys)
    out = tmp_path / "out"
    shutil.copytree(first, out)
    earlier = json.loads((out / f"{case}.json").read_text())
    for n, body in ((f"{case}_quant.keras", b"twin"), (f"{case}_quant.tflite", b"8-bit"),
                    (f"{case}_quant_notes.txt", b"edited since")):
        (out / n).write_bytes(body)
        earlier["files"][n] = hashlib.sha256(b"as written" if "notes" in n else body).hexdigest()
    (out / "notes.txt").write_text("mine")
    for n in ("notes.txt", "SHA256SUMS", "../outside"):  # a sidecar naming files not its own
        earlier["files"][n] = hashlib.sha256((out / n).read_bytes()).hexdigest() if (out / n).is_file() else "0"
    (out / f"{case}.json").write_text(json.dumps(earlier))
    kept_sums = sums_of(out)
    code, stdout, err = run_main(main, [str(train_dir), "--input-size", str(arch.rows), str(arch.cols), "--name", case,
                                        "--out", str(out)], capsys)
    assert code == 0, err[-2000:]
    gone = [f"{case}_labels.txt", f"{case}_quant.keras", f"{case}_quant.tflite"]
    assert not any((out / n).exists() for n in gone) and f"removed {', '.join(sorted(gone))}" in stdout, stdout
    assert (out / "notes.txt").read_text() == "mine" and (out / f"{case}_quant_notes.txt").read_bytes() == b"edited since"
    again = json.loads((out / f"{case}.json").read_text())
    assert again["labels"] is None and [r["reference"] for r in again["references"]] == ["builder"]
    sums = sums_of(out)
    assert not set(gone) & set(sums) and set(kept_sums) - set(gone) <= set(sums)
    assert sums == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()
                    if p.name in sums}
    assert {p.name for p in out.iterdir()} - set(sums) == {"SHA256SUMS", "notes.txt", f"{case}_quant_notes.txt",
                                                          ".SHA256SUMS.lock"}


@pytest.mark.parametrize("case", ["v3-small-1.0-96-c10"])  # V2's: the card's Load block, run in a fresh process below
def test_the_keras_file_loads_in_a_fresh_process_and_gives_the_reference_probabilities(case, tmp_root, capsys, tmp_path):
    arch, train_dir, out, _, _ = converted(case, tmp_root, capsys)
    x = np.random.default_rng(7).uniform(-1, 1, (3, arch.rows, arch.cols, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = ("import numpy as np, keras, sys; m = keras.saving.load_model(sys.argv[1]); x = np.load(sys.argv[2]); "
            "np.save(sys.argv[3], np.asarray(m.predict(x, verbose=0))); "
            "logits = keras.Model(m.input, m.get_layer('predictions').output); "  # what the card says gives logits
            "np.save(sys.argv[4], np.asarray(logits.predict(x, verbose=0)))")
    done = subprocess.run([sys.executable, "-c", code, str(out / f"{case}.keras"), str(tmp_path / "x.npy"),
                           str(tmp_path / "p.npy"), str(tmp_path / "l.npy")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got, want = np.load(tmp_path / "p.npy"), frozen_probabilities(train_dir, x)
    assert got.shape == (3, arch.classes)
    tol = 1e-3 if arch.family == "v3" else 1e-4  # V3: slim's gate constant 0.16667 in the frozen graph, 1/6 in Keras
    assert np.max(np.abs(got - want)) <= tol and (got.argmax(1) == want.argmax(1)).all()
    logits = np.load(tmp_path / "l.npy").reshape(3, -1)
    assert np.max(np.abs(softmax(logits) - want)) <= tol  # the layer before the softmax


def test_the_cards_load_snippet_runs_as_printed_and_gives_the_reference(tmp_root, capsys, tmp_path):
    """The card's "Load" block, run as printed in a fresh process beside a copy of the files (the genuine panda as
    its image.jpg): its probabilities, its logits (the layer before the softmax) and the names it prints, against
    the frozen graph on the same preprocessed image."""
    from conftest import REFERENCE_DIR
    from convert.preprocessing import preprocessing_for

    case = "v2-0.6-200x160-c5"
    arch, train_dir, out, sidecar, _ = converted(case, tmp_root, capsys)
    folder = tmp_path / "files"
    shutil.copytree(out, folder)
    shutil.copy(REFERENCE_DIR / "panda.jpg", folder / "image.jpg")
    load = (folder / f"{case}_card.md").read_text().split("## Load")[1].split("## ")[0]
    code = load.split("```python\n")[1].split("```")[0]
    code += "\nimport numpy as np\nnp.savez('arrays.npz', probs=probs, logits=np.asarray(logits.predict(x, verbose=0)))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=folder, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    arrays = np.load(folder / "arrays.npz")
    want = frozen_probabilities(train_dir, preprocessing_for(out / f"{case}.keras").load(REFERENCE_DIR / "panda.jpg")[None])
    assert np.max(np.abs(arrays["probs"] - want)) <= 1e-4
    assert np.max(np.abs(softmax(arrays["logits"].reshape(1, -1)) - want)) <= 1e-4
    best = int(want.argmax())
    assert f"class_{best}" in done.stdout and sidecar["labels"][best] == f"class_{best}"


@pytest.mark.parametrize("case", ["v1-0.6-128x96-c3", "v3-small-1.0-96-c10"])
def test_the_h5_loads_into_the_constructor_the_card_shows(case, tmp_root, capsys):
    import keras

    arch, train_dir, out, sidecar, _ = converted(case, tmp_root, capsys)
    call = sidecar["keras_call"]
    assert call in (out / f"{case}_card.md").read_text()
    scope = {"keras": keras}
    keras.backend.clear_session()
    import os

    cwd = os.getcwd()
    os.chdir(out)
    try:
        exec(call.split("  #")[0], scope)  # the card's line, as a user pastes it beside the files
    finally:
        os.chdir(cwd)
    model = scope["model"]
    x = np.random.default_rng(3).uniform(-1, 1, (2, arch.rows, arch.cols, 3)).astype(np.float32)
    from convert.families.base import to_keras_input
    from convert.families import FAMILIES

    got = np.asarray(model(to_keras_input(x, FAMILIES[arch.family].keras_input_range), training=False))
    want = frozen_probabilities(train_dir, x)
    assert np.max(np.abs(got - want)) <= (1e-3 if arch.family == "v3" else 1e-4)


def test_a_v1_input_keras_cannot_match_is_refused(capsys, tmp_path):
    """V1 at 200 x 200 (not a multiple of 32): keras.applications' padding differs from slim's; refused."""
    train_dir = cached_training_dir(Architecture("v1", 0.6, 200, 200, 10), "momentum", False)
    out = tmp_path / "out"
    code, _, err = run_main(main, [str(train_dir), "--rows", "200", "--out", str(out)], capsys)
    assert code == 2 and "multiple of 32" in err and "200 x 200" in err, err
    assert not out.exists() or list(out.iterdir()) == []


def test_ema_asked_of_a_checkpoint_without_shadows_is_refused(tmp_root, capsys, tmp_path):
    arch, train_dir, _, _, _ = converted("v1-0.6-128x96-c3", tmp_root, capsys)
    out = tmp_path / "out"
    code, _, err = run_main(main, [str(train_dir), "--input-size", "128", "96", "--value-source", "ema",
                                   "--out", str(out)], capsys)
    assert code == 2 and "ExponentialMovingAverage" in err, err
    assert not out.exists() or list(out.iterdir()) == []


def test_a_backbone_under_another_scope_is_proven_on_its_pooled_features(tmp_root, capsys, tmp_path):
    """An Object-Detection-style checkpoint: the V2 under ``FeatureExtractor/``, box predictor variables beside it."""
    import tensorflow as tf

    arch, train_dir, _, _, _ = converted("v2-0.6-200x160-c5", tmp_root, capsys)
    reader = tf.train.load_checkpoint(str(train_dir / "model.ckpt-5000"))
    values = {f"FeatureExtractor/{k}": reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
              if k.startswith("MobilenetV2/") and "/Logits/" not in k}
    rng = np.random.default_rng(1)
    values.update({"FeatureExtractor/MobilenetV2/layer_19_1_Conv2d_2_1x1_256/weights":  # an SSD's extra layer
                   rng.standard_normal((1, 1, 1280, 256)).astype(np.float32),
                   "BoxPredictor_0/BoxEncodingPredictor/weights": rng.standard_normal((1, 1, 8, 12)).astype(np.float32),
                   "BoxPredictor_0/BoxEncodingPredictor/biases": np.zeros(12, np.float32),
                   "global_step": np.array(5000, np.int64)})
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        made = {n: v1.get_variable(n, initializer=tf.constant(a), use_resource=False) for n, a in values.items()}
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver(made).save(sess, str(tmp_path / "detector" / "model.ckpt"), write_meta_graph=False)
    out = tmp_path / "out"
    code, stdout, err = run_main(main, [str(tmp_path / "detector" / "model.ckpt"), "--scope", "FeatureExtractor",
                                        "--input-size", "200", "160", "--name", "backbone", "--out", str(out)], capsys)
    assert code == 0, err[-3000:]
    assert "BoxPredictor_0 (2)" in stdout  # the variables outside the scope, counted and named
    assert "layer_19_1_Conv2d_2_1x1_256" in stdout  # the detector's own layer inside the scope, named
    sidecar = json.loads((out / "backbone.json").read_text())
    (ref,) = sidecar["references"]
    assert ref["reference"] == "builder" and ref["logits"] is None and ref["passed"]
    assert ref["no_top_max_abs_diff"] <= ref["no_top_tolerance"]
    assert {p.name for p in out.iterdir()} >= {"backbone_no_top.h5", "backbone.keras", "backbone.tflite"}
    assert not (out / "backbone.h5").exists()
    # the two box predictor variables and the SSD layer (global_step: counted as such)
    assert sidecar["counts"]["outside_scope"] == 3
    assert "include_top=False" in sidecar["keras_call"] and "backbone_no_top.h5" in sidecar["keras_call"]
    assert "no logits: a backbone" in (out / "backbone_card.md").read_text()


@pytest.mark.parametrize("form, source", [("training_meta", "constants")])
def test_a_quantization_aware_checkpoint_also_gets_its_twin_and_8bit_tflite(form, source, capsys, tmp_path):
    """A quantization-aware checkpoint (the factory's V2 0.35_96 QAT archive in its training form, given as a
    plain prefix): its .meta (a training graph) is passed over for the frozen graph beside it, whose range
    constants are matched to the checkpoint's variables; the twin and the 8-bit file are written and proven.
    (The other route, an eval .meta with range variables, is the catalogue's: tests/test_quant.py.)"""
    from convert.factory import fixtures

    root = fixtures.cached_extracted("quantized_v2_96_35", form=form)
    prefix = next(root.rglob("*.index")).with_suffix("")
    out = tmp_path / "out"
    code, stdout, err = run_main(main, [str(prefix), "--rows", "96", "--name", "qat", "--out", str(out)], capsys)
    assert code == 0, err[-3000:]
    assert f"ranges from its {source}" in stdout
    sidecar = json.loads((out / "qat.json").read_text())
    q = sidecar["quant"]
    assert q["passed"] and q["twin"]["max_steps"] <= 1.0 and q["tflite_top1_agree"] == q["inputs"]
    assert {"qat_quant.keras", "qat_quant.tflite"} <= {p.name for p in out.iterdir()}
    assert sidecar["counts"]["twin_ranges"] == 232  # every range variable consumed by the twin
    assert sidecar["preprocessing"]["qat_quant.tflite"]["form"] == "uint8"
    assert sidecar["passed"] is True and len(sidecar["references"]) == 2


@pytest.mark.genuine
def test_googles_own_eval_graph_as_graph(capsys, tmp_path):
    """``--graph`` with Google's genuine 2018 eval graph of mobilenet_v2_1.0_224 (vendored), not the project's
    builder: a V2 1.0 224 checkpoint (the factory's, its layout as Google's) is proven against both."""
    from conftest import REFERENCE_DIR
    from convert.factory import fixtures

    out = tmp_path / "out"
    code, stdout, err = run_main(main, [fixtures.cached_checkpoint("1.0_224"), "--name", "v2",
                                        "--graph", str(REFERENCE_DIR / "mobilenet_v2_1.0_224_eval.pbtxt"),
                                        "--out", str(out)], capsys)
    assert code == 0, err[-3000:]
    refs = {r["reference"]: r for r in json.loads((out / "v2.json").read_text())["references"]}
    assert refs["graph"]["graph"].endswith("mobilenet_v2_1.0_224_eval.pbtxt") and refs["graph"]["kind"] == "variables"
    assert all(r["passed"] and r["top1_agree"] == r["inputs"] for r in refs.values())
    assert abs(refs["graph"]["max_abs_dlogit"] - refs["builder"]["max_abs_dlogit"]) <= refs["builder"]["tolerance"]


def test_a_copied_or_archived_directory_gives_its_own_checkpoint_not_the_recorded_original(tmp_path):
    """train_image_classifier.py records an absolute model_checkpoint_path. With the original directory still
    on this machine, a copy of it, and an archive of it, each give the checkpoint they hold themselves."""
    from convert.user.locate import locate

    original = cached_training_dir(*CASES["v1-0.6-128x96-c3"][:3])
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    (copy / "checkpoint").write_text(f'model_checkpoint_path: "{original}/model.ckpt-5000"\n'
                                     f'all_model_checkpoint_paths: "{original}/model.ckpt-5000"\n')
    with locate(copy) as found:
        assert found.prefix == copy / "model.ckpt-5000" and found.label == str(copy / "model.ckpt-5000")
    archive = tmp_path / "run.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(copy, arcname="run")
    with locate(archive) as found:
        assert found.prefix.is_relative_to(found.directory) and found.prefix.name == "model.ckpt-5000"
        assert found.label == f"{archive.resolve()}:run/model.ckpt-5000"
        assert found.files[found.prefix.name + ".index"] == hashlib.sha256(
            (copy / "model.ckpt-5000.index").read_bytes()).hexdigest()


def test_earlier_files_are_only_a_sidecars_own_unchanged_outputs(tmp_path):
    """What a re-run may remove: the files an earlier sidecar of this format and name lists, still as written."""
    from convert.user.card import FORMAT, earlier_files

    def digest(b: bytes) -> str:
        return hashlib.sha256(b).hexdigest()

    (tmp_path / "f.h5").write_bytes(b"h5")
    (tmp_path / "f_labels.txt").write_bytes(b"a\nb\n")
    doc = {"format": FORMAT, "name": "f", "files": {"f.h5": digest(b"h5")}, "labels": ["a", "b"]}
    (tmp_path / "f.json").write_text(json.dumps(doc))
    assert sorted(earlier_files(tmp_path, "f")) == ["f.h5", "f_labels.txt"]
    (tmp_path / "f_labels.txt").write_bytes(b"a\nb renamed\n")  # edited by its owner: kept
    assert earlier_files(tmp_path, "f") == ["f.h5"]
    for other in ({**doc, "name": "g"}, {**doc, "format": "something else"}, ["f.h5"]):
        (tmp_path / "f.json").write_text(json.dumps(other))
        assert earlier_files(tmp_path, "f") == []
    (tmp_path / "f.json").write_text("{not json")
    assert earlier_files(tmp_path, "f") == [] and earlier_files(tmp_path / "missing", "f") == []
