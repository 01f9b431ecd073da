"""A rendered project seen from outside: tiny data pinned for it, and the template's own
implementations of what the maintainer side shares with the project.

Shared by the tests, maintainer/checks.py and maintainer/journey.py. The rendered project's
tasks package is never imported here: the maintainer side reaches the few self-contained
files it shares with the project (src/fetch_data.py, src/tiny_mnist.py, tasks/sizes.py,
tasks/condor_bindings.py) in the template, where they are written once.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import tarfile
import tempfile
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "template"


@functools.cache
def template_module(relative: str):
    """A self-contained module of the template (no relative imports), e.g. "tasks/sizes.py".

    Rendering copies these files unchanged (they are not .jinja), so a rendered project
    holds the same code."""
    path = TEMPLATE / relative
    name = "template_" + relative.removesuffix(".py").replace("/", "_")
    if relative.startswith("src/") and relative != "src/progress.py":
        # src/ scripts import their sibling src/progress.py by that name, as they do when run.
        sys.modules.setdefault("progress", template_module("src/progress.py"))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_data_tarball(project: Path, train: int = 256, test: int = 64) -> Path:
    """MNIST_data.tar.gz in the layout of CHTC's copy (data/MNIST/raw/), tiny and made up."""
    archive = project / "MNIST_data.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "data" / "MNIST" / "raw"
        template_module("src/tiny_mnist.py").tiny_mnist(raw, train, test)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(Path(tmp) / "data", arcname="data")
    return archive


def data_pins(archive: Path) -> dict[str, str]:
    """INVOKE_* overrides that pin ``archive`` as the project's data, verified as the real one is."""
    digests = template_module("src/fetch_data.py").digests_of(archive)
    return {"INVOKE_PROJECT_DATA_GIT_BLOB": digests["git_blob"], "INVOKE_PROJECT_DATA_SHA256": digests["sha256"]}
