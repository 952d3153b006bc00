"""Parity records -> results/test_results.{p,json} and results/PARITY.md (one row per variant).

Re-running one variant replaces its row and keeps the others. Every file is written atomically.
"""
from __future__ import annotations

import json
import pickle
from datetime import datetime, timezone
from pathlib import Path

from .fsutil import atomic_write_bytes
from .manifest import default_manifest

RESULTS_P, RESULTS_JSON, PARITY_MD = "test_results.p", "test_results.json", "PARITY.md"
# The keys of the original converter's report, which every record carries.
LEGACY_KEYS = ("alpha", "rows", "pred_keras_score", "pred_tf_score", "preds_agree", "max_vector_difference",
               "inference_time_tf", "inference_time_keras", "model")


def failure_record(variant, error: str, archive_source: str | None = None) -> dict:
    """The results row of a variant that could not be converted or verified."""
    return {"model": variant.model_name, "name": variant.name, "alpha": variant.alpha, "rows": variant.rows,
            "passed": False, "error": error, "archive_source": archive_source, "pred_keras_score": None, "pred_tf_score": None, "preds_agree": False,
            "max_vector_difference": None, "inference_time_tf": None, "inference_time_keras": None}


def load_results(results_dir: Path) -> list[dict]:
    path = Path(results_dir) / RESULTS_JSON
    return json.loads(path.read_text()) if path.exists() else []


def _order(record: dict) -> int:
    names = default_manifest().names
    return names.index(record["name"]) if record.get("name") in names else len(names)


def update_results(records: list[dict], results_dir: str | Path) -> list[dict]:
    """Merge ``records`` (by variant) into the results folder and rewrite all three files."""
    results_dir = Path(results_dir)
    merged = {r["model"]: r for r in load_results(results_dir)}
    for record in records:
        missing = [] if record.get("error") else [k for k in LEGACY_KEYS if k not in record]
        if missing:
            raise ValueError(f"parity record for {record.get('model')} lacks {missing}")
        merged[record["model"]] = record
    rows = sorted(merged.values(), key=_order)
    atomic_write_bytes(results_dir / RESULTS_JSON, (json.dumps(rows, indent=2, sort_keys=True) + "\n").encode())
    atomic_write_bytes(results_dir / RESULTS_P, pickle.dumps(rows, protocol=4))
    atomic_write_bytes(results_dir / PARITY_MD, render_markdown(rows).encode())
    return rows


def archive_origin(url: str | None) -> str:
    """Where an archive came from, in a word: ``loopback`` (the demo/test mirror), ``local`` or the host."""
    from urllib.parse import urlsplit

    if not url:
        return "–"
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return "loopback" if parts.hostname in ("127.0.0.1", "localhost", "::1") else parts.hostname
    return "local"


def _fmt(x, spec=".2e"):
    return "–" if x is None else format(x, spec)


def render_markdown(rows: list[dict]) -> str:
    passed = sum(1 for r in rows if r.get("passed"))
    head = [
        "# Parity report: slim logits vs converted Keras weights", "",
        f"{passed} of {len(rows)} variants pass. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}.", "",
        "Pass: max |Δlogit| over the 1000 shared classes (slim 1..1000 = Keras 0..999) ≤ 1e-4 · max(1, max |slim logit|), "
        "top-1 equal on every input, and the no-top file's pooled features equal slim's AvgPool. "
        "Reference: the archive's own eval graph with every `<var>/read` fed slim's evaluation values "
        "(EMA shadows for trainables, raw BN statistics). `frozen`: which weights the archive's `_frozen.pb` matches. "
        "`archive`: where the checkpoint archive came from (`loopback` = factory archives of `make demo` / the tests).", "",
        "| variant | result | max abs Δlogit | tolerance | top-1 | top-5 | max abs Δprob | reference | weights | frozen | TF s | Keras s | archive |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    body = []
    for r in rows:
        if r.get("error"):
            body.append(f"| {r['name']} | FAIL | – | – | – | – | – | – | – | – | – | – | {archive_origin(r.get('archive_source'))} |")
            continue
        n = r["inputs"]
        body.append(
            f"| {r['name']} | {'pass' if r['passed'] else 'FAIL'} | {_fmt(r['max_abs_dlogit'])} | {_fmt(r['tolerance'])} "
            f"| {r['top1_agree']}/{n} | {r['top5_agree']}/{n} | {_fmt(r['max_abs_dprob'])} | {r['reference']} "
            f"| {r.get('weight_source') or '–'} | {r.get('frozen', '–')} | {_fmt(r['inference_time_tf'], '.3f')} "
            f"| {_fmt(r['inference_time_keras'], '.3f')} | {archive_origin(r.get('archive_source'))} |")
    errors = [f"- {r['name']}: {r['error']}" for r in rows if r.get("error")]
    return "\n".join(head + body + ([""] + ["Failures:"] + errors if errors else [])) + "\n"
