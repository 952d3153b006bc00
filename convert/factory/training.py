"""User-like training directories: what ``train_image_classifier.py --train_dir D`` leaves in ``D`` for a
MobileNet of any :class:`~convert.reference.Architecture`.

``D`` holds ``checkpoint`` (naming ``model.ckpt-STEP``), ``model.ckpt-STEP.{data-00000-of-00001,index,meta}``
and ``graph.pbtxt``; the ``.meta`` and ``graph.pbtxt`` hold a *training* graph as the script builds it:
images from a queue (``batch`` dequeue, one-hot labels, ``prefetch_queue``), training-mode batch norm
(``FusedBatchNormV3`` with ``is_training=True`` and its ``AssignMovingAvg`` updates), random dropout, the
softmax cross-entropy plus L2 regularisation (``total_loss``), an exponentially decayed learning rate,
``global_step``, the optimizer's update ops and slots (RMSProp: ``<var>/RMSProp``, ``<var>/RMSProp_1``;
Momentum: ``<var>/Momentum``, for every trainable variable) and, with ``ema`` (``--moving_average_decay``),
``ExponentialMovingAverage`` shadows of every model variable, the BN moving statistics included
(``slim.get_model_variables()``). With ``export``, also ``inference_graph.pbtxt`` (what
``export_inference_graph.py`` writes: the inference graph with variables and the ``input`` placeholder) and
``frozen_graph.pb`` (that graph frozen with the values slim's evaluation restores: the EMA shadows, else the
raw values).

Values are the factory's (:mod:`.fixtures`): He kernels, gamma ~ 1, beta ~ 0.5, BN statistics calibrated on
a seeded batch as the EMA values; with ``ema`` the raw values differ from them by 10 % of their spread.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fsutil import file_lock
from ..reference import Architecture, Ops, build_reference, graph, model_variables
from ..reference.slim import BN_EPSILON, kernel_leaf
from . import fixtures

OPTIMIZERS = {"rmsprop": ("RMSProp", "RMSProp_1"), "momentum": ("Momentum",)}
STEP = 5000
BATCH_SIZE = 32  # train_image_classifier's --batch_size default
WEIGHT_DECAY = 4e-5  # the nets' arg scopes' weight_decay
BN_DECAY = {"v1": 0.9997, "v2": 0.997, "v3": 0.997}  # mobilenet_v1_arg_scope / mobilenet training_scope
DROPOUT_KEEP = {"v1": 0.999, "v2": 0.8, "v3": 0.8}
MOVING_AVERAGE_DECAY = 0.9999
EMA = fixtures.EMA
PREFIX = "model.ckpt"


@dataclass(frozen=True)
class TrainingOps(Ops):
    """:class:`~convert.reference.Ops` with slim.dropout in training mode (random, ``keep_prob``)."""

    keep_prob: float = field(default=0.8, kw_only=True)

    def dropout(self, net, scope: str):
        with self.scope(scope):
            return self.tf.nn.dropout(net, rate=1.0 - self.keep_prob, name="dropout")


def _training_batch_norm(tf, weight, decay: float, update_ops: list):
    """slim.batch_norm with ``is_training=True`` (fused): batch statistics, and the moving statistics'
    ``AssignMovingAvg`` updates collected into ``update_ops`` (slim's UPDATE_OPS)."""
    v1 = tf.compat.v1

    def batch_norm(x, scope):
        b = f"{scope}/BatchNorm/"
        with v1.name_scope("BatchNorm"):
            y, mean, variance = v1.nn.fused_batch_norm(x, weight(b + "gamma"), weight(b + "beta"), epsilon=BN_EPSILON,
                                                       is_training=True, name="FusedBatchNormV3")
            for suffix, stat, batch in (("", "moving_mean", mean), ("_1", "moving_variance", variance)):
                with v1.name_scope(f"AssignMovingAvg{suffix}") as sc:
                    var = weight(b + stat)
                    delta = tf.multiply(tf.subtract(var, batch), np.float32(1.0 - decay), name="mul")
                    update_ops.append(v1.assign_sub(var, delta, name=sc))
            return y
    return batch_norm


def _training_graph(arch: Architecture, optimizer: str, ema: bool):
    """The training graph; returns (graph, {name: variable} of every variable the checkpoint holds).

    Built with TF1's control flow (``Switch``/``Merge``, as a TF 1.x training graph has): TF 2's functional
    conds (the EMA shadows' initial values) name their functions by a process-wide counter, which would make
    the graph's bytes depend on what the process built before. The switch is restored afterwards."""
    import tensorflow as tf

    v1 = tf.compat.v1
    was_v2 = v1.control_flow_v2_enabled()
    v1.disable_control_flow_v2()
    try:
        return _build_training_graph(tf, arch, optimizer, ema)
    finally:
        if was_v2:
            v1.enable_control_flow_v2()


def _build_training_graph(tf, arch: Architecture, optimizer: str, ema: bool):
    v1 = tf.compat.v1
    specs = model_variables(arch)
    g = tf.Graph()
    model: dict = {}
    with g.as_default():
        global_step = v1.train.get_or_create_global_step()
        # tf.train.batch over the provider's (image, label), then one-hot labels and slim's prefetch_queue
        queue = v1.FIFOQueue(5 * BATCH_SIZE, [tf.float32, tf.int64], shapes=[[arch.rows, arch.cols, 3], []],
                             name="batch/fifo_queue")
        images, labels = queue.dequeue_many(BATCH_SIZE, name="batch")
        with v1.name_scope("OneHotEncoding"):
            labels = tf.one_hot(labels, arch.classes, name="one_hot")
        prefetch = v1.FIFOQueue(2, [tf.float32, tf.float32], shapes=[images.shape, labels.shape],
                                name="prefetch_queue/fifo_queue")
        prefetch.enqueue([images, labels], name="prefetch_queue/fifo_queue_enqueue")
        images, labels = prefetch.dequeue(name="fifo_queue_Dequeue")

        def weight(name):
            if name not in model:
                shape, trainable = specs[name]
                model[name] = v1.get_variable(name, shape, tf.float32, _initializer(tf, name), trainable=trainable,
                                              use_resource=False)
            return model[name]

        update_ops: list = []
        ops = TrainingOps(tf, weight, _training_batch_norm(tf, weight, BN_DECAY[arch.family], update_ops),
                          keep_prob=DROPOUT_KEEP[arch.family])
        logits = graph(ops, images, arch)

        loss = v1.losses.softmax_cross_entropy(labels, logits, label_smoothing=0.0, weights=1.0)
        with v1.name_scope("regularization"):
            penalties = [tf.multiply(np.float32(WEIGHT_DECAY), tf.nn.l2_loss(v), name=n.replace("/", "_"))
                         for n, v in model.items() if n.endswith("/weights")]
        regularization = tf.add_n(penalties, name="regularization_loss")
        total_loss = tf.add_n([tf.identity(loss, name="clone_loss"), regularization], name="total_loss")
        learning_rate = v1.train.exponential_decay(0.01, global_step, 10_000, 0.94, staircase=True,
                                                   name="exponential_decay_learning_rate")
        if optimizer == "rmsprop":
            opt = v1.train.RMSPropOptimizer(learning_rate, decay=0.9, momentum=0.9, epsilon=1.0)
        else:
            opt = v1.train.MomentumOptimizer(learning_rate, momentum=0.9, name="Momentum")
        trainable = [model[n] for n, (_, t) in specs.items() if t]
        grads = opt.compute_gradients(total_loss, var_list=trainable)
        apply = opt.apply_gradients(grads, global_step=global_step)
        if ema:
            averages = v1.train.ExponentialMovingAverage(MOVING_AVERAGE_DECAY, global_step)
            update_ops.append(averages.apply([model[n] for n in specs]))
        with tf.control_dependencies([apply, tf.group(*update_ops, name="update_ops")]):
            tf.identity(total_loss, name="train_op")
        variables = {v.op.name: v for v in v1.global_variables()}
    missing = sorted(set(specs) - set(model))
    assert not missing, f"{arch.label}: the training graph never read {missing}"
    return g, variables


def _initializer(tf, name: str):
    v1 = tf.compat.v1
    if name.endswith(("gamma", "moving_variance")):
        return v1.ones_initializer()
    if name.endswith(("beta", "moving_mean", "biases")):
        return v1.zeros_initializer()
    return v1.truncated_normal_initializer(stddev=0.09)  # slim's MobileNet arg scopes' weights_initializer


def training_values(arch: Architecture, optimizer: str, ema: bool, step: int = STEP, seed: int = 0,
                    ema_values: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Seeded values of a training directory's checkpoint: model variables (raw; with ``ema`` differing from
    their shadows), the optimizer's slots of every trainable variable, shadows of every model variable with
    ``ema``, and ``global_step`` = ``step``."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    shadows = ema_values if ema_values is not None else fixtures.architecture_ema_values(arch, arch.label, seed)
    specs = model_variables(arch)
    rng = np.random.default_rng([seed, zlib.crc32(arch.label.encode()), 1])
    values: dict[str, np.ndarray] = {"global_step": np.array(step, np.int64)}
    for name, (shape, trainable) in specs.items():
        shadow = shadows[name]
        scale = max(float(shadow.std()), 1e-3) * 0.1
        if ema:
            values[name] = fixtures.raw_from_ema(name, shadow, shadows, rng.standard_normal(shadow.shape))
            values[f"{name}/{EMA}"] = shadow
        else:
            values[name] = shadow
        if not trainable:
            continue
        if optimizer == "rmsprop":
            values[f"{name}/RMSProp"] = (scale**2 * (0.5 + rng.random(shadow.shape))).astype(np.float32)
            values[f"{name}/RMSProp_1"] = (1e-3 * scale * rng.standard_normal(shadow.shape)).astype(np.float32)
        else:
            values[f"{name}/Momentum"] = (1e-2 * scale * rng.standard_normal(shadow.shape)).astype(np.float32)
    return values


def freeze(graph_def, values: dict[str, np.ndarray], outputs: list[str]):
    """``graph_def`` with every ``VariableV2`` a ``Const`` of its value, cut down to what ``outputs`` need
    (what ``freeze_graph`` / ``convert_variables_to_constants`` give)."""
    import tensorflow as tf

    out = type(graph_def)()
    out.versions.CopyFrom(graph_def.versions)
    for node in graph_def.node:
        if node.op in ("VariableV2", "Variable"):
            const = out.node.add(name=node.name, op="Const", device=node.device)
            const.attr["dtype"].type = node.attr["dtype"].type
            const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(values[node.name]))
        else:
            out.node.add().CopyFrom(node)
    return tf.compat.v1.graph_util.extract_sub_graph(out, outputs)


def build_training_dir(arch: Architecture, out_dir: str | Path, *, optimizer: str = "rmsprop", ema: bool,
                       step: int = STEP, seed: int = 0, export: bool = False) -> Path:
    """Write a training directory for ``arch`` into ``out_dir`` (see the module doc); returns ``out_dir``.
    ``export``: also ``inference_graph.pbtxt`` and ``frozen_graph.pb``."""
    import tensorflow as tf

    if not arch.head:
        raise ValueError(f"{arch.label}: train_image_classifier trains a classifier; give classes")
    v1 = tf.compat.v1
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    values = training_values(arch, optimizer, ema, step, seed)
    g, variables = _training_graph(arch, optimizer, ema)
    if sorted(variables) != sorted(values):
        raise AssertionError(f"{arch.label}: graph and values differ: {sorted(set(variables) ^ set(values))[:8]}")
    prefix = f"{PREFIX}-{step}"
    with g.as_default():
        saver = v1.train.Saver(var_list=variables, save_relative_paths=True)
        tf.io.write_graph(g.as_graph_def(), str(out), "graph.pbtxt", as_text=True)
        with v1.Session(graph=g) as sess:
            # feed each initializer's assigned input (an EMA shadow's initial value is a cond on its primary)
            sess.run([variables[n].initializer for n in values],
                     {variables[n].initializer.inputs[1]: v for n, v in values.items()})
            saver.save(sess, str(out / prefix), write_state=False)
    (out / "checkpoint").write_text(f'model_checkpoint_path: "{prefix}"\nall_model_checkpoint_paths: "{prefix}"\n')
    if export:
        ref = build_reference(arch)
        tf.io.write_graph(ref.graph_def, str(out), "inference_graph.pbtxt", as_text=True)
        restored = {n: values.get(f"{n}/{EMA}", values[n]) for n in ref.variables}  # slim eval's choice
        outputs = fixtures._sinks(ref.graph_def, ref.endpoints.input.split(":")[0])
        frozen = freeze(ref.graph_def, restored, outputs)
        (out / "frozen_graph.pb").write_bytes(frozen.SerializeToString(deterministic=True))
    return out


# --------------------------------------------------------------------------------------------------
# Cache: one folder per (architecture, optimizer, ema, seed, step, export, factory version)

def training_version(arch: Architecture) -> str:
    """Hash of the code a training directory comes from: this module and the family's factory code."""
    return _version(arch.family)


@functools.lru_cache(maxsize=None)
def _version(family: str) -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(fixtures.factory_version(family).encode())
    return digest.hexdigest()[:10]


def training_key(arch: Architecture, optimizer: str, ema: bool, seed: int, step: int, export: bool) -> str:
    """The cache key of a training directory: readable, plus a hash of every argument."""
    args = hashlib.sha256(repr((arch, optimizer, ema, seed, step, export)).encode()).hexdigest()[:8]
    return f"{arch.label}-{optimizer}-{'ema' if ema else 'raw'}-seed{seed}-{args}"


def cached_training_dir(arch: Architecture, optimizer: str = "rmsprop", ema: bool = True, seed: int = 0, *,
                        step: int = STEP, export: bool = True) -> Path:
    """The cached training directory of these arguments (with the exported inference and frozen graphs
    unless ``export=False``), built on first use under ``cache_root()/training/`` (one builder at a time per
    key, under a file lock; builds of older factory code of the same key are removed, other keys' never)."""
    root = fixtures.cache_root() / "training"
    key = training_key(arch, optimizer, ema, seed, step, export)
    folder = root / f"{key}-{training_version(arch)}"
    if not folder.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        with file_lock(root / f".{key}.lock"):
            if not folder.is_dir():
                for stale in root.glob(f"{key}-*"):  # builds of older factory code
                    if stale.name.rpartition("-")[0] == key:
                        shutil.rmtree(stale, ignore_errors=True)
                with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
                    built = build_training_dir(arch, Path(tmp) / "dir", optimizer=optimizer, ema=ema, step=step,
                                               seed=seed, export=export)
                    os.replace(built, folder)  # the folder appearing marks the build complete
    return folder
