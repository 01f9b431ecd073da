"""The template repository's own CI: workflows pinned and clean, the README's commands, the journey."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import yaml

from maintainer.checks import check_workflows
from maintainer.journey import STEPS
from maintainer.render import ROOT
from tests.test_generated_files import assert_findings

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
FACTS = ROOT / "reference" / "facts" / "github-actions.md"


def uses_lines():
    for workflow in WORKFLOWS:
        for line in workflow.read_text().splitlines():
            if re.match(r"^\s*(-\s+)?uses:", line):
                yield workflow.name, line.strip()


def test_repository_workflows_pass_actionlint_schema_and_zizmor():
    findings = check_workflows(ROOT)
    assert {f.file for f in findings} >= {".github/workflows/ci.yml", ".github/workflows/journey.yml", ".github/"}
    assert_findings(findings)


def test_zizmor_with_no_relaxations():
    assert not (ROOT / ".github" / "zizmor.yml").exists(), "no policy file may relax zizmor's rules"
    result = subprocess.run(
        ["zizmor", "--offline", "--no-config", "--format", "plain", ".github"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report." in result.stdout + result.stderr


def test_every_action_is_pinned_to_a_commit_with_its_version():
    lines = list(uses_lines())
    assert len(lines) >= 6
    for workflow, line in lines:
        assert re.fullmatch(r"(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40}  # v[\d.]+", line), f"{workflow}: {line}"


def test_pins_are_the_commits_of_their_versions():
    rows = re.findall(r"^\| (\S+) \| (v[\d.]+)[^|]*\| ([0-9a-f]{40}) \|$", FACTS.read_text(), re.M)
    table = {(action, version): commit for action, version, commit in rows}
    assert table
    for workflow, line in uses_lines():
        action, commit, version = re.match(r"(?:- )?uses: (\S+)@(\w+)  # (\S+)", line).groups()
        assert table.get((action, version)) == commit, f"{workflow}: {action} {version} is not {commit}"


def test_ci_runs_the_readme_test_command_in_the_venv():
    readme = (ROOT / "README.md").read_text()
    ci_run = (ROOT / ".ci" / "run").read_text()
    command = ".venv/bin/python -m pytest -v -rs"
    assert f"\n{command}\n" in readme and f"\n{command}\n" in ci_run
    assert "bash .ci/install" in readme and "bash .ci/install" in ci_run
    assert ci_run.index("bash .ci/install-services") < ci_run.index("bash .ci/install\n") < ci_run.index(command)
    assert 'export PATH="$PWD/.venv/bin:$PATH"' in ci_run
    assert "bash .ci/run" in (ROOT / ".github" / "workflows" / "ci.yml").read_text()


def test_journey_workflow_runs_the_journey_script_on_real_tools():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "journey.yml").read_text())
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-24.04"
    assert job["strategy"]["matrix"]["preset"] == ["defaults", "everything"]
    uses = [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]
    assert {"prefix-dev/setup-pixi", "eWaterCycle/setup-apptainer"} <= set(uses)
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "htcondor/mini:" in runs and "--name htcondor-mini" in runs
    assert "sudo rm -rf /usr/share/dotnet" in runs, "disk must be freed before the image build"
    (journey,) = [s for s in job["steps"] if "maintainer.journey" in s.get("run", "")]
    assert journey["run"] == 'python -m maintainer.journey --preset "$PRESET" --workdir "$RUNNER_TEMP/journey"'
    assert "--steps" not in journey["run"], f"the real-tool run takes every step: {', '.join(STEPS)}"


def _readme_block(heading: str) -> list[str]:
    """The command lines of the README's code blocks under a ## heading."""
    section = (ROOT / "README.md").read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_maintainer_commands_run_from_the_venv_after_the_setup():
    """After `bash .ci/install`, each command works as written: nothing relies on an activated .venv."""
    lines = _readme_block("Work on the template")
    assert lines[0] == "bash .ci/install"
    for line in lines[1:]:
        for command in line.split("&&"):
            assert command.strip().startswith(".venv/bin/"), f"README: {command.strip()!r} needs an activated .venv"


def _fake_apt(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "apt-get").chmod(0o755)
    return bin_dir, calls


def test_install_sets_up_only_the_venv_even_as_root(tmp_path):
    """The quick loop needs no system packages: .ci/install never calls apt-get (it used to as root)."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / ".ci", clone / ".ci")
    shutil.copytree(ROOT / "maintainer", clone / "maintainer", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", clone)
    bin_dir, calls = _fake_apt(tmp_path)
    # pip may not look anywhere (no network in tests): the install stops at torch, with its sentence.
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable,
           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "no-wheels")}  # fmt: skip
    env.pop("PIP_EXTRA_INDEX_URL", None)
    result = subprocess.run(["bash", ".ci/install"], cwd=clone, env=env, capture_output=True, text=True, check=False)
    assert not calls.exists(), f"apt-get was called: {calls.read_text()}"
    assert (clone / ".venv" / "bin" / "python").exists()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("the CPU build torch==")


def test_install_services_says_what_it_installs_before_apt_starts(tmp_path):
    bin_dir, calls = _fake_apt(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    script = str(ROOT / ".ci" / "install-services")
    if os.geteuid() == 0:
        result = subprocess.run(["bash", script], env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        first = result.stdout.splitlines()[0]
        assert first.startswith("install-services: installing 10 Debian packages for the engine and SLURM tests (git ")
        assert calls.read_text().splitlines()[-1].startswith("install -y --no-install-recommends git docker.io")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    if nobody and shutil.which("setpriv"):
        result = subprocess.run([*nobody, "bash", script], env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 1
        assert result.stderr.strip() == f"install-services: the system packages need root; run: sudo bash {script}"
