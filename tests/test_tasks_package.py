"""The vendored tasks package: every module collected, local.py the user's, updates merge."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maintainer.render import git, preset_names
from tests.project_helpers import project_tasks
from tests.services import run_invoke
from tests.test_copier_update import assert_no_conflicts, copy_and_commit, make_template_repo, replace, update

ALL_TASKS = {
    "build-image", "build-sif", "condor-logs", "condor-memory", "condor-plot", "condor-rerun", "condor-results",
    "condor-status", "detect-gpu", "doctor", "fetch-data", "install", "lock", "pack", "push-image", "push-sif",
    "settings", "sif-name", "slurm-rerun", "slurm-results", "slurm-status", "submit-condor", "submit-slurm", "test",
    "test-image", "test-sif", "train",
}  # fmt: skip
# The tasks of one system, listed only where the project has that system's files.
SYSTEM_TASKS = {
    "htcondor": {
        "submit-condor",
        "condor-status",
        "condor-logs",
        "condor-plot",
        "condor-results",
        "condor-rerun",
        "condor-memory",
    },
    "slurm": {"submit-slurm", "slurm-status", "slurm-results", "slurm-rerun"},
    "Dockerfile": {"build-image", "test-image", "push-image"},
    "apptainer.def": {"build-sif", "test-sif", "push-sif", "sif-name"},
}


def expected_tasks(project: Path) -> set[str]:
    unused = [names for path, names in SYSTEM_TASKS.items() if not (project / path).exists()]
    return ALL_TASKS.difference(*unused)


def listed(project: Path) -> set[str]:
    result = run_invoke(project, "--list")
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"^  (\S+)", result.stdout, re.M))


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_lists_the_tasks_of_its_systems_and_no_module_is_long(renderings, preset):
    project = renderings[preset]
    assert listed(project) == expected_tasks(project)
    for module in (project / "tasks").glob("*.py"):
        lines = len(module.read_text().splitlines())
        assert lines < 300, f"tasks/{module.name} has {lines} lines"


def test_a_task_in_local_py_is_listed_without_registering_it(copy_of):
    project = copy_of("defaults")
    local = project / "tasks" / "local.py"
    local.write_text(
        local.read_text()
        + '\n\nfrom invoke import task\n\n\n@task\ndef hello(c):\n    """Say hello."""\n    print("hello")\n'
    )
    assert listed(project) == expected_tasks(project) | {"hello"}
    assert run_invoke(project, "hello").stdout == "hello\n"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            "\nfrom invoke import task\n\n\n@task(name='pack')\ndef my_pack(c):\n    pass\n",
            "the task 'pack' is defined twice (tasks/local.py and tasks/pack.py); rename one of them.",
        ),
        (
            "\nimport nothing_of_that_name\n",
            "tasks/local.py cannot be imported (ModuleNotFoundError: No module named 'nothing_of_that_name'); fix it.",
        ),
    ],
)
def test_a_broken_local_py_is_one_sentence(copy_of, code, message):
    """Importing the package never exits; running any task says what is wrong, in one sentence."""
    project = copy_of("defaults")
    (project / "tasks" / "local.py").write_text(code)
    assert run_invoke(project, "--list").returncode == 0
    result = run_invoke(project, "settings")
    assert result.returncode != 0
    assert result.stderr.strip() == message
    assert [message] == project_tasks(project).PROBLEMS  # imported, not exited


def test_an_htcondor_only_project_lists_no_slurm_tasks(renderings):
    project = renderings["defaults"]
    assert (project / "htcondor").is_dir() and not (project / "slurm").exists()
    names = listed(project)
    assert "submit-condor" in names and not {"submit-slurm", "slurm-status"} & names


def test_update_merges_a_user_task_and_a_template_task(tmp_path):
    template = make_template_repo(tmp_path / "template-repo")
    project = copy_and_commit(template, tmp_path / "study")

    # The user: a task of their own in local.py, and an edit to a template module.
    local = project / "tasks" / "local.py"
    local.write_text(local.read_text() + '\nfrom invoke import task\n\n\n@task\ndef mine(c):\n    """My task."""\n')
    replace(project / "tasks" / "pack.py", "UNPACKED_PER_PACKED = 3", "UNPACKED_PER_PACKED = 4")
    git(project, "commit", "-q", "-am", "my task and my estimate")

    # The template: a new task in one module, a change in another, released as v2.
    data = template / "template" / "tasks" / "data.py"
    data.write_text(
        data.read_text()
        + '\n\n@task(name="data-info")\ndef data_info(c):\n'
        + '    """Say where the data comes from."""\n    print(settings(c).data.url)\n'
    )
    replace(
        template / "template" / "tasks" / "apptainer.py",
        "run this on a node that has it",
        "run this on a node with Apptainer",
    )
    local_template = template / "template" / "tasks" / "local.py"
    local_template.write_text(local_template.read_text() + "# a template change to the user's file: never applied\n")
    git(template, "commit", "-q", "-am", "template v2")
    git(template, "tag", "v2")

    update(project)

    assert {"mine", "data-info"} <= listed(project)
    assert "UNPACKED_PER_PACKED = 4" in (project / "tasks" / "pack.py").read_text()
    assert "run this on a node with Apptainer" in (project / "tasks" / "apptainer.py").read_text()
    assert "never applied" not in local.read_text() and "def mine" in local.read_text()
    assert_no_conflicts(project)
