#!/usr/bin/env python3
"""Prove a converted variant equal to its checkpoint's own TF1 graph ("slim logits").

Reference: the archive's inference graph (V1/V2: ``<stem>_eval.pbtxt``; V3: ``ema/model-STEP.meta``) with
every ``<var>/read`` fed slim's evaluation values (EMA values where the checkpoint has them). Candidate:
the keras.applications model loaded from the converted .h5. V3 also reports the same graph with the
squeeze-excite gate constant rewritten to 1/6. Writes/updates results/test_results.{p,json} and
results/PARITY.md, and the weights' sidecar, model card and SHA256SUMS; exit 1 when parity fails.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from convert import cards, download, parity, report
from convert.quant import parity as quant_parity
from convert.cli import UserError, quiet_tf, run_cli
from convert.extraction import archive_root
from convert.manifest import resolve
from convert.records import ConversionFacts, Source

quiet_tf()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME",
                   help="variant, e.g. 1.0_224 (V2), mobilenet_v1_0.25_128, v3-large_224_1.0_float")
    p.add_argument("--archive", type=Path, metavar="TGZ",
                   help="the variant's .tgz (default: the extracted archive in --cache, else the archive the "
                        "converted weights were made from)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="download cache (default: <project>/cache, or $MOBILENET_CACHE)")
    p.add_argument("--weights-dir", type=Path, default=Path("weights"), metavar="DIR",
                   help="folder of the converted .h5 files (default: weights/)")
    p.add_argument("--image", action="append", type=Path, default=[], metavar="PATH",
                   help="also compare on this image (repeatable)")
    p.add_argument("--random-inputs", type=int, default=4, metavar="N", help="seeded random inputs (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="where test_results.{p,json} and PARITY.md go (default: results/)")
    args = p.parse_args(argv)
    variant = resolve(args.name)
    for image in args.image:
        if not image.is_file():
            raise UserError(f"--image {image}: no such file")
    if args.random_inputs < 0 or args.random_inputs + len(args.image) == 0:
        raise UserError(f"--random-inputs {args.random_inputs}: give at least one input (N >= 1, or N >= 0 with --image)")
    sidecar = cards.read_facts(args.weights_dir, variant)  # what the converter recorded, read once
    facts = sidecar and sidecar.facts
    with contextlib.ExitStack() as stack:
        try:
            model_dir, location = archive_root(variant, stack, args.archive, args.cache, facts and facts.provenance)
            source = facts.source(location) if facts else Source(location)
            check = quant_parity.verify if variant.family.quantized else parity.verify
            record = check(variant, model_dir, args.weights_dir, source, images=args.image,
                           random_count=args.random_inputs, seed=args.seed)
        except (ValueError, OSError, download.DownloadError) as exc:
            raise UserError(str(exc)) from None
    report.update_results([record], args.results)
    if facts is not None:  # weights this project converted: their sidecar, card and SHA256SUMS, once
        cards.write(args.weights_dir, variant, facts, record)
    verdict = "PASS" if record.passed else "FAIL"
    if record.quant is None:
        print(f"{variant.name}: {verdict}  max|dlogit| {record.max_abs_dlogit:.2e} (tolerance {record.tolerance:.2e})"
              f"  top-1 {record.top1_agree}/{record.inputs}  top-5 {record.top5_agree}/{record.inputs}"
              f"  no-top max|d| {record.no_top_max_abs_diff:.2e}  frozen graph matches: {record.frozen}")
    else:
        twin, tfl = record.quant.twin[0], record.quant.tflite
        print(f"{variant.name}: {verdict}  float .h5 vs bypassed graph max|dlogit| {record.max_abs_dlogit:.2e} "
              f"(tolerance {record.tolerance:.2e})  twin {twin.max_steps:.2f} steps off the graph, top-1 "
              f"{twin.top1_agree}/{record.inputs}  .tflite top-1 {tfl.top1_agree}/{record.inputs} "
              f"(ties {tfl.top1_ties}), max|dprob| {tfl.max_abs_dprob:.4f}, top-5 identical {100 * tfl.top5_identical:.0f} %")
    for name, r in record.rewrites.items():
        print(f"  {name}: max|dlogit| {r.max_abs_dlogit:.2e} (tolerance {r.tolerance:.2e}) "
              f"{'pass' if r.passed else 'FAIL'}  ({r.description})")
    print(f"report: {args.results / report.PARITY_MD}")
    return 0 if record.passed else 1


if __name__ == "__main__":
    run_cli(main)
