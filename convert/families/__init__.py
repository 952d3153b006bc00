"""The MobileNet families, each one module of data (see :mod:`.base`; V3 adds its graph rewrite and one check).

``FAMILIES`` maps a family key (``v1``, ``v2``, ``v3``) to its :class:`~.base.Family`, in key order. Every
module of this package other than ``base`` is a family and defines ``FAMILY``: adding a family is adding
its module (plus its manifest, tests and the factory's graph builder); nothing else in the stages names a family.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Family


def _load() -> dict[str, Family]:
    families = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        family = importlib.import_module(f"{__name__}.{info.name}").FAMILY
        if family.key != info.name:
            raise RuntimeError(f"convert/families/{info.name}.py defines family {family.key!r}; the module name "
                               f"must be the family key")
        families[family.key] = family
    return families


FAMILIES: dict[str, Family] = _load()


def family(key: str) -> Family:
    try:
        return FAMILIES[key]
    except KeyError:
        raise KeyError(f"unknown family {key!r}; valid: {', '.join(FAMILIES)}") from None
