"""Stand-ins for a worker's conversion, importable by spawned worker processes (tests of pipeline._Workers)."""
from __future__ import annotations

import os

from convert.records import RunRow

DIES = "0.5_96"


def no_init(threads: int) -> None:
    """A worker initialiser that imports nothing (the real one imports TF and Keras)."""


def die_on_one(item, opts) -> RunRow:
    """Kills its own process for the variant ``DIES``; every other variant 'converts' at once."""
    if item.variant.name == DIES:
        os._exit(3)
    return RunRow(item.variant.name, passed=True, pid=os.getpid())
