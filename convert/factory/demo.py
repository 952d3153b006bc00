"""``python -m convert demo``: the offline main job. Factory archives for every variant (built once,
cached), served from a loopback HTTP server, and the full pipeline against that mirror."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..env import default_cache
from ..manifest import default_manifest
from ..pipeline import _add_common, _finish, _options, run
from . import fixtures
from .serve import serve_directory


def demo_main(argv: list[str] | None = None) -> int:
    """The offline main job: factory archives for every variant, served on loopback, full pipeline."""
    p = argparse.ArgumentParser(prog="python -m convert demo", description=(
        "Offline demo: build factory archives (cached), serve them from a loopback HTTP server and run the "
        "full pipeline against that mirror. Demo downloads, guides and weights go under --cache "
        "(default cache/demo/), never into weights/."))
    p.add_argument("names", nargs="*", default=["all"], metavar="NAME",
                   help="variants or families (default: all, every variant of every family)")
    p.add_argument("--seed", type=int, default=0, help="factory value seed (default 0)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help=f"demo downloads, guides, weights and checksum lock (default: {default_cache() / 'demo'})")
    _add_common(p, paths=False)
    args = p.parse_args(argv)
    variants = default_manifest().select(args.names)
    root = args.cache or default_cache() / "demo"
    # factory archives cannot match the genuine pins: checked against the demo's own lock file instead
    opts = _options(args, cache=root, work=root / "work", weights_dir=root / "weights",
                    lock=root / "checksums.lock.json", ignore_pins=True)
    if not args.quiet:
        print(f"factory archives for {len(variants)} variant(s): built on first use (~10 s each, {args.jobs} at a "
              f"time), cached in "
              f"{fixtures.cache_root()}", file=sys.stderr)
    mirror_dir = fixtures.publish([v.name for v in variants], root / "mirror", args.seed,
                                  progress=not args.quiet and sys.stderr.isatty(), jobs=args.jobs)
    with serve_directory(mirror_dir) as url:
        print(f"serving {len(variants)} factory archives from {url}", file=sys.stderr)
        opts.mirror = url
        rows = run(variants, opts)
    code = _finish(rows, opts)
    print()
    print((opts.results / "PARITY.md").read_text())
    return code
