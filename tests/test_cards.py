"""Model cards, sidecars and SHA256SUMS of quantized variants (convert.cards), from hand-made records: no TF,
no archive. Expected values come from the manifest's published figures, the hand-made parity figures and
hashlib over the files the test writes."""
from __future__ import annotations

import hashlib
import json
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


def _files(out: Path, v) -> dict[str, str]:
    """Write distinct stand-in bytes for every output of ``v`` (the .h5 pair; quantized: .keras, .tflite)."""
    out.mkdir(parents=True, exist_ok=True)
    names = [v.keras_weights, v.keras_weights_no_top]
    if v.family.quantized:
        names += [v.family.twin_file(v), v.family.tflite_file(v)]
    for i, name in enumerate(names):
        (out / name).write_bytes(f"{name} #{i}".encode() * (i + 1))
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


def test_quantized_card_has_a_load_example_per_output(tmp_path):
    v, _, written = _write(tmp_path, V2Q)
    load = written.card.read_text().split("## How to load")[1].split("## Licence")[0]
    blocks = load.split("```python\n")[1:]
    assert len(blocks) == 3
    assert 'keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights="quantized_v2_96_35.h5")' in blocks[0]
    assert "import convert" in blocks[1] and 'keras.saving.load_model("quantized_v2_96_35.keras")' in blocks[1]
    assert blocks[1].index("import convert") < blocks[1].index("load_model")
    assert "from ai_edge_litert.interpreter import Interpreter" in blocks[2]
    assert 'Interpreter(model_path="quantized_v2_96_35.tflite")' in blocks[2] and "np.uint8" in blocks[2]
    for block in blocks:  # each is Python that compiles as printed
        compile(block.split("```")[0], "<card>", "exec")


def test_float_card_is_unchanged_by_the_quantized_half(tmp_path):
    v, digests, written = _write(tmp_path, FLOAT)
    card = written.card.read_text()
    assert "## Parity against the archive's own graph" in card and "three proofs" not in card
    assert ".keras" not in card and ".tflite" not in card and "float sibling" not in card
    assert f"top-1 {v.top1} %" in card and card.count("```python") == 1
    side = json.loads(written.sidecar.read_text())
    assert "quant" not in side and set(side["card"]) == {"url", "published", "load", "preprocessing", "licence"}
    assert set(_sums(tmp_path)) == {*digests, written.card.name, written.sidecar.name}


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
    (tmp_path / f"{v.stem}.tflite").write_bytes(b"other")
    h5 = {n: digests[n] for n in (v.keras_weights, v.keras_weights_no_top)}
    third = cards.write(tmp_path, v, _facts(v, h5), _record(v))
    assert "accuracy" not in json.loads(third.sidecar.read_text())
    assert _sums(tmp_path)[f"{v.stem}.tflite"] == hashlib.sha256(b"other").hexdigest()


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
