"""A small, quiet, threaded HTTP file server on 127.0.0.1 (GET/HEAD, single byte ranges).

Used to serve factory-built archives to ``download`` (``make demo``) and by the download tests::

    with serve_directory("work/archives") as base_url:
        fetch(variant, cache_dir, mirror=base_url)

Only regular files inside the served directory are reachable; there are no directory listings.
"""
from __future__ import annotations

import collections
import contextlib
import email.utils
import logging
import mimetypes
import os
import re
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Iterator

log = logging.getLogger(__name__)

CHUNK = 1 << 16
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class RequestRecord:
    """What the server saw: method, raw path and the request headers."""

    method: str
    path: str
    headers: dict[str, str]


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``(start, end)`` inclusive for a single satisfiable range, ``None`` to send the whole file
    (no/unsupported header), or ``"unsatisfiable"``."""
    if not header:
        return None
    m = _RANGE.match(header.strip().replace(" ", ""))
    if not m or (not m.group(1) and not m.group(2)):
        return None  # multi-range or malformed: RFC 9110 lets us ignore it
    first, last = m.group(1), m.group(2)
    if not first:  # suffix range: the last N bytes
        n = int(last)
        return (max(size - n, 0), size - 1) if n and size else "unsatisfiable"
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


class FileHandler(BaseHTTPRequestHandler):
    """Serves files under ``server.root``; honours ``Range: bytes=N-``, ``N-M`` and ``-N``."""

    server: "DirectoryServer"
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds an idle keep-alive connection (or a stuck client) may hold a thread
    server_version = "convert-serve/1"

    def do_GET(self) -> None:
        self.serve(send_body=True)

    def do_HEAD(self) -> None:
        self.serve(send_body=False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - base-class signature
        log.debug("%s %s", self.address_string(), format % args)

    def resolve_path(self) -> Path | None:
        """The regular file the request names, or None (missing, a directory, or outside the root)."""
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        if "\x00" in rel or any(part == ".." for part in rel.split("/")):
            return None
        try:
            path = (self.server.root / rel).resolve()
            path.relative_to(self.server.root)
        except (ValueError, OSError):
            return None
        return path if path.is_file() else None

    def serve(self, send_body: bool) -> None:
        self.server.record(self)
        path = self.resolve_path()
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            size = stat.st_size
            rng = parse_range(self.range_header(), size)
            if rng == "unsatisfiable":
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = rng if rng else (0, size - 1)
            length = end - start + 1
            self.send_response(HTTPStatus.PARTIAL_CONTENT if rng else HTTPStatus.OK)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
            self.send_header("ETag", f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"')
            self.end_headers()
            if send_body and length > 0:
                f.seek(start)
                self.copy_body(f, length)

    def range_header(self) -> str | None:
        """The Range header to honour (a hook: fault-injecting tests override it)."""
        return self.headers.get("Range")

    def copy_body(self, src: BinaryIO, length: int) -> None:
        """Write ``length`` bytes of ``src`` to the client (the hook fault-injecting tests override)."""
        while length > 0:
            chunk = src.read(min(CHUNK, length))
            if not chunk:  # file shrank under us: the response cannot be completed
                self.close_connection = True
                return
            self.wfile.write(chunk)
            length -= len(chunk)


class DirectoryServer(ThreadingHTTPServer):
    """Serves ``root`` on 127.0.0.1 (ephemeral port by default) from a daemon thread.

    Use as a context manager; ``url`` is the base URL and ``requests`` the recent requests seen.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: str | os.PathLike, host: str = "127.0.0.1", port: int = 0,
                 handler: type[FileHandler] = FileHandler, history: int = 1000):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"cannot serve {root}: not a directory")
        self.requests: collections.deque[RequestRecord] = collections.deque(maxlen=history)
        self._thread: threading.Thread | None = None
        super().__init__((host, port), handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def record(self, handler: BaseHTTPRequestHandler) -> None:
        self.requests.append(RequestRecord(handler.command, handler.path, dict(handler.headers.items())))

    def handle_error(self, request, client_address) -> None:
        # Clients that hang up mid-response are normal (resumable downloads); anything else is logged.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("client %s went away: %s", client_address, exc)
        else:
            log.warning("error while serving %s", client_address, exc_info=True)

    def start(self) -> "DirectoryServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"serve {self.root.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def __enter__(self) -> "DirectoryServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def serve_directory(path: str | os.PathLike, handler: type[FileHandler] = FileHandler) -> Iterator[str]:
    """Serve ``path`` on 127.0.0.1 for the duration of the block; yields the base URL."""
    with DirectoryServer(path, handler=handler) as server:
        yield server.url
