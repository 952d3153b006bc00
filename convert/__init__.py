"""TF-slim MobileNet (V1, V2, V3) checkpoints -> keras.applications weights, with proven parity.

Stages (one module each, data flows one way):
manifest -> fixtures/download (archive) -> checkpoint (layer guide) -> keras_weights (.h5)
-> parity (record) -> report (test_results, PARITY.md); pipeline orchestrates them. Everything
family-specific lives in ``convert/families/<key>.py``.
"""

from .quant import keras_hook as _keras_hook

_keras_hook.install()  # `keras.saving.load_model` finds the quantized twin's layers; Keras is not imported here
