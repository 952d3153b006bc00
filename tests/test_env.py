"""Environment settings: an empty variable counts as unset."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from convert.env import CACHE_ENV, PROJECT_ROOT, default_cache, env_setting

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_setting_counts_as_unset(monkeypatch, value):
    monkeypatch.setenv(CACHE_ENV, value)
    assert env_setting(CACHE_ENV) is None
    assert default_cache() == PROJECT_ROOT / "cache"


def test_set_setting_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert default_cache() == tmp_path


def test_empty_reference_variable_is_not_the_current_directory(tmp_path):
    """The genuine-artifact folder of the tests with ``MOBILENET_REFERENCE=`` set empty, read in a fresh process
    whose current directory holds no artifacts: it must stay the vendored folder."""
    code = ("import sys; sys.path[:0] = sys.argv[1:3]; import conftest; print(conftest.REFERENCE_DIR)")
    out = subprocess.run([sys.executable, "-c", code, str(TESTS), str(PROJECT_ROOT)], cwd=tmp_path, capture_output=True, text=True,
                         env={"MOBILENET_REFERENCE": "", "PATH": "/usr/bin:/bin"}, check=True).stdout.strip()
    assert Path(out) == TESTS / "data" / "genuine"
