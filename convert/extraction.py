"""One way to get at an archive's members: extract it into a temporary folder, or use the cache's.

``extracted(variant, archive)`` unpacks a ``.tgz`` with the project's safe extraction
(:func:`convert.download.extract_archive`: tarfile's ``data`` filter, members checked against the
family's layout) into a temporary folder that is removed on exit. ``cached_extraction`` gives the
download cache's complete extraction of a variant, or, when only the verified archive is cached (an
up-to-date ``convert run`` never extracts), extracts that archive the same way.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

from .download import COMPLETE_MARKER, DownloadError, archive_path, extract_archive, extracted_dir
from .env import default_cache
from .errors import ConversionError, UserError
from .guide import Provenance
from .manifest import Variant


@contextlib.contextmanager
def extracted(variant: Variant, archive: str | Path, sha256: str | None = None) -> Iterator[Path]:
    """Yield the root of ``archive`` extracted into a temporary folder (deleted afterwards).

    A missing file is a FileNotFoundError; an archive that cannot be extracted, or lacks the layout's
    checkpoint, a ConversionError naming it."""
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    with tempfile.TemporaryDirectory(prefix=f"extract_{variant.name}_") as tmp:
        try:
            root = extract_archive(archive, Path(tmp) / "archive", variant, sha256)
        except DownloadError as exc:
            raise ConversionError(f"cannot use archive {archive}: {exc}") from None
        yield root


@contextlib.contextmanager
def cached_extraction(variant: Variant, cache_dir: str | Path) -> Iterator[Path]:
    """Yield the cache's extraction of ``variant`` when it is complete, else the cached archive
    extracted into a temporary folder; a FileNotFoundError when the cache holds neither."""
    root, archive = extracted_dir(cache_dir, variant), archive_path(cache_dir, variant)
    if (root / COMPLETE_MARKER).is_file():
        yield root
        return
    if not archive.is_file():
        raise FileNotFoundError(f"no archive of {variant.name} in cache {cache_dir} (neither {root} nor "
                                f"{archive}); run `python -m convert download {variant.name}` or pass --archive TGZ")
    with extracted(variant, archive) as root:
        yield root


def archive_root(variant: Variant, stack: contextlib.ExitStack, archive: str | Path | None = None,
                 cache: str | Path | None = None, provenance: Provenance | None = None,
                 sha256: str | None = None) -> tuple[Path, str | None]:
    """The extracted archive of ``variant`` for a script that needs its members (the reference graph, a
    quantized archive's graph and ``.tflite``), and where that archive is: ``archive``, else the download
    cache (its extraction, or its verified archive extracted here), else the archive or checkpoint folder
    the weights were made from (``provenance``, of the layer guide or the sidecar). Temporary extractions
    last as long as ``stack``; finding none is a :class:`UserError` naming what was tried. With ``sha256``,
    the archive found must be that one (every extraction's marker records its archive's sha256)."""
    root, location = _archive_root(variant, stack, archive, cache, provenance)
    marker = root / COMPLETE_MARKER
    if sha256 and marker.is_file() and (got := marker.read_text().strip()) != sha256:
        raise UserError(f"the archive of {variant.name} found at {location} (sha256 {got}) is not the one "
                        f"required (sha256 {sha256}); pass that archive with --archive")
    return root, location


def _archive_root(variant: Variant, stack: contextlib.ExitStack, archive: str | Path | None,
                  cache: str | Path | None, provenance: Provenance | None) -> tuple[Path, str | None]:
    if archive is None:
        cache = Path(cache) if cache else default_cache()
        try:
            root = stack.enter_context(cached_extraction(variant, cache))
            return root, (provenance and (provenance.url or provenance.archive))
        except FileNotFoundError:
            pass
        if provenance and provenance.archive and Path(provenance.archive).is_file():
            archive = Path(provenance.archive)
        elif provenance and provenance.checkpoint_role == "given" and Path(provenance.checkpoint + ".index").is_file():
            return Path(provenance.checkpoint).parent, provenance.checkpoint  # converted from a checkpoint prefix
        else:
            raise UserError(f"no archive of {variant.name}: not in cache {cache} and the weights do not name an "
                            f"existing one; pass --archive TGZ (or run `python -m convert download {variant.name}`)")
    return stack.enter_context(extracted(variant, archive)), str(archive)
