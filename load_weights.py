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

from convert import cards
from convert.cli import UserError, quiet_tf, run_cli
from convert.guide import load_layer_guide
from convert.keras_weights import convert_guide
from convert.manifest import resolve

quiet_tf()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME",
                   help="variant, e.g. 1.0_224 (V2), mobilenet_v1_0.25_128, v3-large_224_1.0_float")
    p.add_argument("--guide", metavar="PATH",
                   help="layer guide written by extract_weights.py (default: work/<name>/layer_guide.p)")
    p.add_argument("--out", metavar="DIR", default="weights", help="output folder (default: weights)")
    args = p.parse_args(argv)
    variant = resolve(args.name)
    guide_path = Path(args.guide) if args.guide else Path("work") / variant.name / "layer_guide.p"
    guide = load_layer_guide(guide_path)
    if guide.variant != variant.name:
        raise UserError(f"layer guide {guide_path} is for variant {guide.variant}, not {variant.name}; "
                        f"pass the matching NAME or --guide")
    facts = convert_guide(guide, variant, args.out)
    written = cards.write(args.out, variant, facts)  # the end of this variant's conversion
    for name in (variant.keras_weights, variant.keras_weights_no_top, written.sidecar.name, written.card.name):
        print(f"{written.sha256[name]}  {Path(args.out) / name}")
    print(f"updated {written.sha256sums}")
    return 0


if __name__ == "__main__":
    run_cli(main)
