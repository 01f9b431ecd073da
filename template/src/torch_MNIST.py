#!/usr/bin/env python
"""Train the lesson's CNN on MNIST, fast.

The whole dataset is read once from MNIST's IDX files (no torchvision), normalised
once and kept on the training device; batches are drawn with ``torch.randperm`` on
that device, so no per-sample work and no DataLoader sit between the GPU and the data.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import struct
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
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


def to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device, channels_last: bool):
    """Normalise once and move the whole split to the device."""
    x = images.to(device=device, non_blocking=True).unsqueeze(1).float().div_(255.0)
    x = x.sub_(MNIST_MEAN).div_(MNIST_STD)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, labels.to(device=device, dtype=torch.long, non_blocking=True)


class Net(nn.Module):
    """The CNN of pytorch/examples' MNIST and of the lesson."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def pick_device(name: str) -> torch.device:
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DataError("--device cuda was asked for but no CUDA GPU is usable here.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(model, optimizer, x, y, batch_size, autocast, dry_run=False) -> float:
    """One pass over a device-side permutation; returns the mean training loss."""
    model.train()
    order = torch.randperm(x.shape[0], device=x.device)
    loss_sum = torch.zeros((), device=x.device)
    seen = 0
    for start in range(0, x.shape[0], batch_size):
        index = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = F.nll_loss(model(x[index]), y[index])
        loss.backward()
        optimizer.step()
        # Accumulate on the device: a .item() per step would stall the GPU queue.
        loss_sum += loss.detach().float() * index.numel()
        seen += index.numel()
        if dry_run:
            break
    return float(loss_sum) / max(seen, 1)


def evaluate(model, x, y, batch_size, autocast) -> tuple[float, float]:
    """Mean test loss and accuracy (fraction), without autograd bookkeeping."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    with torch.inference_mode(), autocast():
        for start in range(0, x.shape[0], batch_size):
            output = model(x[start : start + batch_size]).float()
            target = y[start : start + batch_size]
            loss_sum += F.nll_loss(output, target, reduction="sum")
            correct += (output.argmax(dim=1) == target).sum()
    n = max(x.shape[0], 1)
    return float(loss_sum) / n, int(correct) / n


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="PyTorch MNIST example, with the dataset resident on the device.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="directory holding MNIST's IDX files")
    parser.add_argument("--batch-size", type=int, default=64, help="input batch size for training")
    parser.add_argument("--test-batch-size", type=int, default=1000, help="input batch size for testing")
    parser.add_argument("--epochs", type=int, default=14, help="number of epochs to train")
    parser.add_argument("--lr", type=float, default=1.0, help="learning rate")
    parser.add_argument("--gamma", type=float, default=0.7, help="learning rate step gamma")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--dry-run", action="store_true", help="quickly check a single pass")
    parser.add_argument("--save-model", action="store_true", help="save the trained model as mnist_cnn.pt")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA, or CPUs with AVX512-BF16/AMX)")
    parser.add_argument("--compile", action="store_true", help="compile the model with torch.compile (CUDA only)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms, slower")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--metrics", type=Path, default=None, help="write a JSON file of config and per-epoch results")
    args = parser.parse_args(argv)
    for name in ("batch_size", "test_batch_size", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        device = pick_device(args.device)
        t_load = time.perf_counter()
        on_cuda = device.type == "cuda"
        channels_last = args.channels_last
        train_x, train_y = to_device(*load_split(args.data_dir, "train"), device, channels_last)
        test_x, test_y = to_device(*load_split(args.data_dir, "test"), device, channels_last)
        synchronize(device)
        load_seconds = time.perf_counter() - t_load
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if on_cuda and not args.deterministic:
        torch.backends.cudnn.benchmark = True
    model = Net().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if (args.compile and on_cuda) else model
    optimizer = torch.optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=args.gamma)

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.amp)

    print(
        f"device {device}, torch {torch.__version__}, {train_x.shape[0]} train / {test_x.shape[0]} test "
        f"images loaded in {load_seconds:.2f} s"
    )
    history = []
    t_start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        synchronize(device)
        t0 = time.perf_counter()
        train_loss = train_epoch(step_model, optimizer, train_x, train_y, args.batch_size, autocast, args.dry_run)
        synchronize(device)
        train_seconds = time.perf_counter() - t0
        test_loss, accuracy = evaluate(step_model, test_x, test_y, args.test_batch_size, autocast)
        scheduler.step()
        seconds = time.perf_counter() - t0
        samples = args.batch_size if args.dry_run else train_x.shape[0]
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "test_loss": test_loss,
                "test_accuracy": accuracy,
                "seconds": seconds,
                "train_samples_per_second": samples / train_seconds,
            }
        )
        print(
            f"epoch {epoch:>2}: train loss {train_loss:.4f}, test loss {test_loss:.4f}, "
            f"accuracy {100 * accuracy:.2f}%, {seconds:.2f} s ({samples / train_seconds:,.0f} samples/s)",
            flush=True,
        )
    total_seconds = time.perf_counter() - t_start

    if args.save_model:
        torch.save(model.state_dict(), "mnist_cnn.pt")
        print("saved mnist_cnn.pt")
    if args.metrics:
        metrics = {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if on_cuda else None,
            "torch_version": torch.__version__,
            "load_seconds": load_seconds,
            "train_seconds": total_seconds,
            "epochs": history,
            "final_test_accuracy": history[-1]["test_accuracy"],
        }
        args.metrics.parent.mkdir(parents=True, exist_ok=True)
        args.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
