"""Helpers that use a rendered project's own vendored tasks.py."""

from __future__ import annotations

import importlib.util
import io
import sys
import tarfile
import tempfile
from pathlib import Path


def project_tasks(project: Path):
    """Import a rendered project's tasks.py (it reads that project's pixi.toml)."""
    spec = importlib.util.spec_from_file_location(f"tasks_{abs(hash(project))}", project / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # tasks.py builds its Invoke collection from sys.modules
    spec.loader.exec_module(module)
    return module


def write_data_tarball(project: Path, train: int = 256, test: int = 64) -> Path:
    """MNIST_data.tar.gz in the layout of CHTC's copy (data/MNIST/raw/), tiny and random."""
    archive = project / "MNIST_data.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "data" / "MNIST" / "raw"
        raw.mkdir(parents=True)
        project_tasks(project).tiny_mnist(raw, train, test)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(Path(tmp) / "data", arcname="data")
    return archive


def tar_members(archive: Path) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive.read_bytes())) as tar:
        return tar.getnames()
