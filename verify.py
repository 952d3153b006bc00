#!/usr/bin/env python3
"""Prove a converted variant equal to its checkpoint's own TF1 graph ("slim logits").

Reference: the archive's ``<name>_eval.pbtxt`` (else its ``.ckpt.meta``) with every ``<var>/read`` fed
slim's evaluation values. Candidate: keras.applications.MobileNetV2 loaded from the converted .h5.
Writes/updates results/test_results.{p,json} and results/PARITY.md; exit 1 when parity fails.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from convert.cli import UserError, quiet_tf, run_cli

quiet_tf()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", help="variant, e.g. 1.0_224 or mobilenet_v2_1.0_224")
    p.add_argument("--archive", type=Path, metavar="TGZ",
                   help="the variant's .tgz (default: the extracted archive in --cache)")
    p.add_argument("--cache", type=Path, default=Path("cache"), metavar="DIR", help="download cache (default: cache/)")
    p.add_argument("--weights-dir", type=Path, default=Path("weights"), metavar="DIR",
                   help="folder of the converted .h5 files (default: weights/)")
    p.add_argument("--image", action="append", type=Path, default=[], metavar="PATH",
                   help="also compare on this image (repeatable)")
    p.add_argument("--random-inputs", type=int, default=4, metavar="N", help="seeded random inputs (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="where test_results.{p,json} and PARITY.md go (default: results/)")
    args = p.parse_args(argv)

    from convert import download, parity, report
    from convert.manifest import resolve

    variant = resolve(args.name)
    for image in args.image:
        if not image.is_file():
            raise UserError(f"--image {image}: no such file")
    with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        try:
            if args.archive:
                if not args.archive.is_file():
                    raise UserError(f"--archive {args.archive}: no such file")
                model_dir = download.extract_archive(args.archive, Path(tmp) / variant.name, variant.model_name)
            else:
                model_dir = download.extracted_dir(args.cache, variant)
                if not (model_dir / f"{variant.model_name}.ckpt.index").exists():
                    raise UserError(f"no extracted archive for {variant.name} in {model_dir}; run "
                                    f"`python -m convert download {variant.name}` or pass --archive")
            record = parity.verify(variant, model_dir, args.weights_dir, images=args.image,
                                   random_count=args.random_inputs, seed=args.seed)
        except (ValueError, OSError, download.DownloadError) as exc:
            raise UserError(str(exc)) from None
    report.update_results([record], args.results)
    verdict = "PASS" if record["passed"] else "FAIL"
    print(f"{variant.name}: {verdict}  max|dlogit| {record['max_abs_dlogit']:.2e} (tolerance {record['tolerance']:.2e})"
          f"  top-1 {record['top1_agree']}/{record['inputs']}  top-5 {record['top5_agree']}/{record['inputs']}"
          f"  no-top max|d| {record['no_top_max_abs_diff']:.2e}  frozen graph matches: {record['frozen']}")
    print(f"report: {args.results / 'PARITY.md'}")
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    run_cli(main)
