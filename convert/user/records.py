"""Typed records of a user checkpoint's conversion: the proof against each reference graph, and the whole
conversion as the sidecar holds it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..records import RewriteFigures


@dataclass(frozen=True)
class FileCheck:
    """A written model file (``NAME.keras``, ``NAME.tflite``) run on the verify inputs against the reference."""

    file: str
    max_abs_dprob: float  # against the reference's probabilities (over the Keras classes)
    top1_agree: int
    inputs: int
    tolerance: float
    passed: bool


@dataclass(frozen=True)
class ReferenceFigures:
    """The converted files against one TF1 reference graph."""

    reference: str  # "builder" (the project's slim graph of the inferred architecture) | "graph" (--graph)
    graph: str  # the graph file, or the builder's description
    kind: str  # "variables" (fed the checkpoint's values by name) | "frozen" (values inside)
    logits: str | None  # the logits tensor (None: a backbone)
    pooled: str
    inputs: int
    max_abs_dlogit: float | None
    tolerance: float | None
    top1_agree: int | None
    top5_agree: int | None
    no_top_max_abs_diff: float
    no_top_tolerance: float
    no_top_file_mismatches: list[str]
    rewrites: dict[str, RewriteFigures] = field(default_factory=dict)  # V3: the SE gate rewritten to 1/6
    files: list[FileCheck] = field(default_factory=list)  # NAME.keras and NAME.tflite against this graph
    passed: bool = False

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "rewrites": {n: r.to_json() for n, r in self.rewrites.items()}}

    @classmethod
    def from_json(cls, data: Any) -> ReferenceFigures:
        d = dict(data)
        d["rewrites"] = {n: RewriteFigures.from_json(r) for n, r in (d.get("rewrites") or {}).items()}
        d["files"] = [FileCheck(**f) for f in d.get("files") or []]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
