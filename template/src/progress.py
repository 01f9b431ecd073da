"""Progress of a long step (a download, an extraction, a copy, a checksum), as curl and pip show it.

On a terminal one line is redrawn in place (at most ten times a second), as pixi's and pip's
bars are. Anywhere else (a job's log, CI, a pipe) the line is printed whole, once per tenth
of the way and at most four times a second, so a log reads as a short list, like wget's
dotted progress. Progress goes to stderr, where the users' own tools write theirs, and
leaves stdout to the results.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

TERMINAL_INTERVAL_S = 0.1
LOG_INTERVAL_S = 0.25
BLOCK = 1 << 20  # what copies and checksums read at a time


def human_size(size: float) -> str:
    """1,023 B, 1.5 KiB, 11.6 MiB, 4.2 GiB: binary units, as pixi and docker print them."""
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:,.0f} B" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"


class Progress:
    """``what``: done of total (percent), speed; call ``update`` with the bytes so far, ``close`` at the end."""

    def __init__(self, what: str, total: int | None = None, stream: TextIO | None = None):
        self.what, self.total, self.done = what, total, 0
        self.stream = stream or sys.stderr
        self.terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = self.shown_at = time.monotonic()
        self.shown_tenth = -1
        self.closed = False
        self._show(force=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.close(error is None)

    def update(self, done: int, total: int | None = None) -> None:
        """Record ``done`` bytes (and a total that became known or grew); show it when it is time."""
        self.done = done
        self.total = total if total is not None else self.total
        self._show()

    def advance(self, amount: int) -> None:
        self.update(self.done + amount)

    def close(self, finished: bool = True) -> None:
        """The last line, with the whole amount and the time it took; a terminal's line is ended."""
        if self.closed:
            return
        self.closed = True
        if finished:
            self._show(force=True, last=True)
        elif self.terminal:
            self.stream.write("\n")
            self.stream.flush()

    def line(self, last: bool = False) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        amount = human_size(self.done)
        if self.total:
            amount = f"{amount} of {human_size(self.total)} ({min(100, 100 * self.done // self.total)}%)"
        rate = f", {human_size(self.done / elapsed)}/s" if self.done and elapsed >= 0.05 else ""
        took = f" in {elapsed:.1f} s" if last else ""
        return f"{self.what}: {amount}{rate}{took}"

    def _show(self, force: bool = False, last: bool = False) -> None:
        now = time.monotonic()
        tenth = 10 * self.done // self.total if self.total else int(now - self.started) // 5
        if self.terminal:
            due = now - self.shown_at >= TERMINAL_INTERVAL_S
        else:  # a new tenth of the way (every 5 s when the total is unknown), not too often
            due = tenth > self.shown_tenth and now - self.shown_at >= LOG_INTERVAL_S
            due = due and not (self.total and self.done >= self.total)  # close() says 100%, with the time
        if not (force or due):
            return
        self.shown_at, self.shown_tenth = now, tenth
        text = self.line(last)
        if self.terminal:
            width = shutil.get_terminal_size((80, 24)).columns - 1
            self.stream.write("\r" + text[:width].ljust(width) + ("\n" if last else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def copy_file(source: Path, target: Path, what: str = "") -> None:
    """Copy ``source`` into the new file ``target`` with progress (shutil.copyfile shows none)."""
    shown = Progress(what or f"copying {source.name}", source.stat().st_size)
    with shown, source.open("rb") as reader, target.open("wb") as writer:
        while block := reader.read(BLOCK):
            writer.write(block)
            shown.advance(len(block))
