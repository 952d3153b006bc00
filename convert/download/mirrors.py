"""Where an archive comes from: the manifest URL, or a mirror (http(s)://, file:// or a directory)."""
from __future__ import annotations

import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..env import env_setting
from ..errors import UserError
from ..manifest import Variant

MIRROR_ENV = "MOBILENET_MIRROR"


def normalize_mirror(mirror: str | os.PathLike | None) -> str | None:
    """Validate a mirror (``http(s)://…``, ``file://…`` or a local directory) and return it as a URL."""
    if mirror is None or str(mirror).strip() == "":
        return None
    text = str(mirror).strip()
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        if not urllib.parse.urlsplit(text).netloc:
            raise UserError(f"mirror {text!r} has no host; expected e.g. https://host/path/")
        return text.rstrip("/")
    if scheme == "file":
        directory = file_url_path(text)
    elif len(scheme) > 1:  # one letter would be a Windows drive
        raise UserError(f"mirror {text!r} has unsupported scheme {scheme!r}; use http(s)://, file:// or a directory")
    else:
        directory = Path(text).expanduser()
    if not directory.is_dir():
        raise UserError(f"mirror {text!r} is not an existing directory; use http(s)://, file:// or a directory")
    return directory.resolve().as_uri()


def file_url_path(url: str) -> Path:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise UserError(f"file URL {url!r} names host {parts.netloc!r}; only local file:// URLs are supported")
    return Path(urllib.request.url2pathname(parts.path))


def mirror_base(mirror: str | None = None) -> str | None:
    """The mirror in effect as a URL: the argument (``""``: none), else ``$MOBILENET_MIRROR``, else None."""
    return normalize_mirror(mirror if mirror is not None else env_setting(MIRROR_ENV))


def source_url(variant: Variant, mirror: str | None = None) -> str:
    """The manifest URL, or the mirror (argument, else ``$MOBILENET_MIRROR``) + the archive file name."""
    base = mirror_base(mirror)
    return f"{base}/{variant.archive_filename}" if base else variant.url


@dataclass(frozen=True)
class Source:
    """One URL to try for an archive, with the pins a file it serves must match."""

    url: str
    sha256s: frozenset[str]  # accepted sha256 pins (empty: unpinned)
    size: int | None  # the pinned size, when every accepted pin gives the same one


def sources(variant: Variant, mirror: str | None = None) -> list[Source]:
    """The URLs to try, in order: the mirror alone (which may hold any release of the file: every pin is
    accepted when each release is pinned, else the lock checks it), else the manifest's primary URL, then
    each alternative, each with its own pin."""
    base = mirror_base(mirror)
    pins = variant.urls
    if base:
        if not all(sha for _, sha, _ in pins):  # it may be the unpinned release: the lock checks it
            return [Source(f"{base}/{variant.archive_filename}", frozenset(), None)]
        sizes = {size for _, _, size in pins}
        size = sizes.pop() if len(sizes) == 1 else None
        return [Source(f"{base}/{variant.archive_filename}", frozenset(sha for _, sha, _ in pins), size)]
    return [Source(url, frozenset((sha,)) if sha else frozenset(), size if sha else None) for url, sha, size in pins]
