"""The structural finder on the float families' graphs: the tensors it picks compute exactly what slim's named
tensors (the families' ``GraphNodes``, as the factory names them) compute, so the float figures are those of the
names (issue 20: "the float families use the same finder; their figures must not change")."""
from __future__ import annotations

import numpy as np
import pytest

from convert.endpoints import EndpointError, find_endpoints, training_signals
from convert.factory import fixtures
from convert.manifest import resolve
from convert.reference import Architecture, build_reference
from convert.parity import checkpoint_feeds, choose_reference, frozen_graph, load_graph_def, random_inputs, run_graph


@pytest.mark.parametrize("name", ["0.35_96", "mobilenet_v1_0.25_128", "v3-large_224_0.75_float",
                                  "v3-small-minimalistic_224_1.0_float"])
def test_the_finders_tensors_equal_slims_named_ones_bit_for_bit(name):
    variant = resolve(name)
    root = fixtures.cached_extracted(name)
    choice = choose_reference(root, variant)
    nodes, ends = variant.family.nodes, choice.endpoints
    assert ends.input == nodes.input and ends.pooled == nodes.pooled
    feeds = checkpoint_feeds(choice.graph_def, str(choice.checkpoint)).slim
    x = random_inputs(variant.rows, 2, seed=5)
    found = run_graph(choice.graph_def, x, feeds, [ends.logits, ends.pooled])
    named = run_graph(choice.graph_def, x, feeds, [nodes.logits, nodes.pooled])
    assert all(np.array_equal(np.asarray(a).reshape(2, -1), np.asarray(b).reshape(2, -1)) for a, b in zip(found, named))
    assert ends.logits == nodes.logits  # slim's own name: the finder stops before the softmax's flatten
    frozen = load_graph_def(frozen_graph(root, variant))  # the frozen graph too, found there by structure
    frozen_ends = find_endpoints(frozen, variant.family.scope)
    assert (frozen_ends.logits, frozen_ends.pooled) == (nodes.logits, nodes.pooled)
    assert np.array_equal(np.asarray(run_graph(frozen, x, None, frozen_ends.logits)).reshape(2, -1),
                          np.asarray(found[0]).reshape(2, -1))


@pytest.mark.parametrize("arch", [Architecture("v3", 1.0, 32, 32, 10, kind="small"),
                                  Architecture("v3", 1.0, 32, 32, 10, kind="small", minimalistic=True),
                                  Architecture("v2", 0.35, 32, 32, 5), Architecture("v1", 0.25, 32, 32, 5)],
                         ids=lambda a: a.label)
def test_at_the_smallest_input_the_pooled_features_are_still_the_bases(arch):
    """At 32 x 32 every map at the end is 1 x 1 (no pool reduces): the pool on the data path farthest from the
    head (V3: AvgPool2D before Conv_2, never a squeeze-excite's pool beside the path)."""
    built = build_reference(arch)
    assert find_endpoints(built.graph_def, arch.scope) == built.endpoints


def test_a_graph_without_the_scopes_head_is_no_training_graph():
    """A graph judged for another scope has no head: no training signals (the initializers' random ops of a
    .meta are not dropout), and the finder's error says what is missing."""
    import tensorflow as tf

    variant = resolve("mobilenet_v1_0.25_128")
    meta = tf.compat.v1.MetaGraphDef()
    meta.ParseFromString(next(fixtures.cached_extracted(variant.name).glob("*.meta")).read_bytes())
    assert training_signals(meta.graph_def, "MobilenetV2") == []
    assert training_signals(meta.graph_def, "MobilenetV1") == []
    with pytest.raises(EndpointError, match="MobilenetV2/Logits/Conv2d_1c_1x1/weights"):
        find_endpoints(meta.graph_def, "MobilenetV2")
