"""The Keras side: keras.applications models built as the legacy weight files expect them.

Family-agnostic: the constructor call itself is the family's (``variant.spec.keras_model``)."""
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


def legacy_weights(layer) -> list:
    """A layer's weights in the legacy HDF5 order: trainable then non-trainable."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)
