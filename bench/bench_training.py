"""Benchmark: what a user feels, the lesson's recipe against the template's defaults.

In one run, on the same data and the same model:
(a) lesson: the lesson's loop and recipe (a Dataset normalising one image at a time, a
    DataLoader of batch 64, Adadelta lr 1.0, StepLR 0.7, 14 epochs, `loss.item()` every 10
    batches, evaluation through a DataLoader);
(b) template: src/torch_MNIST.py's defaults (its recipe, precision and memory format chosen
    for the hardware, the whole split resident on the device), trained by its own functions;
(c) ceiling: forward, backward and optimiser step of the template's model and recipe on one
    resident batch, nothing else: the most samples/s this hardware gives that recipe.

Each loop is evaluated after every epoch; the time to the target test accuracy (--target, by
default the lesson recipe's final accuracy) counts its training and evaluation. Epochs
alternate between (a) and (b), and short blocks of (b)'s loop alternate with (c), so that
load from other processes on a shared machine falls on both alike.
The last three lines are the results:

    time-to-target ratio: R.RRx       (lesson's time / template's time)
    accuracy: lesson A, template B    (final test accuracies)
    ceiling fraction: F.FF            (template loop's samples/s / the ceiling's)

Data: real handwriting by default (scikit-learn's 8x8 digits upsampled to MNIST's 28x28, as
random rotated, scaled and shifted variants: --samples for training, --test-samples of held-out
digits for testing), or real MNIST with --mnist DIR.

    python bench/bench_training.py
    python bench/bench_training.py --mnist data --device cuda --target 0.99
    python bench/bench_training.py --samples 4000 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "template" / "src"))
import hardware  # noqa: E402  (the template's code, as every project gets it)
import torch_MNIST  # noqa: E402
from mnist_idx import load_split  # noqa: E402

LESSON_EPOCHS = 14


def random_affine(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each 28x28 uint8 image rotated (up to 12 degrees), scaled (0.9-1.1) and shifted (up to
    ~2 pixels) at random, in one batched call: new handwriting-like variants of an image."""
    n = images.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(12.0)
    scale = 0.9 + torch.rand(n, generator=generator) * 0.2
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * 0.12  # of the half-width
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    pixels = images.unsqueeze(1).float()
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    moved = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved.squeeze(1).clamp(0, 255).round().to(torch.uint8)


def digits_as_mnist(samples: int, test_samples: int, seed: int = 0):
    """sklearn's bundled handwriting (1,797 8x8 digits) as 28x28 uint8 images, MNIST-like.

    400 digits are held out for testing. Both splits are drawn as random affine variants of
    their digits, so that an epoch shows new images, as MNIST's 60,000 do, rather than the same
    1,397 again and again (which any recipe learns in an epoch or two, leaving nothing to time),
    and so that the test set is large enough (``test_samples``) for 0.1% of accuracy to mean
    something: 400 test images would move in steps of 0.25%.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    images = F.pad(F.interpolate(pixels, size=(20, 20), mode="bilinear", align_corners=False), (4, 4, 4, 4))
    images = (images.squeeze(1) * (255.0 / 16.0)).clamp(0, 255).round().to(torch.uint8)
    labels = torch.tensor(digits.target, dtype=torch.uint8)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    test_index, train_index = order[:400], order[400:]

    def variants(index: torch.Tensor, count: int):
        pick = index[torch.randint(len(index), (count,), generator=generator)]
        return random_affine(images[pick], generator), labels[pick]

    return variants(train_index, samples), variants(test_index, test_samples)


class PerSampleDataset(Dataset):
    """What torchvision's MNIST + ToTensor + Normalize do: one image at a time."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = self.images[index].float().div(255.0).unsqueeze(0)
        return (image - torch_MNIST.MNIST_MEAN) / torch_MNIST.MNIST_STD, int(self.labels[index])


class Lesson:
    """The lesson's loop and recipe (pytorch/examples mnist/main.py)."""

    def __init__(self, train, test, device):
        torch.manual_seed(1)
        self.device, self.model = device, torch_MNIST.Net().to(device)
        self.optimizer = torch.optim.Adadelta(self.model.parameters(), lr=1.0)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.7)
        self.train_loader = DataLoader(PerSampleDataset(*train), batch_size=64, shuffle=True)
        self.test_loader = DataLoader(PerSampleDataset(*test), batch_size=1000)
        self.epochs = LESSON_EPOCHS

    def epoch(self) -> float:
        self.model.train()
        for batch_idx, (data, target) in enumerate(self.train_loader):
            data, target = data.to(self.device), target.to(self.device)
            self.optimizer.zero_grad()
            loss = F.nll_loss(self.model(data), target)
            loss.backward()
            self.optimizer.step()
            if batch_idx % 10 == 0:
                loss.item()  # the lesson logs (and so synchronises) every 10 batches
        self.scheduler.step()
        self.model.eval()
        correct = 0
        with torch.no_grad():
            for data, target in self.test_loader:
                data, target = data.to(self.device), target.to(self.device)
                correct += self.model(data).argmax(dim=1).eq(target).sum().item()
        return correct / len(self.test_loader.dataset)


class Template:
    """src/torch_MNIST.py's defaults, run by the script's own functions."""

    def __init__(self, train, test, device, argv=()):
        self.args = torch_MNIST.parse_args(["--device", str(device), *argv])
        hardware.set_up(self.args.seed, self.args.threads, self.args.deterministic)
        precision = hardware.choose_precision(self.args.amp, device)
        self.channels_last = hardware.choose_channels_last(self.args.channels_last, device, precision)
        self.bf16 = precision == torch.bfloat16
        self.train_x, self.train_y = torch_MNIST.to_device(*train, device, self.channels_last)
        self.test_x, self.test_y = torch_MNIST.to_device(*test, device, self.channels_last)
        self.model, self.optimizer, self.scheduler = self.new_model(-(-len(self.train_y) // self.args.batch_size))
        self.epochs = self.args.epochs

    def new_model(self, steps_per_epoch: int):
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        model = torch_MNIST.Net().to(self.train_x.device, memory_format=memory_format)
        return model, *torch_MNIST.make_optimizer(model, self.args, steps_per_epoch)

    def autocast(self):
        return torch.autocast(self.train_x.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def epoch(self) -> float:
        parts = (self.model, self.optimizer, self.scheduler)
        torch_MNIST.train_epoch(*parts, self.train_x, self.train_y, self.args, self.autocast)
        return torch_MNIST.evaluate(self.model, self.test_x, self.test_y, self.args.test_batch_size, self.autocast)[1]


def timed(device, fn):
    hardware.synchronize(device)
    start = time.perf_counter()
    result = fn()
    hardware.synchronize(device)
    return time.perf_counter() - start, result


def race(lesson: Lesson, template: Template, device) -> dict:
    """Both recipes to their end, epochs alternating: each one's accuracy and elapsed seconds."""
    loops = (("lesson", lesson), ("template", template))
    results = {name: {"epochs": loop.epochs, "accuracy": [], "seconds": []} for name, loop in loops}
    for epoch in range(1, max(lesson.epochs, template.epochs) + 1):
        for name, loop in loops:
            row = results[name]
            if epoch > loop.epochs:
                continue
            seconds, accuracy = timed(device, loop.epoch)
            row["accuracy"].append(accuracy)
            row["seconds"].append(seconds + (row["seconds"][-1] if row["seconds"] else 0.0))
            print(f"{name:8} epoch {epoch:>2}: accuracy {accuracy:.4f}, {row['seconds'][-1]:7.1f} s", flush=True)
    return results


def time_to(row: dict, target: float) -> float | None:
    """Seconds until the first epoch whose test accuracy reached ``target``."""
    return next((s for a, s in zip(row["accuracy"], row["seconds"], strict=True) if a >= target), None)


def ceiling_fraction(template: Template, device, rounds: int, steps: int) -> dict:
    """The template loop's samples/s on ``steps`` batches against the ceiling's, in alternating
    blocks (loop, ceiling, ceiling, loop, ...) so that a change in load falls on both."""
    args, batch = template.args, template.args.batch_size
    x, y = template.train_x[: steps * batch], template.train_y[: steps * batch]
    model, optimizer, scheduler = template.new_model(steps * 2 * (rounds + 1))  # steps of the schedule
    resident_x, resident_y = x[:batch].clone(), y[:batch].clone()

    def loop():
        torch_MNIST.train_epoch(model, optimizer, scheduler, x, y, args, template.autocast)

    def ceiling():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with template.autocast():
                loss = torch_MNIST.loss_function(model(resident_x), resident_y, args)
            loss.backward()
            optimizer.step()
            scheduler.step()

    loop(), ceiling()  # kernels are built on first use: untimed
    seconds = {"loop": 0.0, "ceiling": 0.0}
    for index in range(rounds):
        order = (("loop", loop), ("ceiling", ceiling))
        for name, fn in order if index % 2 == 0 else order[::-1]:
            seconds[name] += timed(device, fn)[0]
    rate = {name: rounds * steps * batch / value for name, value in seconds.items()}
    return {"loop_samples_per_second": rate["loop"], "ceiling_samples_per_second": rate["ceiling"]}


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


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, help="directory with real MNIST IDX files (default: sklearn digits)")
    parser.add_argument("--samples", type=int, default=12000, help="training images from sklearn digits (12000)")
    parser.add_argument("--test-samples", type=int, default=2000, help="test images from sklearn digits (2000)")
    parser.add_argument(
        "--target", type=float, help="test accuracy to time each recipe to (default: the lesson recipe's final one)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (auto)")
    parser.add_argument("--template-args", default="", help="options for the template, e.g. '--batch-size 256'")
    parser.add_argument("--rounds", type=int, default=6, help="alternating blocks of the ceiling measurement (6)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    device = hardware.pick_device(args.device)
    hardware_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    if args.mnist:
        train, test = load_split(args.mnist, "train"), load_split(args.mnist, "test")
        source = f"MNIST from {args.mnist}"
    else:
        train, test = digits_as_mnist(args.samples, args.test_samples)
        source = f"sklearn digits as 28x28 variants ({args.samples} train, {args.test_samples} test)"
    lesson, template = Lesson(train, test, device), Template(train, test, device, args.template_args.split())
    print(f"{hardware_name}; device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {source}")
    print(f"template: {vars(template.args)}, bf16 {template.bf16}, channels_last {template.channels_last}")
    results = race(lesson, template, device)
    results["ceiling"] = ceiling_fraction(template, device, args.rounds, steps=4)
    results.update(hardware=hardware_name, device=str(device), torch=torch.__version__, data=source)
    return report(results, args)


def report(results: dict, args) -> int:
    lesson, template, ceiling = results["lesson"], results["template"], results["ceiling"]
    target = args.target or lesson["accuracy"][-1]
    fraction = ceiling["loop_samples_per_second"] / ceiling["ceiling_samples_per_second"]
    print(
        f"ceiling: {ceiling['ceiling_samples_per_second']:,.0f} samples/s, "
        f"template loop: {ceiling['loop_samples_per_second']:,.0f} samples/s"
    )
    for name, row in (("lesson", lesson), ("template", template)):
        row["target_seconds"] = time_to(row, target)
        when = f"{row['target_seconds']:.1f} s" if row["target_seconds"] else "never"
        print(f"{name}: {row['epochs']} epochs in {row['seconds'][-1]:.1f} s; accuracy {target:.4f} reached: {when}")
    reached = lesson["target_seconds"] and template["target_seconds"]
    ratio = lesson["target_seconds"] / template["target_seconds"] if reached else float("nan")
    results.update(target=target, ratio=ratio, ceiling_fraction=fraction)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"time-to-target ratio: {ratio:.2f}x")
    print(f"accuracy: lesson {lesson['accuracy'][-1]:.4f}, template {template['accuracy'][-1]:.4f}")
    print(f"ceiling fraction: {fraction:.2f}")
    return 0 if reached else 1


if __name__ == "__main__":
    sys.exit(main())
