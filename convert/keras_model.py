"""The Keras side: keras.applications models built as the legacy weight files expect them.

Family-agnostic: the constructor call itself is the family's (``variant.family.keras_model``).

Building a keras.applications model costs about a second (mostly creating and initialising its
variables), more than any other step of a conversion. A model's layers and weights do not depend on the
input rows, so :func:`model_for` builds one model with top per *architecture* (the variant without its
rows, :func:`architecture`) on an input of any size, ``(None, None, 3)``, and keeps it (and the no-top
model, a view of its layers) for every variant of that architecture: the expected variable set
(extract), the .h5 writer (load) and parity, which loads the written top file into the model with
``model.load_weights`` (what the constructors do with ``weights=path``) and reads the no-top file back
against the view. Asked for another architecture, it drops them first (never two architectures' models
alive at once); :func:`release` drops them at once. The pipeline hands a worker the variants of one
architecture one after another, so that a build serves several of them. A checkpoint's conversion
(``convert checkpoint``) has one variant: its model is built at its input size and, for V3, without the
built-in rescaling (slim's [-1, 1]), since it also becomes the conversion's ``NAME.keras``.

The models are built with ``classifier_activation=None``: the head's layer names and weights are those
of the default softmax model (the activation is not stored in a weights file), and parity needs logits.
"""
from __future__ import annotations

import dataclasses

from .env import quiet_tf
from .timing import timed

quiet_tf()

INPUT_LAYER = "input_1"  # the input layer name in the legacy (Keras 2) weight files

# The variant fields a family's Keras constructor reads besides ``rows`` (tested against every family):
# variants equal in these have models with the same layers and weights.
ARCHITECTURE_FIELDS = ("alpha", "kind", "minimalistic", "classes", "label_offset")


def architecture(variant) -> tuple:
    """What the variant's Keras model (its layers and weights) depends on: the keras.applications family (a
    quantized family's float sibling: its float .h5 files are that constructor's) and every field but the rows."""
    keras_family = variant.family.float_family or variant.family_key
    return (("family", keras_family), *((field, getattr(variant, field)) for field in ARCHITECTURE_FIELDS))


@timed("keras build")
def build(variant, include_top: bool, any_rows: bool = False, **kwargs):
    """The variant's keras.applications model (random weights unless ``weights=`` is given), with the
    input layer named as in the legacy files and layer names independent of earlier builds.

    With ``any_rows`` the input is ``(None, None, 3)``: the model serves every variant of its
    architecture. The constructors refuse ``input_shape=(None, None, 3)`` with a top (V1 and V2), but take
    an ``input_tensor`` of that shape when ``input_shape`` is None (they then only name the model after
    their default size)."""
    import keras  # here, not at import time: the pipeline's parent process settles fresh variants without TF

    rows, cols = (None, None) if any_rows else variant.input_size
    # Keras numbers auto-named layers per session (``global_average_pooling2d``, ``..._1``, ...); the names
    # are written into the .h5 files, so each build starts a fresh session, as in a fresh process
    keras.backend.clear_session(free_memory=False)  # collecting garbage is the caller's (the pipeline's) job
    inputs = keras.Input(shape=(rows, cols, 3), name=INPUT_LAYER)
    if any_rows:
        kwargs["input_shape"] = None
    return variant.family.keras_model(variant, include_top, input_tensor=inputs, **kwargs)


@dataclasses.dataclass
class _Shared:
    architecture: tuple | None = None
    models: dict = dataclasses.field(default_factory=dict)  # include_top -> model


_shared = _Shared()  # the models of the architecture being converted (see module doc)


def model_for(variant, include_top: bool):
    """The model of the variant's architecture (logits head when ``include_top``) on an input of any size
    (:func:`builds_any_size`; else of the variant's size), built on first use and shared by every stage and
    every variant of that architecture until another architecture is asked for, or :func:`release`. Its
    weights are whatever the last stage put there: a stage that needs particular values sets all of them (the
    .h5 writer from the guide, parity and ``NAME.keras`` from the written file)."""
    any_size = builds_any_size(variant)
    key = (architecture(variant) + (() if any_size else (("input_size", variant.input_size),))
           + (("input_range", input_range(variant)),))
    if key != _shared.architecture:
        release()  # another architecture's models: never two alive at once
        _shared.architecture = key
    if include_top not in _shared.models:
        slim_range = {"include_preprocessing": False} if takes_slim_range(variant) else {}
        _shared.models[include_top] = (build(variant, True, any_rows=any_size, classifier_activation=None, **slim_range)
                                       if include_top else features_model(model_for(variant, True)))
    return _shared.models[include_top]


def takes_slim_range(variant) -> bool:
    """Whether :func:`model_for`'s model takes slim's [-1, 1] where the family's default model takes another
    range (V3's built-in rescaling of [0, 255], ``include_preprocessing``): a checkpoint's, whose model becomes its
    ``NAME.keras`` (:mod:`convert.user.outputs`). The weights are the same either way (the rescaling has none)."""
    return variant.origin == "checkpoint" and "include_preprocessing" in variant.family.keras_app.defaults


def input_range(variant) -> tuple[float, float]:
    """The input range of :func:`model_for`'s model for ``variant`` (parity maps slim's [-1, 1] onto it)."""
    return (-1.0, 1.0) if takes_slim_range(variant) else tuple(variant.family.keras_input_range)


def builds_any_size(variant) -> bool:
    """Whether :func:`model_for` builds the any-size model for ``variant``: a catalogue variant (the pipeline
    converts the sizes of an architecture one after another) whose size the any-size model computes as the
    own-size one does. keras.applications pads a stride-2 conv for the size it is built for (V2/V3's
    ``correct_pad``: (0, 1) on an even map, (1, 1) on an odd one, even assumed when the size is unknown), so a size
    whose 5 stride-2 halvings meet an odd map (not a multiple of 32) gets a model of its own size. A checkpoint's
    conversion is one variant: its model is built at its input size, the input its ``NAME.keras`` and
    ``NAME.tflite`` take."""
    rows, cols = variant.input_size
    return variant.origin == "catalogue" and rows % 32 == 0 and cols % 32 == 0


def features_model(top):
    """The no-top model as a view of the top model: its layers up to the head, sharing their variables
    (no second build). keras.applications' heads start with the last GlobalAveragePooling2D (V3's
    squeeze-excite blocks have earlier ones); its input is what ``include_top=False`` outputs. The view's
    layers, their order and weights are those of the constructor's ``include_top=False`` model (tested
    for every family), so the no-top .h5 written from it is the same file."""
    import keras

    pools = [layer for layer in top.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if not pools:
        raise RuntimeError(f"{top.name} has no GlobalAveragePooling2D layer: cannot find where its head starts")
    return keras.Model(top.inputs, pools[-1].input, name=top.name)


def release() -> None:
    """Drop the shared models (the caller then clears the Keras session)."""
    _shared.models.clear()
    _shared.architecture = None


def legacy_weights(layer) -> list:
    """A layer's weights in the legacy HDF5 order: trainable then non-trainable."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)
