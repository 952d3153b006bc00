"""Shared test fixtures: factory archives (cached by variant and seed) and the genuine reference files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from convert.factory import fixtures  # noqa: E402
from convert.env import env_setting  # noqa: E402

# The vendored genuine release artifacts (tests/data/genuine, see its README); $MOBILENET_REFERENCE overrides.
REFERENCE_DIR = Path(env_setting("MOBILENET_REFERENCE") or Path(__file__).parent / "data" / "genuine")


def pytest_configure(config):
    config.addinivalue_line("markers", "genuine: reads the vendored genuine release artifacts (tests/data/genuine)")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The genuine artifacts of the official 1.0_224 release, vendored in the repository."""
    if not (REFERENCE_DIR / "mobilenet_v2_1.0_224.ckpt.index").exists():
        pytest.fail(f"genuine reference artifacts not found in {REFERENCE_DIR}; they are vendored in "
                    f"tests/data/genuine (or point $MOBILENET_REFERENCE at a copy)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def small_archive() -> Path:
    """Factory-built official-layout archive of the smallest V2 variant (0.35_96), seed 0."""
    return fixtures.cached_archive("0.35_96")


def run_main(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a CLI ``main`` the way its script does (``run_cli``); returns (exit code, stdout, stderr)."""
    from convert.cli import run_cli

    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err
