"""The factory's graph builders (catalogue variants over :mod:`convert.reference`), keyed by family key: ``FACTORIES[key]`` is that family's
:class:`~convert.factory.spec.FactorySpec` (layers, TF1 inference graph, checkpoint recipes); the
quantization-aware families (``v1-quant``, ...) reuse their float sibling's graph over :mod:`.quant`'s ops."""
from __future__ import annotations

from ..spec import FactorySpec
from . import quant, v1, v2, v3

FACTORIES: dict[str, FactorySpec] = {"v1": v1.FACTORY, "v2": v2.FACTORY, "v3": v3.FACTORY, **quant.QUANT_FACTORIES}


def factory_of(key: str) -> FactorySpec:
    try:
        return FACTORIES[key]
    except KeyError:
        raise KeyError(f"the archive factory has no graph builder for family {key!r}; valid: "
                       f"{', '.join(FACTORIES)}") from None
