#!/usr/bin/env python3
"""Write keras.applications weights (top and no-top .h5) of a MobileNet variant from a layer guide.

Builds the variant's keras.applications model (MobileNet, MobileNetV2, MobileNetV3Large/Small) with and
without top, sets every weight by name from the guide (the head: slim's 1001-class logits conv with the
background class dropped), and writes the legacy Keras HDF5 weights files, a JSON sidecar and SHA256SUMS
into DIR.

A quantization-aware variant (``*_quant``, ``quantized_v2_*``, ``*_uint8``) also gets its fake-quant Keras
twin (``<stem>.keras``) and its 8-bit ``<stem>.tflite``: they need the archive's graph (where the quantizers
sit) and its ``.tflite`` (the input quantization), read from --archive, else the archive the layer guide
was made from, else the download cache.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from convert import cards
from convert.cli import UserError, quiet_tf, run_cli
from convert.extraction import archive_root
from convert.guide import load_layer_guide
from convert.keras_weights import convert_guide
from convert.manifest import resolve
from convert.quant import parity as quant_parity, twin as quant_twin

quiet_tf()


def _quant_outputs(variant, guide, args) -> quant_twin.QuantBuild:
    """A quantized variant's twin and .tflite, built in memory from the archive the guide was made from
    (--archive, else the guide's own archive file, else the download cache's), which must be that archive:
    the twin's quantizer ranges come from the same archive as its weights."""
    made_from = guide.provenance.archive
    archive = args.archive or (Path(made_from) if made_from and Path(made_from).is_file() else None)
    with contextlib.ExitStack() as stack:
        root, _ = archive_root(variant, stack, archive, args.cache, guide.provenance,
                               sha256=guide.provenance.archive_sha256)
        opened = quant_parity.open_quant_archive(root, variant)
        return quant_twin.build_outputs(variant, guide, opened.quantizers, opened.input)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME",
                   help="variant, e.g. 1.0_224 (V2), mobilenet_v1_0.25_128, v3-large_224_1.0_float")
    p.add_argument("--guide", metavar="PATH",
                   help="layer guide written by extract_weights.py (default: work/<name>/layer_guide.p)")
    p.add_argument("--out", metavar="DIR", default="weights", help="output folder (default: weights)")
    p.add_argument("--archive", type=Path, metavar="TGZ",
                   help="quantized variants: the archive whose graph and .tflite the twin follows (default: the "
                        "archive the guide was made from, else the download cache's)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="quantized variants: download cache (default: <project>/cache, or $MOBILENET_CACHE)")
    args = p.parse_args(argv)
    variant = resolve(args.name)
    guide_path = Path(args.guide) if args.guide else Path("work") / variant.name / "layer_guide.p"
    guide = load_layer_guide(guide_path)
    if guide.variant != variant.name:
        raise UserError(f"layer guide {guide_path} is for variant {guide.variant}, not {variant.name}; "
                        f"pass the matching NAME or --guide")
    names = [variant.keras_weights, variant.keras_weights_no_top]
    built = None
    if variant.family.quantized:  # the archive checked, the twin and .tflite built: all before anything is written
        built = _quant_outputs(variant, guide, args)
        names += [variant.family.twin_file(variant), variant.family.tflite_file(variant)]
    facts = convert_guide(guide, variant, args.out)
    if built is not None:
        built.write(variant, args.out)
    written = cards.write(args.out, variant, facts)  # the end of this variant's conversion
    for name in dict.fromkeys(names + list(written.sha256)):  # the outputs, then labels files, sidecar, card
        print(f"{written.sha256[name]}  {Path(args.out) / name}")
    print(f"updated {written.sha256sums}")
    return 0


if __name__ == "__main__":
    run_cli(main)
