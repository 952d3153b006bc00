"""Download, verify, cache and safely extract the official checkpoint archives.

``python -m convert download NAME... | FAMILY | all [--mirror URL] [--cache DIR] [--jobs N] [--quiet] [--ignore-pins]``

Layout under the cache directory (default ``$MOBILENET_CACHE``, else ``<checkout>/cache``; installed: see :mod:`convert.env`)::

    archives/<archive file name>     verified archives only (sha256 checked, then atomic rename)
    archives/<archive file name>.part  an interrupted download, resumed with an HTTP Range request
    quarantine/<file>.<sha256[:12]>  files that failed verification; never used by the pipeline
    extracted/<name>/                the archive's members (atomic, idempotent; ``.complete`` marker)

A pinned archive (the manifest's public sha256 and size of the genuine release) is checked against its
pin and nothing else. An archive without a pin, or any archive with ``ignore_pins`` (factory archives, a
rebuilt mirror, the loopback demo), is checked against a lock file instead (trust on first use: the first
verified download is recorded there; later ones must match): ``DEFAULT_LOCK`` for unpinned genuine archives
(the checkout's ``manifests/checksums.lock.json``; installed: ``~/.cache/mobilenet-tf1-to-keras/checksums.lock.json``),
``<cache>/checksums.lock.json`` with ``ignore_pins``. Two processes sharing one cache are serialised with
``fcntl`` locks around the lock file and around each archive's download and extraction.

One job per module:

    records        the returned records (FetchResult, FetchFailure), NetOptions, errors, cache paths
    mirrors        the source URLs: the mirror's, or the manifest's primary URL then its alternatives
    session        the retrying requests session
    transfer       one resumable HTTP download (or local copy) into ``<archive>.part``
    checksum_lock  the lock file (trust on first use) and which one applies
    quarantine     moving a file that failed verification aside
    safe_tar       archive checks and safe extraction
    fetcher        one archive: download or reuse, verify, quarantine, extract
    parallel       many archives on a thread pool
    cli            ``python -m convert download``
"""
from .checksum_lock import CACHE_LOCK_NAME, DEFAULT_LOCK, LOCK_ENV, ChecksumLock, lock_for
from .cli import build_parser, main
from .fetcher import extract_fetched, fetch
from .mirrors import MIRROR_ENV, Source, mirror_base, normalize_mirror, source_url, sources
from .parallel import fetch_iter, fetch_many
from .records import (DownloadError, FetchFailure, FetchResult, NetOptions, SizeMismatch, TransferFailed, Unavailable,
                      archive_path, extracted_dir)
from .safe_tar import COMPLETE_MARKER, check_archive, extract_archive, verify_members
from .session import make_session

__all__ = ["CACHE_LOCK_NAME", "COMPLETE_MARKER", "DEFAULT_LOCK", "LOCK_ENV", "MIRROR_ENV", "ChecksumLock", "DownloadError",
           "FetchFailure", "FetchResult", "NetOptions", "SizeMismatch", "archive_path", "build_parser", "check_archive",
           "extract_archive", "extract_fetched", "extracted_dir", "fetch", "fetch_iter", "fetch_many", "lock_for",
           "main", "make_session", "mirror_base", "normalize_mirror", "Source", "source_url", "sources",
           "TransferFailed", "Unavailable", "verify_members"]
