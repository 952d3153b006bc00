#!/usr/bin/env python3
"""Write keras.applications weights (top and no-top .h5) of a MobileNet variant from a layer guide.

Builds the variant's keras.applications model (MobileNet, MobileNetV2, MobileNetV3Large/Small) with and
without top, sets every weight by name from the guide (the head: slim's 1001-class logits conv with the
background class dropped), and writes the legacy Keras HDF5 weights files, a JSON sidecar and SHA256SUMS
into DIR.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from convert.cli import UserError, quiet_tf, run_cli

quiet_tf()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME",
                   help="variant, e.g. 1.0_224 (V2), mobilenet_v1_0.25_128, v3-large_224_1.0_float")
    p.add_argument("--guide", metavar="PATH",
                   help="layer guide written by extract_weights.py (default: work/<name>/layer_guide.p)")
    p.add_argument("--out", metavar="DIR", default="weights", help="output folder (default: weights)")
    args = p.parse_args(argv)

    from convert.guide import load_layer_guide
    from convert.keras_weights import convert_guide
    from convert.manifest import resolve

    variant = resolve(args.name)
    guide_path = Path(args.guide) if args.guide else Path("work") / variant.name / "layer_guide.p"
    guide = load_layer_guide(guide_path)
    if guide.variant != variant.name:
        raise UserError(f"layer guide {guide_path} is for variant {guide.variant}, not {variant.name}; "
                        f"pass the matching NAME or --guide")
    result = convert_guide(guide, variant, args.out)
    for path in (result.h5, result.h5_no_top, result.sidecar, result.card):
        print(f"{result.sha256[path.name]}  {path}")
    print(f"updated {result.sha256sums}")
    return 0


if __name__ == "__main__":
    run_cli(main)
