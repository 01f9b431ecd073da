"""The shape of the code a researcher reads first."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAINING = ROOT / "template" / "src" / "torch_MNIST.py"


def test_the_training_script_reads_like_the_lesson():
    """Model, data, one epoch, evaluation and a short main loop; machinery lives beside it."""
    text = TRAINING.read_text()
    assert len(text.splitlines()) <= 250, f"{TRAINING.name} has {len(text.splitlines())} lines; keep it at most 250"
    order = [text.index(name) for name in ("class Net", "def to_device", "def train_epoch", "def evaluate", "def main")]
    assert order == sorted(order), "the script should read: model, data, training epoch, evaluation, main"
