"""The training data: fetch-data, and the tiny MNIST used by smoke runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from invoke import Exit, task

from .helpers import ROOT, fetcher, run, source_module, tool
from .settings import settings

MiB = 2**20


def data_archive(c) -> Path:
    return ROOT / settings(c).data.archive


def ensure_data(c, extract: bool = False) -> Path:
    """The verified archive, downloaded first where it is missing."""
    data = settings(c).data
    if not data.url:
        raise Exit("pixi.toml names no data: set `url` (and `git-blob` or `sha256`) under [tool.invoke-tasks.data].")
    fetch_data = fetcher()
    try:
        archive = fetch_data.fetch(
            data.url, ROOT / data.archive, data.sha256, git_blob=data.git_blob, max_bytes=data.max_size_mb * MiB
        )
        if extract:
            fetch_data.extract(archive, ROOT, data.max_extracted_mb * MiB)
    except fetch_data.FetchError as error:
        raise Exit(str(error)) from None
    except (OSError, EOFError, fetch_data.tarfile.TarError, fetch_data.zlib.error) as error:
        raise Exit(f"cannot fetch or extract {data.archive} ({error}); delete it and run fetch-data again.") from None
    return archive


@task(name="fetch-data", help={"extract": "also extract the archive into data/ (and nowhere else)"})
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
    return source_module("tiny_mnist").tiny_mnist(directory, train, test)
