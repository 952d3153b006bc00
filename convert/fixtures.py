"""Archive factory: slim MobileNetV2 TF1 graphs and official-layout checkpoint archives.

The official archives cannot be downloaded on this project's machines, so the factory builds archives
that are structurally the real thing: the same members, the same variable set (raw value,
``/ExponentialMovingAverage`` shadow and two ``RMSProp`` slots per trainable, BN moving statistics
without shadows, ``global_step``) and the same graph node names as the genuine 2018 release. Values are
seeded, realistic and data-calibrated (BN moving statistics are the batch statistics of the EMA network
on a seeded batch), and the raw values differ visibly from the EMA shadows.

CLI: ``python -m convert.fixtures NAME... --out DIR [--seed N]``.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cli import quiet_tf, run_cli
from .manifest import PROJECT_ROOT, Variant, default_manifest

quiet_tf()

SCOPE = "MobilenetV2"
BN_EPSILON = 1e-3
EMA = "ExponentialMovingAverage"
SLOTS = ("RMSProp", "RMSProp_1")
INPUT_NODE = "input"
LOGITS_NODE = f"{SCOPE}/Logits/output"
PREDICTIONS_NODE = f"{SCOPE}/Predictions/Reshape_1"
MEMBER_SUFFIXES = (".ckpt.data-00000-of-00001", ".ckpt.index", ".ckpt.meta", "_frozen.pb", "_eval.pbtxt", "_info.txt")
ARCHIVE_MTIME = 1522108800  # 2018-03-27, the release date; fixed so archives are byte-reproducible

# (expansion factor, output channels before alpha, stride) of slim's V2_DEF, block ids 0..16.
BLOCKS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 64, 2), (6, 64, 1),
          (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2), (6, 160, 1), (6, 160, 1),
          (6, 320, 1))
FIRST_CHANNELS, LAST_CHANNELS = 32, 1280


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """slim's ``_make_divisible``: nearest multiple of ``divisor``, at least ``min_value``, the 10 % rule."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def block_scope(block_id: int) -> str:
    return f"{SCOPE}/expanded_conv" + (f"_{block_id}" if block_id else "")


@dataclass(frozen=True)
class Layer:
    """One conv layer of the slim graph: its scope, kind, kernel size, channels, stride."""

    scope: str
    kind: str  # "conv" (weights + BN), "depthwise" (depthwise_weights + BN), "logits" (weights + biases)
    kernel: int
    cin: int
    cout: int
    stride: int = 1
    relu6: bool = True


def architecture(alpha: float, classes: int = 1001) -> list[Layer]:
    """The slim MobileNetV2 conv layers for a width multiplier, in graph order."""
    layers = [Layer(f"{SCOPE}/Conv", "conv", 3, 3, make_divisible(FIRST_CHANNELS * alpha), 2)]
    cin = layers[0].cout
    for block_id, (factor, channels, stride) in enumerate(BLOCKS):
        scope, cout = block_scope(block_id), make_divisible(channels * alpha)
        inner = make_divisible(cin * factor) if factor > 1 else cin
        if inner > cin:
            layers.append(Layer(f"{scope}/expand", "conv", 1, cin, inner))
        layers.append(Layer(f"{scope}/depthwise", "depthwise", 3, inner, inner, stride))
        layers.append(Layer(f"{scope}/project", "conv", 1, inner, cout, relu6=False))
        cin = cout
    last = make_divisible(LAST_CHANNELS * alpha) if alpha > 1.0 else LAST_CHANNELS
    layers.append(Layer(f"{SCOPE}/Conv_1", "conv", 1, cin, last))
    layers.append(Layer(f"{SCOPE}/Logits/Conv2d_1c_1x1", "logits", 1, last, classes, relu6=False))
    return layers


def layer_variables(layer: Layer) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Model variables of one layer: name -> (shape, trainable)."""
    k, s = layer.kernel, layer.scope
    if layer.kind == "depthwise":
        out = {f"{s}/depthwise_weights": ((k, k, layer.cin, 1), True)}
    else:
        out = {f"{s}/weights": ((k, k, layer.cin, layer.cout), True)}
    if layer.kind == "logits":
        out[f"{s}/biases"] = ((layer.cout,), True)
        return out
    c = layer.cout
    out.update({f"{s}/BatchNorm/gamma": ((c,), True), f"{s}/BatchNorm/beta": ((c,), True),
                f"{s}/BatchNorm/moving_mean": ((c,), False), f"{s}/BatchNorm/moving_variance": ((c,), False)})
    return out


def model_variables(variant: Variant) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Every model variable of the slim graph (what the eval graph holds): name -> (shape, trainable)."""
    out: dict[str, tuple[tuple[int, ...], bool]] = {}
    for layer in architecture(variant.depth_multiplier, variant.classes):
        out.update(layer_variables(layer))
    return out


def checkpoint_variables(variant: Variant) -> dict[str, tuple[tuple[int, ...], str]]:
    """The official checkpoint's variable table: name -> (shape, dtype name)."""
    table: dict[str, tuple[tuple[int, ...], str]] = {"global_step": ((), "int64")}
    for name, (shape, trainable) in model_variables(variant).items():
        table[name] = (shape, "float32")
        if trainable:
            for suffix in (EMA, *SLOTS):
                table[f"{name}/{suffix}"] = (shape, "float32")
    return table


# --------------------------------------------------------------------------------------------------
# The graph


def _forward(tf, x, variant: Variant, weight, batch_norm):
    """Build slim's inference graph on ``x`` with slim's node names.

    ``weight(name)`` returns the tensor for a model variable; ``batch_norm(x, scope)`` applies the BN of a
    layer scope. Returns the logits tensor (``MobilenetV2/Logits/output``).
    """
    v1 = tf.compat.v1

    def conv(net, layer: Layer):
        with v1.name_scope(layer.scope + "/"):
            if layer.kind == "depthwise":
                net = tf.nn.depthwise_conv2d(net, weight(f"{layer.scope}/depthwise_weights"),
                                             [1, layer.stride, layer.stride, 1], "SAME", name="depthwise")
            else:
                net = tf.nn.conv2d(net, weight(f"{layer.scope}/weights"), [1, layer.stride, layer.stride, 1],
                                   "SAME", name="Conv2D")
            if layer.kind == "logits":
                return tf.nn.bias_add(net, weight(f"{layer.scope}/biases"), name="BiasAdd")
            net = batch_norm(net, layer.scope)
            return tf.nn.relu6(net, name="Relu6") if layer.relu6 else tf.identity(net, name="Identity")

    layers = {layer.scope: layer for layer in architecture(variant.depth_multiplier, variant.classes)}
    with v1.name_scope(f"{SCOPE}/"):
        net = tf.identity(x, name="input")
    net = conv(net, layers[f"{SCOPE}/Conv"])
    for block_id in range(len(BLOCKS)):
        scope = block_scope(block_id)
        with v1.name_scope(scope + "/"):
            block_input = net = tf.identity(net, name="input")
        if f"{scope}/expand" in layers:
            net = conv(net, layers[f"{scope}/expand"])
            with v1.name_scope(scope + "/"):
                net = tf.identity(net, name="expansion_output")
        net = conv(net, layers[f"{scope}/depthwise"])
        with v1.name_scope(scope + "/"):
            net = tf.identity(net, name="depthwise_output")
        project = layers[f"{scope}/project"]
        net = conv(net, project)
        with v1.name_scope(scope + "/"):
            residual = layers[f"{scope}/depthwise"].stride == 1 and block_input.shape[-1] == project.cout
            if residual:
                net = tf.raw_ops.Add(x=net, y=block_input, name="add")  # v1 "Add", as the genuine graph
            net = tf.identity(net, name="output")
    net = conv(net, layers[f"{SCOPE}/Conv_1"])
    with v1.name_scope(f"{SCOPE}/"):
        net = tf.identity(net, name="embedding")
    with v1.name_scope(f"{SCOPE}/Logits/"):
        size = int(net.shape[1])  # slim's reduced kernel: the whole final feature map
        net = tf.nn.avg_pool2d(net, [1, size, size, 1], [1, 1, 1, 1], "VALID", name="AvgPool")
        with v1.name_scope(f"{SCOPE}/Logits/Dropout/"):
            net = tf.identity(net, name="Identity")
    net = conv(net, layers[f"{SCOPE}/Logits/Conv2d_1c_1x1"])
    with v1.name_scope(f"{SCOPE}/Logits/"):
        net = tf.squeeze(net, [1, 2], name="Squeeze")
        logits = tf.identity(net, name="output")
    with v1.name_scope(f"{SCOPE}/Predictions/"):
        flat = tf.reshape(logits, [-1, variant.classes], name="Reshape")
        probs = tf.nn.softmax(flat, name="Softmax")
        tf.reshape(probs, tf.shape(logits, name="Shape"), name="Reshape_1")
    return logits


def _inference_bn(tf, weight):
    def batch_norm(x, scope):
        b = f"{scope}/BatchNorm/"
        with tf.compat.v1.name_scope(b):
            y, *_ = tf.raw_ops.FusedBatchNorm(
                x=x, scale=weight(b + "gamma"), offset=weight(b + "beta"), mean=weight(b + "moving_mean"),
                variance=weight(b + "moving_variance"), epsilon=BN_EPSILON, data_format="NHWC",
                is_training=False, name="FusedBatchNorm")
            return y
    return batch_norm


def build_eval_graph(variant: Variant):
    """A fresh ``tf.Graph`` holding slim's eval graph: ref variables (read via ``<name>/read``), the
    ``input`` placeholder and the logits/prediction outputs. Returns (graph, {name: variable})."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    variables, specs = {}, model_variables(variant)
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, variant.rows, variant.rows, 3], name=INPUT_NODE)

        def weight(name):
            if name not in variables:
                shape, trainable = specs[name]
                init = (v1.ones_initializer() if name.endswith(("gamma", "moving_variance"))
                        else v1.zeros_initializer() if name.endswith(("beta", "moving_mean", "biases"))
                        else v1.glorot_uniform_initializer())
                variables[name] = v1.get_variable(name, shape, tf.float32, init, trainable=trainable,
                                                 use_resource=False)
            return variables[name]

        _forward(tf, x, variant, weight, _inference_bn(tf, weight))
    return graph, variables


# --------------------------------------------------------------------------------------------------
# Values


def _calibrated_bn_statistics(variant: Variant, values: dict[str, np.ndarray], rng) -> dict[str, np.ndarray]:
    """BN moving statistics that normalise the network: each BN's batch mean/variance on a seeded
    batch in [-1, 1], computed layer by layer with every earlier BN already normalising (what a
    data-dependent initialisation does)."""
    import tensorflow as tf

    stats: dict[str, np.ndarray] = {}
    graph = tf.Graph()
    with graph.as_default():
        batch = rng.uniform(-1.0, 1.0, (8, variant.rows, variant.rows, 3)).astype(np.float32)

        def batch_norm(x, scope):
            mean, var = tf.nn.moments(x, [0, 1, 2])
            stats[f"{scope}/BatchNorm/moving_mean"], stats[f"{scope}/BatchNorm/moving_variance"] = mean, var
            b = f"{scope}/BatchNorm/"
            return (x - mean) * tf.math.rsqrt(var + BN_EPSILON) * values[b + "gamma"] + values[b + "beta"]

        _forward(tf, tf.constant(batch), variant, lambda name: tf.constant(values[name]), batch_norm)
        with tf.compat.v1.Session(graph=graph) as sess:
            return sess.run(stats)


def checkpoint_values(variant: Variant, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded values for the full official variable table of a variant.

    Trainables: He-scaled kernels, gamma ~ 1, small beta/biases, as the EMA shadow; the raw value is the
    shadow plus 10 % noise (so reading the wrong one is visible in the logits). BN moving statistics are
    calibrated on the EMA network. RMSProp slots are small; ``global_step`` is an int64.
    """
    rng = np.random.default_rng([seed, zlib.crc32(variant.name.encode())])
    specs = model_variables(variant)
    ema: dict[str, np.ndarray] = {}
    for name, (shape, trainable) in sorted(specs.items()):
        if not trainable:
            continue
        leaf = name.rsplit("/", 1)[-1]
        if leaf == "gamma":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif leaf in ("beta", "biases"):
            value = 0.1 * rng.standard_normal(shape)
        else:
            fan_in = shape[0] * shape[1] * (1 if leaf == "depthwise_weights" else shape[2])
            value = np.sqrt(2.0 / fan_in) * rng.standard_normal(shape)
        ema[name] = value.astype(np.float32)
    moving = _calibrated_bn_statistics(variant, ema, rng)
    values: dict[str, np.ndarray] = {"global_step": np.array(int(rng.integers(1_000_000, 9_000_000)), np.int64)}
    for name, shadow in ema.items():
        scale = max(float(shadow.std()), 1e-3) * 0.1
        values[name] = (shadow + scale * rng.standard_normal(shadow.shape)).astype(np.float32)
        values[f"{name}/{EMA}"] = shadow
        values[f"{name}/RMSProp"] = (scale**2 * (0.5 + rng.random(shadow.shape))).astype(np.float32)
        values[f"{name}/RMSProp_1"] = (1e-3 * scale * rng.standard_normal(shadow.shape)).astype(np.float32)
    values.update({name: value.astype(np.float32) for name, value in moving.items()})
    return values


def eval_values(values: dict[str, np.ndarray], variables) -> dict[str, np.ndarray]:
    """What slim's evaluation restores for each model variable: the EMA shadow when there is one."""
    return {name: values.get(f"{name}/{EMA}", values[name]) for name in variables}


# --------------------------------------------------------------------------------------------------
# Writing


def _assign(sess, variables: dict, values: dict[str, np.ndarray]) -> None:
    """Set variables to values in one session run (feeding each initializer's initial value)."""
    sess.run([variables[n].initializer for n in values], {variables[n].initial_value: v for n, v in values.items()})


def _assign_and_save(graph, variables: dict, values: dict[str, np.ndarray], prefix: str, sess):
    """Give every name in ``values`` a ref variable in ``graph`` (creating the ones the graph lacks:
    shadows, slots, ``global_step``), assign the values and save a V2 checkpoint plus its ``.meta``."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with graph.as_default():
        all_vars = dict(variables)
        for name, value in values.items():
            if name not in all_vars:
                all_vars[name] = v1.get_variable(name, value.shape, tf.as_dtype(value.dtype),
                                                 v1.zeros_initializer(), trainable=False, use_resource=False)
        saver = v1.train.Saver(var_list=all_vars)
        _assign(sess, all_vars, values)
        saver.save(sess, prefix, write_state=False)


def write_model_files(variant: Variant, values: dict[str, np.ndarray], out_dir: Path) -> list[Path]:
    """Write the six official members for ``variant`` into ``out_dir``; returns their paths."""
    import tensorflow as tf

    v1 = tf.compat.v1
    name = variant.model_name
    graph, variables = build_eval_graph(variant)
    eval_graph_def = graph.as_graph_def()
    tf.io.write_graph(eval_graph_def, str(out_dir), f"{name}_eval.pbtxt", as_text=True)
    with v1.Session(graph=graph) as sess:
        _assign_and_save(graph, variables, values, str(out_dir / f"{name}.ckpt"), sess)
        _assign(sess, variables, eval_values(values, variables))
        frozen = v1.graph_util.convert_variables_to_constants(
            sess, eval_graph_def, [LOGITS_NODE, PREDICTIONS_NODE])
    (out_dir / f"{name}_frozen.pb").write_bytes(frozen.SerializeToString(deterministic=True))
    (out_dir / f"{name}_info.txt").write_text(f"Model: {name}\nInput: {INPUT_NODE}\nOutput: {PREDICTIONS_NODE}\n")
    return [out_dir / f"{name}{suffix}" for suffix in MEMBER_SUFFIXES]


def _write_tgz(members: list[Path], path: Path) -> None:
    """A reproducible gzip'd tar with every member at the top level under a ``./`` prefix."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                 compresslevel=6) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for member in members:
            info = tarfile.TarInfo(f"./{member.name}")
            info.size, info.mtime, info.mode = member.stat().st_size, ARCHIVE_MTIME, 0o644
            with open(member, "rb") as fh:
                tar.addfile(info, fh)


def build_archive(name: str, out_dir: str | Path, seed: int = 0, keep_files: bool = False) -> Path:
    """Build ``out_dir/mobilenet_v2_{alpha}_{rows}.tgz`` for a variant (atomically); returns its path.

    With ``keep_files`` the unpacked members are kept in ``out_dir/<model_name>/``."""
    variant = default_manifest().resolve(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / variant.archive_filename
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        files_dir = Path(tmp) / variant.model_name
        files_dir.mkdir()
        members = write_model_files(variant, checkpoint_values(variant, seed), files_dir)
        part = Path(tmp) / target.name
        _write_tgz(members, part)
        if keep_files:  # the members first: the archive is what marks a build complete
            kept = out_dir / variant.model_name
            shutil.rmtree(kept, ignore_errors=True)
            os.replace(files_dir, kept)
        os.replace(part, target)
    return target


# --------------------------------------------------------------------------------------------------
# Cache: one folder per (variant, seed, factory version)

FACTORY_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]


def cache_root() -> Path:
    return Path(os.environ.get("MOBILENET_FIXTURES", PROJECT_ROOT / "cache" / "fixtures"))


def cached_dir(name: str, seed: int = 0) -> Path:
    """The cache folder of a (variant, seed), built on first use: ``<model>.tgz`` and ``<model>/`` members."""
    variant = default_manifest().resolve(name)
    folder = cache_root() / f"{variant.model_name}-seed{seed}-{FACTORY_VERSION}"
    if not (folder / variant.archive_filename).exists():
        for stale in cache_root().glob(f"{variant.model_name}-seed{seed}-*"):  # builds of older factory code
            shutil.rmtree(stale, ignore_errors=True)
        build_archive(variant.name, folder, seed, keep_files=True)
    return folder


def cached_archive(name: str, seed: int = 0) -> Path:
    """Path of the cached factory archive of a variant (built on first use)."""
    variant = default_manifest().resolve(name)
    return cached_dir(name, seed) / variant.archive_filename


def cached_checkpoint(name: str, seed: int = 0) -> str:
    """Checkpoint prefix (``…/mobilenet_v2_{alpha}_{rows}.ckpt``) of the cached factory build."""
    variant = default_manifest().resolve(name)
    return str(cached_dir(name, seed) / variant.model_name / f"{variant.model_name}.ckpt")


def publish(names, mirror_dir: str | Path, seed: int = 0, progress: bool = False) -> Path:
    """Place the cached factory archives of ``names`` in ``mirror_dir`` (hard links, else copies), the
    folder a mirror or loopback server serves. Returns ``mirror_dir``."""
    from tqdm import tqdm

    mirror_dir = Path(mirror_dir)
    mirror_dir.mkdir(parents=True, exist_ok=True)
    for name in tqdm(list(names), desc="factory archives", unit="archive", disable=not progress):
        source = cached_archive(name, seed)  # built on first use (~10 s each), then cached
        target = mirror_dir / source.name
        if target.exists() and os.path.samefile(source, target):
            continue
        tmp = mirror_dir / f".{source.name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    return mirror_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.fixtures", description=(
        "Build official-layout MobileNetV2 checkpoint archives (slim TF1 graph, seeded values)."))
    p.add_argument("names", nargs="+", metavar="NAME", help="variants, e.g. 1.0_224 or mobilenet_v2_0.35_96, or 'all'")
    p.add_argument("--out", required=True, help="output folder for mobilenet_v2_{alpha}_{rows}.tgz")
    p.add_argument("--seed", type=int, default=0, help="value seed (default 0)")
    args = p.parse_args(argv)
    from tqdm import tqdm

    variants = default_manifest().select(args.names)
    for variant in tqdm(variants, desc="archives", unit="archive", disable=len(variants) < 2):
        start = time.perf_counter()
        path = build_archive(variant.name, args.out, args.seed)
        tqdm.write(f"{path}  {path.stat().st_size / 1e6:.1f} MB  {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    run_cli(main)
