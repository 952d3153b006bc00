"""Helpers every stage shares: content hashes, atomic writes (temp file + rename), and the package
versions recorded as provenance next to outputs."""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
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


def temp_path_for(path: Path, suffix: str = ".tmp") -> str:
    """A new empty temp file next to ``path`` with the permissions a plain ``open(path, "w")`` would give
    (``mkstemp`` makes 0600 files), for write-then-``os.replace``. ``suffix``: for writers that insist on
    an extension (Keras saves only to ``*.keras``)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def replacing(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temp file path next to ``path`` for a writer to fill; on success rename it over ``path``,
    on any failure remove it (``path`` is then as it was: never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, sync: bool = True) -> Path:
    """Write ``data`` to a temp file in the same directory, fsync (unless ``sync=False``: a cache that
    may be lost), then rename over ``path``."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def stat_signature(path: str | os.PathLike) -> list[int]:
    """What changes whenever a file's content may have changed: size, modification and change times
    (ns) and inode. ``ctime`` cannot be set back by a user, so an unchanged signature means an unchanged file
    (the check ``git status`` and ``make`` rely on), as long as the file was not changed within one tick of
    the filesystem's clock of the moment it was hashed: see :func:`signature_trusted`."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


# A file whose change time is this close to the moment its hash was recorded is "racily clean" (git's
# term): a rewrite of the same size in the same clock tick would leave its signature unchanged. Such a file
# is hashed again instead of trusted (1 s covers coarse timestamps, e.g. 1 s on some network filesystems).
RACY_NS = 1_000_000_000


def signature_trusted(recorded: dict | None, path: str | os.PathLike) -> bool:
    """Whether ``recorded`` (``{"sig": stat_signature, "at": time.time_ns() when hashed}``) still vouches for
    the file at ``path``: the same signature, and a change time clearly older than the record."""
    if not isinstance(recorded, dict) or "sig" not in recorded or "at" not in recorded:
        return False
    sig = stat_signature(path)
    return sig == recorded["sig"] and sig[2] < recorded["at"] - RACY_NS


def signature_record(path: str | os.PathLike) -> dict:
    """The record :func:`signature_trusted` checks, taken now (after the file was hashed)."""
    import time

    return {"sig": stat_signature(path), "at": time.time_ns()}


def _memo_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.sha256.json")


def remember_sha256(path: str | os.PathLike, digest: str) -> None:
    """Record ``digest`` as the sha256 of ``path`` as it is now (its writer has just hashed and verified it)."""
    path = Path(path)
    atomic_write_bytes(_memo_path(path), json.dumps({"sha256": digest, "stat": signature_record(path)}).encode(),
                       sync=False)


def sha256_remembered(path: str | os.PathLike) -> str:
    """``sha256_file(path)``, remembered across runs in ``.<name>.sha256.json`` beside the file together
    with its :func:`stat_signature`: a file whose signature is unchanged is not read again (large
    archives: hashing one costs ~0.3 s)."""
    path = Path(path)
    memo = _memo_path(path)
    signature = stat_signature(path)
    try:
        known = json.loads(memo.read_text())
        if signature_trusted(known["stat"], path) and len(known["sha256"]) == 64:
            return known["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_file(path)
    if stat_signature(path) == signature:  # unchanged while it was read
        remember_sha256(path, digest)
    return digest


# the distributions behind the import names (tensorflow may be installed as tensorflow-cpu)
_DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly"),
                  "keras": ("keras",), "h5py": ("h5py",), "numpy": ("numpy",)}


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a conversion's result depends on (read from the installed
    distributions' metadata: no import of TF or Keras needed). A new dict each call."""
    return dict(_package_versions())


@functools.lru_cache(maxsize=None)
def _package_versions() -> tuple[tuple[str, str], ...]:
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for module, dists in _DISTRIBUTIONS.items():
        for dist in dists:
            try:
                versions[module] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            versions[module] = __import__(module).__version__
    return tuple(versions.items())
