"""Download/cache/extract against a real HTTP server on 127.0.0.1 with injected faults (no mocks).

Every test asserts the outcome and that ``cache/archives/<file>`` is either the verified archive or absent.

Manifest variants carry the genuine archives' sha256 pins, which factory and ``make_tgz`` archives fail:
``go`` therefore fetches with ``ignore_pins=True`` (checked against the test's lock file, trust on first
use) unless a test passes ``ignore_pins=False`` to exercise a pin (the genuine one, or its own via
``dataclasses.replace(variant, sha256=…, size=…)``) or the unpinned path (``sha256=None, size=None``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import requests

from _faulty_server import Fault, FaultyServer
from convert import download as dl
from convert.factory import fixtures
from convert.archive import find_checkpoint
from convert.download import DownloadError, FetchResult, NetOptions, fetch
from convert.download import fetcher
from convert.env import CACHE_ENV, PROJECT_ROOT
from convert.errors import UserError
from convert.manifest import Alternative, default_manifest, resolve
from convert.factory.serve import DirectoryServer, parse_range, serve_directory

# per test function only: the session/module fixtures (factory archives, built on a cold cache) are not timed
pytestmark = pytest.mark.timeout(60, func_only=True)

FAST = NetOptions(timeout=(5.0, 3.0), retries=3, backoff_factor=0.01, resumes=3)
# the members of a V1/V2 release archive (and of the factory's), after ``./<stem>``
SUFFIXES = (".ckpt.data-00000-of-00001", ".ckpt.index", ".ckpt.meta", "_eval.pbtxt", "_frozen.pb", "_info.txt")
V = resolve("0.35_96")  # pinned: the genuine archive's sha256 (no size known)
V1 = resolve("mobilenet_v1_0.25_128")
GENUINE_TSV = Path(__file__).parent / "data" / "genuine" / "official_archives.tsv"
QUANT_TSV = GENUINE_TSV.with_name("quant_archives.tsv")
V1_2018_08_02_TSV = GENUINE_TSV.with_name("v1_2018_08_02_archives.tsv")
PROJECT_CACHE = PROJECT_ROOT / "cache"
NET_ENV = (dl.MIRROR_ENV, dl.LOCK_ENV, CACHE_ENV, "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
           "https_proxy", "all_proxy")


# ----------------------------------------------------------------------------- helpers

def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tgz(path: Path, model_name: str = V.stem, data_size: int = 200_000, seed: int = 0,
             suffixes=SUFFIXES, extra: tuple = ()) -> Path:
    """A small official-layout archive (``./<model>.ckpt.*`` members of random bytes) plus ``extra``
    ``(TarInfo, bytes|None)`` members."""
    rng = __import__("random").Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for suffix in suffixes:
            payload = rng.randbytes(data_size if ".data-" in suffix else 2_000)
            info = tarfile.TarInfo(f"./{model_name}{suffix}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for info, payload in extra:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def assert_clean(cache: Path, variant=V, verified_sha: str | None = None) -> None:
    """No corrupt/partial file under the archive's final name or in extracted/."""
    final = cache / "archives" / variant.archive_filename
    if verified_sha is None:
        assert not final.exists(), f"{final} must not exist after a failure"
        assert not (cache / "extracted" / variant.name).exists()
    else:
        assert sha(final) == verified_sha
    assert not list(cache.glob("extracted/.*tmp-*")), "a temporary extraction directory was left behind"


def read_or_none(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


@pytest.fixture(autouse=True)
def _isolation(monkeypatch):
    """Never read the user's env or write the project's real cache / lock file."""
    for var in NET_ENV:
        monkeypatch.delenv(var, raising=False)
    guarded = [dl.DEFAULT_LOCK, dl.DEFAULT_LOCK.with_name(dl.DEFAULT_LOCK.name + ".flock"),
               PROJECT_CACHE / dl.CACHE_LOCK_NAME,
               *(PROJECT_CACHE / d for d in ("archives", "extracted", "quarantine"))]
    before = [(p, p.stat().st_mtime_ns if p.exists() else None) for p in guarded]
    lock_before = read_or_none(dl.DEFAULT_LOCK)
    yield
    after = [(p, p.stat().st_mtime_ns if p.exists() else None) for p in guarded]
    assert before == after, "a test touched the project's real lock file or download cache"
    assert read_or_none(dl.DEFAULT_LOCK) == lock_before


@pytest.fixture(scope="session")
def factory_archive(small_archive) -> Path:
    """The factory-built official-layout 0.35_96 archive (tests/conftest.py)."""
    return small_archive


@pytest.fixture(scope="module")
def factory_v1_archive() -> Path:
    """The factory-built official-layout mobilenet_v1_0.25_128 archive (built once, then cached)."""
    return fixtures.cached_archive(V1.name)


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    with FaultyServer(root) as server:
        yield server


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def lock(tmp_path) -> Path:
    return tmp_path / "checksums.lock.json"


def link_or_copy(src: Path, dest: Path) -> None:
    """Place ``src`` at ``dest`` (a hard link to save copying the big factory archives; never writing
    through an existing link into the cached fixture)."""
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def put(server: FaultyServer, archive: Path, variant=V) -> str:
    link_or_copy(archive, server.root / variant.archive_filename)
    return sha(archive)


def go(server, cache, lock, variant=V, **kw):
    kw.setdefault("ignore_pins", True)
    return fetch(variant, cache, mirror=server.url, lock_path=lock, quiet=True, net=kw.pop("net", FAST), **kw)


def unpinned(variant=V):
    return dataclasses.replace(variant, sha256=None, size=None)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in NET_ENV}


# ----------------------------------------------------------------------------- happy path and cache

def test_factory_archive_downloads_verifies_extracts_and_is_cached(served, cache, lock, factory_archive, capsys):
    want = put(served, factory_archive)
    result = go(served, cache, lock)
    assert result.downloaded and result.sha256 == want and result.source == f"{served.url}/{V.archive_filename}"
    assert result.checked_against == "lock" and result.archive == cache / "archives" / V.archive_filename
    assert_clean(cache, verified_sha=want)
    assert result.extracted == cache / "extracted" / V.name
    assert (result.extracted / f"{V.stem}.ckpt.index").is_file()
    assert list(result.extracted.glob(f"{V.stem}.ckpt.data-*"))
    assert (result.extracted / ".complete").read_text().strip() == want
    assert find_checkpoint(result.extracted, V) == (result.extracted / f"{V.stem}.ckpt",
                                                    V.family.layout.checkpoints[0])
    assert not list(cache.rglob("*.part"))
    entry = json.loads(lock.read_text())[V.archive_filename]
    assert entry["sha256"] == want and entry["size"] == factory_archive.stat().st_size
    assert entry["source"] == result.source and entry["recorded"]
    assert "trust on first use" in capsys.readouterr().err

    again = go(served, cache, lock)
    assert not again.downloaded and again.sha256 == want and again.extracted == result.extracted
    assert len(served.gets(V.archive_filename)) == 1, "an already-verified archive must not be fetched again"


def test_connection_dropped_mid_body_is_resumed_with_range(served, cache, lock, factory_archive):
    want = put(served, factory_archive)
    served.script(V.archive_filename, Fault("drop", after=300_000))
    result = go(served, cache, lock)
    gets = served.gets(V.archive_filename)
    assert len(gets) == 2 and "Range" not in gets[0].headers
    start = int(gets[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 300_000
    assert result.sha256 == want
    assert_clean(cache, verified_sha=want)


def test_server_ignoring_range_restarts_cleanly(served, cache, lock, factory_archive):
    want = put(served, factory_archive)
    served.script(V.archive_filename, Fault("drop", after=200_000), Fault("ignore_range"))
    result = go(served, cache, lock)
    gets = served.gets(V.archive_filename)
    assert len(gets) == 2 and gets[1].headers["Range"].startswith("bytes=")
    assert result.sha256 == want and result.downloaded
    assert_clean(cache, verified_sha=want)


def test_stale_inconsistent_part_is_discarded_and_downloaded_again(served, cache, lock, tmp_path):
    archive = make_tgz(tmp_path / "a.tgz")
    want = put(served, archive)
    part = cache / "archives" / (V.archive_filename + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 5_000)  # an earlier run's part of some other file
    pin = dataclasses.replace(V, sha256=want, size=archive.stat().st_size)
    result = go(served, cache, lock, variant=pin, ignore_pins=False)
    gets = served.gets(V.archive_filename)
    assert [g.headers.get("Range") for g in gets] == ["bytes=5000-", None]
    assert result.sha256 == want and result.checked_against == "pin" and not part.exists()
    assert_clean(cache, verified_sha=want)
    assert not lock.exists()


def test_part_longer_than_remote_file_starts_over(served, cache, lock, tmp_path):
    want = put(served, make_tgz(tmp_path / "a.tgz"))
    part = cache / "archives" / (V.archive_filename + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 10_000_000)  # server answers 416
    result = go(served, cache, lock)
    assert [g.headers.get("Range") for g in served.gets(V.archive_filename)] == ["bytes=10000000-", None]
    assert result.sha256 == want
    assert_clean(cache, verified_sha=want)


# ----------------------------------------------------------------------------- HTTP errors and timeouts

def test_500_then_200_is_retried(served, cache, lock, tmp_path):
    want = put(served, make_tgz(tmp_path / "a.tgz"))
    served.script(V.archive_filename, Fault("status", code=500), Fault("status", code=429))
    result = go(served, cache, lock)
    assert len(served.gets(V.archive_filename)) == 3
    assert result.sha256 == want
    assert_clean(cache, verified_sha=want)


def test_persistent_5xx_gives_up_with_clear_error(served, cache, lock, tmp_path):
    put(served, make_tgz(tmp_path / "a.tgz"))
    served.script(V.archive_filename, *[Fault("status", code=502)] * 10)
    with pytest.raises(DownloadError, match=r"HTTP 502 .*after retries"):
        go(served, cache, lock)
    assert len(served.gets(V.archive_filename)) == FAST.retries + 1
    assert_clean(cache)
    assert not lock.exists()


def test_404_is_a_clear_error_without_retries(served, cache, lock):
    with pytest.raises(DownloadError) as err:
        go(served, cache, lock)
    assert "404" in str(err.value) and f"{served.url}/{V.archive_filename}" in str(err.value)
    assert len(served.gets(V.archive_filename)) == 1
    assert_clean(cache)
    assert not list(cache.rglob("*.part")) and not lock.exists()


def test_connection_refused_is_a_clear_error(cache, lock):
    import socket
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match=r"cannot download http://127\.0\.0\.1:\d+/.*--mirror"):
        fetch(V, cache, mirror=f"http://127.0.0.1:{port}", lock_path=lock, quiet=True, net=FAST, ignore_pins=True)
    assert_clean(cache)
    assert not list(cache.rglob("*.part"))


def test_read_timeout_mid_body_is_resumed(served, cache, lock, tmp_path):
    want = put(served, make_tgz(tmp_path / "a.tgz"))
    net = dataclasses.replace(FAST, timeout=(5.0, 1.0))  # stalls are 5x the read timeout: robust on a busy machine
    served.script(V.archive_filename, Fault("stall", after=150_000, seconds=5.0))
    result = go(served, cache, lock, net=net)
    gets = served.gets(V.archive_filename)
    assert len(gets) == 2 and gets[1].headers["Range"].startswith("bytes=")
    assert result.sha256 == want
    assert_clean(cache, verified_sha=want)


def test_read_timeout_every_time_fails_and_keeps_only_the_part(served, cache, lock, tmp_path):
    archive = make_tgz(tmp_path / "a.tgz", data_size=1_000_000)
    put(served, archive)
    net = dataclasses.replace(FAST, timeout=(5.0, 1.0), resumes=1)
    served.script(V.archive_filename, *[Fault("stall", after=150_000, seconds=5.0)] * 2)
    with pytest.raises(DownloadError, match="timed out 2 times"):
        go(served, cache, lock, net=net)
    assert_clean(cache)
    gets = served.gets(V.archive_filename)
    assert len(gets) == 2 and gets[1].headers["Range"] != "bytes=0-"
    # Documented: an interrupted download stays as <file>.part so the next run resumes it.
    part = cache / "archives" / (V.archive_filename + ".part")
    assert 0 < part.stat().st_size < archive.stat().st_size
    assert part.read_bytes() == archive.read_bytes()[: part.stat().st_size]


# ----------------------------------------------------------------------------- integrity: pins

def test_checksum_mismatch_against_pin_is_quarantined(served, cache, lock, tmp_path):
    got = put(served, make_tgz(tmp_path / "a.tgz"))
    pin = "ab" * 32
    with pytest.raises(DownloadError) as err:
        go(served, cache, lock, variant=dataclasses.replace(V, sha256=pin), ignore_pins=False)
    assert got in str(err.value) and pin in str(err.value) and "manifest pin" in str(err.value)
    assert_clean(cache)
    quarantined = list((cache / "quarantine").iterdir())
    assert [sha(q) for q in quarantined] == [got]
    assert not list(cache.rglob("*.part")) and not lock.exists()


def test_factory_archive_is_refused_by_the_genuine_pin(served, cache, lock, factory_archive):
    """The manifest's real pin (the genuine 0.35_96 archive) against the factory-built archive."""
    assert V.sha256 and dict(parse_genuine_tsv())[V.url][0] == V.sha256
    got = put(served, factory_archive)
    assert got != V.sha256
    with pytest.raises(DownloadError) as err:
        go(served, cache, lock, ignore_pins=False)
    msg = str(err.value)
    assert "sha256 mismatch" in msg and f"downloaded {got}" in msg and f"manifest pin says {V.sha256}" in msg
    assert "--ignore-pins" in msg, "the refusal says how to accept a rebuilt archive"
    # nothing under archives/ but the per-archive lock: no archive, no .part
    assert sorted(p.name for p in (cache / "archives").iterdir()) == [f".{V.archive_filename}.flock"]
    assert_clean(cache)
    quarantined = list((cache / "quarantine").iterdir())
    assert [q.name for q in quarantined] == [f"{V.archive_filename}.{got[:12]}"] and sha(quarantined[0]) == got
    assert str(quarantined[0]) in msg
    assert not lock.exists(), "a pinned archive is never recorded in a lock file"


@pytest.mark.parametrize("source", ["http", "directory"])
def test_size_pin_differing_from_the_announced_size_is_refused_before_hashing(
        source, served, cache, lock, factory_archive, monkeypatch):
    put(served, factory_archive)
    real = factory_archive.stat().st_size
    pinned = dataclasses.replace(V, size=real + 1)  # keeps the genuine sha256 pin
    hashed = []
    real_sha256_file = fetcher.sha256_file
    monkeypatch.setattr(fetcher, "sha256_file", lambda path: hashed.append(Path(path)) or real_sha256_file(path))
    mirror = served.url if source == "http" else str(served.root)
    with pytest.raises(DownloadError) as err:
        fetch(pinned, cache, mirror=mirror, lock_path=lock, quiet=True, net=FAST)
    msg = str(err.value)
    assert "size mismatch" in msg and f"announces {real} bytes" in msg and f"pin says {real + 1}" in msg
    assert hashed == [], "a size mismatch is refused before any hashing"
    assert len(served.gets(V.archive_filename)) == (1 if source == "http" else 0)
    # refused on the announced size: no body was written, so nothing to keep or quarantine
    assert not list(cache.rglob("*.part")) and not list(cache.glob("quarantine/*"))
    assert_clean(cache)
    assert not lock.exists()


@pytest.mark.parametrize("lock_arg", ["given", "default"])
def test_ignore_pins_accepts_the_factory_archive_into_a_lock_file(lock_arg, served, cache, lock, factory_archive,
                                                                  capsys):
    project_lock = read_or_none(dl.DEFAULT_LOCK)
    want = put(served, factory_archive)
    with pytest.raises(DownloadError):  # the genuine pin refuses it ...
        go(served, cache, lock, ignore_pins=False)
    used = lock if lock_arg == "given" else cache / dl.CACHE_LOCK_NAME
    result = fetch(V, cache, mirror=served.url, lock_path=lock if lock_arg == "given" else None, quiet=True,
                   net=FAST, ignore_pins=True)  # ... --ignore-pins accepts it against a lock file
    assert result.downloaded and result.sha256 == want and result.checked_against == "lock"
    assert_clean(cache, verified_sha=want)
    entry = json.loads(used.read_text())[V.archive_filename]
    assert entry["sha256"] == want and entry["size"] == factory_archive.stat().st_size
    assert f"recorded sha256 {want} in {used}" in capsys.readouterr().err
    assert not (lock if lock_arg == "default" else cache / dl.CACHE_LOCK_NAME).exists()
    assert read_or_none(dl.DEFAULT_LOCK) == project_lock, "--ignore-pins never writes the project's lock"
    again = fetch(V, cache, mirror=served.url, lock_path=lock if lock_arg == "given" else None, quiet=True,
                  net=FAST, ignore_pins=True)
    assert not again.downloaded and again.sha256 == want and len(served.gets(V.archive_filename)) == 2


def test_matching_pin_is_accepted_without_a_lock_file(served, cache, lock, factory_archive, capsys):
    want = put(served, factory_archive)
    pinned = dataclasses.replace(V, sha256=want, size=factory_archive.stat().st_size)
    result = go(served, cache, lock, variant=pinned, ignore_pins=False)
    assert result.downloaded and result.sha256 == want and result.checked_against == "pin"
    assert_clean(cache, verified_sha=want)
    assert (result.extracted / ".complete").read_text().strip() == want
    again = go(served, cache, lock, variant=pinned, ignore_pins=False)
    assert not again.downloaded and again.checked_against == "pin"
    assert len(served.gets(V.archive_filename)) == 1
    assert not lock.exists() and not (cache / dl.CACHE_LOCK_NAME).exists(), "a pin needs no lock file"
    assert "trust on first use" not in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["unpinned", "ignore-pins"])
def test_tofu_lock_is_written_then_enforced(mode, served, cache, lock, tmp_path, capsys):
    variant, ignore = (unpinned(), False) if mode == "unpinned" else (V, True)
    first = put(served, make_tgz(tmp_path / "a.tgz", seed=1))
    assert go(served, cache, lock, variant=variant, ignore_pins=ignore).checked_against == "lock"
    assert f"recorded sha256 {first}" in capsys.readouterr().err
    recorded = lock.read_text()
    assert json.loads(recorded)[V.archive_filename]["sha256"] == first

    other = put(served, make_tgz(tmp_path / "b.tgz", seed=2))  # the server now serves something else
    cache2 = tmp_path / "cache2"
    with pytest.raises(DownloadError) as err:
        go(served, cache2, lock, variant=variant, ignore_pins=ignore)
    assert first in str(err.value) and other in str(err.value) and str(lock) in str(err.value)
    assert_clean(cache2)
    assert [sha(q) for q in (cache2 / "quarantine").iterdir()] == [other]
    assert lock.read_text() == recorded


def test_unpinned_archive_uses_the_lock_from_the_environment(served, cache, tmp_path, monkeypatch):
    env_lock = tmp_path / "env.lock.json"
    monkeypatch.setenv(dl.LOCK_ENV, str(env_lock))
    want = put(served, make_tgz(tmp_path / "a.tgz"))
    result = fetch(unpinned(), cache, mirror=served.url, quiet=True, net=FAST)
    assert result.checked_against == "lock" and result.sha256 == want
    assert json.loads(env_lock.read_text())[V.archive_filename]["sha256"] == want
    assert not (cache / dl.CACHE_LOCK_NAME).exists()


def test_lock_for_picks_the_lock_file(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    assert dl.lock_for(cache, None, False).path == dl.DEFAULT_LOCK
    monkeypatch.setenv(dl.LOCK_ENV, str(tmp_path / "env.json"))
    assert dl.lock_for(cache, None, False).path == tmp_path / "env.json"
    assert dl.lock_for(cache, None, True).path == cache / dl.CACHE_LOCK_NAME  # never the env's nor the project's
    assert dl.lock_for(cache, tmp_path / "x.json", True).path == tmp_path / "x.json"
    assert dl.lock_for(cache, dl.DEFAULT_LOCK, False).path == dl.DEFAULT_LOCK
    link = tmp_path / "link.json"
    link.symlink_to(dl.DEFAULT_LOCK)
    for path in (dl.DEFAULT_LOCK, link, dl.DEFAULT_LOCK.parent / ".." / "manifests" / dl.DEFAULT_LOCK.name):
        with pytest.raises(UserError, match="--ignore-pins never records into"):
            dl.lock_for(cache, path, True)
    monkeypatch.chdir(PROJECT_ROOT)
    with pytest.raises(UserError):
        dl.lock_for(cache, Path("manifests") / dl.DEFAULT_LOCK.name, True)


def parse_genuine_tsv(path: Path = GENUINE_TSV) -> list[tuple[str, tuple[str, int | None]]]:
    """``(url, (sha256, size or None))`` rows of a vendored list of genuine archives: the float ones of the
    2018_02_22 / V2 / V3 releases (official_archives.tsv), the V1 float 2018_08_02 ones
    (v1_2018_08_02_archives.tsv), the V1 quantization-aware ones (quant_archives.tsv)."""
    lines = path.read_text().splitlines()
    header = lines[0].lstrip("# ").split("\t")
    assert {"archive", "url", "sha256", "size_bytes"} <= set(header), header
    rows = []
    for line in lines[1:]:
        if not line.strip() or line.startswith("#"):
            continue
        row = dict(zip(header, line.split("\t")))
        assert row["url"].rsplit("/", 1)[-1] == row["archive"], row
        size = row["size_bytes"].strip()
        rows.append((row["url"], (row["sha256"].strip(), int(size) if size else None)))
    return rows


@pytest.mark.genuine
def test_every_manifest_pin_matches_the_genuine_archive_list():
    """Each URL of the manifests (primary and alternatives) is pinned exactly when a vendored list has it,
    with that list's sha256 (and size where it gives one)."""
    rows = [row for tsv in (GENUINE_TSV, V1_2018_08_02_TSV, QUANT_TSV) for row in parse_genuine_tsv(tsv)]
    genuine = dict(rows)
    assert len(genuine) == len(rows), "a URL is listed twice in the vendored archive lists"
    checked = dict.fromkeys(("v1", "v2", "v3", "v1-quant", "v2-quant", "v3-quant"), 0)
    alternatives = sized = 0
    urls = set()
    for v in default_manifest():
        for i, (url, sha256, size) in enumerate(v.urls):
            urls.add(url)
            if url not in genuine:
                assert sha256 is None and size is None, f"{v.name}: {url} pinned, but in no vendored list"
                continue
            want_sha, want_size = genuine[url]
            assert sha256 == want_sha, f"{v.name}: manifest sha256 {sha256} of {url} != vendored {want_sha}"
            if want_size is not None:
                assert size == want_size, f"{v.name}: manifest size {size} of {url} != vendored {want_size}"
                sized += 1
            checked[v.family_key] += 1
            alternatives += i > 0
    # V1: 4 primary (2018_08_02) pins + 16 alternative (2018_02_22) pins; V3 float 4 and uint8 2
    assert checked == {"v1": 20, "v2": 22, "v3": 4, "v1-quant": 16, "v2-quant": 0, "v3-quant": 2}
    assert alternatives == 16
    assert sized == sum(size is not None for url, (_, size) in rows if url in urls)
    assert sized >= 6  # V2 1.4_224 and 1.0_224, V1 2018_08_02 1.0_224, 0.5_224, 0.5_160, 0.25_128


# ----------------------------------------------------------------------------- integrity: cache and lock

@pytest.mark.parametrize("mode", ["lock", "pin"])
def test_tampered_cached_archive_is_quarantined_and_fetched_again(mode, served, cache, lock, tmp_path):
    archive = make_tgz(tmp_path / "a.tgz")
    want = put(served, archive)
    variant = V if mode == "lock" else dataclasses.replace(V, sha256=want, size=archive.stat().st_size)
    go(served, cache, lock, variant=variant, extract=False, ignore_pins=mode == "lock")
    final = cache / "archives" / V.archive_filename
    final.write_bytes(b"tampered")
    result = go(served, cache, lock, variant=variant, ignore_pins=mode == "lock")
    assert result.downloaded and result.sha256 == want and result.checked_against == mode
    assert [sha(q) for q in (cache / "quarantine").iterdir()] == [hashlib.sha256(b"tampered").hexdigest()]
    assert_clean(cache, verified_sha=want)
    assert lock.exists() == (mode == "lock")


def test_cached_archive_without_lock_entry_is_rechecked(served, cache, lock, tmp_path, capsys):
    want = put(served, make_tgz(tmp_path / "a.tgz"))
    go(served, cache, lock, extract=False)
    lock.unlink()  # e.g. a fresh checkout with an old cache: the archive is checked, then recorded
    assert not go(served, cache, lock, extract=False).downloaded
    assert json.loads(lock.read_text())[V.archive_filename]["sha256"] == want
    assert "of cached" in capsys.readouterr().err
    final = cache / "archives" / V.archive_filename
    final.write_bytes(b"not an archive")  # a junk file under the final name is never trusted
    lock.unlink()
    result = go(served, cache, lock, extract=False)
    assert result.downloaded and result.sha256 == want and len(served.gets(V.archive_filename)) == 2
    assert_clean(cache, verified_sha=want)


def test_concurrent_lock_writes_merge(lock):
    locker = dl.ChecksumLock(lock)
    threads = [threading.Thread(target=locker.record, args=(f"f{i}.tgz", f"{i:064x}", i, "src")) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(json.loads(lock.read_text())) == sorted(f"f{i}.tgz" for i in range(20))


# ----------------------------------------------------------------------------- two processes, one cache

def _wait_all(procs: list[subprocess.Popen], timeout: float = 45) -> list[tuple[int, str, str]]:
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


_RECORDER = """
import sys
from convert.download import ChecksumLock
lock, tag = ChecksumLock(sys.argv[1]), sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
for i in range(60):
    lock.record(f"{tag}-{i}.tgz", f"{i:064x}", i, tag)
"""


def test_lock_records_from_two_processes_all_survive(lock):
    procs = [subprocess.Popen([sys.executable, "-c", _RECORDER, str(lock), tag], cwd=PROJECT_ROOT, env=clean_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in ("a", "b")]
    try:
        for p in procs:  # both imported and waiting: then start them together
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()  # (communicate() closes it)
    finally:
        results = _wait_all(procs)
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    data = json.loads(lock.read_text())
    assert sorted(data) == sorted(f"{tag}-{i}.tgz" for tag in "ab" for i in range(60)), "entries were lost"
    assert all(data[f"{tag}-{i}.tgz"]["sha256"] == f"{i:064x}" for tag in "ab" for i in range(60))


@pytest.mark.parametrize("case", ["same-variant", "two-variants"])
def test_two_download_processes_share_one_cache(case, tmp_path, factory_archive, factory_v1_archive):
    """Two real ``python -m convert download`` processes started together on one cache: both succeed,
    each archive is downloaded, verified, recorded and extracted once, and the lock keeps every entry."""
    sources = {V.name: (V, factory_archive), V1.name: (V1, factory_v1_archive)}
    names = [V.name, V.name] if case == "same-variant" else [V.name, V1.name]
    wanted = {name: sources[name] for name in names}
    cache = tmp_path / "shared cache"
    (tmp_path / "www").mkdir()
    with FaultyServer(tmp_path / "www") as server:
        for variant, archive in wanted.values():
            put(server, archive, variant)
            # the first download stays in flight for 3 s, so the other process (its start-up takes well under a
            # second, and under 2 s on a loaded 2-core machine) arrives meanwhile and must wait on the cache lock
            server.script(variant.archive_filename, Fault("delay", seconds=3.0))
        procs = [subprocess.Popen([sys.executable, "-m", "convert", "download", name, "--mirror", server.url,
                                   "--cache", str(cache), "--ignore-pins", "--quiet"],
                                  cwd=PROJECT_ROOT, env=clean_env(), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
        results = _wait_all(procs)
        gets = {name: len(server.gets(v.archive_filename)) for name, (v, _) in wanted.items()}
    assert [code for code, _, _ in results] == [0, 0], "\n".join(err for _, _, err in results)
    assert gets == {name: 1 for name in wanted}, "each archive is downloaded once, whoever gets there first"
    errs = "".join(err for _, _, err in results)
    lock = json.loads((cache / dl.CACHE_LOCK_NAME).read_text())
    assert sorted(lock) == sorted(v.archive_filename for v, _ in wanted.values()), "lock entries were lost"
    for name, (variant, archive) in wanted.items():
        want = sha(archive)
        assert_clean(cache, variant, verified_sha=want)
        assert lock[variant.archive_filename]["sha256"] == want
        assert lock[variant.archive_filename]["size"] == archive.stat().st_size
        assert errs.count(f"first download of {variant.archive_filename}") == 1
        root = cache / "extracted" / variant.name
        assert (root / ".complete").read_text().strip() == want
        assert find_checkpoint(root, variant)[0] == root / f"{variant.stem}.ckpt"
    assert sorted(p.name for p in (cache / "extracted").iterdir()) == sorted(wanted), "one extraction each"
    listed = sorted(p.name for p in (cache / "archives").iterdir())
    memos = [n for n in listed if n.endswith(".sha256.json")]  # written with each verified download
    assert sorted(set(listed) - set(memos)) == sorted(
        [v.archive_filename for v, _ in wanted.values()] + [f".{v.archive_filename}.flock" for v, _ in wanted.values()])
    for memo in memos:  # sha256_remembered's memo holds the archive's true hash
        name = memo[1:].removesuffix(".sha256.json")
        assert json.loads((cache / "archives" / memo).read_text())["sha256"] == sha(cache / "archives" / name)
    assert memos == sorted(f".{v.archive_filename}.sha256.json" for v, _ in wanted.values())
    assert not (cache / "quarantine").exists()


# ----------------------------------------------------------------------------- threads and the umask

def test_fetch_many_threads_never_touch_the_umask(served, cache, lock, tmp_path, monkeypatch):
    variants = [resolve("0.35_96"), resolve("0.35_128")]
    want = {v.name: put(served, make_tgz(tmp_path / "src" / v.archive_filename, v.stem, seed=i), v)
            for i, v in enumerate(variants)}
    probe = tmp_path / "probe"
    probe.touch()  # what a plain open() gives under the process umask
    normal = stat.S_IMODE(probe.stat().st_mode)
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append((threading.current_thread().name, mask))
                        or real_umask(mask))
    results = dl.fetch_many(variants, cache, jobs=2, quiet=True, mirror=served.url, lock_path=lock, net=FAST,
                            ignore_pins=True)
    assert [type(r) for r in results] == [FetchResult, FetchResult], results
    assert calls == [], "fetch_many's threads changed the process-wide umask"
    assert {r.variant.name: r.sha256 for r in results} == want
    written = [lock, *(r.archive for r in results), *(r.extracted / ".complete" for r in results)]
    assert {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {str(p): oct(normal) for p in written}


# ----------------------------------------------------------------------------- safe extraction

@pytest.mark.parametrize("keep", [0.5, -8], ids=["half", "no-gzip-trailer"])
def test_truncated_gzip_fails_and_is_not_trusted(served, cache, lock, tmp_path, keep):
    whole = make_tgz(tmp_path / "a.tgz").read_bytes()
    (served.root / V.archive_filename).write_bytes(whole[: int(len(whole) * keep) if keep > 0 else keep])
    with pytest.raises(DownloadError, match="corrupt or truncated"):
        go(served, cache, lock)
    assert_clean(cache)
    assert len(list((cache / "quarantine").iterdir())) == 1
    assert not lock.exists(), "a corrupt archive must not be recorded as trusted"


def _member(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    payload = b"evil" if kind == tarfile.REGTYPE else None
    info.size = len(payload) if payload else 0
    return info, payload


@pytest.mark.parametrize("member, reason", [
    (_member("../evil.txt"), "'..'"),
    (_member("./../../evil.txt"), "'..'"),
    (_member("/tmp/evil-absolute.txt"), "absolute path"),
    (_member("./link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
    (_member("./inner-link", tarfile.SYMTYPE, f"{V.stem}_info.txt"), "symbolic link"),
    (_member("./hard", tarfile.LNKTYPE, f"{V.stem}_info.txt"), "hard link"),
    (_member("./dev", tarfile.CHRTYPE), "device"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-in", "hardlink", "device"])
def test_unsafe_member_is_refused(served, cache, lock, tmp_path, member, reason):
    make_tgz(served.root / V.archive_filename, extra=(member,))
    with pytest.raises(DownloadError) as err:
        go(served, cache, lock)
    assert reason in str(err.value) and member[0].name in str(err.value)
    assert_clean(cache)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-absolute.txt").exists()
    assert not lock.exists()


def test_archive_without_checkpoint_lists_its_members(served, cache, lock):
    make_tgz(served.root / V.archive_filename, suffixes=(".ckpt.meta", "_frozen.pb"))
    with pytest.raises(DownloadError) as err:
        go(served, cache, lock)
    msg = str(err.value)
    for name in (f"{V.stem}.ckpt.index", f"{V.stem}.ckpt.meta", f"{V.stem}_frozen.pb"):
        assert name in msg
    assert_clean(cache)


def test_members_are_checked_against_the_variants_layout(tmp_path):
    v2 = make_tgz(tmp_path / "v2.tgz")
    v1 = make_tgz(tmp_path / "v1.tgz", model_name=V1.stem)
    assert sorted(dl.check_archive(v2, V)) == sorted(f"{V.stem}{s}" for s in SUFFIXES)
    assert sorted(dl.check_archive(v1, V1)) == sorted(f"{V1.stem}{s}" for s in SUFFIXES)
    assert dl.check_archive(v1) == dl.check_archive(v1, V1)  # no variant: any checkpoint will do
    with pytest.raises(DownloadError, match=rf"lacks the checkpoint \({V1.stem}\.ckpt\.index"):
        dl.check_archive(v2, V1)
    with tarfile.open(v1) as tar:
        with pytest.raises(DownloadError, match=rf"{V.stem}\.ckpt\.index and {V.stem}\.ckpt\.data-"):
            dl.verify_members(tar.getmembers(), V, v1)


def test_extract_archive_is_atomic_and_idempotent(tmp_path):
    tgz = make_tgz(tmp_path / "a.tgz")
    dest = tmp_path / "out" / "x"
    assert dl.extract_archive(tgz, dest, V) == dest
    index = dest / f"{V.stem}.ckpt.index"
    stamp = index.stat().st_mtime_ns
    dl.extract_archive(tgz, dest, V)
    assert index.stat().st_mtime_ns == stamp, "a complete extraction is not redone"
    (dest / ".complete").unlink()  # an interrupted earlier extraction is replaced
    (dest / "junk").write_text("x")
    dl.extract_archive(tgz, dest, V, sha256=sha(tgz))
    assert not (dest / "junk").exists() and (dest / ".complete").read_text().strip() == sha(tgz)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x"]
    with pytest.raises(DownloadError, match="lacks the checkpoint"):
        dl.extract_archive(tgz, tmp_path / "out" / "y", V1)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x"]


# ----------------------------------------------------------------------------- mirrors and the CLI

@pytest.mark.parametrize("form", ["file-url", "directory"])
def test_local_mirrors(tmp_path, cache, lock, form, capsys):
    mirror_dir = tmp_path / "mirror dir"  # a space, to exercise file:// quoting
    want = sha(make_tgz(mirror_dir / V.archive_filename))
    mirror = mirror_dir.as_uri() if form == "file-url" else str(mirror_dir)
    code = dl.main(["0.35_96", "--mirror", mirror, "--cache", str(cache), "--lock", str(lock), "--quiet",
                    "--ignore-pins"])
    assert code == 0, capsys.readouterr().err
    assert_clean(cache, verified_sha=want)
    assert (cache / "extracted" / V.name / f"{V.stem}.ckpt.index").is_file()
    assert not list(cache.rglob("*.part"))
    assert json.loads(lock.read_text())[V.archive_filename]["sha256"] == want


def test_pinned_download_via_the_cli_is_refused_without_ignore_pins(tmp_path, cache, lock, capsys):
    mirror_dir = tmp_path / "mirror"
    got = sha(make_tgz(mirror_dir / V.archive_filename))
    code = dl.main(["0.35_96", "--mirror", str(mirror_dir), "--cache", str(cache), "--lock", str(lock)])
    err = capsys.readouterr().err
    assert code == 1 and "1 of 1 archive(s) failed" in err and V.sha256 in err and got in err
    assert_clean(cache)
    assert not lock.exists()


def test_local_mirror_missing_file(tmp_path, cache, lock, capsys):
    (tmp_path / "empty").mkdir()
    code = dl.main(["0.35_96", "--mirror", str(tmp_path / "empty"), "--cache", str(cache), "--lock", str(lock),
                    "--ignore-pins"])
    assert code == 1 and "does not exist in the mirror" in capsys.readouterr().err
    assert_clean(cache)


def test_mirror_from_environment_and_no_extract(served, cache, lock, tmp_path, monkeypatch, capsys):
    want = put(served, make_tgz(tmp_path / "a.tgz"))
    monkeypatch.setenv(dl.MIRROR_ENV, served.url)
    monkeypatch.setenv(dl.LOCK_ENV, str(lock))  # the lock of unpinned genuine archives: not --ignore-pins'
    assert dl.main(["mobilenet_v2_0.35_96", "--cache", str(cache), "--no-extract", "--ignore-pins"]) == 0
    out = capsys.readouterr().out
    assert f"ok  {V.name}" in out and "downloaded" in out and "(checked against the lock)" in out
    assert_clean(cache, verified_sha=want)
    assert not (cache / "extracted").exists()
    assert json.loads((cache / dl.CACHE_LOCK_NAME).read_text())[V.archive_filename]["sha256"] == want
    assert not lock.exists()


def test_jobs_3_with_one_bad_archive(served, cache, lock, tmp_path, capsys):
    names = ["0.35_96", "0.35_128", "0.35_160", "0.5_96"]
    good = {}
    for i, name in enumerate(names):
        v = resolve(name)
        archive = make_tgz(tmp_path / "src" / v.archive_filename, model_name=v.stem, seed=i)
        if name == "0.35_128":  # the bad one: a truncated gzip
            data = archive.read_bytes()
            (served.root / v.archive_filename).write_bytes(data[: len(data) // 3])
        else:
            good[name] = put(served, archive, v)
    code = dl.main([*names, "--jobs", "3", "--mirror", served.url, "--cache", str(cache), "--lock", str(lock),
                    "--ignore-pins"])
    captured = capsys.readouterr()
    assert code == 1
    assert "1 of 4 archive(s) failed" in captured.err and "0.35_128" in captured.err.split("failed:")[1]
    for name in names:
        v = resolve(name)
        assert_clean(cache, v, good.get(name))
        assert (f"ok  {name} " in captured.out) == (name in good)
    assert sorted(json.loads(lock.read_text())) == sorted(resolve(n).archive_filename for n in good)


@pytest.mark.parametrize("argv, message", [
    (["0.35_97"], "unknown variant"),
    (["0.35_96", "--mirror", "ftp://example.org/x"], "unsupported scheme"),
    (["0.35_96", "--mirror", "/nonexistent/mirror"], "not an existing directory"),
    (["0.35_96", "--jobs", "0"], "--jobs"),
])
def test_usage_errors_exit_2(argv, message, cache, lock, capsys):
    assert dl.main([*argv, "--cache", str(cache), "--lock", str(lock)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not cache.exists()


def test_ignore_pins_with_the_project_lock_exits_2(tmp_path, cache, capsys):
    project_lock = read_or_none(dl.DEFAULT_LOCK)
    (tmp_path / "mirror").mkdir()
    argv = ["0.35_96", "--ignore-pins", "--mirror", str(tmp_path / "mirror"), "--cache", str(cache)]
    # in-process, absolute path
    assert dl.main([*argv, "--lock", str(dl.DEFAULT_LOCK)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ignore-pins never records into") and str(dl.DEFAULT_LOCK) in err
    # the real command, relative path from the project root
    out = subprocess.run([sys.executable, "-m", "convert", "download", *argv,
                          "--lock", "manifests/checksums.lock.json"],
                         cwd=PROJECT_ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: --ignore-pins never records into") and str(dl.DEFAULT_LOCK) in out.stderr
    assert "--lock" in out.stderr and "Traceback" not in out.stderr and out.stdout == ""
    assert not cache.exists() and read_or_none(dl.DEFAULT_LOCK) == project_lock


def test_download_help_via_module():
    out = subprocess.run([sys.executable, "-m", "convert", "download", "--help"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for flag in ("--mirror", "--cache", "--jobs", "--quiet", "--no-extract", "--lock", "--ignore-pins"):
        assert flag in out.stdout


# ----------------------------------------------------------------------------- the server itself

def test_serve_directory_ranges_and_confinement(tmp_path):
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "f.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "secret.txt").write_text("no")
    with serve_directory(tmp_path / "pub") as url:
        assert requests.get(f"{url}/f.bin", timeout=5).content == bytes(range(256)) * 4
        r = requests.get(f"{url}/f.bin", headers={"Range": "bytes=1000-"}, timeout=5)
        assert r.status_code == 206 and r.headers["Content-Range"] == "bytes 1000-1023/1024" and len(r.content) == 24
        r = requests.get(f"{url}/f.bin", headers={"Range": "bytes=1024-"}, timeout=5)
        assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */1024"
        for bad in ("/../secret.txt", "/%2e%2e/secret.txt", "/", "/missing"):
            assert requests.get(url + bad, timeout=5).status_code == 404
    assert parse_range("bytes=-10", 100) == (90, 99) and parse_range("bytes=5-9", 100) == (5, 9)
    assert parse_range("bytes=0-1,5-6", 100) is None and parse_range("items=1-", 100) is None
    with pytest.raises(NotADirectoryError):
        DirectoryServer(tmp_path / "pub" / "f.bin")


def test_remembered_sha256_is_reread_whenever_the_file_changes(tmp_path):
    """The stat-keyed memo saves re-reading an unchanged archive, and never hides a change: rewriting
    the file (same size, even with its old mtime put back) changes its ctime, and the hash is taken again;
    a memo recorded within a second of the file's last change (racily clean) is not trusted either."""
    import hashlib

    from convert.fsutil import RACY_NS, sha256_remembered, stat_signature

    path = tmp_path / "a.tgz"
    path.write_bytes(b"x" * 1000)
    memo = tmp_path / ".a.tgz.sha256.json"
    x, y = hashlib.sha256(b"x" * 1000).hexdigest(), hashlib.sha256(b"y" * 1000).hexdigest()
    assert sha256_remembered(path) == x
    recorded = json.loads(memo.read_text())
    assert recorded["sha256"] == x and recorded["stat"]["sig"] == stat_signature(path)

    def forge(sha, at):  # a memo with the file's true signature but a wrong hash, recorded at ``at``
        memo.write_text(json.dumps({"sha256": sha, "stat": {"sig": stat_signature(path), "at": at}}))

    ctime = stat_signature(path)[2]
    forge("0" * 64, ctime + 2 * RACY_NS)
    assert sha256_remembered(path) == "0" * 64  # an old enough memo is trusted: the file is not read
    forge("0" * 64, ctime + RACY_NS // 2)
    assert sha256_remembered(path) == x  # racily clean: read again (and remembered anew)
    old = path.stat()
    time.sleep(0.01)
    path.write_bytes(b"y" * 1000)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))  # same size, same mtime: only ctime tells
    forge(x, stat_signature(path)[2] - 2 * RACY_NS)  # even a memo that predates the change by its "at"
    assert sha256_remembered(path) == y
    memo.write_text("not json")
    assert sha256_remembered(path) == y  # a broken memo is ignored


# ----------------------------------------------------------------------------- unavailable archives, alternatives

UNAVAILABLE = "upstream answers HTTP 403 (test reason)"


def test_an_unavailable_variant_fails_with_its_reason_without_a_request(served, cache, lock, tmp_path):
    """No mirror: the archive is reported unavailable, naming the reason, and the upstream URL (here the
    loopback server, which would serve it) is never asked."""
    put(served, make_tgz(tmp_path / "a.tgz"))
    variant = dataclasses.replace(V, url=f"{served.url}/{V.archive_filename}", unavailable=UNAVAILABLE)
    with pytest.raises(dl.Unavailable, match=re.escape(UNAVAILABLE)) as info:
        fetch(variant, cache, mirror="", lock_path=lock, quiet=True, net=FAST, ignore_pins=True)
    assert "--mirror" in str(info.value)
    assert list(served.requests) == [], "an unavailable archive must not be requested upstream"
    assert not (cache / "archives" / V.archive_filename).exists()


def test_an_unavailable_variant_is_fetched_from_a_mirror(served, cache, lock, tmp_path):
    want = put(served, make_tgz(tmp_path / "a.tgz"))
    variant = dataclasses.replace(V, url="https://upstream.invalid/x/" + V.archive_filename, unavailable=UNAVAILABLE)
    result = go(served, cache, lock, variant=variant)
    assert result.downloaded and result.sha256 == want and result.source == f"{served.url}/{V.archive_filename}"
    assert len(served.gets(V.archive_filename)) == 1


def test_download_cli_reports_an_unavailable_variant_as_a_failed_row(served, cache, lock, monkeypatch, capsys):
    """``convert download`` on the manifest's unavailable V2 archive: a failed row naming the reason, no request
    (the manifest URL is upstream's: any request would leave the loopback, which the isolation refuses)."""
    name = "quantized_v2_224_130"
    reason = resolve(name).unavailable
    assert reason and "403" in reason and "8861" in reason
    code = dl.main([name, "--cache", str(cache), "--lock", str(lock), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and name in err and reason in err and "unavailable upstream" in err
    assert not (cache / "archives" / f"{name}.tgz").exists()


@pytest.mark.parametrize("status", [404, 403])
def test_the_alternative_url_serves_when_the_primary_fails(served, cache, lock, tmp_path, status):
    """The primary answers an HTTP error: the alternative is fetched, checked against its own pin, and the
    result records that it served the archive."""
    archive = make_tgz(tmp_path / "a.tgz")
    (served.root / "old").mkdir()
    link_or_copy(archive, served.root / "old" / V.archive_filename)
    want = sha(archive)
    if status == 403:
        (served.root / V.archive_filename).write_bytes(b"never served")
        served.script(V.archive_filename, Fault("status", code=403))
    alternative = Alternative(f"{served.url}/old/{V.archive_filename}", sha256=want, size=archive.stat().st_size)
    variant = dataclasses.replace(V, url=f"{served.url}/{V.archive_filename}", sha256="0" * 64, size=None,
                                  alternatives=(alternative,))
    result = fetch(variant, cache, mirror="", lock_path=lock, quiet=True, net=FAST)
    assert result.downloaded and result.sha256 == want and result.checked_against == "pin"
    assert result.source == alternative.url
    assert len(served.gets(V.archive_filename)) == 1 and len(served.gets("old/" + V.archive_filename)) == 1
    assert not lock.exists(), "a pinned alternative is checked against its pin, not recorded in the lock"
    again = fetch(variant, cache, mirror="", lock_path=lock, quiet=True, net=FAST)  # cached: matches the alternative's pin
    assert not again.downloaded and again.source == alternative.url and len(served.requests) == 2


def test_an_alternative_is_held_to_its_own_pin(served, cache, lock, tmp_path):
    archive = make_tgz(tmp_path / "a.tgz")
    (served.root / "old").mkdir()
    link_or_copy(archive, served.root / "old" / V.archive_filename)
    other_pin = "f" * 64
    variant = dataclasses.replace(V, url=f"{served.url}/{V.archive_filename}", sha256=sha(archive), size=None,
                                  alternatives=(Alternative(f"{served.url}/old/{V.archive_filename}", other_pin),))
    with pytest.raises(DownloadError, match=f"sha256 mismatch: downloaded {sha(archive)}, but the manifest pin says {other_pin}"):
        fetch(variant, cache, mirror="", lock_path=lock, quiet=True, net=FAST)
    assert not (cache / "archives" / V.archive_filename).exists()


def test_a_primary_that_serves_a_bad_file_is_not_replaced_by_the_alternative(served, cache, lock, tmp_path):
    """Only a failed transfer moves on to the alternative; a file that arrives and fails its pin is an error."""
    archive = make_tgz(tmp_path / "a.tgz")
    put(served, archive)
    (served.root / "old").mkdir()
    link_or_copy(archive, served.root / "old" / V.archive_filename)
    variant = dataclasses.replace(V, url=f"{served.url}/{V.archive_filename}", sha256="0" * 64, size=None,
                                  alternatives=(Alternative(f"{served.url}/old/{V.archive_filename}", sha(archive)),))
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(variant, cache, mirror="", lock_path=lock, quiet=True, net=FAST)
    assert served.gets("old/" + V.archive_filename) == []


def test_every_url_failing_lists_each_failure(served, cache, lock):
    variant = dataclasses.replace(V, url=f"{served.url}/{V.archive_filename}", sha256=None, size=None,
                                  alternatives=(Alternative(f"{served.url}/old/{V.archive_filename}"),))
    with pytest.raises(dl.TransferFailed) as info:
        fetch(variant, cache, mirror="", lock_path=lock, quiet=True, net=FAST)
    text = str(info.value)
    assert "no URL could serve it" in text and text.count("HTTP 404") == 2 and "/old/" in text


def test_v1_float_primary_is_the_2018_08_02_release_with_the_2018_02_22_one_as_alternative():
    v = resolve("mobilenet_v1_1.0_224")
    assert v.url == "http://download.tensorflow.org/models/mobilenet_v1_2018_08_02/mobilenet_v1_1.0_224.tgz"
    # TensorFlow's workspace.bzl pin and open_model_zoo's size (the figures)
    assert (v.sha256, v.size) == ("2fadeabb9968ec6833bee903900dda6e61b3947200535874ce2fe42a8493abc0", 94321559)
    assert [a.url for a in v.alternatives] == [
        "http://download.tensorflow.org/models/mobilenet_v1_2018_02_22/mobilenet_v1_1.0_224.tgz"]
    assert v.alternatives[0].sha256 == "1ccb74dbd9c5f7aea879120614e91617db9534bdfaa53dfea54b7c14162e126b"
    assert resolve("mobilenet_v1_0.75_160").sha256 is None  # no public pin of that 2018_08_02 archive
