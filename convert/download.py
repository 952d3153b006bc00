"""Download, verify, cache and safely extract the official checkpoint archives.

``python -m convert download NAME... | FAMILY | all [--mirror URL] [--cache DIR] [--jobs N] [--quiet] [--ignore-pins]``

Layout under the cache directory (default ``<project>/cache``, or ``$MOBILENET_CACHE``)::

    archives/<archive file name>     verified archives only (sha256 checked, then atomic rename)
    archives/<archive file name>.part  an interrupted download, resumed with an HTTP Range request
    quarantine/<file>.<sha256[:12]>  files that failed verification; never used by the pipeline
    extracted/<name>/                the archive's members (atomic, idempotent; ``.complete`` marker)

A pinned archive (the manifest's public sha256 and size of the genuine release) is checked against its
pin and nothing else. An archive without a pin, or any archive with ``ignore_pins`` (factory archives, a
rebuilt mirror, the loopback demo), is checked against a lock file instead (trust on first use: the first
verified download is recorded there; later ones must match): ``manifests/checksums.lock.json`` for
unpinned genuine archives, ``<cache>/checksums.lock.json`` with ``ignore_pins``. Two processes sharing one
cache are serialised with ``fcntl`` locks around the lock file and around each archive's download and
extraction.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util import Retry

from .timing import timed
from .archive import checkpoint_members
from .env import PROJECT_ROOT, default_cache
from .errors import UserError
from .fsutil import atomic_write_bytes, file_lock, remember_sha256, sha256_file, sha256_remembered
from .manifest import ManifestError, UnknownVariantError, Variant, default_manifest

DEFAULT_LOCK = PROJECT_ROOT / "manifests" / "checksums.lock.json"
CACHE_LOCK_NAME = "checksums.lock.json"  # the lock used with ignore_pins: <cache>/checksums.lock.json
MIRROR_ENV, LOCK_ENV = "MOBILENET_MIRROR", "MOBILENET_LOCK"
COMPLETE_MARKER = ".complete"
CHUNK = 1 << 16
RETRY_STATUSES = (429, *range(500, 600))  # 429 Too Many Requests and every 5xx
RETRY_AFTER_MAX = 60.0  # seconds
MAX_ARCHIVE_BYTES = 2 << 30  # the largest release (1.4_224) is well under this
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                   requests.exceptions.ContentDecodingError)


class DownloadError(Exception):
    """One archive could not be fetched, verified or extracted; the message says which and why."""


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
    source: str
    checked_against: str  # "pin" or "lock"


@dataclass(frozen=True)
class FetchFailure:
    variant: Variant
    error: str


def archive_path(cache_dir: str | os.PathLike, variant: Variant) -> Path:
    return Path(cache_dir) / "archives" / variant.archive_filename


def extracted_dir(cache_dir: str | os.PathLike, variant: Variant) -> Path:
    return Path(cache_dir) / "extracted" / variant.name


# ----------------------------------------------------------------------------- sources and mirrors

def normalize_mirror(mirror: str | os.PathLike | None) -> str | None:
    """Validate a mirror (``http(s)://…``, ``file://…`` or a local directory) and return it as a URL."""
    if mirror is None or str(mirror).strip() == "":
        return None
    text = str(mirror).strip()
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        if not urllib.parse.urlsplit(text).netloc:
            raise UserError(f"mirror {text!r} has no host; expected e.g. https://host/path/")
        return text.rstrip("/")
    if scheme == "file":
        directory = _file_url_path(text)
    elif len(scheme) > 1:  # one letter would be a Windows drive
        raise UserError(f"mirror {text!r} has unsupported scheme {scheme!r}; use http(s)://, file:// or a directory")
    else:
        directory = Path(text).expanduser()
    if not directory.is_dir():
        raise UserError(f"mirror {text!r} is not an existing directory; use http(s)://, file:// or a directory")
    return directory.resolve().as_uri()


def _file_url_path(url: str) -> Path:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise UserError(f"file URL {url!r} names host {parts.netloc!r}; only local file:// URLs are supported")
    return Path(urllib.request.url2pathname(parts.path))


def source_url(variant: Variant, mirror: str | None = None) -> str:
    """The manifest URL, or the mirror (argument, else ``$MOBILENET_MIRROR``) + the archive file name."""
    base = normalize_mirror(mirror if mirror is not None else os.environ.get(MIRROR_ENV))
    return f"{base}/{variant.archive_filename}" if base else variant.url


class _Retry(Retry):
    """urllib3 Retry whose honoured ``Retry-After`` is capped, so a hostile server cannot stall us for hours."""

    def get_retry_after(self, response):
        after = super().get_retry_after(response)
        return None if after is None else min(after, RETRY_AFTER_MAX)


def make_session(net: NetOptions = NetOptions()) -> requests.Session:
    """A Session retrying connection errors, read errors before the body, 429 and 5xx (not 404)."""
    retry = _Retry(total=net.retries, connect=net.retries, read=net.retries, status=net.retries,
                  status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET", "HEAD"}),
                  backoff_factor=net.backoff_factor, backoff_max=30, respect_retry_after_header=True,
                  raise_on_status=False)  # the last 5xx response comes back; we turn it into DownloadError
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "mobilenet-v2-convert (+python-requests)"
    session.headers["Accept-Encoding"] = "identity"  # byte ranges must address the stored file
    return session


# ----------------------------------------------------------------------------- transfer

def _bar(total: int | None, initial: int, label: str, quiet: bool) -> tqdm:
    return tqdm(total=total, initial=initial, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                leave=False, disable=quiet or not sys.stderr.isatty())


def _check_size(announced: int | None, expected: int | None) -> None:
    if announced is not None and expected is not None and announced != expected:
        raise SizeMismatch(f"size mismatch: the source announces {announced} bytes, but the manifest pin says "
                           f"{expected}")


def _copy_file(src: Path, part: Path, label: str, quiet: bool, expected_size: int | None = None) -> None:
    """Stream a local file (``file://`` or directory mirror) to ``part``."""
    try:
        size = src.stat().st_size
        _check_size(size, expected_size)
        with open(src, "rb") as fin, open(part, "wb") as fout, _bar(size, 0, label, quiet) as bar:
            while chunk := fin.read(CHUNK):
                fout.write(chunk)
                bar.update(len(chunk))
    except FileNotFoundError:
        raise DownloadError(f"{label}: {src} does not exist in the mirror directory") from None
    except OSError as exc:
        raise DownloadError(f"{label}: cannot copy {src}: {exc.strerror or exc}") from None


def _total_size(response: requests.Response, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _http_download(url: str, part: Path, session: requests.Session, net: NetOptions, label: str,
                   quiet: bool, expected_size: int | None = None) -> None:
    """GET ``url`` into ``part``, resuming an existing ``part`` (and any mid-body drop) with Range.

    Failures before a response are retried by urllib3 only; a body cut short (drop, read timeout)
    is resumed up to ``net.resumes`` times. A server that ignores Range (200), rejects it (416) or
    answers a different range restarts the file from zero.
    """
    failures = restarts = 0

    def restart() -> None:
        nonlocal restarts
        restarts += 1
        if restarts > 3:
            raise DownloadError(f"{label}: {url} keeps answering inconsistent byte ranges; try another --mirror")
        part.unlink(missing_ok=True)

    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = session.get(url, headers=headers, stream=True, timeout=net.timeout)
        except (requests.exceptions.RetryError, *_NETWORK_ERRORS) as exc:
            raise DownloadError(f"{label}: cannot download {url}: {_reason(exc)} (after {net.retries} retries); "
                                f"offline or behind a firewall? use --mirror URL|DIR or ${MIRROR_ENV}") from None
        try:
            with response:
                status = response.status_code
                if status == 416 and offset:  # the part is longer than the file: inconsistent
                    restart()
                    continue
                if status == 206 and offset:
                    if not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                        restart()  # answered a range we did not ask for
                        continue
                    mode = "ab"
                elif status == 200:
                    mode, offset = "wb", 0  # fresh download, or the server ignored Range: start over
                elif status == 404:
                    raise DownloadError(f"{label}: {url} was not found (HTTP 404); check the name or --mirror")
                else:
                    retried = " after retries" if status in RETRY_STATUSES else ""
                    raise DownloadError(f"{label}: {url} answered HTTP {status} {response.reason}{retried}; "
                                        f"expected 200, or 206 to a Range request")
                total = _total_size(response, offset)
                _check_size(total, expected_size)  # Content-Length known: refuse before reading the body
                with open(part, mode) as f, _bar(total, offset, label, quiet) as bar:
                    for chunk in response.iter_content(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
                        if expected_size is not None and f.tell() > expected_size:
                            raise SizeMismatch(f"size mismatch: the source sent more than the {expected_size} "
                                               f"bytes the manifest pin says")
                        if f.tell() > MAX_ARCHIVE_BYTES:
                            part.unlink()
                            raise DownloadError(f"{label}: {url} sent more than {MAX_ARCHIVE_BYTES >> 20} MiB; "
                                                f"no released archive is that large")
            size = part.stat().st_size
            if total is None or size == total:
                return
            if size > total:
                restart()
                continue
            raise requests.exceptions.ChunkedEncodingError(f"connection closed after {size} of {total} bytes")
        except _NETWORK_ERRORS as exc:  # the body was cut short: resume from the part
            failures += 1
            if failures > net.resumes:
                kind = "timed out" if isinstance(exc, requests.Timeout) or "timed out" in str(exc) else "failed"
                raise DownloadError(f"{label}: download of {url} {kind} {failures} times; last error: "
                                    f"{_reason(exc)}") from None
            time.sleep(min(net.backoff_factor * 2 ** (failures - 1), 30))


def _reason(exc: BaseException) -> str:
    """The root cause of a requests/urllib3 error as one short phrase."""
    while exc.args and isinstance(exc.args[0], BaseException):
        exc = exc.args[0]
    exc = getattr(exc, "reason", None) or exc
    text = str(exc)
    text = text.split("): ", 1)[1] if text.startswith(("HTTPConnection(", "HTTPSConnection(")) else text
    return text if len(text) < 300 else text[:300] + "…"


def _transfer(url: str, part: Path, session: requests.Session | None, net: NetOptions, label: str,
              quiet: bool, expected_size: int | None = None) -> None:
    if url.startswith("file://"):
        _copy_file(_file_url_path(url), part, label, quiet, expected_size)
        return
    own = session is None
    session = session or make_session(net)
    try:
        _http_download(url, part, session, net, label, quiet, expected_size)
    finally:
        if own:
            session.close()


# ----------------------------------------------------------------------------- integrity

class ChecksumLock:
    """``checksums.lock.json``: ``{file: {sha256, size, recorded, source}}``. Writes are atomic and
    serialised across threads and processes by an ``fcntl`` lock on ``<lock>.flock``."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path or os.environ.get(LOCK_ENV) or DEFAULT_LOCK)

    def read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DownloadError(f"lock file {self.path} is not valid JSON ({exc}); fix or delete it") from None
        if not isinstance(data, dict):
            raise DownloadError(f"lock file {self.path} must hold a JSON object of archive entries")
        return data

    def get(self, filename: str) -> str | None:
        entry = self.read().get(filename)
        return entry.get("sha256") if isinstance(entry, dict) else None

    def record(self, filename: str, sha256: str, size: int, source: str) -> None:
        with file_lock(self.path.with_name(self.path.name + ".flock")):  # re-read under the lock: merge, not overwrite
            data = self.read()
            data[filename] = {"sha256": sha256, "size": size, "source": source,
                              "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            atomic_write_bytes(self.path, (json.dumps(dict(sorted(data.items())), indent=2) + "\n").encode())


def _quarantine(path: Path, cache_dir: Path, sha256: str) -> Path:
    qdir = cache_dir / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    target = qdir / f"{path.name.removesuffix('.part')}.{sha256[:12]}"
    os.replace(path, target)
    path.with_name(f".{path.name}.sha256.json").unlink(missing_ok=True)  # sha256_remembered's memo
    return target


# ----------------------------------------------------------------------------- archive checks and extraction

def _member_name(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _refuse_unsafe(m: tarfile.TarInfo, archive: str | os.PathLike) -> None:
    """Raise DownloadError for an absolute, ``..``, link, device or other special member."""
    name = _member_name(m.name)
    parts = name.replace("\\", "/").split("/")
    if name.startswith("/") or m.name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        problem = "has an absolute path"
    elif ".." in parts:
        problem = "escapes the extraction directory with '..'"
    elif m.issym() or m.islnk():
        problem = f"is a {'symbolic' if m.issym() else 'hard'} link to {m.linkname!r}"
    elif not (m.isfile() or m.isdir()):
        problem = "is a device, FIFO or other special file"
    else:
        return
    raise DownloadError(f"{Path(archive).name}: refusing to extract member {m.name!r}: it {problem}; "
                        f"only regular files and directories inside the archive are allowed")


def verify_members(members: Iterable[tarfile.TarInfo], variant: Variant | None, archive: str | os.PathLike) -> list[str]:
    """Refuse unsafe members (absolute, ``..``, links, devices) and require one of the layout's checkpoints
    (its ``.index`` and ``.data-*``; any ``*.ckpt`` without a variant); returns the member names."""
    members = list(members)
    names = [_member_name(m.name) for m in members]
    for m in members:
        _refuse_unsafe(m, archive)
    files = {n for m, n in zip(members, names) if m.isfile()}
    wanted = checkpoint_members(variant) if variant is not None else [(None, None)]
    for index, data in wanted:
        if index is None:
            ok = any(n.endswith(".ckpt.index") for n in files) and any(".ckpt.data-" in n for n in files)
        else:
            ok = index in files and any(n.startswith(data) for n in files)
        if ok:
            return names
    want = " or ".join(f"{i} and {d}*" for i, d in wanted) if variant is not None else "*.ckpt.index and *.ckpt.data-*"
    raise DownloadError(f"{Path(archive).name} lacks the checkpoint ({want}); it contains: "
                        f"{', '.join(names) or 'nothing'}")


def _open_members(tgz: Path) -> tuple[tarfile.TarFile, list[tarfile.TarInfo]]:
    try:
        tar = tarfile.open(tgz, "r:gz")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DownloadError(f"{tgz.name} is not a readable .tgz (corrupt or truncated gzip: {exc}); "
                            f"delete it and download again") from None
    try:
        members = tar.getmembers()
        while tar.fileobj.read(1 << 20):  # read to the gzip trailer so its CRC and length are checked
            pass
        return tar, members
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        tar.close()
        raise DownloadError(f"{tgz.name} is corrupt or truncated ({exc}); delete it and download again") from None


def check_archive(tgz: str | os.PathLike, variant: Variant | None = None) -> list[str]:
    """Read the whole archive and apply ``verify_members``; raises DownloadError."""
    tgz = Path(tgz)
    tar, members = _open_members(tgz)
    with tar:
        return verify_members(members, variant, tgz)


@timed("archive extraction")
def extract_archive(tgz: str | os.PathLike, dest_dir: str | os.PathLike, variant: Variant | None = None,
                    sha256: str | None = None) -> Path:
    """Safely extract ``tgz`` into ``dest_dir`` (temp dir + rename). A complete extraction, whose
    ``.complete`` marker holds the archive's sha256, is kept as is."""
    tgz, dest = Path(tgz), Path(dest_dir)
    sha256 = sha256 or sha256_file(tgz)
    marker = dest / COMPLETE_MARKER
    if marker.is_file() and marker.read_text().strip() == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the extraction is an ordinary directory
        # one pass over the gzip stream: each member is checked, then extracted as its header is read
        # (forward reads only), then the rest is read so gzip checks its CRC and length
        members = []
        try:
            with tarfile.open(tgz, "r:gz") as tar:
                for m in tar:
                    _refuse_unsafe(m, tgz)
                    tar.extract(m, tmp, filter="data")
                    members.append(m)
                while tar.fileobj.read(1 << 20):
                    pass
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise DownloadError(f"{tgz.name}: extraction failed ({exc}); the archive is corrupt or "
                                f"truncated; delete it and download again") from None
        verify_members(members, variant, tgz)  # the layout's checkpoint is there
        (tmp / COMPLETE_MARKER).write_text(sha256 + "\n")
        if dest.exists():
            shutil.rmtree(dest)  # stale or incomplete earlier extraction
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ----------------------------------------------------------------------------- fetch

def _notice(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def lock_for(cache_dir: str | os.PathLike, lock_path: str | os.PathLike | None, ignore_pins: bool) -> ChecksumLock:
    """The lock file to check unpinned archives against: ``lock_path``, else ``$MOBILENET_LOCK``, else the
    project's ``manifests/checksums.lock.json``; with ``ignore_pins``, ``lock_path`` or
    ``<cache>/checksums.lock.json``, and never the project's lock file."""
    if not ignore_pins:
        return ChecksumLock(lock_path)
    path = Path(lock_path) if lock_path else Path(cache_dir) / CACHE_LOCK_NAME
    if path.resolve() == DEFAULT_LOCK.resolve():
        raise UserError(f"--ignore-pins never records into {DEFAULT_LOCK} (it holds genuine archives only); "
                        f"pass another --lock or none (default <cache>/{CACHE_LOCK_NAME})")
    return ChecksumLock(path)


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
            _notice(f"warning: cached {exc}; moved to {_quarantine(final, cache_dir, sha)}")
            sha = None
    elif sha is not None and sha != want:
        moved = _quarantine(final, cache_dir, sha)
        _notice(f"warning: cached {label} has sha256 {sha}, but {origin} says {want}; moved to {moved}")
        sha = None
    if sha is None:
        resumed = part.exists()
        for attempt in (1, 2):
            try:
                _transfer(url, part, session, net, label, quiet, want_size)
            except SizeMismatch as exc:  # refused before hashing; the partial file goes to quarantine
                moved = _quarantine(part, cache_dir, "size-mismatch") if part.exists() else None
                raise DownloadError(f"{label}: {exc} (pinned in the manifest; source {url})"
                                    + (f"; the file was moved to {moved}" if moved else "")) from None
            if want_size is not None and part.stat().st_size != want_size:
                moved = _quarantine(part, cache_dir, "size-mismatch")
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
                moved = _quarantine(part, cache_dir, sha)
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


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert download",
        description="Download, verify (size and sha256) and extract MobileNet checkpoint archives into a cache.")
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="variants (1.0_224, mobilenet_v1_0.25_128, v3-large_224_1.0_float), a family (v1, v2, v3) or 'all'")
    p.add_argument("--mirror", default=os.environ.get(MIRROR_ENV), metavar="URL",
                   help=f"base URL (http(s)://, file://) or directory holding the archives; default ${MIRROR_ENV}")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="cache directory (default: <project>/cache or $MOBILENET_CACHE); archives land in DIR/archives/")
    p.add_argument("--lock", type=Path, default=None, metavar="PATH",
                   help=f"checksum lock file for unpinned archives (default: ${LOCK_ENV} or "
                        f"manifests/checksums.lock.json; with --ignore-pins: DIR/{CACHE_LOCK_NAME})")
    p.add_argument("--ignore-pins", action="store_true",
                   help="check archives against the lock file instead of the manifest's sha256 pins (factory "
                        "archives, a rebuilt mirror, the loopback demo); never records into the project's lock")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="download up to N archives at once")
    p.add_argument("--no-extract", action="store_true", help="verify only; do not extract into DIR/extracted/")
    p.add_argument("--timeout", type=float, default=NetOptions.timeout[1], metavar="SECONDS",
                   help="read timeout per network read (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-archive lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {args.jobs}")
        if args.timeout <= 0:
            raise UserError(f"--timeout must be positive, got {args.timeout}")
        mirror = normalize_mirror(args.mirror)
        variants = default_manifest().select(args.names)
        lock_for(args.cache or default_cache(), args.lock, args.ignore_pins)  # refuse a bad --lock up front
    except (UserError, ManifestError, UnknownVariantError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    net = NetOptions(timeout=(NetOptions.timeout[0], args.timeout))
    results = fetch_many(variants, args.cache, jobs=args.jobs, quiet=args.quiet, mirror=mirror or "",
                         lock_path=args.lock, extract=not args.no_extract, net=net, ignore_pins=args.ignore_pins)
    failed = [r for r in results if isinstance(r, FetchFailure)]
    for r in results:
        if not args.quiet and not isinstance(r, FetchFailure):
            state = "downloaded" if r.downloaded else "cached"
            print(f"ok  {r.variant.name:<9} {state:<10} {r.archive}  sha256 {r.sha256[:16]}… "
                  f"(checked against the {r.checked_against})")
    if failed:  # one line per failed archive, saying why
        print(f"error: {len(failed)} of {len(results)} archive(s) failed:", file=sys.stderr)
        for f in failed:
            print(f"  {f.variant.name:<9} {f.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from .cli import run_cli

    run_cli(main)
