"""The Keras side: keras.applications models built as the legacy weight files expect them.

Family-agnostic: the constructor call itself is the family's (``variant.spec.keras_model``).

Building a keras.applications model costs about a second (mostly creating and initialising its
variables), more than any other step of a conversion, so one conversion builds one model, with top:
:func:`model_for` keeps it (and the no-top model, a view of its layers) for the variant being converted,
and every stage shares them: the expected variable set (extract), the .h5 writer (load) and parity, which
loads the written top file into the model with ``model.load_weights`` (what the constructors do with
``weights=path``) and reads the no-top file back against the view. :func:`release` drops them when the
variant is done.

The models are built with ``classifier_activation=None``: the head's layer names and weights are those
of the default softmax model (the activation is not stored in a weights file), and parity needs logits.
"""
from __future__ import annotations

import contextlib

from .timing import timed
from .env import quiet_tf

quiet_tf()

INPUT_LAYER = "input_1"  # the input layer name in the legacy (Keras 2) weight files


@contextlib.contextmanager
def fresh_layer_names():
    """Build with Keras' per-prefix layer-name counters as in a fresh process, then restore the caller's.

    Keras numbers auto-named layers per session (``global_average_pooling2d``, ``..._1``, ...); the names
    are written into the .h5 files, which must not depend on what was built before in the same process.
    """
    from keras.src.backend.common import global_state

    saved = global_state.get_global_attribute("object_name_uids")
    global_state.set_global_attribute("object_name_uids", None)  # get_uid starts a new counter dict
    try:
        yield
    finally:
        global_state.set_global_attribute("object_name_uids", saved)


@timed("keras build")
def build(variant, include_top: bool, **kwargs):
    """The variant's keras.applications model (random weights unless ``weights=`` is given), with the
    input layer named as in the legacy files and layer names independent of earlier builds."""
    import keras

    shape = (variant.rows, variant.rows, 3)
    with fresh_layer_names():
        return variant.spec.keras_model(variant, include_top, input_tensor=keras.Input(shape=shape, name=INPUT_LAYER),
                                        **kwargs)


_models: dict[tuple[object, bool], object] = {}  # the models of the variant being converted (see module doc)


def model_for(variant, include_top: bool):
    """The variant's model (logits head when ``include_top``), built on first use and shared by every
    stage until :func:`release`. Its weights are whatever the last stage put there: a stage that needs
    particular values sets all of them (the .h5 writer from the guide, parity from the written file)."""
    key = (variant, include_top)  # the whole (frozen) variant: the same name with other fields is another model
    if key not in _models:
        if any(other != variant for other, _ in _models):
            release()  # another variant's models: never two variants' models alive at once
        _models[key] = (build(variant, True, classifier_activation=None) if include_top
                        else features_model(model_for(variant, True)))
    return _models[key]


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
    _models.clear()


def legacy_weights(layer) -> list:
    """A layer's weights in the legacy HDF5 order: trainable then non-trainable."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)
