"""Shared helpers: make the training scripts importable and write MNIST-format IDX files."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))


def pytest_configure(config: pytest.Config) -> None:
    # `pixi run test` leaves these out to stay quick; `pixi run test-all` and CI run them.
    config.addinivalue_line("markers", "slow: end-to-end runs of the script as a process (signals, eviction, restart)")


def write_idx(path: Path, data: torch.Tensor, compress: bool = False) -> Path:
    """Write a uint8 tensor as an IDX file (gzip-compressed when ``compress``)."""
    data = data.to(torch.uint8).contiguous()
    payload = bytes([0, 0, 0x08, data.dim()]) + struct.pack(f">{data.dim()}I", *data.shape)
    payload += data.numpy().tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def write_mnist(directory: Path, images: dict, labels: dict, compress: bool = False) -> Path:
    """Write train/test splits under MNIST's file names into ``directory``."""
    names = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
    for split, (image_name, label_name) in names.items():
        write_idx(directory / image_name, images[split], compress)
        write_idx(directory / label_name, labels[split], compress)
    return directory


def synthetic_digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable fake digits: class k lights up a class-specific 8x8 block, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator, dtype=torch.uint8)
    images = torch.randint(0, 60, (n, 28, 28), generator=generator, dtype=torch.uint8)
    for k in range(10):
        row, col = divmod(k, 3)
        images[labels == k, 2 + 6 * row : 10 + 6 * row, 2 + 8 * col : 10 + 8 * col] = 255
    return images, labels


@pytest.fixture
def small_mnist(tmp_path: Path) -> Path:
    """A tiny synthetic MNIST in the layout of CHTC's tarball (data/MNIST/raw)."""
    train = synthetic_digits(512, seed=1)
    test = synthetic_digits(128, seed=2)
    root = tmp_path / "data"
    write_mnist(root / "MNIST" / "raw", {"train": train[0], "test": test[0]}, {"train": train[1], "test": test[1]})
    return root
