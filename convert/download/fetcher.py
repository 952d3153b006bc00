"""Fetch one archive: download (or reuse), verify against its pin or the lock, quarantine, extract."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import requests
from tqdm import tqdm

from ..env import default_cache
from ..fsutil import file_lock, remember_sha256, sha256_file, sha256_remembered
from ..manifest import Variant
from ..timing import timed
from .checksum_lock import lock_for
from .mirrors import MIRROR_ENV, Source, mirror_base, sources
from .quarantine import move_to_quarantine
from .records import (DownloadError, FetchResult, NetOptions, SizeMismatch, TransferFailed, Unavailable,
                      archive_path, extracted_dir)
from .safe_tar import check_archive, extract_archive
from .transfer import transfer_to_part


def _notice(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


@timed("download/verify")
def fetch(variant: Variant, cache_dir: str | os.PathLike | None = None, mirror: str | None = None,
          lock_path: str | os.PathLike | None = None, session: requests.Session | None = None,
          quiet: bool = False, extract: bool = True, net: NetOptions = NetOptions(),
          ignore_pins: bool = False) -> FetchResult:
    """Download (or reuse), verify and optionally extract one archive; raises DownloadError.

    A pinned archive is checked against its pin (size first, as soon as it is known, then sha256) and
    nothing else; with ``ignore_pins``, or without a pin, against the lock file (trust on first use).
    The URLs tried are the mirror's alone, else the manifest's primary URL, then each alternative when the
    one before could not serve the file (HTTP error, connection error), each checked against its own pin;
    the result records which URL served it. A variant marked ``unavailable`` is not requested upstream:
    without a mirror (or a verified cached copy) it fails with :class:`Unavailable`, naming the reason.
    The archive's download and extraction hold an ``fcntl`` lock, so processes sharing a cache wait for
    each other instead of racing."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache()
    srcs = sources(variant, mirror)
    if ignore_pins:
        srcs = [dataclasses.replace(src, sha256s=frozenset(), size=None) for src in srcs]
    upstream_only = mirror_base(mirror) is None
    lock = lock_for(cache_dir, lock_path, ignore_pins)
    final = archive_path(cache_dir, variant)
    final.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(final.with_name(f".{final.name}.flock")):
        return _fetch_locked(variant, cache_dir, srcs, lock, final, session, quiet, extract, net,
                             unavailable=variant.unavailable if upstream_only else None)


def _wanted(src: Source, lock, name: str) -> tuple[frozenset[str], str]:
    """The sha256 values a file from ``src`` may have, and where they come from (its pin, else the lock)."""
    if src.sha256s:
        return src.sha256s, "the manifest pin"
    locked = lock.get(name)
    return (frozenset((locked,)) if locked else frozenset()), f"the lock file {lock.path}"


def _fetch_locked(variant, cache_dir, srcs, lock, final, session, quiet, extract, net, unavailable) -> FetchResult:
    label = variant.archive_filename
    wanted = [(src, *_wanted(src, lock, final.name)) for src in srcs]
    served = srcs[0]
    downloaded = False
    sha = sha256_remembered(final) if final.is_file() else None  # stat-keyed: re-read only when changed
    if sha is not None and not any(want for _, want, _ in wanted):  # cached, but unpinned and not in the lock
        try:
            check_archive(final, variant)
            lock.record(final.name, sha, final.stat().st_size, str(final))
            _notice(f"notice: recorded sha256 {sha} of cached {label} in {lock.path} (trust on first use)")
        except DownloadError as exc:
            _notice(f"warning: cached {exc}; moved to {move_to_quarantine(final, cache_dir, sha)}")
            sha = None
    elif sha is not None:
        matching = [src for src, want, _ in wanted if sha in want]
        if matching:
            served = matching[0]
        else:
            moved = move_to_quarantine(final, cache_dir, sha)
            says = "; ".join(f"{origin} says {' or '.join(sorted(want))} ({src.url})"
                             for src, want, origin in wanted if want)
            _notice(f"warning: cached {label} has sha256 {sha}, but {says}; moved to {moved}")
            sha = None
    if sha is None:
        if unavailable:
            raise Unavailable(f"{label}: unavailable upstream ({unavailable}); not requested: give a mirror that "
                              f"holds it (--mirror URL|DIR or ${MIRROR_ENV})")
        sha, served = _download_first(variant, cache_dir, wanted, lock, final, session, quiet, net)
        downloaded = True
    extracted = None
    if extract:
        extracted = extract_archive(final, extracted_dir(cache_dir, variant), variant, sha)
    return FetchResult(variant, final, sha, downloaded, extracted, served.url, "pin" if served.sha256s else "lock")


def _download_first(variant, cache_dir, wanted, lock, final, session, quiet, net) -> tuple[str, Source]:
    """Download from the first source that can serve the file (the next one only after a
    :class:`TransferFailed`), verify it against that source's pin (or the lock) and move it into place."""
    part = final.with_name(final.name + ".part")
    failures = []
    for i, (src, want, origin) in enumerate(wanted):
        if i:  # a partial file of another URL is not resumed
            part.unlink(missing_ok=True)
            _notice(f"notice: {variant.archive_filename}: trying the alternative {src.url}")
        try:
            sha = _download_verified(variant, cache_dir, src, want, origin, part, session, quiet, net)
        except TransferFailed as exc:
            failures.append(str(exc))
            continue
        if not want:
            lock.record(final.name, sha, part.stat().st_size, src.url)
            _notice(f"notice: first download of {variant.archive_filename}: recorded sha256 {sha} in {lock.path} "
                    f"(trust on first use; later downloads must match)")
        os.replace(part, final)
        remember_sha256(final, sha)  # verified just now: the next run need not read it again
        return sha, src
    if len(failures) == 1:
        raise TransferFailed(failures[0])
    raise TransferFailed(f"{variant.archive_filename}: no URL could serve it: " + "; ".join(failures))


def _download_verified(variant, cache_dir, src: Source, want: frozenset[str], origin: str, part: Path, session,
                       quiet: bool, net: NetOptions) -> str:
    """One source into ``part``, checked (size, sha256, members); returns the sha256. A stale ``part`` that
    fails the checks is discarded once and the download starts over."""
    label, url, want_size, pinned = variant.archive_filename, src.url, src.size, bool(src.sha256s)
    resumed = part.exists()
    for attempt in (1, 2):
        try:
            transfer_to_part(url, part, session, net, label, quiet, want_size)
        except SizeMismatch as exc:  # refused before hashing; the partial file goes to quarantine
            moved = move_to_quarantine(part, cache_dir, "size-mismatch") if part.exists() else None
            raise DownloadError(f"{label}: {exc} (pinned in the manifest; source {url})"
                                + (f"; the file was moved to {moved}" if moved else "")) from None
        if want_size is not None and part.stat().st_size != want_size:
            moved = move_to_quarantine(part, cache_dir, "size-mismatch")
            raise DownloadError(f"{label}: size mismatch: downloaded {part.stat().st_size} bytes, but the "
                                f"manifest pin says {want_size} (source {url}); the file was moved to {moved}")
        sha = sha256_file(part)
        try:
            if want and sha not in want:
                raise DownloadError(f"{label}: sha256 mismatch: downloaded {sha}, but {origin} says "
                                    f"{' or '.join(sorted(want))} (source {url})"
                                    + (" — a rebuilt or factory archive? pass --ignore-pins "
                                       "to check it against a lock file instead" if pinned else ""))
            check_archive(part, variant)
            return sha
        except DownloadError as exc:
            if resumed and attempt == 1:  # a stale .part from an earlier run: start over once
                part.unlink()
                continue
            moved = move_to_quarantine(part, cache_dir, sha)
            raise DownloadError(f"{exc}; the file was moved to {moved}") from None
    raise AssertionError("unreachable")


def extract_fetched(result: FetchResult, cache_dir: str | os.PathLike) -> Path:
    """The extraction root of a fetched archive, extracting it first (under the archive's lock) unless
    an extraction of that archive is already complete. The pipeline extracts in its worker processes,
    next to each variant's conversion, not in the download threads."""
    if result.extracted is not None:
        return result.extracted
    final = Path(result.archive)
    with file_lock(final.with_name(f".{final.name}.flock")):
        return extract_archive(final, extracted_dir(cache_dir, result.variant), result.variant, result.sha256)
