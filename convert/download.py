"""Download, verify, cache and safely extract the official checkpoint archives.

``python -m convert download NAME... | all [--mirror URL] [--cache DIR] [--jobs N] [--quiet]``

Layout under the cache directory (default ``cache/``)::

    archives/<archive file name>     verified archives only (sha256 checked, then atomic rename)
    archives/<archive file name>.part  an interrupted download, resumed with an HTTP Range request
    quarantine/<file>.<sha256[:12]>  files that failed verification; never used by the pipeline
    extracted/<name>/                the archive's members (atomic, idempotent; ``.complete`` marker)

Hashes are checked against the manifest pin, else against ``manifests/checksums.lock.json``
(trust on first use: the first verified download is recorded there; later ones must match).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util import Retry

from .cli import UserError, run_cli
from .fsutil import atomic_write_bytes, sha256_file
from .manifest import PROJECT_ROOT, ManifestError, UnknownVariantError, Variant, default_manifest

DEFAULT_CACHE = PROJECT_ROOT / "cache"
DEFAULT_LOCK = PROJECT_ROOT / "manifests" / "checksums.lock.json"
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
    extracted: Path | None
    source: str

    @property
    def checkpoint_prefix(self) -> Path | None:
        """``extracted/<name>/<model_name>.ckpt`` (what ``tf.train.load_checkpoint`` takes)."""
        return self.extracted / f"{self.variant.model_name}.ckpt" if self.extracted else None


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


def _copy_file(src: Path, part: Path, label: str, quiet: bool) -> None:
    """Stream a local file (``file://`` or directory mirror) to ``part``."""
    try:
        size = src.stat().st_size
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
                   quiet: bool) -> None:
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
                with open(part, mode) as f, _bar(total, offset, label, quiet) as bar:
                    for chunk in response.iter_content(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
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
              quiet: bool) -> None:
    if url.startswith("file://"):
        _copy_file(_file_url_path(url), part, label, quiet)
        return
    own = session is None
    session = session or make_session(net)
    try:
        _http_download(url, part, session, net, label, quiet)
    finally:
        if own:
            session.close()


# ----------------------------------------------------------------------------- integrity

_LOCK_MUTEX = threading.Lock()


class ChecksumLock:
    """``checksums.lock.json``: ``{file: {sha256, size, recorded, source}}``; atomic, thread-safe writes."""

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
        with _LOCK_MUTEX:  # re-read under the mutex so concurrent jobs merge, not overwrite
            data = self.read()
            data[filename] = {"sha256": sha256, "size": size, "source": source,
                              "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            atomic_write_bytes(self.path, (json.dumps(dict(sorted(data.items())), indent=2) + "\n").encode())


def _quarantine(path: Path, cache_dir: Path, sha256: str) -> Path:
    qdir = cache_dir / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    target = qdir / f"{path.name.removesuffix('.part')}.{sha256[:12]}"
    os.replace(path, target)
    return target


# ----------------------------------------------------------------------------- archive checks and extraction

def _member_name(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def verify_members(members: Iterable[tarfile.TarInfo], model_name: str | None, archive: str | os.PathLike) -> list[str]:
    """Refuse unsafe members (absolute, ``..``, links, devices) and require the checkpoint's
    ``.ckpt.index`` and ``.ckpt.data-*``; returns the member names."""
    members = list(members)
    names = [_member_name(m.name) for m in members]
    for m, name in zip(members, names):
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
            continue
        raise DownloadError(f"{Path(archive).name}: refusing to extract member {m.name!r}: it {problem}; "
                            f"only regular files and directories inside the archive are allowed")
    stem = f"{model_name}.ckpt" if model_name else None
    files = [n for m, n in zip(members, names) if m.isfile()]
    has_index = any(n.endswith(".ckpt.index") and (not stem or n == f"{stem}.index") for n in files)
    has_data = any(".ckpt.data-" in n and (not stem or n.startswith(f"{stem}.data-")) for n in files)
    if not (has_index and has_data):
        want = f"{stem or '*.ckpt'}.index and {stem or '*.ckpt'}.data-*"
        raise DownloadError(f"{Path(archive).name} lacks the checkpoint ({want}); it contains: "
                            f"{', '.join(names) or 'nothing'}")
    return names


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


def check_archive(tgz: str | os.PathLike, model_name: str | None = None) -> list[str]:
    """Read the whole archive and apply ``verify_members``; raises DownloadError."""
    tgz = Path(tgz)
    tar, members = _open_members(tgz)
    with tar:
        return verify_members(members, model_name, tgz)


def extract_archive(tgz: str | os.PathLike, dest_dir: str | os.PathLike, model_name: str | None = None,
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
        tar, members = _open_members(tgz)
        with tar:
            verify_members(members, model_name, tgz)
            try:
                tar.extractall(tmp, members=members, filter="data")
            except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                raise DownloadError(f"{tgz.name}: extraction failed ({exc}); the archive is corrupt or "
                                    f"truncated") from None
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


def fetch(variant: Variant, cache_dir: str | os.PathLike = DEFAULT_CACHE, mirror: str | None = None,
          lock_path: str | os.PathLike | None = None, session: requests.Session | None = None,
          quiet: bool = False, extract: bool = True, net: NetOptions = NetOptions()) -> FetchResult:
    """Download (or reuse), verify and optionally extract one archive; raises DownloadError."""
    cache_dir = Path(cache_dir)
    url = source_url(variant, mirror)
    lock = ChecksumLock(lock_path)
    final = archive_path(cache_dir, variant)
    part = final.with_name(final.name + ".part")
    label = variant.archive_filename
    final.parent.mkdir(parents=True, exist_ok=True)

    def expected() -> tuple[str | None, str]:
        if variant.sha256:
            return variant.sha256, "the manifest pin"
        return lock.get(final.name), f"the lock file {lock.path}"

    downloaded = False
    sha = sha256_file(final) if final.is_file() else None
    want, origin = expected()
    if sha is not None and want is None:  # cached, but the lock lost its entry: trust it only if sound
        try:
            check_archive(final, variant.model_name)
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
            _transfer(url, part, session, net, label, quiet)
            sha = sha256_file(part)
            try:
                if want is not None and sha != want:
                    raise DownloadError(f"{label}: sha256 mismatch: downloaded {sha}, but {origin} says {want} "
                                        f"(source {url})")
                check_archive(part, variant.model_name)
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
        downloaded = True
    extracted = None
    if extract:
        extracted = extract_archive(final, extracted_dir(cache_dir, variant), variant.model_name, sha)
    return FetchResult(variant, final, sha, downloaded, extracted, url)


def fetch_many(variants: Iterable[Variant], cache_dir: str | os.PathLike = DEFAULT_CACHE, jobs: int = 1,
               quiet: bool = False, **kwargs) -> list[FetchResult | FetchFailure]:
    """``fetch`` each variant (up to ``jobs`` at once); failures are returned, not raised, in input order."""
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
    with tqdm(total=len(unique), desc="archives", unit="archive", disable=disable) as overall, \
            ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, v) for v in unique]
        for _ in as_completed(futures):
            overall.update(1)
    return [f.result() for f in futures]


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert download",
        description="Download, verify (sha256) and extract MobileNetV2 checkpoint archives into a cache.")
    p.add_argument("names", nargs="+", metavar="NAME", help="variant such as 1.0_224 or mobilenet_v2_1.0_224, or 'all'")
    p.add_argument("--mirror", default=os.environ.get(MIRROR_ENV), metavar="URL",
                   help=f"base URL (http(s)://, file://) or directory holding the archives; default ${MIRROR_ENV}")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, metavar="DIR",
                   help="cache directory (default: cache/); archives land in DIR/archives/")
    p.add_argument("--lock", type=Path, default=None, metavar="PATH",
                   help=f"checksum lock file (default: ${LOCK_ENV} or manifests/checksums.lock.json)")
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
    except (UserError, ManifestError, UnknownVariantError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    net = NetOptions(timeout=(NetOptions.timeout[0], args.timeout))
    results = fetch_many(variants, args.cache, jobs=args.jobs, quiet=args.quiet, mirror=mirror or "",
                         lock_path=args.lock, extract=not args.no_extract, net=net)
    failed = [r for r in results if isinstance(r, FetchFailure)]
    for r in results:
        if not args.quiet and not isinstance(r, FetchFailure):
            state = "downloaded" if r.downloaded else "cached"
            print(f"ok  {r.variant.name:<9} {state:<10} {r.archive}  sha256 {r.sha256[:16]}…")
    if failed:  # one line per failed archive, saying why
        print(f"error: {len(failed)} of {len(results)} archive(s) failed:", file=sys.stderr)
        for f in failed:
            print(f"  {f.variant.name:<9} {f.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
