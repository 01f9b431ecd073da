#!/usr/bin/env python
"""Plot loss and accuracy per epoch from the metrics files torch_MNIST.py writes (--metrics).

Several files overlay, each labelled by what differs in its config (a sweep: "lr=0.5"
against "lr=1.0"). Each job writes its metrics.json into its own results directory, so a
sweep's cluster 1234 (HTCondor) or job 5678 (SLURM) is plotted with:

    python src/plot_metrics.py htcondor/results/1234.*/metrics.json --output sweep.png
    python src/plot_metrics.py slurm/results/5678/metrics.json --output slurm.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

# Where a run wrote its metrics: differs between the runs of a sweep, yet says nothing about them.
NOT_SETTINGS = {"metrics"}
CURVES = ("train_loss", "test_loss", "test_accuracy")


class MetricsError(Exception):
    """An unusable metrics file; the message is one sentence."""


def load(path: Path) -> dict:
    """A metrics file, checked: a config table and at least one epoch with the plotted numbers."""
    try:
        metrics = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MetricsError(f"{path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MetricsError(f"{path} cannot be read ({getattr(error, 'strerror', None) or error}).") from None
    except ValueError as error:
        raise MetricsError(f"{path} is not JSON ({error}).") from None
    epochs = metrics.get("epochs") if isinstance(metrics, dict) else None
    if not isinstance(epochs, list) or not epochs:
        raise MetricsError(f"{path} holds no epochs; write it with `python src/torch_MNIST.py --metrics FILE`.")
    for number, epoch in enumerate(epochs, 1):
        if not isinstance(epoch, dict) or not all(_is_number(epoch.get(key)) for key in ("epoch", *CURVES)):
            raise MetricsError(f"{path}: epoch entry {number} lacks one of epoch, {', '.join(CURVES)}.")
    if not isinstance(metrics.get("config", {}), dict):
        raise MetricsError(f"{path}: config is not a table of settings.")
    return metrics


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def labels(runs: dict[Path, dict]) -> list[str]:
    """One label per run: the settings whose values differ between the runs, else the file name."""
    configs = [run.get("config", {}) for run in runs.values()]
    keys = sorted({key for config in configs for key in config} - NOT_SETTINGS)
    differing = [key for key in keys if len({json.dumps(c.get(key), sort_keys=True) for c in configs}) > 1]
    names = [", ".join(f"{key}={config.get(key)}" for key in differing) for config in configs]
    if not differing or len(set(names)) < len(names):  # alike settings: only the files tell them apart
        names = [f"{name} ({path.name})" if name else path.name for name, path in zip(names, runs, strict=True)]
    return names


def figure(runs: dict[Path, dict]):
    """The figure: losses (train dashed, test solid) and test accuracy against the epoch."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, accuracy_ax = fig.subplots(1, 2)
    for index, (label, metrics) in enumerate(zip(labels(runs), runs.values(), strict=True)):
        colour = f"C{index % 10}"
        epochs = [e["epoch"] for e in metrics["epochs"]]
        loss_ax.plot(epochs, [e["train_loss"] for e in metrics["epochs"]], "--", color=colour, label=f"{label} train")
        loss_ax.plot(epochs, [e["test_loss"] for e in metrics["epochs"]], "-o", color=colour, label=f"{label} test")
        accuracy = [100 * e["test_accuracy"] for e in metrics["epochs"]]
        accuracy_ax.plot(epochs, accuracy, "-o", color=colour, label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    accuracy_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy")
    for ax in (loss_ax, accuracy_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def save(fig, output: Path) -> None:
    """Write the figure under a temporary name and rename it: a plot is whole or absent."""
    kind = output.suffix.lstrip(".").lower()
    supported = fig.canvas.get_supported_filetypes()
    if kind not in supported:
        raise MetricsError(f"{output} must end in one of .{', .'.join(sorted(supported))}.")
    if not output.parent.is_dir():
        raise MetricsError(f"the directory of {output} does not exist.")
    handle, partial = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".part")
    os.close(handle)
    try:
        fig.savefig(partial, format=kind, dpi=100)
        os.chmod(partial, 0o666 & ~_umask())  # mkstemp's 0600 would hide the plot from the group
        os.replace(partial, output)
    finally:
        Path(partial).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", nargs="*", type=Path, help="metrics files (default: metrics.json)")
    parser.add_argument("--output", type=Path, default=Path("metrics.png"), help="image file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        runs = {path: load(path) for path in args.metrics or [Path("metrics.json")]}
        save(figure(runs), args.output)
    except MetricsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write {args.output} ({error.strerror or error}).", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
