"""Orchestration: download -> extract (layer guide) -> write_h5 (.h5) -> verify (parity) per variant, any family.

Each stage is skipped when its outputs are up to date for its inputs: a stamp per variant
(``work/<name>/stamp.json``) records the sha256 of each stage's inputs (archive, guide, .h5 files, images,
output folder, and a hash of the converter's code and package versions) and of its outputs; a stage
re-runs when any of them differs or an output is missing or changed (``--force`` re-runs everything). One failing variant
does not stop the others; every variant's TF graph/session and Keras model are released after use.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import hashlib
import json
import multiprocessing
import os
import sys
import time
import traceback
from collections import Counter, defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from . import cards, checkpoint, download, keras_weights, parity, report, timing
from . import guide as guides
from .archive import VALUE_SOURCES
from .env import cache_help, default_cache, env_setting, quiet_tf
from .errors import UserError
from .families import FAMILIES
from .keras_model import architecture
from .fsutil import atomic_write_bytes, package_versions, sha256_file, signature_record, signature_trusted
from .manifest import Variant, default_manifest
from .quant import parity as quant_parity, twin as quant_twin, walk
from .records import STAGES, ConversionFacts, ParityRecord, RunRow

quiet_tf()


@dataclass
class Options:
    cache: Path = field(default_factory=default_cache)
    work: Path = Path("work")
    weights_dir: Path = Path("weights")
    results: Path = Path("results")
    mirror: str | None = None
    lock: Path | None = None
    jobs: int = 1
    force: bool = False
    value_source: str = "auto"
    images: list[Path] = field(default_factory=list)
    random_inputs: int = 4
    seed: int = 0
    quiet: bool = False
    ignore_pins: bool = False


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    """Hash of the converter's code (every module of ``convert/``) and the package versions it runs on;
    a stage whose stamp holds another value re-runs."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(json.dumps(package_versions(), sort_keys=True).encode())
    return digest.hexdigest()


@dataclass
class StageEntry:
    """A stamp's record of one stage: its inputs, its outputs' sha256 and signatures, and its result."""

    inputs: dict
    outputs: dict[str, str]  # path -> sha256
    stat: dict[str, dict]  # path -> signature_record
    result: object = None  # what the stage hands on (JSON): a path, conversion facts, a parity record

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data) -> StageEntry:
        if not isinstance(data, dict) or not {"inputs", "outputs"} <= set(data):
            raise ValueError(f"not a stamp entry: {str(data)[:80]}")
        return cls(data["inputs"], dict(data["outputs"]), dict(data.get("stat") or {}), data.get("result"))


class Stamp:
    """Per-variant record of what each stage consumed and produced (content hashes). Each output's
    :func:`~convert.fsutil.signature_record` is kept with its hash, so checking an unchanged output costs
    a ``stat``, not a read; an output whose signature cannot vouch for it (changed, or racily clean) is
    hashed, and when the hash still matches its signature is recorded anew."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = {k: StageEntry.from_json(v) for k, v in json.loads(path.read_text()).items()}
        except (FileNotFoundError, ValueError, AttributeError):  # none yet, unreadable or of another
            self.data = {}  # version: every stage re-runs

    def _unchanged(self, entry: StageEntry, path: str) -> bool:
        try:
            if signature_trusted(entry.stat.get(path), path):
                return True
            if sha256_file(Path(path)) != entry.outputs[path]:
                return False
            entry.stat[path] = signature_record(path)  # vouches for it from now on
            self._dirty = True
            return True
        except FileNotFoundError:
            return False

    def fresh(self, stage: str, inputs: dict) -> bool:
        entry = self.data.get(stage)
        if entry is None or entry.inputs != inputs:
            return False
        self._dirty = False
        unchanged = all(self._unchanged(entry, p) for p in entry.outputs)
        if unchanged and self._dirty:
            self._save()
        return unchanged

    def digest(self, path: Path) -> str:
        """sha256 of a file, taken from this stamp when it is a recorded output its signature vouches for."""
        key = str(path)
        for entry in self.data.values():
            if key in entry.outputs and signature_trusted(entry.stat.get(key), path):
                return entry.outputs[key]
        return sha256_file(path)

    def record(self, stage: str, inputs: dict, outputs: list[Path], result=None) -> None:
        self.data[stage] = StageEntry(inputs, {str(p): sha256_file(p) for p in outputs},
                                      {str(p): signature_record(p) for p in outputs}, result)
        self._save()

    def _save(self) -> None:
        doc = {stage: entry.to_json() for stage, entry in self.data.items()}
        atomic_write_bytes(self.path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def _stage(stamp: Stamp, stage: str, inputs: dict, force: bool, run) -> tuple[bool, StageEntry]:
    """Run ``run() -> (outputs, result)`` unless the stamp says it is fresh. Returns (ran, stamp entry)."""
    if not force and stamp.fresh(stage, inputs):
        return False, stamp.data[stage]
    outputs, result = run()
    stamp.record(stage, inputs, outputs, result)
    return True, stamp.data[stage]


class StageError(RuntimeError):
    """A stage of one variant failed; the message starts with the stage's name."""


class NeedsWork(Exception):
    """Raised by ``convert_variant(..., only_if_fresh=True)`` at the first stage that would run."""


def convert_variant(variant: Variant, fetched, opts: Options, only_if_fresh: bool = False) -> RunRow:
    """Extract, write the .h5 files of and verify one fetched variant; then, when a stage ran, write its
    sidecar, model card and SHA256SUMS once (:func:`convert.cards.write`). Returns the run row (raises on
    failure). With ``only_if_fresh``, raise :class:`NeedsWork` instead of running a stage (the up-to-date
    check the main process makes before handing a variant to a worker)."""
    stamp = Stamp(opts.work / variant.name / "stamp.json")
    row = RunRow(variant.name, downloaded=fetched.downloaded)

    def timed(stage, inputs, run):
        start = time.perf_counter()
        if only_if_fresh and (opts.force or not stamp.fresh(stage, inputs)):
            raise NeedsWork(stage)
        try:
            ran, entry = _stage(stamp, stage, inputs, opts.force, run)
        except Exception as exc:
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            raise StageError(f"{stage}: {detail}") from exc
        row.timings[stage] = round(time.perf_counter() - start, 2)
        row.stage_status[stage] = "ran" if ran else "skipped"
        return entry

    guide_dir = opts.work / variant.name
    model_dir = None

    def extracted() -> Path:  # the archive is extracted only when a stage needs its members
        nonlocal model_dir
        if model_dir is None:
            model_dir = download.extract_fetched(fetched, opts.cache)
        return model_dir

    quantized = variant.family.quantized
    quant_archive = None

    def opened():  # a quantized archive's graph walk, ranges and .tflite input, every bad-input check made
        nonlocal quant_archive
        if quant_archive is None:
            quant_archive = quant_parity.open_quant_archive(extracted(), variant)
        return quant_archive

    def extract():
        twin_ranges = walk.range_variables(opened().quantizers) if quantized else ()
        guide = checkpoint.guide_from_extracted(extracted(), variant, opts.value_source, fetched.archive,
                                                fetched.sha256, fetched.source, twin_ranges=twin_ranges)
        guide_path = guides.save_layer_guide(guide, guide_dir)
        return [guide_path, guide_path.parent / guides.ARRAYS_FILENAME], str(guide_path)

    entry = timed("extract", {"archive": fetched.sha256, "weights": opts.value_source,
                              "out": str(guide_dir.resolve()), "code": code_version()}, extract)
    guide_path = Path(entry.result)

    def write_h5():
        facts = keras_weights.convert_guide(guides.load_layer_guide(guide_path), variant, opts.weights_dir)
        return [opts.weights_dir / name for name in facts.files], facts.to_json()

    entry = timed("write_h5", {"guide": stamp.digest(guide_path), "out": str(opts.weights_dir.resolve()),
                               "code": code_version()}, write_h5)
    facts = ConversionFacts.from_json(entry.result)
    top, no_top = opts.weights_dir / variant.keras_weights, opts.weights_dir / variant.keras_weights_no_top
    inputs = {"archive": fetched.sha256, "top": stamp.digest(top), "no_top": stamp.digest(no_top),
              "images": {str(p): sha256_file(Path(p)) for p in opts.images}, "random_inputs": opts.random_inputs,
              "seed": opts.seed, "code": code_version()}
    if quantized:
        twin_path = opts.weights_dir / variant.family.twin_file(variant)
        tflite_path = opts.weights_dir / variant.family.tflite_file(variant)
        twin_model = None

        def write_quant():  # the fake-quant twin (.keras) and its 8-bit .tflite
            nonlocal twin_model
            twin_model = quant_twin.write_outputs(variant, guides.load_layer_guide(guide_path), opened().quantizers,
                                                  opened().input, opts.weights_dir)
            return [twin_path, tflite_path], None

        timed("write_quant", {"guide": stamp.digest(guide_path), "archive": fetched.sha256,
                              "out": str(opts.weights_dir.resolve()), "code": code_version()}, write_quant)
        inputs.update(twin=stamp.digest(twin_path), tflite=stamp.digest(tflite_path))

    def verify():
        if not quantized:
            record = parity.verify(variant, extracted(), opts.weights_dir, facts.source(fetched.source),
                                   images=opts.images, random_count=opts.random_inputs, seed=opts.seed)
            return [], record.to_json()
        record = quant_parity.verify(variant, extracted(), opts.weights_dir, facts.source(fetched.source),
                                     images=opts.images, random_count=opts.random_inputs, seed=opts.seed,
                                     archive=opened(), twin=twin_model)
        return [], record.to_json()

    entry = timed("verify", inputs, verify)
    row.record = ParityRecord.from_json(entry.result)
    row.passed = row.record.passed
    if "ran" in row.stage_status.values() or not cards.sidecar_path(opts.weights_dir, variant).is_file():
        cards.write(opts.weights_dir, variant, facts, row.record)  # the variant's metadata, once, at its end
    return row


def _rss_mb() -> float | None:
    """Resident memory of this process now (Linux), to show it stays flat across variants."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _release() -> None:
    """Drop every TF/Keras object of a variant so per-variant time and memory stay flat; the model of its
    architecture stays for the next variant of that architecture (keras_model.model_for drops it when
    another architecture comes: never two alive)."""
    import keras  # imports TensorFlow (~2 s): an up-to-date run settles every variant without it

    keras.backend.clear_session(free_memory=False)
    gc.collect()  # once (clear_session(free_memory=True) would collect too)


def _failed(name: str, error: str) -> RunRow:
    """The run row of a variant that failed before a stage could say more."""
    return RunRow(name, passed=False, error=error)


def _convert_one(item, opts: Options, only_if_fresh: bool = False) -> RunRow:
    """One fetched (or failed) variant -> its run row; never raises, except :class:`NeedsWork`.
    The row carries the time and exclusive stage times (:mod:`convert.timing`) it took in this process,
    and this process's id and resident memory afterwards."""
    start, before = time.perf_counter(), timing.snapshot()
    if isinstance(item, download.FetchFailure):
        row = _failed(item.variant.name, f"download: {item.error}")
    else:
        try:
            row = convert_variant(item.variant, item, opts, only_if_fresh)
        except NeedsWork:
            raise
        except Exception as exc:  # one failing variant never stops the others
            detail = str(exc) if isinstance(exc, StageError) else \
                traceback.format_exception_only(type(exc), exc)[-1].strip()
            row = _failed(item.variant.name, detail)
        finally:
            if not only_if_fresh:
                _release()
    after = timing.snapshot()
    row.seconds = round(time.perf_counter() - start, 2)
    row.stages = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}
    row.pid, row.rss_mb, row.finished = os.getpid(), _rss_mb(), time.time()
    return row


def _worker_init(threads: int) -> None:
    """A worker process of ``--jobs N``: TF and Keras imported once, quiet, before its first variant, and
    TF's thread pools sized to this worker's share of the cores (N workers with a pool of every core
    each would only take turns)."""
    quiet_tf()
    import keras  # noqa: F401
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    # TF's and Keras' own objects live as long as the process: kept out of every later collection, which
    # then only walks what the conversions created (0.2 s less per collection, one per variant)
    gc.freeze()


def run(variants: list[Variant], opts: Options) -> list[RunRow]:
    """The whole pipeline over ``variants``; returns one summary row per variant (``error`` on failure),
    in the order of ``variants``.

    Archives are downloaded in ``jobs`` threads; each one is handed on as soon as it is ready, so
    conversions run while later archives download. A variant whose every stage is up to date is settled
    here, without TF; the others are converted in this process (``jobs`` 1) or in ``jobs`` worker
    processes (spawned when the first variant needs one; each imports TF once and converts one variant
    after another). Variants sharing a Keras architecture (:func:`convert.keras_model.architecture`) are
    fetched next to each other and converted one after another by one process, so that one model build
    serves them all (:class:`_Groups`). Only this process writes the results (through :mod:`convert.report`)."""
    rows: dict[str, RunRow] = {}
    bar = tqdm(total=len({v.name for v in variants}), desc="variants", unit="variant",
               disable=opts.quiet or not sys.stderr.isatty())

    def done(item, row):
        rows[item.variant.name] = row
        bar.update(1)
        if not opts.quiet:
            verdict = "pass" if row.passed else "FAIL"
            detail = row.error or f"max|dlogit| {row.max_abs_dlogit:.2e} (tol {row.tolerance:.2e})"
            tqdm.write(f"{item.variant.name}: {verdict}  {detail}  [{row.seconds:.1f} s]", file=sys.stderr)
        record = row.record if row.error is None else report.failure_record(
            item.variant, row.error, download.source_url(item.variant, opts.mirror))
        report.update_results([record], opts.results)  # the one place the pipeline writes results

    workers = _Workers(opts, len(variants))
    groups = _Groups(variants, workers.size)
    try:
        # each archive is extracted by whoever converts it (and only when a stage needs its members)
        for item in download.fetch_iter(by_architecture(variants), opts.cache, jobs=opts.jobs, quiet=opts.quiet,
                                        mirror=opts.mirror, lock_path=opts.lock, ignore_pins=opts.ignore_pins,
                                        extract=False):
            waits = False
            try:
                done(item, _convert_one(item, opts, only_if_fresh=True))
            except NeedsWork:
                waits = opts.jobs > 1
                if not waits:
                    bar.set_postfix_str(item.variant.name)
                    done(item, _convert_one(item, opts))
            for group in groups.arrived(item, waits):
                workers.submit_group(group)
            for item, row in workers.finished(block=False):
                done(item, row)
        for group in groups.leftover():
            workers.submit_group(group)
        for item, row in workers.finished(block=True):
            done(item, row)
    finally:
        workers.close()
        bar.close()
    return [rows[name] for name in dict.fromkeys(v.name for v in variants)]


def by_architecture(variants: list[Variant]) -> list[Variant]:
    """The variants, those of one Keras architecture next to each other (in the order each architecture
    first appears; stable within one)."""
    first: dict[tuple, int] = {}
    for v in variants:
        first.setdefault(architecture(v), len(first))
    return sorted(variants, key=lambda v: first[architecture(v)])


class _Groups:
    """Variants waiting for the others of their architecture: a worker gets them together and converts
    them one after another, so one model build serves them all. A group goes as soon as every variant of
    its architecture has arrived (settled here, failed, or waiting), or when it reaches a fair share of the
    run (so that every worker has work when the run has few architectures)."""

    def __init__(self, variants: list[Variant], workers: int):
        unique = {v.name: v for v in variants}.values()
        self.left = Counter(architecture(v) for v in unique)  # not arrived yet, per architecture
        self.most = max(1, -(-len(unique) // max(1, workers)))  # the fair share: ceil(variants / workers)
        self.waiting: dict[tuple, list] = defaultdict(list)

    def arrived(self, item, waits: bool) -> list[list]:
        """Count ``item`` in (queued if it ``waits`` for a worker); returns the groups ready to go."""
        key = architecture(item.variant)
        self.left[key] -= 1
        if waits:
            self.waiting[key].append(item)
        group = self.waiting[key]
        if group and (self.left[key] <= 0 or len(group) >= self.most):
            return [self.waiting.pop(key)]
        return []

    def leftover(self) -> list[list]:
        """The groups still waiting (none once every variant has arrived)."""
        groups = [group for group in self.waiting.values() if group]
        self.waiting.clear()
        return groups


def _convert_group(fn, items: list, opts: Options) -> list[dict]:
    """A worker's task: ``fn(item, opts)`` for each item of a group, one after another."""
    return [fn(item, opts) for item in items]


class _Workers:
    """``opts.jobs`` spawned worker processes running ``fn(item, opts)`` (:func:`_convert_one`), started on
    the first submit. A worker that dies (killed, out of memory) breaks its pool and fails every variant
    that pool had not finished, without telling which one killed it: the rest go on in a fresh pool, and
    those variants are tried again at the end, each alone in its own process, so only a variant that
    kills its worker by itself gets a failure row."""

    def __init__(self, opts: Options, count: int, fn=None, init=None):
        self.opts, self.size = opts, max(1, min(opts.jobs, count))
        self.fn, self.init = fn or _convert_one, init or _worker_init
        self.pool, self.futures, self.suspects = None, {}, []

    def _new_pool(self, size: int | None = None):
        size = size or self.size
        threads = max(1, (os.cpu_count() or 1) // size)  # each worker's share of the cores for TF
        return ProcessPoolExecutor(max_workers=size, initializer=self.init, initargs=(threads,),
                                   mp_context=multiprocessing.get_context("spawn"))  # never fork TF

    def _replace(self, broken) -> None:
        if broken is self.pool:
            broken.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def submit(self, item) -> None:
        self.submit_group([item])

    def submit_group(self, items: list) -> None:
        """Convert ``items`` one after another in one worker (:class:`_Groups`)."""
        self.pool = self.pool or self._new_pool()
        try:
            future = self.pool.submit(_convert_group, self.fn, items, self.opts)
        except BrokenProcessPool:  # it broke since the last submit: what is left goes to a fresh pool
            self._replace(self.pool)
            self.pool = self._new_pool()
            future = self.pool.submit(_convert_group, self.fn, items, self.opts)
        self.futures[future] = (items, self.pool)

    def finished(self, block: bool):
        """(item, row) of each finished conversion; with ``block``, until none is left (the variants of a
        broken pool last, each alone)."""
        while self.futures:
            ready, _ = wait(self.futures, timeout=None if block else 0, return_when=FIRST_COMPLETED)
            if not ready:
                return
            for future in ready:
                items, pool = self.futures.pop(future)
                try:
                    rows = future.result()
                except BrokenProcessPool:  # a variant of this group, or of another one of that pool, killed a worker
                    self._replace(pool)
                    self.suspects.extend(items)
                    continue
                except Exception as exc:  # e.g. a result that could not be sent back
                    rows = [_failed(item.variant.name, f"worker: {type(exc).__name__}: {exc}") for item in items]
                for item, row in zip(items, rows):
                    timing.merge(row.stages)  # the workers' stage times count in this process's totals
                    yield item, row
        while block and self.suspects:
            item = self.suspects.pop(0)
            with self._new_pool(size=1) as alone:
                try:
                    row = alone.submit(self.fn, item, self.opts).result()
                except BrokenProcessPool as exc:
                    row = _failed(item.variant.name,
                                  f"worker process died while converting it, alone on a second try ({exc})")
            timing.merge(row.stages)
            yield item, row

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def summary_table(rows: list[RunRow]) -> str:
    head = ("variant", "result", *STAGES, "max|dlogit|", "tolerance", "TF s", "Keras s", "total s", "RSS MB")
    lines = []
    for r in rows:
        fmt = lambda x, spec: "-" if x is None else format(x, spec)
        lines.append((r.name, "pass" if r.passed else "FAIL", *(r.stage_status.get(s, "-") for s in STAGES),
                      fmt(r.max_abs_dlogit, ".2e"), fmt(r.tolerance, ".2e"), fmt(r.inference_time_tf, ".3f"),
                      fmt(r.inference_time_keras, ".3f"), fmt(r.seconds, ".1f"), fmt(r.rss_mb, ".0f")))
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    fmt_row = lambda x: "  ".join(str(c).ljust(w) for c, w in zip(x, widths))
    out = [fmt_row(head), fmt_row(["-" * w for w in widths]), *map(fmt_row, lines)]
    failed = [r for r in rows if not r.passed]
    out.append(f"{len(rows) - len(failed)} of {len(rows)} variants passed.")
    out += [f"  {r.name}: {r.error or 'parity check failed (see PARITY.md)'}" for r in failed]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# CLI: python -m convert run ... / python -m convert demo


def _add_common(p: argparse.ArgumentParser, paths: bool = True) -> None:
    if paths:
        p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                       help=f"download cache (default: {cache_help()})")
        p.add_argument("--work", type=Path, default=Path("work"), metavar="DIR", help="layer guides (default: work/)")
        p.add_argument("--weights-dir", type=Path, default=Path("weights"), metavar="DIR",
                       help="converted .h5 files (default: weights/)")
    p.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="test_results.{p,json} and PARITY.md (default: results/)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="download up to N archives at once, and convert up to N variants at once in N worker "
                        "processes (default 1: in this process)")
    p.add_argument("--force", action="store_true", help="re-run every stage even when its outputs are up to date")
    p.add_argument("--value-source", "--weights", dest="value_source", choices=VALUE_SOURCES, default="auto",
                   help="checkpoint values to convert (default auto: EMA shadows when present)")
    p.add_argument("--image", action="append", type=Path, default=[], metavar="PATH",
                   help="also compare on this image (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if paths:
        p.add_argument("--ignore-pins", action="store_true",
                       help="check archives against a lock file (--lock, default <cache>/checksums.lock.json) "
                            "instead of the manifest's sha256 pins: for factory archives or a rebuilt mirror")
    p.epilog = f"Environment: ${download.MIRROR_ENV} (default mirror), ${download.LOCK_ENV} (checksum lock file)."


def _options(args, **overrides) -> Options:
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    for image in args.image:
        if not image.is_file():
            raise UserError(f"--image {image}: no such file")
    opts = Options(results=args.results, jobs=args.jobs, force=args.force, value_source=args.value_source, images=list(args.image),
                   quiet=args.quiet)
    for key, value in overrides.items():
        setattr(opts, key, value)
    return opts


def _finish(rows: list[RunRow], opts: Options) -> int:
    print(summary_table(rows))
    print(f"report: {opts.results / report.PARITY_MD}")
    return 0 if rows and all(r.passed for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert run", description=(
        "Convert TF-slim MobileNet checkpoints (V1, V2, V3, float and quantization-aware): download -> extract -> write_h5 -> verify, per variant."))
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="variants (1.0_224, mobilenet_v1_0.25_128, v3-large_224_1.0_float, quantized_v2_224_100), "
                        f"a family ({', '.join(FAMILIES)}) or 'all'")
    p.add_argument("--mirror", default=env_setting(download.MIRROR_ENV),
                   help="base URL (http(s)://, file://) or directory replacing the manifest URLs' location")
    p.add_argument("--lock", type=Path, default=None, metavar="PATH", help="checksum lock file")
    _add_common(p)
    args = p.parse_args(argv)
    variants = default_manifest().select(args.names)
    cache = args.cache or default_cache()
    download.lock_for(cache, args.lock, args.ignore_pins)  # refuse a bad --lock before any work
    opts = _options(args, cache=cache, work=args.work, weights_dir=args.weights_dir,
                    mirror=download.normalize_mirror(args.mirror), lock=args.lock, ignore_pins=args.ignore_pins)
    return _finish(run(variants, opts), opts)


if __name__ == "__main__":
    from .cli import run_cli

    run_cli(main)
