#!/usr/bin/env python
"""Train the lesson's CNN on MNIST, fast: the model, the data, one training epoch, evaluation
and the main loop, in that order. Change the model, the loss or the optimiser here.

The whole dataset is read once from MNIST's IDX files (no torchvision), normalised once and
kept on the training device; batches are drawn with ``torch.randperm`` on that device.
The default recipe ("fast") is chosen for time to accuracy; ``--recipe lesson`` trains as the
lesson does (Adadelta, lr 1.0, StepLR 0.7, batch 64, 14 epochs).

Beside this file: mnist_idx.py reads the data, hardware.py picks device and precision,
preemption.py checkpoints, resumes and handles SIGTERM (exit 85), metrics.py writes --metrics.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import hardware
from atomic_file import write_atomically
from metrics import write_metrics
from mnist_idx import DataError, load_split
from preemption import CHECKPOINT_EXIT, CheckpointError, TrainingRun, sigterm_flag

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CHECKPOINT_EVERY_HELP = f"exit {CHECKPOINT_EXIT} after the epoch in which this much time has passed (HTCondor)"


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


def to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device, channels_last: bool):
    """Normalise once and move the whole split to the device."""
    x = images.to(device=device, non_blocking=True).unsqueeze(1).float().div_(255.0)
    x = x.sub_(MNIST_MEAN).div_(MNIST_STD)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, labels.to(device=device, dtype=torch.long, non_blocking=True)


# Each recipe: the optimiser and its schedule, and the defaults of the options below. "fast":
# AdamW over one learning-rate cycle (warm-up, then cosine decay to ~0: Smith's super-convergence)
# peaking at 0.01, batch 256 and label smoothing: the lesson's final accuracy in a fraction of its time.
RECIPES = {
    "fast": {"batch_size": 256, "epochs": 3, "lr": 1e-2, "label_smoothing": 0.1},
    "lesson": {"batch_size": 64, "epochs": 14, "lr": 1.0, "label_smoothing": 0.0},
}


def make_optimizer(model: nn.Module, args: argparse.Namespace, steps_per_epoch: int):
    """The recipe's optimiser and its learning-rate schedule, stepped after every batch."""
    if args.recipe == "lesson":
        optimizer = torch.optim.Adadelta(model.parameters(), lr=args.lr)
        # The lesson's StepLR(step_size=1) per epoch, counted in batches.
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, steps_per_epoch, gamma=args.gamma)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.epochs * steps_per_epoch)
    return optimizer, schedule


def loss_function(output: torch.Tensor, target: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    # The model returns log-probabilities; cross_entropy's log_softmax leaves them unchanged.
    return F.cross_entropy(output, target, label_smoothing=args.label_smoothing)


def train_epoch(model, optimizer, scheduler, x, y, args, autocast, stopping=()) -> float | None:
    """One pass over a device-side permutation; returns the mean training loss.

    ``stopping`` (SIGTERM's flag list) is looked at before every step; once it holds a signal
    the epoch is abandoned and None returned (the model, part-way through, must not be saved).
    """
    model.train()
    order = torch.randperm(x.shape[0], device=x.device)
    loss_sum = torch.zeros((), device=x.device)
    seen = 0
    for start in range(0, x.shape[0], args.batch_size):
        if stopping:
            return None
        index = order[start : start + args.batch_size]
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_function(model(x[index]), y[index], args)
        loss.backward()
        optimizer.step()
        scheduler.step()
        # Accumulate on the device: a .item() per step would stall the GPU queue.
        loss_sum += loss.detach().float() * index.numel()
        seen += index.numel()
        if args.dry_run:
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


def train(args: argparse.Namespace, stopping: list, job_started: float) -> int:
    hardware.set_up(args.seed, args.threads, args.deterministic)
    device = hardware.pick_device(args.device)
    precision = hardware.choose_precision(args.amp, device)
    channels_last = hardware.choose_channels_last(args.channels_last, device, precision)
    t_load = time.perf_counter()
    train_x, train_y = to_device(*load_split(args.data_dir, "train"), device, channels_last)
    test_x, test_y = to_device(*load_split(args.data_dir, "test"), device, channels_last)
    hardware.synchronize(device)
    load_seconds = time.perf_counter() - t_load

    model = Net().to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    step_model = torch.compile(model) if (args.compile and device.type == "cuda") else model
    optimizer, scheduler = make_optimizer(model, args, steps_per_epoch=-(-train_x.shape[0] // args.batch_size))
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    run = TrainingRun(args, parts, device, stopping, job_started)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == torch.bfloat16)

    chosen = {"precision": str(precision)[6:], "memory_format": "channels_last" if channels_last else "contiguous"}
    print(
        f"device {device}, torch {torch.__version__}, {train_x.shape[0]} train / {test_x.shape[0]} test "
        f"images loaded in {load_seconds:.2f} s, {chosen['precision']}"
        f"{', channels_last' if channels_last else ''}, recipe {args.recipe}"
    )
    for epoch in run.epochs():
        hardware.synchronize(device)
        t0 = time.perf_counter()
        train_loss = train_epoch(step_model, optimizer, scheduler, train_x, train_y, args, autocast, stopping)
        if train_loss is None:  # SIGTERM mid-epoch: the last checkpoint stands
            break
        hardware.synchronize(device)
        train_seconds = time.perf_counter() - t0
        test_loss, accuracy = evaluate(step_model, test_x, test_y, args.test_batch_size, autocast)
        samples = args.batch_size if args.dry_run else train_x.shape[0]
        run.end_epoch(
            epoch=epoch,
            train_loss=train_loss,
            test_loss=test_loss,
            test_accuracy=accuracy,
            seconds=time.perf_counter() - t0,
            train_samples_per_second=samples / train_seconds,
        )
    if code := run.stop_code():
        return code
    if args.save_model:
        write_atomically(args.model, lambda out: torch.save(model.state_dict(), out))
        print(f"saved {args.model}")
    if args.metrics:
        write_metrics(args.metrics, args, run, device, chosen, load_seconds)
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="PyTorch MNIST example, fast.", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    by_recipe = {"default": argparse.SUPPRESS}  # set by --recipe below; the help says how

    def per_recipe(name: str) -> str:
        return "(default: " + ", ".join(f"{r[name]:g} with --recipe {n}" for n, r in RECIPES.items()) + ")"

    add("--data-dir", type=Path, default=Path("data"), help="directory holding MNIST's IDX files")
    add("--recipe", choices=tuple(RECIPES), default="fast", help="optimiser, schedule and defaults below")
    add("--batch-size", type=int, **by_recipe, help=f"input batch size for training {per_recipe('batch_size')}")
    add("--test-batch-size", type=int, default=1000, help="input batch size for testing")
    add("--epochs", type=int, **by_recipe, help=f"number of epochs to train {per_recipe('epochs')}")
    add("--lr", type=float, **by_recipe, help=f"learning rate, the peak of the fast one cycle {per_recipe('lr')}")
    add("--gamma", type=float, default=0.7, help="learning rate step gamma (--recipe lesson)")
    add("--label-smoothing", type=float, **by_recipe, help=f"of the loss {per_recipe('label_smoothing')}")
    add("--seed", type=int, default=1, help="random seed")
    add("--dry-run", action="store_true", help="quickly check a single pass")
    add("--save-model", action="store_true", help="save the trained model (to --model)")
    add("--model", type=Path, default=Path("mnist_cnn.pt"), help="where --save-model writes")
    add("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    switch = {"nargs": "?", "const": "on", "default": "auto", "choices": hardware.SWITCH}
    add("--amp", **switch, help="bfloat16 autocast; auto: on GPUs and CPUs with native bf16 (a bare --amp is on)")
    add("--compile", action="store_true", help="compile the model with torch.compile (CUDA only)")
    add("--channels-last", **switch, help="channels_last memory format; auto: on CUDA, and on CPUs when bf16 is used")
    add("--deterministic", action="store_true", help="deterministic algorithms, slower")
    add("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    add("--metrics", type=Path, default=None, help="write a JSON file of config and per-epoch results")
    add("--target-accuracy", type=float, default=None, help="stop once test accuracy reaches this fraction (e.g. 0.99)")
    add("--checkpoint", type=Path, default=None, help="save every epoch here and resume from it when it exists")
    add("--checkpoint-every", type=float, default=None, metavar="MINUTES", help=CHECKPOINT_EVERY_HELP)
    args = parser.parse_args(argv)
    for name, value in RECIPES[args.recipe].items():
        if not hasattr(args, name):
            setattr(args, name, value)
    for name in ("batch_size", "test_batch_size", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.target_accuracy is not None and not 0 < args.target_accuracy <= 1:
        parser.error(f"--target-accuracy is a fraction in (0, 1], e.g. 0.99, not {args.target_accuracy}")
    if args.checkpoint_every is not None and args.checkpoint is None:
        parser.error("--checkpoint-every needs --checkpoint PATH to save to")
    if args.checkpoint_every is not None and not args.checkpoint_every > 0:
        parser.error(f"--checkpoint-every must be a positive number of minutes, not {args.checkpoint_every}")
    return args


def main(argv=None) -> int:
    job_started = time.perf_counter()
    args = parse_args(argv)
    with sigterm_flag() as stopping:
        try:
            return train(args, stopping, job_started)
        except (DataError, CheckpointError, hardware.DeviceError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
