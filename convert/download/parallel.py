"""Fetch many archives on a thread pool; failures are returned as records, never raised."""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Iterable, Iterator

from tqdm import tqdm

from ..errors import UserError
from ..manifest import Variant
from .fetcher import fetch
from .records import DownloadError, FetchFailure, FetchResult


def fetch_iter(variants: Iterable[Variant], cache_dir: str | os.PathLike | None = None, jobs: int = 1,
               quiet: bool = False, **kwargs) -> Iterator[FetchResult | FetchFailure]:
    """``fetch`` each variant (up to ``jobs`` at once), yielding each result as soon as it is ready (in
    the order they finish); failures are yielded, not raised."""
    unique = list({v.name: v for v in variants}.values())

    def one(variant: Variant) -> FetchResult | FetchFailure:
        try:
            return fetch(variant, cache_dir, quiet=quiet, **kwargs)
        except DownloadError as exc:
            return FetchFailure(variant, str(exc))
        except (OSError, UserError) as exc:
            return FetchFailure(variant, f"{variant.archive_filename}: {exc}")
        except Exception as exc:  # never a bare traceback from one archive; the others carry on
            return FetchFailure(variant, f"{variant.archive_filename}: unexpected {type(exc).__name__}: {exc}")

    disable = quiet or not sys.stderr.isatty() or len(unique) < 2
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        with tqdm(total=len(unique), desc="archives", unit="archive", disable=disable) as overall:
            futures = [pool.submit(one, v) for v in unique]
            for future in as_completed(futures):
                overall.update(1)
                yield future.result()
    finally:  # also when the consumer stops early (an error, Ctrl-C): no new download starts, and the
        # ones under way are waited for, so no half-written .part is left behind by a thread still writing
        pool.shutdown(wait=True, cancel_futures=True)


def fetch_many(variants: Iterable[Variant], cache_dir: str | os.PathLike | None = None, jobs: int = 1,
               quiet: bool = False, **kwargs) -> list[FetchResult | FetchFailure]:
    """``fetch`` each variant (up to ``jobs`` at once); failures are returned, not raised, in input order."""
    unique = list({v.name: v for v in variants}.values())
    results = {r.variant.name: r for r in fetch_iter(unique, cache_dir, jobs, quiet, **kwargs)}
    return [results[v.name] for v in unique]
