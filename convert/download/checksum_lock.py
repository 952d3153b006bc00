"""The checksum lock file (trust on first use for unpinned archives), and which lock file applies."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from ..env import CHECKOUT, env_setting, state_root
from ..errors import UserError
from ..fsutil import atomic_write_bytes, file_lock
from .records import DownloadError

# the checkout's manifests/checksums.lock.json; installed: <state root>/checksums.lock.json (convert.env)
DEFAULT_LOCK = (CHECKOUT / "manifests" if CHECKOUT is not None else state_root()) / "checksums.lock.json"
CACHE_LOCK_NAME = "checksums.lock.json"  # the lock used with ignore_pins: <cache>/checksums.lock.json
LOCK_ENV = "MOBILENET_LOCK"


class ChecksumLock:
    """``checksums.lock.json``: ``{file: {sha256, size, recorded, source}}``. Writes are atomic and
    serialised across threads and processes by an ``fcntl`` lock on ``<lock>.flock``."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path or env_setting(LOCK_ENV) or DEFAULT_LOCK)

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


def lock_for(cache_dir: str | os.PathLike, lock_path: str | os.PathLike | None, ignore_pins: bool) -> ChecksumLock:
    """The lock file to check unpinned archives against: ``lock_path``, else ``$MOBILENET_LOCK``, else
    ``DEFAULT_LOCK`` (the checkout's ``manifests/checksums.lock.json``, see :mod:`convert.env`); with ``ignore_pins``, ``lock_path`` or
    ``<cache>/checksums.lock.json``, and never the project's lock file."""
    if not ignore_pins:
        return ChecksumLock(lock_path)
    path = Path(lock_path) if lock_path else Path(cache_dir) / CACHE_LOCK_NAME
    if path.resolve() == DEFAULT_LOCK.resolve():
        raise UserError(f"--ignore-pins never records into {DEFAULT_LOCK} (it holds genuine archives only); "
                        f"pass another --lock or none (default <cache>/{CACHE_LOCK_NAME})")
    return ChecksumLock(path)
