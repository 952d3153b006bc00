"""Shared test fixtures: factory archives (cached by variant and seed) and the genuine reference files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from convert import fixtures  # noqa: E402
from convert.manifest import PROJECT_ROOT  # noqa: E402

REFERENCE_DIR = Path(os.environ.get("MOBILENET_REFERENCE", PROJECT_ROOT.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference (genuine artifacts of the official 1.0_224 release); skips, saying so, if absent."""
    if not (REFERENCE_DIR / "mobilenet_v2_1.0_224.ckpt.index").exists():
        pytest.skip(f"genuine reference artifacts not found in {REFERENCE_DIR} (expected ../shared/reference "
                    "beside the checkout, or set MOBILENET_REFERENCE)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def small_archive() -> Path:
    """Factory-built official-layout archive of the smallest variant (0.35_96), seed 0."""
    return fixtures.cached_archive("0.35_96")


def run_main(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a CLI ``main`` the way its script does (``run_cli``); returns (exit code, stdout, stderr)."""
    from convert.cli import run_cli

    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err
