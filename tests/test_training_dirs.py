"""The factory's user-like training directories (:mod:`convert.factory.training`), what
``train_image_classifier.py --train_dir`` leaves, held against TF's own checkpoint readers, keras.applications'
models of the same architecture (the variable table, through the converter's name table) and the
converter's graph classifiers (:func:`convert.endpoints.training_signals`, :func:`find_endpoints`)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from convert.endpoints import EndpointError, find_endpoints, training_signals
from convert.factory import training
from convert.parity import checkpoint_feeds, load_graph_def, logit_tolerance, run_graph
from convert.reference import Architecture

# (architecture, optimizer, ema): V1 0.6 (any size), V2 0.6 non-square with 5 classes, V2 1.0_224 (the
# bench's), V3 large and small 1.0 with 3 and 10 classes; both optimizers, with and without EMA
DIRS = [
    (Architecture("v1", 0.6, 200, 200, 10), "momentum", False),
    (Architecture("v2", 0.6, 200, 160, 5), "rmsprop", True),
    (Architecture("v2", 1.0, 224, 224, 10), "rmsprop", False),
    (Architecture("v3", 1.0, 224, 224, 3, kind="large"), "rmsprop", True),
    (Architecture("v3", 1.0, 224, 224, 10, kind="small"), "momentum", True),
]
IDS = [f"{a.label}-{o}-{'ema' if e else 'raw'}" for a, o, e in DIRS]
SLOTS = {"rmsprop": ("RMSProp", "RMSProp_1"), "momentum": ("Momentum",)}


@pytest.fixture(scope="module", params=DIRS, ids=IDS)
def case(request):
    arch, optimizer, ema = request.param
    return arch, optimizer, ema, training.cached_training_dir(arch, optimizer, ema)


def _keras_variables(arch: Architecture) -> dict[str, tuple[tuple[int, ...], bool]]:
    """slim name -> (element count, trainable) of every weight of keras.applications' model of ``arch``."""
    import keras

    from convert.mapping import tf_name_for

    keras.backend.clear_session()
    kw = dict(alpha=arch.alpha, input_shape=(arch.rows, arch.cols, 3), weights=None, classes=arch.classes,
              classifier_activation=None)
    if arch.family == "v1":
        model = keras.applications.MobileNet(**kw)
    elif arch.family == "v2":
        model = keras.applications.MobileNetV2(**kw)
    else:
        constructor = getattr(keras.applications, f"MobileNetV3{arch.kind.title()}")
        model = constructor(include_preprocessing=False, **kw)
    out = {}
    for layer in model.layers:
        trainable = {id(w) for w in layer.trainable_weights}
        for w in layer.weights:
            name = tf_name_for(arch.family, layer.name, w.name)
            assert name is not None, f"{layer.name}/{w.name}"
            out[name] = (int(np.prod(w.shape)), id(w) in trainable)
    return out


def test_the_directory_is_what_train_image_classifier_leaves(case):
    arch, optimizer, ema, folder = case
    assert (folder / "checkpoint").read_text() == ('model_checkpoint_path: "model.ckpt-5000"\n'
                                                   'all_model_checkpoint_paths: "model.ckpt-5000"\n')
    for suffix in ("data-00000-of-00001", "index", "meta"):
        assert (folder / f"model.ckpt-5000.{suffix}").is_file()
    assert tf.train.latest_checkpoint(str(folder)) == str(folder / "model.ckpt-5000")
    reader = tf.train.load_checkpoint(str(folder))
    assert int(reader.get_tensor("global_step")) == 5000


def test_the_variable_table_is_keras_model_plus_slots_step_and_shadows(case):
    """Exactly the Keras model's variables (slim names, sizes), the optimizer's slots of its trainable ones,
    ``global_step``, and ``/ExponentialMovingAverage`` shadows of every model variable iff EMA."""
    arch, optimizer, ema, folder = case
    table = tf.train.load_checkpoint(str(folder)).get_variable_to_shape_map()
    keras_vars = _keras_variables(arch)
    expected = {"global_step"} | set(keras_vars)
    expected |= {f"{n}/{slot}" for n, (_, trainable) in keras_vars.items() if trainable for slot in SLOTS[optimizer]}
    if ema:
        expected |= {f"{n}/ExponentialMovingAverage" for n in keras_vars}
    assert sorted(set(table) ^ expected) == []
    assert {n: int(np.prod(table[n])) for n in keras_vars} == {n: size for n, (size, _) in keras_vars.items()}
    # non-trainable: the BN moving statistics, which get no slots
    assert {n for n, (_, t) in keras_vars.items() if not t} == {n for n in keras_vars if "/moving_" in n}


def test_raw_values_differ_from_their_shadows(case):
    arch, optimizer, ema, folder = case
    reader = tf.train.load_checkpoint(str(folder))
    names = [n for n in reader.get_variable_to_shape_map() if n.endswith("/ExponentialMovingAverage")]
    same = [n for n in names if np.array_equal(reader.get_tensor(n), reader.get_tensor(n.rsplit("/", 1)[0]))]
    assert bool(names) == ema and same == []


def test_graph_pbtxt_and_meta_are_training_graphs(case):
    arch, optimizer, ema, folder = case
    graph_def = load_graph_def(folder / "graph.pbtxt")
    meta = tf.compat.v1.MetaGraphDef.FromString((folder / "model.ckpt-5000.meta").read_bytes())
    assert {n.name for n in graph_def.node} <= {n.name for n in meta.graph_def.node}
    for g in (graph_def, meta.graph_def):
        signals = training_signals(g, arch.scope)
        assert any("training mode" in s for s in signals) and any("random op" in s for s in signals), signals
        with pytest.raises(EndpointError, match="queue"):
            find_endpoints(g, arch.scope)
    ops = {n.op for n in graph_def.node}
    assert {"QueueDequeueManyV2", "QueueDequeueV2", "FusedBatchNormV3", "RandomUniform"} <= ops
    assert ("ApplyRMSProp" if optimizer == "rmsprop" else "ApplyMomentum") in ops
    names = {n.name for n in graph_def.node}
    assert {"global_step", "total_loss", "train_op", f"{arch.scope}/Logits/Conv2d_1c_1x1/weights"} <= names
    assert any(n.startswith("ExponentialMovingAverage/") for n in names) == ema


def test_exported_graphs_are_inference_graphs_and_the_frozen_one_holds_slims_eval_values(case):
    """``inference_graph.pbtxt`` and ``frozen_graph.pb`` are inference graphs whose endpoints the finder
    finds; the frozen logits equal the inference graph fed the checkpoint's values as slim's evaluation
    restores them (the EMA shadows when trained with EMA, else the raw values)."""
    arch, optimizer, ema, folder = case
    inference = load_graph_def(folder / "inference_graph.pbtxt")
    frozen = load_graph_def(folder / "frozen_graph.pb")
    assert training_signals(inference, arch.scope) == [] and training_signals(frozen, arch.scope) == []
    assert not any(n.op in ("VariableV2", "Placeholder") and n.name != "input" for n in frozen.node)
    ends, frozen_ends = find_endpoints(inference, arch.scope), find_endpoints(frozen, arch.scope)
    feeds = checkpoint_feeds(inference, str(folder / "model.ckpt-5000"))
    assert set(feeds.sources.values()) == {"ema" if ema else "raw"}
    batch = np.random.default_rng(5).uniform(-1, 1, (2, arch.rows, arch.cols, 3)).astype(np.float32)
    want = np.asarray(run_graph(inference, batch, feeds.slim, ends.logits)).reshape(2, -1)
    got = np.asarray(run_graph(frozen, batch, None, frozen_ends.logits)).reshape(2, -1)
    assert want.shape == (2, arch.classes)
    assert np.max(np.abs(got - want)) <= logit_tolerance(want, 1e-6)
    if ema:  # the raw values give other logits: the frozen graph holds the shadows, visibly
        raw = checkpoint_feeds(inference, str(folder / "model.ckpt-5000"), raw=True).raw
        other = np.asarray(run_graph(inference, batch, raw, ends.logits)).reshape(2, -1)
        assert np.max(np.abs(other - want)) > 100 * logit_tolerance(want, 1e-6)


def test_the_cache_builds_once_keeps_other_keys_and_replaces_stale_builds(tmp_path, monkeypatch):
    """A fresh key is built once (the second call returns the same folder untouched); a build of older code
    of the same key is removed, other keys' folders are not; the build is byte-reproducible."""
    monkeypatch.setenv("MOBILENET_FIXTURES", str(tmp_path))
    arch = Architecture("v1", 0.25, 64, 64, 3)
    key = training.training_key(arch, "momentum", True, 0, training.STEP, False)
    root = tmp_path / "training"
    stale, other = root / f"{key}-0123456789", root / f"{key}x-0123456789"
    for d in (stale, other):
        d.mkdir(parents=True)
        (d / "checkpoint").write_text("old")
    folder = training.cached_training_dir(arch, "momentum", True, export=False)
    assert folder.parent == root and folder.name.startswith(key + "-") and not stale.exists() and other.exists()
    stamp = (folder / "model.ckpt-5000.index").stat().st_mtime_ns
    assert training.cached_training_dir(arch, "momentum", True, export=False) == folder
    assert (folder / "model.ckpt-5000.index").stat().st_mtime_ns == stamp
    assert not (folder / "frozen_graph.pb").exists()
    again = training.build_training_dir(arch, tmp_path / "again", optimizer="momentum", ema=True)
    for name in ("checkpoint", "graph.pbtxt", "model.ckpt-5000.index", "model.ckpt-5000.data-00000-of-00001"):
        assert (again / name).read_bytes() == (folder / name).read_bytes(), name


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="optimizer"):
        training.build_training_dir(Architecture("v1", 0.25, 64, 64, 3), tmp_path, optimizer="adam", ema=False)
    with pytest.raises(ValueError, match="classifier"):
        training.build_training_dir(Architecture("v1", 0.25, 64, 64, None), tmp_path, ema=False)
