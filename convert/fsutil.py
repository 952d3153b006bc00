"""Helpers every stage shares: content hashes, atomic writes (temp file + rename), and the package
versions recorded as provenance next to outputs."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from .timing import timed


@timed("hashing")
def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import (in the importing thread): worker threads never touch the process-wide umask.
_UMASK = _read_umask()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """An exclusive ``fcntl`` lock on ``path`` (created if needed), held for the ``with`` block; serialises
    processes and threads alike (each acquisition opens its own descriptor)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def temp_path_for(path: Path) -> str:
    """A new empty temp file next to ``path`` with the permissions a plain ``open(path, "w")`` would give
    (``mkstemp`` makes 0600 files), for write-then-``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    return tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temp file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a conversion's result depends on."""
    import platform

    import h5py
    import keras
    import numpy
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "h5py": h5py.__version__, "numpy": numpy.__version__}
