"""Wall time per pipeline stage, accumulated in-process (read by ``convert bench``; costs nothing else).

Stages wrap their work in ``with stage("…"):`` (or ``@timed("…")``). Time is charged to the innermost
stage only (a stage's total excludes the stages nested in it), so the totals add up to at most the wall
time and the rest is "other"."""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import defaultdict

_lock = threading.Lock()
_totals: dict[str, float] = defaultdict(float)
_local = threading.local()


@contextlib.contextmanager
def stage(name: str):
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    frame = [time.perf_counter(), 0.0]  # start, time spent in nested stages
    stack.append(frame)
    try:
        yield
    finally:
        stack.pop()
        elapsed = time.perf_counter() - frame[0]
        if stack:
            stack[-1][1] += elapsed
        with _lock:
            _totals[name] += elapsed - frame[1]


def timed(name: str):
    """Decorator: the function's calls count as stage ``name``."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with stage(name):
                return fn(*args, **kwargs)
        return inner
    return wrap


def snapshot() -> dict[str, float]:
    with _lock:
        return dict(_totals)


def merge(totals: dict[str, float]) -> None:
    """Add stage totals measured elsewhere (a worker process) to this process's."""
    with _lock:
        for name, seconds in totals.items():
            _totals[name] += seconds


def reset() -> None:
    with _lock:
        _totals.clear()
