"""The quantized conversion path (convert/quant): the graph walk, the fake-quant twin (save, load in a fresh
process, fit), its uint8 .tflite and the three parity figures, on the archive factory's QAT archives.

Expected counts come from independent sources: the quantized tensors of Google's own V2 and V3-small
``.tflite`` files (vendored in tests/data/genuine/), and the V1 architecture's layer list.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.manifest import default_manifest

from conftest import REFERENCE_DIR as GENUINE, quant_outputs  # noqa: E402  (the genuine .tflite files)

ROOT = Path(__file__).resolve().parents[1]
V2, V1, V3 = "quantized_v2_96_35", "mobilenet_v1_0.25_128_quant", "v3-small_224_1.0_uint8"


def genuine_counts(path: Path) -> dict[str, int]:
    """Quantizer kinds counted from a genuine TOCO .tflite's tensor names (TOCO names each quantized tensor
    after the op whose output the FakeQuant quantized; weights after their FakeQuant; the bias of a BN-folded
    conv is ``*_Fold_bias``, of a plain conv ``Conv2D_bias``)."""
    from convert.quant.tflite import interpreter

    names = {d["name"] for d in interpreter(path).get_tensor_details()}
    se = lambda n: "squeeze_excite" in n  # noqa: E731
    rules = {
        "folded_weights": lambda n: n.endswith("_Fold_bias"),
        "weights": lambda n: n.endswith("/Conv2D_bias"),
        "relu6": lambda n: n.endswith("/Relu6") and not se(n),
        "relu": lambda n: n.endswith("/Relu"),
        "add_fold": lambda n: n.endswith("/add_fold"),
        "bias_add": lambda n: n.endswith("/BiasAdd"),
        "residual_add": lambda n: n.endswith("/add") and not se(n),
        "hard_swish": lambda n: n.endswith("/hard_swish/mul_1"),
        "se_gate_relu6": lambda n: n.endswith("squeeze_excite/Conv_1/Relu6"),
        "se_gate": lambda n: n.endswith("squeeze_excite/Conv_1/mul"),
        "se_mul": lambda n: n.endswith("squeeze_excite/mul"),
    }
    counts = {kind: sum(map(rule, names)) for kind, rule in rules.items()}
    return {k: v for k, v in counts.items() if v}


def _guide(prefix, variant, quantizers):
    """The layer guide of a QAT checkpoint: the range variables the walk found are the twin's, not the guide's."""
    from convert.checkpoint import build_layer_guide
    from convert.quant.walk import range_variables

    return build_layer_guide(prefix, variant, twin_ranges=range_variables(quantizers))


@dataclasses.dataclass
class Converted:
    variant: object
    root: Path
    out: Path
    prefix: Path  # the checkpoint
    graph_def: object
    quantizers: list
    twin: object
    parity: object


_CONVERTED: dict[str, Converted] = {}


def converted(name: str, tmp_root: Path) -> Converted:
    """One factory QAT archive walked, converted (.h5, .keras, .tflite: :func:`conftest.quant_outputs`, once per
    run) and verified; the twin loaded from its .keras file; once per test process."""
    if name not in _CONVERTED:
        import keras

        from convert.factory.fixtures import cached_extracted
        from convert.quant import parity

        variant = default_manifest().resolve(name)
        root, out = cached_extracted(name), quant_outputs(name, tmp_root)
        opened = parity.open_quant_archive(root, variant)
        model = keras.saving.load_model(out / variant.family.twin_file(variant))
        record = parity.verify_quant(variant, root, out, opened.quantizers, twin=model, random_count=8)
        _CONVERTED[name] = Converted(variant, root, out, opened.checkpoint, opened.reference.graph_def,
                                     opened.quantizers, model, record)
    return _CONVERTED[name]


@pytest.fixture(scope="module")
def tmp_root(run_dir):
    return run_dir


# ---------------------------------------------------------------------------------------------------
# the walk

def test_v2_walk_counts_agree_with_the_genuine_v2_tflite(tmp_root):
    from convert.quant.walk import kind_counts

    c = converted(V2, tmp_root)
    genuine = genuine_counts(GENUINE / "mobilenet_v2_1.0_224_quant.tflite")
    assert genuine == {"folded_weights": 52, "weights": 1, "relu6": 35, "add_fold": 17, "bias_add": 1,
                       "residual_add": 10}  # the genuine file read as FINDINGS.md describes it
    assert kind_counts(c.quantizers) == genuine  # 0.35_96 has 1.0_224's layers
    assert all(q.narrow_range == q.is_weights and q.num_bits == 8 for q in c.quantizers)
    assert all(q.min < 0 < q.max or (q.min == 0 < q.max) for q in c.quantizers)


def test_v3_walk_counts_agree_with_the_genuine_v3_small_tflite(tmp_root):
    from convert.quant.walk import kind_counts

    c = converted(V3, tmp_root)
    assert kind_counts(c.quantizers) == genuine_counts(GENUINE / "v3-small_224_1.0_uint8.tflite")


def test_v1_walk_counts(tmp_root):
    from convert.quant.walk import kind_counts

    c = converted(V1, tmp_root)
    # MobileNetV1: Conv2d_0 + 13 depthwise + 13 pointwise, each BN-folded and followed by Relu6; the logits
    # conv with biases
    assert kind_counts(c.quantizers) == {"folded_weights": 27, "weights": 1, "relu6": 27, "bias_add": 1}


def test_walk_of_the_frozen_graph_matches_the_eval_graph(tmp_root):
    from convert.archive import frozen_graph
    from convert.parity import load_graph_def
    from convert.quant.walk import walk

    c = converted(V2, tmp_root)
    frozen = walk(load_graph_def(frozen_graph(c.root, c.variant)))
    assert [(q.node, q.key) for q in frozen] == [(q.node, q.key) for q in c.quantizers]
    assert all(q.from_constants for q in frozen)
    assert max(abs(a.min - b.min) + abs(a.max - b.max) for a, b in zip(frozen, c.quantizers)) < 1e-6


# ---------------------------------------------------------------------------------------------------
# bad input: clear errors naming the input

def test_a_graph_without_quantizers_is_refused(tmp_root):
    from convert.quant.walk import QuantGraphError, bypass, walk

    graph_def, bypassed = bypass(converted(V2, tmp_root).graph_def)
    assert bypassed == 116
    with pytest.raises(QuantGraphError, match="no FakeQuantWithMinMaxVars node"):
        walk(graph_def, "float.pbtxt")


def test_an_unplaceable_quantizer_is_named(tmp_root):
    from convert.quant.walk import QuantGraphError, walk

    c = converted(V2, tmp_root)
    graph_def = type(c.graph_def)()
    graph_def.CopyFrom(c.graph_def)
    logits = next(q for q in c.quantizers if q.kind == "bias_add")
    node = next(n for n in graph_def.node if n.name == logits.node)
    node.input[0] = "MobilenetV2/Logits/AvgPool"  # a FakeQuant after an average pool: no Keras slot
    with pytest.raises(QuantGraphError, match=f"FakeQuant node '{logits.node}' quantizes 'MobilenetV2/Logits/AvgPool'"):
        walk(graph_def)


def test_a_checkpoint_without_ranges_is_refused(tmp_root, tmp_path):
    import tensorflow as tf

    from convert.quant.walk import QuantGraphError, range_variables, read_ranges

    c = converted(V2, tmp_root)
    reader = tf.train.load_checkpoint(str(c.prefix))
    ranges = range_variables(c.quantizers)
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(reader.get_tensor(n), name=n) for n in reader.get_variable_to_shape_map()
                     if n not in ranges]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            stripped = saver.save(sess, str(tmp_path / "model.ckpt"))
    with pytest.raises(QuantGraphError, match=r"lacks 232 of the 232 quantization range variables"):
        read_ranges(c.quantizers, stripped)


def test_a_tflite_of_another_input_size_is_refused(tmp_root):
    from convert.archive import tflite_file
    from convert.quant.tflite import TfliteInputError, input_quant

    c = converted(V2, tmp_root)
    with pytest.raises(TfliteInputError, match=r"input shape \[1, 96, 96, 3\] does not match the graph's input \[1, 128, 128, 3\]"):
        input_quant(tflite_file(c.root, c.variant), 128)


def test_a_conv_without_weight_quantizer_is_refused(tmp_root):
    from convert.quant.twin import TwinError, build_twin

    c = converted(V2, tmp_root)
    missing = next(q for q in c.quantizers if q.scope.endswith("expanded_conv_3/depthwise") and q.is_weights)
    guide = _guide(c.prefix, c.variant, c.quantizers)
    with pytest.raises(TwinError, match="no weight quantizer for slim scope 'MobilenetV2/expanded_conv_3/depthwise'"):
        build_twin(c.variant, guide, [q for q in c.quantizers if q is not missing])


# ---------------------------------------------------------------------------------------------------
# the twin: names, save/load in a fresh process, fit

def test_twin_keeps_keras_layer_names_and_places_every_quantizer(tmp_root):
    from convert.quant.layers import ActQuant, FoldedConvBN, QuantKernelBias

    c = converted(V2, tmp_root)
    layers = {layer.name: layer for layer in c.twin.layers}
    assert isinstance(layers["Conv1"], FoldedConvBN) and isinstance(layers["block_3_depthwise"], FoldedConvBN)
    assert isinstance(layers["predictions"], QuantKernelBias) and "bn_Conv1" not in layers
    acts = [layer for layer in c.twin.layers if isinstance(layer, ActQuant)]
    assert len(acts) == sum(not q.is_weights for q in c.quantizers)
    assert c.twin.output.shape == (None, 1000) and c.twin.input.shape == (None, 96, 96, 3)


@pytest.mark.parametrize("imports", ["import keras", "import tensorflow, keras"])  # TF probes for Keras first
def test_twin_loads_in_a_fresh_process_after_import_convert(tmp_root, tmp_path, imports):
    c = converted(V2, tmp_root)
    path = c.out / c.variant.family.twin_file(c.variant)
    q = np.random.default_rng(3).integers(0, 256, (2, 96, 96, 3)).astype(np.float32)
    x = (q - 128) / 128
    np.save(tmp_path / "x.npy", x)
    expected = np.asarray(c.twin(x))
    code = ("import sys, convert; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
            f"{imports}; import numpy as np; m = keras.saving.load_model(sys.argv[1]); "
            "np.save(sys.argv[3], np.asarray(m(np.load(sys.argv[2]))))")
    subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                   check=True, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert np.array_equal(np.load(tmp_path / "y.npy"), expected)


def test_twin_fits_with_straight_through_gradients(tmp_root):
    import keras
    import tensorflow as tf

    c = converted(V2, tmp_root)
    model = keras.models.clone_model(c.twin)
    model.set_weights(c.twin.get_weights())
    x = (np.random.default_rng(5).integers(0, 256, (4, 96, 96, 3)).astype(np.float32) - 128) / 128
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) * tf.one_hot([1, 2, 3, 4], 1000))
    grads = tape.gradient(loss, model.trainable_weights)
    assert grads and all(g is not None for g in grads)
    assert sum(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads) == len(grads)
    model.compile(optimizer=keras.optimizers.SGD(1e-2), loss="sparse_categorical_crossentropy")
    before = [w.numpy().copy() for w in model.trainable_weights]
    ranges = [w.numpy().copy() for w in model.non_trainable_weights]
    history = model.fit(x, np.array([1, 2, 3, 4]), epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    assert all(np.array_equal(r, w.numpy()) for r, w in zip(ranges, model.non_trainable_weights))


# ---------------------------------------------------------------------------------------------------
# the three parity figures, one small variant per family

@pytest.mark.parametrize("name", [V2, V1, V3])
def test_parity_figures(tmp_root, name):
    from convert.records import QuantParity

    c = converted(name, tmp_root)
    p = c.parity
    assert p.inputs == 8 and p.floats[0].rewrite is None
    assert p.floats[-1].passed, p.floats
    assert p.twin[0].max_steps <= 1.0 and p.twin[0].top1_agree == p.inputs, p.twin
    assert p.tflite.top1_agree == p.inputs, p.tflite
    assert p.tflite.max_abs_dprob < 0.05 and 0.0 <= p.tflite.top5_identical <= p.tflite.top5_up_to_ties <= 1.0
    assert p.no_top_file_mismatches == [] and p.floats[-1].no_top_max_abs_diff is not None
    assert p.passed
    assert QuantParity.from_json(p.to_json()) == p and p.to_json()["passed"] is True


def test_a_quantized_no_top_file_that_differs_fails(tmp_root, tmp_path):
    """As for a float variant: one changed array in the quantized variant's no-top .h5 fails the float proof and
    is named, though the top file passes."""
    import shutil

    import h5py

    from convert.quant import parity

    c = converted(V1, tmp_root)
    v = c.variant
    for name in (v.keras_weights, v.keras_weights_no_top, v.family.twin_file(v), v.family.tflite_file(v)):
        shutil.copyfile(c.out / name, tmp_path / name)
    with h5py.File(tmp_path / v.keras_weights_no_top, "r+") as f:
        group = f["conv_pw_5_bn"]
        gamma = group[[n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]][0]]
        gamma[0] = gamma[0] * np.float32(1.001)
    p = parity.verify_quant(v, c.root, tmp_path, c.quantizers, twin=c.twin, random_count=2)
    assert p.floats[0].max_abs_dlogit <= p.floats[0].tolerance and p.floats[0].top1_agree == p.inputs
    assert p.no_top_file_mismatches == ["conv_pw_5_bn/gamma"] and not p.float_passed and not p.passed


def test_v3_float_parity_has_the_gate_rewrite(tmp_root):
    c = converted(V3, tmp_root)
    assert [f.rewrite for f in c.parity.floats] == [None, "gate_1/6"]
    assert c.parity.tflite.archive_output == "probabilities" and abs(c.parity.tflite.input_scale - 1 / 127) < 1e-9


def test_verify_inputs_are_snapped_to_the_tflite_input_grid():
    from convert.parity import load_image
    from convert.quant.parity import verify_inputs
    from convert.quant.tflite import InputQuant

    quant = InputQuant(1 / 128, 128, (1, 32, 32, 3))
    q = verify_inputs(32, quant, [GENUINE / "panda.jpg"], count=2, seed=1)
    assert q.shape == (3, 32, 32, 3) and q.dtype == np.uint8
    x = quant.to_real(q)
    assert np.array_equal(x * 128 + 128, q.astype(np.float32))  # exactly (q - 128) / 128
    image = load_image(GENUINE / "panda.jpg", 32)
    inside = image <= 127 / 128  # the grid's top is 127/128: 1.0 (pixel 255) snaps to it
    assert np.max(np.abs(x[0] - image)[inside]) <= 0.5 / 128 + 1e-6 and np.all(x[0][~inside] == 127 / 128)
    assert np.array_equal(q[1:], verify_inputs(32, quant, (), count=2, seed=1))  # seeded
