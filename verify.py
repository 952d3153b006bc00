#!/usr/bin/env python3
"""Prove a converted variant equal to its checkpoint's own TF1 graph ("slim logits").

Reference: the archive's inference graph (V1/V2: ``<stem>_eval.pbtxt``; V3: ``ema/model-STEP.meta``) with
every ``<var>/read`` fed slim's evaluation values (EMA values where the checkpoint has them). Candidate:
the keras.applications model loaded from the converted .h5. V3 also reports the same graph with the
squeeze-excite gate constant rewritten to 1/6. Writes/updates results/test_results.{p,json} and
results/PARITY.md; exit 1 when parity fails.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from convert.cli import UserError, quiet_tf, run_cli
from convert.env import default_cache

quiet_tf()


def _model_dir(args, variant, tmp: Path) -> Path:
    """The extracted archive to take the reference from: --archive, else the download cache, else the
    archive or checkpoint folder the converted weights were made from (their sidecar's provenance)."""
    from convert import download
    from convert.archive import find_checkpoint
    from convert.cards import read_sidecar

    archive = args.archive
    if archive is None:
        cached = download.extracted_dir(args.cache or default_cache(), variant)
        try:
            find_checkpoint(cached, variant)
            return cached
        except FileNotFoundError:
            pass
        provenance = (read_sidecar(args.weights_dir, variant) or {}).get("provenance") or {}
        if provenance.get("archive") and Path(provenance["archive"]).is_file():
            archive = Path(provenance["archive"])
        elif provenance.get("checkpoint_role") == "given" and Path(provenance["checkpoint"] + ".index").is_file():
            return Path(provenance["checkpoint"]).parent  # converted from an extracted checkpoint prefix
        else:
            raise UserError(f"no archive of {variant.name}: not in {cached} and the converted weights do not "
                            f"name an existing one; pass --archive TGZ (or run `python -m convert download "
                            f"{variant.name}`)")
    if not archive.is_file():
        raise UserError(f"--archive {archive}: no such file")
    return download.extract_archive(archive, tmp / variant.name, variant)


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

    from convert import cards, download, parity, report
    from convert.manifest import resolve

    variant = resolve(args.name)
    for image in args.image:
        if not image.is_file():
            raise UserError(f"--image {image}: no such file")
    if args.random_inputs < 0 or args.random_inputs + len(args.image) == 0:
        raise UserError(f"--random-inputs {args.random_inputs}: give at least one input (N >= 1, or N >= 0 with --image)")
    with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        try:
            model_dir = _model_dir(args, variant, Path(tmp))
            record = parity.verify(variant, model_dir, args.weights_dir, images=args.image,
                                   random_count=args.random_inputs, seed=args.seed)
        except (ValueError, OSError, download.DownloadError) as exc:
            raise UserError(str(exc)) from None
    report.update_results([record], args.results)
    cards.update(args.weights_dir, variant, parity=record)
    verdict = "PASS" if record["passed"] else "FAIL"
    print(f"{variant.name}: {verdict}  max|dlogit| {record['max_abs_dlogit']:.2e} (tolerance {record['tolerance']:.2e})"
          f"  top-1 {record['top1_agree']}/{record['inputs']}  top-5 {record['top5_agree']}/{record['inputs']}"
          f"  no-top max|d| {record['no_top_max_abs_diff']:.2e}  frozen graph matches: {record['frozen']}")
    for name, r in record["rewrites"].items():
        print(f"  {name}: max|dlogit| {r['max_abs_dlogit']:.2e} (tolerance {r['tolerance']:.2e}) "
              f"{'pass' if r['passed'] else 'FAIL'}  ({r['description']})")
    print(f"report: {args.results / 'PARITY.md'}")
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    run_cli(main)
