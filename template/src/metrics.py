"""The metrics file of a run (--metrics): its configuration, every epoch's results, when the
target accuracy was reached; written whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import provenance
from atomic_file import write_text_atomically


def config_of(args) -> dict:
    """The run's options as JSON values."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def target_reached(history: list, accuracy: float | None) -> dict:
    """The first epoch (and seconds since training start) whose test accuracy reached ``accuracy``."""
    for row in history if accuracy is not None else ():
        if row["test_accuracy"] >= accuracy:
            return {"accuracy": accuracy, "epoch": row["epoch"], "seconds": row["elapsed_seconds"]}
    return {"accuracy": accuracy, "epoch": None, "seconds": None}


def write_metrics(path: Path, args, run, device: torch.device, chosen: dict, load_seconds: float) -> None:
    """``chosen``: what the run decided for this hardware (precision, memory format)."""
    history = run.history
    metrics = {
        "config": {**config_of(args), **chosen},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch_version": torch.__version__,
        "load_seconds": load_seconds,
        "train_seconds": run.elapsed(),
        "resumed_from_epoch": run.resumed_from,
        "target": target_reached(history, args.target_accuracy) if args.target_accuracy else None,
        "epochs": history,
        "final_test_accuracy": history[-1]["test_accuracy"] if history else None,
        "provenance": provenance.collect(),
    }
    write_text_atomically(path, json.dumps(metrics, indent=2) + "\n")
