"""TF-slim MobileNetV2 checkpoints -> keras.applications MobileNetV2 weights, with proven parity.

Stages (one module each, data flows one way):
manifest -> fixtures/download (archive) -> checkpoint (layer guide) -> keras_weights (.h5)
-> parity (record) -> report (test_results, PARITY.md); pipeline orchestrates them.
"""
