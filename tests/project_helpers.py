"""Helpers for tests on a rendered project (write_data_tarball and data_pins live in maintainer/project.py)."""

from __future__ import annotations

import functools
import importlib.util
import io
import itertools
import json
import re
import shutil
import sys
import tarfile
from pathlib import Path

from maintainer.project import data_pins, write_data_tarball
from maintainer.render import ROOT, git

__all__ = [
    "clone_with_working_tree",
    "project_tasks",
    "write_data_tarball",
    "tiny_data_pins",
    "dry_run_ads",
    "dry_run_command",
    "tar_members",
]


_IMPORTED = itertools.count(1)


@functools.cache
def project_tasks(project: Path):
    """A rendered project's tasks package, imported into the tests' process (importing reads nothing).

    It gets a name of its own, rendered_tasks_N, because the suite holds several renderings and
    this repository's tasks.py already answers to `tasks`; its modules import each other relatively.
    """
    package = project / "tasks"
    name = f"rendered_tasks_{next(_IMPORTED)}"
    locations = [str(package)]
    spec = importlib.util.spec_from_file_location(name, package / "__init__.py", submodule_search_locations=locations)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


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
    """The tiny archive written by write_data_tarball, pinned as the project's data ({} without one).

    The real archive's pins stay in pixi.toml; a test archive is verified like any other.
    """
    archive = project / "MNIST_data.tar.gz"
    return data_pins(archive) if archive.is_file() else {}


def clone_with_working_tree(destination: Path, names: tuple[str, ...]) -> Path:
    """A clone of this repository (its history and tags) with ``names`` from the working tree committed on top."""
    git(ROOT, "clone", "-q", str(ROOT), str(destination))
    for name in names:
        target, source = destination / name, ROOT / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    git(destination, "add", "-A")
    git(destination, "commit", "-q", "--allow-empty", "-m", "the working tree")
    return destination
