"""Data download: checksum match, mismatch and an unreachable host, all offline."""

from __future__ import annotations

import hashlib
import tarfile

import pytest

import fetch_data


@pytest.fixture
def tarball(tmp_path):
    raw = tmp_path / "src" / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    archive = tmp_path / "MNIST_data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "data", arcname="data")
    return archive


def test_fetch_checks_sha256_and_extracts(tarball, tmp_path):
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    target = fetch_data.fetch(tarball.as_uri(), tmp_path / "out" / "MNIST_data.tar.gz", digest)
    assert fetch_data.sha256_of(target) == digest
    fetch_data.extract(target, tmp_path / "x")
    assert (tmp_path / "x" / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()


def test_checksum_mismatch_leaves_nothing(tarball, tmp_path):
    target = tmp_path / "out" / "MNIST_data.tar.gz"
    with pytest.raises(fetch_data.FetchError, match="expected 0000"):
        fetch_data.fetch(tarball.as_uri(), target, "0" * 64)
    assert not target.exists() and not target.with_name(target.name + ".part").exists()


def test_offline_is_said_clearly(tmp_path):
    with pytest.raises(fetch_data.FetchError, match="offline"):
        fetch_data.fetch("http://127.0.0.1:9/MNIST_data.tar.gz", tmp_path / "MNIST_data.tar.gz", timeout=5)


def test_manifest_pins_the_lesson_commit():
    config = fetch_data.data_config()
    assert config["url"].endswith("/shared/pytorch/MNIST_data.tar.gz")
    assert "450081144c6ae0657123be2a9a357cb432d9d394" in config["url"]
