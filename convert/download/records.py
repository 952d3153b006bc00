"""The download package's records and errors: what a fetch returns, its network knobs, and the cache paths."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..manifest import Variant


class DownloadError(Exception):
    """One archive could not be fetched, verified or extracted; the message says which and why."""


class TransferFailed(DownloadError):
    """The source could not serve the file (an HTTP error status, a connection error): the downloader may
    try the variant's next URL (an alternative); a file that arrived but fails verification is not this."""


class Unavailable(DownloadError):
    """The variant's archive is marked unavailable upstream and no mirror is given: nothing was requested."""


class SizeMismatch(Exception):
    """The transfer announced (or produced) a size other than the pinned one; raised before any hashing."""


@dataclass(frozen=True)
class NetOptions:
    """Network knobs: (connect, read) timeouts, urllib3 retries and backoff, mid-body resumes."""

    timeout: tuple[float, float] = (10.0, 60.0)
    retries: int = 5
    backoff_factor: float = 0.5
    resumes: int = 5


@dataclass(frozen=True)
class FetchResult:
    variant: Variant
    archive: Path
    sha256: str
    downloaded: bool  # False when a verified archive was already in the cache
    extracted: Path | None  # the extraction root (the layout's paths are relative to it)
    source: str  # the URL that served the archive (the primary, an alternative or the mirror; a cached
    # archive: the URL whose pin it matches, else the primary or mirror URL)
    checked_against: str  # "pin" or "lock"


@dataclass(frozen=True)
class FetchFailure:
    variant: Variant
    error: str


def archive_path(cache_dir: str | os.PathLike, variant: Variant) -> Path:
    return Path(cache_dir) / "archives" / variant.archive_filename


def extracted_dir(cache_dir: str | os.PathLike, variant: Variant) -> Path:
    return Path(cache_dir) / "extracted" / variant.name
