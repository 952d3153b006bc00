"""The converter's reference graphs (:mod:`convert.reference`) against independent artifacts: the factory's
archives for catalogue variants (their eval graphs and frozen graphs, built before the builders moved and
byte-identical since), and keras.applications' constructors for architectures outside the catalogue
(non-catalogue alphas, non-square inputs, other class counts, backbones under another scope)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from convert.archive import fill, frozen_graph
from convert.endpoints import find_endpoints
from convert.factory import fixtures
from convert.manifest import resolve
from convert.parity import checkpoint_feeds, load_graph_def, logit_tolerance, run_graph
from convert.reference import SE_GATE, Architecture, build_reference, layers

CATALOGUE = ["mobilenet_v1_0.25_128", "0.35_96", "v3-large_224_0.75_float", "v3-small_224_1.0_float",
             "v3-large-minimalistic_224_1.0_float"]


def _arch_of(variant) -> Architecture:
    return Architecture(variant.family_key, variant.depth_multiplier, variant.rows, variant.rows, variant.classes,
                        kind=variant.kind, minimalistic=variant.minimalistic)


def _archive_graph(name):
    """The factory archive's own inference graph (V1/V2: the eval ``.pbtxt``; V3: the ``ema`` checkpoint's
    ``.meta``), its checkpoint prefix and its frozen graph's path."""
    variant = resolve(name)
    root = fixtures.cached_extracted(name)
    graph_path = root / fill(variant.family.layout.reference_graphs[0], variant)
    if graph_path.suffix == ".meta":
        meta = tf.compat.v1.MetaGraphDef.FromString(graph_path.read_bytes())
        graph_def = meta.graph_def
    else:
        graph_def = load_graph_def(graph_path)
    return variant, graph_def, fixtures.cached_checkpoint(name), frozen_graph(root, variant)


def _nodes(graph_def) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {n.name: (n.op, tuple(n.input)) for n in graph_def.node}


@pytest.mark.parametrize("arch", [Architecture("v1", 0.6, 128, 96, 3), Architecture("v2", 1.0, 224, 224, 1001),
                                  Architecture("v3", 1.0, 96, 96, 10, kind="small"),
                                  Architecture("v2", 1.0, 160, 160, None, scope_prefix="FeatureExtractor")],
                         ids=lambda a: a.label)
def test_the_bare_variable_graph_is_the_slim_graph_without_its_initialisers(arch):
    """``initializers=False`` (the proof's build) leaves out exactly the nodes ``get_variable`` adds to initialise a
    variable; every other node (name, op, inputs, in order) is the slim graph's, as are the endpoints."""
    full, bare = build_reference(arch), build_reference(arch, initializers=False)
    full_nodes, bare_nodes = _nodes(full.graph_def), _nodes(bare.graph_def)
    dropped = sorted(set(full_nodes) - set(bare_nodes))
    assert set(bare_nodes) <= set(full_nodes)
    assert dropped and all(n.endswith("/Assign") or "/Initializer/" in n for n in dropped), dropped[:5]
    assert len(dropped) >= len(full.variables)  # at least one Assign per variable
    assert [n for n in full_nodes if n in bare_nodes] == list(bare_nodes)
    assert {k: v for k, v in bare_nodes.items() if full_nodes[k] != v} == {}
    assert (bare.endpoints, bare.variables) == (full.endpoints, full.variables)


@pytest.mark.parametrize("name", ["v3-small_224_1.0_float", "quantized_v2_96_35"])
def test_a_session_of_the_fetched_part_computes_what_the_whole_graph_does(name):
    """``graph_session(..., fetches)`` imports only what the fetches need (a ``.meta``'s saver and initialisers, a
    QAT graph's training ops left out) and gives the whole graph's outputs bit for bit; a feed outside that part
    is dropped."""
    from convert.parity import graph_session
    from convert.quant.parity import graph_reference

    variant = resolve(name)
    ref = graph_reference(fixtures.cached_extracted(name), variant)
    assert ref.kind == "ckpt_meta" and any(n.op == "Assign" for n in ref.graph_def.node)
    fetches = [ref.endpoints.logits, ref.endpoints.pooled]
    rows = variant.rows
    batch = np.random.default_rng(5).uniform(-1, 1, (2, rows, rows, 3)).astype(np.float32)
    with graph_session(ref.graph_def, ref.endpoints.input) as run:
        whole = run(batch, ref.feeds, fetches)
    saver = next(n.name for n in ref.graph_def.node if n.name.startswith("save/") and n.op == "Const")
    with graph_session(ref.graph_def, ref.endpoints.input, fetches) as run:
        part = run(batch, {**ref.feeds, f"{saver}:0": np.asarray("x")}, fetches)
        with pytest.raises(Exception, match="save/"):  # not imported
            run(batch, ref.feeds, f"{saver}:0")
        with pytest.raises(ValueError, match="no_such/read:0"):  # a feed the graph never held is no silent drop
            run(batch, {**ref.feeds, "no_such/read:0": np.zeros(1, np.float32)}, fetches)
    assert all(np.array_equal(a, b) for a, b in zip(whole, part))


@pytest.mark.parametrize("name", CATALOGUE)
def test_catalogue_graphs_equal_the_factory_archives(name):
    """The builder's graph holds the archive's inference graph node for node (name, op, inputs) and computes
    its logits, fed the archive's checkpoint; and the archive's frozen graph (constants baked in by the
    factory) agrees."""
    variant, archive_def, prefix, frozen_path = _archive_graph(name)
    ref = build_reference(_arch_of(variant))
    built, archived = _nodes(ref.graph_def), _nodes(archive_def)
    assert {k: v for k, v in built.items() if archived.get(k) != v} == {}
    extra = sorted(set(archived) - set(built))
    # the archive's graph holds nothing else but a .meta's saver and global_step
    assert all(n.startswith(("save/", "global_step")) for n in extra), extra[:5]
    if not archive_def.node[0].name.startswith("save"):
        assert [n for n in archived if n in built] == list(built), "the same node order"

    batch = np.random.default_rng(3).uniform(-1, 1, (3, variant.rows, variant.rows, 3)).astype(np.float32)
    ours = run_graph(ref.graph_def, batch, checkpoint_feeds(ref.graph_def, prefix).slim, ref.endpoints.logits)
    theirs_ends = find_endpoints(archive_def, variant.family.scope)
    theirs = run_graph(archive_def, batch, checkpoint_feeds(archive_def, prefix).slim, theirs_ends.logits)
    np.testing.assert_array_equal(np.asarray(ours).reshape(3, -1), np.asarray(theirs).reshape(3, -1))
    frozen_def = load_graph_def(frozen_path)
    frozen = np.asarray(run_graph(frozen_def, batch, None, find_endpoints(frozen_def, variant.family.scope).logits))
    ours = np.asarray(ours).reshape(3, -1)
    assert np.max(np.abs(frozen.reshape(3, -1) - ours)) <= logit_tolerance(ours, 1e-5)
    assert set(ref.variables) == {n for n, v in checkpoint_feeds(ref.graph_def, prefix).sources.items()}


# ------------------------------------------------------------------------------------------------------
# Against keras.applications: architectures outside the catalogue

def _keras_model(arch: Architecture):
    import keras

    keras.backend.clear_session()
    kw = dict(alpha=arch.alpha, input_shape=(arch.rows, arch.cols, 3), weights=None)
    if arch.head:
        kw.update(include_top=True, classes=arch.classes, classifier_activation=None)
    else:
        kw.update(include_top=False, pooling="avg")
    if arch.family == "v1":
        return keras.applications.MobileNet(**kw)
    if arch.family == "v2":
        return keras.applications.MobileNetV2(**kw)
    constructor = keras.applications.MobileNetV3Large if arch.kind == "large" else keras.applications.MobileNetV3Small
    return constructor(minimalistic=arch.minimalistic, include_preprocessing=False, **kw)


def _keras_feeds(arch: Architecture, model, ref, seed: int = 0) -> dict[str, np.ndarray]:
    """Set every Keras weight to a seeded value and return the reference graph's feeds of the same values,
    each Keras weight mapped to its slim variable by the converter's name table (``tf_name_for``). Fails
    unless the two variable sets are the same, shapes included (a Dense head as its 1x1 conv)."""
    from convert.mapping import tf_name_for

    rng = np.random.default_rng(seed)
    prefix = arch.scope_prefix + "/" if arch.scope_prefix else ""
    feeds = {}
    for layer in model.layers:
        for w in layer.weights:
            name = tf_name_for(arch.family, layer.name, w.name)
            assert name is not None, f"{layer.name}/{w.name} has no slim name"
            shape = tuple(w.shape)
            if w.name == "kernel":
                fan_in = np.prod(shape[:2]) * (1 if "depthwise" in name else shape[-2])
                value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
            elif w.name == "gamma":
                value = 1.0 + 0.1 * rng.standard_normal(shape)
            elif w.name == "moving_variance":
                value = rng.uniform(0.5, 1.5, shape)
            else:
                value = 0.1 * rng.standard_normal(shape)
            value = value.astype(np.float32)
            w.assign(value)
            slim_shape = ref.variables.get(prefix + name)
            assert slim_shape is not None, f"{prefix + name} (from {layer.name}/{w.name}) is not in the graph"
            assert int(np.prod(slim_shape)) == value.size and slim_shape[-1] == shape[-1], (name, slim_shape, shape)
            feeds[f"{prefix}{name}/read:0"] = value.reshape(slim_shape)
    assert sorted(set(ref.variables) - {k[: -len("/read:0")] for k in feeds}) == []
    return feeds


def _compare(arch: Architecture, seed: int = 0):
    ref = build_reference(arch)
    model = _keras_model(arch)
    feeds = _keras_feeds(arch, model, ref, seed)
    batch = np.random.default_rng(seed + 1).uniform(-1, 1, (2, arch.rows, arch.cols, 3)).astype(np.float32)
    want = np.asarray(model(batch, training=False)).reshape(2, -1)
    return ref, feeds, batch, want


KERAS_ARCHS = [
    Architecture("v2", 0.6, 224, 160, 5),
    Architecture("v1", 0.6, 224, 160, 5),
    Architecture("v1", 0.6, 192, 192, 10),
    Architecture("v2", 1.0, 160, 160, None, scope_prefix="FeatureExtractor"),
    Architecture("v1", 0.5, 128, 96, None, scope_prefix="FeatureExtractor"),
]


@pytest.mark.parametrize("arch", KERAS_ARCHS, ids=lambda a: a.label)
def test_outside_the_catalogue_the_graph_holds_keras_variables_and_computes_keras_outputs(arch):
    """Non-catalogue alphas, non-square inputs, 5/10 classes, backbones under ``FeatureExtractor``: the
    graph reads exactly the variables of keras.applications' model (through the converter's name table)
    and, fed Keras' values, computes Keras' logits (a backbone: its ``pooling="avg"`` features)."""
    ref, feeds, batch, want = _compare(arch)
    out = ref.endpoints.logits or ref.endpoints.pooled
    got = np.asarray(run_graph(ref.graph_def, batch, feeds, out)).reshape(2, -1)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= logit_tolerance(want, 1e-5)
    if arch.head:
        found = find_endpoints(ref.graph_def, arch.scope)
        assert (found.input, found.pooled, found.head, found.softmax) == (
            ref.endpoints.input, ref.endpoints.pooled, ref.endpoints.head, ref.endpoints.softmax)
        same = run_graph(ref.graph_def, batch, feeds, found.logits)
        np.testing.assert_array_equal(np.asarray(same).reshape(2, -1), got)
    else:
        assert ref.endpoints.logits is ref.endpoints.head is ref.endpoints.softmax is None
        assert all(n.startswith(arch.scope_prefix + "/") for n in ref.variables)


def test_v1_keras_pads_odd_maps_unlike_slim():
    """keras.applications' MobileNet pads its stride-2 convs by ((0, 1), (0, 1)) then convolves "valid":
    TF's "SAME" (slim's padding) only when the map is even. At 200x200 the 25x25 map of Conv2d_4 is odd, so
    no V1 weights can give Keras slim's logits there (V2/V3 use ``correct_pad``: the same as "SAME")."""
    arch = Architecture("v1", 0.25, 200, 200, 4)
    ref, feeds, batch, want = _compare(arch)
    got = np.asarray(run_graph(ref.graph_def, batch, feeds, ref.endpoints.logits)).reshape(2, -1)
    assert np.max(np.abs(got - want)) > 100 * logit_tolerance(want, 1e-5)
    v2 = Architecture("v2", 0.35, 200, 200, 4)  # the same size, V2: parity
    ref, feeds, batch, want = _compare(v2)
    got = np.asarray(run_graph(ref.graph_def, batch, feeds, ref.endpoints.logits)).reshape(2, -1)
    assert np.max(np.abs(got - want)) <= logit_tolerance(want, 1e-5)


def _gate_constants(graph_def) -> list[np.ndarray]:
    return [tf.make_ndarray(n.attr["value"].tensor) for n in graph_def.node
            if n.op == "Const" and n.name.endswith("squeeze_excite/Conv_1/mul/y")]


@pytest.mark.parametrize("arch", [Architecture("v3", 1.0, 224, 224, 3, kind="small"),
                                  Architecture("v3", 1.0, 160, 160, None, kind="small", scope_prefix="FeatureExtractor")],
                         ids=lambda a: a.label)
def test_v3_gate_is_slims_and_keras_differs_by_the_gate_gap_only(arch):
    """The builder's squeeze-excite gate constant is slim's 0.16667 (read from the graph: one per SE block);
    fed Keras' values the graph differs from Keras by the 0.16667-vs-1/6 gap, and by float noise once that
    one constant is 1/6 (the family's own rewrite). A planted wrong gate (0.17) is far outside the tolerance."""
    from convert.families.v3 import rewrite_gate

    ref, feeds, batch, want = _compare(arch, seed=2)
    gates = _gate_constants(ref.graph_def)
    assert len(gates) == sum(1 for layer in layers(arch) if layer.scope.endswith("squeeze_excite/Conv_1")) > 0
    assert all(g.dtype == np.float32 and g == np.float32(0.16667) for g in gates) and SE_GATE == np.float32(0.16667)
    swish = [tf.make_ndarray(n.attr["value"].tensor) for n in ref.graph_def.node
             if n.op == "Const" and n.name.endswith("hard_swish/mul_1/y")]
    assert swish and all(s == np.float32(1.0 / 6.0) for s in swish)

    out = ref.endpoints.logits or ref.endpoints.pooled
    run = lambda g: np.asarray(run_graph(g, batch, feeds, out)).reshape(2, -1)  # noqa: E731
    as_is, (rewritten, count) = run(ref.graph_def), rewrite_gate(ref.graph_def)
    assert count == len(gates)
    gap, tol = np.max(np.abs(as_is - want)), logit_tolerance(want, 1e-5)
    assert np.max(np.abs(run(rewritten) - want)) <= tol < gap <= logit_tolerance(want, 1e-2)

    planted = type(ref.graph_def)()
    planted.CopyFrom(ref.graph_def)
    for n in planted.node:
        if n.op == "Const" and n.name.endswith("squeeze_excite/Conv_1/mul/y"):
            n.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.float32(0.17)))
    assert np.max(np.abs(run(planted) - want)) > 10 * gap


# ------------------------------------------------------------------------------------------------------
# slim's width rules, by hand from slim's sources

def _widths(arch: Architecture) -> dict[str, int]:
    return {layer.scope.rsplit("/", 1)[-1] if "expanded_conv" not in layer.scope else layer.scope: layer.cout
            for layer in layers(arch)}


def test_width_rules_outside_the_catalogue():
    v1 = _widths(Architecture("v1", 0.6, 224, 224, 7))
    # max(int(d * 0.6), 8): 32 -> 19, 64 -> 38, 1024 -> 614
    assert (v1["Conv2d_0"], v1["Conv2d_1_pointwise"], v1["Conv2d_13_pointwise"], v1["Conv2d_1c_1x1"]) == (19, 38, 614, 7)
    assert _widths(Architecture("v1", 0.1, 224, 224, 7))["Conv2d_0"] == 8  # min_depth
    # V2: make_divisible(32 * 0.6) = 24 (19.2 rounds to 16, under 90 %); Conv_1 1280 (finegrain) or 768
    assert _widths(Architecture("v2", 0.6, 224, 224, 5))["Conv"] == 24
    assert _widths(Architecture("v2", 0.6, 224, 224, 5))["Conv_1"] == 1280
    assert _widths(Architecture("v2", 0.6, 224, 224, 5, finegrain=False))["Conv_1"] == 768
    assert _widths(Architecture("v2", 1.4, 224, 224, 5))["Conv_1"] == 1792  # scaled above 1
    # V3: finegrain keeps Conv_2 at 1280 for any alpha (slim replaces its multiplier by the identity)
    assert _widths(Architecture("v3", 1.25, 224, 224, 5, kind="large"))["Conv_2"] == 1280
    assert _widths(Architecture("v3", 0.75, 224, 224, 5, kind="large", finegrain=False))["Conv_2"] == 960
    assert _widths(Architecture("v3", 0.75, 224, 224, 5, kind="small", finegrain=False))["Conv_2"] == 768
    assert "Conv_2" not in _widths(Architecture("v3", 1.0, 224, 224, None, kind="small"))


@pytest.mark.parametrize("rows, cols, kernel", [(224, 160, [7, 5]), (128, 128, [4, 4]), (200, 96, [7, 3])])
def test_v1_pool_kernel_is_reduced_to_small_feature_maps(rows, cols, kernel):
    ref = build_reference(Architecture("v1", 0.25, rows, cols, 3))
    (pool,) = [n for n in ref.graph_def.node if n.name == "MobilenetV1/Logits/AvgPool_1a/AvgPool"]
    assert list(pool.attr["ksize"].list.i) == [1, *kernel, 1]
    assert list(pool.attr["strides"].list.i) == [1, 2, 2, 1]


def test_invalid_architectures_are_refused():
    for bad in (dict(family="v4"), dict(alpha=0), dict(rows=16), dict(classes=0), dict(kind="large"),
                dict(scope_prefix="/FeatureExtractor")):
        with pytest.raises(ValueError):
            Architecture(**{**dict(family="v2", alpha=1.0, rows=224, cols=224, classes=5), **bad})
    with pytest.raises(ValueError, match="kind"):
        Architecture("v3", 1.0, 224, 224, 5)


@pytest.mark.genuine
def test_the_builders_v2_graph_computes_what_googles_genuine_2018_eval_graph_computes(reference_dir):
    """An independent check of the builder: Google's own eval graph of mobilenet_v2_1.0_224 (vendored), fed the
    same checkpoint by name, reads the same variables and gives the builder's logits and pooled features."""
    import numpy as np

    from convert.endpoints import find_endpoints
    from convert.factory import fixtures
    from convert.parity import checkpoint_feeds, load_graph_def, random_inputs, read_variables, run_graph
    from convert.reference import Architecture, build_reference

    genuine = load_graph_def(reference_dir / "mobilenet_v2_1.0_224_eval.pbtxt")
    built = build_reference(Architecture("v2", 1.0, 224, 224, 1001))
    assert set(read_variables(genuine)) == set(read_variables(built.graph_def)) == set(built.variables)
    prefix = fixtures.cached_checkpoint("1.0_224")
    x = random_inputs(224, 2, seed=11)
    outs = []
    for graph_def in (genuine, built.graph_def):
        ends = find_endpoints(graph_def, "MobilenetV2")
        feeds = checkpoint_feeds(graph_def, prefix).slim
        outs.append([np.asarray(a).reshape(2, -1) for a in run_graph(graph_def, x, feeds, [ends.logits, ends.pooled], ends.input)])
    (g_logits, g_pooled), (b_logits, b_pooled) = outs
    assert np.max(np.abs(g_logits - b_logits)) <= 1e-5 * max(1.0, float(np.max(np.abs(g_logits))))
    assert np.max(np.abs(g_pooled - b_pooled)) <= 1e-5 * max(1.0, float(np.max(np.abs(g_pooled))))
    assert (g_logits.argmax(1) == b_logits.argmax(1)).all()
