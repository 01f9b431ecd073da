"""nox sessions for the template: tests, lint, render, update, lock, build."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"  # the tools come from .ci/run's installs
nox.options.sessions = ["lint", "tests"]
ROOT = Path(__file__).resolve().parent
PRESETS = ["defaults", "cpu-linux", "apptainer-slurm", "everything"]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (pytest arguments pass through)."""
    session.run("python", "-m", "pytest", "-v", "-rs", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Lint and format-check the maintainer code (template/ is checked inside renderings)."""
    session.run("ruff", "check", ".", external=True)
    session.run("ruff", "format", "--check", ".", external=True)


@nox.session
@nox.parametrize("preset", PRESETS, ids=PRESETS)
def render(session: nox.Session, preset: str) -> None:
    """Render a preset into build/<preset> and run every offline check on it."""
    session.run("invoke", "render", "--preset", preset, external=True)
    session.run("invoke", "check", f"build/{preset}", *session.posargs, external=True)


@nox.session
def update(session: nox.Session) -> None:
    """The copier update round trip (template v1 -> v2 with user edits)."""
    session.run("python", "-m", "pytest", "-v", "tests/test_copier_update.py", *session.posargs)


@nox.session
@nox.parametrize("preset", PRESETS[:2], ids=PRESETS[:2])
def lock(session: nox.Session, preset: str) -> None:
    """With real pixi: render, pixi lock, install the cpu environment locked, run the project tests."""
    if shutil.which("pixi") is None:
        session.skip("pixi is not installed (see pixi.sh); this session needs the real solver")
    workdir = Path(tempfile.mkdtemp(prefix=f"lock-{preset}-"))
    session.run("invoke", "render", "--preset", preset, "--output", str(workdir), external=True)
    session.chdir(workdir)
    session.run("pixi", "lock", external=True)
    session.run("pixi", "install", "--locked", "--environment", "cpu", external=True)
    session.run("pixi", "run", "--locked", "--environment", "cpu", "test", external=True)


@nox.session
def build(session: nox.Session) -> None:
    """Render the defaults, then `invoke build-image` + `test-image` on a Docker engine."""
    session.run("python", "-m", "pytest", "-v", "-rs", "tests/test_container_engine.py", *session.posargs)
