"""nox sessions for the template: tests, lint, render, update, lock, build, journey.

Each session installs what it needs into its own environment from a dependency group of
pyproject.toml (maintainer/groups.py), so `nox` works on a fresh machine with Python and pip.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # nox imports this file alone
from maintainer.groups import group, split_torch  # noqa: E402

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
PRESETS = ["defaults", "cpu-linux", "apptainer-slurm", "everything"]


def install_group(session: nox.Session, name: str) -> None:
    """A dependency group; torch as its CPU build first, which the group's `torch==` pin then accepts."""
    rest, torch = split_torch(group(name))
    if torch:
        session.install(*torch)
    session.install(*rest)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (pytest arguments pass through)."""
    install_group(session, "dev")
    session.run("python", "-m", "pytest", "-v", "-rs", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Lint and format-check the maintainer code (template/ is checked inside renderings)."""
    install_group(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
@nox.parametrize("preset", PRESETS, ids=PRESETS)
def render(session: nox.Session, preset: str) -> None:
    """Render a preset into build/<preset> and run every offline check on it."""
    install_group(session, "dev")
    session.run("invoke", "render", "--preset", preset)
    session.run("invoke", "check", f"build/{preset}", *session.posargs)


@nox.session
def update(session: nox.Session) -> None:
    """The copier update round trips (template v1 -> v2 with user edits, tasks/local.py kept)."""
    install_group(session, "dev")
    tests = [
        "tests/test_copier_update.py",
        "tests/test_tasks_package.py::test_update_merges_a_user_task_and_a_template_task",
    ]
    session.run("python", "-m", "pytest", "-v", *tests, *session.posargs)


@nox.session
@nox.parametrize("preset", PRESETS[:2], ids=PRESETS[:2])
def lock(session: nox.Session, preset: str) -> None:
    """With real pixi: render, pixi lock, install the cpu environment locked, run the project tests."""
    if shutil.which("pixi") is None:
        session.skip("pixi is not installed (see pixi.sh); this session needs the real solver")
    install_group(session, "journey")
    workdir = Path(tempfile.mkdtemp(prefix=f"lock-{preset}-"))
    session.run("invoke", "render", "--preset", preset, "--output", str(workdir))
    session.chdir(workdir)
    session.run("pixi", "lock", external=True)
    session.run("pixi", "install", "--locked", "--environment", "cpu", external=True)
    session.run("pixi", "run", "--locked", "--environment", "cpu", "test", external=True)


@nox.session
def build(session: nox.Session) -> None:
    """The container tests on a Docker engine the suite starts itself (root, Debian packages)."""
    install_group(session, "dev")
    session.run("python", "-m", "pytest", "-v", "-rs", "tests/test_container_engine.py", *session.posargs)


@nox.session
def journey(session: nox.Session) -> None:
    """maintainer/journey.py: render, lock, test, image, SIF, pack, HTCondor, update (real tools or stand-ins)."""
    install_group(session, "journey")
    session.run("python", "-m", "maintainer.journey", *session.posargs)
