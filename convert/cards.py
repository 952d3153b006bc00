"""The metadata next to converted weights: the JSON sidecar, the model card (``…_card.md``) and
``SHA256SUMS``; this module is the one writer of all three.

Per variant the three are written once, at the end of its conversion (:func:`write`: the conversion
facts, provenance, values used, versions, and the parity figures), and again only by an accuracy
evaluation (:func:`update`); the card is rendered from the sidecar's data each time, so the two always
hold the same data.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from .fsutil import atomic_write_bytes, file_lock, sha256_file
from .records import ConversionFacts, ParityRecord, ParitySummary, Sidecar
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
    return {"macs_m": variant.macs_m, "params_m": variant.params_m, "top1": variant.top1, "top5": variant.top5}


def _card_section(variant) -> dict:
    return {"url": variant.url, "published": _published(variant), "load": variant.family.keras_call(variant),
            "preprocessing": PREPROCESSING, "licence": LICENCE}


@dataclass(frozen=True)
class Written:
    """The metadata files :func:`write` wrote, with the sha256 of every file SHA256SUMS now lists for them."""

    sidecar: Path
    card: Path
    sha256sums: Path
    sha256: dict[str, str]  # file name -> digest (the .h5 files, the sidecar, the card)


def read_facts(out_dir: str | Path, variant) -> Sidecar | None:
    """The typed sidecar of a variant's converted files, or None when there is none."""
    doc = read_sidecar(out_dir, variant)
    return None if doc is None else Sidecar.from_json(doc)


def _save(out_dir: Path, variant, sidecar: Sidecar) -> Written:
    """Write the sidecar and card, then record them and the .h5 files in SHA256SUMS (each file once)."""
    side_path, card = sidecar_path(out_dir, variant), card_path(out_dir, variant)
    atomic_write_bytes(side_path, (json.dumps(sidecar.to_json(_card_section(variant)), indent=2, sort_keys=True) + "\n").encode())
    atomic_write_bytes(card, render_card(variant, sidecar).encode())
    digests = {**sidecar.facts.files, side_path.name: sha256_file(side_path), card.name: sha256_file(card)}
    return Written(side_path, card, update_sha256sums(out_dir, digests), digests)


@timed("report")
def write(out_dir: str | Path, variant, facts: ConversionFacts, parity: ParityRecord | None = None) -> Written:
    """The end of a variant's conversion: write its sidecar and model card, and update ``SHA256SUMS``,
    once each. An accuracy section already there is kept when it is about the same .h5 files (new
    weights invalidate it)."""
    out_dir = Path(out_dir)
    with file_lock(out_dir / f".{sidecar_path(out_dir, variant).name}.lock"):
        old = read_facts(out_dir, variant)
        accuracy = old.accuracy if old is not None and old.facts.files == facts.files else []
        return _save(out_dir, variant, Sidecar(facts, parity and ParitySummary.of(parity), accuracy))


@timed("report")
def update(out_dir: str | Path, variant, accuracy: list[dict]) -> Written:
    """Put measured accuracy records into the sidecar and card of weights converted earlier."""
    out_dir = Path(out_dir)
    with file_lock(out_dir / f".{sidecar_path(out_dir, variant).name}.lock"):
        old = read_facts(out_dir, variant)
        if old is None:
            raise FileNotFoundError(f"no converted weights of {variant.name} in {out_dir} "
                                    f"({sidecar_path(out_dir, variant).name} is missing); run load_weights.py "
                                    f"{variant.name} first")
        return _save(out_dir, variant, dataclasses.replace(old, accuracy=[dict(a) for a in accuracy]))


PREPROCESSING = ("For the published accuracy, preprocess as slim's evaluation does: decode to float in [0, 1], "
                 "central crop of 87.5 %, bilinear resize to rows x rows (TF1 semantics), then (x - 0.5) * 2, "
                 "i.e. inputs in [-1, 1] (MobileNetV3 with include_preprocessing=False; with keras' default "
                 "include_preprocessing=True, feed the same image in [0, 255]).")


def _fmt(x, spec=".2e") -> str:
    return "–" if x is None else format(x, spec)


def render_card(variant, sidecar: Sidecar) -> str:
    facts, prov, v = sidecar.facts, sidecar.facts.provenance, variant
    lines = [f"# {variant.family.title} {variant.name}: Keras weights converted from TF-slim", "",
             "## Files", ""]
    lines += [f"- `{name}`  sha256 `{digest}`" for name, digest in sorted(facts.files.items())]
    lines += ["", "## Source", "",
              f"- Archive: {variant.url}",
              f"- Archive sha256: `{prov.archive_sha256 or '–'}` (manifest pin: {prov.pin_status})",
              f"- Checkpoint read: `{prov.checkpoint}` ({prov.checkpoint_role})",
              f"- Values: {facts.values.summary() or '–'} (EMA values are what slim's evaluation restores with "
              f"`--moving_average_decay`)", "",
              "## Published figures (slim README)", "",
              f"MACs {v.macs_m} M, parameters {v.params_m} M, top-1 {v.top1} %, "
              f"top-5 {'–' if v.top5 is None else str(v.top5) + ' %'}", ""]
    parity = sidecar.parity
    lines += ["## Parity against the archive's own graph", ""]
    if parity:
        lines.append(f"- {'pass' if parity.passed else 'FAIL'}: max |Δlogit| {_fmt(parity.max_abs_dlogit)} "
                     f"(tolerance {_fmt(parity.tolerance)}), top-1 {parity.top1_agree}/{parity.inputs}, "
                     f"top-5 {parity.top5_agree}/{parity.inputs}; reference {parity.reference} "
                     f"`{parity.reference_graph}`; frozen graph matches: {parity.frozen}")
        for name, r in parity.rewrites.items():
            lines.append(f"- {name} ({r.description}): max |Δlogit| {_fmt(r.max_abs_dlogit)} "
                         f"(tolerance {_fmt(r.tolerance)}), {'pass' if r.passed else 'FAIL'}")
    else:
        lines.append("- not verified yet (`verify.py " + variant.name + "`)")
    lines += ["", "## Measured accuracy", ""]
    if sidecar.accuracy:
        lines += ["| model | preprocessing | images | top-1 | top-5 |", "|---|---|---|---|---|"]
        lines += [f"| {a['model']} | {a['preprocessing']} | {a['images']} | {_fmt(a['top1'], '.2f')} | "
                  f"{_fmt(a['top5'], '.2f')} |" for a in sidecar.accuracy]
    else:
        lines.append("- not evaluated (`python -m convert evaluate " + variant.name + " --imagenet-dir DIR`)")
    lines += ["", "## How to load", "", "```python", "import keras", variant.family.keras_call(variant), "```", "",
              PREPROCESSING, "", "## Licence", "", LICENCE, ""]
    return "\n".join(lines)
