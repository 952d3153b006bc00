"""The quantized (quantization-aware trained) archives: the graph walk that finds every FakeQuant
(:mod:`.walk`), the fake-quant Keras 3 twin (:mod:`.layers`, :mod:`.twin`), its uint8 ``.tflite``
(:mod:`.tflite`) and the three parity figures (:mod:`.parity`).

Importing this package imports neither TensorFlow nor Keras (each module imports them where it uses them,
except :mod:`.layers`, which defines Keras layers). Nothing here imports ``convert.factory``.
"""
