"""Helpers that use a rendered project's own vendored tasks package."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import re
import sys
import tarfile
import tempfile
from pathlib import Path


@functools.cache
def project_tasks(project: Path):
    """Import a rendered project's tasks package under a name of its own (importing reads nothing)."""
    package = project / "tasks"
    spec = importlib.util.spec_from_file_location(
        f"tasks_{abs(hash(project))}", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the package's modules import each other relatively
    spec.loader.exec_module(module)
    return module


def write_data_tarball(project: Path, train: int = 256, test: int = 64) -> Path:
    """MNIST_data.tar.gz in the layout of CHTC's copy (data/MNIST/raw/), tiny and random."""
    archive = project / "MNIST_data.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "data" / "MNIST" / "raw"
        raw.mkdir(parents=True)
        project_tasks(project).data.tiny_mnist(raw, train, test)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(Path(tmp) / "data", arcname="data")
    return archive


def tar_members(archive: Path) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive.read_bytes())) as tar:
        return tar.getnames()


def dry_run_ads(stdout: str) -> list[dict]:
    """The job ClassAds `invoke submit-condor --dry-run` prints (as `# job N` + JSON)."""
    blocks = re.findall(r"^# job \d+\n(\{.*?^\})", stdout, re.M | re.S)
    return [json.loads(block) for block in blocks]


def dry_run_command(stdout: str) -> str:
    """The condor_submit command line a dry run says it would run."""
    return stdout.split("# dry run: would run, in htcondor/:\n", 1)[1].strip()


def tiny_data_pins(project: Path) -> dict[str, str]:
    """INVOKE_* overrides that pin the tiny archive written by write_data_tarball as the project's data.

    The real archive's pins stay in pixi.toml; a test archive is verified like any other.
    """
    archive = project / "MNIST_data.tar.gz"
    if not archive.is_file():
        return {}
    content = archive.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()
    return {"INVOKE_PROJECT_DATA_GIT_BLOB": blob, "INVOKE_PROJECT_DATA_SHA256": hashlib.sha256(content).hexdigest()}
