"""The one choice of an extracted archive's reference graph, and of the checkpoint it is fed.

The first of the layout's reference graphs that is an inference graph (:func:`convert.parity.archive_graph`),
fed slim's evaluation values from the EMA checkpoint; or, when the archive has no inference graph, its
frozen graph (values inside, nothing fed). Parity's ``slim_reference`` and ``convert evaluate``'s slim
scorer both start here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .archive import find_checkpoint, frozen_graph
from .families.base import CheckpointFile
from .manifest import Variant
from .parity import archive_graph, load_graph_def


@dataclass(frozen=True)
class ReferenceChoice:
    graph_def: object  # a tf GraphDef
    kind: str  # eval_pbtxt | ckpt_meta | graph_pb | frozen_pb
    path: Path
    checkpoint: Path | None  # the checkpoint prefix to feed slim's values from; None for the frozen graph
    checkpoint_file: CheckpointFile | None


def choose_reference(model_dir: str | Path, variant: Variant,
                     inference_graph: Callable = archive_graph) -> ReferenceChoice:
    """The reference graph of the extraction ``model_dir``. ``inference_graph(model_dir, variant)`` returns
    ``(graph_def, kind, path)`` or ``(None, None, None)`` (default: parity's; a caller may memoise it).
    Raises FileNotFoundError when there is no reference graph, or no checkpoint to feed it."""
    graph_def, kind, path = inference_graph(model_dir, variant)
    if graph_def is not None:
        prefix, cf = find_checkpoint(model_dir, variant, "ema")
        return ReferenceChoice(graph_def, kind, path, prefix, cf)
    frozen = frozen_graph(model_dir, variant)
    if not frozen.exists():
        raise FileNotFoundError(f"{model_dir} holds no reference graph of {variant.name}: none of "
                                f"{', '.join(variant.family.layout.reference_graphs)} is an inference graph "
                                f"and {frozen.name} is missing")
    return ReferenceChoice(load_graph_def(frozen), "frozen_pb", frozen, None, None)
