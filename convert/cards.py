"""The metadata next to converted weights: the JSON sidecar, the model card (``…_card.md``) and
``SHA256SUMS``; this module is the one writer of all three.

The sidecar is written when the .h5 files are (conversion facts: provenance, values used, versions) and
updated after parity and after an accuracy evaluation; the card is rendered from the sidecar each time,
so the two always hold the same data.
"""
from __future__ import annotations

import json
from pathlib import Path

from .timing import timed
from .fsutil import atomic_write_bytes, file_lock, sha256_file

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


def _parity_summary(record: dict) -> dict:
    keys = ("passed", "max_abs_dlogit", "tolerance", "top1_agree", "top5_agree", "inputs", "max_abs_dprob",
            "no_top_max_abs_diff", "reference", "reference_graph", "reference_checkpoint", "frozen", "verified_at")
    out = {k: record.get(k) for k in keys}
    out["rewrites"] = {name: {k: r[k] for k in ("description", "constants", "max_abs_dlogit", "tolerance", "passed")}
                       for name, r in (record.get("rewrites") or {}).items()}
    return out


@timed("report")
def update(out_dir: str | Path, variant, conversion: dict | None = None, parity: dict | None = None,
           accuracy: list[dict] | None = None) -> tuple[Path, Path]:
    """Merge the given sections into the variant's sidecar (a ``conversion`` replaces it whole: new
    weights invalidate earlier parity and accuracy figures), render the card, update ``SHA256SUMS``."""
    out_dir = Path(out_dir)
    sidecar, card = sidecar_path(out_dir, variant), card_path(out_dir, variant)
    with file_lock(out_dir / f".{sidecar.name}.lock"):
        doc = dict(conversion) if conversion is not None else read_sidecar(out_dir, variant)
        if doc is None:
            raise FileNotFoundError(f"no converted weights of {variant.name} in {out_dir} ({sidecar.name} is "
                                    f"missing); run load_weights.py {variant.name} first")
        if parity is not None:
            doc["parity"] = _parity_summary(parity)
        if accuracy is not None:
            doc["accuracy"] = [dict(a) for a in accuracy]
        doc["card"] = {"url": variant.url, "published": _published(variant), "load": variant.spec.keras_call(variant),
                       "preprocessing": PREPROCESSING, "licence": LICENCE}
        atomic_write_bytes(sidecar, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        atomic_write_bytes(card, render_card(variant, doc).encode())
    update_sha256sums(out_dir, {sidecar.name: sha256_file(sidecar), card.name: sha256_file(card)})
    return sidecar, card


PREPROCESSING = ("For the published accuracy, preprocess as slim's evaluation does: decode to float in [0, 1], "
                 "central crop of 87.5 %, bilinear resize to rows x rows (TF1 semantics), then (x - 0.5) * 2, "
                 "i.e. inputs in [-1, 1] (MobileNetV3 with include_preprocessing=False; with keras' default "
                 "include_preprocessing=True, feed the same image in [0, 255]).")


def _fmt(x, spec=".2e") -> str:
    return "–" if x is None else format(x, spec)


def render_card(variant, doc: dict) -> str:
    p, files, prov = doc["card"]["published"], doc.get("files", {}), doc.get("provenance", {})
    lines = [f"# {variant.spec.title} {variant.name}: Keras weights converted from TF-slim", "",
             "## Files", ""]
    lines += [f"- `{name}`  sha256 `{digest}`" for name, digest in sorted(files.items())]
    by_source = ", ".join(f"{k} {n}" for k, n in sorted(doc.get("weights", {}).get("by_source", {}).items()))
    lines += ["", "## Source", "",
              f"- Archive: {doc['card']['url']}",
              f"- Archive sha256: `{prov.get('archive_sha256') or '–'}` (manifest pin: {prov.get('pin_status', '–')})",
              f"- Checkpoint read: `{prov.get('checkpoint', '–')}` ({prov.get('checkpoint_role', '–')})",
              f"- Values: {by_source or '–'} (EMA values are what slim's evaluation restores with "
              f"`--moving_average_decay`)", "",
              "## Published figures (slim README)", "",
              f"MACs {p['macs_m']} M, parameters {p['params_m']} M, top-1 {p['top1']} %, "
              f"top-5 {'–' if p['top5'] is None else str(p['top5']) + ' %'}", ""]
    parity = doc.get("parity")
    lines += ["## Parity against the archive's own graph", ""]
    if parity:
        lines.append(f"- {'pass' if parity['passed'] else 'FAIL'}: max |Δlogit| {_fmt(parity['max_abs_dlogit'])} "
                     f"(tolerance {_fmt(parity['tolerance'])}), top-1 {parity['top1_agree']}/{parity['inputs']}, "
                     f"top-5 {parity['top5_agree']}/{parity['inputs']}; reference {parity['reference']} "
                     f"`{parity.get('reference_graph')}`; frozen graph matches: {parity['frozen']}")
        for name, r in parity["rewrites"].items():
            lines.append(f"- {name} ({r['description']}): max |Δlogit| {_fmt(r['max_abs_dlogit'])} "
                         f"(tolerance {_fmt(r['tolerance'])}), {'pass' if r['passed'] else 'FAIL'}")
    else:
        lines.append("- not verified yet (`verify.py " + variant.name + "`)")
    lines += ["", "## Measured accuracy", ""]
    accuracy = doc.get("accuracy") or []
    if accuracy:
        lines += ["| model | preprocessing | images | top-1 | top-5 |", "|---|---|---|---|---|"]
        lines += [f"| {a['model']} | {a['preprocessing']} | {a['images']} | {_fmt(a['top1'], '.2f')} | "
                  f"{_fmt(a['top5'], '.2f')} |" for a in accuracy]
    else:
        lines.append("- not evaluated (`python -m convert evaluate " + variant.name + " --imagenet-dir DIR`)")
    lines += ["", "## How to load", "", "```python", "import keras", doc["card"]["load"], "```", "",
              doc["card"]["preprocessing"], "", "## Licence", "", doc["card"]["licence"], ""]
    return "\n".join(lines)
