"""The sidecar (``NAME.json``), the model card (``NAME_card.md``) and the labels file (``NAME_labels.txt``) of a
user checkpoint's conversion; this module is their one writer (``SHA256SUMS`` is
:func:`convert.cards.update_sha256sums`'s). The card is rendered from the sidecar's data."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cards import SUMS_FILENAME
from ..fsutil import atomic_write_bytes, sha256_file
from ..labels import LabelsError, labels_text
from ..preprocessing import Preprocessing
from .records import ReferenceFigures

FORMAT = "mobilenet_checkpoint_conversion"


@dataclass(frozen=True)
class CheckpointConversion:
    """Everything the sidecar of a user checkpoint's conversion holds."""

    name: str
    variant: dict  # the description (:meth:`convert.manifest.Variant.to_dict`)
    inferred: list[str]  # what was read from the checkpoint, and from where (printed lines)
    checkpoint: str  # the prefix as given / found
    source: str  # "prefix" | "directory" | "archive": what was given
    checkpoint_files: dict[str, str]  # file name -> sha256
    archive_sha256: str | None
    values: dict  # the values used: requested, mode, counts by source
    counts: dict  # the layer guide's accounting
    files: dict[str, str]  # output file name -> sha256
    keras_call: str  # the keras.applications call that loads the top .h5
    preprocessing: dict  # Preprocessing.to_json() of the .h5 (as keras' default model) and of NAME.keras/.tflite
    references: list[ReferenceFigures]
    labels: list[str] | None = None
    versions: dict = field(default_factory=dict)
    quant: dict | None = None  # a quantization-aware checkpoint's twin and 8-bit proofs (convert.user.quant.QuantFigures)

    @property
    def passed(self) -> bool:
        return (bool(self.references) and all(r.passed for r in self.references)
                and (self.quant is None or bool(self.quant["passed"])))

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["references"] = [r.to_json() for r in self.references]
        return {"format": FORMAT, **out, "passed": self.passed}

    @classmethod
    def from_json(cls, data: Any) -> CheckpointConversion:
        d = {k: v for k, v in dict(data).items() if k not in ("format", "passed")}
        d["references"] = [ReferenceFigures.from_json(r) for r in d.get("references") or []]
        return cls(**d)


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.2e}"


def render(c: CheckpointConversion) -> str:
    v = c.variant
    rows, cols = v["rows"], v["cols"] or v["rows"]
    classes = v["classes"] - v["label_offset"]
    title = f"# {c.name}: {v['family'].upper()} alpha {v['alpha']}"
    lines = [title, "", f"Converted from the TF-slim checkpoint `{c.checkpoint}` ({c.source}) by "
             "mobilenet-tf1-to-keras; every output proven against a TF1 graph (below).", "",
             "## What was read from the checkpoint", "", *[f"- {line}" for line in c.inferred],
             f"- input size {rows} x {cols} (a checkpoint does not hold it: --rows / --input-size, default 224)",
             *([f"- classes: {classes}" + (f" (the checkpoint's {v['classes']} minus label offset {v['label_offset']})"
                                           if v["label_offset"] else "")] if v["has_head"] else
               ["- no logits: a backbone, converted without top"]), "",
             "## Files", "", "| file | sha256 |", "|---|---|", *[f"| `{n}` | `{s}` |" for n, s in c.files.items()], "",
             "Checkpoint files read:", "", *[f"- `{n}`: `{s}`" for n, s in c.checkpoint_files.items()], ""]
    if c.labels:
        lines += [f"Labels (`{c.name}_labels.txt`, in the output's order): {', '.join(c.labels[:10])}"
                  + (" …" if len(c.labels) > 10 else ""), ""]
    lines += ["## Preprocessing", ""]
    lines += [f"- `{n}`: {Preprocessing.from_json(p).describe()}" for n, p in c.preprocessing.items()]
    lines += ["", "## Load", ""]
    if v["has_head"]:
        lines += ["```python", "import keras", "from convert.preprocessing import preprocessing_for", "",
                  f'model = keras.saving.load_model("{c.name}.keras")  # input [-1, 1], output {classes} probabilities',
                  f'x = preprocessing_for("{c.name}.keras").load("image.jpg")[None]',
                  "probs = model.predict(x)",
                  'logits = keras.Model(model.input, model.get_layer("predictions").output)  # before the softmax',
                  *(["from convert.labels import decode_predictions",
                     f'print(decode_predictions(probs, labels="{c.name}_labels.txt"))  # (class, name, probability)']
                    if c.labels else ["from convert.labels import decode_predictions",
                                      "print(decode_predictions(probs))  # the ImageNet names, offline"]
                    if classes == 1000 else ["print(probs.argmax())  # --labels FILE gives the classes names"]),
                  "", "# or the .h5 weights into keras.applications' constructor:",
                  c.keras_call, "```", ""]
    else:
        lines += ["```python", "import keras", "", f'features = keras.saving.load_model("{c.name}.keras")  '
                  "# a backbone: input [-1, 1], output its average-pooled features", "```", ""]
    lines += ["## Parity", ""]
    for r in c.references:
        which = "the project's slim graph of this architecture" if r.reference == "builder" else "the given graph"
        lines.append(f"- against {which} ({r.graph}; {'fed the checkpoint' if r.kind == 'variables' else 'frozen'}): "
                     + (f"max |Δlogit| {_fmt(r.max_abs_dlogit)} (tolerance {_fmt(r.tolerance)}), top-1 "
                        f"{r.top1_agree}/{r.inputs}, top-5 {r.top5_agree}/{r.inputs}; " if r.logits else "")
                     + f"no-top max |Δ| {_fmt(r.no_top_max_abs_diff)} (tolerance {_fmt(r.no_top_tolerance)}); "
                     + ", ".join(f"{n}: max |Δlogit| {_fmt(x.max_abs_dlogit)} ({x.constants} constants)"
                                 for n, x in r.rewrites.items())
                     + ("; " if r.rewrites else "")
                     + ", ".join(f"`{f.file}` max |Δ| {_fmt(f.max_abs_dprob)}, top-1 {f.top1_agree}/{f.inputs}"
                                 for f in r.files)
                     + f": **{'pass' if r.passed else 'FAIL'}**")
    if c.quant:
        q, t = c.quant, c.quant["twin"]
        lines += ["", f"Quantization-aware: `{c.name}_quant.keras` is the fake-quant twin (import convert first: it "
                  f"registers its layers), `{c.name}_quant.tflite` the 8-bit file (uint8 input, scale 1/128, zero "
                  f"point 128). The twin against `{q['graph']}` as it is: {t['max_steps']:.2f} logit steps (step "
                  f"{t['logit_step']:.3g}), top-1 {t['top1_agree']}/{q['inputs']}; the 8-bit file against the twin: "
                  f"top-1 {q['tflite_top1_agree']}/{q['inputs']} ({q['tflite_ties']} tied), max |Δprob| "
                  f"{q['tflite_max_abs_dprob']:.3f}: **{'pass' if q['passed'] else 'FAIL'}**"]
    lines += ["", "## Licence", "", "The weights are the checkpoint's owner's; this is a format conversion of them.", ""]
    return "\n".join(lines)


def write(out_dir: Path, conversion: CheckpointConversion) -> list[str]:
    """``NAME_labels.txt`` (with labels), ``NAME.json`` and ``NAME_card.md`` in ``out_dir``, each atomically, in
    that order (the sidecar and card describe the rest); their names. ``SHA256SUMS`` is the caller's, once the
    files are where they belong (:func:`convert.cards.update_sha256sums`)."""
    out_dir = Path(out_dir)
    written = []
    if conversion.labels:
        written.append(atomic_write_bytes(out_dir / f"{conversion.name}_labels.txt", labels_text(conversion.labels)))
    written.append(atomic_write_bytes(out_dir / sidecar_name(conversion.name),
                                      json.dumps(conversion.to_json(), indent=2, allow_nan=False).encode() + b"\n"))
    written.append(atomic_write_bytes(out_dir / f"{conversion.name}_card.md", render(conversion).encode()))
    return [p.name for p in written]


def sidecar_name(name: str) -> str:
    return f"{name}.json"


def earlier_files(out_dir: Path, name: str) -> list[str]:
    """The output files an earlier conversion named ``name`` left in ``out_dir`` that still hold what it wrote:
    those its sidecar (this format, this name) lists, named ``NAME.*``/``NAME_*`` and never ``SHA256SUMS``, whose
    sha256 is the one the sidecar recorded (its labels file: the digest of its labels). A file changed since
    (edited, or another conversion's since) is not among them; none without a readable sidecar."""
    out_dir = Path(out_dir)
    try:
        data = json.loads((out_dir / sidecar_name(name)).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("name") != name:
        return []
    recorded = dict(data["files"]) if isinstance(data.get("files"), dict) else {}
    labels = data.get("labels")
    if isinstance(labels, list) and labels:
        try:
            recorded[f"{name}_labels.txt"] = hashlib.sha256(labels_text(labels)).hexdigest()
        except LabelsError:  # not names: nothing to match the file against
            pass
    never = (SUMS_FILENAME, sidecar_name(name), f"{name}_card.md")  # rewritten, never removed
    return [n for n, digest in recorded.items()
            if Path(n).name == n and n not in never and n.startswith((f"{name}.", f"{name}_"))
            and (out_dir / n).is_file() and not (out_dir / n).is_symlink() and sha256_file(out_dir / n) == digest]
