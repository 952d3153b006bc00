"""Download/cache/extract against a real HTTP server on 127.0.0.1 with injected faults (no mocks).

Every test asserts the outcome and that ``cache/archives/<file>`` is either the verified archive or absent.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import requests

from _faulty_server import Fault, FaultyServer
from convert import download as dl
from convert import fixtures
from convert.download import DownloadError, NetOptions, fetch
from convert.manifest import PROJECT_ROOT, resolve
from convert.serve import DirectoryServer, parse_range, serve_directory

pytestmark = pytest.mark.timeout(60)

FAST = NetOptions(timeout=(5.0, 3.0), retries=3, backoff_factor=0.01, resumes=3)
SUFFIXES = fixtures.MEMBER_SUFFIXES  # the official archive's members
V = resolve("0.35_96")


# ----------------------------------------------------------------------------- helpers

def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tgz(path: Path, model_name: str = V.model_name, data_size: int = 200_000, seed: int = 0,
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


@pytest.fixture(autouse=True)
def _isolation(monkeypatch):
    """Never read the user's env or write the project's real cache / lock file."""
    for var in (dl.MIRROR_ENV, dl.LOCK_ENV, "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
                "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    guarded = [dl.DEFAULT_LOCK, *(dl.DEFAULT_CACHE / d for d in ("archives", "extracted", "quarantine"))]
    before = [(p, p.stat().st_mtime_ns if p.exists() else None) for p in guarded]
    yield
    after = [(p, p.stat().st_mtime_ns if p.exists() else None) for p in guarded]
    assert before == after, "a test touched the project's real lock file or download cache"


@pytest.fixture(scope="session")
def factory_archive(small_archive) -> Path:
    """The factory-built official-layout 0.35_96 archive (tests/conftest.py)."""
    return small_archive


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


def put(server: FaultyServer, archive: Path, variant=V) -> str:
    shutil.copyfile(archive, server.root / variant.archive_filename)
    return sha(archive)


def go(server, cache, lock, variant=V, **kw):
    return fetch(variant, cache, mirror=server.url, lock_path=lock, quiet=True, net=kw.pop("net", FAST), **kw)


# ----------------------------------------------------------------------------- happy path and cache

def test_factory_archive_downloads_verifies_extracts_and_is_cached(served, cache, lock, factory_archive, capsys):
    want = put(served, factory_archive)
    result = go(served, cache, lock)
    assert result.downloaded and result.sha256 == want and result.source == f"{served.url}/{V.archive_filename}"
    assert_clean(cache, verified_sha=want)
    assert (result.extracted / f"{V.model_name}.ckpt.index").is_file()
    assert list(result.extracted.glob(f"{V.model_name}.ckpt.data-*"))
    assert (result.extracted / ".complete").read_text().strip() == want
    assert result.checkpoint_prefix == result.extracted / f"{V.model_name}.ckpt"
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
    want = put(served, make_tgz(tmp_path / "a.tgz"))
    part = cache / "archives" / (V.archive_filename + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 5_000)  # an earlier run's part of some other file
    result = go(served, cache, lock, variant=dataclasses.replace(V, sha256=want))
    gets = served.gets(V.archive_filename)
    assert [g.headers.get("Range") for g in gets] == ["bytes=5000-", None]
    assert result.sha256 == want and not part.exists()
    assert_clean(cache, verified_sha=want)


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
        fetch(V, cache, mirror=f"http://127.0.0.1:{port}", lock_path=lock, quiet=True, net=FAST)
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


# ----------------------------------------------------------------------------- integrity

def test_checksum_mismatch_against_pin_is_quarantined(served, cache, lock, tmp_path):
    got = put(served, make_tgz(tmp_path / "a.tgz"))
    pin = "ab" * 32
    with pytest.raises(DownloadError) as err:
        go(served, cache, lock, variant=dataclasses.replace(V, sha256=pin))
    assert got in str(err.value) and pin in str(err.value) and "manifest pin" in str(err.value)
    assert_clean(cache)
    quarantined = list((cache / "quarantine").iterdir())
    assert [sha(q) for q in quarantined] == [got]
    assert not list(cache.rglob("*.part")) and not lock.exists()


def test_tofu_lock_is_written_then_enforced(served, cache, lock, tmp_path, capsys):
    first = put(served, make_tgz(tmp_path / "a.tgz", seed=1))
    go(served, cache, lock)
    assert f"recorded sha256 {first}" in capsys.readouterr().err
    recorded = lock.read_text()
    assert json.loads(recorded)[V.archive_filename]["sha256"] == first

    other = put(served, make_tgz(tmp_path / "b.tgz", seed=2))  # the server now serves something else
    cache2 = tmp_path / "cache2"
    with pytest.raises(DownloadError) as err:
        go(served, cache2, lock)
    assert first in str(err.value) and other in str(err.value) and str(lock) in str(err.value)
    assert_clean(cache2)
    assert [sha(q) for q in (cache2 / "quarantine").iterdir()] == [other]
    assert lock.read_text() == recorded


def test_tampered_cached_archive_is_quarantined_and_fetched_again(served, cache, lock, tmp_path):
    want = put(served, make_tgz(tmp_path / "a.tgz"))
    go(served, cache, lock, extract=False)
    final = cache / "archives" / V.archive_filename
    final.write_bytes(b"tampered")
    result = go(served, cache, lock)
    assert result.downloaded and result.sha256 == want
    assert len(list((cache / "quarantine").iterdir())) == 1
    assert_clean(cache, verified_sha=want)


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
    import threading
    locker = dl.ChecksumLock(lock)
    threads = [threading.Thread(target=locker.record, args=(f"f{i}.tgz", f"{i:064x}", i, "src")) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(json.loads(lock.read_text())) == sorted(f"f{i}.tgz" for i in range(20))


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
    (_member("./inner-link", tarfile.SYMTYPE, f"{V.model_name}_info.txt"), "symbolic link"),
    (_member("./hard", tarfile.LNKTYPE, f"{V.model_name}_info.txt"), "hard link"),
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
    for name in (f"{V.model_name}.ckpt.index", f"{V.model_name}.ckpt.meta", f"{V.model_name}_frozen.pb"):
        assert name in msg
    assert_clean(cache)


def test_extract_archive_is_atomic_and_idempotent(tmp_path):
    tgz = make_tgz(tmp_path / "a.tgz")
    dest = tmp_path / "out" / "x"
    assert dl.extract_archive(tgz, dest, V.model_name) == dest
    index = dest / f"{V.model_name}.ckpt.index"
    stamp = index.stat().st_mtime_ns
    dl.extract_archive(tgz, dest, V.model_name)
    assert index.stat().st_mtime_ns == stamp, "a complete extraction is not redone"
    (dest / ".complete").unlink()  # an interrupted earlier extraction is replaced
    (dest / "junk").write_text("x")
    dl.extract_archive(tgz, dest, V.model_name)
    assert not (dest / "junk").exists() and (dest / ".complete").read_text().strip() == sha(tgz)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x"]


# ----------------------------------------------------------------------------- mirrors and the CLI

@pytest.mark.parametrize("form", ["file-url", "directory"])
def test_local_mirrors(tmp_path, cache, lock, form, capsys):
    mirror_dir = tmp_path / "mirror dir"  # a space, to exercise file:// quoting
    want = sha(make_tgz(mirror_dir / V.archive_filename))
    mirror = mirror_dir.as_uri() if form == "file-url" else str(mirror_dir)
    code = dl.main(["0.35_96", "--mirror", mirror, "--cache", str(cache), "--lock", str(lock), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert_clean(cache, verified_sha=want)
    assert (cache / "extracted" / V.name / f"{V.model_name}.ckpt.index").is_file()
    assert not list(cache.rglob("*.part"))


def test_local_mirror_missing_file(tmp_path, cache, lock, capsys):
    (tmp_path / "empty").mkdir()
    code = dl.main(["0.35_96", "--mirror", str(tmp_path / "empty"), "--cache", str(cache), "--lock", str(lock)])
    assert code == 1 and "does not exist in the mirror" in capsys.readouterr().err
    assert_clean(cache)


def test_mirror_from_environment_and_no_extract(served, cache, lock, tmp_path, monkeypatch, capsys):
    want = put(served, make_tgz(tmp_path / "a.tgz"))
    monkeypatch.setenv(dl.MIRROR_ENV, served.url)
    monkeypatch.setenv(dl.LOCK_ENV, str(lock))
    assert dl.main(["mobilenet_v2_0.35_96", "--cache", str(cache), "--no-extract"]) == 0
    assert f"ok  {V.name}" in capsys.readouterr().out
    assert_clean(cache, verified_sha=want)
    assert not (cache / "extracted").exists() and json.loads(lock.read_text())[V.archive_filename]["sha256"] == want


def test_jobs_3_with_one_bad_archive(served, cache, lock, tmp_path, capsys):
    names = ["0.35_96", "0.35_128", "0.35_160", "0.5_96"]
    good = {}
    for i, name in enumerate(names):
        v = resolve(name)
        archive = make_tgz(tmp_path / "src" / v.archive_filename, model_name=v.model_name, seed=i)
        if name == "0.35_128":  # the bad one: a truncated gzip
            data = archive.read_bytes()
            (served.root / v.archive_filename).write_bytes(data[: len(data) // 3])
        else:
            good[name] = put(served, archive, v)
    code = dl.main([*names, "--jobs", "3", "--mirror", served.url, "--cache", str(cache), "--lock", str(lock)])
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


def test_download_help_via_module():
    out = subprocess.run([sys.executable, "-m", "convert", "download", "--help"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for flag in ("--mirror", "--cache", "--jobs", "--quiet", "--no-extract", "--lock"):
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
