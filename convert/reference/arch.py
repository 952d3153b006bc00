"""The description a reference graph is built from: a MobileNet's architecture without any catalogue row."""
from __future__ import annotations

from dataclasses import dataclass

from .slim import SCOPES

V3_KINDS = ("large", "small")
MIN_SIZE = 32  # five stride-2 stages: smaller inputs leave no feature map


@dataclass(frozen=True)
class Architecture:
    """A slim MobileNet: family, depth multiplier, input size, logits channels and the V2/V3 options.

    ``classes`` counts the logits' output channels as the checkpoint holds them (1001 for Google's releases,
    background included); None is a backbone without the head. ``finegrain`` is slim's
    ``finegrain_classification_mode`` (the released V2/V3 checkpoints: on). ``scope_prefix`` puts the model
    under another scope (``FeatureExtractor`` -> ``FeatureExtractor/MobilenetV2/...``)."""

    family: str  # "v1" | "v2" | "v3"
    alpha: float
    rows: int
    cols: int
    classes: int | None
    kind: str | None = None  # V3: "large" | "small"
    minimalistic: bool = False  # V3
    finegrain: bool = True  # V2/V3
    scope_prefix: str = ""

    def __post_init__(self):
        if self.family not in SCOPES:
            raise ValueError(f"unknown family {self.family!r}; valid: {', '.join(SCOPES)}")
        if not float(self.alpha) > 0:
            raise ValueError(f"alpha must be a positive depth multiplier, got {self.alpha!r}")
        object.__setattr__(self, "alpha", float(self.alpha))
        if self.rows < MIN_SIZE or self.cols < MIN_SIZE:
            raise ValueError(f"input {self.rows}x{self.cols} is below slim's minimum {MIN_SIZE}x{MIN_SIZE}")
        if self.classes is not None and self.classes < 1:
            raise ValueError(f"classes must be a positive count of logits (or None: no head), got {self.classes!r}")
        if self.family == "v3" and self.kind not in V3_KINDS:
            raise ValueError(f"a MobileNetV3 needs kind {' or '.join(V3_KINDS)}, got {self.kind!r}")
        if self.family != "v3" and (self.kind is not None or self.minimalistic):
            raise ValueError(f"kind and minimalistic are MobileNetV3 options, not {self.family}'s")
        if self.scope_prefix.startswith("/") or self.scope_prefix.endswith("/"):
            raise ValueError(f"scope_prefix {self.scope_prefix!r}: give it without leading or trailing '/'")

    @property
    def scope(self) -> str:
        """The model's variable scope path: ``MobilenetV2`` or ``FeatureExtractor/MobilenetV2``."""
        return f"{self.scope_prefix}/{SCOPES[self.family]}" if self.scope_prefix else SCOPES[self.family]

    @property
    def head(self) -> bool:
        return self.classes is not None

    @property
    def label(self) -> str:
        """A short text naming every field, e.g. ``v2_0.6_200x160_c5`` (file names, seeds)."""
        kind = f"-{self.kind}" + ("-minimalistic" if self.minimalistic else "") if self.kind else ""
        parts = [f"{self.family}{kind}", f"{self.alpha:g}", f"{self.rows}x{self.cols}",
                 f"c{self.classes}" if self.head else "backbone"]
        if not self.finegrain:
            parts.append("coarse")
        if self.scope_prefix:
            parts.append(self.scope_prefix.replace("/", "."))
        return "_".join(parts)
