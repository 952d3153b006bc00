"""Registers the twin's layers (:mod:`convert.quant.layers`) and the preprocessing layer
(:func:`convert.preprocessing.layer_class`) with Keras as soon as Keras is imported,
without importing Keras (and TensorFlow) at ``import convert`` time.

Keras resolves a saved custom class only through its registry (it imports a class's module by itself
only for its own packages), so the layers must be registered before ``keras.saving.load_model`` reads a
twin. ``import convert`` calls :func:`install`: with Keras already imported, the layers are registered
at once; otherwise a ``sys.meta_path`` finder wraps Keras' loader so that the layers are registered
right after the ``keras`` module has executed. The pipeline's parent process, which never imports Keras,
thus stays without TensorFlow.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

LAYERS = "convert.quant.layers"
PREPROCESSING = "convert.preprocessing"  # its layer_class() defines and registers the layer


class _ThenRegister(importlib.abc.Loader):
    """Keras' own loader, followed by the import of the twin's layers."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # everything else (resource readers, get_code, ...) is Keras' loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        uninstall()  # Keras is loaded: nothing left to wrap
        _register()


class _KerasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        # Keras' real spec, found without this finder. It stays installed until Keras is actually executed:
        # TensorFlow probes for Keras with importlib.util.find_spec before it imports it.
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec("keras")
        finally:
            sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRegister(spec.loader)
        return spec


_FINDER = _KerasFinder()


def _register() -> None:
    importlib.import_module(LAYERS)
    importlib.import_module(PREPROCESSING).layer_class()


def install() -> None:
    """Register the layers now if Keras is loaded, else when it is."""
    if "keras" in sys.modules:
        _register()
    elif _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
