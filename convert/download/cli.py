"""``python -m convert download``: the command line of the download package."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..env import cache_help, default_cache, env_setting
from ..errors import UserError
from ..manifest import ManifestError, UnknownVariantError, default_manifest
from .checksum_lock import CACHE_LOCK_NAME, DEFAULT_LOCK, LOCK_ENV, lock_for
from .mirrors import MIRROR_ENV, normalize_mirror
from .parallel import fetch_many
from .records import FetchFailure, NetOptions


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert download",
        description="Download, verify (size and sha256) and extract MobileNet checkpoint archives into a cache.")
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="variants (1.0_224, mobilenet_v1_0.25_128, quantized_v2_224_100, v3-large_224_1.0_uint8), "
                        "a family (v1, v2, v3, v1-quant, v2-quant, v3-quant) or 'all'")
    p.add_argument("--mirror", default=env_setting(MIRROR_ENV), metavar="URL",
                   help=f"base URL (http(s)://, file://) or directory holding the archives; default ${MIRROR_ENV}")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help=f"cache directory (default: {cache_help()}); archives land in DIR/archives/")
    p.add_argument("--lock", type=Path, default=None, metavar="PATH",
                   help=f"checksum lock file for unpinned archives (default: ${LOCK_ENV} or "
                        f"{DEFAULT_LOCK}; with --ignore-pins: DIR/{CACHE_LOCK_NAME})")
    p.add_argument("--ignore-pins", action="store_true",
                   help="check archives against the lock file instead of the manifest's sha256 pins (factory "
                        "archives, a rebuilt mirror, the loopback demo); never records into the project's lock")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="download up to N archives at once")
    p.add_argument("--no-extract", action="store_true", help="verify only; do not extract into DIR/extracted/")
    p.add_argument("--timeout", type=float, default=NetOptions.timeout[1], metavar="SECONDS",
                   help="read timeout per network read (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-archive lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {args.jobs}")
        if args.timeout <= 0:
            raise UserError(f"--timeout must be positive, got {args.timeout}")
        mirror = normalize_mirror(args.mirror)
        variants = default_manifest().select(args.names)
        lock_for(args.cache or default_cache(), args.lock, args.ignore_pins)  # refuse a bad --lock up front
    except (UserError, ManifestError, UnknownVariantError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    net = NetOptions(timeout=(NetOptions.timeout[0], args.timeout))
    results = fetch_many(variants, args.cache, jobs=args.jobs, quiet=args.quiet, mirror=mirror or "",
                         lock_path=args.lock, extract=not args.no_extract, net=net, ignore_pins=args.ignore_pins)
    failed = [r for r in results if isinstance(r, FetchFailure)]
    for r in results:
        if not args.quiet and not isinstance(r, FetchFailure):
            state = "downloaded" if r.downloaded else "cached"
            alternative = r.source in {a.url for a in r.variant.alternatives}
            served = f"; served by the alternative {r.source}" if alternative else ""
            print(f"ok  {r.variant.name:<9} {state:<10} {r.archive}  sha256 {r.sha256[:16]}… "
                  f"(checked against the {r.checked_against}){served}")
    if failed:  # one line per failed archive, saying why
        print(f"error: {len(failed)} of {len(results)} archive(s) failed:", file=sys.stderr)
        for f in failed:
            print(f"  {f.variant.name:<9} {f.error}", file=sys.stderr)
        return 1
    return 0
