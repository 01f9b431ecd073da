"""Tasks refuse, naming the file, to read a file an update left with conflict markers.

The markers are the ones `copier update --conflict inline` writes (copier/_main.py runs
`git merge-file -L "before updating" -L "last update" -L "after updating"`); a real one,
from an update of an old project, is covered in test_update_history.py.
"""

from __future__ import annotations

import pytest

from tests.services import run_invoke


def conflict(path, old: str, ours: str, theirs: str) -> None:
    """Leave ``old`` as copier's inline merge leaves a line both sides changed."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    block = f"<<<<<<< before updating\n{ours}=======\n{theirs}>>>>>>> after updating\n"
    path.write_text(text.replace(old, block, 1))


def test_pixi_toml_with_markers_is_named_not_a_toml_error(copy_of):
    project = copy_of("defaults")
    conflict(project / "pixi.toml", "[dependencies]\n", '[dependencies]\nrich = ">=13"\n', "[dependencies]\n")
    result = run_invoke(project, "settings")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "pixi.toml still holds conflict markers from an update (line "
        f"{(project / 'pixi.toml').read_text().splitlines().index('<<<<<<< before updating') + 1}); keep the "
        "lines you want between <<<<<<< and >>>>>>>, delete the markers, then run the task again."
    )


@pytest.mark.parametrize("name", ["htcondor/docker.sub", "htcondor/train_args.txt"])
def test_submit_condor_refuses_a_conflicted_file_before_building_anything(copy_of, name):
    project = copy_of("defaults")
    path = project / name
    first = path.read_text().splitlines(keepends=True)[-1]
    conflict(path, first, first.replace("\n", " # mine\n"), first.replace("\n", " # theirs\n"))
    result = run_invoke(project, "submit-condor", "--flavour", "docker", "--dry-run")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"{name} still holds conflict markers from an update (line ")
    assert "would check" not in result.stdout and "would build" not in result.stdout


def test_submit_slurm_refuses_a_conflicted_script(copy_of):
    project = copy_of("everything")
    path = project / "slurm/train.sbatch"
    conflict(path, "#SBATCH --requeue\n", "#SBATCH --requeue\n#SBATCH --mem=32G\n", "#SBATCH --requeue\n")
    result = run_invoke(project, "submit-slurm")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("slurm/train.sbatch still holds conflict markers from an update")


def test_a_line_of_equals_signs_alone_is_not_a_conflict(copy_of):
    """Markdown-style rules in comments are not markers: only <<<<<<< and >>>>>>> lines are."""
    project = copy_of("defaults")
    path = project / "pixi.toml"
    path.write_text(path.read_text() + "# =======\n")
    assert run_invoke(project, "settings").returncode == 0
