"""The generated monthly `copier update` pull request: what it runs, with which rights, and how to stop it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import yaml
from packaging.version import Version

from maintainer.render import ROOT, git
from tests.test_update_history import edit_like_a_user, generate

WORKFLOW = ".github/workflows/template-update.yml"


def test_monthly_update_pull_request_runs_copier_without_trust(renderings):
    project = renderings["defaults"]
    workflow = yaml.safe_load((project / WORKFLOW).read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert re.fullmatch(r"\d+ \d+ \d+ \* \*", triggers["schedule"][0]["cron"]), "not once a month"
    assert "workflow_dispatch" in triggers
    assert workflow["permissions"] == {}
    job = workflow["jobs"]["update"]
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    script = job["steps"][1]["run"]
    assert "copier==" in script and "copier update --defaults --conflict inline" in script
    commands = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    assert "--trust" not in commands and "--UNSAFE" not in commands
    pull_request = job["steps"][2]["with"]
    assert pull_request["branch"] == "template-update" and "body.md" in pull_request["body-path"]
    readme = (project / "README.md").read_text()
    assert "template-update.yml" in readme and "gh workflow disable template-update.yml" in readme
    assert not (renderings["cpu-linux"] / WORKFLOW).exists()  # no GitHub Actions, no workflow


def test_the_step_updates_and_its_pull_request_body_names_the_conflicts(renderings, template_repo, tmp_path):
    """The step's own shell, with the real Copier (this venv's, the pinned version), on a 565e3b6 project."""
    project = generate(template_repo, "565e3b6", tmp_path / "study")
    kept = edit_like_a_user(project)
    script = yaml.safe_load((renderings["defaults"] / WORKFLOW).read_text())
    script = script["jobs"]["update"]["steps"][1]["run"]
    pinned = re.search(r'pipx run --spec "copier==([0-9.]+)" copier', script)
    minimum = yaml.safe_load((ROOT / "copier.yml").read_text())["_min_copier_version"]
    assert pinned and Version(pinned.group(1)) >= Version(minimum), "the workflow pins no Copier the template accepts"
    script = script.replace(pinned.group(0), f"{sys.executable} -m copier", 1)
    env = {**os.environ, "RUNNER_TEMP": str(tmp_path), "HAS_UPDATE_TOKEN": "true"}
    result = subprocess.run(["bash", "-e", "-c", script], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    body = (tmp_path / "body.md").read_text()
    assert "These files hold conflicts to resolve" in body and "- htcondor/docker.sub\n" in body, body
    assert "Review the update with `git status`" in body  # Copier's after-update message, passed on
    assert "request_cpus = 4" in (project / "htcondor/docker.sub").read_text()
    assert all(text in (project / name).read_text() for name, text in kept.items() if name != "src")
    status = git(project, "status", "--porcelain")
    assert status and not re.search(r"^(UU|AA|DU|UD) ", status, re.M), "unmerged paths left for the pull request"
