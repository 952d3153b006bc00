"""A real loopback HTTP server (convert.factory.serve) with scripted faults per file, for the download tests.

``server.script("x.tgz", Fault("drop", after=1000), Fault("status", code=500))`` makes the next requests
for ``/x.tgz`` fail in that order; later requests are served normally. ``server.requests`` records what
the server received (method, path, headers).
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import BinaryIO

from convert.factory.serve import DirectoryServer, FileHandler


@dataclass(frozen=True)
class Fault:
    """kind: ``status`` (reply ``code``), ``ignore_range`` (reply 200 with the whole file),
    ``drop`` (send ``after`` body bytes, then close), ``stall`` (send ``after`` bytes, sleep ``seconds``,
    then close), ``delay`` (sleep ``seconds`` before answering, then answer normally: keeps a download in
    flight long enough for a concurrent client to reach the same point)."""

    kind: str
    code: int = 500
    after: int = 0
    seconds: float = 0.0


class FaultyHandler(FileHandler):
    fault: Fault | None = None

    def serve(self, send_body: bool) -> None:
        self.fault = self.server.next_fault(self.path)  # one handler serves a keep-alive connection
        if self.fault is not None and self.fault.kind == "status":
            self.server.record(self)
            self.send_error(self.fault.code)
            return
        if self.fault is not None and self.fault.kind == "delay":
            time.sleep(self.fault.seconds)
            self.fault = None  # then served like any other request
        super().serve(send_body)

    def range_header(self) -> str | None:
        return None if self.fault and self.fault.kind == "ignore_range" else super().range_header()

    def copy_body(self, src: BinaryIO, length: int) -> None:
        fault = self.fault
        if fault is None or fault.kind not in ("drop", "stall"):
            return super().copy_body(src, length)
        super().copy_body(src, min(fault.after, length))
        self.wfile.flush()
        if fault.kind == "stall":
            time.sleep(fault.seconds)
        self.close_connection = True


class FaultyServer(DirectoryServer):
    def __init__(self, root):
        super().__init__(root, handler=FaultyHandler)
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._mutex = threading.Lock()

    def script(self, filename: str, *faults: Fault) -> None:
        with self._mutex:
            self._faults["/" + filename].extend(faults)

    def next_fault(self, path: str) -> Fault | None:
        with self._mutex:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def gets(self, filename: str) -> list:
        return [r for r in self.requests if r.method == "GET" and r.path == "/" + filename]
