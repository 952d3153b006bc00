"""A user checkpoint's outputs beyond the ``.h5`` files, built from the written top (or no-top) ``.h5``:

* ``NAME.keras``: the whole keras.applications model (the constructor called with the checkpoint's alpha,
  input size and classes, the top ``.h5`` loaded), saved so that ``keras.saving.load_model`` needs no
  constructor arguments. Input float in [-1, 1] as slim's (V3 built with ``include_preprocessing=False``),
  output the probabilities over the checkpoint's classes after the label offset. A backbone's: the no-top
  model with ``pooling="avg"`` (its pooled features);
* ``NAME.tflite``: the same model as a float TFLite file (batch 1), from a frozen trace of the model
  (``Model.stateless_call`` on constants inside a ``tf.function``; ``tf.lite.TFLiteConverter``'s concrete
  function route: public APIs).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConversionError
from ..fsutil import replacing
from ..timing import timed


def _extra(variant) -> dict:
    return {"include_preprocessing": False} if "include_preprocessing" in variant.family.keras_app.defaults else {}


@timed("whole model build")
def whole_model(variant, weights_dir: Path):
    """The user's model as keras.applications builds it, weights from the written ``.h5`` (the constructor's
    ``weights=path``, which sets every weight or fails)."""
    import keras

    keras.backend.clear_session(free_memory=False)
    rows, cols = variant.input_size
    if variant.has_head:
        return variant.family.keras_model(variant, True, input_shape=(rows, cols, 3),
                                          weights=str(Path(weights_dir) / variant.keras_weights),
                                          classifier_activation="softmax", **_extra(variant))
    return variant.family.keras_model(variant, False, input_shape=(rows, cols, 3), pooling="avg",
                                      weights=str(Path(weights_dir) / variant.keras_weights_no_top), **_extra(variant))


@timed("keras save")
def save_model(model, path: Path) -> Path:
    with replacing(path, suffix=".keras") as tmp:
        model.save(tmp)
    return path


@timed("tflite conversion")
def float_tflite(model) -> bytes:
    """``model`` as a float ``.tflite`` (bytes), input [1, rows, cols, 3]."""
    import tensorflow as tf

    trainable = [v.numpy() for v in model.trainable_variables]
    fixed = [v.numpy() for v in model.non_trainable_variables]

    @tf.function
    def forward(x):  # constants created inside the trace: a frozen graph
        y, _ = model.stateless_call([tf.constant(a) for a in trainable], [tf.constant(a) for a in fixed], x,
                                    training=False)
        return y

    shape = [1, *[int(d) for d in model.inputs[0].shape[1:]]]
    concrete = forward.get_concrete_function(tf.TensorSpec(shape, tf.float32, name="input"))
    if len(concrete.captured_inputs):
        raise ConversionError(f"the trace of {model.name} captured {len(concrete.captured_inputs)} tensors: not frozen")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    return converter.convert()
