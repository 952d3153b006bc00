"""The slim graph ops, now the reference package's (:class:`convert.reference.Ops`); kept importable here
for the factory's QAT ops (:mod:`.quant`) and older callers."""
from __future__ import annotations

from ...reference.ops import Ops

__all__ = ["Ops"]
