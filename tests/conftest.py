"""Fixtures: one rendering per preset, shared by the whole session."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from maintainer.render import load_answers, preset_names, render
from tests.project_helpers import clone_with_working_tree
from tests.services import TIMINGS

os.environ.setdefault("CONDOR_CONFIG", os.devnull)
# The tools the tests call by name (hadolint, actionlint, zizmor, shellcheck, invoke, ...) are
# installed beside this interpreter (.venv/bin): put them first, activated or not.
if os.environ.get("PATH", "").split(os.pathsep)[0] != str(Path(sys.executable).parent):
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
PRESETS = preset_names()
# Every stand-in (tests/stand-ins) appends its argv here, so the run can say what it stood in for.
os.environ.setdefault("STANDIN_SUMMARY", str(Path(tempfile.mkdtemp(prefix="standins-")) / "calls.log"))
IMAGE_STANDIN_NOTE = "pixi inside the debootstrap base image (build-image's install and shell-hook steps)"


def pytest_terminal_summary(terminalreporter):
    """List the absent tools that stand-ins replaced in this run, and how often."""
    summary = Path(os.environ["STANDIN_SUMMARY"])
    calls = summary.read_text().splitlines() if summary.exists() else []
    shutil.rmtree(summary.parent, ignore_errors=True)
    counts = Counter(line.split()[0] for line in calls)
    terminalreporter.section("stand-ins (tools absent here, replaced by tests/stand-ins)")
    if not counts:
        terminalreporter.write_line("no stand-in was called on the host")
    for tool, count in sorted(counts.items()):
        steps = sorted({" ".join(line.split()[:2]) for line in calls if line.split()[0] == tool})
        terminalreporter.write_line(f"{tool}: {count} call(s), stood in for: {', '.join(steps)}")
    if terminalreporter.stats.get("passed") and any(
        "test_container_engine" in report.nodeid for report in terminalreporter.stats["passed"]
    ):
        terminalreporter.write_line(f"also stood in for: {IMAGE_STANDIN_NOTE}")
    if TIMINGS:
        terminalreporter.section("timings measured by the tests (seconds; not assertions)")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what}: {seconds:.1f} s")


@pytest.fixture(scope="session")
def renderings(tmp_path_factory) -> dict[str, Path]:
    """Each preset rendered once (rendering is read-only for the tests that share it)."""
    root = tmp_path_factory.mktemp("renderings")
    return {name: render(root / name, load_answers(name)) for name in PRESETS}


@pytest.fixture
def copy_of(renderings, tmp_path):
    """A private copy of a preset's rendering, for tests that break files."""

    def make(preset: str) -> Path:
        target = tmp_path / preset
        shutil.copytree(renderings[preset], target, symlinks=True)
        return target

    return make


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory) -> Path:
    """A clone of this repository (history and tags), the working tree's template committed as HEAD."""
    template = ("copier.yml", "template", "includes")
    return clone_with_working_tree(tmp_path_factory.mktemp("history") / "template", template)
