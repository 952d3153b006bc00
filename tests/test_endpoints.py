"""The structural finder on the float families' graphs: the tensors it picks compute exactly what slim's named
tensors (the families' ``GraphNodes``, as the factory names them) compute, so the float figures are those of the
names (issue 20: "the float families use the same finder; their figures must not change")."""
from __future__ import annotations

import numpy as np
import pytest

from convert.factory import fixtures
from convert.manifest import resolve
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
    frozen = load_graph_def(frozen_graph(root, variant))  # the frozen graph too, without its eval graph's names
    assert np.array_equal(np.asarray(run_graph(frozen, x, None, nodes.logits)).reshape(2, -1),
                          np.asarray(found[0]).reshape(2, -1))
