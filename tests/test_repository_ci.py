"""The template repository's own CI: workflows pinned and clean, the README's commands, the journey."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from maintainer.checks import check_workflows, run_checks, workflow_pitfalls
from maintainer.journey import STEPS
from maintainer.render import ROOT
from tests.test_generated_files import assert_findings

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
FACTS = ROOT / "reference" / "facts" / "github-actions.md"
# Workflows as they were before their first GitHub run, each with the pitfall it held.
BROKEN = Path(__file__).resolve().parent / "fixtures" / "workflows"


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
    assert "bash .ci/container" in (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert (ROOT / ".ci" / "container").read_text().rstrip().endswith("exec bash .ci/run")


def test_journey_workflow_runs_the_journey_script_on_real_tools():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "journey.yml").read_text())
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-24.04"
    assert job["strategy"]["matrix"]["preset"] == ["defaults", "everything"]
    uses = [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]
    assert "prefix-dev/setup-pixi" in uses and "eWaterCycle/setup-apptainer" not in uses
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "htcondor/mini:" in runs and "--name htcondor-mini" in runs
    assert "sudo rm -rf /usr/share/dotnet" in runs, "disk must be freed before the image build"
    (journey,) = [s for s in job["steps"] if "maintainer.journey" in s.get("run", "")]
    assert journey["run"] == 'python -m maintainer.journey --preset "$PRESET" --workdir "$JOURNEY_DIR" --prune'
    assert "--steps" not in journey["run"], f"the real-tool run takes every step: {', '.join(STEPS)}"


def test_journey_puts_scratch_on_the_large_disk_and_the_pool_sees_the_projects():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "journey.yml").read_text())
    (job,) = workflow["jobs"].values()
    assert job["env"]["JOURNEY_DIR"].startswith("/mnt/")
    (journey,) = [s for s in job["steps"] if "maintainer.journey" in s.get("run", "")]
    for variable in ("TMPDIR", "PIXI_CACHE_DIR", "APPTAINER_CACHEDIR", "APPTAINER_TMPDIR"):
        assert journey["env"][variable].startswith("/mnt/"), variable
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert '"data-root": "/mnt/docker"' in runs and "systemctl restart docker" in runs
    assert '--volume "$JOURNEY_DIR:$JOURNEY_DIR" htcondor/mini' in runs


def test_journey_installs_the_apptainer_the_generated_workflow_pins():
    version = yaml.safe_load((ROOT / "copier.yml").read_text())["apptainer_version"]["default"]
    assert tuple(map(int, version.split("."))) >= (1, 3, 4), "the first .deb whose AppArmor profile works"
    text = (ROOT / ".github" / "workflows" / "journey.yml").read_text()
    assert "print(f\"apptainer={questions['apptainer_version']['default']}\")" in text
    steps = yaml.safe_load(text)["jobs"]["journey"]["steps"]
    install = next(s for s in steps if s.get("name", "").startswith("Install Apptainer"))
    assert install["env"]["APPTAINER_VERSION"] == "${{ steps.versions.outputs.apptainer }}"
    assert "apptainer_${APPTAINER_VERSION}_amd64.deb" in install["run"]


@pytest.mark.parametrize(
    ("fixture", "pitfall"),
    [
        ("ci-container-job.yml", "reads a repository variable (vars.)"),
        ("ci-container-job.yml", "job tests: ${{ github.workspace }} in a container job is the host's path"),
        ("journey-setup-apptainer.yml", "installs Apptainer 1.3.0, whose .deb lacks the AppArmor profile"),
        ("journey-setup-apptainer.yml", "eWaterCycle/setup-apptainer declares node20"),
        ("tests-cache-true.yml", "setup-pixi `cache: true` fails without a committed pixi.lock"),
    ],
)
def test_the_pitfalls_check_finds_what_broke_the_first_runs(fixture, pitfall):
    problems = workflow_pitfalls((BROKEN / fixture).read_text())
    assert any(pitfall in problem for problem in problems), problems


def test_repository_workflows_have_no_pitfall_and_ask_for_nothing_configured():
    for workflow in WORKFLOWS:
        text = workflow.read_text()
        assert workflow_pitfalls(text) == [], workflow.name
        assert "secrets." not in text and "vars." not in text, f"{workflow.name}: forks' pull requests get neither"


def test_ci_runs_the_suite_as_the_containers_first_process_on_cgroup_v2():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    job = workflow["jobs"]["tests"]
    assert "container" not in job, "the runner's docker exec would land steps in the root cgroup"
    (run,) = [step["run"] for step in job["steps"] if ".ci/container" in step.get("run", "")]
    for option in ("--privileged", "--env CI=true", "debian:bookworm bash .ci/container", "/mnt/ci-tmp:/tmp"):
        assert option in run, option
    script = (ROOT / ".ci" / "container").read_text()
    # moby's hack/dind: leave the root cgroup, then enable the controllers for children.
    move = script.index("> /sys/fs/cgroup/init/cgroup.procs".replace("> ", ">"))
    assert move < script.index(">/sys/fs/cgroup/cgroup.subtree_control") < script.index("exec bash .ci/run")
    assert "--torch-backend cpu" in script and "TORCH_CPU_INDEX" not in script + str(workflow)


def test_ci_asks_the_registry_for_the_base_image_and_fails_if_it_cannot():
    job = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]["base-image"]
    (step,) = [s for s in job["steps"] if "--only base-image" in s.get("run", "")]
    assert step["env"]["RMT_NETWORK_CHECKS"] == "required"
    assert "for preset in defaults everything" in step["run"]


def test_ci_container_script_passes_shellcheck():
    result = subprocess.run(
        ["shellcheck", "--shell=bash", ".ci/container"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_check_without_its_input_fails_under_ci(monkeypatch, renderings):
    """GitHub sets CI=true: a check that finds no input (pixi's schema here) must not pass as a skip."""
    monkeypatch.setenv("PIXI_MANIFEST_SCHEMA", "/nonexistent/schema.json")
    findings = run_checks(renderings["defaults"], ["pixi"])
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"schema\.json not found.*CI=true"):
        assert_findings(findings)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="pixi JSON schema on pixi.toml"):
        assert_findings(findings)


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
