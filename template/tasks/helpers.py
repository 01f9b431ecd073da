"""Small helpers shared by the task modules: paths, TOML, commands, git, the lock digest."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
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


def tool(name: str, how: str) -> str:
    """Absolute path of a command, or a one-sentence Exit naming how to get it."""
    path = shutil.which(name)
    if path is None:
        raise Exit(f"{name} is not installed or not on PATH; {how}.", code=127)
    return path


def run(argv: list[str], what: str, cwd: Path = ROOT, capture: bool = False, env: dict | None = None) -> str:
    """Run a command; on failure stop with one sentence saying what failed."""
    print("+ " + shlex.join(argv), flush=True)
    result = subprocess.run(
        argv, cwd=cwd, text=True, capture_output=capture, env={**os.environ, **(env or {})}, check=False
    )
    if result.returncode != 0:
        detail = f": {(result.stderr or result.stdout).strip()[-500:]}" if capture else ""
        raise Exit(f"{what} failed (exit status {result.returncode}){detail}", code=result.returncode or 1)
    return result.stdout if capture else ""


def git(*args: str) -> str | None:
    """git's output in the project, or None where git or the repository is missing."""
    try:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    except FileNotFoundError:
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


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:,.0f} B" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"
