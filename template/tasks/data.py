"""The training data: fetch-data, and the tiny MNIST used by smoke runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from invoke import Exit, task

from .helpers import ROOT, run, tool
from .settings import settings


def _source_module(name: str):
    """A module of src/ (fetch_data, tiny_mnist): one implementation for the pixi tasks and Invoke."""
    source = str(ROOT / "src")
    if source not in sys.path:
        sys.path.insert(0, source)
    try:
        return importlib.import_module(name)
    except ImportError:
        raise Exit(f"src/{name}.py is missing; restore it from the template (copier update).") from None


def _fetcher():
    return _source_module("fetch_data")


def data_archive(c) -> Path:
    return ROOT / settings(c).data.archive


def ensure_data(c, extract: bool = False) -> Path:
    """The verified archive, downloaded first where it is missing."""
    data = settings(c).data
    if not data.url:
        raise Exit("pixi.toml names no data: set `url` (and `git-blob` or `sha256`) under [tool.invoke-tasks.data].")
    fetcher = _fetcher()
    try:
        archive = fetcher.fetch(data.url, ROOT / data.archive, data.sha256, git_blob=data.git_blob)
        if extract:
            fetcher.extract(archive, ROOT)
    except fetcher.FetchError as error:
        raise Exit(str(error)) from None
    return archive


@task(name="fetch-data", help={"extract": "also extract the archive into data/"})
def fetch_data(c, extract: bool = False):
    """Download the data archive once and verify it (the data of every job)."""
    ensure_data(c, extract)


def plot_metrics(metrics: list[Path], output: Path) -> None:
    """src/plot_metrics.py in the default environment (matplotlib lives there), or here if it has matplotlib."""
    script = [str(ROOT / "src" / "plot_metrics.py"), *map(str, metrics), "--output", str(output)]
    if importlib.util.find_spec("matplotlib") is not None:
        run([sys.executable, *script], "plot_metrics.py")
    else:
        run(
            [tool("pixi", "install it from pixi.sh"), "run", "--environment", "default", "python", *script],
            "plot_metrics.py",
        )


def tiny_mnist(directory: Path, train: int = 128, test: int = 32) -> Path:
    """A tiny MNIST in the real file format for smoke runs (src/tiny_mnist.py; no torch needed)."""
    return _source_module("tiny_mnist").tiny_mnist(directory, train, test)
