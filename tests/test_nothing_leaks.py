"""Issue 21 on a rendered project: nothing leaks, nothing unverified runs, nothing overwrites the project.

Each test reproduces one attack or careless use: a token in the git remote, a dirty tree
under a commit's name, $ENV() in a sweep argument, a swapped staged file, a path with a
comma or % for sbatch, and a hostile data archive reaching the SLURM and HTCondor scripts.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.project_helpers import dry_run_ads, project_tasks, tiny_data_pins, write_data_tarball
from tests.services import STAND_INS
from tests.test_vendored_tasks import _fake_sbatch, committed, invoke, one_sentence


@pytest.fixture
def project(copy_of):
    """The everything preset, locked by the pixi stand-in and committed (as test_vendored_tasks' fixture)."""
    path = copy_of("everything")
    subprocess.run([STAND_INS / "pixi", "lock"], cwd=path, check=True, capture_output=True)
    return committed(path)


@pytest.mark.parametrize(
    ("remote", "label"),
    [
        ("https://jane:ghp_TOKEN@github.com/jane/study.git", "https://github.com/jane/study"),
        ("https://x-access-token:TOKEN@git.example.org:8443/lab/study", "https://git.example.org:8443/lab/study"),
        ("ssh://git@github.com/jane/study.git", "https://github.com/jane/study"),
        ("git@github.com:jane/study.git", "https://github.com/jane/study"),
        ("/home/jane/study", ""),
        ("file:///home/jane/study", ""),
        ("../study", ""),
        ("", ""),
    ],
)
def test_the_source_label_carries_no_credentials_and_no_local_path(project, remote, label):
    assert project_tasks(project).images.source_url(remote) == label


def test_no_sif_is_built_or_pushed_from_a_dirty_tree(project):
    (project / "src" / "torch_MNIST.py").write_text("# not committed\n")
    for task in ("build-sif", "push-sif"):
        result, recorded = invoke(project, task)
        assert "uncommitted changes" in one_sentence(result) and recorded == []


def test_tag_and_build_cannot_disagree(project):
    write_data_tarball(project)
    result, recorded = invoke(project, "submit-condor", "--flavour", "apptainer", "--tag", "deadbee", "--build")
    assert "drop one of them" in one_sentence(result) and recorded == []


SECRET = "hunter2-secret-token"


@pytest.mark.parametrize("where", ["--queue", "train_args.txt"])
def test_env_macros_in_arguments_reach_the_job_literally(project, where):
    """The real HTCondor bindings (htcondor.Submit(...).jobs()) say what Arguments the job gets."""
    pytest.importorskip("htcondor")
    write_data_tarball(project)
    args = '--note $ENV(SECRET_TOKEN) $(Cluster) $RANDOM_INTEGER(1,9) "quoted" 50%'
    queue = ("--queue", args) if where == "--queue" else ()
    if where == "train_args.txt":
        (project / "htcondor" / "train_args.txt").write_text(f"# a comment\n{args}\n")
    result, _ = invoke(project, "submit-condor", "--flavour", "apptainer", "--build", "--dry-run", *queue,
                       extra_env={"SECRET_TOKEN": SECRET})  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (ad,) = dry_run_ads(result.stdout)
    assert SECRET not in result.stdout
    assert ad["Arguments"] == args


def test_double_dollar_is_refused(project):
    write_data_tarball(project)
    result, _ = invoke(project, "submit-condor", "--flavour", "apptainer", "--build", "--dry-run",
                       "--queue", "--x $$(Memory)")  # fmt: skip
    assert "$$" in one_sentence(result)


@pytest.fixture
def staged(project, tmp_path):
    """The everything preset stages under /chtc/staging/someone: a directory of our own stands for it."""
    staging = tmp_path / "staging"
    staging.mkdir()
    write_data_tarball(project)
    return staging


def submit_apptainer(project, staging):
    return invoke(project, "submit-condor", "--flavour", "apptainer", "--build",
                  extra_env={"INVOKE_PROJECT_HTCONDOR_STAGING_DIR": str(staging)})  # fmt: skip


def test_a_swapped_staged_file_is_never_reported_staged(project, staged):
    (staged / "MNIST_data.tar.gz").write_bytes(b"someone else's data")
    result, recorded = submit_apptainer(project, staged)
    assert "holds a different MNIST_data.tar.gz" in one_sentence(result)
    assert (staged / "MNIST_data.tar.gz").read_bytes() == b"someone else's data"  # never replaced
    assert not [line for line in recorded if line.startswith("condor_submit")]


def test_a_staged_file_is_group_readable_whatever_the_umask(project, staged):
    previous = os.umask(0)
    try:
        result, _ = submit_apptainer(project, staged)
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stdout + result.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in staged.iterdir()}
    assert modes["MNIST_data.tar.gz"] == 0o644, modes
    again, _ = submit_apptainer(project, staged)
    assert "already staged" in again.stdout and "same content" in again.stdout


def test_sbatch_gets_paths_with_commas_and_percent_intact(copy_of, tmp_path):
    odd = tmp_path / "lab,50%u"
    odd.mkdir()
    project = committed(copy_of("everything").rename(odd / "study"))
    (project / "data").mkdir()
    result, recorded = invoke(project, "submit-slurm", path_dirs=(STAND_INS, _fake_sbatch(project)))
    assert result.returncode == 0, result.stderr
    assert f"--output={project}/slurm/train_%j.out".replace("50%u", "50%%u") in recorded[0]
    assert recorded[1].startswith(f"SIF={project}/") and "--export=ALL" in recorded[0].split()


# ---------------------------------------------------------------- hostile archives in jobs
def hostile_archive(project: Path) -> Path:
    archive = project / "MNIST_data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        member = tarfile.TarInfo("tasks/__init__.py")
        payload = b"raise SystemExit('pwned')\n"
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    return archive


def test_the_slurm_script_verifies_and_refuses_a_hostile_archive(copy_of):
    project = copy_of("apptainer-slurm")
    before = (project / "tasks" / "__init__.py").read_bytes()
    hostile_archive(project)
    env = {**os.environ, **tiny_data_pins(project), "RUNNER": "python"}
    result = subprocess.run(["bash", "slurm/train.sbatch"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 1 and "outside data/, so nothing was extracted" in result.stderr
    assert (project / "tasks" / "__init__.py").read_bytes() == before and not (project / "data").exists()


def test_the_slurm_script_refuses_an_archive_its_pins_do_not_match(copy_of):
    project = copy_of("apptainer-slurm")
    write_data_tarball(project)  # pixi.toml pins the real archive, not this one
    env = {**os.environ, "RUNNER": "python"}
    env = {key: value for key, value in env.items() if not key.startswith("INVOKE_PROJECT_DATA_")}
    result = subprocess.run(["bash", "slurm/train.sbatch"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 1 and "does not match its pin" in result.stderr
    assert not (project / "data").exists()


def test_the_htcondor_job_refuses_a_hostile_archive(copy_of, tmp_path):
    project = copy_of("everything")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for name in ("src", "pixi.toml"):
        source = project / name
        (subprocess.run(["cp", "-r", str(source), str(scratch / name)], check=True))
    (scratch / "train.sh").write_bytes((project / "htcondor" / "train.sh").read_bytes())
    archive = hostile_archive(scratch)
    (scratch / "unpack.sh").write_text(": > activate.sh\n")  # a pixi-pack stand-in: the environment is ours
    env = {**os.environ, **tiny_data_pins(scratch), "PIXI_PACK_EXECUTABLE": "unpack.sh"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(["bash", "train.sh"], cwd=scratch, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "outside data/, so nothing was extracted" in result.stderr, result.stderr
    assert not (scratch / "tasks").exists() and archive.is_file()


# ---------------------------------------------------------------- timeouts
def test_every_subprocess_call_in_the_tasks_has_a_timeout(renderings):
    """nvidia-smi, scontrol, sacct, git, condor_submit, sbatch, the bindings' child: none may hang a task."""
    import ast

    missing = []
    for module in sorted((renderings["everything"] / "tasks").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            calls = isinstance(node, ast.Call) and ast.unparse(node.func) == "subprocess.run"
            if calls and not any(keyword.arg == "timeout" for keyword in node.keywords):
                missing.append(f"{module.name}:{node.lineno}")
    assert missing == []


def test_a_hanging_query_or_submission_is_one_sentence(renderings):
    from invoke import Exit

    helpers = project_tasks(renderings["everything"]).helpers
    previous, helpers.QUERY_TIMEOUT = helpers.QUERY_TIMEOUT, 0.5
    try:
        with pytest.raises(Exit, match=r"sleep did not answer within 0.5 s"):
            helpers.query(["sleep", "30"])
    finally:
        helpers.QUERY_TIMEOUT = previous
    with pytest.raises(Exit, match=r"sbatch did not finish within 0.5 s"):
        helpers.run(["sleep", "30"], "sbatch", capture=True, timeout=0.5)
