"""Fetch one archive: download (or reuse), verify against its pin or the lock, quarantine, extract."""
from __future__ import annotations

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
from .mirrors import source_url
from .quarantine import move_to_quarantine
from .records import DownloadError, FetchResult, NetOptions, SizeMismatch, archive_path, extracted_dir
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
    The archive's download and extraction hold an ``fcntl`` lock, so processes sharing a cache wait for
    each other instead of racing."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache()
    url = source_url(variant, mirror)
    lock = lock_for(cache_dir, lock_path, ignore_pins)
    final = archive_path(cache_dir, variant)
    final.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(final.with_name(f".{final.name}.flock")):
        return _fetch_locked(variant, cache_dir, url, lock, final, session, quiet, extract, net, ignore_pins)


def _fetch_locked(variant, cache_dir, url, lock, final, session, quiet, extract, net, ignore_pins) -> FetchResult:
    part = final.with_name(final.name + ".part")
    label = variant.archive_filename
    pinned = bool(variant.sha256) and not ignore_pins
    if pinned:
        want, origin, want_size = variant.sha256, "the manifest pin", variant.size
    else:
        want, origin, want_size = lock.get(final.name), f"the lock file {lock.path}", None

    downloaded = False
    sha = sha256_remembered(final) if final.is_file() else None  # stat-keyed: re-read only when changed
    if sha is not None and want is None:  # cached, but the lock lost its entry: trust it only if sound
        try:
            check_archive(final, variant)
            lock.record(final.name, sha, final.stat().st_size, str(final))
            _notice(f"notice: recorded sha256 {sha} of cached {label} in {lock.path} (trust on first use)")
            want = sha
        except DownloadError as exc:
            _notice(f"warning: cached {exc}; moved to {move_to_quarantine(final, cache_dir, sha)}")
            sha = None
    elif sha is not None and sha != want:
        moved = move_to_quarantine(final, cache_dir, sha)
        _notice(f"warning: cached {label} has sha256 {sha}, but {origin} says {want}; moved to {moved}")
        sha = None
    if sha is None:
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
                if want is not None and sha != want:
                    raise DownloadError(f"{label}: sha256 mismatch: downloaded {sha}, but {origin} says {want} "
                                        f"(source {url})" + (" — a rebuilt or factory archive? pass --ignore-pins "
                                                              "to check it against a lock file instead" if pinned else ""))
                check_archive(part, variant)
                break
            except DownloadError as exc:
                if resumed and attempt == 1:  # a stale .part from an earlier run: start over once
                    part.unlink()
                    continue
                moved = move_to_quarantine(part, cache_dir, sha)
                raise DownloadError(f"{exc}; the file was moved to {moved}") from None
        if want is None:
            lock.record(final.name, sha, part.stat().st_size, url)
            _notice(f"notice: first download of {label}: recorded sha256 {sha} in {lock.path} "
                    f"(trust on first use; later downloads must match)")
        os.replace(part, final)
        remember_sha256(final, sha)  # verified just now: the next run need not read it again
        downloaded = True
    extracted = None
    if extract:
        extracted = extract_archive(final, extracted_dir(cache_dir, variant), variant, sha)
    return FetchResult(variant, final, sha, downloaded, extracted, url, "pin" if pinned else "lock")


def extract_fetched(result: FetchResult, cache_dir: str | os.PathLike) -> Path:
    """The extraction root of a fetched archive, extracting it first (under the archive's lock) unless
    an extraction of that archive is already complete. The pipeline extracts in its worker processes,
    next to each variant's conversion, not in the download threads."""
    if result.extracted is not None:
        return result.extracted
    final = Path(result.archive)
    with file_lock(final.with_name(f".{final.name}.flock")):
        return extract_archive(final, extracted_dir(cache_dir, result.variant), result.variant, result.sha256)
