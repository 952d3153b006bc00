"""The input pipeline: image files -> batches of every preprocessing, decoded alongside inference."""
from __future__ import annotations

from .dataset import Dataset
from .preprocess import preprocess


def make_pipeline(dataset: Dataset, rows: int, preprocessings: tuple[str, ...], batch_size: int):
    """A tf.data pipeline yielding batches ``{"index": int32[b], <preprocessing>: float32[b, r, r, 3]}``;
    decoding runs in parallel with inference (AUTOTUNE map + prefetch). Unreadable images are dropped
    (their indices are missing from the batches)."""
    import tensorflow as tf  # lazy: importing TF takes 3.4 s (measured), which `--help` and dataset errors do not pay

    paths = [str(p) for p in dataset.files]

    def load(index, path):
        data = tf.io.read_file(path)
        return {"index": index, **{p: preprocess(tf, data, rows, p) for p in preprocessings}}

    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int32), tf.constant(paths)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=False)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
