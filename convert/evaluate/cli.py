"""``python -m convert evaluate NAME… --imagenet-dir DIR``: the command line.

Results merge into ``results/accuracy.json`` and ``results/ACCURACY.md`` (:func:`convert.report.write_accuracy`)
and, for weights this project converted, into the model card (:func:`convert.cards.update`).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Iterator

from .. import cards, report
from ..cli import run_cli
from ..env import cache_help, default_cache, quiet_tf
from ..families import FAMILIES
from ..errors import UserError
from ..extraction import cached_extraction, extracted
from ..manifest import Variant, default_manifest
from .dataset import scan_dataset
from .evaluation import evaluate_variant, preprocessings_for
from .records import ACCURACY_JSON, ACCURACY_MD, PREPROCESSINGS, summary_line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert evaluate",
        description="ImageNet top-1/top-5 of the converted Keras weights and of the archive's own slim graph "
                    "(and, with --compare-keras, of keras.applications' weights=\"imagenet\"). A quantized "
                    "variant also scores its fake-quant twin (.keras), its .tflite and the archive's own .tflite, "
                    "under slim preprocessing only.")
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="variants (1.0_224, mobilenet_v1_0.25_128, v3-large_224_1.0_float, quantized_v2_224_100), "
                        f"a family ({', '.join(FAMILIES)}) or 'all'")
    p.add_argument("--imagenet-dir", required=True, type=Path, metavar="DIR",
                   help="DIR/<wnid>/*.JPEG (ILSVRC2012 val folder layout), or a flat folder with --labels")
    p.add_argument("--labels", type=Path, metavar="FILE",
                   help="for a flat folder: slim's imagenet_2012_validation_synset_labels.txt (one wnid per line, "
                        "sorted file-name order) or lines 'filename,wnid'")
    p.add_argument("--limit", type=int, metavar="N", help="a deterministic class-balanced subset of N images")
    p.add_argument("--preprocess", choices=("slim", "keras", "both"), default="both",
                   help="slim: inception_preprocessing (central crop 87.5%%, bilinear); keras: load_img + "
                        "preprocess_input; default both (quantized variants: slim only)")
    p.add_argument("--weights-dir", type=Path, default=Path("weights"), metavar="DIR",
                   help="folder of the converted .h5 files (quantized variants: also .keras and .tflite; "
                        "default: weights/)")
    p.add_argument("--archive", type=Path, action="append", default=[], metavar="TGZ",
                   help="the variant's checkpoint archive (repeat for several names); default: the download "
                        "cache's extraction, else its verified archive")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help=f"download cache (default: {cache_help()})")
    p.add_argument("--compare-keras", action="store_true",
                   help="also score keras.applications' own weights=\"imagenet\" (downloaded by Keras)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="inference batch size (default 32)")
    p.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                   help="where accuracy.json and ACCURACY.md go (default: results/)")
    return p


def _archive_for(variant: Variant, archives: list[Path], single: bool) -> Path | None:
    for path in archives:
        if path.name in (variant.archive_filename, f"{variant.stem}.tgz"):
            return path
    return archives[0] if single and len(archives) == 1 else None


def model_dir_for(variant: Variant, archive: Path | None, cache: Path | None) -> contextlib.AbstractContextManager[Path]:
    """The extracted archive of a variant: ``archive`` extracted to a temporary folder, else the download
    cache's extraction, else its verified archive extracted to a temporary folder."""
    if archive is not None:
        return extracted(variant, archive)
    return cached_extraction(variant, cache or default_cache())


def _evaluate_all(args, variants: list[Variant]) -> Iterator:
    preprocessings = PREPROCESSINGS if args.preprocess == "both" else (args.preprocess,)
    dataset = scan_dataset(args.imagenet_dir, args.labels, args.limit)
    print(f"{len(dataset)} images in {dataset.root} ({dataset.layout} layout, "
          f"{len(set(dataset.labels))} classes)", file=sys.stderr)
    for variant in variants:
        archive = _archive_for(variant, args.archive, len(variants) == 1)
        with model_dir_for(variant, archive, args.cache) as model_dir:
            yield variant, evaluate_variant(variant, dataset, weights_dir=args.weights_dir, model_dir=model_dir,
                                            preprocessings=preprocessings, compare_keras=args.compare_keras,
                                            batch_size=args.batch_size)


def main(argv: list[str] | None = None) -> int:
    quiet_tf()
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    variants = default_manifest().select(args.names)
    preprocessings = PREPROCESSINGS if args.preprocess == "both" else (args.preprocess,)
    for variant in variants:  # a quantized variant under keras preprocessing only: refused before any work
        preprocessings_for(variant, preprocessings)
    for path in args.archive:
        if not any(_archive_for(v, [path], False) for v in variants) and len(variants) > 1:
            raise UserError(f"--archive {path}: its file name matches none of {', '.join(v.name for v in variants)}")
    for variant, result in _evaluate_all(args, variants):
        report.write_accuracy(args.results, result.records)
        if cards.read_sidecar(args.weights_dir, variant) is not None:  # weights this project converted
            cards.update(args.weights_dir, variant, accuracy=result.records)
        for r in result.records:
            print(summary_line(r))
        if result.unreadable:
            print(f"{len(result.unreadable)} unreadable image(s), excluded from the totals: "
                  f"{', '.join(result.unreadable)}", file=sys.stderr)
    print(f"wrote {args.results / ACCURACY_JSON} and {args.results / ACCURACY_MD}")
    return 0


if __name__ == "__main__":
    run_cli(main)
