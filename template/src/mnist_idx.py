"""MNIST's IDX files read directly (plain or gzip), with one-sentence errors for bad files."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import torch

SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Where the files sit relative to --data-dir: flat, torchvision's layout, and the
# layout inside CHTC's MNIST_data.tar.gz once extracted (data/MNIST/raw/).
SEARCH_DIRS = (".", "MNIST/raw", "data/MNIST/raw")
IDX_UBYTE = 0x08


class DataError(Exception):
    """MNIST data that is missing, short or corrupt; the message is one sentence."""


def read_idx(path: Path) -> torch.Tensor:
    """Read an unsigned-byte IDX file (plain or gzip) into a uint8 tensor."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DataError(f"{path} is a damaged gzip file ({error}).") from None
    if len(raw) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(raw)} bytes).")
    zeros, dtype, ndim = raw[:2], raw[2], raw[3]
    if zeros != b"\x00\x00" or dtype != IDX_UBYTE or not 1 <= ndim <= 4:
        raise DataError(f"{path} is not an unsigned-byte IDX file (magic number 0x{raw[:4].hex()}).")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} ends inside its header ({len(raw)} of {header} bytes).")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape)
    if len(raw) - header != expected:
        raise DataError(
            f"{path} holds {len(raw) - header} data bytes but its header promises {expected} "
            f"for shape {tuple(shape)}; the file is truncated or corrupt."
        )
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(shape)


def find_idx(data_dir: Path, name: str) -> Path:
    """Locate ``name`` or ``name.gz`` in the known layouts below ``data_dir``."""
    for sub in SEARCH_DIRS:
        for candidate in (data_dir / sub / name, data_dir / sub / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(
        f"{name}[.gz] was not found under {data_dir} (looked in {', '.join(SEARCH_DIRS)}); "
        "run 'pixi run fetch-data' and extract MNIST_data.tar.gz, or pass --data-dir."
    )


def load_split(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) and labels (N,) of one split, checked against each other."""
    image_name, label_name = SPLITS[split]
    images = read_idx(find_idx(data_dir, image_name))
    labels = read_idx(find_idx(data_dir, label_name))
    if images.dim() != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{split} images have shape {tuple(images.shape)}, expected (N, 28, 28).")
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{split} has {images.shape[0]} images but labels of shape {tuple(labels.shape)}.")
    if labels.numel() and int(labels.max()) > 9:
        raise DataError(f"{split} labels hold {int(labels.max())}; MNIST labels are 0-9.")
    return images, labels
