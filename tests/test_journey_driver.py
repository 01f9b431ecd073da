"""maintainer/journey.py, the script the journey workflow runs on the real tools, here on the stand-ins."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from maintainer.journey import STAND_INS, STEPS
from maintainer.render import ROOT


def journey(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "maintainer.journey", "--workdir", str(tmp_path), *args],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_journey_on_stand_ins_reports_them(tmp_path):
    steps = "render,lock,install,project-tests,pack"
    result = journey(tmp_path, "--preset", "defaults", "--stand-ins", "--steps", steps)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    lines = result.stdout.splitlines()
    for step in steps.split(","):
        assert any(re.fullmatch(rf"== step {step} ok in \d+\.\d s", line) for line in lines), step
    for step, tool in [("lock", "pixi"), ("install", "pixi"), ("project-tests", "pixi"), ("pack", "pixi-pack")]:
        assert f"[{step}] tool {tool}: {STAND_INS / tool} (stand-in)" in lines
    assert "epoch  1:" in result.stdout and re.search(r"^=+ \d+ passed", result.stdout, re.M)
    assert (tmp_path / "defaults" / "pixi.lock").read_text().startswith("version: 7\n")


def test_journey_refuses_unknown_steps_and_missing_tools(tmp_path):
    result = journey(tmp_path, "--steps", "render,deploy")
    assert result.returncode == 2
    assert result.stderr.strip() == f"unknown step(s) deploy; choose from {', '.join(STEPS)}."
    system = "/usr/bin:/bin"
    if shutil.which("pixi", path=system):
        pytest.skip("pixi is installed system-wide here, so it cannot be missing")
    result = subprocess.run(
        [sys.executable, "-m", "maintainer.journey", "--workdir", str(tmp_path), "--steps", "render,lock"],
        cwd=ROOT, capture_output=True, text=True, check=False, env={"PATH": system, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == "== step lock FAILED: step lock needs pixi, which is not on PATH"
