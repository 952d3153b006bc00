#!/usr/bin/env python3
"""Extract a TF-slim MobileNet (V1, V2, V3) checkpoint into a layer guide: DIR/<name>/layer_guide.p + weights.npz.

The checkpoint is read by variable name with TF's checkpoint reader (no graph). Every variable is
accounted for: model weights are consumed, optimizer slots and global_step ignored and counted, anything
else (or anything missing, or a wrong shape) is an error that names it.
"""
from __future__ import annotations

import argparse

from convert.archive import VALUE_SOURCES
from convert.cli import quiet_tf, run_cli

quiet_tf()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME",
                   help="variant, e.g. 1.0_224 (V2), mobilenet_v1_0.25_128, v3-large_224_1.0_float")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--archive", metavar="TGZ", help="the variant's official-layout archive <stem>.tgz")
    src.add_argument("--checkpoint", metavar="PREFIX",
                     help="checkpoint prefix, e.g. dir/mobilenet_v2_1.0_224.ckpt or dir/v3-…_float/ema/model-540000")
    p.add_argument("--value-source", "--weights", dest="value_source", choices=VALUE_SOURCES, default="auto",
                   help="auto (default): EMA shadows when the checkpoint has them, else raw values; "
                        "ema: require the shadows; raw: ignore them")
    p.add_argument("--out", metavar="DIR", default="work", help="output folder (default: work)")
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="download cache used without --archive/--checkpoint (default: <project>/cache)")
    p.add_argument("--ignore-pins", action="store_true",
                   help="when downloading: check the archive against <cache>/checksums.lock.json instead of the "
                        "manifest's sha256 pin (factory archives, a rebuilt mirror)")
    args = p.parse_args(argv)

    from convert.checkpoint import extract
    from convert.guide import load_layer_guide
    from convert.manifest import resolve

    variant = resolve(args.name)
    path = extract(variant, archive=args.archive, checkpoint=args.checkpoint, value_source=args.value_source,
                   out_dir=args.out, cache_dir=args.cache, ignore_pins=args.ignore_pins)
    guide = load_layer_guide(path)
    print(f"{variant.name}: wrote {path} and {path.parent / 'weights.npz'}")
    print(f"  {guide.summary()}")
    return 0


if __name__ == "__main__":
    run_cli(main)
