"""The twin as an 8-bit ``.tflite``, and a LiteRT runner for it and for the archive's own ``.tflite``.

Conversion takes the legacy uint8 path, the one that gives the archives' own format (uint8 weights with
zero points, narrow range; uint8 input): the twin's forward pass is traced as a frozen graph, every weight a
constant (``Model.stateless_call`` with the weights' values as ``tf.constant`` inside a ``tf.function``:
public Keras 3 and TF), and ``tf.compat.v1.lite.TFLiteConverter`` converts that graph (:func:`frozen_converter`) with
``inference_type=tf.uint8`` and the archive's input quantization as ``quantized_input_stats``, as the
archives' own files were made. (TF 2.21's int8 path, ``from_keras_model`` + ``Optimize.DEFAULT``, cannot
carry the archives' asymmetric weight ranges. The SavedModel route, ``model.export`` then
``from_saved_model``, gives files with the same outputs on every verify input but takes 20-30x as long:
measured 30 s against 1.4 s for v3-small, 1.0 s for V2 96_35, 0.5 s for V1 0.25_128.) The input
quantization is read from the archive's ``.tflite``: V1/V2 (1/128, 128), V3 (1/127, 128).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..env import quiet_tf
from ..errors import ConversionError
from ..timing import timed

quiet_tf()  # the v1 converter's deprecation notices


class TfliteInputError(ConversionError):
    """A ``.tflite`` whose input does not fit the archive's graph (size, type)."""


@dataclass(frozen=True)
class InputQuant:
    """A uint8 ``.tflite`` input: real value = (q - zero_point) · scale."""

    scale: float
    zero_point: int
    shape: tuple[int, ...]

    @property
    def stats(self) -> tuple[float, float]:
        """The converter's ``quantized_input_stats`` (mean, std): real = (q - mean) / std."""
        return float(self.zero_point), 1.0 / self.scale

    def to_real(self, q: np.ndarray) -> np.ndarray:
        return ((q.astype(np.float32) - self.zero_point) * np.float32(self.scale)).astype(np.float32)

    def to_uint8(self, x: np.ndarray) -> np.ndarray:
        """Real inputs (in [-1, 1]) quantized as TFLite's QUANTIZE does: ``round(x / scale) + zero_point``,
        clipped to 0..255 (values already on the grid map back exactly: ``to_uint8(to_real(q)) == q``)."""
        q = np.round(np.asarray(x, np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(q, 0, 255).astype(np.uint8)


def interpreter(path: str | Path):
    """A LiteRT interpreter of ``path``, tensors allocated, on TFLite's builtin kernels.

    Both ``.tflite`` files of a comparison run on the same kernels, without the default XNNPACK
    delegate: XNNPACK takes over a different set of partitions in each file (25 in an archive's V3-large
    ``.tflite``, 22 in ours) and rounds its quantized ops its own way, so it adds disagreements the files
    do not have. Measured on the 41 factory archives, 16 seeded inputs each: with XNNPACK, top-1 differed
    on 1 input of V3-large (its two best classes 3 output steps apart); on the builtin kernels, on none.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        it = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise TfliteInputError(f"cannot load {path} as a TFLite model: {exc}") from None
    return it


@dataclass(frozen=True)
class TensorDetail:
    """One input or output tensor of a LiteRT interpreter (its ``get_*_details()`` dict, read once)."""

    index: int
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    scale: float  # 0.0: not quantized
    zero_point: int

    @classmethod
    def of(cls, detail: dict) -> TensorDetail:
        scale, zero_point = detail["quantization"]
        return cls(int(detail["index"]), str(detail["name"]), np.dtype(detail["dtype"]),
                   tuple(int(d) for d in detail["shape"]), float(scale), int(zero_point))


def _io(it) -> tuple[TensorDetail, TensorDetail]:
    """The interpreter's (first) input and output."""
    return TensorDetail.of(it.get_input_details()[0]), TensorDetail.of(it.get_output_details()[0])


def input_quant(path: str | Path, rows: int | None = None) -> InputQuant:
    """The uint8 input of a ``.tflite``. With ``rows``, an input that is not [1, rows, rows, 3] uint8 is a
    :class:`TfliteInputError` (the archive's ``.tflite`` must match its graph's input size)."""
    inp, _ = _io(interpreter(path))
    if inp.dtype != np.uint8 or not inp.scale:
        raise TfliteInputError(f"{path}: input {inp.name!r} is {inp.dtype.name} with quantization "
                               f"({inp.scale}, {inp.zero_point}); a quantized archive's .tflite takes uint8")
    if rows is not None and inp.shape != (1, rows, rows, 3):
        raise TfliteInputError(f"{path}: input shape {list(inp.shape)} does not match the graph's input "
                               f"[1, {rows}, {rows}, 3]")
    return InputQuant(inp.scale, inp.zero_point, inp.shape)


class TfliteRunner:
    """One LiteRT interpreter of a uint8 ``.tflite`` (built once), run on batches of images."""

    def __init__(self, path: str | Path):
        self.path = path
        self._it = interpreter(path)
        self.input, self.output = _io(self._it)

    @timed("tflite inference")
    def __call__(self, images_uint8: np.ndarray) -> np.ndarray:
        """The dequantized outputs, one row per image (logits or probabilities: whatever the file outputs);
        one image at a time (the batch is 1)."""
        inp, out, rows = self.input, self.output, []
        for image in images_uint8:
            self._it.set_tensor(inp.index, image[None].astype(inp.dtype))
            self._it.invoke()
            raw = self._it.get_tensor(out.index).reshape(-1).astype(np.float32)
            rows.append((raw - out.zero_point) * out.scale if out.scale else raw)
        return np.stack(rows)


def run_tflite(path: str | Path, images_uint8: np.ndarray) -> np.ndarray:
    """:class:`TfliteRunner` of ``path`` run once on ``images_uint8``."""
    return TfliteRunner(path)(images_uint8)


def output_is_softmax(path: str | Path) -> bool:
    """Whether the ``.tflite`` ends in a SOFTMAX (its output is probabilities, not logits): a uint8 output
    quantized with scale 1/256 and zero point 0 is the converter's fixed softmax quantization."""
    _, out = _io(interpreter(path))
    return abs(out.scale - 1 / 256) < 1e-9 and out.zero_point == 0


def frozen_trace(model, shape) -> tuple:
    """``model``'s forward pass (inference) traced as a frozen graph for input ``shape``: the GraphDef, its one
    placeholder's name and its one output's name. Every weight is a ``Const`` node (``Model.stateless_call`` on
    ``tf.constant`` values created inside the ``tf.function``); anything else is a ConversionError."""
    import tensorflow as tf

    trainable = [v.numpy() for v in model.trainable_variables]
    fixed = [v.numpy() for v in model.non_trainable_variables]

    @tf.function
    def forward(x):  # constants created inside the trace are Const nodes: the graph is frozen as it is built
        y, _ = model.stateless_call([tf.constant(a) for a in trainable], [tf.constant(a) for a in fixed], x,
                                    training=False)
        return y

    concrete = forward.get_concrete_function(tf.TensorSpec(list(shape), tf.float32, name=model.inputs[0].name))
    if len(concrete.captured_inputs) or len(concrete.inputs) != 1 or len(concrete.outputs) != 1:
        raise ConversionError(f"the trace of {model.name} is not a frozen graph of one input and one output "
                              f"({len(concrete.inputs)} inputs, {len(concrete.captured_inputs)} captured, "
                              f"{len(concrete.outputs)} outputs)")
    [placeholder] = [t.name.split(":")[0] for t in concrete.inputs]
    [output] = [t.name.split(":")[0] for t in concrete.outputs]
    return concrete.graph.as_graph_def(), placeholder, output


def frozen_converter(model, shape):
    """TF's v1 converter (``tf.compat.v1.lite.TFLiteConverter`` on a GraphDef) over :func:`frozen_trace`, and
    the placeholder's name. A frozen graph needs no variable freezing: on V2 1.0_224 this converts in 0.35 s,
    where the v2 converter's concrete-function route (which re-freezes and prunes the function) takes 1.1 s, for
    a model of identical outputs (max |Δ| 0.0 on the verify batch)."""
    import tensorflow as tf

    graph_def, placeholder, output = frozen_trace(model, shape)
    converter = tf.compat.v1.lite.TFLiteConverter(graph_def, None, None,
                                                  input_arrays_with_shape=[(placeholder, list(shape))],
                                                  output_arrays=[output])
    return converter, placeholder


@timed("tflite conversion")
def tflite_bytes(twin, quant: InputQuant) -> bytes:
    """The twin as a uint8 ``.tflite`` (bytes, nothing written), its input quantized as ``quant`` (the
    archive's ``.tflite`` input), batch 1."""
    import tensorflow as tf

    converter, placeholder = frozen_converter(twin, quant.shape)
    converter.inference_type = tf.uint8
    converter.quantized_input_stats = {placeholder: quant.stats}
    return converter.convert()
