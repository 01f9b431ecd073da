"""Other programs, run from the maintainer side: one lookup and one call for the checks, the
journey, rendering and releases. (The project's tasks have their own in tasks/helpers.py: that
package ships to users, who do not have this one.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def find_tool(name: str, path: str | None = None) -> str | None:
    """Absolute path of a command: on ``path`` where given (the journey's PATH, stand-ins first),
    else beside this Python first (a virtualenv's own tools), then on PATH."""
    if path is None:
        beside = Path(sys.executable).parent / name
        if beside.is_file():
            return str(beside)
    return shutil.which(name, path=path)


def run(argv: list, cwd: Path, env: dict | None = None, input: str | None = None, capture: bool = True):
    """A command's CompletedProcess (text); its exit status is the caller's to judge."""
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, input=input, capture_output=capture, text=True, check=False
    )


def output_tail(result: subprocess.CompletedProcess, limit: int = 4000) -> str:
    """The end of what a captured command printed, for a one-line report."""
    return ((result.stdout or "") + (result.stderr or "")).strip()[-limit:]
