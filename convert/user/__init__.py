"""Your own TF-slim MobileNet checkpoint (``python -m convert checkpoint``): located, its architecture read from
it, described as a variant, converted by the same stages as the catalogue's and proven against a TF1 graph."""
