"""Model cards, sidecars and SHA256SUMS (convert.cards), from hand-made records and stand-in files: no archive
(a quantized variant's stand-in .tflite is a tiny real uint8 model, made with TF's converter, as the sidecar's
preprocessing and labels are read from the file). Expected values come from the manifest's published figures,
the hand-made parity figures, LiteRT's view of the .tflite, keras' own class index file and hashlib over the
files the test writes."""
from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from pathlib import Path

import pytest

from convert import cards
from convert.evaluate.records import AccuracyRecord
from convert.guide import Accounting, Provenance
from convert.manifest import resolve
from convert.records import (QuantOutputs, ConversionFacts, Digests, FloatFigures, ParityRecord, QuantParity, Source,
                             TfliteFigures, TwinFigures, ValuesUsed)

V1Q, V2Q, V3Q = "mobilenet_v1_0.25_128_quant", "quantized_v2_96_35", "v3-small_224_1.0_uint8"
FLOAT = "0.35_96"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=None)
def tiny_tflite(rows: int, classes: int = 1000, scale: float = 1 / 128, zero_point: int = 128) -> bytes:
    """A real uint8 ``.tflite`` (TF's legacy converter, as the project's own): input [1, rows, rows, 3] quantized
    with ``scale`` and ``zero_point``, output ``classes`` uint8 probabilities (mean colour, a dense layer)."""
    import numpy as np
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, rows, rows, 3], name="input")
        fq = tf.quantization.fake_quant_with_min_max_args
        w = tf.constant(np.random.default_rng(classes).normal(size=(3, classes)).astype(np.float32))
        y = fq(tf.matmul(tf.reduce_mean(x, axis=[1, 2]), fq(w, min=-4.0, max=4.0, narrow_range=True)), min=-8, max=8)
        tf.nn.softmax(y, name="probs")
    with tempfile.TemporaryDirectory() as work:
        pb = Path(work) / "g.pb"
        pb.write_bytes(graph.as_graph_def().SerializeToString())
        converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(str(pb), ["input"], ["probs"],
                                                                        {"input": [1, rows, rows, 3]})
        converter.inference_type = tf.uint8
        converter.quantized_input_stats = {"input": (zero_point, 1 / scale)}
        return converter.convert()


def _files(out: Path, v, tflite_classes: int = 1000) -> dict[str, str]:
    """Write distinct stand-in bytes for every output of ``v`` (the .h5 pair; quantized: .keras, and a tiny
    real .tflite of the variant's input size)."""
    out.mkdir(parents=True, exist_ok=True)
    names = [v.keras_weights, v.keras_weights_no_top]
    if v.family.quantized:
        names += [v.family.twin_file(v), v.family.tflite_file(v)]
    for i, name in enumerate(names):
        data = tiny_tflite(v.rows, tflite_classes) if name.endswith(".tflite") else f"{name} #{i}".encode() * (i + 1)
        (out / name).write_bytes(data)
    return {name: _sha(out / name) for name in names}


def _facts(v, h5: dict[str, str]) -> ConversionFacts:
    return ConversionFacts(
        variant=v.name, family=v.family_key, stem=v.stem, alpha=v.alpha, rows=v.rows, kind=v.kind,
        minimalistic=v.minimalistic, files=h5,
        provenance=Provenance("v/model.ckpt-1", "combined", "/c/a.tgz", "3" * 64, None, "http://h/a.tgz"),
        values=ValuesUsed("auto", "ema", {"ema": 10, "raw": 5}), label_offset=1, classes=1000,
        counts=Accounting(100, 15, 0, 1, 10, {"ema": 10, "raw": 5}, "ema", 40), versions={"keras": "3"})


def _quant(v, rewrite: bool) -> QuantParity:
    floats = [FloatFigures(None, 2.5e-3, 1.5e-2, 4, True, no_top_max_abs_diff=3e-6)]
    if rewrite:
        floats.append(FloatFigures("gate_1/6", 1.25e-5, 1.5e-3, 4, True, constants=8, no_top_max_abs_diff=2e-6))
    return QuantParity(
        variant=v.name, inputs=4, images=["panda.jpg"], seed=7, reference="g/model.ckpt-9.meta", floats=floats,
        twin=[TwinFigures(None, 0.203125, 0.203125, 1.0, 4, True)],
        tflite=TfliteFigures(top1_agree=4, top1_ties=1, max_abs_dprob=0.0371, top5_identical=0.75,
                             top5_up_to_ties=1.0, archive_output="probabilities", input_scale=0.0078125,
                             input_zero_point=128, passed=True))


def _record(v, rewrite: bool = False) -> ParityRecord:
    return ParityRecord.of_quant(v, _quant(v, rewrite), Source("http://h/a.tgz", "3" * 64, "no pin", "ema 10"),
                                 Digests("a" * 64, "b" * 64), "2.21", "3.15", "2026-11-30T00:00:00+00:00", 0)


def _write(tmp_path: Path, name: str, rewrite: bool = False):
    v = resolve(name)
    digests = _files(tmp_path, v)
    h5 = {n: digests[n] for n in (v.keras_weights, v.keras_weights_no_top)}
    written = cards.write(tmp_path, v, _facts(v, h5), _record(v, rewrite) if v.family.quantized else None)
    return v, digests, written


def _sums(folder: Path) -> dict[str, str]:
    return {name: digest for digest, name in (line.split("  ") for line in (folder / "SHA256SUMS").read_text().splitlines())}


@pytest.mark.parametrize("name", [V1Q, V2Q, V3Q])
def test_sha256sums_and_card_list_every_quantized_output(tmp_path, name):
    v, digests, written = _write(tmp_path, name)
    sums = _sums(tmp_path)
    twin, tflite = f"{v.stem}.keras", f"{v.stem}.tflite"  # the names the issue gives the outputs
    for file in (v.keras_weights, v.keras_weights_no_top, twin, tflite):
        assert sums[file] == _sha(tmp_path / file)
    assert sums[written.card.name] == _sha(written.card) and sums[written.sidecar.name] == _sha(written.sidecar)
    assert written.sha256 == sums
    card = written.card.read_text()
    files = card.split("## Files")[1].split("## Source")[0]
    for file in (v.keras_weights, v.keras_weights_no_top, twin, tflite):
        assert f"- `{file}`  sha256 `{digests[file]}`" in files
    line = {f: next(li for li in files.splitlines() if li.startswith(f"- `{f}`")) for f in (v.keras_weights, twin, tflite)}
    assert "float start" in line[v.keras_weights] and "quantizers ignored" in line[v.keras_weights]
    assert "fine-tuning with quantization-awareness" in line[twin] and "[-1, 1]" in line[twin]
    assert "deployment" in line[tflite] and "scale 0.0078125, zero point 128" in line[tflite]
    # the sidecar holds the same: the outputs' sha256 and the three proofs, readable back
    side = json.loads(written.sidecar.read_text())
    assert side["quant"]["files"] == {twin: digests[twin], tflite: digests[tflite]}
    back = QuantOutputs.from_json(side["quant"])
    assert back.parity == _quant(v, False) and side["files"] == {n: digests[n] for n in v.family.keras_files(v)}


def test_v2_quantized_card_labels_the_float_siblings_figure(tmp_path):
    v, _, written = _write(tmp_path, V2Q)
    card = written.card.read_text()
    published = card.split("## Published figures")[1].split("## Parity")[0]
    row = _manifest_row("mobilenet_v2_quant.json", V2Q)  # top1 null, float_sibling_top1: the float model's
    assert row["top1"] is None and row["float_sibling_top1"] is not None
    assert "top-1 –, top-5 –" in published and "None" not in published
    assert (f"float sibling's top-1 {row['float_sibling_top1']} %" in published
            and "not this quantized model's" in published)
    side = json.loads(written.sidecar.read_text())
    assert side["card"]["published"]["top1"] is None
    assert side["card"]["published"]["float_sibling_top1"] == row["float_sibling_top1"]


def _manifest_row(file: str, stem: str) -> dict:
    """The manifest's row of ``stem``, read as plain JSON (not through convert.manifest)."""
    rows = json.loads((Path(__file__).parents[1] / "manifests" / file).read_text())["variants"]
    return next(r for r in rows if r["keras_weights"] == f"{stem}.h5")


@pytest.mark.parametrize("name, manifest", [(V1Q, "mobilenet_v1_quant.json"), (V3Q, "mobilenet_v3_quant.json")])
def test_v1_and_v3_quantized_cards_show_their_own_published_figures(tmp_path, name, manifest):
    """V1 _quant: the manifest's top-1 / top-5; V3 uint8: its top-1, no top-5 ("–")."""
    row = _manifest_row(manifest, name)
    top5 = "–" if row["top5"] is None else f"{row['top5']} %"
    card = _write(tmp_path, name)[2].card.read_text()
    published = card.split("## Published figures")[1].split("## Parity")[0]
    assert f"top-1 {row['top1']} %, top-5 {top5}" in published
    assert "float sibling" not in published and "None" not in published
    assert (row["top5"] is None) == name.startswith("v3-")


def test_quantized_card_shows_the_three_proofs(tmp_path):
    v, _, written = _write(tmp_path, V3Q, rewrite=True)
    parity = written.card.read_text().split("## Parity: three proofs")[1].split("## Measured accuracy")[0]
    assert "- pass on 4 inputs (seed 7); reference `g/model.ckpt-9.meta`" in parity
    assert "float .h5 vs the graph with every FakeQuant bypassed, as is: max |Δlogit| 2.50e-03 (tolerance 1.50e-02)" in parity
    assert ("gate_1/6 (8 constants): max |Δlogit| 1.25e-05 (tolerance 1.50e-03), top-1 4/4, no-top pooled features "
            "max |Δ| 2.00e-06, pass") in parity
    assert "twin .keras vs the archive's graph as is: 1.00 steps of the logit grid (step 0.203" in parity
    assert ("top-1 4/4 (ties 1), max |Δprob| 0.0371, top-5 identical 75 % (up to ties 100 %), "
            "archive outputs probabilities, pass") in parity


def card_blocks(card: str) -> list[str]:
    """The Python snippets of a card's "How to load" section, as printed."""
    load = card.split("## How to load")[1].split("## Licence")[0]
    return [block.split("```")[0] for block in load.split("```python\n")[1:]]


def test_quantized_card_has_a_load_example_per_output(tmp_path):
    v, _, written = _write(tmp_path, V2Q)
    blocks = card_blocks(written.card.read_text())
    assert len(blocks) == 4  # top .h5, no-top .h5, twin, .tflite
    assert ('keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights="quantized_v2_96_35.h5")'
            in blocks[0]) and 'preprocessing_for("quantized_v2_96_35.h5").load("panda.jpg")[None]' in blocks[0]
    assert ('include_top=False, pooling="avg", weights="quantized_v2_96_35_no_top.h5")' in blocks[1]
            and 'preprocessing_for("quantized_v2_96_35_no_top.h5").load(' in blocks[1])
    assert "import convert" in blocks[2] and 'keras.saving.load_model("quantized_v2_96_35.keras")' in blocks[2]
    assert blocks[2].index("import convert") < blocks[2].index("load_model")
    assert 'preprocessing_for("quantized_v2_96_35.keras").load("panda.jpg")[None]' in blocks[2]
    assert "from ai_edge_litert.interpreter import Interpreter" in blocks[3]
    assert 'Interpreter(model_path="quantized_v2_96_35.tflite")' in blocks[3]
    # the uint8 input comes from the API (crop and TF1 bilinear resize included), not from a PIL resize
    assert 'q = preprocessing_for("quantized_v2_96_35.tflite").load("panda.jpg")' in blocks[3]
    assert 'set_tensor(inp["index"], q[None])' in blocks[3] and "PIL" not in blocks[3] and "resize" not in blocks[3]
    assert 'labels="quantized_v2_96_35_labels.txt"' in blocks[3]
    for block in blocks:  # each is Python that compiles as printed, and applies its file's preprocessing
        compile(block, "<card>", "exec")
        assert "from convert.preprocessing import preprocessing_for" in block


def test_float_card_is_unchanged_by_the_quantized_half(tmp_path):
    v, digests, written = _write(tmp_path, FLOAT)
    card = written.card.read_text()
    assert "## Parity against the archive's own graph" in card and "three proofs" not in card
    assert ".keras" not in card and ".tflite" not in card and "float sibling" not in card
    assert f"top-1 {v.top1} %" in card and card.count("```python") == 2  # the top and the no-top .h5
    side = json.loads(written.sidecar.read_text())
    assert "quant" not in side and set(side["card"]) == {"url", "published", "load", "load_no_top", "preprocessing",
                                                         "accuracy", "licence"}
    assert set(_sums(tmp_path)) == {*digests, written.card.name, written.sidecar.name, "imagenet_labels.txt"}


def test_quantized_variant_without_its_twin_is_refused_and_nothing_written(tmp_path):
    v = resolve(V2Q)
    digests = _files(tmp_path, v)
    (tmp_path / v.family.tflite_file(v)).unlink()
    h5 = {n: digests[n] for n in (v.keras_weights, v.keras_weights_no_top)}
    with pytest.raises(FileNotFoundError, match=r"quantized_v2_96_35\.tflite is missing.*write_quant"):
        cards.write(tmp_path, v, _facts(v, h5), _record(v))
    assert not (tmp_path / "SHA256SUMS").exists() and not cards.sidecar_path(tmp_path, v).exists()


def test_accuracy_update_keeps_the_quantized_outputs_and_proofs(tmp_path):
    v, digests, first = _write(tmp_path, V2Q)
    before = json.loads(first.sidecar.read_text())
    acc = [AccuracyRecord(v.name, "twin", "slim", 10, 50.0, 80.0)]
    again = cards.update(tmp_path, v, acc)
    side = json.loads(again.sidecar.read_text())
    assert side["quant"] == before["quant"] and [AccuracyRecord.from_json(a) for a in side["accuracy"]] == acc
    assert side["accuracy"][0]["model"] == "twin" and side["accuracy"][0]["top1"] == 50.0
    card = again.card.read_text()
    assert "| twin | slim | 10 | 50.00 | 80.00 |" in card and "## Parity: three proofs" in card
    assert _sums(tmp_path)[f"{v.stem}.tflite"] == digests[f"{v.stem}.tflite"]
    # a new conversion with a different .tflite drops the accuracy measured on the old one
    other = tiny_tflite(v.rows, zero_point=127)
    (tmp_path / f"{v.stem}.tflite").write_bytes(other)
    h5 = {n: digests[n] for n in (v.keras_weights, v.keras_weights_no_top)}
    third = cards.write(tmp_path, v, _facts(v, h5), _record(v))
    side = json.loads(third.sidecar.read_text())
    assert "accuracy" not in side and side["preprocessing"][f"{v.stem}.tflite"]["zero_point"] == 127
    assert _sums(tmp_path)[f"{v.stem}.tflite"] == hashlib.sha256(other).hexdigest()


def test_a_sidecar_this_converter_cannot_read_is_named(tmp_path):
    """A sidecar that is not JSON, or whose accuracy entry lacks a field, is a ConversionError naming the file
    (the scripts print it and exit non-zero), not a traceback."""
    from convert.errors import ConversionError

    v, _, first = _write(tmp_path, V2Q)
    doc = json.loads(first.sidecar.read_text())
    first.sidecar.write_text(json.dumps({**doc, "accuracy": [{"model": "twin", "top1": 50.0}]}))
    with pytest.raises(ConversionError, match=rf"{first.sidecar.name} is not a sidecar.*lacks name"):
        cards.read_facts(tmp_path, v)
    first.sidecar.write_text("{not json")
    with pytest.raises(ConversionError, match=rf"{first.sidecar.name} is not a sidecar"):
        cards.read_facts(tmp_path, v)
