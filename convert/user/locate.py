"""Where a user's checkpoint is: a checkpoint prefix, a training directory, or an archive of either.

* a prefix: ``…/model.ckpt-5000`` (or any of its files: ``.index``, ``.meta``, ``.data-00000-of-00001``);
* a training directory (``train_image_classifier.py --train_dir D``): its ``checkpoint`` file names the latest
  prefix (as an absolute path of the training machine, often: its file name is then looked up in ``D``), else
  the one ``*.index`` it holds;
* an archive (``.tgz``, ``.tar.gz``, ``.tar``): extracted safely (tarfile's ``data`` filter, regular files and
  folders only) into a temporary folder, then found as a directory (searched below its top).

Every checkpoint file is hashed (the card and sidecar list them) and the data file is checked against the
index: a data file shorter than the tensors the index lists is truncated, an error naming it.
"""
from __future__ import annotations

import contextlib
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UserError
from ..fsutil import sha256_file

ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")
CHECKPOINT_STATE = "checkpoint"


class CheckpointNotFound(UserError):
    """No checkpoint at the path given (the message says what was looked for and what is there)."""


class TruncatedCheckpoint(UserError):
    """A checkpoint data file shorter than its index requires."""


@dataclass(frozen=True)
class Located:
    """A user's checkpoint, found."""

    prefix: Path  # the checkpoint prefix (its files are prefix.index, prefix.data-*, prefix.meta)
    given: str  # the path the user gave
    kind: str  # "prefix" | "directory" | "archive"
    directory: Path  # the folder holding the checkpoint (an archive's: a temporary extraction)
    files: dict[str, str]  # checkpoint file name -> sha256 (the index, the data shards, the .meta if any)
    archive_sha256: str | None = None  # the archive's, when one was given
    graphs: tuple[str, ...] = ()  # other graph files beside the checkpoint (graph.pbtxt, ...): names

    @property
    def label(self) -> str:
        """The checkpoint as the user can find it again: the prefix, or inside an archive ``ARCHIVE:PREFIX``
        (the prefix's path inside the archive: the extraction is temporary)."""
        if self.kind == "archive":  # _from_state keeps an archive's checkpoint inside its extraction
            return f"{Path(self.given).resolve()}:{self.prefix.relative_to(self.directory).as_posix()}"
        return str(self.prefix)

    @property
    def default_name(self) -> str:
        """``--name``'s default: the training directory's (or archive's) name, else the prefix's."""
        if self.kind == "prefix":
            return self.prefix.name
        base = Path(self.given.rstrip("/")).name
        for suffix in ARCHIVE_SUFFIXES:
            base = base.removesuffix(suffix)
        return base


def _strip(path: str) -> str:
    for suffix in (".index", ".meta"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    if ".data-" in Path(path).name:
        return path[: path.rindex(".data-")]
    return path


def _listing(folder: Path, limit: int = 20) -> str:
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return ", ".join(names[:limit]) + (f", … ({len(names) - limit} more)" if len(names) > limit else "") or "nothing"


def _from_state(folder: Path, inside_only: bool = False) -> Path | None:
    """The latest prefix the ``checkpoint`` file of ``folder`` names, or None without such a file. It is looked
    up in ``folder`` first (a training machine's absolute path: by its file name), so a copied or extracted
    training directory gives its own checkpoint even where the original still exists; then, unless
    ``inside_only`` (an archive's extraction), at the path recorded."""
    import tensorflow as tf

    state_file = folder / CHECKPOINT_STATE
    if not state_file.is_file():
        return None
    try:
        state = tf.train.get_checkpoint_state(str(folder))
    except Exception as exc:  # a malformed text proto
        raise CheckpointNotFound(f"{state_file} cannot be read as a TF checkpoint state file: {exc}") from None
    if state is None or not state.model_checkpoint_path:
        raise CheckpointNotFound(f"{state_file} names no checkpoint (no model_checkpoint_path)")
    recorded = Path(state.model_checkpoint_path)
    candidates = [*([] if recorded.is_absolute() else [folder / recorded]), folder / recorded.name,
                  *([recorded] if recorded.is_absolute() and not inside_only else [])]
    for candidate in candidates:
        if inside_only and not candidate.resolve().is_relative_to(folder.resolve()):
            continue  # an archive's checkpoint is one of its own members
        if Path(str(candidate) + ".index").is_file():
            return candidate
    raise CheckpointNotFound(f"{state_file} names {state.model_checkpoint_path}, but neither it nor "
                             f"{folder / recorded.name} has an .index file; the folder holds: {_listing(folder)}")


def _in_folder(folder: Path, search: bool) -> Path:
    """The checkpoint of a training directory (``search``: in any folder below it too, for an extraction)."""
    folders = [folder] + (sorted(p for p in folder.rglob("*") if p.is_dir()) if search else [])
    for f in folders:
        prefix = _from_state(f, inside_only=search)
        if prefix is not None:
            return prefix
    indexes = sorted(p for f in folders for p in f.glob("*.index"))
    if len(indexes) == 1:
        return indexes[0].with_suffix("")
    if not indexes:
        raise CheckpointNotFound(f"{folder} holds no TF checkpoint (looked for a '{CHECKPOINT_STATE}' file and for "
                                 f"*.index files); it holds: {_listing(folder)}")
    raise CheckpointNotFound(f"{folder} holds {len(indexes)} checkpoints and no '{CHECKPOINT_STATE}' file naming the "
                             f"latest: {', '.join(p.with_suffix('').name for p in indexes[:8])}; pass one prefix")


def check_data_files(prefix: Path) -> dict[str, int]:
    """The data shards of ``prefix`` and their sizes; a shard missing, or the shards together shorter than
    the tensors the index lists, is a :class:`TruncatedCheckpoint` naming the file."""
    import tensorflow as tf

    shards = sorted(prefix.parent.glob(prefix.name + ".data-*"))
    if not shards:
        raise TruncatedCheckpoint(f"checkpoint {prefix} has an index but no data file ({prefix.name}.data-*)")
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as exc:  # tf.errors.* on a corrupt index
        raise TruncatedCheckpoint(f"cannot read checkpoint {prefix}: {exc}") from None
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    needed = sum(int(np.prod(shapes[k], dtype=np.int64)) * dtypes[k].size for k in shapes
                 if dtypes[k] != tf.string)
    sizes = {p.name: p.stat().st_size for p in shards}
    if sum(sizes.values()) < needed:
        raise TruncatedCheckpoint(
            f"checkpoint data file {shards[0] if len(shards) == 1 else ', '.join(sizes)} is truncated: "
            f"{sum(sizes.values())} bytes, but its index lists {len(shapes)} tensors of {needed} bytes")
    return sizes


@contextlib.contextmanager
def locate(path: str | Path) -> Iterator[Located]:
    """The checkpoint at ``path`` (see the module doc), its files hashed and checked; an archive's extraction
    lasts as long as the context. A path that holds none is a :class:`CheckpointNotFound` saying what was
    looked for and what is there."""
    given = str(path)
    p = Path(path)
    with contextlib.ExitStack() as stack:
        archive_sha256 = None
        if p.is_file() and given.endswith(ARCHIVE_SUFFIXES):
            from ..download import DownloadError, extract_archive

            archive_sha256 = sha256_file(p)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="checkpoint-archive-")))
            try:
                root = extract_archive(p, tmp / "extracted", None, archive_sha256)
            except (DownloadError, tarfile.TarError) as exc:
                raise CheckpointNotFound(f"cannot use archive {p}: {exc}") from None
            prefix, kind, folder = _in_folder(root, search=True), "archive", root
        elif p.is_dir():
            prefix, kind, folder = _in_folder(p, search=False), "directory", p
        else:
            prefix = Path(_strip(given))
            if not Path(str(prefix) + ".index").is_file():
                raise CheckpointNotFound(
                    f"no checkpoint at {given}: expected a checkpoint prefix (PREFIX.index must exist), a training "
                    f"directory, or a .tgz/.tar archive" + (f"; {p.parent} holds: {_listing(p.parent)}"
                                                            if p.parent.is_dir() else ""))
            kind, folder = "prefix", prefix.parent
        sizes = check_data_files(prefix)
        names = [prefix.name + ".index", *sizes] + ([prefix.name + ".meta"] if Path(str(prefix) + ".meta").is_file() else [])
        files = {n: sha256_file(prefix.parent / n) for n in names}
        graphs = tuple(sorted(g.name for g in folder.glob("*.pb*") if g.suffix in (".pb", ".pbtxt")))
        yield Located(prefix, given, kind, folder, files, archive_sha256, graphs)
