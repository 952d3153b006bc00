"""Layer guide -> keras.applications weights in the legacy Keras HDF5 layout, for any family.

Every Keras weight is set by name from its guide record (:func:`port_weight`); the only transform is the
head hook (:func:`head_hook`): slim's 1x1 logits conv ``[1, 1, C, 1001]`` becomes the Keras head (a Dense
kernel ``[C, 1000]`` in V2, a 1x1 conv ``[1, 1, C, 1000]`` in V1/V3) with the background class 0 dropped
from kernel and bias (``variant.label_offset``). The files are written with h5py (:func:`write_legacy_h5`)
in the layout tf-keras' ``save_weights`` produces, which both Keras 3 and tf-keras load through the
keras.applications constructors' ``weights=path``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .timing import timed
from .env import quiet_tf
from .errors import ConversionError
from .fsutil import package_versions, replacing, sha256_file
from .guide import GuideRecord, LayerGuide
from .keras_model import legacy_weights, model_for
from .mapping import head_tf_shape
from .records import ConversionFacts, ValuesUsed

# TensorFlow, Keras and h5py are imported inside the functions that use them: importing this module must not
# import TF (~2 s), so that an up-to-date pipeline run settles its variants without it (tests/test_records.py)

quiet_tf()

# Keras 3 names a DepthwiseConv2D kernel "kernel"; the legacy (Keras 2) files call it "depthwise_kernel".
_LEGACY_WEIGHT_NAMES = {("DepthwiseConv2D", "kernel"): "depthwise_kernel"}


class WeightAssignmentError(ConversionError):
    """The guide and the Keras model do not correspond one to one; lists the leftovers on both sides."""


def head_hook(record: GuideRecord, array: np.ndarray, variant, keras_shape: tuple[int, ...]) -> np.ndarray:
    """slim logits -> the Keras head: checked against :func:`convert.mapping.head_tf_shape` (the one
    statement of the head's shape rule), then the first ``label_offset`` classes (the last axis) dropped
    and the 1x1 spatial axes with them when the Keras head is a Dense layer."""
    if record.leaf not in ("weights", "biases"):
        raise WeightAssignmentError(f"{record.key}: the logits layer takes weights/biases, not {record.leaf}")
    want = head_tf_shape(keras_shape, record.leaf, variant.label_offset)
    if array.shape != want:
        raise WeightAssignmentError(f"{record.key} has shape {list(array.shape)}, expected {list(want)} for the "
                                    f"logits {'1x1 conv kernel' if record.leaf == 'weights' else 'bias'}")
    return np.ascontiguousarray(array[..., variant.label_offset:].reshape(keras_shape))


def port_weight(variable, record: GuideRecord, array: np.ndarray, hook=None, assign: bool = True) -> np.ndarray:
    """Check shapes and assign one guide record to one Keras variable; returns the value assigned.
    ``hook(record, array, keras_shape)`` transforms the value first (the head). With ``assign=False``
    the value is checked and returned but the variable is left as it is (the .h5 writer only needs the
    values; parity loads the written file into the model)."""
    want = tuple(int(d) for d in variable.shape)
    value = hook(record, array, want) if hook is not None else array
    if tuple(value.shape) != want or value.size != int(np.prod(want)):
        raise WeightAssignmentError(f"{record.key} (shape {list(array.shape)}) does not fit Keras weight "
                                    f"{variable.path} (shape {list(want)})")
    if value.dtype != np.float32:
        raise WeightAssignmentError(f"{record.key} is {value.dtype}, Keras weight {variable.path} needs float32")
    if assign:
        variable.assign(value)
    return value


@timed(".h5")
def assign_guide(model, guide: LayerGuide, variant, include_top: bool = True, assign: bool = True) -> dict[str, np.ndarray]:
    """Set every weight of ``model`` by name from ``guide``; returns ``{variable.path: value}``.

    Every Keras weight must be set exactly once and every record used exactly once; a model without top
    may leave exactly the records of layers it does not have unused (the head, and V3's ``conv_2``);
    otherwise :class:`WeightAssignmentError` lists the leftovers. ``assign=False`` checks and returns the
    values without setting the variables.
    """
    index: dict[tuple[str, str], GuideRecord] = {}
    duplicates = []
    for r in guide.records:
        k = (r.layer, r.weight)
        if k in index:
            duplicates.append(f"{k[0]}/{k[1]}")
        index[k] = r
    if duplicates:
        raise WeightAssignmentError(f"guide of {guide.variant} has several records for: {', '.join(duplicates)}")
    used: set[tuple[str, str]] = set()
    values: dict[str, np.ndarray] = {}
    unset, problems = [], []
    layer_names = set()
    for layer in model.layers:
        layer_names.add(layer.name)
        for var in legacy_weights(layer):
            k = (layer.name, var.name)
            record = index.get(k)
            if record is None:
                unset.append(var.path)
                continue
            hook = (lambda r, a, shape: head_hook(r, a, variant, shape)) if record.kind == "head" else None
            try:
                values[var.path] = port_weight(var, record, guide.array_for(record), hook, assign)
            except WeightAssignmentError as exc:
                problems.append(str(exc))
            used.add(k)
    unused = [f"{r.key} (for {r.layer}/{r.weight})" for k, r in index.items()
              if k not in used and (include_top or r.layer in layer_names)]
    if unset or unused or problems:
        parts = []
        if unset:
            parts.append(f"{len(unset)} Keras weight(s) with no guide record: {', '.join(unset)}")
        if unused:
            parts.append(f"{len(unused)} guide record(s) not used by the model: {', '.join(unused)}")
        parts.extend(problems)
        raise WeightAssignmentError(f"cannot set {model.name} from the guide of {guide.variant}: " + "; ".join(parts))
    return values


def _keras_version() -> str:
    import keras
    return keras.__version__


@timed(".h5")
def write_legacy_h5(model, values_by_weight: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write ``values_by_weight`` (``{variable.path: array}``) in the legacy Keras HDF5 weights layout.

    Root attrs ``layer_names`` (all of ``model.layers``, in order), ``backend``, ``keras_version``; one group
    per layer with attr ``weight_names`` (``<layer>/<weight>:0``, legacy order; empty for weightless layers)
    and a dataset at each of those paths. Written to a temp file in the same directory, then renamed.
    """
    import h5py

    path = Path(path)
    string = h5py.string_dtype("ascii")
    pending = dict(values_by_weight)
    with replacing(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        f.attrs.create("layer_names", np.array([l.name for l in model.layers], dtype=object), dtype=string)
        f.attrs.create("backend", "tensorflow", dtype=string)
        f.attrs.create("keras_version", _keras_version(), dtype=string)
        for layer in model.layers:
            g = f.create_group(layer.name, track_order=False)
            weights = legacy_weights(layer)
            names = []
            for var in weights:
                legacy = _LEGACY_WEIGHT_NAMES.get((type(layer).__name__, var.name), var.name)
                names.append(f"{layer.name}/{legacy}:0")
            if names:
                g.attrs.create("weight_names", np.array(names, dtype=object), dtype=string)
            else:
                g.attrs["weight_names"] = np.array([], dtype=np.float64)  # what tf-keras writes
            for name, var in zip(names, weights):
                if var.path not in pending:
                    raise WeightAssignmentError(f"no value for Keras weight {var.path} while writing {path}")
                value = np.ascontiguousarray(pending.pop(var.path))
                if tuple(value.shape) != tuple(var.shape):
                    raise WeightAssignmentError(f"value for {var.path} has shape {list(value.shape)}, "
                                                f"expected {list(var.shape)}")
                g.create_dataset(name, data=value, track_times=False)
        if pending:
            raise WeightAssignmentError(f"values for weights not in {model.name}: {', '.join(sorted(pending))}")
    return path


def convert_guide(guide: LayerGuide, variant, out_dir: str | Path = "weights") -> ConversionFacts:
    """Write the variant's top and no-top ``.h5`` into ``out_dir``; returns what the conversion knows (the
    files' sha256, the values used, provenance, versions). The sidecar, model card and ``SHA256SUMS`` are
    :mod:`convert.cards`' to write, once the variant is done."""
    if guide.variant != variant.name:
        raise WeightAssignmentError(f"the layer guide is for {guide.variant}, not {variant.name}")
    out_dir = Path(out_dir)
    digests = {}
    for include_top, filename in ((True, variant.keras_weights), (False, variant.keras_weights_no_top)):
        if include_top and not variant.has_head:  # a backbone: no-top only
            continue
        model = model_for(variant, include_top)
        values = assign_guide(model, guide, variant, include_top, assign=False)  # the file gets the values
        digests[filename] = sha256_file(write_legacy_h5(model, values, out_dir / filename))
    return ConversionFacts(
        variant=variant.name, family=variant.family_key, stem=variant.stem, alpha=variant.alpha, rows=variant.rows,
        kind=variant.kind, minimalistic=variant.minimalistic, files=digests, provenance=guide.provenance,
        values=ValuesUsed(requested=guide.value_source, mode=guide.counts.mode, by_source=dict(guide.counts.by_source)),
        label_offset=variant.label_offset, classes=variant.classes - variant.label_offset, counts=guide.counts,
        versions=package_versions())
