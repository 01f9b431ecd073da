"""Data download: pins (git blob id, SHA-256), mismatch, no-op reruns and an unreachable host, all offline."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from pathlib import Path

import pytest

import fetch_data
from conftest import SRC, idx_bytes

CHTC_BLOB = "2c16ecea81f0a17af2f5ebd5194585a43f6e4701"  # the lesson's archive at the pinned commit


@pytest.fixture
def tarball(tmp_path):
    raw = tmp_path / "src" / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes((0,), b""))  # an empty label file
    archive = tmp_path / "MNIST_data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "data", arcname="data")
    return archive


def git_hash_object(path) -> str:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    result = subprocess.run([git, "hash-object", "--no-filters", str(path)], capture_output=True, text=True)
    return result.stdout.strip()


@pytest.mark.parametrize("content", [b"", b"hello\n", bytes(range(256)) * 5000], ids=["empty", "text", "1.3MB"])
def test_git_blob_id_agrees_with_git(tmp_path, content):
    path = tmp_path / "file"
    path.write_bytes(content)
    assert fetch_data.digests_of(path)["git_blob"] == git_hash_object(path)


def test_fetch_checks_both_pins_and_extracts(tarball, tmp_path):
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    blob = git_hash_object(tarball)
    target = fetch_data.fetch(tarball.as_uri(), tmp_path / "out" / "MNIST_data.tar.gz", digest, git_blob=blob)
    assert fetch_data.sha256_of(target) == digest
    assert fetch_data.read_stamp(target)["git_blob"] == blob
    assert fetch_data.extract(target, tmp_path / "x") is True
    assert (tmp_path / "x" / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["data"]  # no scratch directory left


def test_a_git_blob_pin_alone_verifies_and_prints_the_sha256(tarball, tmp_path, capsys):
    target = fetch_data.fetch(tarball.as_uri(), tmp_path / "a.tar.gz", git_blob=git_hash_object(tarball))
    digest = fetch_data.sha256_of(target)
    assert f'record sha256 = "{digest}"' in capsys.readouterr().err


@pytest.mark.parametrize("pin", ["sha256", "git_blob"])
def test_mismatch_deletes_the_download(tarball, tmp_path, pin):
    target = tmp_path / "out" / "MNIST_data.tar.gz"
    wrong = {"sha256": "0" * 64, "git_blob": CHTC_BLOB}[pin]
    with pytest.raises(fetch_data.FetchError, match=f"expected {wrong}; the download was deleted"):
        fetch_data.fetch(tarball.as_uri(), target, **{pin: wrong})
    assert list((tmp_path / "out").iterdir()) == []  # neither the archive nor its .part


def test_a_wrong_file_in_place_is_downloaded_again(tarball, tmp_path):
    target = tmp_path / "out" / "MNIST_data.tar.gz"
    target.parent.mkdir()
    target.write_bytes(b"not the archive")
    blob = git_hash_object(tarball)
    fetch_data.fetch(tarball.as_uri(), target, git_blob=blob)
    assert target.read_bytes() == tarball.read_bytes()


def test_second_run_neither_downloads_nor_hashes(tarball, tmp_path, monkeypatch):
    target = tmp_path / "out" / "MNIST_data.tar.gz"
    blob = git_hash_object(tarball)
    fetch_data.fetch(tarball.as_uri(), target, git_blob=blob)
    fetch_data.extract(target, tmp_path / "x")

    def forbidden(*args, **kwargs):
        raise AssertionError("the second run downloaded or hashed")

    monkeypatch.setattr(fetch_data, "digests_of", forbidden)
    monkeypatch.setattr(fetch_data.urllib.request, "urlopen", forbidden)
    assert fetch_data.fetch(tarball.as_uri(), target, git_blob=blob) == target
    assert fetch_data.extract(target, tmp_path / "x") is False


def test_a_changed_archive_is_hashed_again(tarball, tmp_path):
    target = tmp_path / "out" / "MNIST_data.tar.gz"
    blob = git_hash_object(tarball)
    fetch_data.fetch(tarball.as_uri(), target, git_blob=blob)
    target.write_bytes(target.read_bytes()[:-1])  # damaged after it was verified
    fetch_data.fetch(tarball.as_uri(), target, git_blob=blob)
    assert target.read_bytes() == tarball.read_bytes()


def test_a_deleted_extracted_file_is_extracted_again(tarball, tmp_path):
    target = fetch_data.fetch(tarball.as_uri(), tmp_path / "a.tar.gz", git_blob=git_hash_object(tarball))
    fetch_data.extract(target, tmp_path / "x")
    member = tmp_path / "x" / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    member.unlink()
    assert fetch_data.extract(target, tmp_path / "x") is True and member.is_file()


def test_an_archive_that_fails_half_way_leaves_nothing_extracted(tmp_path):
    good = tmp_path / "good"
    good.write_bytes(os.urandom(200_000))
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(good, arcname="data/MNIST/raw/first")
        tar.add(good, arcname="data/MNIST/raw/second")
    archive.write_bytes(archive.read_bytes()[:-150_000])  # truncated inside the second member
    into = tmp_path / "into"
    with pytest.raises((tarfile.TarError, EOFError, zlib.error)):
        fetch_data.extract(archive, into)
    assert not into.exists() or not [p for p in into.rglob("*") if p.is_file()]
    assert "extracted" not in fetch_data.read_stamp(archive)


def test_offline_is_said_clearly(tmp_path):
    with pytest.raises(fetch_data.FetchError, match="no internet access. On a machine that has it, download"):
        fetch_data.fetch("https://127.0.0.1:9/MNIST_data.tar.gz", tmp_path / "out" / "MNIST_data.tar.gz", timeout=5)
    assert list((tmp_path / "out").iterdir()) == []


# What src/progress.py writes on stderr beside the one sentence of an error.
PROGRESS_LINE = re.compile(r"^(downloading|extracting|checking) [^:]+: [0-9.,]+ (B|KiB|MiB|GiB)")


def said(stderr: str) -> list[str]:
    """The lines of stderr that are not progress: an error is exactly one of them."""
    return [line for line in stderr.splitlines() if not PROGRESS_LINE.match(line)]


def run_cli(cwd, *args):
    return subprocess.run(
        [sys.executable, str(SRC / "fetch_data.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_cli_mismatch_is_one_sentence_and_leaves_nothing(tarball, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli(out, "--url", tarball.as_uri(), "--output", "a.tar.gz", "--extract", ".")
    assert result.returncode == 1
    assert len(said(result.stderr)) == 1 and "the download was deleted" in result.stderr
    assert "Traceback" not in result.stderr and list(out.iterdir()) == []


def test_cli_downloads_verifies_extracts_then_does_nothing(tarball, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = ("--url", tarball.as_uri(), "--output", "a.tar.gz", "--git-blob", git_hash_object(tarball), "--sha256", "")
    first = run_cli(out, *args, "--extract", ".")
    assert first.returncode == 0, first.stderr
    assert "verified" in first.stdout and "extracted into data" in first.stdout
    second = run_cli(out, *args, "--extract", ".")
    assert second.returncode == 0 and "already extracted" in second.stdout


def test_cli_refuses_a_corrupt_archive_in_one_sentence(tmp_path):
    corrupt = tmp_path / "a.tar.gz"
    corrupt.write_bytes(b"\x1f\x8b not really gzip")
    pinned = ("--git-blob", git_hash_object(corrupt), "--sha256", "")
    result = run_cli(tmp_path, "--url", "http://127.0.0.1:9/x", "--output", "a.tar.gz", *pinned, "--extract", ".")
    assert result.returncode == 1 and "cannot extract" in result.stderr and "Traceback" not in result.stderr


def test_manifest_pins_the_lesson_commit_and_blob():
    config = fetch_data.data_config()
    assert config["url"].endswith("/shared/pytorch/MNIST_data.tar.gz")
    assert "450081144c6ae0657123be2a9a357cb432d9d394" in config["url"]
    assert config["git-blob"] == CHTC_BLOB


# ------------------------------------------------------------ hostile archives
def hostile(tmp_path, name: str, kind: str = "file", size: int = 10, target: str = ""):
    """An archive holding a good data file and then one hostile member."""
    archive = tmp_path / "hostile.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        good = tarfile.TarInfo("data/MNIST/raw/good")
        good.size = 4
        tar.addfile(good, io.BytesIO(b"good"))
        member = tarfile.TarInfo(name)
        if kind == "file":
            member.size = size
            tar.addfile(member, io.BytesIO(b"#!/bin/sh\necho pwned\n".ljust(size, b"\0")[:size]))
        else:
            member.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            member.linkname = target
            tar.addfile(member)
    return archive


HOSTILE = {
    "parent": ("../outside.py", "file", ""),
    "absolute": ("/tmp/rmt-absolute-member", "file", ""),
    "tasks": ("tasks/__init__.py", "file", ""),
    "git-hook": (".git/hooks/pre-commit", "file", ""),
    "src": ("src/torch_MNIST.py", "file", ""),
    "dot-dot-inside-data": ("data/../tasks/__init__.py", "file", ""),
    "symlink-out": ("data/MNIST/src", "symlink", "../../src"),
    "symlink-absolute": ("data/MNIST/etc", "symlink", "/etc"),
    "hardlink": ("data/MNIST/link", "hardlink", "tasks/__init__.py"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_archive_is_refused_whole_and_touches_nothing(tmp_path, case):
    name, kind, target = HOSTILE[case]
    archive = hostile(tmp_path, name, kind, target=target)
    project = tmp_path / "project"
    (project / "tasks").mkdir(parents=True)
    (project / "tasks" / "__init__.py").write_text("original\n")
    with pytest.raises(fetch_data.FetchError, match="so nothing was extracted") as refused:
        fetch_data.extract(archive, project)
    assert "\n" not in str(refused.value)
    assert (project / "tasks" / "__init__.py").read_text() == "original\n"
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*")) == ["tasks", "tasks/__init__.py"]
    assert not (tmp_path / "outside.py").exists() and not Path("/tmp/rmt-absolute-member").exists()


def test_an_archive_over_the_size_limit_is_refused_before_writing(tmp_path):
    archive = hostile(tmp_path, "data/MNIST/raw/bomb", size=3 * 2**20)  # zeros: 3 MiB from a few KiB
    assert archive.stat().st_size < 50_000
    with pytest.raises(fetch_data.FetchError, match="more than 2 MiB"):
        fetch_data.extract(archive, tmp_path / "x", max_bytes=2 * 2**20)
    assert not (tmp_path / "x").exists()


def test_the_cli_refuses_a_hostile_archive_in_one_sentence(tmp_path):
    archive = hostile(tmp_path, "tasks/__init__.py")
    pins = ("--git-blob", git_hash_object(archive), "--sha256", "")
    result = run_cli(tmp_path, "--url", archive.as_uri(), "--output", archive.name, *pins, "--extract", ".")
    assert result.returncode == 1, result.stdout
    assert len(said(result.stderr)) == 1 and "outside data/" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tasks").exists() and not (tmp_path / "data").exists()


# --------------------------------------------------------------- failing closed
def test_an_unpinned_download_is_refused_and_prints_its_sha256(tarball, tmp_path):
    out = tmp_path / "out"
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    with pytest.raises(fetch_data.FetchError, match=f'not pinned, so it was not used; .*record sha256 = "{digest}"'):
        fetch_data.fetch(tarball.as_uri(), out / "MNIST_data.tar.gz")
    assert list(out.iterdir()) == []


def test_an_unpinned_archive_in_place_is_refused(tarball):
    with pytest.raises(fetch_data.FetchError, match=hashlib.sha256(tarball.read_bytes()).hexdigest()):
        fetch_data.fetch("https://127.0.0.1:9/never-asked", tarball)


def test_an_empty_pin_variable_cannot_remove_a_pin():
    manifest = {"tool": {"invoke-tasks": {"data": {"url": "https://h/x", "git-blob": CHTC_BLOB}}}}
    with pytest.raises(fetch_data.FetchError, match="sets data.git-blob empty, which would remove its pin"):
        fetch_data.data_config(manifest, environ={"INVOKE_PROJECT_DATA_GIT_BLOB": ""})
    replaced = fetch_data.data_config(manifest, environ={"INVOKE_PROJECT_DATA_GIT_BLOB": "ab" * 20})
    assert replaced["git-blob"] == "ab" * 20


def test_the_cli_with_an_empty_pin_variable_refuses(tmp_path):
    env = {**os.environ, "INVOKE_PROJECT_DATA_GIT_BLOB": ""}
    result = subprocess.run(
        [sys.executable, str(SRC / "fetch_data.py"), "--extract", "."], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "remove its pin" in result.stderr and len(said(result.stderr)) == 1
    assert list(tmp_path.iterdir()) == []


def test_plain_http_is_refused_unless_the_sha256_is_pinned(tmp_path):
    with pytest.raises(fetch_data.FetchError, match=r"not encrypted \(http://\)"):
        fetch_data.fetch("http://127.0.0.1:9/x.tar.gz", tmp_path / "x.tar.gz", git_blob=CHTC_BLOB)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ bounded downloads
class Zeros(http.server.BaseHTTPRequestHandler):
    """Sends zeros for ever, without a Content-Length; slowly with ?slow."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        block = b"\0" * (1 if "slow" in self.path else 1 << 16)
        try:
            while True:
                self.wfile.write(block)
                if "slow" in self.path:
                    time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving(handler):
    """An HTTP server on 127.0.0.1 for the ``with`` block; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # A short poll: shutdown() waits up to one poll interval (0.5 s by default) after each test.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def endless():
    with serving(Zeros) as url:
        yield url


def test_an_endless_download_stops_at_the_size_cap(endless, tmp_path):
    started = time.monotonic()
    with pytest.raises(fetch_data.FetchError, match="sent over 2,097,152 bytes.*the download was deleted"):
        fetch_data.fetch(f"{endless}/zeros", tmp_path / "x.tar.gz", sha256="0" * 64, max_bytes=2 * 2**20)
    assert time.monotonic() - started < 30 and list(tmp_path.iterdir()) == []


def test_a_trickling_download_stops_at_the_deadline(endless, tmp_path):
    started = time.monotonic()
    with pytest.raises(fetch_data.FetchError, match="did not arrive within 1 s"):
        fetch_data.fetch(f"{endless}/slow", tmp_path / "x.tar.gz", sha256="0" * 64, deadline=1)
    assert time.monotonic() - started < 10 and list(tmp_path.iterdir()) == []


def test_sigterm_during_a_download_leaves_no_partial_file(endless, tmp_path):
    pins = ("--sha256", "0" * 64, "--git-blob", CHTC_BLOB)
    child = subprocess.Popen(
        [sys.executable, str(SRC / "fetch_data.py"), "--url", f"{endless}/slow", "--output", "x.tar.gz", *pins],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not list(tmp_path.glob(".x.tar.gz.*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".x.tar.gz.*.part")), "the download never started"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=20) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == [] and "Traceback" not in child.stderr.read()


# ------------------------------------------------------------------- progress
class Served(http.server.BaseHTTPRequestHandler):
    """Serves the file ``body`` with its Content-Length, 64 KiB every 20 ms (a slow network)."""

    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        for start in range(0, len(self.body), 1 << 16):
            self.wfile.write(self.body[start : start + (1 << 16)])
            self.wfile.flush()
            time.sleep(0.02)

    def log_message(self, *args):
        pass


@pytest.fixture
def big_archive(tmp_path):
    """A 4 MiB archive in the real layout (data/MNIST/raw/...), incompressible, served over 127.0.0.1."""
    raw = tmp_path / "made" / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(os.urandom(4 << 20))
    archive = tmp_path / "MNIST_data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "made" / "data", arcname="data")
    with serving(type("Archive", (Served,), {"body": archive.read_bytes()})) as url:
        yield archive, f"{url}/MNIST_data.tar.gz"


def percentages(lines: list[str]) -> list[int]:
    return [int(re.search(r"\((\d+)%\)", line).group(1)) for line in lines]


def test_a_download_and_its_extraction_show_progress_line_by_line_in_a_log(big_archive, tmp_path):
    """Not a terminal (a job's log, CI): whole lines, a few per download, ending at 100% with the time taken."""
    archive, url = big_archive
    out = tmp_path / "out"
    out.mkdir()
    pins = ("--sha256", hashlib.sha256(archive.read_bytes()).hexdigest(), "--git-blob", "")
    result = run_cli(out, "--url", url, "--output", "MNIST_data.tar.gz", *pins, "--extract", ".")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and said(result.stderr) == []
    lines = result.stderr.splitlines()
    downloading = [line for line in lines if line.startswith("downloading MNIST_data.tar.gz: ")]
    size = f"of {archive.stat().st_size / 2**20:,.1f} MiB"
    assert 3 <= len(downloading) <= 12 and all(size in line for line in downloading), downloading
    assert percentages(downloading) == sorted(percentages(downloading)) and percentages(downloading)[0] < 50
    assert downloading[-1].endswith(" s") and "(100%)" in downloading[-1] and "MiB/s" in downloading[-1]
    extracting = [line for line in lines if line.startswith("extracting MNIST_data.tar.gz: ")]
    assert extracting and "4.0 MiB of 4.0 MiB (100%)" in extracting[-1], lines
    assert "verified" in result.stdout and "extracted into data" in result.stdout  # results stay on stdout


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_progress_redraws_one_line_a_few_times_a_second(monkeypatch):
    import progress

    screen = Terminal()
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    shown = progress.Progress("downloading x.tar.gz", 100 * 2**20, stream=screen)
    for step in range(1, 101):  # 100 updates in 2 s: at most 10 redraws a second
        clock[0] = step * 0.02
        shown.update(step * 2**20)
    shown.close()
    text = screen.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and 15 <= text.count("\r") <= 25
    assert text.rstrip().split("\r")[-1].startswith("downloading x.tar.gz: 100.0 MiB of 100.0 MiB (100%), 50.0 MiB/s")


def test_checking_a_big_archive_shows_progress(tmp_path, monkeypatch, capsys):
    big = tmp_path / "big.tar.gz"
    big.write_bytes(b"\0" * (3 << 20))
    monkeypatch.setattr(fetch_data, "HASH_PROGRESS_FROM", 2 << 20)
    fetch_data.digests_of(big)
    assert "checking big.tar.gz: 3.0 MiB of 3.0 MiB (100%)" in capsys.readouterr().err
    monkeypatch.setattr(fetch_data, "HASH_PROGRESS_FROM", 4 << 20)  # smaller files take no time: nothing shown
    fetch_data.digests_of(big)
    assert capsys.readouterr().err == ""
