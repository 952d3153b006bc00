"""Where things are in an extracted archive, from the family's :class:`~convert.families.base.ArchiveLayout`.

Family-agnostic: V1/V2 archives hold one checkpoint at the top level, V3 archives a folder with an
``ema/`` and a ``pristine/`` checkpoint; both are described by their layout's templates.
"""
from __future__ import annotations

from pathlib import Path

from .families.base import CheckpointFile

VALUE_SOURCES = ("auto", "ema", "raw")


def fill(template: str, variant) -> str:
    return template.format(stem=variant.stem, step=variant.step)


def checkpoint_files(variant, mode: str) -> list[CheckpointFile]:
    """The layout's checkpoints in the order to try them for a weight mode: ``raw`` wants training
    values (a checkpoint whose plain names hold raw values); ``auto``/``ema`` want EMA values (an EMA
    checkpoint first, then a raw one, whose shadows hold them)."""
    files = list(variant.family.layout.checkpoints)
    if mode == "raw":
        return [f for f in files if f.plain_values == "raw"]
    return [f for f in files if f.plain_values == "ema"] + [f for f in files if f.plain_values == "raw"]


def has_checkpoint(root: Path, prefix: str) -> bool:
    base = Path(root) / prefix
    return base.with_name(base.name + ".index").is_file() and any(base.parent.glob(base.name + ".data-*"))


def find_checkpoint(root: str | Path, variant, mode: str = "auto") -> tuple[Path, CheckpointFile]:
    """The checkpoint prefix to read for ``mode`` in an extracted archive, and which layout file it is."""
    root = Path(root)
    candidates = checkpoint_files(variant, mode)
    for cf in candidates:
        if has_checkpoint(root, fill(cf.prefix, variant)):
            return root / fill(cf.prefix, variant), cf
    wanted = ", ".join(fill(cf.prefix, variant) + ".index" for cf in candidates) or "none"
    raise FileNotFoundError(f"{root} holds no checkpoint of {variant.name} for --value-source {mode} (looked for {wanted})")


def checkpoint_members(variant) -> list[tuple[str, str]]:
    """(``….index``, ``….data-`` prefix) member names of every checkpoint of the layout."""
    return [(fill(cf.prefix, variant) + ".index", fill(cf.prefix, variant) + ".data-")
            for cf in variant.family.layout.checkpoints]


def reference_graph(root: str | Path, variant) -> Path | None:
    """The first reference-graph candidate present in the extraction (None: none is)."""
    for template in variant.family.layout.reference_graphs:
        path = Path(root) / fill(template, variant)
        if path.is_file():
            return path
    return None


def frozen_graph(root: str | Path, variant) -> Path:
    return Path(root) / fill(variant.family.layout.frozen, variant)
