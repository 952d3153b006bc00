"""The accuracy record (one model, one preprocessing, one variant) and ``ACCURACY.md``.

``results/accuracy.json`` holds a list of :meth:`AccuracyRecord.to_json` documents; both files are
written by :func:`convert.report.write_accuracy` only. This module imports nothing heavy.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

PREPROCESSINGS = ("slim", "keras")
# "twin", "tflite", "archive-tflite": quantized variants only (their fake-quant .keras, our uint8 .tflite, the
# archive's own .tflite); "slim" is the archive's own graph (a quantized archive's with its FakeQuants)
MODELS = ("converted", "twin", "tflite", "archive-tflite", "slim", "keras-imagenet")
ACCURACY_JSON, ACCURACY_MD, LOCK_NAME = "accuracy.json", "ACCURACY.md", ".accuracy.lock"


@dataclass(frozen=True)
class AccuracyRecord:
    name: str  # the variant
    model: str  # one of MODELS
    preprocessing: str  # one of PREPROCESSINGS
    images: int  # scored (unreadable ones excluded)
    top1: float | None  # %
    top5: float | None
    published_top1: float | None = None
    published_top5: float | None = None
    # V2 quantized: the catalogue gives only the float sibling's top-1; kept apart from published_top1 (which
    # stays None: no figure of the quantized model is published) and always shown labelled as the sibling's
    float_sibling_top1: float | None = None
    images_per_s: float | None = None  # model inference only
    pipeline_images_per_s: float | None = None  # the whole pass (decoding overlaps inference)
    unreadable: list[str] = field(default_factory=list)  # relative to the dataset root
    family: str | None = None
    stem: str | None = None
    dataset: str | None = None
    layout: str | None = None
    batch_size: int | None = None
    evaluated_at: str | None = None  # ISO 8601, UTC

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "AccuracyRecord":
        """A record from its JSON document; unknown keys are ignored, missing optional ones are None."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})

    def sort_key(self, names: list[str]) -> tuple:
        """Manifest order of the names (unknown names last), then preprocessing, then model."""
        rank = names.index(self.name) if self.name in names else len(names)
        pre = PREPROCESSINGS.index(self.preprocessing) if self.preprocessing in PREPROCESSINGS else len(PREPROCESSINGS)
        model = MODELS.index(self.model) if self.model in MODELS else len(MODELS)
        return rank, self.name, pre, model


def load_accuracy(results_dir: str | Path) -> list[AccuracyRecord]:
    path = Path(results_dir) / ACCURACY_JSON
    return [AccuracyRecord.from_json(doc) for doc in json.loads(path.read_text())] if path.exists() else []


def merge(old: list[AccuracyRecord], new: list[AccuracyRecord], names: list[str]) -> list[AccuracyRecord]:
    """Every name in ``new`` replaces all of its records in ``old``; other names are kept; sorted."""
    replaced = {r.name for r in new}
    rows = [r for r in old if r.name not in replaced] + list(new)
    return sorted(rows, key=lambda r: r.sort_key(names))


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def delta(x: float | None, ref: float | None) -> str:
    return "–" if x is None or ref is None else f"{x - ref:+.2f}"


def published(r: AccuracyRecord) -> str:
    """The catalogue's published top-1 as the catalogue prints it, or the float sibling's, labelled as such."""
    if r.published_top1 is not None:
        return f"{r.published_top1:.1f}"
    if r.float_sibling_top1 is not None:
        return f"float sibling: {r.float_sibling_top1:.1f}"
    return "–"


def summary_line(r: AccuracyRecord) -> str:
    """One record on one line, as the command prints it."""
    return (f"{r.name:<36} {r.model:<15} {r.preprocessing:<6} top-1 {pct(r.top1):>6} "
            f"({delta(r.top1, r.published_top1)})  top-5 {pct(r.top5):>6} ({delta(r.top5, r.published_top5)})  "
            f"{r.images} images  {r.images_per_s or 0:.0f} images/s  published top-1 {published(r)}")


def render_accuracy(rows: list[AccuracyRecord]) -> str:
    out = ["# ImageNet accuracy", "",
           f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. Top-1 / top-5 in %; Δ against the "
           "published figures of the manifests (published top-1: the catalogue's figure; V2 quantized archives "
           "have none of their own, so their float sibling's is shown, labelled as such, and no Δ). `converted`: "
           "the converted Keras weights; `slim`: the archive's own slim graph (EMA values; a quantized archive's "
           "graph as it is, with its FakeQuants); `keras-imagenet`: keras.applications' own `weights=\"imagenet\"`. "
           "Quantized variants only: `twin`: the fake-quant Keras twin (`.keras`); `tflite`: the twin's uint8 "
           "`.tflite`; `archive-tflite`: the archive's own `.tflite` (background class dropped); both `.tflite` fed "
           "the slim input quantized as each file's input says (a tie in a uint8 output ranks the lower class "
           "first). Quantized variants are scored under slim "
           "preprocessing only. "
           "`slim` preprocessing: inception_preprocessing.preprocess_for_eval (87.5 % central crop, TF1 bilinear "
           "resize); `keras`: keras.utils.load_img (nearest resize of the whole image) + preprocess_input. "
           "images/s: model inference only.", "",
           "| name | model | preprocessing | images | top-1 | Δ top-1 | top-5 | Δ top-5 | images/s | published top-1 |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ips = "–" if r.images_per_s is None else f"{r.images_per_s:.0f}"
        out.append(f"| {r.name} | {r.model} | {r.preprocessing} | {r.images} | {pct(r.top1)} | "
                   f"{delta(r.top1, r.published_top1)} | {pct(r.top5)} | {delta(r.top5, r.published_top5)} | {ips} | "
                   f"{published(r)} |")
    unreadable: dict[str, list[str]] = {}
    for r in rows:
        if r.unreadable:
            unreadable.setdefault(r.name, r.unreadable)
    if unreadable:
        out += ["", "Unreadable images (excluded from the totals):"]
        out += [f"- {name}: {', '.join(files)}" for name, files in unreadable.items()]
    return "\n".join(out) + "\n"
