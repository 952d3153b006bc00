"""The checks of an installed package (issue 22, point 5), run by the Python of a venv into which the project
was ``pip install``-ed, from a folder outside the checkout (``make install-check`` does all of it):

1. the installed package is the one imported (not the checkout), with its own manifests and data, and its
   default cache and lock in the user's cache folder (``$XDG_CACHE_HOME``), never in site-packages;
2. ``mobilenet-convert run --help`` exits 0;
3. ``mobilenet-convert demo quantized_v2_96_35`` converts one quantized variant through the installed package
   (factory archive on a loopback mirror, the full pipeline, its proofs); its twin ``.keras`` is copied to
   another folder and, in a fresh Python process, loads after ``import convert`` and predicts;
4. ``convert.preprocessing.preprocessing_for`` works: on a variant name, and on the copied twin file (96 x 96,
   [-1, 1]), whose image it loads.

Every failure raises with what was expected; the last line is ``install check: OK``.

    python .ci/install_check.py [--work DIR]   (DIR: an empty scratch folder, default a new temporary one)
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "mobilenet-tf1-to-keras"
SCRIPT = Path(sys.executable).parent / "mobilenet-convert"
VARIANT = "quantized_v2_96_35"  # the smallest quantized variant (96x96 input)


class CheckFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def step(title: str):
    print(f"-- {title}", flush=True)
    return time.perf_counter()


def done(start: float, detail: str = "") -> None:
    print(f"   ok ({time.perf_counter() - start:.1f} s){': ' + detail if detail else ''}", flush=True)


def run(cmd: list[str], cwd: Path, env: dict, timeout: int) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise CheckFailed(f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return out


def clean_env(work: Path) -> dict:
    """The environment of the checked commands: no PYTHONPATH (nothing but the venv's site-packages), the
    user's cache folder inside ``work``, the factory archive cache as given (``MOBILENET_FIXTURES``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MOBILENET_CACHE", "MOBILENET_LOCK")}
    env["XDG_CACHE_HOME"] = str(work / "xdg-cache")
    return env


def check_layout(work: Path) -> None:
    """In this process (started from outside the checkout): what ``import convert`` finds."""
    os.environ.update(clean_env(work))  # before the import: the default lock is set at import
    import convert
    from convert import env
    from convert.download import DEFAULT_LOCK
    from convert.manifest import MANIFEST_DIR, default_manifest

    package = Path(convert.__file__).resolve().parent
    check(CHECKOUT not in package.parents, f"convert was imported from the checkout ({package}), not the install")
    check(env.CHECKOUT is None, f"the installed package thinks it runs from a checkout: {env.CHECKOUT}")
    check(MANIFEST_DIR == package / "manifests", f"manifests read from {MANIFEST_DIR}, not the package's copy")
    variants = default_manifest().variants
    check(len(variants) == 85, f"the installed manifests hold {len(variants)} variants, not 85")
    state = Path(os.environ["XDG_CACHE_HOME"]) / env.APP_NAME
    check(env.default_cache() == state / "cache", f"default cache {env.default_cache()}, not {state / 'cache'}")
    check(DEFAULT_LOCK == state / "checksums.lock.json", f"default lock {DEFAULT_LOCK}, not under {state}")

    files = [str(f) for f in metadata.files(DISTRIBUTION) or []]
    need = ["convert/data/imagenet_class_index.json", "convert/data/bench_targets.json",
            "convert/factory/fixtures.py", "convert/quant/layers.py",
            *(f"convert/manifests/{p.name}" for p in sorted((CHECKOUT / "manifests").glob("mobilenet_*.json")))]
    missing = [f for f in need if f not in files]
    check(not missing, f"the installed distribution lacks {missing}")
    stray = [f for f in files if f.startswith("tests/") or "/tests/" in f or "checksums.lock" in f]
    check(not stray, f"the installed distribution holds files it must not ship: {stray}")
    print(f"   {DISTRIBUTION} {metadata.version(DISTRIBUTION)} at {package}: {len(variants)} variants, "
          f"{sum(f.startswith('convert/manifests/') for f in files)} manifests, {len(files)} files; cache {env.default_cache()}")


LOAD_TWIN = """
import sys
import numpy as np
import keras
import convert  # registers the twin's fake-quant layers
model = keras.saving.load_model(sys.argv[1])
rows = model.input_shape[1]
x = np.random.default_rng(0).uniform(-1, 1, (2, rows, rows, 3)).astype("float32")
probs = model.predict(x, verbose=0)
assert probs.shape == (2, 1000), probs.shape
assert np.allclose(probs.sum(axis=1), 1, atol=1e-3), probs.sum(axis=1)
print(f"{model.name}: input {model.input_shape}, predict {probs.shape}, top class {probs.argmax(axis=1).tolist()}")
"""

PREPROCESSING = """
import sys
import numpy as np
from convert.preprocessing import preprocessing_for
v2 = preprocessing_for("1.0_224")
assert (v2.rows, v2.cols, v2.crop_fraction, v2.form) == (224, 224, 0.875, "unit"), v2
twin = preprocessing_for(sys.argv[1])
assert (twin.rows, twin.cols, twin.form) == (96, 96, "unit"), twin
x = twin(np.random.default_rng(0).integers(0, 256, (2, 120, 150, 3), dtype=np.uint8))
assert x.shape == (2, 96, 96, 3) and x.dtype == np.float32 and -1 <= x.min() and x.max() <= 1, (x.shape, x.dtype)
print(f"preprocessing_for('1.0_224'): {v2.describe()}; the twin's: {twin.rows} x {twin.cols}, batch {x.shape}")
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary folder)")
    args = p.parse_args(argv)
    check(Path.cwd().resolve() != CHECKOUT and CHECKOUT not in Path.cwd().resolve().parents,
          f"run this from outside the checkout (the current directory {Path.cwd()} is inside {CHECKOUT})")
    check(SCRIPT.is_file(), f"no console script {SCRIPT}: is {DISTRIBUTION} installed into {sys.prefix}?")
    with tempfile.TemporaryDirectory(prefix="install-check-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        env = clean_env(work)

        start = step(f"import convert from {sys.prefix} (current directory {Path.cwd()})")
        check_layout(work)
        done(start)

        start = step("mobilenet-convert run --help")
        out = run([str(SCRIPT), "run", "--help"], work, env, 300)
        check(out.stdout.startswith("usage:"), f"run --help printed no usage:\n{out.stdout[:500]}")
        done(start)

        start = step(f"mobilenet-convert demo {VARIANT} (factory archives: {env.get('MOBILENET_FIXTURES', 'the default cache')})")
        demo = work / "demo"
        run([str(SCRIPT), "demo", VARIANT, "--cache", str(demo), "--results", str(demo / "results"), "--quiet"],
            work, env, 900)
        twin = demo / "weights" / f"{VARIANT}.keras"
        check(twin.is_file(), f"the demo wrote no twin {twin}")
        done(start, f"{twin.name}, {twin.stat().st_size:,} bytes")

        start = step("the twin, copied elsewhere, loads after `import convert` in a fresh process and predicts")
        elsewhere = work / "elsewhere"
        elsewhere.mkdir()
        shutil.copy2(twin, elsewhere / twin.name)
        out = run([sys.executable, "-c", LOAD_TWIN, twin.name], elsewhere, env, 300)
        done(start, out.stdout.strip().splitlines()[-1])

        start = step("convert.preprocessing.preprocessing_for")
        out = run([sys.executable, "-c", PREPROCESSING, twin.name], elsewhere, env, 300)
        done(start, out.stdout.strip().splitlines()[-1])
    print("install check: OK")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as exc:
        print(f"install check FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
