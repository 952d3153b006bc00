"""The MobileNet families, each one module of data (see :mod:`.base`; V3 adds its graph rewrite and one check).

``FAMILIES`` maps a family key (``v1``, ``v2``, ``v3``, ``v1-quant``, ``v2-quant``, ``v3-quant``) to its :class:`~.base.Family`, in key order. Every
module of this package other than ``base`` is a family and defines ``FAMILY`` (the module's name is the key
with ``-`` written ``_``): adding a family is adding
its module (plus its manifest, tests and the factory's graph builder); nothing else in the stages names a family.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Family


def module_key(module_name: str) -> str:
    """The family key a module defines: its name with ``_`` read as ``-`` (``v2_quant`` -> ``v2-quant``)."""
    return module_name.replace("_", "-")


def _load() -> dict[str, Family]:
    families = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        family = importlib.import_module(f"{__name__}.{info.name}").FAMILY
        if family.key != module_key(info.name):
            raise RuntimeError(f"convert/families/{info.name}.py defines family {family.key!r}; the module name "
                               f"must be the family key with '-' written '_' ({module_key(info.name)!r})")
        families[family.key] = family
    # the float families first, then the quantization-aware ones (each after its float sibling's order)
    return dict(sorted(families.items(), key=lambda kv: kv[1].float_family is not None))


FAMILIES: dict[str, Family] = _load()


def family(key: str) -> Family:
    try:
        return FAMILIES[key]
    except KeyError:
        raise KeyError(f"unknown family {key!r}; valid: {', '.join(FAMILIES)}") from None
