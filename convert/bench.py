"""``python -m convert bench``: where the pipeline's time goes, against the floor and a naive baseline.

Over factory archives (default: every variant of every family) served on loopback, in one process:

1. the pipeline from a warm download cache with every stage forced (``run --force``), timed per variant
   and per stage (:mod:`convert.timing`), with resident memory at start and end;
2. a warm re-run (every stage up to date);
3. the floor: one fresh process imports TF and Keras once, then for every variant reads the archive,
   decompresses it and reads every checkpoint tensor; no conversion, no inference (timed from the
   process's start, as the pipeline's workers pay their start-up too; the reading alone is reported too);
4. a flatness probe: this process converts the smallest variant three times, then 20 others, then it
   three times again (every stage forced): first_variant_s / last_variant_s are the two medians;
5. a naive baseline: ``extract_weights.py``, ``load_weights.py`` and ``verify.py`` as separate processes
   for a few variants, as the original converter was used.

Writes ``results/bench.json`` and ``results/BENCH.md`` (ratios, the targets, and for each missed target
the stage that holds it back).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from .env import PROJECT_ROOT, default_cache, quiet_tf
from .fsutil import atomic_write_bytes

quiet_tf()

# issue 10's targets (2 cores, all variants, warm cache)
TARGETS = {"pipeline_over_floor": 3.0, "v2_wall_s": 60.0, "last_over_first": 1.25, "rss_growth_mb": 300.0,
           "rerun_s": 5.0}


def floor_seconds(variants, archives: dict[str, Path]) -> float:
    """Read each archive, decompress it and read every tensor of every checkpoint in it (TF already
    imported): the least any conversion must do."""
    import tensorflow as tf

    from .archive import fill

    start = time.perf_counter()
    for v in variants:
        with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
            with tarfile.open(archives[v.name], "r:gz") as tar:
                for member in tar:  # one pass over the gzip stream (extractall would rewind it once)
                    tar.extract(member, tmp, filter="data")
            for cf in v.spec.layout.checkpoints:
                reader = tf.train.load_checkpoint(str(Path(tmp) / fill(cf.prefix, v)))
                for name in reader.get_variable_to_shape_map():
                    reader.get_tensor(name)
    return time.perf_counter() - start


def _floor_process(names: list[str], archives: dict[str, Path], started: float) -> dict[str, float]:
    """The floor's own process: import TF and Keras, then :func:`floor_seconds`."""
    quiet_tf()
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    from .manifest import default_manifest

    imported = time.time()
    work = floor_seconds([default_manifest().resolve(n) for n in names], archives)
    return {"import_s": imported - started, "work_s": work}


def measure_floor(variants, archives: dict[str, Path]) -> dict[str, float]:
    """The floor as the issue defines it: one fresh process that imports TF and Keras once, then reads,
    decompresses and reads every tensor of every archive. ``process_s`` is its whole life (start-up and
    imports included, as the pipeline's worker processes pay them too); ``work_s`` the reading alone."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    start = time.time()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = pool.submit(_floor_process, [v.name for v in variants], archives, start).result()
    return {"process_s": time.time() - start, **parts}


def baseline_seconds(variants, archives: dict[str, Path]) -> dict[str, float]:
    """The three single-stage scripts as separate processes per variant (each imports TF and Keras)."""
    out = {}
    for v in variants:
        with tempfile.TemporaryDirectory(prefix="baseline-") as tmp:
            tmp = Path(tmp)
            steps = [["extract_weights.py", v.name, "--archive", archives[v.name], "--out", tmp / "work"],
                     ["load_weights.py", v.name, "--guide", tmp / "work" / v.name / "layer_guide.p", "--out",
                      tmp / "weights"],
                     ["verify.py", v.name, "--archive", archives[v.name], "--weights-dir", tmp / "weights",
                      "--results", tmp / "results"]]
            start = time.perf_counter()
            for step in steps:
                done = subprocess.run([sys.executable, *map(str, step)], cwd=PROJECT_ROOT, capture_output=True,
                                      text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"baseline {step[0]} {v.name} failed: {done.stderr.strip()[-500:]}")
            out[v.name] = time.perf_counter() - start
    return out


def rss_growth(rows: list[dict]) -> dict:
    """Resident memory of each converting process after each of its variants (with ``--jobs N`` each
    worker converts about 1/N of them, one after another): ``start`` (after its first), ``end`` (after
    its last) and ``growth`` (its highest figure over ``start``) of the process that grew most."""
    seen: dict[int, list[float]] = {}
    for row in sorted(rows, key=lambda r: r.get("finished", 0.0)):
        if row.get("rss_mb") is not None:
            seen.setdefault(row["pid"], []).append(row["rss_mb"])
    processes = {str(pid): {"start": mb[0], "end": mb[-1], "peak": max(mb), "variants": len(mb)}
                 for pid, mb in seen.items()}
    # growth: the highest figure after any later variant over the first (never below 0: variants differ in
    # size, so the last one may well be smaller than the first)
    worst = max(processes.values(), key=lambda p: p["peak"] - p["start"],
                default={"start": 0.0, "end": 0.0, "peak": 0.0})
    return {"start": worst["start"], "end": worst["end"], "growth": worst["peak"] - worst["start"],
            "processes": processes}


# why a stage costs what it does, for the report's "held back by" (work the floor does not do)
WHY = {
    "keras build": "keras.applications builds each variant's model once (shared by every stage): it creates and "
                   "initialises ~260 variables and traces ~150-250 layers in Python, ~0.9 s a variant; the floor "
                   "builds nothing",
    "keras load": "model.load_weights reads the top .h5 through Keras' legacy loader (per-dataset h5py calls, "
                  "one assign per weight) and the no-top file is read back the same way to check it",
    "archive extraction": "decompressing the archive (one pass) and writing its members: the floor does the same",
    "tf reference": "importing the reference graph, reading the checkpoint's values and running it",
    "keras inference": "one eager call of the Keras model on the batch (op by op, no graph optimisation)",
    "hashing": "sha256 of files that changed since they were last hashed",
}


def flatness_probe(variants, opts, size: dict[str, int], root: Path, between: int = 20) -> dict:
    """Does a long-lived process slow down? This process converts the same variant (the smallest archive)
    three times early and three times again after ``between`` other variants, every stage forced, after one
    warm-up conversion (a process's first conversion pays one-time costs); ``first_s``/``last_s`` are the
    medians. The original converter's time grew 9x over 22 variants."""
    import dataclasses

    from . import pipeline

    ordered = sorted(variants, key=lambda v: size[v.name])
    target, others = ordered[0], ordered[1:between + 2]
    flat = dataclasses.replace(opts, jobs=1, force=True, quiet=True, work=root / "work", weights=root / "weights",
                               results=root / "results")
    def times(count=3):  # a small variant's time varies by ~20 % from one conversion to the next: a median
        rows = [pipeline.run([target], flat)[0] for _ in range(count)]
        if not all(r.get("passed") for r in rows):
            raise RuntimeError(f"the flatness probe's conversions of {target.name} failed")
        return sorted(rows, key=lambda r: r["seconds"])

    pipeline.run(others[:1], flat)  # warm-up
    first = times()
    pipeline.run(others[1:], flat)
    last = times()
    grew = {k: round(v - first[1]["stages"].get(k, 0.0), 3) for k, v in last[1]["stages"].items()}
    return {"variant": target.name, "between": len(others) - 1, "first_s": first[1]["seconds"],
            "last_s": last[1]["seconds"], "first_all_s": [r["seconds"] for r in first],
            "last_all_s": [r["seconds"] for r in last], "stage_growth_s": grew}


def _holding_stage(stages: dict[str, float]) -> str:
    name, seconds = max(stages.items(), key=lambda kv: kv[1])
    total = sum(stages.values()) or 1.0
    why = f": {WHY[name]}" if name in WHY else ""
    return f"{name} ({seconds:.1f} s, {100 * seconds / total:.0f} % of the staged time){why}"


def run_bench(names, root: Path, jobs: int, baseline_count: int, seed: int, quiet: bool) -> dict:
    from . import download, pipeline, timing
    from .factory import fixtures
    from .factory.serve import serve_directory
    from .manifest import default_manifest

    import keras  # noqa: F401  (a run in this process (--jobs 1) pays no import inside the timed run)
    import tensorflow  # noqa: F401

    selected = default_manifest().select(names)
    mirror = fixtures.publish([v.name for v in selected], root / "mirror", seed,
                              progress=not quiet and sys.stderr.isatty(), jobs=jobs)
    # V2 first: the time to its last variant is the V2 figure (v2_wall_s) of the same run; then, within
    # V2 and within the rest, the largest archives first, so no worker is left alone with a long one
    size = {v.name: (mirror / v.archive_filename).stat().st_size for v in selected}
    variants = sorted(selected, key=lambda v: (v.family != "v2", -size[v.name]))
    opts = pipeline.Options(cache=root / "cache", work=root / "work", weights=root / "weights",
                            results=root / "results", lock=root / "checksums.lock.json", ignore_pins=True,
                            jobs=jobs, quiet=quiet)
    with serve_directory(mirror) as url:
        opts.mirror = url
        # a warm download cache: the archives are downloaded and verified before the timed run
        download.fetch_many(variants, opts.cache, jobs=jobs, quiet=True, mirror=url, lock_path=opts.lock,
                            ignore_pins=True, extract=False)
        # the forced run extracts every archive again, as after a download
        shutil.rmtree(opts.cache / "extracted", ignore_errors=True)
        timing.reset()
        opts.force = True
        start, started_at = time.perf_counter(), time.time()
        rows = pipeline.run(variants, opts)
        wall = time.perf_counter() - start
        stages = timing.snapshot()
        rss = rss_growth(rows)
        timing.reset()
        opts.force = False
        start = time.perf_counter()
        rerun_rows = pipeline.run(variants, opts)
        rerun = time.perf_counter() - start
        rerun_stages = timing.snapshot()
        probe = flatness_probe(variants, opts, size, root / "flat") if len(variants) >= 3 else None
    failed = [r["name"] for r in rows + rerun_rows if not r.get("passed")]
    if failed:
        raise RuntimeError(f"the benchmarked pipeline failed for {', '.join(sorted(set(failed)))}")
    archives = {v.name: download.archive_path(opts.cache, v) for v in variants}
    # like with like: worker processes start up and import TF inside the timed run, a run in this
    # process does not (TF is imported above), so its floor is the reading alone, measured here
    in_workers = jobs > 1 and len(variants) > 1
    floor_parts = (measure_floor(variants, archives) if in_workers
                   else {"import_s": 0.0, "work_s": floor_seconds(variants, archives)})
    floor = floor_parts["process_s"] if in_workers else floor_parts["work_s"]
    picks = _baseline_picks(variants, baseline_count)
    baseline = baseline_seconds(picks, archives)
    per_variant = {r["name"]: r["seconds"] for r in rows}
    staged = {k: round(v, 2) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])}
    staged["other"] = round(max(0.0, wall - sum(stages.values())), 2)
    v2 = [v.name for v in variants if v.family == "v2"]
    result = {
        "variants": len(variants), "wall_s": round(wall, 2), "floor_s": round(floor, 2),
        "floor_import_s": round(floor_parts["import_s"], 2), "floor_work_s": round(floor_parts["work_s"], 2),
        "pipeline_s_per_variant": round(wall / len(variants), 3),
        "baseline_s_per_variant": round(sum(baseline.values()) / len(baseline), 3) if baseline else None,
        "baseline_variants": {k: round(s, 2) for k, s in baseline.items()},
        # the same variant early and late in one process (the flatness probe); without one, the forced
        # run's first and last variants
        "first_variant_s": probe["first_s"] if probe else rows[0]["seconds"],
        "last_variant_s": probe["last_s"] if probe else rows[-1]["seconds"],
        "flatness_probe": probe, "forced_first_last_s": [rows[0]["seconds"], rows[-1]["seconds"]],
        "rss_start_mb": rss["start"], "rss_end_mb": rss["end"], "rss_processes": rss["processes"],
        "rerun_s": round(rerun, 2),
        "v2_wall_s": round(max(r["finished"] for r in rows if r["name"] in v2) - started_at, 2) if v2 else None,
        "floor_compared": "process_s" if in_workers else "work_s",
        "stages": staged, "rerun_stages": {k: round(v, 2) for k, v in rerun_stages.items()},
        "per_variant_s": per_variant, "cpu_count": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "jobs": jobs,
    }
    result["ratios"] = {
        "pipeline_over_floor": round(wall / floor, 2) if floor else None,
        "baseline_over_pipeline": (round(result["baseline_s_per_variant"] / result["pipeline_s_per_variant"], 2)
                                   if baseline else None),
        "last_over_first": (round(result["last_variant_s"] / result["first_variant_s"], 2)
                            if result["first_variant_s"] else None),
        "rss_growth_mb": round(rss["growth"], 1),
    }
    measured = {"pipeline_over_floor": result["ratios"]["pipeline_over_floor"], "v2_wall_s": result["v2_wall_s"],
                "last_over_first": result["ratios"]["last_over_first"],
                "rss_growth_mb": result["ratios"]["rss_growth_mb"], "rerun_s": result["rerun_s"]}
    result["targets"] = {}
    for key, limit in TARGETS.items():
        value = measured[key]
        met = None if value is None else value <= limit  # None: not measured (e.g. no V2 variant in the run)
        entry = {"limit": limit, "value": value, "met": met}
        if not met and value is not None:
            growth = (result.get("flatness_probe") or {}).get("stage_growth_s")
            if key == "last_over_first" and growth:
                stage, seconds = max(growth.items(), key=lambda kv: kv[1])
                entry["held_back_by"] = f"{stage}: +{seconds:.2f} s between the probe's early and late conversions"
                result["targets"][key] = entry
                continue
            entry["held_back_by"] = ("memory kept across variants (see rss_start_mb / rss_end_mb)"
                                     if key == "rss_growth_mb" else
                                     _holding_stage(rerun_stages if key == "rerun_s" else stages))
        result["targets"][key] = entry
    return result


def _baseline_picks(variants, count: int):
    """``count`` variants for the naive baseline: the first of each family, then the next ones."""
    picks, seen = [], set()
    for v in variants:
        if v.family not in seen:
            picks.append(v)
            seen.add(v.family)
    picks += [v for v in variants if v not in picks]
    return picks[:count]


def render(result: dict) -> str:
    r, t = result["ratios"], result["targets"]
    lines = ["# Benchmark: where the conversion time goes", "",
             f"{result['variants']} variants, {result['cpu_count']} cores, `--jobs {result['jobs']}`, "
             f"{result['date']}.", "",
             "| figure | value |", "|---|---|",
             f"| pipeline wall (every stage forced, warm download cache) | {result['wall_s']:.1f} s "
             f"({result['pipeline_s_per_variant']:.2f} s a variant) |",
             (f"| floor: a fresh process imports TF and Keras, then reads, decompresses and reads every "
              f"tensor | {result['floor_s']:.1f} s ({result['floor_import_s']:.1f} s start-up and imports, "
              f"{result['floor_work_s']:.1f} s reading; with start-up, as the pipeline's worker processes) |"
              if result["floor_compared"] == "process_s" else
              f"| floor: read, decompress and read every tensor, in this process (TF imported, as for the "
              f"pipeline run here) | {result['floor_s']:.1f} s |"),
             f"| pipeline / floor | {r['pipeline_over_floor']} |",
             f"| naive baseline (3 processes a variant) | {result['baseline_s_per_variant']} s a variant |",
             f"| baseline / pipeline | {r['baseline_over_pipeline']} |",
             (f"| first / last: {result['flatness_probe']['variant']} converted early and again after "
              f"{result['flatness_probe']['between']} other variants by one process (medians of 3) | "
              f"{result['first_variant_s']:.2f} s / {result['last_variant_s']:.2f} s |"
              if result.get("flatness_probe") else
              f"| first / last variant of the forced run | {result['first_variant_s']:.2f} s / "
              f"{result['last_variant_s']:.2f} s |"),
             f"| RSS after the first / last variant (the converting process that grew most; growth = its "
             f"peak over the first) | {result['rss_start_mb']:.0f} MB / {result['rss_end_mb']:.0f} MB, "
             f"growth {r['rss_growth_mb']:.0f} MB |",
             f"| warm re-run (everything up to date) | {result['rerun_s']:.1f} s |",
             f"| the V2 variants alone | {result['v2_wall_s']} s |", "",
             "## Targets", "", "| target | limit | measured | met | held back by |", "|---|---|---|---|---|"]
    for key, e in t.items():
        met = "n/a" if e["met"] is None else "yes" if e["met"] else "no"
        lines.append(f"| {key} | {e['limit']} | {e['value']} | {met} | "
                     f"{e.get('held_back_by', '–')} |")
    lines += ["", "## Stages (exclusive time, forced run; summed over the worker processes)", "",
              "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in result["stages"].items()]
    lines += ["", "## Stages of the warm re-run", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in sorted(result["rerun_stages"].items(), key=lambda kv: -kv[1])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from .errors import UserError

    p = argparse.ArgumentParser(prog="python -m convert bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", default=["all"], metavar="NAME", help="variants or families (default: all)")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="parallel downloads (default 2)")
    p.add_argument("--baseline", type=int, default=3, metavar="N",
                   help="variants for the naive three-process baseline (default 3)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="bench downloads, guides and weights (default: <project>/cache/bench)")
    p.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="where bench.json and BENCH.md go (default: results/)")
    p.add_argument("--seed", type=int, default=0, help="factory value seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.baseline < 0:
        raise UserError(f"--jobs must be >= 1 and --baseline >= 0, got {args.jobs} and {args.baseline}")
    result = run_bench(args.names, args.cache or default_cache() / "bench", args.jobs, args.baseline, args.seed,
                       args.quiet)
    atomic_write_bytes(args.results / "bench.json", (json.dumps(result, indent=2) + "\n").encode())
    atomic_write_bytes(args.results / "BENCH.md", render(result).encode())
    print(render(result))
    return 0


if __name__ == "__main__":
    from .cli import run_cli

    run_cli(main)
