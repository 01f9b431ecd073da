"""Small helpers shared by the task modules: paths, TOML, commands, git, the lock digest."""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from invoke import Exit

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "pixi.toml"
LOCK = ROOT / "pixi.lock"


# What `copier update --conflict inline` (and git) leave where a user's edit and the
# template's change meet: `<<<<<<< before updating` ... `>>>>>>> after updating`.
CONFLICT_MARKER = re.compile(r"^(<{7}|>{7})(?: |$)", re.MULTILINE)


def read_resolved(path: Path) -> str:
    """A file's text, refused with one sentence while it still holds conflict markers."""
    text = path.read_text()
    marker = CONFLICT_MARKER.search(text)
    if marker:
        line = text.count("\n", 0, marker.start()) + 1
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        raise Exit(
            f"{where} still holds conflict markers from an update (line {line}); keep the lines you "
            "want between <<<<<<< and >>>>>>>, delete the markers, then run the task again."
        )
    return text


def read_toml(path: Path) -> dict:
    """A TOML file as a dict; a missing, conflicted or broken file is one sentence."""
    try:
        return tomllib.loads(read_resolved(path))
    except FileNotFoundError:
        raise Exit(f"{path} not found; run invoke from the project directory.") from None
    except tomllib.TOMLDecodeError as error:
        raise Exit(f"{path.name} is not valid TOML ({error}); fix it before running tasks.") from None


def source_module(name: str):
    """A module of src/ (fetch_data, tiny_mnist): one implementation for the pixi tasks and Invoke."""
    source = str(ROOT / "src")
    if source not in sys.path:
        sys.path.insert(0, source)
    try:
        return importlib.import_module(name)
    except ImportError:
        raise Exit(f"src/{name}.py is missing; restore it from the template.") from None


def fetcher():
    """src/fetch_data.py: one implementation of the data's pins, download and extraction."""
    return source_module("fetch_data")


def tool(name: str, how: str) -> str:
    """Absolute path of a command, or a one-sentence Exit naming how to get it."""
    path = shutil.which(name)
    if path is None:
        raise Exit(f"{name} is not installed or not on PATH; {how}.", code=127)
    return path


QUERY_TIMEOUT = 60  # seconds for a question to a tool or scheduler (a version, a job's state, the GPU)
SUBMIT_TIMEOUT = 300  # sbatch and condor_submit: a busy scheduler still answers within minutes


def run(
    argv: list[str],
    what: str,
    cwd: Path = ROOT,
    capture: bool = False,
    env: dict | None = None,
    timeout: float | None = None,
) -> str:
    """Run a command; on failure (or no answer within ``timeout`` s) stop with one sentence."""
    print("+ " + shlex.join(argv), flush=True)
    try:
        result = subprocess.run(
            argv, cwd=cwd, text=True, capture_output=capture, env={**os.environ, **(env or {})}, check=False,
            timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise Exit(f"{what} did not finish within {timeout:g} s; the service may be busy: try again later.") from None
    if result.returncode != 0:
        detail = f": {(result.stderr or result.stdout).strip()[-500:]}" if capture else ""
        raise Exit(f"{what} failed (exit status {result.returncode}){detail}", code=result.returncode or 1)
    return result.stdout if capture else ""


def query(argv: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    """A quick question to a tool (captured, never failing on its exit status); one sentence if it hangs."""
    timeout = timeout or QUERY_TIMEOUT
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Exit(f"{argv[0]} did not answer within {timeout:g} s; try again later.") from None


def git(*args: str) -> str | None:
    """git's output in the project, or None where git or the repository is missing."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=QUERY_TIMEOUT
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_is_dirty() -> bool:
    return bool(git("status", "--porcelain", "--untracked-files=no"))


def immutable_tag() -> str:
    """The tag every image, SIF and job uses: the commit's 7-character short SHA (never `latest`).

    CI pushes the same string (docker/metadata-action `type=sha,prefix=,format=short`).
    """
    # The first 7 characters, as CI cuts them: --short=7 grows where a prefix is ambiguous.
    sha = (git("rev-parse", "HEAD") or "")[:7]
    if not sha:
        raise Exit("this project is not a git repository with a commit; commit it so images get an immutable tag.")
    return sha


def lock_digest() -> str:
    if not LOCK.is_file():
        raise Exit("pixi.lock is missing; run `invoke lock` (or `pixi lock`) and commit it first.")
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def progress():
    """src/progress.py: the one progress display, for the tasks' copies and pushes and for the jobs."""
    return source_module("progress")


def human_size(size: float) -> str:
    return progress().human_size(size)
