"""The MobileNet families, each one module of data and small functions (see :mod:`.base`).

``FAMILIES`` maps a family key (``v1``, ``v2``, ``v3``) to its :class:`~.base.Family`. A family is
registered by listing its module in ``_MODULES``; nothing else in the stages names a family.
"""
from __future__ import annotations

import importlib

from .base import Family

_MODULES = ("v1", "v2", "v3")


def _load() -> dict[str, Family]:
    families = {}
    for key in _MODULES:
        family = importlib.import_module(f"{__name__}.{key}").FAMILY
        assert family.key == key, (key, family.key)
        families[key] = family
    return families


FAMILIES: dict[str, Family] = _load()


def family(key: str) -> Family:
    try:
        return FAMILIES[key]
    except KeyError:
        raise KeyError(f"unknown family {key!r}; valid: {', '.join(FAMILIES)}") from None
