"""Parity records -> results/test_results.{p,json} and results/PARITY.md (one row per variant).

Re-running one variant replaces its row and keeps the others. Every file is written atomically.
"""
from __future__ import annotations

import json
import pickle
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from .evaluate.records import (ACCURACY_JSON, ACCURACY_MD, LOCK_NAME, AccuracyRecord, load_accuracy, merge,
                               render_accuracy)
from .families import FAMILIES
from .errors import ConversionError
from .fsutil import atomic_write_bytes, file_lock
from .manifest import default_manifest
from .records import LEGACY_KEYS, ParityRecord  # noqa: F401  (LEGACY_KEYS: the results' documented keys)
from .timing import timed

RESULTS_P, RESULTS_JSON, PARITY_MD = "test_results.p", "test_results.json", "PARITY.md"


def failure_record(variant, error: str, archive_source: str | None = None) -> ParityRecord:
    """The results row of a variant that could not be converted or verified."""
    return ParityRecord.failure(variant, error, archive_source)


def load_results(results_dir: Path) -> list[ParityRecord]:
    """The results rows so far; a file this converter cannot read is a :class:`ConversionError` naming it."""
    path = Path(results_dir) / RESULTS_JSON
    if not path.exists():
        return []
    try:
        return [ParityRecord.from_json(r) for r in json.loads(path.read_text())]
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConversionError(f"{path} is not a results file this converter reads ({type(exc).__name__}: {exc}); "
                              f"move it away (or pass another --results folder) and run again") from None


def _order(record: ParityRecord) -> int:
    names = default_manifest().names
    return names.index(record.name) if record.name in names else len(names)


@timed("report")
def update_results(records: list[ParityRecord], results_dir: str | Path) -> list[ParityRecord]:
    """Merge ``records`` (by variant) into the results folder and rewrite all three files: the only
    writer of ``results/test_results.{p,json}`` and ``PARITY.md``."""
    results_dir = Path(results_dir)
    with file_lock(results_dir / ".results.lock"):  # concurrent verifiers merge instead of overwriting
        merged = {r.model: r for r in load_results(results_dir)}
        merged.update((r.model, r) for r in records)
        rows = sorted(merged.values(), key=_order)
        documents = [r.to_json() for r in rows]
        atomic_write_bytes(results_dir / RESULTS_JSON, (json.dumps(documents, indent=2, sort_keys=True) + "\n").encode())
        atomic_write_bytes(results_dir / RESULTS_P, pickle.dumps(documents, protocol=4))
        atomic_write_bytes(results_dir / PARITY_MD, render_markdown(rows).encode())
    return rows


def archive_origin(url: str | None) -> str:
    """Where an archive came from, in a word: ``loopback`` (the demo/test mirror), ``local`` or the host."""
    if not url:
        return "–"
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return "loopback" if parts.hostname in ("127.0.0.1", "localhost", "::1") else parts.hostname
    return "local"


def _fmt(x, spec=".2e"):
    return "–" if x is None else format(x, spec)


def _section(title: str, rows: list[ParityRecord]) -> list[str]:
    rewrites = list(dict.fromkeys(n for r in rows for n in r.rewrites))
    factor = next((r.tolerance_factor for r in rows if r.tolerance_factor), 1e-4)
    head = ["variant", "result", "max abs Δlogit", f"tolerance ({factor:g}·max)"]
    for name in rewrites:
        head += [f"max abs Δlogit, {name}", "tolerance"]
    head += ["top-1", "top-5", "max abs Δprob", "no-top max abs Δ", "reference", "weights", "frozen", "TF s",
             "Keras s", "archive", "pin"]
    lines = [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        origin = archive_origin(r.archive_source)
        if r.error:
            cells = [r.name, "FAIL"] + ["–"] * (len(head) - 4) + [origin, "–"]
        else:
            n = r.inputs
            cells = [r.name, "pass" if r.passed else "FAIL", _fmt(r.max_abs_dlogit), _fmt(r.tolerance)]
            for name in rewrites:
                w = r.rewrites.get(name)
                cells += [_fmt(w and w.max_abs_dlogit), _fmt(w and w.tolerance)]
            reference = r.reference + (f" ({r.reference_checkpoint})" if r.reference_checkpoint else "")
            cells += [f"{r.top1_agree}/{n}", f"{r.top5_agree}/{n}", _fmt(r.max_abs_dprob),
                      _fmt(r.no_top_max_abs_diff), reference, r.weight_source or "–",
                      r.frozen or "–", _fmt(r.inference_time_tf, ".3f"), _fmt(r.inference_time_keras, ".3f"),
                      origin, r.archive_pin or "–"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines + [""]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def _quant_section(title: str, rows: list[ParityRecord]) -> list[str]:
    """A quantized family: the float .h5 against the bypassed graph, the twin's logit steps off the graph, the
    .tflite against the archive's .tflite."""
    rewrites = list(dict.fromkeys(n for r in rows for n in r.rewrites))
    head = ["variant", "result", "float .h5 max abs Δlogit", "tolerance"]
    for name in rewrites:
        head += [f"float .h5, {name}", "tolerance"]
    head += ["float no-top max abs Δ", "twin: steps off the graph", "twin top-1", ".tflite top-1 (ties)", ".tflite max abs Δprob",
             ".tflite top-5 identical", "top-5 up to ties", ".tflite input", "archive", "pin"]
    lines = [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        origin, q = archive_origin(r.archive_source), r.quant
        if r.error or q is None:
            lines.append("| " + " | ".join([r.name, "FAIL"] + ["–"] * (len(head) - 4) + [origin, "–"]) + " |")
            continue
        cells = [r.name, "pass" if r.passed else "FAIL", _fmt(r.max_abs_dlogit), _fmt(r.tolerance)]
        for name in rewrites:
            w = r.rewrites.get(name)
            cells += [_fmt(w and w.max_abs_dlogit), _fmt(w and w.tolerance)]
        twin, tfl = q.twin[0], q.tflite
        no_top = q.floats[-1].no_top_max_abs_diff  # against the graph the float pass is decided on
        cells += [_fmt(no_top) + ("" if not q.no_top_file_mismatches else f" ({len(q.no_top_file_mismatches)} arrays differ)"),
                  f"{twin.max_steps:.2f} (step {twin.logit_step:.3g})", f"{twin.top1_agree}/{q.inputs}",
                  f"{tfl.top1_agree}/{q.inputs} ({tfl.top1_ties})", _fmt(tfl.max_abs_dprob, ".4f"),
                  _pct(tfl.top5_identical), _pct(tfl.top5_up_to_ties),
                  f"uint8 ({tfl.input_scale:.5g}, {tfl.input_zero_point})", origin, r.archive_pin or "–"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines + [""]


QUANT_NOTE = (
    "Quantization-aware variants (`v1-quant`, `v2-quant`, `v3-quant`): three proofs on uint8 verify inputs read "
    "through the archive `.tflite`'s input quantization. `float .h5`: the float weights in the float sibling's "
    "keras.applications model against the archive's graph with every FakeQuant bypassed (tolerance 1e-4·max; V3 "
    "also with the gate rewritten to 1/6); `float no-top`: the no-top file's pooled features against that graph's "
    "average pool (V3: the rewritten one), the no-top file holding exactly the no-top model's weights. `twin`: the fake-quant Keras twin's logits against the archive's graph "
    "as it is, in steps of the graph's logit quantization grid (pass: ≤ 1 step and top-1 identical). `.tflite`: "
    "our 8-bit file against the archive's own `.tflite` on the same uint8 inputs: top-1 (background excluded; "
    "`ties`: inputs where either uint8 output ties classes for first place, any of which counts as first), max |Δprob| over the "
    "1000 classes (the archive's output renormalized without background), and the share of inputs with identical "
    "top-5 lists (in order; and up to uint8 ties). TFLite and TF round integers differently, about one output "
    "step: these figures are what was measured, not a claim of bit equality. Both `.tflite` files run in LiteRT "
    "on TFLite's builtin kernels, without the XNNPACK delegate (which partitions each file differently).")


def render_markdown(rows: list[ParityRecord]) -> str:
    passed = sum(1 for r in rows if r.passed)
    out = [
        "# Parity report: slim logits vs converted Keras weights", "",
        f"{passed} of {len(rows)} variants pass. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}.", "",
        "Pass: max |Δlogit| over the 1000 shared classes (slim 1..1000 = Keras 0..999) ≤ tolerance · max(1, max "
        "|slim logit|), top-1 equal on every input (V3: top-5 too), and the no-top file's pooled features equal "
        "slim's average pool (V3: in the gate-rewritten graph, to 1e-4) and its every array equal to the loaded model's. Reference: the archive's own inference graph (`eval_pbtxt`: V1/V2's `_eval.pbtxt`; "
        "`ckpt_meta`: the graph in a checkpoint's `.meta`, V3's `ema/model-STEP.meta`) with every `<var>/read` fed "
        "slim's evaluation values (EMA values where the checkpoint has them), or `frozen_pb` when the archive has "
        "no inference graph. `frozen`: which weights the archive's frozen graph matches. V3 adds a second figure: "
        "the same graph with the squeeze-excite gate constant 0.16667 rewritten to 1/6, as keras.applications "
        "computes it (tolerance 1e-4·max); the first figure, against the graph as it is, states the architecture "
        "difference. `archive`: where the checkpoint archive came from (`loopback` = factory archives of "
        "`make demo` / the tests). `pin`: whether that archive's sha256 matches the manifest's pin of the genuine "
        "release (`differs` for factory archives, fetched with `--ignore-pins`; `no pin` for the two V3 minimalistic archives). "
        "`TF s`: one run of the reference graph on the batch, after a warm-up run; `Keras s`: the Keras model's "
        "one eager call on the batch (no warm-up: it includes first-call set-up).", "",
    ]
    for key, fam in FAMILIES.items():
        section = [r for r in rows if r.family == key]
        if section and fam.quantized:
            out += _quant_section(fam.title, section)
        elif section:
            out += _section(fam.title, section)
    if any(FAMILIES[r.family].quantized for r in rows if r.family in FAMILIES):
        out += [QUANT_NOTE, ""]
    errors = [f"- {r.name}: {r.error}" for r in rows if r.error]
    return "\n".join(out + (["Failures:"] + errors if errors else [])) + "\n"




def write_accuracy(results_dir: str | Path, records: list[AccuracyRecord]) -> list[AccuracyRecord]:
    """Merge ``records`` into ``results_dir/accuracy.json`` (every name evaluated now replaces all of
    its earlier records) and render ``ACCURACY.md``; atomic writes, under a lock. The only writer of both."""
    results_dir = Path(results_dir)
    with file_lock(results_dir / LOCK_NAME):
        rows = merge(load_accuracy(results_dir), records, default_manifest().names)
        atomic_write_bytes(results_dir / ACCURACY_JSON,
                           (json.dumps([r.to_json() for r in rows], indent=2, sort_keys=True) + "\n").encode())
        atomic_write_bytes(results_dir / ACCURACY_MD, render_accuracy(rows).encode())
    return rows


BENCH_JSON, BENCH_MD = "bench.json", "BENCH.md"


def write_bench(results_dir: str | Path, result_json: str, markdown: str) -> None:
    """``results_dir/bench.json`` and ``BENCH.md`` of one ``convert bench`` run (atomic writes): the only writer
    of both."""
    results_dir = Path(results_dir)
    atomic_write_bytes(results_dir / BENCH_JSON, result_json.encode())
    atomic_write_bytes(results_dir / BENCH_MD, markdown.encode())
