"""Quantized archives in the forms Google's releases vary in (issue 20), each converted and proven:

* ``slim``: slim's node names (``Logits/output``), the eval graph (V1's ``_eval.pbtxt``, V2/V3 the checkpoint's
  ``.meta``) as the reference, ranges read from its variables;
* ``tflite_names``: the head named as Google's own ``.tflite`` files show their TF nodes (V2: a top-level
  ``output`` and no softmax; V3: ``Logits/SpatialSqueeze`` into ``Predictions/Softmax``; V1's names are slim's);
* ``training_meta``: the checkpoint's ``.meta`` is contrib.quantize's training graph and there is no eval graph,
  so the frozen graph is the reference and its range constants are matched to the checkpoint's variables.

The logits the finder picks are checked against the names in Google's ``.tflite`` files (vendored), the
figures against the archive's own graph and ``.tflite`` (the proofs)."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REFERENCE_DIR as GENUINE, quant_outputs  # noqa: E402
from convert.factory import fixtures
from convert.manifest import resolve

V1, V2, V3 = "mobilenet_v1_0.25_128_quant", "quantized_v2_96_35", "v3-small_224_1.0_uint8"
# slim's form of each is converted and proven by tests/test_quant.py (test_parity_figures); V1's .tflite names are
# slim's own (test_v1_names_are_slims_own)
FORMS = [(V1, "training_meta"), (V2, "tflite_names"), (V2, "training_meta"), (V3, "tflite_names"),
         (V3, "training_meta")]
GENUINE_TFLITE = {V2: "mobilenet_v2_1.0_224_quant.tflite", V3: "v3-small_224_1.0_uint8.tflite"}

_VERIFIED: dict[tuple[str, str], object] = {}


def verified(name: str, form: str, run_dir: Path):
    """The variant's factory archive in ``form`` converted (once per run) and its parity record (once per
    test process)."""
    if (name, form) not in _VERIFIED:
        import keras

        from convert.quant import parity

        variant = resolve(name)
        root, out = fixtures.cached_extracted(name, form=form), quant_outputs(name, run_dir, form)
        twin = keras.saving.load_model(out / variant.family.twin_file(variant))
        _VERIFIED[name, form] = parity.verify(variant, root, out, twin=twin, random_count=4)
    return _VERIFIED[name, form]


def genuine_logits_tensor(path: Path) -> str:
    """The logits tensor of one of Google's ``.tflite`` files: the input of its final SOFTMAX, else its output."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    tensors = it.get_tensor_details()
    last = it._get_ops_details()[-1]
    if last["op_name"] == "SOFTMAX":
        return tensors[last["inputs"][0]]["name"]
    return it.get_output_details()[0]["name"]


@pytest.mark.parametrize("name,form", FORMS)
def test_every_form_converts_and_passes_the_three_proofs(name, form, run_dir):
    record = verified(name, form, run_dir)
    q = record.quant
    assert record.passed and q.passed, (q.floats, q.twin, q.tflite)
    assert q.twin[0].max_steps <= 1.0 and q.tflite.top1_agree == q.inputs
    if form == "training_meta":  # the .meta is passed over, with its reason; the frozen graph's constants
        assert q.reference_kind == "frozen_pb" and q.ranges == "constants"
        (passed_over,) = q.passed_over
        assert ".meta: a training graph" in passed_over and "FakeQuant range(s) updated by the graph" in passed_over
        assert "batch norm(s) in training mode" in passed_over and "dropout" in passed_over
    else:  # the inference graph with variables
        assert q.reference_kind == ("eval_pbtxt" if name == V1 else "ckpt_meta") and q.ranges == "variables"
        assert q.passed_over == []
    # the record says which graph was the reference, in JSON without NaN
    doc = json.loads(json.dumps(record.to_json(), allow_nan=False))
    assert doc["quant"]["reference_kind"] == q.reference_kind and doc["reference_graph"] == q.reference


@pytest.mark.genuine
@pytest.mark.parametrize("name", [V2, V3])
def test_tflite_names_logits_are_those_of_googles_own_file(name, run_dir):
    """In the ``tflite_names`` form the finder's logits tensor is the one Google's .tflite file names (V2 ``output``,
    no softmax; V3 ``MobilenetV3/Logits/SpatialSqueeze``); in slim's form it is past ``Logits/output``."""
    from convert.parity import choose_reference

    expected = genuine_logits_tensor(GENUINE / GENUINE_TFLITE[name])
    assert expected == {V2: "output", V3: "MobilenetV3/Logits/SpatialSqueeze"}[name]
    assert verified(name, "tflite_names", run_dir).quant.reference_logits == f"{expected}:0"
    slim = choose_reference(fixtures.cached_extracted(name), resolve(name)).endpoints
    # slim's name, before the softmax's flatten (V2's slim form also keeps the top-level "output" alias of Google's
    # frozen graphs beside it: the same values)
    assert slim.logits in (f"{resolve(name).family.scope}/Logits/output:0", *(["output:0"] if name == V2 else []))
    assert slim.softmax == f"{resolve(name).family.scope}/Predictions/Softmax"


def test_v1_names_are_slims_own():
    """V1's .tflite names (``Logits/SpatialSqueeze`` into ``Predictions``) are slim's: one form covers both."""
    from convert.factory.graphs import factory_of

    assert factory_of("v1-quant").quant.tflite_naming == "slim"
    assert resolve(V1).family.nodes.logits == "MobilenetV1/Logits/SpatialSqueeze:0"


def _frozen_only(name: str, tmp_path: Path) -> Path:
    """A copy of the slim-form extraction without its eval graphs and ``.meta`` files: the frozen graph is left."""
    root = tmp_path / "frozen-only"
    shutil.copytree(fixtures.cached_extracted(name), root,
                    ignore=lambda d, files: [f for f in files if f.endswith((".meta", "_eval.pbtxt"))])
    return root


@pytest.mark.parametrize("name", [V2])
def test_both_routes_on_one_archive_give_the_same_quantizers_and_figures(name, run_dir, tmp_path):
    """The same archive read through its graph's variables and through the frozen graph alone: the same
    quantizers, the same range values, the same checkpoint variables consumed, the same proofs."""
    from convert.quant import parity

    variant = resolve(name)
    with_vars = parity.open_quant_archive(fixtures.cached_extracted(name), variant)
    frozen_root = _frozen_only(name, tmp_path)
    frozen = parity.open_quant_archive(frozen_root, variant)
    assert frozen.reference.kind == "frozen_pb" and with_vars.reference.kind != "frozen_pb"
    assert all(q.from_constants for q in frozen.quantizers) and not any(q.from_constants for q in with_vars.quantizers)
    key = lambda q: (q.node, q.key, q.checkpoint_vars)  # noqa: E731
    assert sorted(map(key, frozen.quantizers)) == sorted(map(key, with_vars.quantizers))
    by_node = {q.node: q for q in with_vars.quantizers}
    assert all(np.float32(q.min) == np.float32(by_node[q.node].min) and
               np.float32(q.max) == np.float32(by_node[q.node].max) for q in frozen.quantizers)
    out = quant_outputs(name, run_dir)  # converted through the variables (tests/test_quant.py proves it so)
    record = parity.verify(variant, frozen_root, out, archive=frozen, random_count=2)
    assert record.passed and record.quant.reference_kind == "frozen_pb" and record.quant.ranges == "constants"


def _frozen_walk(tmp_path: Path):
    """V1's archive with its frozen graph alone: opened, and the frozen graph's quantizers as walked (no ranges read)."""
    from convert.quant import parity
    from convert.quant.walk import walk

    opened = parity.open_quant_archive(_frozen_only(V1, tmp_path), resolve(V1))
    return opened, walk(opened.reference.graph_def)


def test_a_range_constant_that_differs_from_its_variable_is_named(tmp_path):
    from convert.quant.walk import QuantGraphError, read_ranges

    opened, quantizers = _frozen_walk(tmp_path)
    bad = quantizers[3]
    changed = [dataclasses.replace(q, min=q.min - 0.5) if q is bad else q for q in quantizers]
    with pytest.raises(QuantGraphError) as exc:
        read_ranges(changed, str(opened.checkpoint))
    assert bad.node in str(exc.value) and bad.min_var in str(exc.value) and "differs" in str(exc.value)


def test_a_range_variable_of_no_quantizer_and_a_quantizer_without_variables_are_named(tmp_path):
    from convert.quant.walk import QuantGraphError, read_ranges

    opened, quantizers = _frozen_walk(tmp_path)
    dropped = quantizers[5]
    with pytest.raises(QuantGraphError) as exc:
        read_ranges([q for q in quantizers if q is not dropped], str(opened.checkpoint))
    assert "match no FakeQuant node" in str(exc.value) and dropped.min_var in str(exc.value)
    renamed = [dataclasses.replace(q, node="Elsewhere/FakeQuantWithMinMaxVars", min_var="Elsewhere/min",
                                   max_var="Elsewhere/max") if q is dropped else q for q in quantizers]
    with pytest.raises(QuantGraphError) as exc:
        read_ranges(renamed, str(opened.checkpoint))
    assert "Elsewhere/FakeQuantWithMinMaxVars" in str(exc.value) and "matches no range variables" in str(exc.value)


def test_a_graph_without_the_head_conv_or_its_input_says_what_was_looked_for(tmp_path):
    from convert.archive import frozen_graph
    from convert.endpoints import EndpointError, find_endpoints, training_signals
    from convert.parity import load_graph_def

    variant = resolve(V2)
    graph_def = load_graph_def(frozen_graph(fixtures.cached_extracted(V2), variant))
    assert training_signals(graph_def, variant.family.scope) == []
    with pytest.raises(EndpointError) as exc:
        find_endpoints(graph_def, "MobilenetV1", "frozen.pb")
    assert "MobilenetV1/Logits/Conv2d_1c_1x1/weights" in str(exc.value) and "found 0" in str(exc.value)
    assert "MobilenetV2/Logits/Conv2d_1c_1x1/weights" in str(exc.value)  # what the graph does hold
    for node in graph_def.node:  # the input fed from elsewhere: no placeholder
        if node.name == "input":
            node.op = "Const"
    with pytest.raises(EndpointError) as exc:
        find_endpoints(graph_def, variant.family.scope, "frozen.pb")
    assert "float Placeholder" in str(exc.value) and "found 0" in str(exc.value)


def test_quantized_records_write_null_for_what_was_not_measured(run_dir):
    """A quantized V3 row's gate rewrite has no top-5 figure (the float proof measures top-1): null, never the
    top-1 count copied; a figure absent is null, never NaN."""
    from convert.records import FloatFigures, ParityRecord, QuantParity, Source

    record = verified(V3, "tflite_names", run_dir)
    (gate,) = record.rewrites.values()
    assert gate.top5_agree is None and gate.no_top_max_abs_diff == record.quant.floats[1].no_top_max_abs_diff
    q = dataclasses.replace(record.quant, floats=[record.quant.floats[0],
                                                  dataclasses.replace(record.quant.floats[1], no_top_max_abs_diff=None)])
    assert isinstance(q.floats[1], FloatFigures) and isinstance(q, QuantParity)
    row = ParityRecord.of_quant(resolve(V3), q, Source(), record.sha256, "tf", "keras", "now", 4)
    doc = json.loads(json.dumps(row.to_json(), allow_nan=False))
    assert doc["rewrites"]["gate_1/6"]["no_top_max_abs_diff"] is None and doc["rewrites"]["gate_1/6"]["top5_agree"] is None
