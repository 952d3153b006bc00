"""ImageNet accuracy: ``python -m convert evaluate NAME… --imagenet-dir DIR`` (top-1 / top-5).

Evaluates, per variant and per preprocessing:

* ``converted``: the converted Keras weights (``weights/<keras file>.h5``) loaded with the family's
  keras.applications constructor, as a user would;
* ``slim``: the archive's own slim inference graph, restored as :mod:`convert.parity` restores it
  (every ``<var>/read`` fed the values slim's evaluation restores: the EMA values);
* ``keras-imagenet`` (``--compare-keras``): keras.applications' own ``weights="imagenet"``;
* quantized variants (slim preprocessing only): ``converted`` is the float ``<stem>.h5``, ``slim`` the
  archive's graph as it is (FakeQuants included), plus ``twin`` (``<stem>.keras``), ``tflite`` (our
  ``<stem>.tflite``) and ``archive-tflite`` (the archive's own ``.tflite``, background class dropped).

One job per module:

* :mod:`.dataset`: the ``DIR/<wnid>/*.JPEG`` folder layout and the flat folder with a labels file,
  the class-balanced ``--limit`` subset, the shipped class index;
* :mod:`.preprocess`: decoding, slim's (:mod:`convert.preprocessing`'s pipeline) and keras' preprocessing (TF ops);
* :mod:`.inputs`: the tf.data pipeline;
* :mod:`.scorers`: the Keras, slim-graph, twin and ``.tflite`` models as scorers (with a small graph cache);
* :mod:`.evaluation`: one pass over the images, every model scored;
* :mod:`.records`: the accuracy record and ``ACCURACY.md`` (written by :func:`convert.report.write_accuracy`);
* :mod:`.cli`: the command line.

This file imports nothing, so that :mod:`convert.report` can read the records without TensorFlow.
"""
