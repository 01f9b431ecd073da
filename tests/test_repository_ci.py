"""The template repository's own CI: workflows pinned and clean, the README's commands, the journey."""

from __future__ import annotations

import re
import subprocess

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
