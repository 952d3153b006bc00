"""Archive checks and safe, atomic extraction (regular files and directories only, the ``data`` filter)."""
from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from ..archive import checkpoint_members, member_matches
from ..fsutil import sha256_file
from ..manifest import Variant
from ..timing import timed
from .records import DownloadError

COMPLETE_MARKER = ".complete"


def _member_name(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _refuse_unsafe(m: tarfile.TarInfo, archive: str | os.PathLike) -> None:
    """Raise DownloadError for an absolute, ``..``, link, device or other special member."""
    name = _member_name(m.name)
    parts = name.replace("\\", "/").split("/")
    if name.startswith("/") or m.name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        problem = "has an absolute path"
    elif ".." in parts:
        problem = "escapes the extraction directory with '..'"
    elif m.issym() or m.islnk():
        problem = f"is a {'symbolic' if m.issym() else 'hard'} link to {m.linkname!r}"
    elif not (m.isfile() or m.isdir()):
        problem = "is a device, FIFO or other special file"
    else:
        return
    raise DownloadError(f"{Path(archive).name}: refusing to extract member {m.name!r}: it {problem}; "
                        f"only regular files and directories inside the archive are allowed")


def verify_members(members: Iterable[tarfile.TarInfo], variant: Variant | None, archive: str | os.PathLike) -> list[str]:
    """Refuse unsafe members (absolute, ``..``, links, devices) and require one of the layout's checkpoints
    (its ``.index`` and ``.data-*``; any ``*.ckpt`` without a variant); returns the member names."""
    members = list(members)
    names = [_member_name(m.name) for m in members]
    for m in members:
        _refuse_unsafe(m, archive)
    files = {n for m, n in zip(members, names) if m.isfile()}
    wanted = checkpoint_members(variant) if variant is not None else [(None, None)]
    for index, data in wanted:
        if index is None:  # any checkpoint: an .index and a .data-* of its prefix
            ok = any(n.endswith(".index") and any(m.startswith(n[: -len(".index")] + ".data-") for m in files)
                     for n in files)
        else:
            # the .index (a pattern for a discovered prefix) and a .data-* file of the same prefix
            ok = any(member_matches(n, index) and any(m.startswith(n[: -len(".index")] + ".data-") for m in files)
                     for n in files)
        if ok:
            return names
    want = " or ".join(f"{i} and {d}*" for i, d in wanted) if variant is not None else "PREFIX.index and PREFIX.data-*"
    raise DownloadError(f"{Path(archive).name} lacks the checkpoint ({want}); it contains: "
                        f"{', '.join(names) or 'nothing'}")


_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


@contextlib.contextmanager
def _read_tgz(tgz: Path) -> Iterator[tuple[tarfile.TarFile, gzip.GzipFile]]:
    """The archive as a tar read through a gzip stream of our own: after the tar's end, reading that
    stream on (:func:`_read_to_trailer`) reaches the gzip trailer, so gzip checks its CRC and length."""
    with gzip.open(tgz, "rb") as gz, tarfile.open(fileobj=gz, mode="r:") as tar:
        yield tar, gz


def _read_to_trailer(gz: gzip.GzipFile) -> None:
    while gz.read(1 << 20):
        pass


def check_archive(tgz: str | os.PathLike, variant: Variant | None = None) -> list[str]:
    """Read the whole archive and apply ``verify_members``; raises DownloadError."""
    tgz = Path(tgz)
    opened = False
    try:
        with _read_tgz(tgz) as (tar, gz):
            opened = True
            members = tar.getmembers()
            _read_to_trailer(gz)
    except _READ_ERRORS as exc:
        if not opened:
            raise DownloadError(f"{tgz.name} is not a readable .tgz (corrupt or truncated gzip: {exc}); "
                                f"delete it and download again") from None
        raise DownloadError(f"{tgz.name} is corrupt or truncated ({exc}); delete it and download again") from None
    return verify_members(members, variant, tgz)


@timed("archive extraction")
def extract_archive(tgz: str | os.PathLike, dest_dir: str | os.PathLike, variant: Variant | None = None,
                    sha256: str | None = None) -> Path:
    """Safely extract ``tgz`` into ``dest_dir`` (temp dir + rename). A complete extraction, whose
    ``.complete`` marker holds the archive's sha256, is kept as is."""
    tgz, dest = Path(tgz), Path(dest_dir)
    sha256 = sha256 or sha256_file(tgz)
    marker = dest / COMPLETE_MARKER
    if marker.is_file() and marker.read_text().strip() == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the extraction is an ordinary directory
        # one pass over the gzip stream: each member is checked, then extracted as its header is read
        # (forward reads only), then the rest is read so gzip checks its CRC and length
        members = []
        try:
            with _read_tgz(tgz) as (tar, gz):
                for m in tar:
                    _refuse_unsafe(m, tgz)
                    tar.extract(m, tmp, filter="data")
                    members.append(m)
                _read_to_trailer(gz)
        except _READ_ERRORS as exc:
            raise DownloadError(f"{tgz.name}: extraction failed ({exc}); the archive is corrupt or "
                                f"truncated; delete it and download again") from None
        verify_members(members, variant, tgz)  # the layout's checkpoint is there
        (tmp / COMPLETE_MARKER).write_text(sha256 + "\n")
        if dest.exists():
            shutil.rmtree(dest)  # stale or incomplete earlier extraction
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
