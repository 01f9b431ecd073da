#!/usr/bin/env python
"""Write a tiny MNIST in the real file format, for a first run with no download.

The files are MNIST's IDX files (train-images-idx3-ubyte, ...), as torch_MNIST.py reads
them, holding made-up 28x28 images: each digit class is a bright square at its own place
on a noisy background, so a short training visibly learns. `pixi run demo` trains on them;
the tests and the container checks use them too. Only the standard library is needed.

    python src/tiny_mnist.py demo/data --train 256 --test 64
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
from pathlib import Path

SIZE = 28
# Byte value -> background noise (0..63): dark and grainy, as handwriting scans are.
NOISE = bytes(value // 4 for value in range(256))


def image(rng: random.Random, digit: int) -> bytes:
    """One 28x28 image: noise, and a 6x6 bright square in one of 10 places (2 rows of 5)."""
    pixels = bytearray(rng.randbytes(SIZE * SIZE).translate(NOISE))
    top, left = 6 + 10 * (digit // 5), 1 + 5 * (digit % 5) + rng.randrange(2)
    for row in range(top, top + 6):
        pixels[row * SIZE + left : row * SIZE + left + 6] = bytes(rng.randrange(200, 256) for _ in range(6))
    return bytes(pixels)


def idx_bytes(shape: tuple[int, ...], data: bytes) -> bytes:
    """An IDX file of unsigned bytes: two zero bytes, type 0x08, the number of dimensions, the sizes, the data."""
    return struct.pack(f">4B{len(shape)}I", 0, 0, 8, len(shape), *shape) + data


def tiny_mnist(directory: Path, train: int = 128, test: int = 32, seed: int = 0) -> Path:
    """Write train-* and t10k-* image and label files into ``directory``; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = bytes(rng.randrange(10) for _ in range(count))
        images = b"".join(image(rng, digit) for digit in labels)
        (directory / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes((count, SIZE, SIZE), images))
        (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes((count,), labels))
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="where to write the four IDX files")
    parser.add_argument("--train", type=int, default=512, help="training images (default 512)")
    parser.add_argument("--test", type=int, default=128, help="test images (default 128)")
    args = parser.parse_args(argv)
    if args.train < 1 or args.test < 1:
        parser.error("--train and --test need at least one image each")
    try:
        tiny_mnist(args.directory, args.train, args.test)
    except OSError as error:
        print(f"cannot write the tiny MNIST into {args.directory} ({error.strerror or error}).", file=sys.stderr)
        return 1
    print(f"wrote a tiny MNIST ({args.train} training, {args.test} test images) to {args.directory}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
