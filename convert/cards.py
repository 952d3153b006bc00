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

Every output file's input preprocessing is the sidecar's ``preprocessing`` field (file name ->
:meth:`convert.preprocessing.Preprocessing.to_json`, what ``preprocessing_for`` reads back), one line a file
on the card, and every load snippet on the card applies it through ``preprocessing_for(<file>).load(...)``.
The class names are labels files beside the weights (:mod:`convert.labels`): ``imagenet_labels.txt`` (once
per folder), a ``.tflite``'s ``<stem>_labels.txt`` in the order of its output, or a user checkpoint's own
names (``write(..., labels=names)``); the sidecar's ``labels`` section and SHA256SUMS list them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import labels as class_names
from .fsutil import atomic_write_bytes, file_lock, sha256_file
from .errors import ConversionError
from .evaluate.records import AccuracyRecord
from .preprocessing import Preprocessing, sidecar_field
from .records import (ConversionFacts, Labels, LabelsFile, ParityRecord, ParitySummary, QuantOutputs, QuantParity,
                      Sidecar)
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


def update_sha256sums(out_dir: Path, digests: dict[str, str], removed: Sequence[str] = ()) -> Path:
    """Merge ``{file name: sha256}`` into ``out_dir/SHA256SUMS`` (``sha256sum -c`` format), atomically; the
    entries of ``removed`` (files deleted) dropped."""
    sums = Path(out_dir) / SUMS_FILENAME
    with file_lock(Path(out_dir) / f".{SUMS_FILENAME}.lock"):
        entries: dict[str, str] = {}
        if sums.is_file():
            for line in sums.read_text().splitlines():
                digest, _, name = line.partition("  ")
                if digest and name:
                    entries[name] = digest
        entries.update(digests)
        for name in removed:
            entries.pop(name, None)
        atomic_write_bytes(sums, "".join(f"{entries[n]}  {n}\n" for n in sorted(entries)).encode())
    return sums


def _published(variant) -> dict:
    out = {"macs_m": variant.macs_m, "params_m": variant.params_m, "top1": variant.top1, "top5": variant.top5}
    if variant.family.quantized:  # V2 quantized: the catalogue's figure is the float sibling's (else null)
        out["float_sibling_top1"] = variant.float_sibling_top1
    return out


def _card_section(variant, sidecar: Sidecar) -> dict:
    out = {"url": variant.url, "published": _published(variant), "load": h5_snippet(variant),
           "load_no_top": no_top_snippet(variant),
           "preprocessing": {n: p.describe() for n, p in sorted(sidecar.preprocessing.items())},
           "accuracy": " ".join(_accuracy_lines(variant, sidecar)), "licence": LICENCE}
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
    # file name -> digest (the .h5 files, quantized: .keras and .tflite, the labels files, the sidecar, the card)
    sha256: dict[str, str]


def read_facts(out_dir: str | Path, variant) -> Sidecar | None:
    """The typed sidecar of a variant's converted files, or None when there is none."""
    try:
        doc = read_sidecar(out_dir, variant)
        return None if doc is None else Sidecar.from_json(doc)
    except (ValueError, TypeError) as exc:
        raise ConversionError(f"{sidecar_path(out_dir, variant)} is not a sidecar this converter reads ({exc}); "
                              f"convert {variant.name} again (load_weights.py or convert run --force)") from None


def _save(out_dir: Path, variant, sidecar: Sidecar) -> Written:
    """Write the sidecar and card, then record them, the .h5 files, (quantized) the .keras and .tflite and the
    labels files in SHA256SUMS (each file once)."""
    side_path, card = sidecar_path(out_dir, variant), card_path(out_dir, variant)
    doc = sidecar.to_json(_card_section(variant, sidecar))
    atomic_write_bytes(side_path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
    atomic_write_bytes(card, render_card(variant, sidecar).encode())
    quant, labels = sidecar.quant, sidecar.labels
    digests = {**sidecar.facts.files, **(quant.files if quant else {}),
               **({n: f.sha256 for n, f in labels.files.items()} if labels else {}),
               side_path.name: sha256_file(side_path), card.name: sha256_file(card)}
    return Written(side_path, card, update_sha256sums(out_dir, digests), digests)


@timed("report")
def write(out_dir: str | Path, variant, facts: ConversionFacts, parity: ParityRecord | None = None,
          labels: Sequence[str] | None = None) -> Written:
    """The end of a variant's conversion: write its sidecar and model card, and update ``SHA256SUMS``,
    once each. An accuracy section already there is kept when it is about the same files (.h5; quantized:
    also .keras and .tflite; new weights invalidate it).

    The sidecar's ``preprocessing`` field is each output file's (a ``.tflite``'s read from the file, so
    ``write_quant`` runs first). ``labels``: a user checkpoint's class names in the order of its checkpoint's
    classes (``facts.classes`` names, or ``facts.classes + facts.label_offset`` with slim's background
    first, which is dropped), written as ``<top stem>_labels.txt`` (and a ``.tflite``'s ``<stem>_labels.txt``);
    None: the names the same files had (a user's, kept on re-verification), else, for a 1000-class head,
    the ImageNet names (``imagenet_labels.txt``, once per folder), else no class names."""
    out_dir = Path(out_dir)
    quant = _quant_outputs(out_dir, variant, parity)
    with file_lock(out_dir / f".{sidecar_path(out_dir, variant).name}.lock"):
        old = read_facts(out_dir, variant)
        same = (old is not None and old.facts.files == facts.files
                and (old.quant and old.quant.files) == (quant and quant.files))
        accuracy = old.accuracy if same else []
        kept = old.labels if same and labels is None and old.labels and old.labels.source == "user" else None
        sidecar = Sidecar(facts, parity and ParitySummary.of(parity), accuracy, quant,
                          preprocessing=_preprocessing(out_dir, variant),
                          labels=kept if kept and _intact(out_dir, kept) else _write_labels(out_dir, variant, facts, labels))
        return _save(out_dir, variant, sidecar)


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
        return _save(out_dir, variant, dataclasses.replace(
            old, accuracy=list(accuracy), preprocessing=old.preprocessing or _preprocessing(out_dir, variant)))


# ----------------------------------------------------------------------------- preprocessing and labels
def _preprocessing(out_dir: Path, variant) -> dict[str, Preprocessing]:
    """Every output file's preprocessing (:func:`convert.preprocessing.sidecar_field`), typed."""
    return {name: Preprocessing.from_json(entry) for name, entry in sidecar_field(variant, out_dir).items()}


def tflite_classes(path: str | Path) -> int:
    """The number of classes a ``.tflite`` outputs (its first output's last dimension, as LiteRT reads it)."""
    from .quant.tflite import interpreter

    return int(interpreter(path).get_output_details()[0]["shape"][-1])


def _labels_file(out_dir: Path, name: str, names: list[str]) -> LabelsFile:
    """Write one labels file, atomically, unless it already holds exactly these names (so a folder's
    ``imagenet_labels.txt``, shared by every variant, is written once)."""
    data = class_names.labels_text(names)
    path = out_dir / name
    with file_lock(out_dir / f".{name}.lock"):
        if not (path.is_file() and path.read_bytes() == data):
            atomic_write_bytes(path, data)
    return LabelsFile(hashlib.sha256(data).hexdigest(), len(names))


def _intact(out_dir: Path, labels: Labels) -> bool:
    return all((out_dir / n).is_file() and sha256_file(out_dir / n) == f.sha256 for n, f in labels.files.items())


def _write_labels(out_dir: Path, variant, facts: ConversionFacts, names: Sequence[str] | None) -> Labels | None:
    """The labels files of the variant's class outputs (top .h5; quantized: also .keras, .tflite), written
    once all are known to fit."""
    top = variant.keras_weights
    tflite = variant.family.tflite_file(variant) if variant.family.quantized else None
    offset = facts.label_offset or 0
    if names is not None:
        source, own = "user", class_names.names_for_outputs(names, facts.classes, offset, "labels")
        main = class_names.labels_file_name(top)
    elif facts.classes == 1000:
        source, own, main = "imagenet", class_names.imagenet_names(), class_names.IMAGENET_LABELS
    else:
        return None
    contents, outputs = {main: own}, {top: main}
    if variant.family.quantized:
        outputs[variant.family.twin_file(variant)] = main
    if tflite is not None:
        # in the order of the .tflite's own output (this project's: 1000 classes, slim's background dropped)
        per_output = class_names.names_for_outputs(own, tflite_classes(out_dir / tflite), offset, tflite,
                                                   background=True)
        name = class_names.labels_file_name(tflite)
        if contents.get(name, per_output) != per_output:
            raise ConversionError(f"{tflite} outputs {len(per_output)} classes, its other files {len(own)}: they "
                                  f"cannot share the labels file {name}; nothing written")
        contents[name], outputs[tflite] = per_output, name
    return Labels(source, {n: _labels_file(out_dir, n, c) for n, c in contents.items()}, outputs)


# Keras' documented preprocessing against slim's, measured on Google's genuine weights and 1000 real ImageNet
# validation images, and the public reports of the same gap
KERAS_GAP = ("Keras' documented preprocessing (the whole image, nearest-neighbour resize to the input size, "
             "`preprocess_input`) costs 3 to 6 points of top-1: on Google's weights and 1000 ImageNet validation "
             "images, V2 1.0_224 86.5 % (slim's preprocessing) vs 81.7 % (Keras'), V1 0.25_128 45.5 vs 39.9, "
             "V3-small 1.0 74.8 vs 71.6 (see keras-team/keras#16982, keras-team/tf-keras#443, "
             "tensorflow/tensorflow#48066 and #46105, mlcommons/inference#61: 69.97 % with the 87.5 % crop, "
             "67.70 % without).")
IMPORTS = ["from convert.labels import decode_predictions  # the ImageNet class names, shipped: offline",
           "from convert.preprocessing import preprocessing_for  # mobilenet-tf1-to-keras: pip install <project folder>"]


def _shape(pre: Preprocessing, batch: bool = True) -> str:
    return f"({'1, ' if batch else ''}{pre.rows}, {pre.cols}, 3)"


def _constructor(variant, weights: str, include_top: bool = True, include_preprocessing: bool = True) -> str:
    """The keras.applications call that loads ``weights`` (the family's constructor and arguments)."""
    fam = variant.family
    args = [f"alpha={variant.alpha}", *(f"{k}={getattr(variant, k)}" for k in fam.keras_app.variant_args),
            f"input_shape=({variant.rows}, {variant.rows}, 3)"]
    if not include_top:
        args += ["include_top=False", 'pooling="avg"']
    if not include_preprocessing:
        args.append("include_preprocessing=False")
    return f'keras.applications.{fam.keras_constructor(variant)}({", ".join(args)}, weights="{weights}")'


def _takes(pre: Preprocessing) -> str:
    return {"unit": "in [-1, 1]", "pixels": "in [0, 255]"}.get(pre.form, pre.form)


def h5_snippet(variant) -> str:
    """Python that loads the top ``.h5`` with its keras.applications constructor, preprocesses an image with
    the file's preprocessing (``preprocessing_for``) and decodes the prediction (cards and README show it).
    V3: keras' default model (inputs in [0, 255]), then the ``include_preprocessing=False`` form ([-1, 1])."""
    top = variant.keras_weights
    pre = Preprocessing.for_variant(variant, "h5")
    lines = ["import keras", *IMPORTS, ""]
    if pre.form == "pixels":
        lines += [f"# keras' default {variant.family.keras_constructor(variant)} rescales its input itself: it "
                  f"takes pixels in [0, 255]"]
    lines += [f"model = {_constructor(variant, top)}",
              f'x = preprocessing_for("{top}").load("panda.jpg")[None]  # float32 {_shape(pre)} {_takes(pre)}: '
              f"slim's evaluation preprocessing",
              "probs = model.predict(x, verbose=0)  # (1, 1000) class probabilities",
              "print(decode_predictions(probs, top=3)[0])  # [(wnid, name, probability), ...]"]
    if pre.form == "pixels":
        lines += ["# or, like slim, inputs in [-1, 1]: include_preprocessing=False and the same preprocessing's "
                  "[-1, 1] form",
                  f"model = {_constructor(variant, top, include_preprocessing=False)}",
                  f'x = preprocessing_for("{top}", include_preprocessing=False).load("panda.jpg")[None]  '
                  f"# float32 {_shape(pre)} in [-1, 1]",
                  "print(decode_predictions(model.predict(x, verbose=0), top=3)[0])  # the same classes"]
    return "\n".join(lines)


def no_top_snippet(variant) -> str:
    """Python that loads the no-top ``.h5`` as a feature extractor, with its file's preprocessing."""
    no_top = variant.keras_weights_no_top
    pre = Preprocessing.for_variant(variant, "h5")
    return "\n".join([
        "import keras", IMPORTS[1], "",
        f"features = {_constructor(variant, no_top, include_top=False)}",
        f'x = preprocessing_for("{no_top}").load("panda.jpg")[None]  # float32 {_shape(pre)} {_takes(pre)}',
        "f = features.predict(x, verbose=0)  # (1, channels): the average-pooled features before the classifier"])


# ----------------------------------------------------------------------------- quantized variants
def twin_snippet(variant) -> str:
    """Python that loads the fake-quant twin (``.keras``) and runs it on a preprocessed image (the card and
    the README show it)."""
    twin = variant.family.twin_file(variant)
    pre = Preprocessing.for_variant(variant, "twin")
    return "\n".join([
        "import keras",
        "import convert  # registers the twin's fake-quant layers with Keras",
        *IMPORTS, "",
        f'model = keras.saving.load_model("{twin}")',
        f'x = preprocessing_for("{twin}").load("panda.jpg")[None]  # float32 {_shape(pre)} in [-1, 1]',
        "probs = model.predict(x, verbose=0)  # (1, 1000) class probabilities",
        "print(decode_predictions(probs, top=3)[0])  # [(wnid, name, probability), ...]",
        "# fine-tune with quantization-awareness: gradients pass the quantizers straight through",
        'model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")'])


def tflite_snippet(variant, scale: float | None = None, zero_point: int | None = None) -> str:
    """Python that runs the 8-bit ``.tflite`` with LiteRT on an image preprocessed for it (``preprocessing_for``
    reads the file's input quantization; ``scale``/``zero_point``: the one parity measured, shown as a
    comment) and decodes the output with the file's labels."""
    tflite = variant.family.tflite_file(variant)
    known = "" if scale is None else f", here ({scale:.7g}, {zero_point})"
    return "\n".join([
        "import numpy as np",
        "from ai_edge_litert.interpreter import Interpreter",
        *IMPORTS, "",
        f'interpreter = Interpreter(model_path="{tflite}")',
        "interpreter.allocate_tensors()",
        "inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]",
        f'q = preprocessing_for("{tflite}").load("panda.jpg")  # uint8 ({variant.rows}, {variant.rows}, 3), quantized '
        f"with the file's input scale and zero point{known}",
        'interpreter.set_tensor(inp["index"], q[None])',
        "interpreter.invoke()",
        'out_scale, out_zero_point = out["quantization"]',
        'probs = (interpreter.get_tensor(out["index"]).astype(np.float32) - out_zero_point) * out_scale  # (1, 1000)',
        f'print(decode_predictions(probs, top=3, labels="{class_names.labels_file_name(tflite)}")[0])  '
        f"# [(class index, name, probability), ...]"])


def _fmt(x, spec=".2e") -> str:
    return "–" if x is None else format(x, spec)


def _pct(x) -> str:
    """A published percentage, or "–" when the catalogue gives none."""
    return "–" if x is None else f"{x} %"


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


def _load(variant, quant: QuantOutputs | None) -> list[str]:
    """The card's load snippets, one per output file (each applies the file's preprocessing)."""
    def block(title: str, code: str) -> list[str]:
        return [title, "", "```python", code, "```", ""]

    if quant is None:
        lines = block("Classifier (the top `.h5`):", h5_snippet(variant))
    else:
        lines = block("Float start (the top `.h5`, with the float sibling's keras.applications constructor):",
                      h5_snippet(variant))
    lines += block("Features (the no-top `.h5`):", no_top_snippet(variant))
    if quant is not None:
        t = quant.parity.tflite if quant.parity else None
        lines += block("Fine-tuning with quantization-awareness (the twin):", twin_snippet(variant))
        lines += block("Deployment (LiteRT, `pip install ai-edge-litert`):",
                       tflite_snippet(variant, t and t.input_scale, t and t.input_zero_point))
    return lines + ["The snippets run in the folder of these files; `panda.jpg` is any image file (JPEG, PNG, GIF, "
                    "BMP), e.g. a copy of the project's `tests/data/genuine/panda.jpg`."]


_MODELS = {"converted": "the converted .h5", "twin": "the twin .keras", "tflite": "the .tflite",
           "archive-tflite": "the archive's own .tflite", "slim": "the archive's slim graph",
           "keras-imagenet": "keras.applications' weights=\"imagenet\""}


def _measured(records: list[AccuracyRecord]) -> str:
    """e.g. ``the converted .h5 top-1 70.12 % on 50000 images of `val` `` (the dataset's folder, as evaluated)."""
    return "; ".join(f"{_MODELS.get(a.model, a.model)} top-1 {_fmt(a.top1, '.2f')} % on {a.images} images"
                     + (f" of `{Path(a.dataset).name}`" if a.dataset else "") for a in records)


def _accuracy_lines(variant, sidecar: Sidecar) -> list[str]:
    """What top-1 the card's preprocessing gives: the published figure, the measured ones, Keras' gap."""
    if variant.top1 is not None:
        lines = [f"With this preprocessing you get top-1 {variant.top1} % (published, slim's README: the 50,000 "
                 f"ILSVRC2012 validation images)."]
    elif getattr(variant, "float_sibling_top1", None) is not None:
        lines = [f"The catalogue publishes no top-1 for this quantized model; with this preprocessing its float "
                 f"sibling gets top-1 {variant.float_sibling_top1} % (published, the float model's)."]
    else:
        lines = ["No top-1 is published for this model."]
    slim = [a for a in sidecar.accuracy if a.preprocessing == "slim"]
    keras = [a for a in sidecar.accuracy if a.preprocessing == "keras"]
    if slim:
        lines.append(f"Measured here with this preprocessing (`convert evaluate`): {_measured(slim)}.")
    else:
        lines.append(f"Not measured here yet (`python -m convert evaluate {variant.name} --imagenet-dir DIR`).")
    if keras:
        lines.append(f"Measured with Keras' documented preprocessing instead: {_measured(keras)}.")
    return lines + [KERAS_GAP]


def _output_order(variant):
    names = [variant.keras_weights, variant.keras_weights_no_top]
    if variant.family.quantized:
        names += list(quant_output_names(variant))
    return lambda name: (names.index(name) if name in names else len(names), name)


def _preprocessing_lines(variant, sidecar: Sidecar) -> list[str]:
    lines = ["Each file's input, as `convert.preprocessing.preprocessing_for(\"<file>\")` makes it (the sidecar's "
             "`preprocessing` field holds the same, machine-readable; the snippets below apply it):", ""]
    lines += [f"- `{name}`: {sidecar.preprocessing[name].describe()}"
              for name in sorted(sidecar.preprocessing, key=_output_order(variant))] or [
        "- (this sidecar predates the field: `preprocessing_for` derives it from the variant)"]
    return lines + [""] + _accuracy_lines(variant, sidecar) + [""]


def _labels_lines(variant, sidecar: Sidecar) -> list[str]:
    labels, order = sidecar.labels, _output_order(variant)
    if labels is None:
        return [f"- none: this head's {sidecar.facts.classes} classes have no names (a user checkpoint: convert it "
                f"with `--labels FILE`)", ""]
    lines = []
    for name, f in labels.files.items():
        outputs = sorted((o for o, n in labels.outputs.items() if n == name), key=order)
        origin = ("the ImageNet class names in Keras class order (keras' own `imagenet_class_index.json`, shipped)"
                  if labels.source == "imagenet" and name == class_names.IMAGENET_LABELS
                  else "the user's class names" if labels.source == "user" else "the ImageNet class names")
        lines.append(f"- `{name}`  sha256 `{f.sha256}`: {f.classes} names, {origin}; line k names output k of "
                     f"{', '.join(f'`{o}`' for o in outputs)}")
    return lines + ["", "`from convert.labels import decode_predictions`: `decode_predictions(probs)` decodes "
                        "ImageNet predictions offline, in keras' format `[(wnid, name, probability), ...]`; with "
                        "`labels=\"<labels file>\"`: `[(class index, name, probability), ...]`.", ""]


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
    lines += ["", "## Preprocessing: the accuracy you will get", ""] + _preprocessing_lines(variant, sidecar)
    lines += ["## Class names", ""] + _labels_lines(variant, sidecar)
    lines += ["## How to load", ""] + _load(variant, quant)
    lines += ["", "## Licence", "", LICENCE, ""]
    return "\n".join(lines)
