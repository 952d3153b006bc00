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

Writes ``results/bench.json`` and ``results/BENCH.md`` (ratios, the targets of ``convert/data/bench_targets.json``,
and for each missed target the stage that holds it back).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import download, pipeline, report, timing
from .factory import fixtures
from .archive import layout_checkpoints
from .cli import run_cli
from .env import CHECKOUT, default_cache, quiet_tf
from .errors import UserError
from .families import FAMILIES
from .manifest import Variant, default_manifest
from .records import RunRow
from .factory.serve import serve_directory

quiet_tf()

TARGETS_FILE = Path(__file__).parent / "data" / "bench_targets.json"
V2 = "v2"  # the family whose variants' wall time is a figure of its own (v2_wall_s)

# The exclusive stages of convert.timing the bench names (the report's "held back by"), and why each
# costs what it does (work the floor does not do). The only place the bench spells a stage's name.
STAGE_NOTES = {
    "keras build": "keras.applications builds each variant's model once (shared by every stage): it creates and "
                   "initialises ~260 variables and traces ~150-250 layers in Python, ~0.9 s a variant; the floor "
                   "builds nothing",
    "keras load": "model.load_weights reads the top .h5 through Keras' legacy loader (per-dataset h5py calls, "
                  "one assign per weight) and the no-top file is read back the same way to check it",
    "archive extraction": "decompressing the archive (one pass) and writing its members: the floor does the same",
    "tf reference": "importing the part of the reference graph its outputs need, reading the checkpoint's values "
                    "and running it",
    "keras inference": "one eager call of the Keras model on the batch (op by op, no graph optimisation)",
    "hashing": "sha256 of files that changed since they were last hashed",
    "twin build": "a quantized variant's fake-quant twin: the float model cloned with a quantizer at every FakeQuant "
                  "of the archive's graph, kernels folded with their BN",
    "tflite conversion": "a model traced once as a frozen GraphDef (stateless_call on constants), then TF's "
                         "GraphDef converter (the twin: uint8; a user checkpoint's whole model: float)",
    "keras save": "a user checkpoint's whole model saved as a .keras file",
    "tflite inference": "LiteRT runs of the archive's and our .tflite on the verify inputs",
    "keras reload": "the written NAME.keras loaded back with keras.saving.load_model (a second build), as a user loads it",
    "reference graph build": "the project's slim graph of a user checkpoint's architecture built in TF1 (Python, "
                             "op by op; bare variables, fed by name)",
    "output checks": "the reloaded NAME.keras run on the verify inputs (its first, eager call)",
}
# convert checkpoint's stages for what the pipeline's conversion of a variant does not do: NAME.keras
# (saved, reloaded), NAME.tflite (converted), both run, and the project's own reference graph built
CHECKPOINT_EXTRA_STAGES = ("keras save", "keras reload", "tflite conversion",
                           "reference graph build", "output checks", "tflite inference")
FLOAT_FAMILIES = [key for key, family in FAMILIES.items() if not family.quantized]
QUANT_FAMILIES = [key for key, family in FAMILIES.items() if family.quantized]
CHECKPOINT_RUNS = 3  # convert checkpoint's runs (and start-ups) timed; the figures are the median's
OTHER = "other"  # the forced run's wall time outside every stage (never a holding stage)


# ------------------------------------------------------------------------------------------------
# The targets


# what names the cause of a missed target (a target's ``explained_by``)
FORCED_STAGES, RERUN_STAGES, PROBE_GROWTH, MEMORY = "forced stages", "re-run stages", "probe growth", "memory"
CHECKPOINT_STAGES = "checkpoint stages"
EXPLANATIONS = (FORCED_STAGES, RERUN_STAGES, PROBE_GROWTH, MEMORY, CHECKPOINT_STAGES)


@dataclass(frozen=True)
class Target:
    """One row of the targets table: the figure ``key`` of a result meets it when it is at most ``limit``."""

    key: str
    limit: float
    description: str
    explained_by: str  # one of EXPLANATIONS


def load_targets(path: Path = TARGETS_FILE) -> tuple[Target, ...]:
    """The targets table (``convert/data/bench_targets.json``), checked: every field, nothing else."""
    try:
        rows = json.loads(Path(path).read_text())["targets"]
        targets = tuple(Target(**row) for row in rows)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a targets table ({type(exc).__name__}: {exc}); each target needs exactly "
                         f"{', '.join(f.name for f in dataclasses.fields(Target))}") from None
    for t in targets:
        if t.explained_by not in EXPLANATIONS:
            raise ValueError(f"{path}: target {t.key!r}: explained_by is {t.explained_by!r}; valid: "
                             f"{', '.join(EXPLANATIONS)}")
    return targets


# ------------------------------------------------------------------------------------------------
# The result: typed records, one to_json / from_json


@dataclass
class Conversion:
    """What the bench needs of one pipeline row."""

    name: str
    passed: bool
    seconds: float
    stages: dict[str, float]  # exclusive seconds per stage in the converting process
    pid: int | None
    rss_mb: float | None  # that process's resident memory afterwards
    finished: float  # epoch seconds


def _conversion(row: RunRow) -> Conversion:
    """The one place that reads a pipeline row (:func:`convert.pipeline.run`'s summary of a variant)."""
    return Conversion(name=row.name, passed=bool(row.passed), seconds=row.seconds, stages=dict(row.stages),
                      pid=row.pid, rss_mb=row.rss_mb, finished=row.finished or 0.0)


def convert(variants: list[Variant], opts: pipeline.Options) -> list[Conversion]:
    """:func:`convert.pipeline.run`, its rows read by :func:`_conversion`."""
    return [_conversion(row) for row in pipeline.run(variants, opts)]


@dataclass
class Floor:
    seconds: float  # the figure the pipeline is compared with: process_s with start-up, else the reading
    import_s: float  # the floor process's start-up and imports (0 when measured in this process)
    work_s: float  # reading, decompressing and reading every tensor
    with_startup: bool  # measured in a fresh process, start-up included (as the pipeline's workers)


@dataclass
class ProcessMemory:
    start_mb: float  # after its first variant
    end_mb: float  # after its last
    peak_mb: float
    variants: int


@dataclass
class Memory:
    """Resident memory of the converting process that grew most."""

    start_mb: float
    end_mb: float
    growth_mb: float  # its highest figure over the first (never below 0)
    processes: dict[str, ProcessMemory]  # by process id


@dataclass
class FlatnessProbe:
    variant: str
    between: int  # other variants converted between the early and the late conversions
    first_s: float  # medians
    last_s: float
    first_all_s: list[float]
    last_all_s: list[float]
    stage_growth_s: dict[str, float]  # late minus early, per stage (of the median conversions)


@dataclass
class Ratios:
    pipeline_over_floor: float | None
    baseline_over_pipeline: float | None
    last_over_first: float | None


@dataclass
class TargetResult:
    key: str
    description: str
    limit: float
    value: float | None  # None: not measured (e.g. no V2 variant in the run)
    met: bool | None
    held_back_by: str | None = None  # for a missed target: the stage (or memory) that holds it back


@dataclass
class CheckpointBench:
    """``convert checkpoint`` on one user-like training directory (V2 1.0 at 224, 1001 classes, RMSProp, EMA:
    the catalogue's 1.0_224 as its owner's training leaves it), in a fresh process, against the budget of the
    pipeline's conversion of the same architecture plus one start-up."""

    directory: str  # the training directory's architecture
    wall_s: float  # the whole command, in a fresh process (start-up and imports included): the median run's
    stages: dict[str, float]  # the median run's exclusive stage times
    pipeline_s: float | None  # the forced pipeline run's 1.0_224 conversion (None: not in the run)
    startup_s: float  # a fresh process's start-up and imports (the floor's): the median of CHECKPOINT_RUNS
    budget_s: float | None
    over_budget: float | None  # wall_s / budget_s
    extra_s: float | None = None  # its stages in CHECKPOINT_EXTRA_STAGES: work the pipeline's conversion does not do
    wall_samples_s: list[float] = field(default_factory=list)  # every run's wall (wall_s: their median)
    startup_samples_s: list[float] = field(default_factory=list)  # every start-up's (startup_s: their median)


@dataclass
class BenchResult:
    variants: int
    jobs: int
    cpu_count: int | None
    date: str
    wall_s: float  # the forced run
    pipeline_s_per_variant: float
    per_variant_s: dict[str, float]
    forced_first_last_s: list[float]
    stages: dict[str, float]  # exclusive, summed over the worker processes, largest first, then OTHER
    rerun_s: float
    rerun_stages: dict[str, float]
    v2_wall_s: float | None
    floor: Floor
    baseline_s_per_variant: float | None
    baseline_variants: dict[str, float]
    first_variant_s: float  # the probe's medians; without a probe the forced run's first and last variants
    last_variant_s: float
    flatness_probe: FlatnessProbe | None
    memory: Memory
    ratios: Ratios
    targets: list[TargetResult] = field(default_factory=list)
    checkpoint: CheckpointBench | None = None  # ``convert checkpoint`` on a training directory (float runs with V2)

    def figures(self) -> dict[str, float | None]:
        """The figures a target can name (its ``key``)."""
        return {"pipeline_over_floor": self.ratios.pipeline_over_floor, "v2_wall_s": self.v2_wall_s,
                "last_over_first": self.ratios.last_over_first, "rss_growth_mb": self.memory.growth_mb,
                "rerun_s": self.rerun_s,
                "checkpoint_over_budget": self.checkpoint.over_budget if self.checkpoint else None}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "BenchResult":
        doc = json.loads(text)
        memory = doc["memory"]
        probe = doc["flatness_probe"]
        return cls(**{**doc, "floor": Floor(**doc["floor"]), "ratios": Ratios(**doc["ratios"]),
                      "memory": Memory(**{**memory, "processes": {pid: ProcessMemory(**p) for pid, p
                                                                  in memory["processes"].items()}}),
                      "flatness_probe": FlatnessProbe(**probe) if probe else None,
                      "targets": [TargetResult(**t) for t in doc["targets"]],
                      "checkpoint": CheckpointBench(**doc["checkpoint"]) if doc.get("checkpoint") else None})


# ------------------------------------------------------------------------------------------------
# Measurements


def floor_seconds(variants: list[Variant], archives: dict[str, Path]) -> float:
    """Read each archive, decompress it and read every tensor of every checkpoint in it (TF already
    imported): the least any conversion must do."""
    # TF imported here, not at module level: 2.8-3.1 s (measured) that `bench --help` and importers would pay
    import tensorflow as tf

    start = time.perf_counter()
    for v in variants:
        with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
            with tarfile.open(archives[v.name], "r:gz") as tar:
                for member in tar:  # one pass over the gzip stream (extractall would rewind it once)
                    tar.extract(member, tmp, filter="data")
            for prefix, _ in layout_checkpoints(tmp, v):
                reader = tf.train.load_checkpoint(str(prefix))
                for name in reader.get_variable_to_shape_map():
                    reader.get_tensor(name)
    return time.perf_counter() - start


def _floor_process(names: list[str], archives: dict[str, Path], started: float) -> tuple[float, float]:
    """The floor's own process: import TF and Keras, then :func:`floor_seconds`; (import_s, work_s)."""
    quiet_tf()
    import keras  # noqa: F401  (the floor's imports are part of what it measures)
    import tensorflow  # noqa: F401

    imported = time.time()
    work = floor_seconds([default_manifest().resolve(n) for n in names], archives)
    return imported - started, work


def measure_floor(variants: list[Variant], archives: dict[str, Path], in_workers: bool) -> Floor:
    """The floor, like with like. ``in_workers`` (the pipeline ran in worker processes, which start up and
    import TF inside the timed run): one fresh process that imports TF and Keras once, then reads,
    decompresses and reads every tensor of every archive, timed over its whole life. Else (the pipeline
    ran in this process, TF already imported): the reading alone, here."""
    if not in_workers:
        work = floor_seconds(variants, archives)
        return Floor(seconds=round(work, 2), import_s=0.0, work_s=round(work, 2), with_startup=False)
    start = time.time()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        import_s, work_s = pool.submit(_floor_process, [v.name for v in variants], archives, start).result()
    return Floor(seconds=round(time.time() - start, 2), import_s=round(import_s, 2), work_s=round(work_s, 2),
                 with_startup=True)


def baseline_seconds(variants: list[Variant], archives: dict[str, Path]) -> dict[str, float]:
    """The three single-stage scripts as separate processes per variant (each imports TF and Keras)."""
    out = {}
    for v in variants:
        with tempfile.TemporaryDirectory(prefix="baseline-") as tmp:
            tmp = Path(tmp)
            steps = [["extract_weights.py", v.name, "--archive", archives[v.name], "--out", tmp / "work"],
                     ["load_weights.py", v.name, "--guide", tmp / "work" / v.name / "layer_guide.p", "--out",
                      tmp / "weights", "--archive", archives[v.name]],
                     ["verify.py", v.name, "--archive", archives[v.name], "--weights-dir", tmp / "weights",
                      "--results", tmp / "results"]]
            start = time.perf_counter()
            for step in steps:
                done = subprocess.run([sys.executable, *map(str, step)], cwd=CHECKOUT, capture_output=True,
                                      text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"baseline {step[0]} {v.name} failed: {done.stderr.strip()[-500:]}")
            out[v.name] = time.perf_counter() - start
    return out


def _baseline_picks(variants: list[Variant], count: int) -> list[Variant]:
    """``count`` variants for the naive baseline: the first of each family, then the next ones."""
    picks, seen = [], set()
    for v in variants:
        if v.family_key not in seen:
            picks.append(v)
            seen.add(v.family_key)
    picks += [v for v in variants if v not in picks]
    return picks[:count]


def rss_growth(conversions: list[Conversion]) -> Memory:
    """Resident memory of each converting process after each of its variants (with ``--jobs N`` each
    worker converts about 1/N of them, one after another): ``start`` (after its first), ``end`` (after
    its last) and ``growth`` (its highest figure over ``start``) of the process that grew most."""
    seen: dict[int, list[float]] = {}
    for c in sorted(conversions, key=lambda c: c.finished):
        if c.rss_mb is not None:
            seen.setdefault(c.pid, []).append(c.rss_mb)
    processes = {str(pid): ProcessMemory(start_mb=mb[0], end_mb=mb[-1], peak_mb=max(mb), variants=len(mb))
                 for pid, mb in seen.items()}
    # growth: the highest figure after any later variant over the first (never below 0: variants differ in
    # size, so the last one may well be smaller than the first)
    worst = max(processes.values(), key=lambda p: p.peak_mb - p.start_mb,
                default=ProcessMemory(start_mb=0.0, end_mb=0.0, peak_mb=0.0, variants=0))
    return Memory(start_mb=worst.start_mb, end_mb=worst.end_mb, growth_mb=round(worst.peak_mb - worst.start_mb, 1),
                  processes=processes)


def flatness_probe(variants: list[Variant], opts: pipeline.Options, size: dict[str, int], root: Path,
                   between: int = 20) -> FlatnessProbe:
    """Does a long-lived process slow down? This process converts the same variant (the smallest archive)
    three times early and three times again after ``between`` other variants, every stage forced, after one
    warm-up conversion (a process's first conversion pays one-time costs); ``first_s``/``last_s`` are the
    medians. The original converter's time grew 9x over 22 variants."""
    ordered = sorted(variants, key=lambda v: size[v.name])
    target, others = ordered[0], ordered[1:between + 2]
    flat = dataclasses.replace(opts, jobs=1, force=True, quiet=True, work=root / "work", weights_dir=root / "weights",
                               results=root / "results")

    def times(count=3):  # a small variant's time varies by ~20 % from one conversion to the next: a median
        runs = [convert([target], flat)[0] for _ in range(count)]
        if not all(c.passed for c in runs):
            raise RuntimeError(f"the flatness probe's conversions of {target.name} failed")
        return sorted(runs, key=lambda c: c.seconds)

    convert(others[:1], flat)  # warm-up
    first = times()
    convert(others[1:], flat)
    last = times()
    grew = {k: round(v - first[1].stages.get(k, 0.0), 3) for k, v in last[1].stages.items()}
    return FlatnessProbe(variant=target.name, between=len(others) - 1, first_s=first[1].seconds,
                         last_s=last[1].seconds, first_all_s=[c.seconds for c in first],
                         last_all_s=[c.seconds for c in last], stage_growth_s=grew)


@dataclass
class TimedRun:
    """One pipeline run over every variant: its conversions, wall time and exclusive stage times."""

    conversions: list[Conversion]
    wall_s: float
    started_at: float  # epoch seconds (a conversion's ``finished`` is one too)
    stages: dict[str, float]


def _timed_run(variants: list[Variant], opts: pipeline.Options) -> TimedRun:
    timing.reset()
    start, started_at = time.perf_counter(), time.time()
    conversions = convert(variants, opts)
    wall = time.perf_counter() - start
    return TimedRun(conversions, wall, started_at, timing.snapshot())


def _publish(names, root: Path, seed: int, jobs: int, quiet: bool) -> tuple[list[Variant], Path, dict[str, int]]:
    """The factory archives of ``names`` in ``root/mirror`` (built when not cached); the variants in bench
    order and the archive sizes. V2 first: the time to its last variant is the V2 figure (v2_wall_s) of
    the same run; then, within V2 and within the rest, the largest archives first, so no worker is left
    alone with a long one."""
    selected = default_manifest().select(names)
    mirror = fixtures.publish([v.name for v in selected], root / "mirror", seed,
                              progress=not quiet and sys.stderr.isatty(), jobs=jobs)
    size = {v.name: (mirror / v.archive_filename).stat().st_size for v in selected}
    return sorted(selected, key=lambda v: (v.family_key != V2, -size[v.name])), mirror, size


def _run_pipeline(variants: list[Variant], mirror: Path, opts: pipeline.Options, size: dict[str, int],
                  flat_root: Path, probe_between: int = 20) -> tuple[TimedRun, TimedRun, FlatnessProbe | None]:
    """With ``mirror`` served on loopback: the forced run from a warm download cache, the warm re-run and
    (three variants or more) the flatness probe. Raises when any conversion failed."""
    with serve_directory(mirror) as url:
        opts = dataclasses.replace(opts, mirror=url)
        # a warm download cache: the archives are downloaded and verified before the timed run
        download.fetch_many(variants, opts.cache, jobs=opts.jobs, quiet=True, mirror=url, lock_path=opts.lock,
                            ignore_pins=True, extract=False)
        # the forced run extracts every archive again, as after a download
        shutil.rmtree(opts.cache / "extracted", ignore_errors=True)
        forced = _timed_run(variants, dataclasses.replace(opts, force=True))
        rerun = _timed_run(variants, opts)
        probe = (flatness_probe(variants, opts, size, flat_root, probe_between)
                 if len(variants) >= 3 and probe_between > 0 else None)
    failed = sorted({c.name for c in forced.conversions + rerun.conversions if not c.passed})
    if failed:
        raise RuntimeError(f"the benchmarked pipeline failed for {', '.join(failed)}")
    return forced, rerun, probe


# ------------------------------------------------------------------------------------------------
# Assembly, targets, report


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 2) if numerator is not None and denominator else None


def assemble(variants: list[Variant], jobs: int, forced: TimedRun, rerun: TimedRun, probe: FlatnessProbe | None,
             floor: Floor, baseline: dict[str, float]) -> BenchResult:
    """The result of the measurements (its targets not yet evaluated)."""
    conversions = forced.conversions
    staged = {k: round(v, 3) for k, v in sorted(forced.stages.items(), key=lambda kv: -kv[1])}
    staged[OTHER] = round(max(0.0, forced.wall_s - sum(forced.stages.values())), 3)
    v2 = {v.name for v in variants if v.family_key == V2}
    v2_wall = (round(max(c.finished for c in conversions if c.name in v2) - forced.started_at, 2) if v2 else None)
    per_variant = round(forced.wall_s / len(variants), 3)
    baseline_mean = round(sum(baseline.values()) / len(baseline), 3) if baseline else None
    # the same variant early and late in one process (the flatness probe); without one, the forced run's
    # first and last variants
    first_s, last_s = (probe.first_s, probe.last_s) if probe else (conversions[0].seconds, conversions[-1].seconds)
    return BenchResult(
        variants=len(variants), jobs=jobs, cpu_count=os.cpu_count(),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(forced.wall_s, 2), pipeline_s_per_variant=per_variant,
        per_variant_s={c.name: c.seconds for c in conversions},
        forced_first_last_s=[conversions[0].seconds, conversions[-1].seconds], stages=staged,
        rerun_s=round(rerun.wall_s, 2), rerun_stages={k: round(v, 2) for k, v in rerun.stages.items()},
        v2_wall_s=v2_wall, floor=floor, baseline_s_per_variant=baseline_mean,
        baseline_variants={k: round(s, 2) for k, s in baseline.items()},
        first_variant_s=first_s, last_variant_s=last_s, flatness_probe=probe, memory=rss_growth(conversions),
        ratios=Ratios(pipeline_over_floor=_ratio(forced.wall_s, floor.seconds),
                      baseline_over_pipeline=_ratio(baseline_mean, per_variant),
                      last_over_first=_ratio(last_s, first_s)))


def _holding_stage(stages: dict[str, float]) -> str:
    """The stage with the most time, its share and why it costs what it does."""
    timed = {k: v for k, v in stages.items() if k != OTHER}
    if not timed:
        return "no stage was timed"
    name, seconds = max(timed.items(), key=lambda kv: kv[1])
    total = sum(timed.values()) or 1.0
    why = f": {STAGE_NOTES[name]}" if name in STAGE_NOTES else ""
    return f"{name} ({seconds:.1f} s, {100 * seconds / total:.0f} % of the staged time){why}"


def held_back_by(target: Target, result: BenchResult) -> str:
    """What holds back a missed target, by the target's ``explained_by``."""
    growth = result.flatness_probe.stage_growth_s if result.flatness_probe else None
    if target.explained_by == PROBE_GROWTH and growth:
        stage, seconds = max(growth.items(), key=lambda kv: kv[1])
        return f"{stage}: +{seconds:.2f} s between the probe's early and late conversions"
    if target.explained_by == MEMORY:
        return "memory kept across variants (see memory.start_mb / memory.end_mb)"
    if target.explained_by == CHECKPOINT_STAGES and result.checkpoint:
        return _holding_stage(result.checkpoint.stages)
    return _holding_stage(result.rerun_stages if target.explained_by == RERUN_STAGES else result.stages)


def evaluate_targets(result: BenchResult, targets: tuple[Target, ...]) -> list[TargetResult]:
    """Each target met or not (None: its figure was not measured), a miss with what holds it back."""
    figures = result.figures()
    out = []
    for t in targets:
        if t.key not in figures:
            raise ValueError(f"target {t.key!r} names no figure of the bench; valid: {', '.join(figures)}")
        value = figures[t.key]
        met = None if value is None else value <= t.limit
        out.append(TargetResult(key=t.key, description=t.description, limit=t.limit, value=value, met=met,
                                held_back_by=held_back_by(t, result) if met is False else None))
    return out


CHECKPOINT_NAME = "1.0_224"  # the pipeline's conversion the training directory's is held against
_CHILD = """import json, sys, time
start = time.perf_counter()
from convert.cli import run_cli
from convert import timing
from convert.user.cli import main
try:
    run_cli(main, sys.argv[2:])
finally:
    open(sys.argv[1], "w").write(json.dumps(timing.snapshot()))
"""


def checkpoint_bench(root: Path, seed: int, per_variant: dict[str, float]) -> CheckpointBench:
    """Time ``python -m convert checkpoint`` on the V2 1.0 224 training directory in a fresh process, and a fresh
    process's start-up, ``CHECKPOINT_RUNS`` times each: the median run (its wall time and stages) and the median
    start-up make the figures."""
    from .factory.training import cached_training_dir
    from .reference import Architecture

    arch = Architecture("v2", 1.0, 224, 224, 1001)
    train_dir = cached_training_dir(arch, "rmsprop", True, seed)
    runs = []  # (wall, stages) of each run; the machine's noise between runs is ~1 s of ~9 s (measured)
    for _ in range(CHECKPOINT_RUNS):
        with tempfile.TemporaryDirectory(prefix="bench-checkpoint-", dir=root) as tmp:
            stages_file = Path(tmp) / "stages.json"
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", _CHILD, str(stages_file), str(train_dir), "--name", "bench",
                                   "--out", str(Path(tmp) / "out")], capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"convert checkpoint {train_dir} failed: {done.stderr.strip()[-800:]}")
            runs.append((wall, json.loads(stages_file.read_text())))
    startups = []
    for _ in range(CHECKPOINT_RUNS):  # one start-up: a fresh process importing what the command imports
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tensorflow, keras, convert.user.cli"], check=True,
                       capture_output=True)
        startups.append(time.perf_counter() - start)
    wall, stages = sorted(runs, key=lambda r: r[0])[len(runs) // 2]  # the median run, with its own stages
    startup = statistics.median(startups)
    pipeline_s = per_variant.get(CHECKPOINT_NAME)
    budget = round(pipeline_s + startup, 2) if pipeline_s is not None else None
    return CheckpointBench(directory=arch.label, wall_s=round(wall, 2),
                           stages={k: round(v, 3) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
                           pipeline_s=pipeline_s, startup_s=round(startup, 2), budget_s=budget,
                           over_budget=_ratio(wall, budget),
                           extra_s=round(sum(stages.get(k, 0.0) for k in CHECKPOINT_EXTRA_STAGES), 2),
                           wall_samples_s=[round(w, 2) for w, _ in runs],
                           startup_samples_s=[round(t, 2) for t in startups])


def run_bench(names, root: Path, jobs: int, baseline_count: int, seed: int, quiet: bool,
              probe_between: int = 20) -> BenchResult:
    """The whole benchmark over ``names`` (factory archives of ``seed``, everything under ``root``)."""
    import keras  # noqa: F401  (third-party: a run in this process (--jobs 1) pays no import inside the timed run)
    import tensorflow  # noqa: F401

    variants, mirror, size = _publish(names, root, seed, jobs, quiet)
    opts = pipeline.Options(cache=root / "cache", work=root / "work", weights_dir=root / "weights",
                            results=root / "results", lock=root / "checksums.lock.json", ignore_pins=True,
                            jobs=jobs, quiet=quiet)
    forced, rerun, probe = _run_pipeline(variants, mirror, opts, size, root / "flat", probe_between)
    archives = {v.name: download.archive_path(opts.cache, v) for v in variants}
    floor = measure_floor(variants, archives, in_workers=jobs > 1 and len(variants) > 1)
    baseline = baseline_seconds(_baseline_picks(variants, baseline_count), archives)
    result = assemble(variants, jobs, forced, rerun, probe, floor, baseline)
    if any(v.name == CHECKPOINT_NAME for v in variants):
        result = dataclasses.replace(result, checkpoint=checkpoint_bench(root, seed, result.per_variant_s))
    return dataclasses.replace(result, targets=evaluate_targets(result, load_targets()))


def _markdown_table(rows: list[tuple], head: tuple) -> list[str]:
    return [f"| {' | '.join(head)} |", "|" + "---|" * len(head), *(f"| {' | '.join(map(str, r))} |" for r in rows)]


def render(result: BenchResult) -> str:
    """BENCH.md: the figures, each target (met, or what holds it back) and the stage times."""
    r, floor, probe, mem = result.ratios, result.floor, result.flatness_probe, result.memory
    if floor.with_startup:
        floor_row = ("floor: a fresh process imports TF and Keras, then reads, decompresses and reads every tensor",
                     f"{floor.seconds:.1f} s ({floor.import_s:.1f} s start-up and imports, {floor.work_s:.1f} s "
                     f"reading; with start-up, as the pipeline's worker processes)")
    else:
        floor_row = ("floor: read, decompress and read every tensor, in this process (TF imported, as for the "
                     "pipeline run here)", f"{floor.seconds:.1f} s")
    flat_row = ((f"first / last: {probe.variant} converted early and again after {probe.between} other variants "
                 f"by one process (medians of 3)") if probe else "first / last variant of the forced run",
                f"{result.first_variant_s:.2f} s / {result.last_variant_s:.2f} s")
    figures = [
        ("pipeline wall (every stage forced, warm download cache)",
         f"{result.wall_s:.1f} s ({result.pipeline_s_per_variant:.2f} s a variant)"),
        floor_row,
        ("pipeline / floor", r.pipeline_over_floor),
        ("naive baseline (3 processes a variant)", f"{result.baseline_s_per_variant} s a variant"),
        ("baseline / pipeline", r.baseline_over_pipeline),
        flat_row,
        ("RSS after the first / last variant (the converting process that grew most; growth = its peak over "
         "the first)", f"{mem.start_mb:.0f} MB / {mem.end_mb:.0f} MB, growth {mem.growth_mb:.0f} MB"),
        ("warm re-run (everything up to date)", f"{result.rerun_s:.1f} s"),
        ("the V2 variants alone", "– (no V2 float variant in this run)" if result.v2_wall_s is None
         else f"{result.v2_wall_s} s"),
    ]
    if result.checkpoint:
        c = result.checkpoint
        samples = f" (median of {', '.join(f'{w:.1f}' for w in c.wall_samples_s)} s)" if c.wall_samples_s else ""
        figures.append((f"`convert checkpoint` on a training directory ({c.directory}), fresh process",
                        f"{c.wall_s:.1f} s{samples}; budget {c.budget_s} s = the pipeline's {CHECKPOINT_NAME} "
                        f"({c.pipeline_s} s) + one start-up ({c.startup_s} s); ratio {c.over_budget}"
                        + ("" if c.extra_s is None else
                           f"; of the {c.wall_s:.1f} s, {c.extra_s} s are outputs and proofs the pipeline does not "
                           f"make ({', '.join(CHECKPOINT_EXTRA_STAGES)}), {c.wall_s - c.startup_s - c.extra_s:.2f} s "
                           f"the rest after start-up")))
    targets = [(f"{t.description} (`{t.key}`)", f"≤ {t.limit}", t.value,
                "n/a" if t.met is None else "yes" if t.met else "no", t.held_back_by or "–") for t in result.targets]
    lines = ["# Benchmark: where the conversion time goes", "",
             f"{result.variants} variants, {result.cpu_count} cores, `--jobs {result.jobs}`, {result.date}.", "",
             *_markdown_table(figures, ("figure", "value")), "",
             "## Targets", "", *_markdown_table(targets, ("target", "limit", "measured", "met", "held back by")), "",
             "## Stages (exclusive time, forced run; summed over the worker processes)", "",
             *_markdown_table([(k, f"{v:.2f}") for k, v in result.stages.items()], ("stage", "seconds")), "",
             *(["## Stages of `convert checkpoint` (exclusive time, one process)", "",
                *_markdown_table([(k, f"{v:.2f}") for k, v in result.checkpoint.stages.items()], ("stage", "seconds")),
                ""] if result.checkpoint else []),
             "## Stages of the warm re-run", "",
             *_markdown_table([(k, f"{v:.2f}") for k, v in sorted(result.rerun_stages.items(), key=lambda kv: -kv[1])],
                              ("stage", "seconds"))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", default=FLOAT_FAMILIES, metavar="NAME",
                   help=f"variants or families (default: the float families {', '.join(FLOAT_FAMILIES)}, whose figures "
                        f"the targets are set for; the quantized ones: {', '.join(QUANT_FAMILIES)})")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="parallel downloads (default 2)")
    p.add_argument("--probe-between", type=int, default=20, metavar="N",
                   help="variants the flatness probe converts between its early and late runs (default 20; 0: no probe)")
    p.add_argument("--baseline", type=int, default=3, metavar="N",
                   help="variants for the naive three-process baseline (default 3)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help=f"bench downloads, guides and weights (default: {default_cache() / 'bench'})")
    p.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="where bench.json and BENCH.md go (default: results/)")
    p.add_argument("--seed", type=int, default=0, help="factory value seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.baseline < 0 or args.probe_between < 0:
        raise UserError(f"--jobs must be >= 1, --baseline and --probe-between >= 0; got {args.jobs}, {args.baseline} "
                        f"and {args.probe_between}")
    if args.baseline and CHECKOUT is None:
        raise UserError("the naive baseline runs the checkout's extract_weights.py, load_weights.py and verify.py, "
                        "which an installed package does not have; pass --baseline 0, or run the bench from a checkout")
    result = run_bench(args.names, args.cache or default_cache() / "bench", args.jobs, args.baseline, args.seed,
                       args.quiet, args.probe_between)
    markdown = render(result)
    report.write_bench(args.results, result.to_json(), markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    run_cli(main)
