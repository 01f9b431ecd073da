#!/usr/bin/env python
"""Train the lesson's CNN on MNIST, fast.

The whole dataset is read once from MNIST's IDX files (no torchvision), normalised
once and kept on the training device; batches are drawn with ``torch.randperm`` on
that device, so no per-sample work and no DataLoader sit between the GPU and the data.

Fast by default: bfloat16 autocast and channels_last are chosen per device (see
``choose_precision``). Preemptible: with ``--checkpoint PATH`` every finished epoch is
saved atomically, a run that finds PATH resumes after its epoch, and SIGTERM (or
``--checkpoint-every``) ends the run with exit code 85 once the checkpoint is safe.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import signal
import struct
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import provenance

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Where the files sit relative to --data-dir: flat, torchvision's layout, and the
# layout inside CHTC's MNIST_data.tar.gz once extracted (data/MNIST/raw/).
SEARCH_DIRS = (".", "MNIST/raw", "data/MNIST/raw")
IDX_UBYTE = 0x08
# HTCondor's convention (checkpoint_exit_code = 85); the SLURM script requeues on it too.
CHECKPOINT_EXIT = 85
# CPU flags (/proc/cpuinfo) of native bf16 matrix maths; without them bf16 is emulated and
# slower than fp32 (11x slower on an AVX2-only EPYC).
NATIVE_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# Options that must match for a checkpoint to be resumed: they change what an epoch computes.
RESUME_MUST_MATCH = ("batch_size", "lr", "gamma", "seed")
CHECKPOINT_KEYS = frozenset({"config", "epoch", "model", "optimizer", "scheduler", "rng", "history", "elapsed_seconds"})


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


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def choose_precision(request: str, device: torch.device, flags: frozenset | None = None) -> torch.dtype:
    """bfloat16 for ``on``; for ``auto`` only where bf16 maths is native, else float32."""
    if request == "on":
        return torch.bfloat16
    if request == "off":
        return torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float32
    if device.type == "cpu":
        flags = cpu_flags() if flags is None else flags
        return torch.bfloat16 if flags & NATIVE_BF16_CPU_FLAGS else torch.float32
    return torch.float32


def choose_channels_last(request: str, device: torch.device, precision: torch.dtype) -> bool:
    """channels_last on CUDA, and on CPUs only with bf16 (oneDNN's bf16 convolutions); fp32 CPU
    convolutions gained nothing from it in bench/bench_training.py."""
    if request != "auto":
        return request == "on"
    return device.type == "cuda" or (device.type == "cpu" and precision == torch.bfloat16)


def train_epoch(model, optimizer, x, y, batch_size, autocast, dry_run=False, stop=None) -> float | None:
    """One pass over a device-side permutation; returns the mean training loss.

    ``stop()`` is asked before every step; when it says yes the epoch is abandoned and
    None returned (the model is then part-way through an epoch and must not be saved).
    """
    model.train()
    order = torch.randperm(x.shape[0], device=x.device)
    loss_sum = torch.zeros((), device=x.device)
    seen = 0
    for start in range(0, x.shape[0], batch_size):
        if stop is not None and stop():
            return None
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


SWITCH = ("on", "off", "auto")


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
    parser.add_argument("--save-model", action="store_true", help="save the trained model (to --model)")
    parser.add_argument("--model", type=Path, default=Path("mnist_cnn.pt"), help="where --save-model writes")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--amp",
        nargs="?",
        const="on",
        default="auto",
        choices=SWITCH,
        help="bfloat16 autocast; auto: on CUDA GPUs with bf16 and CPUs with AMX/AVX512-BF16 (a bare --amp is on)",
    )
    parser.add_argument("--compile", action="store_true", help="compile the model with torch.compile (CUDA only)")
    parser.add_argument(
        "--channels-last",
        nargs="?",
        const="on",
        default="auto",
        choices=SWITCH,
        help="channels_last memory format; auto: on CUDA, and on CPUs when bf16 is used",
    )
    parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms, slower")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--metrics", type=Path, default=None, help="write a JSON file of config and per-epoch results")
    parser.add_argument(
        "--target-accuracy", type=float, default=None, help="stop once test accuracy reaches this fraction (e.g. 0.99)"
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="save every epoch here and resume from it when it exists"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=float,
        default=None,
        metavar="MINUTES",
        help=f"exit {CHECKPOINT_EXIT} after the epoch in which this much time has passed (HTCondor self-checkpointing)",
    )
    args = parser.parse_args(argv)
    for name in ("batch_size", "test_batch_size", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.target_accuracy is not None and not 0 < args.target_accuracy <= 1:
        parser.error(f"--target-accuracy is a fraction in (0, 1], e.g. 0.99, not {args.target_accuracy}")
    if args.checkpoint_every is not None:
        if args.checkpoint is None:
            parser.error("--checkpoint-every needs --checkpoint PATH to save to")
        if not args.checkpoint_every > 0:
            parser.error(f"--checkpoint-every must be a positive number of minutes, not {args.checkpoint_every}")
    return args


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to a temporary file beside ``path``, then rename it over ``path``:
    a reader (or a job evicted mid-write) sees the old checkpoint or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as out:
            torch.save(state, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_checkpoint(path: Path, args: argparse.Namespace, device: torch.device) -> dict:
    """Read a checkpoint written by ``save_checkpoint`` and check it fits this run."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        missing = CHECKPOINT_KEYS - set(state)
        if missing:
            raise KeyError(", ".join(sorted(missing)))
        saved = state["config"]
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise DataError(f"{path} is not a checkpoint of this script ({type(error).__name__}); move it away.") from None
    for name in RESUME_MUST_MATCH:
        if saved.get(name) != getattr(args, name):
            option = "--" + name.replace("_", "-")
            raise DataError(
                f"{path} was written with {option} {saved.get(name)}, not {getattr(args, name)}; "
                "pass the same options or move the checkpoint away."
            )
    return state


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict) -> None:
    torch.set_rng_state(states["torch"].cpu())
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        # A job may resume on a machine with fewer GPUs: restore those that exist.
        for index, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state.cpu(), index)


def main(argv=None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    # SIGTERM (SLURM's --signal, HTCondor's eviction, docker stop) only raises a flag: the
    # current step finishes, the epoch is abandoned and the last checkpoint stands.
    stopping = []
    previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    try:
        return train(args, started, stopping)
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def train(args: argparse.Namespace, started: float, stopping: list) -> int:
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    device = pick_device(args.device)
    resumed = None
    if args.checkpoint and args.checkpoint.exists():
        resumed = load_checkpoint(args.checkpoint, args, device)
    precision = choose_precision(args.amp, device)
    channels_last = choose_channels_last(args.channels_last, device, precision)
    t_load = time.perf_counter()
    on_cuda = device.type == "cuda"
    train_x, train_y = to_device(*load_split(args.data_dir, "train"), device, channels_last)
    test_x, test_y = to_device(*load_split(args.data_dir, "test"), device, channels_last)
    synchronize(device)
    load_seconds = time.perf_counter() - t_load

    if on_cuda and not args.deterministic:
        torch.backends.cudnn.benchmark = True
    model = Net().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if (args.compile and on_cuda) else model
    optimizer = torch.optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=args.gamma)
    bf16 = precision == torch.bfloat16

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)

    history, done_epochs, elapsed_before = [], 0, 0.0
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        restore_rng(resumed["rng"])
        history, done_epochs = resumed["history"], resumed["epoch"]
        elapsed_before = resumed["elapsed_seconds"]
        print(f"resumed from epoch {done_epochs}", flush=True)

    print(
        f"device {device}, torch {torch.__version__}, {train_x.shape[0]} train / {test_x.shape[0]} test "
        f"images loaded in {load_seconds:.2f} s, {'bfloat16' if bf16 else 'float32'}"
        f"{', channels_last' if channels_last else ''}"
    )
    t_start = time.perf_counter()

    def elapsed() -> float:  # training time over all runs of this checkpoint
        return elapsed_before + time.perf_counter() - t_start

    def checkpoint(epoch: int) -> None:
        if args.checkpoint:
            save_checkpoint(
                args.checkpoint,
                {
                    "config": config_of(args),
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng_states(),
                    "history": history,
                    "elapsed_seconds": elapsed(),
                },
            )

    if resumed is None:
        checkpoint(0)  # so that a stop during the first epoch still leaves a checkpoint
    for epoch in range(done_epochs + 1, args.epochs + 1):
        if stopping or target_reached(history, args.target_accuracy)["epoch"]:
            break
        synchronize(device)
        t0 = time.perf_counter()
        train_loss = train_epoch(
            step_model, optimizer, train_x, train_y, args.batch_size, autocast, args.dry_run, lambda: bool(stopping)
        )
        if train_loss is None:
            break
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
                "elapsed_seconds": elapsed(),
                "train_samples_per_second": samples / train_seconds,
            }
        )
        print(
            f"epoch {epoch:>2}: train loss {train_loss:.4f}, test loss {test_loss:.4f}, "
            f"accuracy {100 * accuracy:.2f}%, {seconds:.2f} s ({samples / train_seconds:,.0f} samples/s)",
            flush=True,
        )
        target = target_reached(history, args.target_accuracy)
        if target["epoch"] == epoch:
            print(f"target accuracy {100 * args.target_accuracy:.2f}% reached in epoch {epoch}", flush=True)
        checkpoint(epoch)
        finished = epoch == args.epochs or target["epoch"] is not None
        if not finished and args.checkpoint_every and time.perf_counter() - started >= 60 * args.checkpoint_every:
            print(f"{args.checkpoint_every:g} min passed: checkpointed, exiting {CHECKPOINT_EXIT}", flush=True)
            return CHECKPOINT_EXIT
    if stopping:
        if not args.checkpoint:
            print(f"stopped by signal {stopping[0]} after {len(history)} epochs (no --checkpoint)", flush=True)
            return 128 + stopping[0]
        print(f"stopped by signal {stopping[0]}: checkpoint holds epoch {len(history)}, exiting {CHECKPOINT_EXIT}")
        return CHECKPOINT_EXIT
    total_seconds = elapsed()

    if args.save_model:
        args.model.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.model)
        print(f"saved {args.model}")
    if args.metrics:
        config = config_of(args)
        config["precision"] = "bfloat16" if bf16 else "float32"
        config["memory_format"] = "channels_last" if channels_last else "contiguous"
        metrics = {
            "config": config,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if on_cuda else None,
            "torch_version": torch.__version__,
            "load_seconds": load_seconds,
            "train_seconds": total_seconds,
            "resumed_from_epoch": resumed["epoch"] if resumed is not None else None,
            "target": target_reached(history, args.target_accuracy) if args.target_accuracy else None,
            "epochs": history,
            "final_test_accuracy": history[-1]["test_accuracy"] if history else None,
            "provenance": provenance.collect(),
        }
        args.metrics.parent.mkdir(parents=True, exist_ok=True)
        args.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def target_reached(history: list, accuracy: float | None) -> dict:
    """The first epoch (and seconds since training start) whose test accuracy reached ``accuracy``."""
    for row in history if accuracy is not None else ():
        if row["test_accuracy"] >= accuracy:
            return {"accuracy": accuracy, "epoch": row["epoch"], "seconds": row["elapsed_seconds"]}
    return {"accuracy": accuracy, "epoch": None, "seconds": None}


def config_of(args: argparse.Namespace) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


if __name__ == "__main__":
    sys.exit(main())
