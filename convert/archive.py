"""Where things are in an extracted archive, from the family's :class:`~convert.families.base.ArchiveLayout`.

Family-agnostic: V1/V2 archives hold one checkpoint at the top level, V3 archives a folder with an
``ema/`` and a ``pristine/`` checkpoint; both are described by their layout's templates. A template
holding ``*`` (the quantized families, whose member names are not certain) is *discovered*: the one member
matching it (the checkpoint by its ``.index``); no match where one is required, or more than one, is a
:class:`LayoutError` listing the extracted members.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

from .families.base import CheckpointFile

VALUE_SOURCES = ("auto", "ema", "raw")
_LISTED = 60  # members listed in an error at most


class LayoutError(FileNotFoundError):
    """An extracted archive does not hold a layout member (or holds several matching one pattern); the
    message lists the members."""


def fill(template: str, variant) -> str:
    """A layout template with the variant's values (``{stem}``, ``{step}``, ``{rows}``, ``{alpha_percent}``,
    ...); a ``*`` stays, as a pattern for :func:`discover`."""
    return template.format_map({**variant.family.format_fields(variant), "stem": variant.stem})


def is_pattern(path: str) -> bool:
    return "*" in path


def members(root: str | Path) -> list[str]:
    """The regular files under ``root``, relative, sorted (the extraction's own marker files left out)."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def listing(root: str | Path) -> str:
    names = members(root)
    more = f", ... ({len(names) - _LISTED} more)" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more if names else "nothing"


def _matches(root: Path, pattern: str) -> list[Path]:
    """Members matching ``pattern`` (``*`` does not cross ``/``)."""
    folder, _, name = pattern.rpartition("/")
    base = root / folder if folder else root
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_file() and fnmatch.fnmatchcase(p.name, name))


def discover(root: str | Path, template: str, variant, what: str, *, required: bool = True) -> Path | None:
    """The one member a layout template names: the filled path itself, or, for a pattern, the single match.
    None when absent and not ``required``; otherwise a :class:`LayoutError` listing the members."""
    root = Path(root)
    path = fill(template, variant)
    found = _matches(root, path) if is_pattern(path) else [root / path] if (root / path).is_file() else []
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise LayoutError(f"{root}: {what} of {variant.name} is ambiguous: {len(found)} members match {path!r} "
                          f"({', '.join(p.relative_to(root).as_posix() for p in found)}); the archive holds: "
                          f"{listing(root)}")
    if required:
        raise LayoutError(f"{root}: no {what} of {variant.name} (looked for {path!r}); the archive holds: "
                          f"{listing(root)}")
    return None


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


def _checkpoint_prefix(root: Path, cf: CheckpointFile, variant) -> Path | None:
    """The prefix of a layout checkpoint in the extraction (discovered by its ``.index`` for a pattern), or None."""
    index = discover(root, cf.prefix + ".index", variant, f"checkpoint ({cf.role})", required=False)
    if index is None:
        return None
    prefix = index.with_name(index.name[: -len(".index")])
    return prefix if has_checkpoint(root, prefix.relative_to(root).as_posix()) else None


def layout_checkpoints(root: str | Path, variant) -> list[tuple[Path, CheckpointFile]]:
    """Every checkpoint of the layout present in the extraction (prefix, layout file), in layout order."""
    found = ((_checkpoint_prefix(Path(root), cf, variant), cf) for cf in variant.family.layout.checkpoints)
    return [(prefix, cf) for prefix, cf in found if prefix is not None]


def find_checkpoint(root: str | Path, variant, mode: str = "auto") -> tuple[Path, CheckpointFile]:
    """The checkpoint prefix to read for ``mode`` in an extracted archive, and which layout file it is."""
    root = Path(root)
    candidates = checkpoint_files(variant, mode)
    for cf in candidates:
        prefix = _checkpoint_prefix(root, cf, variant)
        if prefix is not None:
            return prefix, cf
    wanted = ", ".join(fill(cf.prefix, variant) + ".index" for cf in candidates) or "none"
    raise LayoutError(f"{root} holds no checkpoint of {variant.name} for --value-source {mode} (looked for "
                      f"{wanted} with its .data-*); the archive holds: {listing(root)}")


def checkpoint_members(variant) -> list[tuple[str, str]]:
    """(``….index``, ``….data-`` prefix) member names of every checkpoint of the layout; either may hold
    ``*`` (a discovered prefix: match with :func:`member_matches`)."""
    return [(fill(cf.prefix, variant) + ".index", fill(cf.prefix, variant) + ".data-")
            for cf in variant.family.layout.checkpoints]


def member_matches(name: str, pattern: str, *, prefix: bool = False) -> bool:
    """Whether an archive member name is ``pattern`` (``*`` within one path component), or starts with it."""
    if not is_pattern(pattern):
        return name.startswith(pattern) if prefix else name == pattern
    if prefix:
        pattern += "*"
    return (name.count("/") == pattern.count("/")) and fnmatch.fnmatchcase(name, pattern)


def reference_graphs(root: str | Path, variant) -> list[Path]:
    """Every reference-graph candidate present in the extraction, in layout order (patterns discovered;
    an ambiguous pattern is an error)."""
    found = (discover(root, t, variant, "reference graph", required=False)
             for t in variant.family.layout.reference_graphs)
    return [p for p in found if p is not None]


def reference_graph(root: str | Path, variant) -> Path | None:
    """The first reference-graph candidate present in the extraction (None: none is)."""
    graphs = reference_graphs(root, variant)
    return graphs[0] if graphs else None


def frozen_graph(root: str | Path, variant) -> Path:
    """The frozen inference graph (discovered for a pattern: a miss or an ambiguity is a LayoutError)."""
    template = variant.family.layout.frozen
    if not is_pattern(template):
        return Path(root) / fill(template, variant)
    return discover(root, template, variant, "frozen graph")


def tflite_file(root: str | Path, variant) -> Path:
    """The archive's own ``.tflite`` (quantized families); a LayoutError when the layout names none, or it
    is absent or ambiguous."""
    template = variant.family.layout.tflite
    if template is None:
        raise LayoutError(f"the {variant.family_key} layout names no .tflite member ({variant.name})")
    return discover(root, template, variant, ".tflite model")
