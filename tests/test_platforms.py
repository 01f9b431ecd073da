"""Containers, packs and CI images follow the Linux platform the project has."""

from __future__ import annotations

import os

import yaml

from maintainer.checks import read_manifest, run_checks
from maintainer.render import git, render
from tests.project_helpers import dry_run_ads, dry_run_command, tiny_data_pins, write_data_tarball
from tests.services import STAND_INS, run_invoke

ARM_ONLY = {"platforms": ["linux-aarch64", "osx-arm64"], "container_formats": ["docker", "apptainer"]}


def test_an_arm_only_project_builds_arm_images(tmp_path):
    project = render(tmp_path / "arm", ARM_ONLY)
    manifest = read_manifest(project)
    assert manifest["tool"]["invoke-tasks"]["platform"] == "linux/arm64"
    docker = yaml.safe_load((project / ".github/workflows/docker.yml").read_text())["jobs"]["build"]
    assert docker["runs-on"] == "ubuntu-24.04-arm"
    build = next(s for s in docker["steps"] if s.get("name") == "Build")
    assert build["with"]["platforms"] == "linux/arm64"
    apptainer = yaml.safe_load((project / ".github/workflows/apptainer.yml").read_text())["jobs"]["build"]
    assert apptainer["runs-on"] == "ubuntu-24.04-arm"
    # The vendored tasks read the platform from pixi.toml (their help text is theirs to word).
    files = [p for p in project.rglob("*") if p.is_file() and "tasks" not in p.parts]
    leftovers = [p for p in files if "amd64" in p.read_text(errors="replace")]
    assert not leftovers, f"amd64 named in an arm-only project: {leftovers}"
    # pixi-pack is in the tasks environment on every platform; the CUDA entry on the Linux one it has.
    assert "pixi-pack" in manifest["feature"]["tasks"]["dependencies"]
    assert {"name": "linux-aarch64-cuda", "platform": "linux-aarch64", "cuda": "12"} in manifest["workspace"][
        "platforms"
    ]
    failed = [f.line() for f in run_checks(project, ["pixi", "workflows"]) if not f.ok and not f.skipped]
    assert not failed, failed


def test_linux_64_stays_the_container_platform_when_both_are_chosen(renderings):
    manifest = read_manifest(renderings["everything"])
    assert manifest["tool"]["invoke-tasks"]["platform"] == "linux/amd64"
    assert {"name": "linux-64-cuda", "platform": "linux-64", "cuda": "12"} in manifest["workspace"]["platforms"]


def test_cpu_side_features_are_solved_for_plain_platforms_only(renderings):
    manifest = read_manifest(renderings["everything"])
    plain = [p for p in manifest["workspace"]["platforms"] if isinstance(p, str)]
    for feature in ("cpu", "test", "tasks"):
        assert manifest["feature"][feature]["platforms"] == plain, feature
    assert manifest["feature"]["gpu"]["platforms"] == ["linux-64-cuda"]


def test_lock_v7_readers_are_floored(renderings):
    manifest = read_manifest(renderings["everything"])
    assert manifest["feature"]["tasks"]["dependencies"]["py-rattler"] == ">=0.24"
    assert manifest["feature"]["tasks"]["dependencies"]["pixi-pack"] == ">=0.7.8,<0.8"


def test_a_project_without_linux_renders_no_container_platform(tmp_path):
    answers = {"platforms": ["osx-arm64"], "gpu": False, "container_formats": [], "batch_systems": []}
    project = render(tmp_path / "mac", answers)
    manifest = read_manifest(project)
    assert "platform" not in manifest["tool"]["invoke-tasks"]
    # pixi-pack runs on a Mac too (conda-forge builds it for osx-64 and osx-arm64) and packs for Linux.
    assert "pixi-pack" in manifest["feature"]["tasks"]["dependencies"]
    assert not (project / ".github/workflows/docker.yml").exists()
    failed = [f.line() for f in run_checks(project, ["pixi", "workflows"]) if not f.ok and not f.skipped]
    assert not failed, failed


def test_an_arm_only_project_submits_arm_jobs(tmp_path):
    """HTCondor would otherwise require the submit machine's architecture (X86_64)."""
    project = render(tmp_path / "arm", {**ARM_ONLY, "batch_systems": ["htcondor"]})
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start")
    archive = write_data_tarball(project)
    (project / "pixi.lock").write_text("version: 7\n")
    env = {**os.environ, **tiny_data_pins(project), "PATH": f"{STAND_INS}{os.pathsep}{os.environ['PATH']}"}
    result = run_invoke(project, "submit-condor", "--flavour", "pixi-pack", "--build", "--dry-run", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    (ad,) = dry_run_ads(result.stdout)
    assert '(TARGET.Arch == "aarch64")' in ad["Requirements"] and "X86_64" not in ad["Requirements"]
    assert "-linux-aarch64-" in dry_run_command(result.stdout) and archive.is_file()
