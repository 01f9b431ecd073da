"""nox sessions install what they need from pyproject's dependency groups, into their own environments."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys

import pytest

from maintainer.groups import group, split_torch
from maintainer.render import ROOT


def test_groups_expand_includes_and_hold_torch_apart():
    dev = group("dev")
    assert set(group("journey")) <= set(dev) and set(group("lint")) == {"ruff"} <= set(dev)
    rest, torch = split_torch(dev)
    assert torch == ["torch==2.13.0+cpu"] and not any(r.startswith("torch") for r in rest)
    with pytest.raises(SystemExit, match="pyproject.toml has no dependency group 'nope'"):
        group("nope")


def test_every_session_installs_from_a_group_or_skips():
    """No session relies on tools installed by hand (the old noxfile used venv_backend none)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    sessions = [
        f
        for f in tree.body
        if isinstance(f, ast.FunctionDef) and any("session" in ast.unparse(d) for d in f.decorator_list)
    ]
    assert len(sessions) >= 7
    for function in sessions:
        calls = [ast.unparse(n) for n in ast.walk(function) if isinstance(n, ast.Call)]
        assert any(c.startswith("install_group(session, ") for c in calls), f"{function.name} installs nothing"
    assert "venv_backend" not in (ROOT / "noxfile.py").read_text()


@pytest.mark.skipif(
    shutil.which("nox") is None and not (ROOT / ".venv/bin/nox").exists(), reason="nox is not installed"
)
def test_the_lint_session_builds_its_own_environment(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nox", "-s", "lint", "--envdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "lint" / "bin" / "ruff").is_file(), "ruff did not come into the session's own environment"
