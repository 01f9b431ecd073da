"""Checkpoints that survive eviction and preemption, resume, and SIGTERM handling.

With ``--checkpoint PATH`` every finished epoch is saved atomically and a run that finds PATH
resumes after its epoch. SIGTERM (SLURM's --signal, HTCondor's eviction, docker stop) only
raises a flag: the current step finishes, the epoch is abandoned and the last checkpoint
stands; the run then exits 85, as does ``--checkpoint-every`` once its time has passed.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
from pathlib import Path

import torch

from atomic_file import write_atomically
from metrics import config_of, target_reached

# HTCondor's convention (checkpoint_exit_code = 85); the SLURM script requeues on it too.
CHECKPOINT_EXIT = 85
# Options that must match for a checkpoint to be resumed: they change what an epoch computes.
RESUME_MUST_MATCH = ("recipe", "batch_size", "lr", "gamma", "label_smoothing", "seed")
CHECKPOINT_KEYS = frozenset({"config", "epoch", "model", "optimizer", "scheduler", "rng", "history", "elapsed_seconds"})


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed here; the message is one sentence."""


@contextlib.contextmanager
def sigterm_flag():
    """A list that SIGTERM appends its signal number to, instead of ending the process."""
    stopping: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    try:
        yield stopping
    finally:
        signal.signal(signal.SIGTERM, previous)


def save_checkpoint(path: Path, state: dict) -> None:
    write_atomically(path, lambda out: torch.save(state, out))


def load_checkpoint(path: Path, config: dict, must_match: tuple, device: torch.device) -> dict:
    """Read a checkpoint written by ``save_checkpoint`` and check it fits this run's ``config``."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        missing = CHECKPOINT_KEYS - set(state)
        if missing:
            raise KeyError(", ".join(sorted(missing)))
        saved = state["config"]
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        kind = type(error).__name__
        raise CheckpointError(f"{path} is not a checkpoint of this script ({kind}); move it away.") from None
    for name in must_match:
        if saved.get(name) != config[name]:
            option = "--" + name.replace("_", "-")
            raise CheckpointError(
                f"{path} was written with {option} {saved.get(name)}, not {config[name]}; "
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


class TrainingRun:
    """The epochs of one training across the jobs a preempted run takes: resumes from the
    checkpoint, saves one after each epoch, and ends early for SIGTERM, the target accuracy
    or ``--checkpoint-every``."""

    def __init__(self, args, parts: dict, device: torch.device, stopping: list, job_started: float) -> None:
        self.args, self.parts, self.stopping, self.job_started = args, parts, stopping, job_started
        self.history: list[dict] = []
        self.resumed_from, self.elapsed_before, self.exit_code = None, 0.0, 0
        self.started = time.perf_counter()
        if args.checkpoint and args.checkpoint.exists():
            # A schedule over the whole run (one cycle) would bend if --epochs changed.
            spans_run = hasattr(parts.get("scheduler"), "total_steps")
            must_match = (*RESUME_MUST_MATCH, "epochs") if spans_run else RESUME_MUST_MATCH
            state = load_checkpoint(args.checkpoint, config_of(args), must_match, device)
            for name, part in parts.items():
                part.load_state_dict(state[name])
            restore_rng(state["rng"])
            self.history, self.resumed_from = state["history"], state["epoch"]
            self.elapsed_before = state["elapsed_seconds"]
            print(f"resumed from epoch {self.resumed_from}", flush=True)

    def elapsed(self) -> float:
        """Training time over all jobs of this run."""
        return self.elapsed_before + time.perf_counter() - self.started

    def target(self) -> dict:
        return target_reached(self.history, self.args.target_accuracy)

    def save(self) -> None:
        if self.args.checkpoint:
            state = {name: part.state_dict() for name, part in self.parts.items()}
            state.update(config=config_of(self.args), epoch=len(self.history), rng=rng_states())
            save_checkpoint(self.args.checkpoint, {**state, "history": self.history, "elapsed_seconds": self.elapsed()})

    def epochs(self):
        """The epochs still to train; the loop body calls ``end_epoch`` after each."""
        self.started = time.perf_counter()
        if self.resumed_from is None:
            self.save()  # so that a stop during the first epoch still leaves a checkpoint
        for epoch in range(len(self.history) + 1, self.args.epochs + 1):
            if self.stopping or self.target()["epoch"]:
                return
            yield epoch
            done = epoch == self.args.epochs or self.target()["epoch"] is not None
            every = self.args.checkpoint_every
            if not done and every and time.perf_counter() - self.job_started >= 60 * every:
                print(f"{every:g} min passed: checkpointed, exiting {CHECKPOINT_EXIT}", flush=True)
                self.exit_code = CHECKPOINT_EXIT
                return

    def end_epoch(self, **row) -> None:
        """Record an epoch's results, report them and save the checkpoint."""
        self.history.append({**row, "elapsed_seconds": self.elapsed()})
        print(
            f"epoch {row['epoch']:>2}: train loss {row['train_loss']:.4f}, test loss {row['test_loss']:.4f}, "
            f"accuracy {100 * row['test_accuracy']:.2f}%, {row['seconds']:.2f} s "
            f"({row['train_samples_per_second']:,.0f} samples/s)",
            flush=True,
        )
        if self.target()["epoch"] == row["epoch"]:
            print(f"target accuracy {100 * self.args.target_accuracy:.2f}% reached in epoch {row['epoch']}", flush=True)
        self.save()

    def stop_code(self) -> int:
        """0 when training is complete, else the exit code that says why it stopped."""
        if self.exit_code or not self.stopping:
            return self.exit_code
        signum, epochs = self.stopping[0], len(self.history)
        if not self.args.checkpoint:
            print(f"stopped by signal {signum} after {epochs} epochs (no --checkpoint)", flush=True)
            return 128 + signum
        print(f"stopped by signal {signum}: checkpoint holds epoch {epochs}, exiting {CHECKPOINT_EXIT}", flush=True)
        return CHECKPOINT_EXIT
