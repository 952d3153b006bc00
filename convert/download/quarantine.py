"""Files that failed verification are moved aside, never used and never deleted silently."""
from __future__ import annotations

import os
from pathlib import Path


def move_to_quarantine(path: Path, cache_dir: Path, sha256: str) -> Path:
    qdir = cache_dir / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    target = qdir / f"{path.name.removesuffix('.part')}.{sha256[:12]}"
    os.replace(path, target)
    path.with_name(f".{path.name}.sha256.json").unlink(missing_ok=True)  # sha256_remembered's memo
    return target
