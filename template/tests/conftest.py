"""Shared helpers: make the training scripts importable, write MNIST-format IDX files, and
one tiny training run that the quick tests share."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))

from tiny_mnist import idx_bytes, tiny_mnist  # noqa: E402  (src/ is on the path from here on)

# How the quick tests train: one thread (their batches are small; on a shared or loaded CPU a
# second thread costs more than it gives) and batches of 32 (several steps on a tiny set).
QUICK = ["--device", "cpu", "--threads", "1", "--batch-size", "32"]
# The tiny run every quick test that needs a trained model shares.
TINY_RUN = [*QUICK, "--epochs", "2", "--amp", "off", "--save-model", "--metrics", "metrics.json"]


def pytest_configure(config: pytest.Config) -> None:
    # `pixi run test` leaves these out to stay quick; `pixi run test-all` and CI run them.
    config.addinivalue_line("markers", "slow: end-to-end runs of the script as a process (signals, eviction, restart)")


def write_idx(path: Path, data: torch.Tensor, compress: bool = False) -> Path:
    """Write a uint8 tensor as an IDX file (gzip-compressed when ``compress``)."""
    payload = idx_bytes(tuple(data.shape), data.to(torch.uint8).contiguous().numpy().tobytes())
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def write_mnist(directory: Path, images: dict, labels: dict) -> Path:
    """Write given train/test tensors under MNIST's file names into ``directory``."""
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images[split])
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels[split])
    return directory


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny made-up MNIST (src/tiny_mnist.py) in the layout of CHTC's tarball (data/MNIST/raw).

    Shared by the session: no test writes into it."""
    root = tmp_path_factory.mktemp("mnist") / "data"
    tiny_mnist(root / "MNIST" / "raw", train=128, test=64)
    return root


@pytest.fixture(scope="session")
def tiny_run(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of one real training run (TINY_RUN): mnist_cnn.pt and metrics.json in it."""
    import torch_MNIST

    directory = tmp_path_factory.mktemp("tiny-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        assert torch_MNIST.main(["--data-dir", str(small_mnist), *TINY_RUN]) == 0
    return directory
