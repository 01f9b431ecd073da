"""Data download: pins (git blob id, SHA-256), mismatch, no-op reruns and an unreachable host, all offline."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile

import pytest

import fetch_data
from conftest import SRC

CHTC_BLOB = "2c16ecea81f0a17af2f5ebd5194585a43f6e4701"  # the lesson's archive at the pinned commit


@pytest.fixture
def tarball(tmp_path):
    raw = tmp_path / "src" / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
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
    assert fetch_data.git_blob_of(path) == git_hash_object(path)


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
    good.write_bytes(b"x" * 100)
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(good, arcname="data/MNIST/raw/first")
        tar.add(good, arcname="../outside")  # refused by tarfile's "data" filter
    into = tmp_path / "into"
    with pytest.raises(tarfile.TarError):
        fetch_data.extract(archive, into)
    assert list(into.iterdir()) == [] and not (tmp_path / "outside").exists()
    assert "extracted" not in fetch_data.read_stamp(archive)


def test_offline_is_said_clearly(tmp_path):
    with pytest.raises(fetch_data.FetchError, match="no internet access. On a machine that has it, download"):
        fetch_data.fetch("http://127.0.0.1:9/MNIST_data.tar.gz", tmp_path / "out" / "MNIST_data.tar.gz", timeout=5)
    assert list((tmp_path / "out").iterdir()) == []


def run_cli(cwd, *args):
    return subprocess.run(
        [sys.executable, str(SRC / "fetch_data.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_cli_mismatch_is_one_sentence_and_leaves_nothing(tarball, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli(out, "--url", tarball.as_uri(), "--output", "a.tar.gz", "--extract", ".")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "the download was deleted" in result.stderr
    assert "Traceback" not in result.stderr and list(out.iterdir()) == []


def test_cli_downloads_verifies_extracts_then_does_nothing(tarball, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = ("--url", tarball.as_uri(), "--output", "a.tar.gz", "--git-blob", git_hash_object(tarball), "--sha256", "")
    first = run_cli(out, *args, "--extract", ".")
    assert first.returncode == 0, first.stderr
    assert "verified" in first.stdout and "extracted into ." in first.stdout
    second = run_cli(out, *args, "--extract", ".")
    assert second.returncode == 0 and "already extracted" in second.stdout


def test_cli_refuses_a_corrupt_archive_in_one_sentence(tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    unpinned = ("--git-blob", "", "--sha256", "")
    result = run_cli(tmp_path, "--url", "http://127.0.0.1:9/x", "--output", "a.tar.gz", *unpinned, "--extract", ".")
    assert result.returncode == 1 and "cannot extract" in result.stderr and "Traceback" not in result.stderr


def test_manifest_pins_the_lesson_commit_and_blob():
    config = fetch_data.data_config()
    assert config["url"].endswith("/shared/pytorch/MNIST_data.tar.gz")
    assert "450081144c6ae0657123be2a9a357cb432d9d394" in config["url"]
    assert config["git-blob"] == CHTC_BLOB
