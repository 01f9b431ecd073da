"""maintainer/journey.py, the script the journey workflow runs on the real tools, here on the stand-ins."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from maintainer.journey import POOL_ENVIRONMENT, STAND_INS, STEPS
from maintainer.render import ROOT


def journey(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "maintainer.journey", "--workdir", str(tmp_path), *args],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_journey_on_stand_ins_reports_them(tmp_path):
    steps = "render,lock,install,project-tests,pack,condor"
    result = journey(tmp_path, "--preset", "defaults", "--stand-ins", "--steps", steps)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    lines = result.stdout.splitlines()
    for step in steps.split(","):
        assert any(re.fullmatch(rf"== step {step} ok in \d+\.\d s", line) for line in lines), step
    for step, tool in [("lock", "pixi"), ("install", "pixi"), ("project-tests", "pixi"), ("pack", "pixi-pack")]:
        assert f"[{step}] tool {tool}: {STAND_INS / tool} (stand-in)" in lines
    assert "epoch  1:" in result.stdout and re.search(r"^=+ \d+ passed", result.stdout, re.M)
    assert (tmp_path / "defaults" / "pixi.lock").read_text().startswith("version: 7\n")
    # The condor step submits the environment the pack step packed (the tasks name packs by it).
    (pack,) = (tmp_path / "defaults").glob("*-environment-*.sh")
    assert f"-environment-{POOL_ENVIRONMENT}-" in pack.name
    calls = (tmp_path / "defaults-standins.log").read_text().splitlines()
    packed = [c for c in calls if c.startswith("pixi-pack ")]
    assert packed and all(f"--environment {POOL_ENVIRONMENT} " in c for c in packed)
    (submit,) = [c for c in calls if c.startswith("condor_submit ")]
    assert f"-append pack_file = {pack.name} " in submit and f"-append pack_input = ../{pack.name} " in submit
    resources = (tmp_path / "defaults" / "htcondor" / "pixi-pack.sub").read_text()  # the one place for them
    assert "\nmemory_mb = 2048\n" in resources and "\nrequest_gpus = 0\n" in resources
    assert "[condor] stand-in: condor_submit accepted the job; no pool runs it here" in lines


def test_update_step_starts_from_a_release_even_when_the_repository_has_none(tmp_path):
    result = journey(tmp_path, "--preset", "cpu-linux", "--steps", "update")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    tags = subprocess.run(["git", "tag", "--list", "v*"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if tags:
        assert "(real, Python package); from v" in result.stdout
    else:
        assert re.search(
            r"^\[update\] no v\* release here: tagged [0-9a-f]{12} v0\.0\.0 on a copy", result.stdout, re.M
        )
        assert "(real, Python package); from v0.0.0" in result.stdout
    assert re.search(r"^== step update ok in \d+\.\d s$", result.stdout, re.M)


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


def test_condor_step_sends_the_packed_environment_from_the_project(tmp_path):
    """everything stages large files on OSDF; the mini pool reads none, so the tasks send local ones."""
    result = journey(tmp_path, "--preset", "everything", "--stand-ins", "--steps", "render,lock,pack,condor")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    (pack,) = (tmp_path / "everything").glob(f"*-environment-{POOL_ENVIRONMENT}-*.sh")
    calls = (tmp_path / "everything-standins.log").read_text().splitlines()
    (submit,) = [c for c in calls if c.startswith("condor_submit ")]
    assert f"-append pack_file = {pack.name} -append pack_input = ../{pack.name} " in submit
    assert "-append data_input = ../MNIST_data.tar.gz " in submit and "osdf://" not in submit
