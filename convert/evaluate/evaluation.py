"""One pass over a dataset: every image decoded once and fed to every model of a variant."""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import UserError
from ..manifest import Variant
from .dataset import Dataset
from .inputs import make_pipeline
from .records import PREPROCESSINGS, AccuracyRecord
from .scorers import Scorer, imagenet_scorers, keras_scorers, quant_scorers, slim_scorers

MAX_UNREADABLE = 0.01  # more than 1 % unreadable images is an error


@dataclass
class Evaluation:
    records: list[AccuracyRecord]
    unreadable: list[str] = field(default_factory=list)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _record(variant: Variant, s: Scorer, dataset: Dataset, wall: float, unreadable: list[str], batch_size: int,
            now: str) -> AccuracyRecord:
    return AccuracyRecord(
        name=variant.name, model=s.model, preprocessing=s.preprocessing, images=s.images,
        top1=100.0 * s.top1 / s.images if s.images else None, top5=100.0 * s.top5 / s.images if s.images else None,
        published_top1=variant.top1, published_top5=variant.top5, float_sibling_top1=variant.float_sibling_top1,
        images_per_s=s.images / s.seconds if s.seconds else None,
        pipeline_images_per_s=s.images / wall if wall else None, unreadable=list(unreadable),
        family=variant.family_key, stem=variant.stem, dataset=str(dataset.root), layout=dataset.layout,
        batch_size=batch_size, evaluated_at=now)


QUANT_PREPROCESSINGS = ("slim",)  # a quantized variant's graph and .tflite input grid are slim's [-1, 1]


def preprocessings_for(variant: Variant, preprocessings) -> tuple[str, ...]:
    """The preprocessings a variant is scored under: a quantized variant's slim only (a UserError when
    none of those asked for is one)."""
    if not variant.family.quantized:
        return tuple(preprocessings)
    kept = tuple(p for p in preprocessings if p in QUANT_PREPROCESSINGS)
    if not kept:
        raise UserError(f"{variant.name} is a quantized variant, scored under {' or '.join(QUANT_PREPROCESSINGS)} "
                        f"preprocessing only (asked: {', '.join(preprocessings)}); use --preprocess slim or both")
    return kept


def evaluate_variant(variant: Variant, dataset: Dataset, *, weights_dir: Path, model_dir: Path | None,
                     preprocessings=PREPROCESSINGS, compare_keras: bool = False, batch_size: int = 32,
                     include_slim: bool = True) -> Evaluation:
    """Score one variant's models on ``dataset`` (one pass: every image decoded once, fed to every model).

    A quantized variant is scored under slim preprocessing only (the others asked for are left out); its
    models: the float .h5, the twin and our .tflite from ``weights_dir``, and with ``include_slim`` and a
    ``model_dir`` the archive's own .tflite and graph from it."""
    import keras  # lazy: Keras imports TF (3.4 s, measured), which `--help` and dataset errors do not pay

    top = Path(weights_dir) / variant.keras_weights
    if not top.is_file():
        raise UserError(f"converted weights of {variant.name} not found: {top} (run `python -m convert run "
                        f"{variant.name}` first, or pass --weights-dir)")
    preprocessings = preprocessings_for(variant, preprocessings)
    rows = variant.rows
    labels = np.asarray(dataset.labels, dtype=np.int64)
    pad_to = min(batch_size, len(dataset))
    try:
        with contextlib.ExitStack() as stack:
            # keras' own weights first: offline, that fails before the other models are built
            reference = imagenet_scorers(variant, preprocessings) if compare_keras else []
            scorers = keras_scorers(variant, "converted", preprocessings, str(top))
            if variant.family.quantized:
                archive = Path(model_dir) if include_slim and model_dir is not None else None
                scorers += quant_scorers(stack, variant, Path(weights_dir), archive, preprocessings)
            elif include_slim:
                scorers += slim_scorers(stack, variant, Path(model_dir), preprocessings)
            scorers += reference
            warm = np.zeros((pad_to, rows, rows, 3), np.float32)
            for scorer in scorers:  # trace/build outside the timed calls
                scorer.logits(warm, pad_to)
            seen = np.zeros(len(dataset), dtype=bool)
            start = time.perf_counter()
            with tqdm(total=len(dataset), desc=variant.name, unit="img", disable=not sys.stderr.isatty(),
                      leave=False) as bar:
                for batch in make_pipeline(dataset, rows, tuple(preprocessings), batch_size):
                    index = batch["index"].numpy()
                    seen[index] = True
                    for scorer in scorers:
                        scorer.score(batch[scorer.preprocessing].numpy(), labels[index], pad_to)
                    bar.update(len(index))
            wall = time.perf_counter() - start
    finally:
        keras.backend.clear_session(free_memory=True)
    unreadable = [_relative(dataset.files[i], dataset.root) for i in np.flatnonzero(~seen)]
    if len(unreadable) > MAX_UNREADABLE * len(dataset):
        raise UserError(f"{len(unreadable)} of {len(dataset)} images in {dataset.root} are unreadable (more than "
                        f"{MAX_UNREADABLE:.0%}): {', '.join(unreadable[:10])}{' …' if len(unreadable) > 10 else ''}")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Evaluation([_record(variant, s, dataset, wall, unreadable, batch_size, now) for s in scorers], unreadable)
