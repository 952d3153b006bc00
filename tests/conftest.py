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


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, worker_id) -> Path:
    """A folder all the test processes of this run share (pytest-xdist's documented pattern: the workers'
    base temp's parent), for outputs built once per run under a file lock (:func:`quant_outputs`)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def quant_outputs(name: str, run_dir: Path, form: str = "slim") -> Path:
    """A quantized variant's factory archive (in ``form``: :data:`convert.factory.fixtures.FORMS`) converted by
    the quant modules, once per test run whichever test process asks first (the others wait on the lock): a
    folder holding ``<stem>.h5``, ``_no_top.h5``, ``.keras`` and ``.tflite``. Tests read it and never write into it."""
    from convert.checkpoint import build_layer_guide
    from convert.fsutil import file_lock
    from convert.keras_weights import convert_guide
    from convert.manifest import resolve
    from convert.quant import parity, twin
    from convert.quant.walk import range_variables

    key = name if form == "slim" else f"{name}-{form}"
    out = run_dir / "quant-outputs" / key
    with file_lock(run_dir / f".quant-outputs-{key}.lock"):
        if not (out / "complete").is_file():
            variant = resolve(name)
            opened = parity.open_quant_archive(fixtures.cached_extracted(name, form=form), variant)
            guide = build_layer_guide(opened.checkpoint, variant, twin_ranges=range_variables(opened.quantizers))
            convert_guide(guide, variant, out)
            twin.write_outputs(variant, guide, opened.quantizers, opened.input, out)
            (out / "complete").write_text("")
    return out
