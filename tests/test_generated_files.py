"""Every rendered file, checked by the tool that consumes it, for every preset."""

from __future__ import annotations

import pytest
import yaml

from maintainer.checks import CHECKS, Finding, read_manifest, run_checks
from maintainer.render import ROOT, load_answers, preset_names
from tests.services import skip_or_fail

PRESETS = preset_names()
QUESTIONS = yaml.safe_load((ROOT / "copier.yml").read_text())
# Which checks have files to check, given a preset's answers (defaults filled in).
APPLIES = {
    "docker": lambda a: "docker" in a["container_formats"],
    "apptainer": lambda a: "apptainer" in a["container_formats"],
    "workflows": lambda a: a["github_actions"],
    "shell": lambda a: bool(a["container_formats"] or a["batch_systems"]),
    "htcondor": lambda a: "htcondor" in a["batch_systems"],
}


def answers_with_defaults(preset: str) -> dict:
    answers = {k: v["default"] for k, v in QUESTIONS.items() if not k.startswith("_") and "default" in v}
    return {**answers, **load_answers(preset)}


CASES = [
    pytest.param(preset, check, id=f"{preset}-{check}")
    for preset in PRESETS
    for check in CHECKS
    if APPLIES.get(check, lambda a: True)(answers_with_defaults(preset))
]

EXPECTED_FILES = {
    "defaults": {
        "Dockerfile",
        "apptainer.def",  # researchers expect both formats (issue 11)
        "htcondor/docker.sub",
        "htcondor/apptainer.sub",
        "htcondor/pixi-pack.sub",
        ".github/workflows/docker.yml",
        ".github/workflows/apptainer.yml",
        ".github/workflows/template-update.yml",  # the monthly update pull request (issue 19)
    },
    "cpu-linux": {"pixi.toml", "src/torch_MNIST.py", "tasks/__init__.py", "tasks/local.py"},
    "apptainer-slurm": {"apptainer.def", "slurm/train.sbatch", ".github/workflows/apptainer.yml"},
    "everything": {"Dockerfile", "apptainer.def", "htcondor/apptainer.sub", "slurm/train.sbatch"},
}
ABSENT_FILES = {
    "defaults": {"slurm"},
    "cpu-linux": {"Dockerfile", "apptainer.def", "htcondor", "slurm", ".github", "container", ".dockerignore"},
    "apptainer-slurm": {"Dockerfile", "htcondor", ".github/workflows/docker.yml"},
    "everything": set(),
}


def assert_findings(findings: list[Finding]) -> None:
    skipped = [f for f in findings if f.skipped]
    failed = [f for f in findings if not f.ok and not f.skipped]
    assert not failed, "\n".join(f.line() for f in failed)
    if skipped:  # the rest passed; say what could not be checked here, and why (under CI=true: fail)
        skip_or_fail("; ".join(f"{f.tool} on {f.file}: {f.detail}" for f in skipped))


@pytest.mark.parametrize(("preset", "check"), CASES)
def test_consuming_tool_accepts(renderings, preset, check):
    findings = run_checks(renderings[preset], [check])
    assert findings, f"the {preset} preset rendered no file for the {check} check"
    assert_findings(findings)


@pytest.mark.parametrize("preset", PRESETS)
def test_files_follow_the_answers(renderings, preset):
    project = renderings[preset]
    for path in EXPECTED_FILES[preset]:
        assert (project / path).exists(), f"{path} missing from {preset}"
    for path in ABSENT_FILES[preset]:
        assert not (project / path).exists(), f"{path} should not be rendered for {preset}"
    leftovers = [p for p in project.rglob("*") if p.is_file() and ("{{" in p.name or p.suffix == ".jinja")]
    assert not leftovers


@pytest.mark.parametrize("preset", PRESETS)
def test_one_place_for_each_fact(renderings, preset):
    project = renderings[preset]
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    manifest = read_manifest(project)
    pixi_version = answers["pixi_version"]
    assert manifest["workspace"]["requires-pixi"] == f">={pixi_version}"
    image = manifest["tool"]["invoke-tasks"]["image"]
    assert image == image.lower() and image.endswith(answers["repository_name"].lower())
    if (project / "Dockerfile").exists():
        assert f"ARG PIXI_VERSION={pixi_version}\n" in (project / "Dockerfile").read_text()
    if (project / "apptainer.def").exists():
        assert f"From: ghcr.io/prefix-dev/pixi:{pixi_version}\n" in (project / "apptainer.def").read_text()
    platform = manifest["tool"]["invoke-tasks"].get("platform")
    if (project / ".github/workflows/docker.yml").exists():
        steps = yaml.safe_load((project / ".github/workflows/docker.yml").read_text())["jobs"]["build"]["steps"]
        assert next(s for s in steps if s.get("name") == "Build")["with"]["platforms"] == platform
    if (project / ".github/workflows/tests.yml").exists():
        assert f"pixi-version: v{pixi_version}\n" in (project / ".github/workflows/tests.yml").read_text()
    if answers["gpu"]:
        cuda = answers["cuda_version"]
        assert manifest["feature"]["gpu"]["dependencies"]["cuda-version"] == f"{cuda}.*"
        cuda_platform = next(p for p in manifest["workspace"]["platforms"] if isinstance(p, dict))
        assert cuda_platform == {"name": "linux-64-cuda", "platform": "linux-64", "cuda": cuda.split(".")[0]}
    else:
        assert "gpu" not in manifest["environments"] and "gpu" not in manifest.get("feature", {})


def test_custom_registry_image_is_lowercased(renderings):
    manifest = read_manifest(renderings["everything"])
    assert manifest["tool"]["invoke-tasks"]["image"] == "127.0.0.1:5000/some-lab/everything-on"
    assert (
        "container_image = docker://127.0.0.1:5000/some-lab/everything-on:unset-run-invoke-submit-condor\n"
        in (renderings["everything"] / "htcondor" / "docker.sub").read_text()
    )
