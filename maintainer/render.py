"""Render the template with Copier's Python API, from a preset or an answers file."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import yaml

from maintainer.commands import run

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ROOT / "presets"


def preset_names() -> list[str]:
    """Names of the answer presets in presets/ (defaults, cpu-linux, ...)."""
    return sorted(path.stem for path in PRESETS.glob("*.yml"))


def load_answers(preset_or_file: str | Path) -> dict:
    """Answers from a preset name or a YAML answers file (e.g. a .copier-answers.yml)."""
    path = Path(preset_or_file)
    if not path.is_file():
        path = PRESETS / f"{preset_or_file}.yml"
    if not path.is_file():
        raise FileNotFoundError(
            f"'{preset_or_file}' is neither an answers file nor a preset; presets: {', '.join(preset_names())}."
        )
    answers = yaml.safe_load(path.read_text()) or {}
    # Copier's own bookkeeping keys (from an answers file) are not answers.
    return {key: value for key, value in answers.items() if not key.startswith("_")}


def render(destination: Path, answers: dict, template: Path = ROOT, vcs_ref: str | None = "HEAD") -> Path:
    """Render ``template`` into ``destination`` (which must not exist or be empty).

    ``vcs_ref="HEAD"`` renders the working tree, uncommitted edits included, rather than
    the latest tag that Copier would otherwise pick. Copier validates every answer
    before it writes anything, so a bad answer leaves ``destination`` untouched.
    """
    import copier  # imported late: `invoke --list` should not pay for it

    destination = Path(destination)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Dirty template changes included automatically")
        copier.run_copy(
            str(template),
            str(destination),
            data=answers,
            defaults=True,
            unsafe=False,  # the template runs no tasks or migrations: nothing to trust
            vcs_ref=vcs_ref if (template / ".git").exists() else None,
            quiet=True,
        )
    return destination


def render_fresh(destination: Path, answers: dict, **kwargs) -> Path:
    """Render into ``destination`` after removing an earlier rendering there."""
    destination = Path(destination)
    if destination.exists():
        shutil.rmtree(destination)
    return render(destination, answers, **kwargs)


def git(cwd: Path, *args: str) -> str:
    """Run git quietly with a fixed identity; return its stdout."""
    result = run(["git", "-c", "user.name=template-tests", "-c", "user.email=tests@example.invalid", *args], cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout
