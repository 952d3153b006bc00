"""The installable package (pyproject.toml): its console script, its dependency ranges against the pins, and
where an installed copy (no checkout around it) reads its manifests and keeps its cache and lock. The real
``pip install .`` into a fresh venv is ``make install-check`` (a step of ``.ci/run``), which needs a package index."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from convert.env import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version
    return out


def test_console_script_is_python_m_convert():
    assert PYPROJECT["project"]["scripts"] == {"mobilenet-convert": "convert.__main__:console"}
    from convert import __main__

    assert callable(__main__.console)
    code = "import sys; sys.argv = ['mobilenet-convert', *sys.argv[1:]]; from convert.__main__ import console; console()"
    ok = subprocess.run([sys.executable, "-c", code, "run", "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("usage:"), ok.stderr
    bad = subprocess.run([sys.executable, "-c", code, "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown command 'nope'")


def test_dependency_ranges_admit_the_pins():
    """Every runtime and test dependency is pinned for CI, and its range admits the pinned version; tf-keras
    (installed apart with --no-deps) is no dependency."""
    exact = pins(PROJECT_ROOT / "constraints.txt")
    required = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    required += [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]]
    for req in required:
        name = canonicalize_name(req.name)
        assert name in exact, f"{req} is not pinned in constraints.txt"
        assert req.specifier.contains(exact[name]), f"{req} does not admit the pinned {name}=={exact[name]}"
    names = {canonicalize_name(r.name) for r in required}
    assert names >= set(pins(PROJECT_ROOT / "requirements.txt")), "every pin of requirements.txt is a dependency"
    assert not names & set(pins(PROJECT_ROOT / "requirements-nodeps.txt"))


def test_an_installed_copy_reads_its_own_manifests_and_keeps_state_in_the_user_cache(tmp_path):
    """A copy of the package laid out as the wheel installs it (``convert/`` with ``convert/manifests/``, no
    checkout around it), imported from another folder: manifests from the copy, the cache, factory cache and
    checksum lock under ``$XDG_CACHE_HOME/mobilenet-tf1-to-keras/``, outputs relative to the current directory;
    the bench's naive baseline (the checkout's scripts) is refused with the way out."""
    site = tmp_path / "site-packages"
    shutil.copytree(PROJECT_ROOT / "convert", site / "convert", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "convert" / "manifests").mkdir()
    for path in (PROJECT_ROOT / "manifests").glob("mobilenet_*.json"):  # as hatch_build.py maps them
        shutil.copy(path, site / "convert" / "manifests" / path.name)
    cwd, xdg = tmp_path / "elsewhere", tmp_path / "xdg"
    cwd.mkdir()
    code = """if True:
        import json, convert, convert.env as env
        from convert.download import DEFAULT_LOCK
        from convert.factory.fixtures import cache_root
        from convert.manifest import MANIFEST_DIR, default_manifest
        from convert.pipeline import Options
        print(json.dumps({"package": convert.__file__, "checkout": env.CHECKOUT and str(env.CHECKOUT),
                          "manifests": str(MANIFEST_DIR), "variants": len(default_manifest().variants),
                          "cache": str(env.default_cache()), "fixtures": str(cache_root()), "lock": str(DEFAULT_LOCK),
                          "weights": str(Options().weights_dir.resolve())}))"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(xdg)}
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    state = xdg / "mobilenet-tf1-to-keras"
    assert got == {"package": str(site / "convert" / "__init__.py"), "checkout": None,
                   "manifests": str(site / "convert" / "manifests"), "variants": 85, "cache": str(state / "cache"),
                   "fixtures": str(state / "cache" / "fixtures"), "lock": str(state / "checksums.lock.json"),
                   "weights": str(cwd / "weights")}

    env.pop("XDG_CACHE_HOME")  # unset: ~/.cache, as the XDG spec says
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout)["cache"] == str(tmp_path / "home" / ".cache" / "mobilenet-tf1-to-keras" / "cache")

    bench = subprocess.run([sys.executable, "-m", "convert", "bench", "v2", "--baseline", "1"], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=120)
    assert bench.returncode == 2 and "pass --baseline 0" in bench.stderr, bench.stderr
    assert not (tmp_path / "home").exists(), "nothing is written before the bench refuses"


def test_the_checkout_is_a_checkout():
    from convert import env
    from convert.download import DEFAULT_LOCK
    from convert.manifest import MANIFEST_DIR

    assert env.CHECKOUT == PROJECT_ROOT and MANIFEST_DIR == PROJECT_ROOT / "manifests"
    assert DEFAULT_LOCK == PROJECT_ROOT / "manifests" / "checksums.lock.json"
    assert not (PROJECT_ROOT / "convert" / "manifests").exists(), "the manifests' one copy is manifests/"
