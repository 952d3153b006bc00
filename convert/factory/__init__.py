"""The archive factory: everything that builds official-layout checkpoint archives, kept out of the
conversion path (which never imports this package; ``tests/test_structure.py`` checks that).

* :mod:`.fixtures`: archives and the shared, file-locked cache of them (``python -m convert.factory``);
* :mod:`.graphs`: slim's TF1 graphs per family key (catalogue variants over :mod:`convert.reference`);
* :mod:`.qat`: the quantization-aware archives' extras (contrib.quantize graph, ranges, uint8 ``.tflite``);
* :mod:`.training`: user-like ``train_image_classifier`` directories of any architecture, and their cache;
* :mod:`.spec`: what the factory knows of a family (layers, checkpoint recipes);
* :mod:`.serve`: the loopback HTTP server the demo, the bench and the tests fetch from;
* :mod:`.demo`: ``python -m convert demo``.
"""
