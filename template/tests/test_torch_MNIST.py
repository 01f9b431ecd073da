"""The training script: IDX reading, errors, a CPU smoke run and real learning."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import mnist_idx
import torch_MNIST
from conftest import SRC, TINY_RUN, tiny_mnist, write_idx, write_mnist


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_idx_round_trip(tmp_path, compress):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 28, 28), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 10, (20,), generator=generator, dtype=torch.uint8)
    image_path = write_idx(tmp_path / "images-idx3-ubyte", images, compress)
    label_path = write_idx(tmp_path / "labels-idx1-ubyte", labels, compress)
    assert torch.equal(mnist_idx.read_idx(image_path), images)
    assert torch.equal(mnist_idx.read_idx(label_path), labels)


def test_truncated_file_is_reported(tmp_path):
    path = write_idx(tmp_path / "x-idx3-ubyte", torch.zeros(4, 28, 28))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(mnist_idx.DataError, match="truncated or corrupt"):
        mnist_idx.read_idx(path)


def test_bad_magic_is_reported(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x03" + bytes(20))  # 0x0d: float data, not MNIST
    with pytest.raises(mnist_idx.DataError, match="not an unsigned-byte IDX file"):
        mnist_idx.read_idx(path)


def test_short_and_damaged_files_are_reported(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00")
    with pytest.raises(mnist_idx.DataError, match="too short"):
        mnist_idx.read_idx(short)
    damaged = tmp_path / "damaged.gz"
    damaged.write_bytes(b"\x1f\x8b" + bytes(30))
    with pytest.raises(mnist_idx.DataError, match="damaged gzip"):
        mnist_idx.read_idx(damaged)


def test_label_count_must_match(tmp_path):
    tiny_mnist(tmp_path, train=10, test=10)
    write_idx(tmp_path / "train-labels-idx1-ubyte", torch.zeros(9))
    with pytest.raises(mnist_idx.DataError, match="10 images but labels"):
        mnist_idx.load_split(tmp_path, "train")


def test_corrupt_data_exits_with_one_sentence(tmp_path, capsys):
    tiny_mnist(tmp_path, train=10, test=10)
    broken = tmp_path / "train-images-idx3-ubyte"
    broken.write_bytes(broken.read_bytes()[:100])
    assert torch_MNIST.main(["--data-dir", str(tmp_path), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "truncated or corrupt" in err and err.count("\n") == 1


def test_missing_data_names_the_fix(tmp_path, capsys):
    assert torch_MNIST.main(["--data-dir", str(tmp_path)]) == 2
    assert "fetch-data" in capsys.readouterr().err


def test_help_states_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        torch_MNIST.parse_args(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    flags = ("--data-dir", "--epochs", "--batch-size", "--lr", "--gamma", "--save-model", "--metrics", "--amp")
    for flag in (*flags, "--channels-last", "--target-accuracy", "--checkpoint", "--checkpoint-every", "--recipe"):
        assert flag in out
    out = " ".join(out.split())  # argparse wraps lines
    assert "(default: fast)" in out and "(default: ==SUPPRESS==)" not in out
    assert "(default: 3 with --recipe fast, 14 with --recipe lesson)" in out
    assert "(default: 256 with --recipe fast, 64 with --recipe lesson)" in out
    assert "(default: auto)" in out  # --amp and --channels-last: chosen per hardware


@pytest.mark.slow
def test_the_script_runs_as_a_command(tmp_path):
    """The in-process tests call main(); this one runs the file as `pixi run train` does."""
    result = subprocess.run(
        [sys.executable, str(SRC / "torch_MNIST.py"), "--data-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "fetch-data" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_tiny_cpu_run_learns_and_saves_the_model(tiny_run):
    """The shared tiny run (conftest.TINY_RUN): whole epochs on made-up digits, as `pixi run demo`."""
    assert "--save-model" in TINY_RUN and "--dry-run" not in TINY_RUN
    state = torch.load(tiny_run / "mnist_cnn.pt", weights_only=True)
    assert state["fc2.weight"].shape == (10, 128)
    report = json.loads((tiny_run / "metrics.json").read_text())
    assert report["device"] == "cpu" and report["torch_version"] == torch.__version__
    assert report["config"]["epochs"] == 2 and len(report["epochs"]) == 2
    assert all(e["train_samples_per_second"] > 0 for e in report["epochs"])
    # The made-up digits are easy: two epochs learn them, far above chance (10%).
    assert report["epochs"][-1]["train_loss"] < report["epochs"][0]["train_loss"]
    assert report["final_test_accuracy"] >= 0.5
    model = torch_MNIST.Net()
    model.load_state_dict(state)  # the saved model is the lesson's network


@pytest.mark.slow  # the longest training of the suite; the quick tests train on tiny synthetic digits
def test_learns_real_handwriting(tmp_path, monkeypatch):
    """scikit-learn's bundled 8x8 digits, upsampled to 28x28, must reach 95% accuracy."""
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn is not installed")
    digits = datasets.load_digits()
    pixels = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)  # values 0..16
    images = F.interpolate(pixels, size=(20, 20), mode="bilinear", align_corners=False)
    images = F.pad(images, (4, 4, 4, 4)).squeeze(1)  # MNIST centres digits in a 20x20 box
    images = (images * (255.0 / 16.0)).clamp(0, 255).round().to(torch.uint8)
    labels = torch.tensor(digits.target, dtype=torch.uint8)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    train, test = order[:1500], order[1500:]
    write_mnist(
        tmp_path, {"train": images[train], "test": images[test]}, {"train": labels[train], "test": labels[test]}
    )
    metrics = tmp_path / "metrics.json"
    monkeypatch.chdir(tmp_path)
    assert (
        torch_MNIST.main(["--data-dir", str(tmp_path), "--epochs", "4", "--device", "cpu", "--metrics", str(metrics)])
        == 0
    )
    accuracy = json.loads(metrics.read_text())["final_test_accuracy"]
    assert accuracy >= 0.95, f"test accuracy {accuracy:.3f} on sklearn digits is below 0.95"


def test_the_default_recipe_is_short_and_the_lesson_is_one_flag_away():
    fast = torch_MNIST.parse_args([])
    assert (fast.recipe, fast.epochs, fast.batch_size, fast.lr, fast.label_smoothing) == ("fast", 3, 256, 1e-2, 0.1)
    lesson = torch_MNIST.parse_args(["--recipe", "lesson"])
    assert (lesson.epochs, lesson.batch_size, lesson.lr, lesson.gamma, lesson.label_smoothing) == (14, 64, 1.0, 0.7, 0)
    mine = torch_MNIST.parse_args(["--recipe", "lesson", "--epochs", "2", "--lr", "0.5"])
    assert (mine.epochs, mine.lr, mine.batch_size) == (2, 0.5, 64)  # a flag given wins over the recipe


def learning_rates(argv, steps_per_epoch=10):
    """The learning rate before each step of a run, as the recipe's schedule sets it."""
    args = torch_MNIST.parse_args(argv)
    optimizer, scheduler = torch_MNIST.make_optimizer(torch_MNIST.Net(), args, steps_per_epoch)
    rates = []
    for _ in range(args.epochs * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return optimizer, rates


def test_the_lesson_recipe_is_adadelta_with_a_step_per_epoch():
    optimizer, rates = learning_rates(["--recipe", "lesson", "--epochs", "3"])
    assert isinstance(optimizer, torch.optim.Adadelta)
    assert rates[0] == rates[9] == 1.0 and rates[10] == pytest.approx(0.7) and rates[29] == pytest.approx(0.49)


def test_the_fast_recipe_is_one_cycle_of_adamw():
    optimizer, rates = learning_rates([])
    assert isinstance(optimizer, torch.optim.AdamW)
    peak = max(rates)
    assert peak == pytest.approx(1e-2) and rates[0] < peak / 10 and rates[-1] < peak / 1000
    assert 0 < rates.index(peak) < len(rates) / 2  # warm up, then a long decay
