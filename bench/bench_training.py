"""Benchmark: the lesson's MNIST training loop against the template's, same model, same data.

(a) lesson: a Dataset of per-sample tensors normalised one image at a time, a DataLoader
    (batch 64, shuffled), `loss.item()` every 10 batches, evaluation through a DataLoader.
(b) template: src/torch_MNIST.py's loop with the script's own defaults (no flags: bf16 and
    channels_last chosen for the hardware), the whole split resident on the device.

Prints the CPU/GPU, training samples/s for each, the ratio (below 1x is reported as a
failure: the defaults must never lose to the lesson), and the test accuracy of each.
Data: real handwriting by default (scikit-learn's 8x8 digits upsampled to MNIST's 28x28,
with random shifts to reach --samples images), or real MNIST with --mnist DIR, which
also times torch_MNIST.py's defaults to --target test accuracy (0.99).

    python bench/bench_training.py
    python bench/bench_training.py --mnist data --epochs 1 --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "template" / "src"))
import torch_MNIST  # noqa: E402  (the template's training code, as every project gets it)


def digits_as_mnist(samples: int, seed: int = 0):
    """sklearn's bundled handwriting as 28x28 uint8 images, shifted copies up to ``samples``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    images = F.pad(F.interpolate(pixels, size=(20, 20), mode="bilinear", align_corners=False), (4, 4, 4, 4))
    images = (images.squeeze(1) * (255.0 / 16.0)).clamp(0, 255).round().to(torch.uint8)
    labels = torch.tensor(digits.target, dtype=torch.uint8)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    test_index, train_index = order[:400], order[400:]
    reps = -(-samples // len(train_index))
    train_images = images[train_index].repeat(reps, 1, 1)[:samples]
    shifts = torch.randint(-2, 3, (samples, 2), generator=generator)
    for i, (dy, dx) in enumerate(shifts.tolist()):  # augmentation, done once up front
        train_images[i] = torch.roll(train_images[i], shifts=(dy, dx), dims=(0, 1))
    train_labels = labels[train_index].repeat(reps)[:samples]
    return (train_images, train_labels), (images[test_index], labels[test_index])


class PerSampleDataset(Dataset):
    """What torchvision's MNIST + ToTensor + Normalize do: one image at a time."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = self.images[index].float().div(255.0).unsqueeze(0)
        return (image - torch_MNIST.MNIST_MEAN) / torch_MNIST.MNIST_STD, int(self.labels[index])


def lesson_epoch(model, optimizer, loader, device):
    model.train()
    for batch_idx, (data, target) in enumerate(loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        if batch_idx % 10 == 0:
            loss.item()  # the lesson logs (and so synchronises) every 10 batches


def lesson_accuracy(model, loader, device):
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in loader:
            data, target = data.to(device), target.to(device)
            correct += model(data).argmax(dim=1).eq(target).sum().item()
    return correct / len(loader.dataset)


def timed(device, fn):
    torch_MNIST.synchronize(device)
    start = time.perf_counter()
    fn()
    torch_MNIST.synchronize(device)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, help="directory with real MNIST IDX files (default: sklearn digits)")
    parser.add_argument("--samples", type=int, default=12000, help="training images from sklearn digits (12000)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs for each loop (2)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (auto)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size of the template loop (64)")
    parser.add_argument("--amp", choices=torch_MNIST.SWITCH, help="template loop's --amp (its default)")
    parser.add_argument("--channels-last", choices=torch_MNIST.SWITCH, help="template loop's --channels-last")
    parser.add_argument("--target", type=float, default=0.99, help="with --mnist: time to this test accuracy (0.99)")
    parser.add_argument("--max-epochs", type=int, default=14, help="with --mnist: give up on --target after (14)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch_MNIST.pick_device(args.device)
    defaults = torch_MNIST.parse_args([])  # the script's defaults: one place for them
    amp_request = args.amp or defaults.amp
    channels_last_request = args.channels_last or defaults.channels_last
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()

    if args.mnist:
        train = torch_MNIST.load_split(args.mnist, "train")
        test = torch_MNIST.load_split(args.mnist, "test")
        source = f"MNIST from {args.mnist}"
    else:
        train, test = digits_as_mnist(args.samples)
        source = f"sklearn digits as 28x28 ({args.samples} train, {len(test[1])} test)"
    n_train = len(train[1])

    # (a) the lesson's loop
    torch.manual_seed(1)
    lesson_model = torch_MNIST.Net().to(device)
    lesson_optimizer = torch.optim.Adadelta(lesson_model.parameters(), lr=1.0)
    lesson_scheduler = torch.optim.lr_scheduler.StepLR(lesson_optimizer, step_size=1, gamma=0.7)
    train_loader = DataLoader(PerSampleDataset(*train), batch_size=64, shuffle=True)
    test_loader = DataLoader(PerSampleDataset(*test), batch_size=1000)

    # (b) the template's loop
    torch.manual_seed(1)
    precision = torch_MNIST.choose_precision(amp_request, device)
    channels_last = torch_MNIST.choose_channels_last(channels_last_request, device, precision)
    amp = precision == torch.bfloat16
    t0 = time.perf_counter()
    train_x, train_y = torch_MNIST.to_device(*train, device, channels_last)
    test_x, test_y = torch_MNIST.to_device(*test, device, channels_last)
    torch_MNIST.synchronize(device)
    load_seconds = time.perf_counter() - t0
    model = torch_MNIST.Net().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    # Kernels are built on first use (oneDNN's bf16 ones take seconds): a few untimed steps
    # of each loop on throwaway models, so that small data sets measure the loops alone.
    warm = slice(0, 5 * 64)
    spare = torch_MNIST.Net().to(device)
    lesson_epoch(
        spare,
        torch.optim.Adadelta(spare.parameters()),
        DataLoader(PerSampleDataset(train[0][warm], train[1][warm]), batch_size=64),
        device,
    )
    spare = torch_MNIST.Net().to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    torch_MNIST.train_epoch(
        spare, torch.optim.Adadelta(spare.parameters()), train_x[warm], train_y[warm], args.batch_size, autocast
    )

    # Epochs alternate between the loops, so that load from other processes on a shared
    # machine falls on both alike.
    lesson_seconds = new_seconds = 0.0
    for _ in range(args.epochs):
        lesson_seconds += timed(device, lambda: lesson_epoch(lesson_model, lesson_optimizer, train_loader, device))
        lesson_scheduler.step()
        new_seconds += timed(
            device, lambda: torch_MNIST.train_epoch(model, optimizer, train_x, train_y, args.batch_size, autocast)
        )
        scheduler.step()
    lesson_acc = lesson_accuracy(lesson_model, test_loader, device)
    _, new_acc = torch_MNIST.evaluate(model, test_x, test_y, 1000, autocast)

    lesson_rate = args.epochs * n_train / lesson_seconds
    new_rate = args.epochs * n_train / new_seconds
    results = {
        "device": str(device),
        "hardware": hardware,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "data": source,
        "epochs": args.epochs,
        "lesson": {"batch_size": 64, "samples_per_second": lesson_rate, "test_accuracy": lesson_acc},
        "template": {
            "batch_size": args.batch_size,
            "amp": amp_request,
            "channels_last_request": channels_last_request,
            "bf16_autocast": amp,
            "channels_last": channels_last,
            "samples_per_second": new_rate,
            "test_accuracy": new_acc,
            "load_seconds": load_seconds,
        },
        "ratio": new_rate / lesson_rate,
    }
    print(f"{hardware}; device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {source}")
    print(f"lesson loop   (DataLoader, batch 64):          {lesson_rate:9,.0f} samples/s, accuracy {lesson_acc:.4f}")
    print(
        f"template loop (on-device, batch {args.batch_size}, bf16={amp}, channels_last={channels_last}): "
        f"{new_rate:9,.0f} samples/s, accuracy {new_acc:.4f}"
    )
    print(f"ratio: {results['ratio']:.2f}x")
    if args.mnist:
        results["time_to_target"] = time_to_target(args, device)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if results["ratio"] < 1 and not (args.amp or args.channels_last):
        print(f"FAIL: with its defaults the template loop is {results['ratio']:.2f}x the lesson's.", file=sys.stderr)
        return 1
    return 0


def cpu_name() -> str:
    """The CPU's model name (as lscpu prints it), or what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_to_target(args, device) -> dict:
    """torch_MNIST.py as a user runs it (defaults, --target-accuracy) on real MNIST."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "metrics.json"
        argv = ["--data-dir", str(args.mnist), "--device", str(device), "--metrics", str(metrics)]
        argv += ["--epochs", str(args.max_epochs), "--target-accuracy", str(args.target)]
        if torch_MNIST.main(argv) != 0:
            raise SystemExit(f"torch_MNIST.py failed on {args.mnist}")
        report = json.loads(metrics.read_text())
    target = report["target"]
    if target["epoch"] is None:
        print(f"time to {100 * args.target:.1f}% accuracy: not reached in {args.max_epochs} epochs")
    else:
        print(f"time to {100 * args.target:.1f}% accuracy: {target['seconds']:.1f} s (epoch {target['epoch']})")
    return {**target, "precision": report["config"]["precision"], "memory_format": report["config"]["memory_format"]}


if __name__ == "__main__":
    sys.exit(main())
