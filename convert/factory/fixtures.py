"""Archive factory: slim MobileNet TF1 graphs and official-layout checkpoint archives, for every family.

The official archives cannot be downloaded on this project's machines, so the factory builds archives
that are structurally the real thing: the family's archive layout (V1/V2: one checkpoint, eval graph,
frozen graph and info file at the top level; V3: a folder with ``ema/`` and ``pristine/`` checkpoints and
a frozen ``.pb``), the official variable sets (raw values, ``/ExponentialMovingAverage`` shadows,
``RMSProp`` slots, ``global_step``) and slim's node names, from the family's graph builder
(:mod:`.graphs`). Values are seeded, realistic and data-calibrated (BN moving statistics are the batch
statistics of the EMA network on a seeded batch), and the raw values differ visibly from the EMA values.
Quantization-aware variants (``v1-quant``, ``v2-quant``, ``v3-quant``) get contrib.quantize's eval graph,
calibrated range variables and Google's uint8 ``.tflite`` as well (:mod:`.qat`), in their release layouts.

CLI: ``python -m convert.factory NAME... --out DIR [--seed N]``.
"""
from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from ..archive import fill
from ..env import env_setting, quiet_tf, state_root
from ..families.base import BN_LEAVES, MOVING_STATS, ArchiveLayout, CheckpointFile, has_bn, kernel_leaf
from ..fsutil import file_lock
from ..manifest import default_manifest
from ..reference import forward as reference_forward
from ..reference import inference_batch_norm
from ..reference import model_variables as reference_model_variables
from . import qat
from .graphs import factory_of
from .spec import CheckpointRecipe, FactoryLayer, architecture_of

quiet_tf()

BN_EPSILON = 1e-3
EMA = "ExponentialMovingAverage"
SLOTS = ("RMSProp", "RMSProp_1")
ARCHIVE_MTIME = 1522108800  # 2018-03-27; fixed so archives are byte-reproducible


def layer_variables(layer: FactoryLayer) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Model variables of one slim scope: name -> (shape, trainable)."""
    k, s = layer.kernel, layer.scope
    if layer.kind == "depthwise":
        out = {f"{s}/{kernel_leaf(layer.kind)}": ((k, k, layer.cin, 1), True)}
    else:
        out = {f"{s}/weights": ((k, k, layer.cin, layer.cout), True)}
    if not has_bn(layer.kind):
        out[f"{s}/biases"] = ((layer.cout,), True)
        return out
    for leaf in BN_LEAVES:
        out[f"{s}/BatchNorm/{leaf}"] = ((layer.cout,), leaf not in MOVING_STATS)
    return out


def model_variables(variant) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Every model variable of the slim graph (what the eval graph holds): name -> (shape, trainable)."""
    out: dict[str, tuple[tuple[int, ...], bool]] = {}
    for layer in factory_of(variant.family_key).layers(variant):
        out.update(layer_variables(layer))
    return out


def range_variables(variant) -> dict[str, tuple[tuple[int, ...], bool]]:
    """The range variables of a quantization-aware variant's quantizers (``<scope>/min|max``, scalars,
    not trainable), in graph order; none for a float variant."""
    if factory_of(variant.family_key).quant is None:
        return {}
    specs = tuple((name, shape) for name, (shape, _) in model_variables(variant).items())
    return {name: ((), False) for scope, _ in qat.quantizers(variant, specs) for name in qat.range_names(scope)}


def _has_shadow(trainable: bool, policy: str) -> bool:
    return policy == "all" or (policy == "trainable" and trainable)


def checkpoint_variables(variant, role: str | None = None) -> dict[str, tuple[tuple[int, ...], str]]:
    """The variable table of a factory checkpoint (default: the layout's first): name -> (shape, dtype)."""
    cf, recipe = _checkpoint_file(variant, role)
    table: dict[str, tuple[tuple[int, ...], str]] = {"global_step": ((), "int64")}
    for name, (shape, trainable) in model_variables(variant).items():
        table[name] = (shape, "float32")
        if cf.plain_values == "raw" and _has_shadow(trainable, recipe.shadows):
            table[f"{name}/{EMA}"] = (shape, "float32")
        if recipe.slots and trainable:
            for slot in SLOTS:
                table[f"{name}/{slot}"] = (shape, "float32")
    table.update({name: (shape, "float32") for name, (shape, _) in range_variables(variant).items()})
    return table


def factory_layout(variant) -> ArchiveLayout:
    """Where the factory writes the variant's members: the family's layout, or for a quantization-aware
    family its recipe's concrete instance of it (the family's own templates discover members by pattern)."""
    quant = factory_of(variant.family_key).quant
    return quant.layout if quant else variant.family.layout


def _checkpoint_file(variant, role: str | None) -> tuple[CheckpointFile, CheckpointRecipe]:
    """The layout's checkpoint of ``role`` (default: the first) and the factory's recipe for it."""
    files, recipes = factory_layout(variant).checkpoints, factory_of(variant.family_key).checkpoints
    for cf in files:
        if cf.role == (role or files[0].role):
            return cf, recipes[cf.role]
    raise KeyError(f"{variant.name} has no {role!r} checkpoint; roles: {', '.join(cf.role for cf in files)}")


# --------------------------------------------------------------------------------------------------
# The graph


def _inference_bn(tf, weight):
    return inference_batch_norm(tf, weight)


# How a quantization-aware archive's graphs are written (``form``), as Google's releases vary:
# "slim": slim's node names (``Logits/output`` ...), eval graphs; "tflite_names": the head named as Google's
# .tflite file of the family shows its TF nodes (the recipe's ``tflite_naming``: V2 a top-level ``output``, no
# softmax; V3 ``Logits/SpatialSqueeze``; V1's are slim's own); "training_meta": the checkpoint's ``.meta`` holds
# contrib.quantize's training rewrite (moving-average ranges, training-mode BN, dropout, a queue for input)
# and no eval graph is written, so the frozen graph is the only inference graph.
FORMS = ("slim", "tflite_names", "training_meta")


def _check_form(variant, form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"unknown archive form {form!r}; valid: {', '.join(FORMS)}")
    if form != "slim" and factory_of(variant.family_key).quant is None:
        raise ValueError(f"the archive form {form!r} is for quantization-aware variants, not {variant.name}")


def head_naming(variant, form: str = "slim") -> str:
    """The head naming (:class:`~.graphs.ops.Ops`) of a form's graphs."""
    return factory_of(variant.family_key).quant.tflite_naming if form == "tflite_names" else "slim"


def build_eval_graph(variant, form: str = "slim", training: bool = False):
    """A fresh ``tf.Graph`` holding slim's eval graph: ref variables (read via ``<name>/read``), the
    ``input`` placeholder and the logits/prediction outputs. Returns (graph, {name: variable}).
    A quantization-aware variant's graph is contrib.quantize's (:mod:`.qat`), its ranges variables too,
    its head named as the ``form`` says; with ``training``, contrib's training graph (images from a queue)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    variables, specs = {}, {**model_variables(variant), **range_variables(variant)}
    with graph.as_default():
        if training:
            queue = v1.FIFOQueue(32, [tf.float32], shapes=[[variant.rows, variant.rows, 3]], name="batch/fifo_queue")
            x = queue.dequeue_many(8, name="batch")
        else:
            x = v1.placeholder(tf.float32, [None, variant.rows, variant.rows, 3],
                               name=variant.family.nodes.input.split(":")[0])

        def weight(name):
            if name not in variables:
                shape, trainable = specs[name]
                init = (v1.ones_initializer() if name.endswith(("gamma", "moving_variance"))
                        else v1.zeros_initializer() if name.endswith(("beta", "moving_mean", "biases"))
                        else v1.glorot_uniform_initializer())
                variables[name] = v1.get_variable(name, shape, tf.float32, init, trainable=trainable,
                                                 use_resource=False)
            return variables[name]

        if factory_of(variant.family_key).quant:
            fake_quant = (qat.fake_quant_training if training else qat.fake_quant_with)(tf, weight)
            qat.quant_graph(tf, x, variant, weight, fake_quant, head_naming(variant, form), training)
        else:
            factory_of(variant.family_key).forward(tf, x, variant, weight, _inference_bn(tf, weight))
    missing = sorted(set(specs) - set(variables))
    assert not missing, f"{variant.name}: forward() never read {missing}"
    return graph, variables


# --------------------------------------------------------------------------------------------------
# Values


def _calibrated_bn_statistics(arch, values: dict[str, np.ndarray], rng) -> dict[str, np.ndarray]:
    """BN moving statistics that normalise the network of ``arch`` (a reference
    :class:`~convert.reference.Architecture`): each BN's batch mean/variance on a seeded batch in [-1, 1],
    computed layer by layer with every earlier BN already normalising (what a data-dependent
    initialisation does)."""
    import tensorflow as tf

    stats: dict[str, np.ndarray] = {}
    graph = tf.Graph()
    with graph.as_default():
        batch = rng.uniform(-1.0, 1.0, (8, arch.rows, arch.cols, 3)).astype(np.float32)

        def batch_norm(x, scope):
            mean, var = tf.nn.moments(x, [0, 1, 2])
            stats[f"{scope}/BatchNorm/moving_mean"], stats[f"{scope}/BatchNorm/moving_variance"] = mean, var
            b = f"{scope}/BatchNorm/"
            return (x - mean) * tf.math.rsqrt(var + BN_EPSILON) * values[b + "gamma"] + values[b + "beta"]

        reference_forward(tf, tf.constant(batch), arch, lambda name: tf.constant(values[name]), batch_norm)
        with tf.compat.v1.Session(graph=graph) as sess:
            return sess.run(stats)


def architecture_ema_values(arch, key: str, seed: int = 0) -> dict[str, np.ndarray]:
    """:func:`ema_values` of a reference :class:`~convert.reference.Architecture`; ``key`` names it in the
    value seed (a catalogue variant: its name)."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    specs = reference_model_variables(arch)
    ema: dict[str, np.ndarray] = {}
    for name, (shape, trainable) in sorted(specs.items()):
        if not trainable:
            continue
        leaf = name.rsplit("/", 1)[-1]
        if leaf == "gamma":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif leaf == "beta":  # a positive shift, as trained BN layers ahead of ReLU-like activations have
            value = 0.5 + 0.1 * rng.standard_normal(shape)
        elif leaf == "biases":
            value = 0.1 * rng.standard_normal(shape)
        else:
            fan_in = shape[0] * shape[1] * (1 if leaf == "depthwise_weights" else shape[2])
            value = np.sqrt(2.0 / fan_in) * rng.standard_normal(shape)
        ema[name] = value.astype(np.float32)
    ema.update({k: v.astype(np.float32) for k, v in _calibrated_bn_statistics(arch, ema, rng).items()})
    return ema


def ema_values(variant, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded EMA values of every model variable: He-scaled kernels, gamma ~ 1, beta ~ 0.5, small biases,
    calibrated BN moving statistics. (With beta ~ 0, a random network amplifies small perturbations far
    more than a trained one: V3's SE-gate constant then moved the logits by ~1e-3 of their scale instead
    of the 1e-4–2e-4 measured on the genuine checkpoints; with beta ~ 0.5 it is ~2e-4.)"""
    return architecture_ema_values(architecture_of(variant), variant.name, seed)


def raw_from_ema(name: str, shadow: np.ndarray, ema: dict[str, np.ndarray], noise: np.ndarray) -> np.ndarray:
    """A raw (training) value that differs from its EMA ``shadow`` by 10 % of its spread (``noise``: a
    standard normal draw of its shape); moving statistics stay valid (variances positive)."""
    scale = max(float(shadow.std()), 1e-3) * 0.1
    if name.endswith("moving_variance"):
        raw = shadow * np.exp(0.1 * noise)
    elif name.endswith("moving_mean"):
        raw = shadow + (np.sqrt(ema[name.replace("moving_mean", "moving_variance")]) * 0.1 * noise)
    else:
        raw = shadow + scale * noise
    return raw.astype(np.float32)


def checkpoint_values(variant, seed: int = 0, role: str | None = None,
                      ema: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Seeded values for the full variable table of one of the variant's factory checkpoints.

    A checkpoint of raw values holds the EMA values as ``/ExponentialMovingAverage`` shadows (for the
    variables its layout shadows) and raw values that differ from them by 10 % of their spread (so reading
    the wrong one is visible in the logits); an EMA checkpoint holds the EMA values under the plain names.
    RMSProp slots are small; ``global_step`` is an int64. ``ema``: :func:`ema_values` already computed.
    """
    cf, recipe = _checkpoint_file(variant, role)
    ema = ema if ema is not None else ema_values(variant, seed)
    specs = model_variables(variant)
    rng = np.random.default_rng([seed, zlib.crc32(variant.name.encode()), 1])
    values: dict[str, np.ndarray] = {"global_step": np.array(int(rng.integers(1_000_000, 9_000_000)), np.int64)}
    for name, shadow in ema.items():
        trainable = specs[name][1]
        if cf.plain_values == "ema":
            values[name] = shadow
            continue
        scale = max(float(shadow.std()), 1e-3) * 0.1
        values[name] = raw_from_ema(name, shadow, ema, rng.standard_normal(shadow.shape))
        if _has_shadow(trainable, recipe.shadows):
            values[f"{name}/{EMA}"] = shadow
        if recipe.slots and trainable:
            values[f"{name}/RMSProp"] = (scale**2 * (0.5 + rng.random(shadow.shape))).astype(np.float32)
            values[f"{name}/RMSProp_1"] = (1e-3 * scale * rng.standard_normal(shadow.shape)).astype(np.float32)
    return values


def eval_values(values: dict[str, np.ndarray], variables) -> dict[str, np.ndarray]:
    """What slim's evaluation restores for each model variable: the EMA shadow when there is one."""
    return {name: values.get(f"{name}/{EMA}", values[name]) for name in variables}


# --------------------------------------------------------------------------------------------------
# Writing


def _assign(sess, variables: dict, values: dict[str, np.ndarray]) -> None:
    """Set variables to values in one session run (feeding each initializer's initial value)."""
    sess.run([variables[n].initializer for n in values], {variables[n].initial_value: v for n, v in values.items()})


def _save_checkpoint(variant, values: dict[str, np.ndarray], prefix: Path, form: str = "slim") -> None:
    """A V2-format checkpoint of exactly ``values`` plus its ``.meta``: the eval graph (the training graph in
    the form ``training_meta``), with a ref variable for every extra name (shadows, slots, ``global_step``)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph, variables = build_eval_graph(variant, form, training=form == "training_meta")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with graph.as_default():
        all_vars = dict(variables)
        for name, value in values.items():
            if name not in all_vars:
                all_vars[name] = v1.get_variable(name, value.shape, tf.as_dtype(value.dtype),
                                                 v1.zeros_initializer(), trainable=False, use_resource=False)
        saver = v1.train.Saver(var_list=all_vars)
        with v1.Session(graph=graph) as sess:
            _assign(sess, all_vars, values)
            saver.save(sess, str(prefix), write_state=False)


def _sinks(graph_def, start: str) -> list[str]:
    """The nodes computed from ``start`` that nothing consumes (the graph's outputs), in graph order."""
    consumers: dict[str, list[str]] = {}
    for n in graph_def.node:
        for i in n.input:
            consumers.setdefault(i.split(":")[0].lstrip("^"), []).append(n.name)
    reached, stack = set(), [start]
    while stack:
        for c in consumers.get(stack.pop(), ()):
            if c not in reached:
                reached.add(c)
                stack.append(c)
    return [n.name for n in graph_def.node if n.name in reached and not consumers.get(n.name)]


def write_model_files(variant, seed: int, root: Path, form: str = "slim") -> list[Path]:
    """Write the variant's archive members under ``root`` (layout paths); returns them in member order."""
    import tensorflow as tf

    _check_form(variant, form)
    v1 = tf.compat.v1
    layout, nodes = factory_layout(variant), variant.family.nodes
    quant = factory_of(variant.family_key).quant
    members: list[Path] = []
    ema = ema_values(variant, seed)  # the calibration runs the network once, whatever the layout holds
    ranges: dict[str, np.ndarray] = {}  # a QAT archive's quantizer ranges: plain variables of every checkpoint
    if quant:
        ema = qat.with_head_gain(variant, ema)
        ranges = qat.calibrate(variant, ema, np.random.default_rng([seed, zlib.crc32(variant.name.encode()), 2]))
    restored = None  # what slim's evaluation restores from the layout's first checkpoint: the frozen values
    for cf in layout.checkpoints:
        values = {**checkpoint_values(variant, seed, cf.role, ema), **ranges}
        restored = restored or eval_values(values, {**model_variables(variant), **ranges})
        prefix = root / fill(cf.prefix, variant)
        _save_checkpoint(variant, values, prefix, form)
        members += sorted(prefix.parent.glob(prefix.name + ".*"))
    graph, variables = build_eval_graph(variant, form)
    eval_graph_def = graph.as_graph_def()
    for template in layout.reference_graphs:
        if template.endswith(".pbtxt") and form != "training_meta":
            path = root / fill(template, variant)
            tf.io.write_graph(eval_graph_def, str(path.parent), path.name, as_text=True)
            members.append(path)
    with v1.Session(graph=graph) as sess:
        _assign(sess, variables, restored)
        # every output of the inference graph (slim's: the logits and predictions, plus V2's "output" alias)
        outputs = _sinks(eval_graph_def, nodes.input.split(":")[0])
        frozen = v1.graph_util.convert_variables_to_constants(sess, eval_graph_def, outputs)
    frozen_path = root / fill(layout.frozen, variant)
    frozen_path.write_bytes(frozen.SerializeToString(deterministic=True))
    members.append(frozen_path)
    if layout.info:
        info = root / fill(layout.info, variant)
        info.write_text(f"Model: {variant.stem}\nInput: {nodes.input.split(':')[0]}\nOutput: {nodes.predictions}\n")
        members.append(info)
    if quant:
        tflite = root / fill(layout.tflite, variant)
        tflite.parent.mkdir(parents=True, exist_ok=True)
        tflite.write_bytes(qat.tflite_model(variant, frozen_path, head_naming(variant, form)))
        members.append(tflite)
    return members


def _write_tgz(members: list[Path], root: Path, path: Path) -> None:
    """A reproducible gzip'd tar: top-level members under a ``./`` prefix (as the V1/V2 releases), nested
    ones under their folders, each folder entry before its files (as the V3 releases)."""
    rels = [m.relative_to(root) for m in members]
    nested = any(len(r.parts) > 1 for r in rels)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                 compresslevel=6) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        seen_dirs: set[Path] = set()
        for member, rel in zip(members, rels):
            if nested:
                for parent in reversed(rel.parents[:-1]):
                    if parent not in seen_dirs:
                        seen_dirs.add(parent)
                        info = tarfile.TarInfo(f"{parent}/")
                        info.type, info.mtime, info.mode = tarfile.DIRTYPE, ARCHIVE_MTIME, 0o755
                        tar.addfile(info)
            info = tarfile.TarInfo(str(rel) if nested else f"./{rel}")
            info.size, info.mtime, info.mode = member.stat().st_size, ARCHIVE_MTIME, 0o644
            with open(member, "rb") as fh:
                tar.addfile(info, fh)


def build_archive(name: str, out_dir: str | Path, seed: int = 0, keep_files: bool = False, form: str = "slim") -> Path:
    """Build ``out_dir/<stem>.tgz`` for a variant (atomically), its graphs written in ``form`` (:data:`FORMS`);
    returns its path. With ``keep_files`` the unpacked members are kept in ``out_dir/extracted/``."""
    variant = default_manifest().resolve(name)
    _check_form(variant, form)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / variant.archive_filename
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        members = write_model_files(variant, seed, root, form)
        part = Path(tmp) / target.name
        _write_tgz(members, root, part)
        if keep_files:  # the members first: the archive is what marks a build complete
            kept = out_dir / "extracted"
            shutil.rmtree(kept, ignore_errors=True)
            os.replace(root, kept)
        os.replace(part, target)
    return target


# --------------------------------------------------------------------------------------------------
# Cache: one folder per (variant, seed, factory version)

@functools.lru_cache(maxsize=None)
def factory_version(family: str) -> str:
    """Hash of the code a family's factory archives come from: this module, the factory's spec and
    shared ops, the family's graph builder (the factory's adaptor and :mod:`convert.reference`'s modules), the family contract (``families/base.py``) and the family's
    data (its layout); for a quantization-aware family (``v2-quant``) also the QAT modules and its float
    sibling's builder and data. Editing one family rebuilds only that family's cached archives."""
    here = Path(__file__).parent
    families, reference = here.parent / "families", here.parent / "reference"
    digest = hashlib.sha256(Path(__file__).read_bytes())
    builder = family.removesuffix("-quant")  # a QAT family reuses its float sibling's graph builder
    paths = [here / "spec.py", here / "graphs" / "ops.py", here / "graphs" / f"{builder}.py",
             *(reference / f"{m}.py" for m in ("slim", "arch", "ops", "build", builder)),
             families / "base.py", families / f"{family.replace('-', '_')}.py"]
    if builder != family:
        paths += [here / "qat.py", here / "graphs" / "quant.py", families / f"{builder}.py"]
    for path in paths:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def cache_root() -> Path:
    return Path(env_setting("MOBILENET_FIXTURES") or state_root() / "cache" / "fixtures")


def _cache_key(variant, seed: int, form: str) -> str:
    return f"{variant.stem}-seed{seed}" + ("" if form == "slim" else f"-{form}")


def cached_dir(name: str, seed: int = 0, form: str = "slim") -> Path:
    """The cache folder of a (variant, seed, form), built on first use: ``<model>.tgz`` and ``<model>/`` members."""
    variant = default_manifest().resolve(name)
    _check_form(variant, form)
    key = _cache_key(variant, seed, form)
    folder = cache_root() / f"{key}-{factory_version(variant.family_key)}"
    if not (folder / variant.archive_filename).exists():
        # one builder at a time per (variant, seed, form): test workers and demo runs share this cache
        with file_lock(cache_root() / f".{key}.lock"):
            if not (folder / variant.archive_filename).exists():
                for stale in cache_root().glob(f"{key}-*"):  # builds of older factory code
                    if stale.name.rpartition("-")[0] == key:
                        shutil.rmtree(stale, ignore_errors=True)
                build_archive(variant.name, folder, seed, keep_files=True, form=form)
    return folder


def cached_archive(name: str, seed: int = 0, form: str = "slim") -> Path:
    """Path of the cached factory archive of a variant (built on first use)."""
    variant = default_manifest().resolve(name)
    return cached_dir(name, seed, form) / variant.archive_filename


def cached_extracted(name: str, seed: int = 0, form: str = "slim") -> Path:
    """The unpacked members of the cached factory build (the archive's extraction root)."""
    return cached_dir(name, seed, form) / "extracted"


def cached_checkpoint(name: str, seed: int = 0, role: str | None = None) -> str:
    """Checkpoint prefix (e.g. ``…/mobilenet_v2_1.0_224.ckpt``, ``…/v3-…_float/ema/model-540000``) of the
    cached factory build; ``role`` picks one of a V3 archive's checkpoints (default: the layout's first)."""
    variant = default_manifest().resolve(name)
    return str(cached_extracted(name, seed) / fill(_checkpoint_file(variant, role)[0].prefix, variant))


def is_cached(name: str, seed: int = 0, form: str = "slim") -> bool:
    variant = default_manifest().resolve(name)
    folder = cache_root() / f"{_cache_key(variant, seed, form)}-{factory_version(variant.family_key)}"
    return (folder / variant.archive_filename).exists()


def build_cached(names, seed: int = 0, jobs: int = 1, progress: bool = False) -> None:
    """Build the cached archives of ``names`` that are missing, in up to ``jobs`` spawned processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    missing = [n for n in dict.fromkeys(names) if not is_cached(n, seed)]
    bar = tqdm(total=len(missing), desc="building factory archives", unit="archive", disable=not progress)
    with bar:
        if jobs <= 1 or len(missing) <= 1:
            for name in missing:
                cached_archive(name, seed)
                bar.update(1)
            return
        with ProcessPoolExecutor(max_workers=min(jobs, len(missing)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            for _ in pool.map(cached_archive, missing, [seed] * len(missing)):
                bar.update(1)


def publish(names, mirror_dir: str | Path, seed: int = 0, progress: bool = False, jobs: int = 1) -> Path:
    """Place the cached factory archives of ``names`` in ``mirror_dir`` (hard links, else copies), the
    folder a mirror or loopback server serves; missing ones are built first (``jobs`` at once).
    Returns ``mirror_dir``."""
    mirror_dir = Path(mirror_dir)
    mirror_dir.mkdir(parents=True, exist_ok=True)
    build_cached(names, seed, jobs, progress)
    for name in names:
        source = cached_archive(name, seed)
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
    p = argparse.ArgumentParser(prog="python -m convert.factory", description=(
        "Build official-layout MobileNet checkpoint archives (slim TF1 graph, seeded values), for any family."))
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="variants (1.0_224, mobilenet_v1_0.25_128, v3-large_224_1.0_float, quantized_v2_96_35), "
                        "a family (v1, v2, v3, v1-quant, v2-quant, v3-quant) or 'all'")
    p.add_argument("--out", required=True, help="output folder for the <stem>.tgz archives")
    p.add_argument("--seed", type=int, default=0, help="value seed (default 0)")
    p.add_argument("--form", choices=FORMS, default="slim", help=(
        "how a quantization-aware archive's graphs are written: slim's node names (default), the names Google's "
        ".tflite files show (tflite_names), or a training graph as the checkpoint's .meta (training_meta)"))
    args = p.parse_args(argv)
    from tqdm import tqdm

    variants = default_manifest().select(args.names)
    for variant in tqdm(variants, desc="archives", unit="archive", disable=len(variants) < 2):
        start = time.perf_counter()
        path = build_archive(variant.name, args.out, args.seed, form=args.form)
        tqdm.write(f"{path}  {path.stat().st_size / 1e6:.1f} MB  {time.perf_counter() - start:.1f} s")
    return 0
