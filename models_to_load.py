#!/usr/bin/env python3
"""List the MobileNet variants of the manifests, every family (table or JSON); importable as a module."""
from __future__ import annotations

import argparse
import json

from convert.cli import run_cli
from convert.manifest import Variant, load_manifest


def models_to_load(alpha: str | None = None, rows: int | None = None, manifest: str | None = None,
                   family: str | None = None) -> list[Variant]:
    """The manifests' variants, optionally filtered by family, alpha and rows."""
    return load_manifest(manifest).select(["all"], alpha=alpha, rows=rows, family=family)


def _figure(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(variants: list[Variant]) -> str:
    """One row per variant; ``-`` where the catalogue publishes no figure (V2 quantized top-1: the float
    sibling's is in the JSON as ``float_sibling_top1``); an unavailable archive's URL is marked so."""
    head = ("name", "family", "alpha", "rows", "MACs(M)", "params(M)", "top-1", "top-5", "url")
    rows = [(v.name, v.family_key, v.alpha, str(v.rows), _figure(v.macs_m, "d"), _figure(v.params_m, ".2f"),
             _figure(v.top1, ".1f"), _figure(v.top5, ".1f"), v.url + (" (unavailable)" if v.unavailable else ""))
            for v in variants]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print a JSON list of objects instead of a table")
    form.add_argument("--names", action="store_true", help="print only the variant names, one per line")
    p.add_argument("--family", help="keep only this family (v1 v2 v3 v1-quant v2-quant v3-quant)")
    p.add_argument("--alpha", help="keep only this width multiplier (e.g. 1.0, 0.75)")
    p.add_argument("--rows", type=int, help="keep only this input resolution (224 192 160 128 96)")
    p.add_argument("--manifest", help="one manifest file (default: every family's, manifests/*.json)")
    p.add_argument("--converted", metavar="DIR", help="keep only variants whose top .h5 is in DIR")
    args = p.parse_args(argv)
    variants = models_to_load(args.alpha, args.rows, args.manifest, args.family)
    if args.converted:
        from pathlib import Path

        variants = [v for v in variants if (Path(args.converted) / v.keras_weights).is_file()]
    if args.names:
        print("\n".join(v.name for v in variants))
    else:
        print(json.dumps([v.to_dict() for v in variants], indent=2) if args.json else format_table(variants))
    return 0


if __name__ == "__main__":
    run_cli(main)
