"""``python -m convert checkpoint PATH``: your own TF-slim MobileNet checkpoint into Keras.

locate (prefix, training directory or archive) -> read the architecture from the checkpoint (printed) ->
the variant description -> the layer guide (strict, by name) -> ``NAME.h5``/``NAME_no_top.h5``, ``NAME.keras``,
``NAME.tflite`` staged beside ``--out`` -> proven against the project's slim graph of the architecture and any
``--graph`` -> moved into ``--out`` with the card and sidecar. Nothing lands in ``--out`` unless every proof
passes: a bad input or a failed proof leaves it as it was (exit 2 / 1).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import UserError

VALUE_SOURCES = ("auto", "ema", "raw")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert checkpoint",
        description="Convert your own TF-slim MobileNet checkpoint (V1, V2, V3; fine-tuned, any classes, depth "
                    "multiplier and input size) into keras.applications weights, a whole .keras model and a float "
                    ".tflite, its architecture read from the checkpoint, every output proven against a TF1 graph.",
        epilog="examples:\n  python -m convert checkpoint train_dir/ --name flowers --labels labels.txt\n"
               "  python -m convert checkpoint train_dir/model.ckpt-5000 --input-size 200 160 "
               "--graph inference_graph.pb\n"
               "  python -m convert checkpoint detector/model.ckpt --scope FeatureExtractor --name backbone",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="a checkpoint prefix (…/model.ckpt-5000), a training directory (its 'checkpoint' "
                                "file names the latest), or a .tgz/.tar archive of either")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, help="square input size (default 224)")
    size.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="input height and width")
    p.add_argument("--name", help="stem of the output files (default: the directory's or prefix's name)")
    p.add_argument("--labels", type=Path, help="class names, one per line, in the order of the model's output, or "
                                               "TF-slim's labels.txt (ID:NAME lines)")
    p.add_argument("--label-offset", type=int, help="slim classes before Keras class 0 (default: 1 for 1001 "
                                                    "classes, whose class 0 is background; 0 otherwise)")
    p.add_argument("--value-source", choices=VALUE_SOURCES, default="auto",
                   help="auto: the EMA shadows when the checkpoint has them (what slim's evaluation restores), "
                        "else the raw values; ema: require them; raw: the training values")
    p.add_argument("--graph", type=Path, help="an inference graph to prove against as well (.pb/.pbtxt GraphDef "
                                              "from export_inference_graph.py, or frozen)")
    p.add_argument("--scope", help="the MobileNet's scope inside another model's checkpoint (e.g. FeatureExtractor): "
                                   "converted as a backbone, without top")
    p.add_argument("--out", type=Path, default=Path("weights"), help="output folder (default weights/)")
    arch = p.add_argument_group("architecture overrides (each checked against the checkpoint)")
    arch.add_argument("--family", choices=("v1", "v2", "v3"))
    arch.add_argument("--alpha", help="depth multiplier")
    arch.add_argument("--kind", choices=("large", "small"), help="V3")
    arch.add_argument("--minimalistic", action=argparse.BooleanOptionalAction, default=None, help="V3")
    arch.add_argument("--classes", type=int, help="the logits' output channels")
    p.add_argument("--image", action="append", default=[], type=Path, help="an image to verify on too (repeatable)")
    p.add_argument("--random", type=int, default=4, help="seeded random verify inputs (default 4)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _labels(path: Path | None, variant) -> list[str] | None:
    """``--labels``: one name a line, as many as the model's outputs (or one more per background class of the
    checkpoint's logits, which is dropped)."""
    if path is None:
        return None
    from ..labels import LabelsError, names_for_outputs, read_labels

    try:
        return names_for_outputs(read_labels(path), variant.classes - variant.label_offset, variant.label_offset,
                                 f"--labels {path}")
    except LabelsError as exc:
        raise UserError(f"{exc} (one name a line in the order of the model's output, or TF-slim's labels.txt: "
                        f"ID:NAME lines numbered from 0)") from None


def _check_out(out: Path) -> None:
    """``--out`` must be a folder, or a path a folder can be made at (no file on the way, no dangling link)."""
    if out.is_symlink() and not out.exists():
        raise UserError(f"--out {out} is a link to nothing ({os.readlink(out)}): pass a folder")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is a file, not a folder: pass a folder (it is created when missing)")


def _install(staging: Path, out: Path, outputs: list[str], described: list[str], name: str) -> list[str]:
    """Move ``outputs`` from ``staging`` into ``out`` (renames on one file system), remove the files an earlier
    conversion of ``name`` made that this one does not (:func:`convert.user.card.earlier_files`: unchanged since,
    and no name this one installs, whatever the file system's case rules), then move in ``described`` (the
    labels, sidecar and card). Interrupted before the end, the earlier sidecar still names what is left to
    remove. Returns the names removed."""
    from .card import earlier_files

    out.mkdir(parents=True, exist_ok=True)
    earlier = earlier_files(out, name)
    for n in outputs:
        os.replace(staging / n, out / n)
    ours = {n.casefold() for n in (*outputs, *described)}
    stale = sorted(n for n in earlier if n.casefold() not in ours)
    for n in stale:
        (out / n).unlink(missing_ok=True)
    for n in described:
        os.replace(staging / n, out / n)
    return stale


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.random < 0 or (args.random == 0 and not args.image):
        raise UserError(f"--random {args.random}: the proofs need at least one input (--random N >= 1, or --image)")
    if args.rows is not None and args.rows <= 0 or args.input_size and min(args.input_size) <= 0:
        raise UserError("--rows / --input-size must be positive")
    _check_out(args.out)
    from ..architecture import Overrides, infer_architecture
    from ..checkpoint import build_layer_guide
    from ..fsutil import package_versions
    from ..guide import Provenance
    from ..keras_weights import convert_guide
    from ..preprocessing import Preprocessing
    from ..cards import update_sha256sums
    from .card import CheckpointConversion, write
    from .describe import Options, describe
    from .locate import locate
    from ..quant.tflite import TfliteRunner
    from .outputs import float_tflite, save_model, whole_model
    from .prove import builder_run, given_reference, keras_file_outputs, keras_run, prove, run_reference, verify_inputs

    import tensorflow as tf

    rows, cols = (args.input_size or (args.rows, args.rows)) if (args.input_size or args.rows) else (None, None)
    with locate(args.path) as found:
        shapes = tf.train.load_checkpoint(str(found.prefix)).get_variable_to_shape_map()
        inferred = infer_architecture(shapes, args.scope, Overrides(args.family, args.alpha, args.kind,
                                                                    args.minimalistic, args.classes))
        print(f"checkpoint {found.label} ({found.kind})")
        print(inferred.describe())
        variant = describe(inferred, Options(rows, cols, args.name, args.label_offset), found.default_name)
        quant_source, twin_ranges = None, ()
        if inferred.quantized and variant.scope_prefix:
            raise UserError(f"{found.prefix}: a quantization-aware backbone inside another model's scope "
                            f"({inferred.scope}) is not supported; convert its float weights from a checkpoint "
                            f"without the quantization ranges")
        if inferred.quantized:  # the twin's quantizers, from the graph holding the FakeQuant nodes
            from ..quant.walk import range_variables
            from .quant import find_quant_graph

            quant_source = find_quant_graph(args.graph, found.prefix.parent, found.prefix, inferred.scope)
            twin_ranges = range_variables(quant_source.quantizers)
            print(f"quantization-aware: {len(quant_source.quantizers)} FakeQuant nodes in {quant_source.path.name}, "
                  f"ranges from its {'constants' if quant_source.quantizers[0].from_constants else 'variables'}")
        if args.labels and not variant.has_head:
            raise UserError(f"--labels {args.labels}: this checkpoint is a backbone without logits "
                            f"({inferred.scope}/Logits); it has no classes to name")
        labels = _labels(args.labels, variant) if variant.has_head else None
        provenance = Provenance(checkpoint=found.label, checkpoint_role="given",
                                archive=str(Path(args.path).resolve()) if found.kind == "archive" else None,
                                archive_sha256=found.archive_sha256)
        # not the Keras model's: a backbone's V3 Conv_2, and inside another model's scope its extra layers (an
        # SSD's layer_19_*); names below the scope prefix, as the guide reads them
        strip = len(inferred.prefix)
        extra = [n[strip:] for n in (*inferred.unused, *(inferred.unrecognised if variant.scope_prefix else ()))]
        guide = build_layer_guide(found.prefix, variant, args.value_source, provenance, twin_ranges=twin_ranges,
                                  not_in_model=extra)
        print(guide.summary() + (f"; {guide.counts.outside_scope} outside {variant.scope_prefix}/"
                                 if variant.scope_prefix else ""))
        batch = verify_inputs(variant, args.image, args.random, args.seed)
        given = ([given_reference(args.graph or quant_source.path, variant, found.prefix, guide.counts.mode)]
                 if args.graph or quant_source else [])  # a quantization-aware one's FakeQuant graph: bypassed
        out = args.out
        beside = out.resolve().parent  # staged beside --out (same file system for the renames); --out untouched
        beside.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=beside, prefix=f".{variant.name}.staging-"))
        try:
            facts = convert_guide(guide, variant, staging)
            keras_side = keras_run(variant, staging, batch)  # the .h5 pair, loaded into the conversion's model
            model = whole_model(variant, keras_side)
            keras_file, tflite_file = f"{variant.name}.keras", f"{variant.name}.tflite"
            save_model(model, staging / keras_file)
            (staging / tflite_file).write_bytes(float_tflite(model))
            files = {keras_file: keras_file_outputs(staging / keras_file, batch),
                     tflite_file: TfliteRunner(staging / tflite_file)(batch)}
            runs = [builder_run(variant, found.prefix, guide.counts.mode, batch),
                    *(run_reference(variant, ref, batch) for ref in given)]
            figures = [prove(variant, run, keras_side, files) for run in runs]
            for f in figures:
                print(_summary(f))
            quant_names, quant_figures = [], None
            if quant_source:
                quant_names, quant_figures = _quant_outputs(variant, guide, quant_source, found.prefix, staging,
                                                            guide.counts.mode, args.random, args.seed)
                print(f"twin vs {quant_source.path.name}: {quant_figures.twin.max_steps:.2f} logit steps, top-1 "
                      f"{quant_figures.twin.top1_agree}/{quant_figures.inputs}; 8-bit .tflite vs the twin: top-1 "
                      f"{quant_figures.tflite_top1_agree}/{quant_figures.inputs}: "
                      f"{'pass' if quant_figures.passed else 'FAIL'}")
            if not all(f.passed for f in figures) or (quant_figures and not quant_figures.passed):
                print(f"error: {variant.name}: parity failed (above); nothing was written to {out}", file=sys.stderr)
                return 1
            names = [*facts.files, keras_file, tflite_file, *quant_names]
            from ..fsutil import sha256_file

            digests = {n: sha256_file(staging / n) for n in names}
            size = variant.input_size
            h5 = Preprocessing.for_input(*size, family=variant.family).to_json()  # keras.applications' default model
            twin_pre = Preprocessing.for_input(*size, family=variant.family, output="twin").to_json()  # [-1, 1]
            pre = {**{n: h5 for n in facts.files}, keras_file: twin_pre, tflite_file: twin_pre}
            if quant_source:
                from .quant import INPUT_SCALE, INPUT_ZERO_POINT

                pre[quant_names[0]] = twin_pre
                pre[quant_names[1]] = Preprocessing.for_input(*size, family=variant.family, output="tflite",
                                                              scale=INPUT_SCALE, zero_point=INPUT_ZERO_POINT).to_json()
            conversion = CheckpointConversion(
                name=variant.name, variant=variant.to_dict(), inferred=inferred.describe().splitlines()[:-1],
                checkpoint=found.label, source=found.kind, checkpoint_files=found.files,
                archive_sha256=found.archive_sha256,
                values={"requested": guide.value_source, "mode": guide.counts.mode,
                        "by_source": dict(guide.counts.by_source)},
                counts=dict(vars(guide.counts)), files=digests, keras_call=variant.family.keras_call(variant),
                preprocessing=pre, references=figures, labels=labels, versions=package_versions(),
                quant=None if quant_figures is None else dataclasses.asdict(quant_figures))
            described = write(staging, conversion)  # the labels, the sidecar and the card, staged too
            described_digests = {n: sha256_file(staging / n) for n in described}
            stale = _install(staging, out, names, described, variant.name)
            update_sha256sums(out, {**digests, **described_digests}, removed=stale)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for n in described:
            print(f"wrote {out / n}")
        if stale:
            print(f"removed {', '.join(stale)}: an earlier conversion's {variant.name} files this one does not make")
        print(f"{variant.name}: {len(digests)} files in {out}: " + ", ".join(digests))
    return 0


def _quant_outputs(variant, guide, source, prefix: Path, staging: Path, mode: str, count: int, seed: int):
    """``NAME_quant.keras`` (the twin) and ``NAME_quant.tflite`` (8-bit) in ``staging``, and their proof."""
    from ..quant.twin import build_twin, save_twin
    from ..quant.tflite import tflite_bytes
    from .prove import _feeds
    from .quant import input_quant, prove_quant

    twin = build_twin(variant, guide, source.quantizers)
    twin_file, tflite_file = f"{variant.name}_quant.keras", f"{variant.name}_quant.tflite"
    save_twin(twin, staging / twin_file)
    (staging / tflite_file).write_bytes(tflite_bytes(twin, input_quant(variant)))
    figures = prove_quant(variant, source, _feeds(source.graph_def, prefix, mode), twin, staging / tflite_file,
                          count, seed)
    return [twin_file, tflite_file], figures


def _summary(f) -> str:
    head = (f"max |dlogit| {f.max_abs_dlogit:.2e} (tol {f.tolerance:.2e}), top-1 {f.top1_agree}/{f.inputs}, "
            if f.logits else "")
    rewrites = "".join(f", {n} {r.max_abs_dlogit:.2e}" for n, r in f.rewrites.items())
    files = "".join(f", {c.file} {c.max_abs_dprob:.1e}" for c in f.files)
    return (f"parity vs {f.reference} ({f.graph}): {head}no-top {f.no_top_max_abs_diff:.2e}{rewrites}{files}: "
            f"{'pass' if f.passed else 'FAIL'}")
