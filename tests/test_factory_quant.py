"""The archive factory's quantization-aware (QAT) archives, held against Google's own `.tflite` files.

One variant per family, the smallest (V1 0.25_128, V2 96_35, V3 small: the only V3 uint8 with a genuine
file here), built once into the shared factory cache. The expected structure comes from the genuine files
vendored in tests/data/genuine (V2 quant 1.0_224, v3-small uint8: same layer sequence as the factory's
variants, other widths) and, for V1 (no genuine file vendored), from the published listing of Google's
`mobilenet_v1_1.0_224_quant.tflite` (31 ops: CONV_2D, 13 x (DEPTHWISE_CONV_2D, CONV_2D), AVERAGE_POOL_2D,
CONV_2D, RESHAPE, SOFTMAX; tensor names `MobilenetV1/MobilenetV1/Conv2d_<i>_<kind>/Relu6`, weights
`…/weights_quant/FakeQuantWithMinMaxVars`, logits `MobilenetV1/Logits/Conv2d_1c_1x1/BiasAdd`).

The op list is read from the flatbuffer with LiteRT's generated schema module (`Interpreter` has no public
op list); tensors, their quantization and the weight values through the public `get_tensor_details()` /
`get_tensor()`.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from convert import archive
from convert.factory import fixtures
from convert.manifest import default_manifest

SMALLEST = {"v1-quant": "mobilenet_v1_0.25_128_quant", "v2-quant": "quantized_v2_96_35",
            "v3-quant": "v3-small_224_1.0_uint8"}
# the vendored genuine files and their sha256 (tests/data/genuine/README.md, from ../shared/reference/README.md)
GENUINE = {"v2-quant": ("mobilenet_v2_1.0_224_quant.tflite",
                        "f08d447cde49b4e0446428aa921aff0a14ea589fa9c5817b31f83128e9a43c1d"),
           "v3-quant": ("v3-small_224_1.0_uint8.tflite",
                        "da341cf06fa50127a72dcbeb140ee5ee98013630aa044260a4c3d45c43fc89ce")}
V1_OPS = ["CONV_2D", *["DEPTHWISE_CONV_2D", "CONV_2D"] * 13, "AVERAGE_POOL_2D", "CONV_2D", "RESHAPE", "SOFTMAX"]
V1_NAMES = {f"MobilenetV1/MobilenetV1/Conv2d_{i}_{k}/{leaf}" for i in range(1, 14) for k in ("depthwise", "pointwise")
            for leaf in ("Relu6", "weights_quant/FakeQuantWithMinMaxVars")} | {
    "MobilenetV1/MobilenetV1/Conv2d_0/Relu6", "MobilenetV1/MobilenetV1/Conv2d_0/weights_quant/FakeQuantWithMinMaxVars",
    "MobilenetV1/Logits/Conv2d_1c_1x1/BiasAdd", "MobilenetV1/Logits/Conv2d_1c_1x1/weights_quant/FakeQuantWithMinMaxVars"}
# (scale, zero point) of the uint8 input and the output: the genuine files' (V1: the issue's, Google's V1 file)
V1_INPUT, SOFTMAX_OUTPUT = (1 / 128, 128), (1 / 256, 0)
POOLING_AND_SHAPE = ("AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX")  # ops whose output is not re-quantized

pytestmark = pytest.mark.genuine


@pytest.fixture(scope="module", params=list(SMALLEST))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def built(family):
    """(variant, extraction root) of the cached factory archive."""
    variant = default_manifest().resolve(SMALLEST[family])
    return variant, fixtures.cached_extracted(variant.name)


class Lite:
    """A .tflite file read with LiteRT: its op list and its tensors."""

    def __init__(self, path: Path):
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.interpreter = Interpreter(
            model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter.allocate_tensors()
        model = schema.Model.GetRootAs(path.read_bytes(), 0)
        names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
        graph = model.Subgraphs(0)
        self.ops = []
        for i in range(graph.OperatorsLength()):
            code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
            self.ops.append(names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
        self.tensors = self.interpreter.get_tensor_details()

    def uint8_names(self) -> set[str]:
        """Names of the uint8 tensors; MLIR joins a fused tensor's TF node names with ';' (split here)."""
        return {part for t in self.tensors if t["dtype"] == np.uint8 for part in t["name"].split(";")}

    def weights(self) -> list[dict]:
        return [t for t in self.tensors if t["dtype"] == np.uint8 and "weights_quant" in t["name"]]

    def io(self, which: str) -> dict:
        (detail,) = getattr(self.interpreter, f"get_{which}_details")()
        return detail


def genuine(reference_dir: Path, family: str) -> Lite:
    name, sha = GENUINE[family]
    path = reference_dir / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, f"{path} is not the vendored genuine file"
    return Lite(path)


@pytest.fixture(scope="module")
def ours(built) -> Lite:
    variant, root = built
    return Lite(archive.tflite_file(root, variant))


def test_op_sequence_is_the_genuine_one(family, ours, reference_dir):
    """Same op kinds in the same order (and so the same counts) as Google's file of the family."""
    expected = V1_OPS if family == "v1-quant" else genuine(reference_dir, family).ops
    assert ours.ops == expected, Counter(ours.ops) - Counter(expected) or Counter(expected) - Counter(ours.ops)


def test_quantized_tensor_names_are_the_genuine_ones(family, ours, reference_dir):
    """Every quantized tensor of Google's file (the TF node it was converted from) is one of ours: weights
    `…/weights_quant/FakeQuantWithMinMaxVars`, activations `…/Relu6`, `…/add_fold`, `…/add`, `…/BiasAdd`,
    V3's `…/hard_swish/mul_1` and squeeze-excite gate; as many uint8 tensors.

    Two documented differences. The constants of V3's squeeze-excite gate (3 and 0.16667, quantized by
    the converter: the graph has no FakeQuant on them) are one uint8 tensor per block named `…/add/y`,
    `…/mul/y` in Google's (TOCO) file, while TF 2.21's MLIR converter shares one tensor per value among
    the blocks (`tfl.pseudo_qconst*`). And the factory's V3 graph names the logits squeeze `Logits/Squeeze`
    (the float factory's V3 builder, shared), Google's `Logits/SpatialSqueeze`."""
    if family == "v1-quant":
        assert V1_NAMES <= ours.uint8_names(), sorted(V1_NAMES - ours.uint8_names())
        return
    reference = genuine(reference_dir, family)
    constants = {n for n in reference.uint8_names() if n.endswith("/y")}
    squeeze = {"MobilenetV3/Logits/SpatialSqueeze"} & reference.uint8_names()
    want = reference.uint8_names() - constants - squeeze
    assert want <= ours.uint8_names(), sorted(want - ours.uint8_names())
    if squeeze:  # MLIR's name for the reshape's output: the node's, made unique ("…/Squeeze1")
        assert [n for n in ours.uint8_names() if n.startswith("MobilenetV3/Logits/Squeeze")]
    shared = {n for n in ours.uint8_names() if n.startswith("tfl.pseudo_qconst")}
    assert len(shared) == len({float(np.float32(v)) for v in (3.0, 0.16667)}) if constants else not shared
    assert (sum(t["dtype"] == np.uint8 for t in ours.tensors) - len(shared) ==
            sum(t["dtype"] == np.uint8 for t in reference.tensors) - len(constants))


def test_weights_are_narrow_range_uint8(family, ours, reference_dir):
    """Per-tensor uint8 weights that never use the value 0 (narrow range: 1..255), as in Google's files;
    one weight tensor per conv op."""
    files = [ours] + ([genuine(reference_dir, family)] if family in GENUINE else [])
    for lite in files:
        weights = lite.weights()
        assert len(weights) == sum(op in ("CONV_2D", "DEPTHWISE_CONV_2D") for op in lite.ops)
        lowest = {t["name"]: int(lite.interpreter.get_tensor(t["index"]).min()) for t in weights}
        assert min(lowest.values()) >= 1, {k: v for k, v in lowest.items() if v < 1}
        assert all(len(t["quantization_parameters"]["scales"]) == 1 for t in weights)  # per tensor
    assert max(int(ours.interpreter.get_tensor(t["index"]).max()) for t in ours.weights()) == 255


def test_input_and_output_quantization_are_the_genuine_ones(family, built, ours, reference_dir):
    variant, _ = built
    rows = variant.rows
    got_in, got_out = ours.io("input"), ours.io("output")
    assert got_in["name"] == "input" and list(got_in["shape"]) == [1, rows, rows, 3] and got_in["dtype"] == np.uint8
    assert got_out["dtype"] == np.uint8 and list(got_out["shape"]) == [1, 1001]
    if family == "v1-quant":
        assert got_in["quantization"] == pytest.approx(V1_INPUT)
        assert got_out["name"] == "MobilenetV1/Predictions/Reshape_1"
        assert got_out["quantization"] == pytest.approx(SOFTMAX_OUTPUT)
        return
    reference = genuine(reference_dir, family)
    assert got_in["quantization"] == pytest.approx(reference.io("input")["quantization"])
    assert got_out["name"] == reference.io("output")["name"]
    if reference.ops[-1] == "SOFTMAX":  # V3: probabilities; V2: logits, whose range is the archive's own
        assert got_out["quantization"] == pytest.approx(reference.io("output")["quantization"])


def test_logits_are_peaked(ours, built):
    """The factory's head gain: on seeded inputs the top class is unique in the uint8 output on nearly every
    input (a flat random head ties classes in a 1/256-step softmax on most). Not on every one: two classes of a
    random head can be as close as a trained one's, and which of 16 inputs ties then depends on the float
    rounding of the machine that built the archive (one of 16 tied for V1 and V3 here on 2026-12-07, none
    on the machine before)."""
    variant, _ = built
    rng = np.random.default_rng(16)
    it = ours.interpreter
    tops = []
    for _ in range(16):
        it.set_tensor(ours.io("input")["index"], rng.integers(0, 256, (1, variant.rows, variant.rows, 3), np.uint8))
        it.invoke()
        tops.append(np.sort(it.get_tensor(ours.io("output")["index"])[0].astype(int))[-2:])
    assert sum(best > second for second, best in tops) >= 14, tops


def _graph_def(path: Path):
    import tensorflow as tf
    from google.protobuf import text_format

    if path.suffix == ".meta":
        meta = tf.compat.v1.MetaGraphDef()
        meta.ParseFromString(path.read_bytes())
        return meta.graph_def
    return text_format.Parse(path.read_text(), tf.compat.v1.GraphDef())


def test_archive_graph_quantizers_read_checkpoint_ranges(family, built, reference_dir):
    """The archive's graph has one FakeQuantWithMinMaxVars per weight (narrow range) and one per re-quantized
    activation (wide): as many as the genuine file has conv ops plus ops other than pools/reshapes/softmax.
    Each reads two range variables the checkpoint holds; the V1 checkpoint has no EMA shadows."""
    import tensorflow as tf

    variant, root = built
    graph = _graph_def(archive.reference_graph(root, variant))
    nodes = {n.name: n for n in graph.node}
    quantizers = [n for n in graph.node if n.op == "FakeQuantWithMinMaxVars"]
    ops = V1_OPS if family == "v1-quant" else genuine(reference_dir, family).ops
    weights = sum(op in ("CONV_2D", "DEPTHWISE_CONV_2D") for op in ops)
    activations = sum(op not in POOLING_AND_SHAPE for op in ops)
    assert len(quantizers) == weights + activations
    assert sum(n.attr["narrow_range"].b for n in quantizers) == weights
    assert all(n.attr["num_bits"].i == 8 for n in quantizers)
    prefix, _ = archive.find_checkpoint(root, variant)
    stored = dict(tf.train.list_variables(str(prefix)))
    ranges = set()
    for q in quantizers:
        for read in q.input[1:3]:
            variable = nodes[read.split(":")[0]].input[0]  # <var>/read -> <var>
            assert nodes[variable].op == "VariableV2" and variable in stored, (q.name, variable)
            ranges.add(variable)
    assert len(ranges) == 2 * len(quantizers)
    shadows = [name for name in stored if name.endswith("ExponentialMovingAverage")]
    assert (not shadows) if family == "v1-quant" else shadows


def test_float_graph_is_untouched_by_the_quant_hooks():
    """The float factory graph holds no quantization op (its archives stay byte-identical)."""
    graph, _ = fixtures.build_eval_graph(default_manifest().resolve("v3-small_224_1.0_float"))
    ops = {op.type for op in graph.get_operations()}
    assert "FakeQuantWithMinMaxVars" not in ops and "FusedBatchNorm" in ops
    assert not [op.name for op in graph.get_operations() if "_quant" in op.name or "_Fold" in op.name]
