"""The model cards' load snippets run as printed, on factory-built outputs (a float V2 and a V3 .h5 pair from
their factory archives; V1 quant's .h5, twin and .tflite, conftest.quant_outputs) and on Google's genuine
V2 quantized .tflite (tests/data/genuine), all in one separate Python process, each in the folder of its
files with the genuine panda.jpg.

Expected values are computed here, independently of the snippets: the Keras model (keras.applications'
constructor loading the .h5; keras.saving.load_model for the twin) or LiteRT run on
``preprocessing_for(<file>).load(panda.jpg)``, and the class names read from keras' own class index file.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convert  # noqa: F401  (registers the twin's layers with Keras, as the snippet's `import convert` does)
from conftest import REFERENCE_DIR, quant_outputs
from convert import cards
from convert.checkpoint import extract
from convert.factory import fixtures
from convert.guide import load_layer_guide
from convert.keras_weights import convert_guide
from convert.manifest import resolve
from convert.preprocessing import preprocessing_for
from test_cards import CLASS_INDEX, KERAS_MD5, _facts, _record, card_blocks

ROOT = Path(__file__).resolve().parents[1]
PANDA = REFERENCE_DIR / "panda.jpg"
GENUINE_TFLITE = REFERENCE_DIR / "mobilenet_v2_1.0_224_quant.tflite"  # Google's own: 1001 classes, background first
V2, V3, V1Q, V2Q_GENUINE = "0.35_96", "v3-small-minimalistic_224_1.0_float", "mobilenet_v1_0.25_128_quant", "quantized_v2_224_100"

# Runs each snippet as printed (its own globals, in its folder), and keeps what it printed and its arrays.
RUNNER = r"""
import contextlib, io, json, os, sys
import numpy as np
jobs = json.loads(open(sys.argv[1]).read())
results = []
for folder, code in jobs:
    os.chdir(folder)
    out, scope = io.StringIO(), {"__name__": "__main__"}
    with contextlib.redirect_stdout(out):
        exec(compile(code, os.path.join(folder, "snippet.py"), "exec"), scope)
    arrays = {k: v for k, v in scope.items() if isinstance(v, np.ndarray)}
    np.savez(os.path.join(folder, "snippet_arrays.npz"), **arrays)
    results.append(out.getvalue())
print(json.dumps(results))
"""


def _keras_index() -> list[tuple[str, str]]:
    data = CLASS_INDEX.read_bytes()
    assert hashlib.md5(data).hexdigest() == KERAS_MD5  # keras' own file
    doc = json.loads(data)
    return [tuple(doc[str(i)]) for i in range(1000)]


def _float_outputs(base: Path, name: str) -> Path:
    """A float variant's factory archive converted (guide -> .h5 pair), with the metadata cards writes."""
    v = resolve(name)
    out = base / name
    guide = load_layer_guide(extract(v, archive=fixtures.cached_archive(v.name), out_dir=base / f"work-{name}"))
    cards.write(out, v, convert_guide(guide, v, out))
    return out


def _quant_folder(base: Path, name: str, src: Path) -> Path:
    v = resolve(name)
    out = base / name
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("complete"))
    files = {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in (v.keras_weights, v.keras_weights_no_top)}
    cards.write(out, v, _facts(v, files), _record(v))
    return out


def _genuine_tflite_folder(base: Path) -> Path:
    """Google's genuine quantized V2 1.0_224 .tflite as that variant's .tflite (stand-in .h5 and twin files:
    only the .tflite snippet runs here)."""
    v = resolve(V2Q_GENUINE)
    out = base / V2Q_GENUINE
    out.mkdir()
    for n in (v.keras_weights, v.keras_weights_no_top, v.family.twin_file(v)):
        (out / n).write_bytes(n.encode())
    shutil.copy(GENUINE_TFLITE, out / v.family.tflite_file(v))
    files = {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in (v.keras_weights, v.keras_weights_no_top)}
    cards.write(out, v, _facts(v, files), _record(v))
    return out


@pytest.fixture(scope="module")
def ran(tmp_path_factory, run_dir):
    """Every snippet run once, in one process: {(variant, block index): (folder, code, stdout, arrays)}."""
    base = tmp_path_factory.mktemp("snippets")
    folders = {V2: _float_outputs(base, V2), V3: _float_outputs(base, V3),
               V1Q: _quant_folder(base, V1Q, quant_outputs(V1Q, run_dir)), V2Q_GENUINE: _genuine_tflite_folder(base)}
    jobs = []
    for name, folder in folders.items():
        v = resolve(name)
        shutil.copy(PANDA, folder / "panda.jpg")
        blocks = card_blocks(cards.card_path(folder, v).read_text())
        keep = range(len(blocks)) if name != V2Q_GENUINE else [3]  # the genuine folder: its .tflite only
        for i in keep:
            run = folder / f"block{i}"
            shutil.copytree(folder, run, ignore=shutil.ignore_patterns("block*"))
            jobs.append(((name, i), str(run), blocks[i]))
    spec = base / "jobs.json"
    spec.write_text(json.dumps([[folder, code] for _, folder, code in jobs]))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}  # this checkout's convert
    done = subprocess.run([sys.executable, "-c", RUNNER, str(spec)], capture_output=True, text=True, env=env,
                          cwd=base, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    return {key: (Path(folder), code, out, dict(np.load(Path(folder) / "snippet_arrays.npz")))
            for (key, folder, code), out in zip(jobs, printed)}


def _decoded(stdout: str) -> list[list[tuple]]:
    """The snippet's printed decode_predictions lists (one per print)."""
    return [ast.literal_eval(line) for line in stdout.strip().splitlines()]


def test_every_card_has_its_snippets(ran):
    assert {k for k in ran} == {(V2, 0), (V2, 1), (V3, 0), (V3, 1), (V1Q, 0), (V1Q, 1), (V1Q, 2), (V1Q, 3),
                                (V2Q_GENUINE, 3)}


@pytest.mark.parametrize("name", [V2, V3, V1Q])
def test_h5_snippet_prints_the_keras_models_class(ran, name):
    import keras

    v = resolve(name)
    folder, code, out, arrays = ran[(name, 0)]
    path = folder / v.keras_weights
    kw = {k: getattr(v, k) for k in v.family.keras_app.variant_args}
    ctor = getattr(keras.applications, v.family.keras_constructor(v))
    model = ctor(alpha=float(v.alpha), input_shape=(v.rows, v.rows, 3), weights=str(path), **kw)
    probs = np.asarray(model(preprocessing_for(path).load(PANDA)[None]))
    k = int(probs.argmax())
    index = _keras_index()
    lines = _decoded(out)
    assert len(lines) == (2 if v.family_key == "v3" else 1)  # V3: keras' default [0, 255] model, then [-1, 1]
    for top3 in lines:
        assert top3[0][:2] == index[k] and top3[0][2] == pytest.approx(float(probs[0, k]), rel=1e-4, abs=1e-6)
        assert [c[:2] for c in top3] == [index[i] for i in np.argsort(probs[0])[::-1][:3]]
    np.testing.assert_allclose(arrays["probs"], probs, rtol=1e-4, atol=1e-6)
    if v.family_key == "v3":  # the snippet's second form: include_preprocessing=False on the [-1, 1] values
        assert "include_preprocessing=False" in code and "[0, 255]" in code
        np.testing.assert_array_equal(arrays["x"], preprocessing_for(path, include_preprocessing=False).load(PANDA)[None])
    keras.backend.clear_session()


@pytest.mark.parametrize("name", [V2, V3])
def test_no_top_snippet_gives_the_pooled_features(ran, name):
    import keras

    v = resolve(name)
    folder, _, _, arrays = ran[(name, 1)]
    path = folder / v.keras_weights_no_top
    kw = {k: getattr(v, k) for k in v.family.keras_app.variant_args}
    ctor = getattr(keras.applications, v.family.keras_constructor(v))
    model = ctor(alpha=float(v.alpha), input_shape=(v.rows, v.rows, 3), include_top=False, weights=None, **kw)
    model.load_weights(path)
    want = np.asarray(model(preprocessing_for(path).load(PANDA)[None])).mean(axis=(1, 2))
    np.testing.assert_allclose(arrays["f"], want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    keras.backend.clear_session()


def test_twin_snippet_prints_the_twins_class(ran):
    import keras

    v = resolve(V1Q)
    folder, _, out, arrays = ran[(V1Q, 2)]
    twin = folder / v.family.twin_file(v)
    probs = np.asarray(keras.saving.load_model(twin)(preprocessing_for(twin).load(PANDA)[None]))
    (top3,) = _decoded(out)
    assert top3[0][:2] == _keras_index()[int(probs.argmax())]
    np.testing.assert_allclose(arrays["probs"], probs, rtol=1e-4, atol=1e-6)
    keras.backend.clear_session()


def _litert(path: Path) -> np.ndarray:
    """The .tflite's dequantized output on the API's uint8 panda, LiteRT as the snippet runs it."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(inp["index"], preprocessing_for(path).load(PANDA)[None])
    it.invoke()
    scale, zero_point = out["quantization"]
    return (it.get_tensor(out["index"]).astype(np.float32) - zero_point) * scale


@pytest.mark.parametrize("name", [V1Q, V2Q_GENUINE])
def test_tflite_snippet_prints_litert_class_with_the_files_labels(ran, name):
    v = resolve(name)
    folder, code, out, arrays = ran[(name, 3)]
    path = folder / v.family.tflite_file(v)
    probs = _litert(path)[0]
    np.testing.assert_array_equal(arrays["probs"][0], probs)
    (top3,) = _decoded(out)
    index, score = top3[0][0], top3[0][2]
    assert probs[index] == probs.max() == pytest.approx(score)  # a first class (uint8 outputs can tie)
    names = [n for _, n in _keras_index()]
    # the labels file follows the output: ours 1000 Keras classes, Google's 1001 with slim's background first
    labels = (folder / f"{v.stem}_labels.txt").read_text().splitlines()
    assert labels == (names if probs.size == 1000 else ["background", *names])
    assert top3[0][1] == labels[index]
    if name == V2Q_GENUINE:  # Google's genuine weights on the genuine panda, through the API's uint8 input
        assert probs.size == 1001 and top3[0][1] == "giant_panda"
