"""A user checkpoint's outputs beyond the ``.h5`` files, made from the conversion's own Keras model
(:func:`convert.keras_model.model_for`: the keras.applications constructor called with the checkpoint's alpha,
input size and classes, ``classifier_activation=None``, built once for the layer guide):

* ``NAME.keras``: that model with the written top ``.h5`` loaded (``model.load_weights``, the constructors'
  ``weights=path``, which sets every weight or fails: the proof's load, :func:`convert.user.prove.keras_run`)
  and a ``Softmax`` layer ``probabilities`` after its logits layer ``predictions``, saved so that
  ``keras.saving.load_model`` needs no constructor arguments. Input float in [-1, 1] as slim's (V3 built with
  ``include_preprocessing=False``), output the probabilities over the checkpoint's classes after the label
  offset; ``model.get_layer("predictions").output`` gives the logits.
  A backbone's: the no-top model, ``NAME_no_top.h5`` loaded, with a ``GlobalAveragePooling2D`` ``pooled``
  after it (what ``pooling="avg"`` adds): its pooled features;
* ``NAME.tflite``: the same model as a float TFLite file (batch 1), from a frozen trace of the model
  (``Model.stateless_call`` on constants inside a ``tf.function``) converted by ``tf.compat.v1.lite.
  TFLiteConverter``, as the uint8 ``.tflite`` is: public APIs.
"""
from __future__ import annotations

from pathlib import Path

from ..fsutil import replacing
from ..timing import timed


def whole_model(variant, loaded):
    """``NAME.keras``'s model (module doc): no second build and no second load, ``loaded.model`` (the
    :class:`convert.user.prove.KerasRun` of the written files: the conversion's model with the top file loaded;
    a backbone's no-top model with the no-top file) with the output layer added."""
    import keras

    base = loaded.model
    if variant.has_head:
        out = keras.layers.Softmax(name="probabilities")(base.outputs[0])
    else:
        out = keras.layers.GlobalAveragePooling2D(name="pooled")(base.outputs[0])
    return keras.Model(base.inputs[0], out, name=variant.name)


@timed("keras save")
def save_model(model, path: Path) -> Path:
    with replacing(path, suffix=".keras") as tmp:
        model.save(tmp)
    return path


@timed("tflite conversion")
def float_tflite(model) -> bytes:
    """``model`` as a float ``.tflite`` (bytes), input [1, rows, cols, 3]: the uint8 path's frozen trace and
    converter (:func:`convert.quant.tflite.frozen_converter`) with its float defaults."""
    from ..quant.tflite import frozen_converter

    converter, _ = frozen_converter(model, [1, *[int(d) for d in model.inputs[0].shape[1:]]])
    return converter.convert()
