"""The metadata next to converted weights: the JSON sidecar, the model card (``…_card.md``) and
``SHA256SUMS``; this module is the one writer of all three.

Per variant the three are written once, at the end of its conversion (:func:`write`: the conversion
facts, provenance, values used, versions, and the parity figures), and again only by an accuracy
evaluation (:func:`update`); the card is rendered from the sidecar's data each time, so the two always
hold the same data.

A quantized variant (``v1-quant``, ``v2-quant``, ``v3-quant``) has two more outputs beside its .h5 files, the
fake-quant twin ``<stem>.keras`` and the 8-bit ``<stem>.tflite``: the sidecar's ``quant`` section
(:class:`~convert.records.QuantOutputs`, the sidecar's ``quant``) holds their sha256 and the three parity proofs, SHA256SUMS lists them, and the card
says what each file is for and how to load it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from .fsutil import atomic_write_bytes, file_lock, sha256_file
from .errors import ConversionError
from .evaluate.records import AccuracyRecord
from .records import ConversionFacts, ParityRecord, ParitySummary, QuantOutputs, QuantParity, Sidecar
from .timing import timed

SUMS_FILENAME = "SHA256SUMS"
LICENCE = ("The original checkpoints are published by Google in tensorflow/models under the Apache License 2.0 "
           "(https://www.apache.org/licenses/LICENSE-2.0); these weights are a format conversion of them.")


def sidecar_path(out_dir: str | Path, variant) -> Path:
    """The JSON sidecar of a variant's converted files (the top file's name with ``.json``)."""
    return Path(out_dir) / (Path(variant.keras_weights).stem + ".json")


def card_path(out_dir: str | Path, variant) -> Path:
    return Path(out_dir) / (Path(variant.keras_weights).stem + "_card.md")


def read_sidecar(out_dir: str | Path, variant) -> dict | None:
    path = sidecar_path(out_dir, variant)
    return json.loads(path.read_text()) if path.is_file() else None


def update_sha256sums(out_dir: Path, digests: dict[str, str]) -> Path:
    """Merge ``{file name: sha256}`` into ``out_dir/SHA256SUMS`` (``sha256sum -c`` format), atomically."""
    sums = Path(out_dir) / SUMS_FILENAME
    with file_lock(Path(out_dir) / f".{SUMS_FILENAME}.lock"):
        entries: dict[str, str] = {}
        if sums.is_file():
            for line in sums.read_text().splitlines():
                digest, _, name = line.partition("  ")
                if digest and name:
                    entries[name] = digest
        entries.update(digests)
        atomic_write_bytes(sums, "".join(f"{entries[n]}  {n}\n" for n in sorted(entries)).encode())
    return sums


def _published(variant) -> dict:
    out = {"macs_m": variant.macs_m, "params_m": variant.params_m, "top1": variant.top1, "top5": variant.top5}
    if variant.family.quantized:  # V2 quantized: the catalogue's figure is the float sibling's (else null)
        out["float_sibling_top1"] = variant.float_sibling_top1
    return out


def _card_section(variant) -> dict:
    out = {"url": variant.url, "published": _published(variant), "load": variant.family.keras_call(variant),
           "preprocessing": PREPROCESSING, "licence": LICENCE}
    if variant.family.quantized:
        out.update(load_twin=twin_snippet(variant), load_tflite=tflite_snippet(variant))
    return out


def quant_output_names(variant) -> tuple[str, str]:
    """A quantized variant's (twin .keras, .tflite) file names, as its family names them."""
    return variant.family.twin_file(variant), variant.family.tflite_file(variant)


def _quant_outputs(out_dir: Path, variant, parity: ParityRecord | None) -> QuantOutputs | None:
    """The twin's and the .tflite's sha256 (both written by the ``write_quant`` stage before this) and
    the parity record's three proofs; None for a float variant."""
    if not variant.family.quantized:
        return None
    names = quant_output_names(variant)
    missing = [n for n in names if not (out_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{variant.name} is quantized but {', '.join(missing)} is missing from {out_dir} "
                                f"(the pipeline's write_quant stage writes the .keras twin and the .tflite); "
                                f"nothing written")
    return QuantOutputs({n: sha256_file(out_dir / n) for n in names}, parity and parity.quant)


@dataclass(frozen=True)
class Written:
    """The metadata files :func:`write` wrote, with the sha256 of every file SHA256SUMS now lists for them."""

    sidecar: Path
    card: Path
    sha256sums: Path
    sha256: dict[str, str]  # file name -> digest (the .h5 files, quantized: .keras and .tflite, the sidecar, the card)


def read_facts(out_dir: str | Path, variant) -> Sidecar | None:
    """The typed sidecar of a variant's converted files, or None when there is none."""
    try:
        doc = read_sidecar(out_dir, variant)
        return None if doc is None else Sidecar.from_json(doc)
    except (ValueError, TypeError) as exc:
        raise ConversionError(f"{sidecar_path(out_dir, variant)} is not a sidecar this converter reads ({exc}); "
                              f"convert {variant.name} again (load_weights.py or convert run --force)") from None


def _save(out_dir: Path, variant, sidecar: Sidecar) -> Written:
    """Write the sidecar and card, then record them, the .h5 files and (quantized) the .keras and .tflite in
    SHA256SUMS (each file once)."""
    side_path, card = sidecar_path(out_dir, variant), card_path(out_dir, variant)
    doc = sidecar.to_json(_card_section(variant))
    atomic_write_bytes(side_path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
    atomic_write_bytes(card, render_card(variant, sidecar).encode())
    quant = sidecar.quant
    digests = {**sidecar.facts.files, **(quant.files if quant else {}), side_path.name: sha256_file(side_path),
               card.name: sha256_file(card)}
    return Written(side_path, card, update_sha256sums(out_dir, digests), digests)


@timed("report")
def write(out_dir: str | Path, variant, facts: ConversionFacts, parity: ParityRecord | None = None) -> Written:
    """The end of a variant's conversion: write its sidecar and model card, and update ``SHA256SUMS``,
    once each. An accuracy section already there is kept when it is about the same files (.h5; quantized:
    also .keras and .tflite; new weights invalidate it)."""
    out_dir = Path(out_dir)
    quant = _quant_outputs(out_dir, variant, parity)
    with file_lock(out_dir / f".{sidecar_path(out_dir, variant).name}.lock"):
        old = read_facts(out_dir, variant)
        same = (old is not None and old.facts.files == facts.files
                and (old.quant and old.quant.files) == (quant and quant.files))
        accuracy = old.accuracy if same else []
        return _save(out_dir, variant, Sidecar(facts, parity and ParitySummary.of(parity), accuracy, quant))


@timed("report")
def update(out_dir: str | Path, variant, accuracy: list[AccuracyRecord]) -> Written:
    """Put measured accuracy records into the sidecar and card of weights converted earlier."""
    out_dir = Path(out_dir)
    with file_lock(out_dir / f".{sidecar_path(out_dir, variant).name}.lock"):
        old = read_facts(out_dir, variant)
        if old is None:
            raise FileNotFoundError(f"no converted weights of {variant.name} in {out_dir} "
                                    f"({sidecar_path(out_dir, variant).name} is missing); run load_weights.py "
                                    f"{variant.name} first")
        return _save(out_dir, variant, dataclasses.replace(old, accuracy=list(accuracy)))


PREPROCESSING = ("For the published accuracy, preprocess as slim's evaluation does: decode to float in [0, 1], "
                 "central crop of 87.5 %, bilinear resize to rows x rows (TF1 semantics), then (x - 0.5) * 2, "
                 "i.e. inputs in [-1, 1] (MobileNetV3 with include_preprocessing=False; with keras' default "
                 "include_preprocessing=True, feed the same image in [0, 255]).")


def _fmt(x, spec=".2e") -> str:
    return "–" if x is None else format(x, spec)


def _pct(x) -> str:
    """A published percentage, or "–" when the catalogue gives none."""
    return "–" if x is None else f"{x} %"


# ----------------------------------------------------------------------------- quantized variants
def twin_snippet(variant) -> str:
    """Python that loads the fake-quant twin (``.keras``) and runs it (the card and the README show it)."""
    twin = variant.family.twin_file(variant)
    return "\n".join([
        "import keras",
        "import numpy as np",
        "import convert  # registers the twin's fake-quant layers with Keras (mobilenet-tf1-to-keras: pip install <project folder>)",
        "",
        f'model = keras.saving.load_model("{twin}")',
        f"x = np.random.default_rng(0).uniform(-1, 1, (1, {variant.rows}, {variant.rows}, 3)).astype(\"float32\")",
        "probs = model.predict(x)  # input float in [-1, 1]; output (1, 1000) class probabilities",
        "# fine-tune with quantization-awareness: gradients pass the quantizers straight through",
        'model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")'])


def tflite_snippet(variant, scale: float | None = None, zero_point: int | None = None) -> str:
    """Python that runs the 8-bit ``.tflite`` with LiteRT on a uint8 image (``scale``/``zero_point``: the
    input quantization measured by parity, shown as a comment; the code reads it from the file)."""
    known = "" if scale is None else f"  # ({scale:.7g}, {zero_point}), as the archive's .tflite"
    return "\n".join([
        "import numpy as np",
        "from PIL import Image",
        "from ai_edge_litert.interpreter import Interpreter",
        "",
        f'interpreter = Interpreter(model_path="{variant.family.tflite_file(variant)}")',
        "interpreter.allocate_tensors()",
        "inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]",
        f"scale, zero_point = inp[\"quantization\"]{known}",
        f'image = Image.open("panda.jpg").convert("RGB").resize(({variant.rows}, {variant.rows}))',
        "x = np.asarray(image, np.float32) / 127.5 - 1.0  # [-1, 1], as the graph's input",
        "q = np.clip(np.round(x / scale) + zero_point, 0, 255).astype(np.uint8)  # the uint8 image, as TFLite quantizes",
        "interpreter.set_tensor(inp[\"index\"], q[None])",
        "interpreter.invoke()",
        "out_scale, out_zero_point = out[\"quantization\"]",
        "probs = (interpreter.get_tensor(out[\"index\"])[0].astype(np.float32) - out_zero_point) * out_scale",
        "print(probs.argmax())  # the class index (1000 classes, as keras.applications)"])


def _quant_files(variant, sidecar: Sidecar, quant: QuantOutputs) -> list[str]:
    """Every file of a quantized variant with its sha256 and what it is for."""
    top, no_top = variant.family.keras_files(variant)
    twin, tflite = quant_output_names(variant)
    sibling = variant.family.keras_constructor(variant)
    purpose = {
        top: f"a float start: the float weights of the QAT checkpoint (quantizers ignored) for "
             f"`keras.applications.{sibling}`, the float sibling's constructor",
        no_top: "the same float weights without the classifier (`include_top=False`)",
        twin: "fine-tuning with quantization-awareness: the fake-quant Keras 3 twin (BN folded, the archive's "
              "own ranges); input float in [-1, 1], output 1000-class probabilities",
        tflite: "deployment: 8-bit TFLite, uint8 input quantized as the archive's own .tflite" + (
            f" (scale {quant.parity.tflite.input_scale:.7g}, zero point {quant.parity.tflite.input_zero_point})"
            if quant.parity and quant.parity.tflite else "") + ", 1000 classes"}
    files = {**sidecar.facts.files, **quant.files}
    return [f"- `{name}`  sha256 `{digest}`: {purpose.get(name, 'converted file')}"
            for name, digest in sorted(files.items())]


def _quant_published(variant) -> list[str]:
    lines = [f"MACs {_fmt(variant.macs_m, '')} M, parameters {_fmt(variant.params_m, '')} M, "
             f"top-1 {_pct(variant.top1)}, top-5 {_pct(variant.top5)} (this quantized model)"]
    if variant.top1 is None and variant.float_sibling_top1 is not None:
        lines.append(f"The catalogue publishes no top-1 for this quantized archive; its row gives the float "
                     f"sibling's figure: float sibling's top-1 {_pct(variant.float_sibling_top1)} (the float "
                     f"model's, not this quantized model's).")
    return lines


def _quant_parity(variant, parity: ParitySummary | None, q: QuantParity | None) -> list[str]:
    if parity is None or q is None:
        return ["- not verified yet (`python -m convert run " + variant.name + "`)"]
    lines = [f"- {'pass' if q.passed else 'FAIL'} on {q.inputs} inputs (seed {q.seed}); reference `{q.reference}`; "
             f"verified {parity.verified_at or '–'}"]
    for f in q.floats:
        graph = "the graph with every FakeQuant bypassed" + (f", {f.rewrite} ({f.constants} constants)"
                                                              if f.rewrite else ", as is")
        lines.append(f"- float .h5 vs {graph}: max |Δlogit| {_fmt(f.max_abs_dlogit)} (tolerance "
                     f"{_fmt(f.tolerance)}), top-1 {f.top1_agree}/{q.inputs}, no-top pooled features max |Δ| "
                     f"{_fmt(f.no_top_max_abs_diff)}, {'pass' if f.passed else 'FAIL'}")
    if q.no_top_file_mismatches:
        lines.append(f"- the no-top .h5 differs from the no-top model of the top .h5 in: "
                     f"{', '.join(q.no_top_file_mismatches)} (FAIL)")
    for t in q.twin:
        graph = "the archive's graph " + (f"rewritten ({t.rewrite})" if t.rewrite else "as is")
        lines.append(f"- twin .keras vs {graph}: {t.max_steps:.2f} steps of the logit grid (step "
                     f"{t.logit_step:.3g}, max |Δlogit| {_fmt(t.max_abs_dlogit)}), top-1 {t.top1_agree}/{q.inputs}, "
                     f"{'pass' if t.passed else 'FAIL'}")
    t = q.tflite
    if t is not None:
        lines.append(f"- .tflite vs the archive's .tflite (same uint8 inputs, scale {t.input_scale:.7g}, zero point "
                     f"{t.input_zero_point}): top-1 {t.top1_agree}/{q.inputs} (ties {t.top1_ties}), max |Δprob| "
                     f"{t.max_abs_dprob:.4f}, top-5 identical {t.top5_identical * 100:.0f} % (up to ties "
                     f"{t.top5_up_to_ties * 100:.0f} %), archive outputs {t.archive_output}, "
                     f"{'pass' if t.passed else 'FAIL'}")
    lines.append("- TFLite and TF round integers differently (about one output step): these are measured "
                 "figures, not a claim of bit equality.")
    return lines


def _quant_load(variant, quant: QuantOutputs) -> list[str]:
    t = quant.parity.tflite if quant.parity else None
    return ["Float start (the float sibling's keras.applications constructor; inputs as below):", "",
            "```python", "import keras", variant.family.keras_call(variant), "```", "",
            "Fine-tuning with quantization-awareness (the twin):", "", "```python", twin_snippet(variant), "```", "",
            "Deployment (LiteRT, `pip install ai-edge-litert`):", "",
            "```python", tflite_snippet(variant, t and t.input_scale, t and t.input_zero_point), "```", ""]


def render_card(variant, sidecar: Sidecar) -> str:
    """The model card (``sidecar.quant``: a quantized variant's outputs and proofs; None for a float variant)."""
    facts, prov, v, quant = sidecar.facts, sidecar.facts.provenance, variant, sidecar.quant
    lines = [f"# {variant.family.title} {variant.name}: Keras weights converted from TF-slim", "",
             "## Files", ""]
    if quant is None:
        lines += [f"- `{name}`  sha256 `{digest}`" for name, digest in sorted(facts.files.items())]
    else:
        lines += _quant_files(variant, sidecar, quant)
        lines += ["", f"`{SUMS_FILENAME}` lists every one of these files (and this card and the sidecar)."]
    lines += ["", "## Source", "",
              f"- Archive: {variant.url}",
              f"- Archive sha256: `{prov.archive_sha256 or '–'}` (manifest pin: {prov.pin_status})",
              f"- Checkpoint read: `{prov.checkpoint}` ({prov.checkpoint_role})",
              f"- Values: {facts.values.summary() or '–'} (EMA values are what slim's evaluation restores with "
              f"`--moving_average_decay`)", "",
              "## Published figures (slim README)", ""]
    if quant is None:
        lines += [f"MACs {v.macs_m} M, parameters {v.params_m} M, top-1 {v.top1} %, "
                  f"top-5 {'–' if v.top5 is None else str(v.top5) + ' %'}", ""]
    else:
        lines += _quant_published(v) + [""]
    parity = sidecar.parity
    if quant is not None:
        lines += ["## Parity: three proofs", ""] + _quant_parity(variant, parity, quant.parity)
    else:
        lines += ["## Parity against the archive's own graph", ""]
    if quant is None and parity:
        lines.append(f"- {'pass' if parity.passed else 'FAIL'}: max |Δlogit| {_fmt(parity.max_abs_dlogit)} "
                     f"(tolerance {_fmt(parity.tolerance)}), top-1 {parity.top1_agree}/{parity.inputs}, "
                     f"top-5 {parity.top5_agree}/{parity.inputs}; reference {parity.reference} "
                     f"`{parity.reference_graph}`; frozen graph matches: {parity.frozen}")
        for name, r in parity.rewrites.items():
            lines.append(f"- {name} ({r.description}): max |Δlogit| {_fmt(r.max_abs_dlogit)} "
                         f"(tolerance {_fmt(r.tolerance)}), {'pass' if r.passed else 'FAIL'}")
    elif quant is None:
        lines.append("- not verified yet (`verify.py " + variant.name + "`)")
    lines += ["", "## Measured accuracy", ""]
    if sidecar.accuracy:
        lines += ["| model | preprocessing | images | top-1 | top-5 |", "|---|---|---|---|---|"]
        lines += [f"| {a.model} | {a.preprocessing} | {a.images} | {_fmt(a.top1, '.2f')} | "
                  f"{_fmt(a.top5, '.2f')} |" for a in sidecar.accuracy]
    else:
        lines.append("- not evaluated (`python -m convert evaluate " + variant.name + " --imagenet-dir DIR`)")
    lines += ["", "## How to load", ""]
    if quant is None:
        lines += ["```python", "import keras", variant.family.keras_call(variant), "```", ""]
    else:
        lines += _quant_load(variant, quant)
    lines += [PREPROCESSING, "", "## Licence", "", LICENCE, ""]
    return "\n".join(lines)
