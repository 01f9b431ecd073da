"""What HTCondor and SLURM sweeps share: the sweep record, the results table and its CSV.

A sweep record (results/SWEEP.sweep.json, written at submission) keeps each job's arguments
and how it was submitted, so that a rerun resubmits exactly the failed jobs, with their own
arguments, and their results land where the first run's would have.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from invoke import Exit

from .helpers import LOCK, ROOT, git, lock_digest

# Provenance facts each job writes into metrics.json (src/provenance.py), as table columns.
PROVENANCE = ("commit", "pixi_lock_sha256", "image", "data_sha256", "gpu", "driver")
COLUMNS = ("job", "arguments", "final_test_accuracy", "epochs", "train_seconds", "state", "results", *PROVENANCE)


@dataclass
class Row:
    job: str
    arguments: str
    results: Path
    state: str = "missing"
    metrics: dict = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return bool(self.metrics)

    def values(self) -> dict:
        provenance = self.metrics.get("provenance") or {}
        accuracy = self.metrics.get("final_test_accuracy")
        seconds = self.metrics.get("train_seconds")
        return {
            "job": self.job,
            "arguments": self.arguments,
            "final_test_accuracy": "" if accuracy is None else f"{accuracy:.4f}",
            "epochs": len(self.metrics.get("epochs", [])) if self.metrics else "",
            "train_seconds": "" if seconds is None else f"{seconds:.1f}",
            "state": self.state,
            "results": str(self.results.relative_to(ROOT)) if self.results.is_relative_to(ROOT) else str(self.results),
            **{key: provenance.get(key) or "" for key in PROVENANCE},
        }


def provenance_facts() -> dict[str, str]:
    """What only the submitting side knows, passed to each job (src/provenance.py reads it)."""
    return {"commit": git("rev-parse", "HEAD") or "", "lock_sha256": lock_digest() if LOCK.is_file() else ""}


def provenance_attributes() -> list[tuple[str, str]]:
    """The facts as job ClassAd attributes (`MY.X = "..."` submit commands; the job reads its ad)."""
    facts = provenance_facts()
    names = (("ProvenanceCommit", "commit"), ("ProvenanceLockSha256", "lock_sha256"))
    return [(f"MY.{name}", f'"{facts[key]}"') for name, key in names if facts[key]]


def job_row(name: str, arguments: str, directory: Path, now_as: str, state: str) -> Row:
    """A job's row: done where its metrics came back, else its state (and the rerun standing for it)."""
    row = Row(name, arguments, directory, metrics=read_metrics(directory))
    row.state = "done" if row.metrics else state + (f" (rerun as {now_as})" if now_as != name else "")
    return row


def print_states(rows: list[Row], word: str) -> None:
    """The status tasks: one line per job, its state and, when held or failed, the reason."""
    for row in rows:
        print(f"{word} {row.job} [{row.arguments}]: {row.state}")


def read_metrics(directory: Path) -> dict:
    """A job's metrics.json, or {} where it is absent or unreadable (a job still writing it)."""
    try:
        return json.loads((directory / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def record_path(results: Path, sweep: str) -> Path:
    return results / f"{sweep}.sweep.json"


def write_record(results: Path, sweep: str, record: dict) -> None:
    results.mkdir(parents=True, exist_ok=True)
    path = record_path(results, sweep)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    partial.replace(path)  # never a half-written record


def read_record(results: Path, sweep: str) -> dict:
    path = record_path(results, sweep)
    if not path.is_file():
        raise Exit(f"{path.relative_to(ROOT)} does not exist: sweep {sweep} was not submitted from this project.")
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise Exit(f"{path.relative_to(ROOT)} is not valid JSON; restore it from your backup or resubmit.") from None


def short(value: str, key: str) -> str:
    """Digests and commits shortened for the screen (the CSV keeps them whole)."""
    return value[:12] if key in {"commit", "pixi_lock_sha256", "data_sha256"} else value


def print_table(rows: list[Row], csv_path: Path) -> None:
    """One row per job on the screen, the same table in full as CSV; say which facts differ."""
    table = [row.values() for row in rows]
    shown = [c for c in COLUMNS if c in COLUMNS[:7] or any(r[c] for r in table)]
    cells = [[short(str(r[c]), c) for c in shown] for r in table]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(shown)]
    print("  ".join(c.ljust(w) for c, w in zip(shown, widths, strict=True)).rstrip())
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    differing = [key for key in PROVENANCE if len({r[key] for r in table if r["state"] == "done"}) > 1]
    if differing:
        print(f"note: these jobs differ in more than their arguments: {', '.join(differing)}")
    partial = csv_path.with_suffix(".partial")
    with partial.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    partial.replace(csv_path)
    done = sum(row.done for row in rows)
    print(f"{done} of {len(rows)} job(s) have results; the table is in {csv_path.relative_to(ROOT)}")
