"""The metrics plot: curves in the image, sweep labels, and bad input as one sentence."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest

import plot_metrics
import torch_MNIST
from conftest import QUICK, SRC


def write_metrics(path, lr=1.0, epochs=4, decay=0.5):
    history = [
        {
            "epoch": e,
            "train_loss": 2 * decay**e,
            "test_loss": 1.5 * decay**e,
            "test_accuracy": 1 - 0.5 * decay**e,
            "seconds": 1.0,
        }
        for e in range(1, epochs + 1)
    ]
    config = {"lr": lr, "epochs": epochs, "data_dir": "data", "metrics": str(path)}
    path.write_text(json.dumps({"config": config, "epochs": history}))
    return path


def run_cli(cwd, *args):
    """plot_metrics.py's command line, run in this process (importing matplotlib once is quick)."""
    out, err, previous = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = plot_metrics.main(list(args))
            except SystemExit as exit_:  # argparse's errors
                code = exit_.code
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["plot_metrics.py", *args], code, out.getvalue(), err.getvalue())


@pytest.mark.slow
def test_the_script_runs_as_a_command(tmp_path):
    metrics = write_metrics(tmp_path / "metrics.json")
    result = subprocess.run(
        [sys.executable, str(SRC / "plot_metrics.py"), str(metrics)], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0 and (tmp_path / "metrics.png").is_file(), result.stderr


def colour_pixels(png, colour: str) -> int:
    """How many pixels of the image are (nearly) the given line colour."""
    image = matplotlib.image.imread(png)[..., :3]
    target = np.array(matplotlib.colors.to_rgb(colour))
    return int((np.abs(image - target).max(axis=-1) < 0.08).sum())


@pytest.fixture(scope="module")
def one_run_png(tmp_path_factory):
    """One run's metrics (decay 0.5), drawn once for the tests that look at such an image."""
    directory = tmp_path_factory.mktemp("one-run")
    metrics = write_metrics(directory / "metrics.json")
    result = run_cli(directory, str(metrics), "--output", "one.png")
    assert result.returncode == 0, result.stderr
    return directory / "one.png"


def test_one_file_draws_curves_in_one_colour(one_run_png):
    assert colour_pixels(one_run_png, "C0") > 500  # two loss curves and the accuracy curve
    assert colour_pixels(one_run_png, "C1") == 0


def test_a_sweep_overlays_in_two_colours_labelled_by_the_difference(tmp_path):
    a = write_metrics(tmp_path / "metrics_1.json", lr=0.5, decay=0.8)
    b = write_metrics(tmp_path / "metrics_2.json", lr=1.0)
    result = run_cli(tmp_path, str(a), str(b), "--output", "sweep.png")
    assert result.returncode == 0, result.stderr
    assert colour_pixels(tmp_path / "sweep.png", "C0") > 500 and colour_pixels(tmp_path / "sweep.png", "C1") > 500
    runs = {a: plot_metrics.load(a), b: plot_metrics.load(b)}
    assert plot_metrics.labels(runs) == ["lr=0.5", "lr=1.0"]
    legend = [t.get_text() for t in plot_metrics.figure(runs).axes[1].get_legend().get_texts()]
    assert legend == ["lr=0.5", "lr=1.0"]


def test_different_runs_give_different_images(one_run_png, tmp_path):
    fast = write_metrics(tmp_path / "fast.json", decay=0.2)  # one_run_png's run decays at 0.5
    assert run_cli(tmp_path, str(fast), "--output", "fast.png").returncode == 0
    assert not np.array_equal(matplotlib.image.imread(one_run_png), matplotlib.image.imread(tmp_path / "fast.png"))


def test_a_real_training_sweep_is_plotted(small_mnist, tmp_path):
    """Metrics as torch_MNIST.py writes them (--metrics), two learning rates."""
    files = []
    for lr in ("0.5", "1.0"):
        files.append(tmp_path / f"metrics_{lr}.json")
        argv = ["--data-dir", str(small_mnist), *QUICK, "--epochs", "2", "--dry-run", "--lr", lr]
        assert torch_MNIST.main([*argv, "--metrics", str(files[-1])]) == 0
    result = run_cli(tmp_path, *map(str, files), "--output", "sweep.png")
    assert result.returncode == 0, result.stderr
    assert colour_pixels(tmp_path / "sweep.png", "C0") > 300 and colour_pixels(tmp_path / "sweep.png", "C1") > 300
    assert plot_metrics.labels({f: plot_metrics.load(f) for f in files}) == ["lr=0.5", "lr=1.0"]


def test_alike_configs_are_labelled_by_file(tmp_path):
    a = write_metrics(tmp_path / "run_a.json")
    b = write_metrics(tmp_path / "run_b.json")
    assert plot_metrics.labels({a: plot_metrics.load(a), b: plot_metrics.load(b)}) == ["run_a.json", "run_b.json"]


def test_default_input_is_the_training_metrics(tmp_path):
    write_metrics(tmp_path / "metrics.json")
    result = run_cli(tmp_path)
    assert result.returncode == 0, result.stderr
    assert colour_pixels(tmp_path / "metrics.png", "C0") > 500


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("epoch 1: loss 0.3", "is not JSON"),
        (json.dumps({"config": {}, "epochs": []}), "holds no epochs"),
        (json.dumps([1, 2]), "holds no epochs"),
        (json.dumps({"epochs": [{"epoch": 1, "train_loss": "high"}]}), "epoch entry 1 lacks"),
    ],
    ids=["missing", "not-json", "no-epochs", "not-a-table", "bad-epoch"],
)
def test_bad_input_is_one_sentence_and_writes_nothing(tmp_path, content, message):
    good = write_metrics(tmp_path / "good.json")
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    result = run_cli(tmp_path, str(good), str(bad), "--output", "out.png")
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["good.json"] + (["bad.json"] if content else []))


@pytest.mark.parametrize(("output", "message"), [("plot.xyz", "must end in one of"), ("nowhere/p.png", "directory")])
def test_bad_output_is_one_sentence(tmp_path, output, message):
    metrics = write_metrics(tmp_path / "metrics.json")
    result = run_cli(tmp_path, str(metrics), "--output", output)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
