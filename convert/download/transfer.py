"""One transfer into ``<archive>.part``: a resumable HTTP GET (Range), or a copy from a local mirror."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import requests
from tqdm import tqdm

from .mirrors import MIRROR_ENV, file_url_path
from .records import DownloadError, NetOptions, SizeMismatch, TransferFailed
from .session import RETRY_STATUSES, make_session

CHUNK = 1 << 16
MAX_ARCHIVE_BYTES = 2 << 30  # the largest release (1.4_224) is well under this
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                   requests.exceptions.ContentDecodingError)


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
        raise TransferFailed(f"{label}: {src} does not exist in the mirror directory") from None
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
            raise TransferFailed(f"{label}: cannot download {url}: {_reason(exc)} (after {net.retries} retries); "
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
                    raise TransferFailed(f"{label}: {url} was not found (HTTP 404); check the name or --mirror")
                else:
                    retried = " after retries" if status in RETRY_STATUSES else ""
                    raise TransferFailed(f"{label}: {url} answered HTTP {status} {response.reason}{retried}; "
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


def transfer_to_part(url: str, part: Path, session: requests.Session | None, net: NetOptions, label: str,
              quiet: bool, expected_size: int | None = None) -> None:
    if url.startswith("file://"):
        _copy_file(file_url_path(url), part, label, quiet, expected_size)
        return
    own = session is None
    session = session or make_session(net)
    try:
        _http_download(url, part, session, net, label, quiet, expected_size)
    finally:
        if own:
            session.close()
