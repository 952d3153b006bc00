"""The converter's own reference graphs: slim's TF1 MobileNet inference graphs (V1, V2, V3 large/small,
minimalistic) of any :class:`Architecture` (depth multiplier, input size, class count, scope), written from
slim's definitions (``nets/mobilenet_v1.py``, ``nets/mobilenet/{mobilenet,mobilenet_v2,mobilenet_v3,
conv_blocks}.py``) with slim's node names.

Parity needs a TF1 graph that is not the Keras model: this package is one when the user gives no graph. It
states its own constants (scope names, ``make_divisible``, V1's ``depth``, the squeeze-excite gate
``0.16667``, hard-swish's ``1/6``, the block tables) and imports nothing from the Keras-side family data
(``convert.families``, ``convert.keras_model``, ``convert.mapping``) nor the archive factory, which builds its
archives' graphs from this package (``tests/test_structure.py`` checks both).
"""
from __future__ import annotations

from .arch import Architecture
from .build import ReferenceGraph, build_reference, forward, graph, inference_batch_norm, layers, model_variables
from .ops import Ops
from .slim import SE_GATE, Block, Layer

__all__ = ["Architecture", "Block", "Layer", "Ops", "ReferenceGraph", "SE_GATE", "build_reference", "forward",
           "graph", "inference_batch_norm", "layers", "model_variables"]
