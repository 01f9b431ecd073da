"""The network check: does the registry publish the pixi base image a rendering names?

Asked here of 127.0.0.1 only: a stand-in with ghcr.io's anonymous token flow
(tests/stand-ins/token_registry.py), and Debian's docker-registry (the real distribution
registry) holding a manifest uploaded through its API.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import urllib.request

import pytest

from maintainer.base_image import check_base_images, named_images, published
from maintainer.render import ROOT
from tests.services import STAND_INS, free_port, registry, start_or_skip

sys.path.insert(0, str(STAND_INS))
import token_registry  # noqa: E402  (tests/stand-ins is not a package)

PIXI = "prefix-dev/pixi"


@pytest.fixture(scope="module")
def token_host():
    server, host = token_registry.serve({PIXI: {"0.77.0"}})
    yield host
    server.shutdown()


def pointed_at(copy_of, host: str):
    """The defaults rendering with its base image on ``host`` instead of ghcr.io."""
    project = copy_of("defaults")
    for name in ("Dockerfile", "apptainer.def"):
        path = project / name
        path.write_text(path.read_text().replace("ghcr.io/prefix-dev/pixi:", f"{host}/prefix-dev/pixi:"))
    return project


def test_the_renderings_name_the_pinned_pixi_image_in_both_files(renderings):
    assert named_images(renderings["defaults"]) == {"ghcr.io/prefix-dev/pixi:0.77.0": "Dockerfile, apptainer.def"}
    assert named_images(renderings["cpu-linux"]) == {}


def test_a_token_registry_is_asked_with_an_anonymous_token(token_host):
    assert published(f"{token_host}/{PIXI}:0.77.0") is True
    assert published(f"{token_host}/{PIXI}:0.0.1") is False


def test_a_missing_tag_fails_the_check(copy_of, token_host, monkeypatch):
    monkeypatch.delenv("RMT_NETWORK_CHECKS", raising=False)
    project = pointed_at(copy_of, token_host)
    (finding,) = check_base_images(project)
    assert finding.ok and not finding.skipped
    for name in ("Dockerfile", "apptainer.def"):
        path = project / name
        path.write_text(path.read_text().replace("0.77.0", "0.0.1"))
    (finding,) = check_base_images(project)
    assert not finding.ok and not finding.skipped
    assert finding.detail == f"{token_host}/{PIXI}:0.0.1 is not published; pin a pixi version that has a base image"


def test_offline_it_skips_with_the_reason_and_fails_where_required(copy_of, monkeypatch):
    project = pointed_at(copy_of, f"127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.delenv("RMT_NETWORK_CHECKS", raising=False)
    (finding,) = check_base_images(project)
    assert finding.skipped and finding.detail.startswith("could not ask the registry (http://127.0.0.1:")
    monkeypatch.setenv("RMT_NETWORK_CHECKS", "required")
    (finding,) = check_base_images(project)
    assert not finding.ok and not finding.skipped


def _upload_manifest(host: str, repository: str, tag: str) -> None:
    """An image manifest (config blob only) pushed through the registry API (docs/spec/api.md)."""
    config = b"{}"
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    start = urllib.request.Request(f"http://{host}/v2/{repository}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(start, timeout=10) as response:
        location = response.headers["Location"]
    location = location if location.startswith("http") else f"http://{host}{location}"
    separator = "&" if "?" in location else "?"
    put = urllib.request.Request(f"{location}{separator}digest={digest}", data=config, method="PUT")
    put.add_header("Content-Type", "application/octet-stream")
    urllib.request.urlopen(put, timeout=10).close()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": len(config)},
        "layers": [],
    }
    put = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/{tag}", data=json.dumps(manifest).encode(), method="PUT"
    )
    put.add_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    urllib.request.urlopen(put, timeout=10).close()


def test_the_real_distribution_registry_answers_as_the_check_reads_it(tmp_path):
    with contextlib.ExitStack() as stack:
        host, _ = start_or_skip(stack, registry(tmp_path))
        _upload_manifest(host, PIXI, "0.77.0")
        assert published(f"{host}/{PIXI}:0.77.0") is True
        assert published(f"{host}/{PIXI}:0.0.1") is False


def test_invoke_check_asks_when_named(copy_of, token_host):
    project = pointed_at(copy_of, token_host)
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "check", str(project), "--only", "base-image"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(line.startswith("ok    Dockerfile, apptainer.def") for line in result.stdout.splitlines())
    assert result.stdout.splitlines()[-1] == "1 ok, 0 failed, 0 skipped"
