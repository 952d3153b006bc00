"""Process-wide settings every stage shares: the project root, the one default cache, TF logging."""
from __future__ import annotations

import logging
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_ENV = "MOBILENET_CACHE"


def env_setting(name: str) -> str | None:
    """An environment setting of the project (``MOBILENET_*``): its value, or None when it is unset or empty
    (``MOBILENET_REFERENCE=`` means "not set", never "the current directory")."""
    value = os.environ.get(name, "").strip()
    return value or None


def default_cache() -> Path:
    """The download cache every command defaults to, whatever the current directory:
    ``$MOBILENET_CACHE``, else ``<project>/cache``."""
    return Path(env_setting(CACHE_ENV) or PROJECT_ROOT / "cache")


def quiet_tf() -> None:
    """Silence TensorFlow's C++ log and its Python deprecation notices (call before TF is imported).

    TF's one-line oneDNN banner at import is printed before its logging starts and cannot be turned off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
