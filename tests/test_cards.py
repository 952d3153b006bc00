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


# --------------------------------------------------------------------------------------------------
# Preprocessing: the sidecar's field, the card's lines and accuracy

def _litert_input(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_input_details()[0]


@pytest.mark.parametrize("name", [FLOAT, "v3-small_224_1.0_float", V1Q, V2Q, V3Q])
def test_sidecar_preprocessing_field_round_trips_and_is_preprocessing_for_each_file(tmp_path, name):
    import numpy as np

    from convert.preprocessing import Preprocessing, preprocessing_for
    from convert.records import Sidecar

    v, digests, written = _write(tmp_path, name)
    side = json.loads(written.sidecar.read_text())
    field = side["preprocessing"]
    assert set(field) == set(digests)  # one entry per output file: .h5 pair (quantized: .keras, .tflite)
    back = Sidecar.from_json(side)
    assert back.to_json(side["card"]) == side  # the typed sidecar writes the same JSON back
    card = written.card.read_text().split("## Preprocessing: the accuracy you will get")[1].split("## Class names")[0]
    for file, entry in field.items():
        pre = Preprocessing.from_json(entry)
        assert back.preprocessing[file] == pre == preprocessing_for(tmp_path / file)
        assert f"- `{file}`: {pre.describe()}" in card  # the card states it, one line a file
        assert (pre.rows, pre.cols, pre.crop_fraction, pre.interpolation) == (v.rows, v.rows, 0.875, "bilinear_tf1")
    forms = {f: e["form"] for f, e in field.items()}
    h5 = "pixels" if v.family.keras_input_range == (0.0, 255.0) else "unit"  # keras' V3 rescales [0, 255] itself
    assert forms[v.keras_weights] == forms[v.keras_weights_no_top] == h5
    if v.family.quantized:
        tflite = tmp_path / v.family.tflite_file(v)
        detail = _litert_input(tflite)  # the file's own input quantization, as LiteRT reads it
        assert forms[v.family.twin_file(v)] == "unit" and forms[tflite.name] == "uint8"
        assert np.float32(field[tflite.name]["scale"]) == np.float32(detail["quantization"][0])
        assert field[tflite.name]["zero_point"] == detail["quantization"][1]
        assert [1, v.rows, v.rows, 3] == list(detail["shape"])


def test_a_sidecar_without_the_new_sections_still_loads_and_update_adds_preprocessing(tmp_path):
    from convert.records import Sidecar

    v, _, written = _write(tmp_path, V2Q)
    doc = json.loads(written.sidecar.read_text())
    old = {k: val for k, val in doc.items() if k not in ("preprocessing", "labels")}  # as written before them
    written.sidecar.write_text(json.dumps(old))
    back = Sidecar.from_json(old)
    assert back.preprocessing == {} and back.labels is None and back.facts.variant == v.name
    again = cards.update(tmp_path, v, [AccuracyRecord(v.name, "tflite", "slim", 10, 40.0, 70.0)])
    side = json.loads(again.sidecar.read_text())
    assert side["preprocessing"] == doc["preprocessing"]


def test_card_states_the_top1_you_will_get(tmp_path):
    v, _, written = _write(tmp_path, FLOAT)
    section = written.card.read_text().split("## Preprocessing: the accuracy you will get")[1].split("## Class")[0]
    assert f"With this preprocessing you get top-1 {v.top1} % (published" in section
    assert "Not measured here yet" in section
    for figure in ("costs 3 to 6 points of top-1", "86.5 %", "81.7 %", "45.5 vs 39.9", "74.8 vs 71.6",
                   "keras-team/keras#16982", "keras-team/tf-keras#443", "tensorflow/tensorflow#48066", "#46105",
                   "mlcommons/inference#61", "69.97 %", "67.70 %"):
        assert figure in section
    acc = [AccuracyRecord(v.name, "converted", "slim", 20, 70.0, 90.0, dataset="/data/ilsvrc2012/val"),
           AccuracyRecord(v.name, "slim", "slim", 20, 70.0, 90.0),
           AccuracyRecord(v.name, "converted", "keras", 20, 65.0, 85.0)]
    section = cards.update(tmp_path, v, acc).card.read_text().split("## Preprocessing: the")[1].split("## Class")[0]
    assert ("Measured here with this preprocessing (`convert evaluate`): the converted .h5 top-1 70.00 % on 20 "
            "images of `val`; the archive's slim graph top-1 70.00 % on 20 images.") in section
    assert "Keras' documented preprocessing instead: the converted .h5 top-1 65.00 % on 20 images." in section
    # V2 quantized: the catalogue's only figure is the float sibling's, said so
    v2q, _, written = _write(tmp_path / "q", V2Q)
    section = written.card.read_text().split("## Preprocessing: the")[1]
    assert (f"publishes no top-1 for this quantized model; with this preprocessing its float sibling gets top-1 "
            f"{v2q.float_sibling_top1} %") in section


# --------------------------------------------------------------------------------------------------
# Labels: imagenet_labels.txt, a .tflite's labels file, a user's names, decode_predictions

KERAS_MD5 = "c2c37ea517e94d9795004a39431a14cb"  # keras.applications.imagenet_utils' file_hash of its class index
CLASS_INDEX = Path(__file__).parents[1] / "convert" / "data" / "imagenet_class_index.json"


def _keras_names() -> list[str]:
    """The 1000 names of keras' own class index (the shipped copy, checked against keras' md5), read here."""
    data = CLASS_INDEX.read_bytes()
    assert hashlib.md5(data).hexdigest() == KERAS_MD5
    doc = json.loads(data)
    return [doc[str(i)][1] for i in range(1000)]


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


def test_imagenet_labels_beside_the_weights_and_tflite_labels_in_output_order(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    v, _, written = _write(tmp_path, V1Q)
    labels = tmp_path / "imagenet_labels.txt"
    assert _lines(labels) == _keras_names()  # 1000 lines, line k = keras class k's name
    tflite = tmp_path / v.family.tflite_file(v)
    own = tmp_path / f"{v.stem}_labels.txt"  # named after the .tflite: many variants share weights/
    outputs = Interpreter(model_path=str(tflite)).get_output_details()[0]["shape"]
    assert len(_lines(own)) == outputs[-1] == 1000 and _lines(own) == _keras_names()
    sums = _sums(tmp_path)
    assert sums["imagenet_labels.txt"] == _sha(labels) and sums[own.name] == _sha(own)
    side = json.loads(written.sidecar.read_text())["labels"]
    assert side["source"] == "imagenet" and side["files"][own.name] == {"sha256": _sha(own), "classes": 1000}
    assert side["outputs"] == {v.keras_weights: "imagenet_labels.txt", f"{v.stem}.keras": "imagenet_labels.txt",
                               tflite.name: own.name}
    card = written.card.read_text().split("## Class names")[1].split("## How to load")[0]
    assert f"- `{own.name}`  sha256 `{_sha(own)}`: 1000 names" in card and f"output k of `{tflite.name}`" in card
    # written once per folder: a second variant in the same folder leaves the file as it is
    before = labels.stat()
    _write(tmp_path, FLOAT)
    after = labels.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_tflite_that_keeps_the_background_class_gets_it_first(tmp_path):
    """A 1001-class .tflite (as Google's own files output slim's classes): its labels file follows its output."""
    v = resolve(V2Q)
    digests = _files(tmp_path, v, tflite_classes=1001)
    cards.write(tmp_path, v, _facts(v, {n: digests[n] for n in v.family.keras_files(v)}), _record(v))
    assert _lines(tmp_path / f"{v.stem}_labels.txt") == ["background", *_keras_names()]
    assert _lines(tmp_path / "imagenet_labels.txt") == _keras_names()


def _user_variant(quantized: bool = False):
    """A stand-in for a user checkpoint's conversion: a manifest variant under other file names."""
    import dataclasses

    v = resolve(V2Q if quantized else FLOAT)
    return dataclasses.replace(v, keras_weights="flowers.h5", keras_weights_no_top="flowers_no_top.h5")


def test_a_user_checkpoint_gets_its_own_names(tmp_path):
    import dataclasses

    from convert.labels import LabelsError

    v = _user_variant()
    names = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    digests = _files(tmp_path, v)
    facts = dataclasses.replace(_facts(v, digests), classes=5, label_offset=1)
    written = cards.write(tmp_path, v, facts, labels=["background", *names])  # slim's background is dropped
    assert _lines(tmp_path / "flowers_labels.txt") == names and not (tmp_path / "imagenet_labels.txt").exists()
    side = json.loads(written.sidecar.read_text())["labels"]
    assert side == {"source": "user", "files": {"flowers_labels.txt": {"sha256": _sha(tmp_path / "flowers_labels.txt"),
                                                                        "classes": 5}},
                    "outputs": {"flowers.h5": "flowers_labels.txt"}}
    assert _sums(tmp_path)["flowers_labels.txt"] == _sha(tmp_path / "flowers_labels.txt")
    assert "the user's class names" in written.card.read_text()
    # re-verification (labels=None) keeps the user's names; a wrong count is refused before anything is written
    again = cards.write(tmp_path, v, facts)
    assert json.loads(again.sidecar.read_text())["labels"] == side
    _files(tmp_path / "other", v)
    with pytest.raises(LabelsError, match="3 class names for an output of 5 classes"):
        cards.write(tmp_path / "other", v, facts, labels=names[:3])
    assert {p.name for p in (tmp_path / "other").iterdir() if not p.name.startswith(".")} == {"flowers.h5",
                                                                                             "flowers_no_top.h5"}
    # no names and a head that is not ImageNet's: no labels file, the card says how to add them
    _files(tmp_path / "seven", v)
    card = cards.write(tmp_path / "seven", v, dataclasses.replace(facts, classes=7)).card.read_text()
    assert "7 classes have no names" in card and "--labels FILE" in card
    assert not list((tmp_path / "seven").glob("*labels.txt"))


def test_a_quantized_user_checkpoint_labels_its_tflite_too(tmp_path):
    import dataclasses

    v = _user_variant(quantized=True)
    names = [f"class {i}" for i in range(1000)]
    digests = _files(tmp_path, v)
    facts = _facts(v, {n: digests[n] for n in (v.keras_weights, v.keras_weights_no_top)})
    written = cards.write(tmp_path, v, facts, _record(v), labels=names)
    side = json.loads(written.sidecar.read_text())["labels"]
    tflite = v.family.tflite_file(v)
    assert side["outputs"] == {"flowers.h5": "flowers_labels.txt", v.family.twin_file(v): "flowers_labels.txt",
                               tflite: f"{Path(tflite).stem}_labels.txt"}
    assert _lines(tmp_path / "flowers_labels.txt") == _lines(tmp_path / f"{Path(tflite).stem}_labels.txt") == names


def test_decode_predictions_offline_as_keras_own(tmp_path, monkeypatch):
    """Ours, with every socket refused, returns what keras' own decode_predictions returns when Keras finds
    its class index in its cache (KERAS_HOME holding a copy of keras' file: get_file checks its md5 and does
    not download), run in a separate process."""
    import os
    import socket
    import subprocess
    import sys

    import numpy as np

    from convert.labels import LabelsError, decode_predictions

    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(1000), size=3).astype(np.float32)
    np.save(tmp_path / "probs.npy", probs)
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / "imagenet_class_index.json").write_bytes(CLASS_INDEX.read_bytes())
    code = ("import json, sys, numpy as np\n"
            "from keras.applications.imagenet_utils import decode_predictions\n"
            "out = decode_predictions(np.load(sys.argv[1]), top=5)\n"
            "print(json.dumps([[[w, n, float(s)] for w, n, s in row] for row in out]))")
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "probs.npy")], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = [[tuple(t) for t in row] for row in json.loads(done.stdout.strip().splitlines()[-1])]

    def refuse(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    ours = decode_predictions(probs, top=5)
    assert ours == theirs and ours[0][0][0].startswith("n") and len(ours[0]) == 5
    # a labels file (a .tflite's, 1001 classes with background) or a list: (class index, name, score)
    labels = tmp_path / "labels.txt"
    labels.write_text("background\n" + "\n".join(_keras_names()) + "\n")
    wide = np.concatenate([np.zeros((3, 1), np.float32), probs], axis=1)
    by_file = decode_predictions(wide, top=5, labels=labels)
    assert [[(n, s) for _, n, s in row] for row in by_file] == [[(n, s) for _, n, s in row] for row in theirs]
    assert [[i for i, _, _ in row] for row in by_file] == [[int(np.argsort(p)[-1 - j]) + 1 for j in range(5)]
                                                           for p in probs]
    with pytest.raises(LabelsError, match=r"\[samples, 1000\].*got shape \[3, 1001\]"):
        decode_predictions(wide)
