"""Decoding and the two preprocessings, as TF ops (they run inside tf.data).

* ``slim``: ``inception_preprocessing.preprocess_for_eval``: decode to float in [0, 1], central crop of
  87.5 %, bilinear resize with TF1 semantics (``align_corners=False, half_pixel_centers=False``) to
  rows x rows, then ``(x - 0.5) / 0.5``: the public API's pipeline
  (:meth:`convert.preprocessing.Preprocessing.apply`, the [-1, 1] form), so that evaluate's top-1 is the
  API's; each scorer maps it onto its model's input as the API's form for that file does;
* ``keras``: what the keras.applications docs show: ``keras.utils.load_img(path, target_size=(r, r))``
  (the whole image, nearest-neighbour resize, as load_img's default ``interpolation="nearest"``;
  computed with ``tf.image.resize(method="nearest")``, which samples the same source pixel
  ``floor((i + 0.5) * in / out)`` as PIL's NEAREST) then the family's ``preprocess_input``
  (V1/V2: ``x / 127.5 - 1``; V3: raw 0..255 into the model's own ``Rescaling`` layer). The slim graph
  is fed ``x / 127.5 - 1`` of the same pixels.

The functions take the ``tf`` module as an argument: importing TensorFlow takes 3.4 s (measured; the CLI module imports in 0.35 s without it), which the
dataset checks and ``--help`` do not pay.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import preprocessing as api

CENTRAL_FRACTION = api.CROP_FRACTION


def decode(tf, data, as_pillow: bool = False):
    """Encoded bytes -> uint8 RGB (grey and RGBA images become RGB; animations their first frame).

    ``as_pillow``: JPEGs with libjpeg's accurate integer IDCT, which gives Pillow's pixels exactly (what
    ``keras.utils.load_img`` reads); otherwise TF's default JPEG decoding, as slim's evaluation reads."""
    if not as_pillow:
        return api.decode(data)
    return tf.cond(tf.io.is_jpeg(data),
                   lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                   lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False))


def slim_preprocess(tf, image, rows: int):
    """slim ``inception_preprocessing.preprocess_for_eval``: uint8 image -> [-1, 1] float32 rows x rows x 3
    (the API's ``Preprocessing.for_input(rows)``)."""
    return api.Preprocessing.for_input(rows).apply(image)


def keras_pixels(tf, image, rows: int):
    """``keras.utils.load_img(path, target_size=(rows, rows))`` as float32 pixels in 0..255 (whole image,
    nearest-neighbour resize)."""
    image = tf.image.resize(image, (rows, rows), method="nearest")
    return tf.cast(image, tf.float32)


def to_unit_range(x):
    """0..255 pixels -> [-1, 1]: keras' ``preprocess_input`` for V1/V2 (mode "tf"), V3's Rescaling layer."""
    return x / 127.5 - 1.0


def preprocess(tf, data, rows: int, preprocessing: str):
    """Encoded image bytes through one preprocessing: ``slim`` -> [-1, 1]; ``keras`` -> 0..255 pixels
    (the model's own preprocessing follows)."""
    if preprocessing == "slim":
        return slim_preprocess(tf, decode(tf, data), rows)
    return keras_pixels(tf, decode(tf, data, as_pillow=True), rows)


def preprocess_file(path: str | Path, rows: int, preprocessing: str) -> np.ndarray:
    """One image file through one preprocessing, as the evaluation feeds it."""
    import tensorflow as tf  # lazy: importing TF takes 3.4 s (measured; see the module docstring)

    return preprocess(tf, tf.io.read_file(str(path)), rows, preprocessing).numpy()
