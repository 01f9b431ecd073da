"""A rendered project seen from outside: its own tasks package, and tiny data pinned for it.

Shared by the tests and by maintainer/journey.py.
"""

from __future__ import annotations

import functools
import importlib.util
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


def _source_module(name: str, registered_as: str):
    path = Path(__file__).resolve().parent.parent / "template" / "src" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(registered_as, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def fetch_data_module():
    """The template's src/fetch_data.py: the one implementation of the data's digests and pins."""
    # It imports its sibling src/progress.py by that name, as it does when run as a script.
    sys.modules.setdefault("progress", _source_module("progress", "progress"))
    return _source_module("fetch_data", "template_fetch_data")


def data_pins(archive: Path) -> dict[str, str]:
    """INVOKE_* overrides that pin ``archive`` as the project's data, verified as the real one is."""
    digests = fetch_data_module().digests_of(archive)
    return {"INVOKE_PROJECT_DATA_GIT_BLOB": digests["git_blob"], "INVOKE_PROJECT_DATA_SHA256": digests["sha256"]}
