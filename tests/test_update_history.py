"""`copier update` from earlier points of the template's history keeps every edit a user made.

Projects are generated from commits of this repository (a clone with its full history, the
working tree committed on top), edited in every file a user is meant to edit, committed,
and updated to the working tree as a user would (`copier update --defaults`, no --trust).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import copier
import pytest
import yaml

from maintainer.release import released
from maintainer.render import ROOT, git
from tests.services import run_invoke
from tests.test_copier_update import CONFLICT_MARKER, assert_no_conflicts

# Key points of the history until releases accumulate; the newest release joins them.
HISTORY = {
    "fe72a58": "one tasks.py, before the tasks package",
    "565e3b6": "the tasks package and tasks/local.py arrive",
}

# Real conflicts the update must surface (markers), never drop: {point: {file: (old line, new line)}}.
# The requirements line gained TARGET.Arch (after both points) right above the user's
# request_cpus, and git's merge counts adjacent changed lines as one conflict.
CPUS = {"htcondor/docker.sub": ("request_cpus = 1\n", "request_cpus = 4\n")}
CONFLICTS = {"fe72a58": CPUS, "565e3b6": CPUS}
MARKER_BLOCK = re.compile(r"^<{7} before updating\n(.*?)^={7}\n(.*?)^>{7} after updating\n", re.M | re.S)

USER_TASK = '''

@task
def my_report(c):
    """The researcher's own report."""
    print("my report")
'''


def generate(template: Path, ref: str, project: Path, answers: dict | None = None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(
            str(template),
            str(project),
            data={"project_name": "Study", **(answers or {})},
            defaults=True,
            unsafe=False,
            vcs_ref=ref,
            quiet=True,
        )
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start from the template")
    return project


def update(project: Path, answers: dict | None = None) -> None:
    """`copier update --defaults --vcs-ref HEAD`, as a user would run it: no --trust."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_update(
            str(project),
            data=answers or {},
            defaults=True,
            unsafe=False,
            overwrite=True,
            conflict="inline",
            vcs_ref="HEAD",
            quiet=False,  # the after-update message is part of what a user sees
        )


def insert_after(path: Path, anchor: str, addition: str) -> None:
    text = path.read_text()
    assert anchor in text, f"{anchor!r} not in {path}"
    path.write_text(text.replace(anchor, anchor + addition, 1))


def edit_like_a_user(project: Path) -> dict[str, str]:
    """An edit in every file a user is meant to edit; returns {file: text that must survive}."""
    kept = {
        "pixi.toml": 'rich = ">=13"  # my own dependency\n',
        "README.md": "## My notes\n\nSeeds 1-3 live in results/seeds.\n",
        "src": "self.dropout2 = nn.Dropout(0.4)",
        "htcondor/docker.sub": "request_cpus = 4\n",
    }
    insert_after(project / "pixi.toml", "[dependencies]\n", kept["pixi.toml"])
    (project / "README.md").write_text((project / "README.md").read_text() + "\n" + kept["README.md"])
    model = project / "src/torch_MNIST.py"
    model.write_text(model.read_text().replace("self.dropout2 = nn.Dropout(0.5)", kept["src"], 1))
    sub = project / "htcondor/docker.sub"
    sub.write_text(sub.read_text().replace("request_cpus = 1\n", kept["htcondor/docker.sub"], 1))
    if (project / "htcondor/train_args.txt").is_file():
        kept["htcondor/train_args.txt"] = "--epochs 3 --lr 0.5\n--epochs 3 --lr 1.0\n"
        (project / "htcondor/train_args.txt").write_text(kept["htcondor/train_args.txt"])
    if (project / "tasks/local.py").is_file():
        kept["tasks/local.py"] = "from invoke import task\n" + USER_TASK
        insert_after(project / "tasks/local.py", '"""\n', kept["tasks/local.py"])
    else:  # before the package: the task joins tasks.py's collection, as that README said
        kept["tasks.py"] = USER_TASK + "\n\nns.add_task(my_report)\n"
        (project / "tasks.py").write_text((project / "tasks.py").read_text() + kept["tasks.py"])
    git(project, "commit", "-q", "-am", "my edits")
    return kept


def conflicted(project: Path) -> set[str]:
    return {
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.parts and CONFLICT_MARKER.search(path.read_text(errors="replace"))
    }


def resolve_as_the_readme_says(project: Path, name: str, edit: tuple[str, str]) -> None:
    """Keep the template's side, redo the user's edit on it, delete the markers."""
    path = project / name
    path.write_text(MARKER_BLOCK.sub(lambda block: block.group(2).replace(*edit), path.read_text()))


def assert_edits_survive(project: Path, kept: dict[str, str], conflicts: dict | None = None) -> None:
    for name, text in kept.items():
        if name == "src":  # the model may live in any module of src/
            found = any(text in path.read_text() for path in (project / "src").rglob("*.py"))
            assert found, f"the user's model edit {text!r} is gone from src/"
        else:
            assert (project / name).is_file(), f"the update deleted {name}"
            assert text in (project / name).read_text(), f"the user's edit to {name} is gone"
    assert conflicted(project) == set(conflicts or {}), "conflicts other than the expected ones"
    if not conflicts:
        assert_no_conflicts(project)


def listed_tasks(project: Path) -> str:
    result = run_invoke(project, "--list")
    assert result.returncode == 0, result.stderr
    return result.stdout


def move_tasks_py_into_local(project: Path) -> None:
    """What CHANGELOG 1.0.0 tells the owner of a tasks.py to do, done as they would."""
    own = (project / "tasks.py").read_text().split("@task\ndef my_report", 1)[1].split("\n\nns.add_task")[0]
    insert_after(project / "tasks/local.py", '"""\n', "\nfrom invoke import task\n\n\n@task\ndef my_report" + own)
    (project / "tasks.py").unlink()


def assert_project_tests_pass(project: Path) -> None:
    """The project's default test run (`pixi run test`'s command), on this venv's CPU torch."""
    task = tomllib.loads((project / "pixi.toml").read_text())["feature"]["test"]["tasks"]["test"]
    argv = shlex.split(task if isinstance(task, str) else task["cmd"])
    assert argv[0] == "pytest", f"pixi run test runs {argv[0]}, not pytest"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *argv[1:]],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


@pytest.mark.parametrize("ref", [*HISTORY, *(f"v{version}" for version in released(ROOT)[-1:])])
def test_update_from_history_keeps_every_user_edit(template_repo, tmp_path, ref, capsys):
    project = generate(template_repo, ref, tmp_path / "study")
    kept = edit_like_a_user(project)
    capsys.readouterr()
    update(project)
    said = " ".join(capsys.readouterr().err.split())
    # Projects from before the first release (a bare commit as _commit) are told about tasks.py.
    assert ("move your own tasks from tasks.py into tasks/local.py" in said) == (ref in HISTORY), said[-600:]
    conflicts = CONFLICTS.get(ref, {})
    assert_edits_survive(project, kept, conflicts)
    assert "my-report" in listed_tasks(project)
    if (project / "tasks.py").is_file():  # kept (copier.yml _exclude); Invoke reads it first
        move_tasks_py_into_local(project)
        kept["tasks/local.py"] = kept.pop("tasks.py").split("\n\nns.add_task")[0]
        tasks = listed_tasks(project)
        assert "my-report" in tasks and "submit-condor" in tasks, tasks
    for name, edit in conflicts.items():
        refused = run_invoke(project, "submit-condor", "--flavour", Path(name).stem, "--dry-run")
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert refused.stderr.strip().startswith(f"{name} still holds conflict markers from an update"), refused.stderr
        resolve_as_the_readme_says(project, name, edit)
    assert_edits_survive(project, kept)
    assert_project_tests_pass(project)


def test_update_with_changed_answers_keeps_every_user_edit(template_repo, tmp_path):
    """Add SLURM and Apptainer and move to a newer CUDA on a project with the user's edits."""
    project = generate(
        template_repo, "HEAD", tmp_path / "study", {"container_formats": ["docker"], "cuda_version": "12.6"}
    )
    kept = edit_like_a_user(project)
    assert not (project / "slurm").exists() and not (project / "apptainer.def").exists()
    changed = {
        "batch_systems": ["htcondor", "slurm"],
        "container_formats": ["docker", "apptainer"],
        "cuda_version": "12.9",
    }
    update(project, changed)
    assert_edits_survive(project, kept)
    assert (project / "slurm/train.sbatch").is_file() and (project / "apptainer.def").is_file()
    assert (project / "htcondor/apptainer.sub").is_file()
    manifest = (project / "pixi.toml").read_text()
    assert '"12.9' in manifest and '"12.6' not in manifest, "the CUDA version did not follow the answer"
    answers = (project / ".copier-answers.yml").read_text()
    assert "- slurm" in answers and "- apptainer" in answers and "cuda_version: '12.9'" in answers
    assert "my-report" in listed_tasks(project)
    assert_project_tests_pass(project)


def test_the_history_points_exist():
    """A shallow clone would lose the points above: fail with the reason rather than skip."""
    for ref in HISTORY:
        try:
            git(ROOT, "cat-file", "-e", f"{ref}^{{commit}}")
        except RuntimeError:
            pytest.fail(f"commit {ref} is not in this clone; clone with full history (fetch-depth: 0).")


def test_ci_checks_out_the_history():
    """actions/checkout fetches one commit unless told otherwise: the points above would be missing."""
    steps = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())["jobs"]["tests"]["steps"]
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
