"""Process-wide settings every stage shares: where the project's files are (a checkout or an installed
package), the one default cache, TF logging.

Two layouts:

- **a checkout** (``make setup``'s editable install included): the package's parent folder holds
  ``pyproject.toml`` and ``manifests/``. The manifests are read there; the download cache, the factory's
  archive cache and the trust-on-first-use lock stay in the checkout (``cache/``, ``cache/fixtures/``,
  ``manifests/checksums.lock.json``), whatever the current directory;
- **an installed package** (``pip install .``): the manifests are the wheel's copy, ``convert/manifests/``;
  the cache and the lock go to the user's cache folder, ``$XDG_CACHE_HOME/mobilenet-tf1-to-keras/`` (default
  ``~/.cache/mobilenet-tf1-to-keras/``): ``cache/``, ``cache/fixtures/``, ``checksums.lock.json``; never into
  site-packages.

Either way the outputs (``work/``, ``weights/``, ``results/``) default to the current directory, and
``MOBILENET_CACHE``, ``MOBILENET_FIXTURES`` and ``MOBILENET_LOCK`` override the defaults.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent  # the checkout in a checkout; site-packages when installed
CACHE_ENV = "MOBILENET_CACHE"
APP_NAME = "mobilenet-tf1-to-keras"  # the distribution's name: the installed package's cache folder


def is_checkout(root: Path) -> bool:
    """Whether ``root`` (the package's parent folder) is the project's checkout, not site-packages."""
    return (root / "pyproject.toml").is_file() and (root / "manifests").is_dir()


CHECKOUT: Path | None = PROJECT_ROOT if is_checkout(PROJECT_ROOT) else None


def env_setting(name: str) -> str | None:
    """An environment setting of the project (``MOBILENET_*``): its value, or None when it is unset or empty
    (``MOBILENET_REFERENCE=`` means "not set", never "the current directory")."""
    value = os.environ.get(name, "").strip()
    return value or None


def state_root() -> Path:
    """The folder of the project's local state (caches, the checksum lock): the checkout, else
    ``$XDG_CACHE_HOME/mobilenet-tf1-to-keras`` (``~/.cache/…`` when unset or not absolute, as the XDG spec says)."""
    if CHECKOUT is not None:
        return CHECKOUT
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / APP_NAME


def manifest_dir() -> Path:
    """The family manifests: the checkout's ``manifests/`` (the source of truth), else the installed copy."""
    return CHECKOUT / "manifests" if CHECKOUT is not None else PACKAGE_DIR / "manifests"


def default_cache() -> Path:
    """The download cache every command defaults to, whatever the current directory:
    ``$MOBILENET_CACHE``, else ``<state root>/cache`` (the checkout's ``cache/`` in a checkout)."""
    return Path(env_setting(CACHE_ENV) or state_root() / "cache")


def cache_help() -> str:
    """The default cache as the commands' --help states it (the path of this install)."""
    return f"${CACHE_ENV}, else {state_root() / 'cache'}"


def quiet_tf() -> None:
    """Silence TensorFlow's C++ log and its Python deprecation notices (call before TF is imported).

    TF's one-line oneDNN banner at import is printed before its logging starts and cannot be turned off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
