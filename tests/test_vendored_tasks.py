"""The vendored tasks.py without an engine: settings, exact commands, missing tools.

Stood in for (absent here): pixi, pixi-pack and apptainer (tests/stand-ins record their
argv); the lock file reader is real py-rattler on pixi-docker-chtc's pixi.lock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from maintainer.checks import condor_jobs
from maintainer.render import git
from tests.project_helpers import write_data_tarball
from tests.services import STAND_INS, run_invoke

SAMPLE_LOCK = Path(
    os.environ.get("PIXI_SAMPLE_LOCK", Path(__file__).resolve().parents[2] / "shared/samples/hello-pytorch.pixi.lock")
)


@pytest.fixture
def project(copy_of):
    path = copy_of("everything")
    git(path, "init", "-q", "-b", "main")
    # A lock in the real format (the pixi-pack stand-in reads it with py-rattler, as pixi-pack does).
    subprocess.run([STAND_INS / "pixi", "lock"], cwd=path, check=True, capture_output=True)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


def invoke(project, *args, path_dirs=(STAND_INS,), extra_env=None, system_path=True):
    log = project / "standin.log"
    env = {**os.environ, "STANDIN_LOG": str(log), **(extra_env or {})}
    system = ["/usr/bin", "/bin"] if system_path else []
    env["PATH"] = os.pathsep.join([*map(str, path_dirs), str(Path(sys.executable).parent), *system])
    result = run_invoke(project, *args, env=env)
    recorded = log.read_text().splitlines() if log.exists() else []
    return result, recorded


def test_list_and_help(project):
    result, _ = invoke(project, "--list")
    for name in ("build-image", "push-image", "test-image", "submit-condor", "submit-slurm", "pack", "doctor", "lock"):
        assert name in result.stdout
    result, _ = invoke(project, "--help", "push-image")
    assert "--allow-dirty" in result.stdout and "uncommitted changes" in result.stdout


def test_settings_come_from_pixi_toml_and_environment(project):
    result, _ = invoke(project, "settings", extra_env={"INVOKE_PROJECT_IMAGE": "example.org/me/override"})
    settings = json.loads(result.stdout)
    assert settings["image"] == "example.org/me/override"
    assert settings["pixi_version"] == "0.77.0" and settings["cuda_version"] == "12.9"
    assert settings["environment"] == "gpu" and "tasks" in settings["environments"]


def test_lock_check_never_writes(project):
    result, recorded = invoke(project, "lock", "--check")
    assert result.returncode == 0, result.stderr
    assert recorded == ["pixi lock --check --dry-run"]


def test_pack_calls_pixi_pack_exactly(project):
    result, recorded = invoke(project, "pack")
    assert result.returncode == 0, result.stderr
    manifest = project / "pixi.toml"
    output = project / "environment.sh"
    assert recorded == [
        f"pixi-pack --environment gpu --platform linux-64 --create-executable --output-file {output} {manifest}"
    ]
    packed = list(project.glob("everything-on-environment-*.sh"))
    assert len(packed) == 1 and not output.exists()


def test_apptainer_tasks_call_apptainer_exactly(project):
    sha = git(project, "rev-parse", "--short=7", "HEAD").strip()
    sif = project / f"everything-on-{sha}.sif"
    for task in ("build-sif", "test-sif", "push-sif"):
        result, _ = invoke(project, task)
        assert result.returncode == 0, result.stderr
    _, recorded = invoke(project, "build-sif", "--from-docker")
    assert recorded == [
        f"apptainer build --force {sif} apptainer.def",
        f"apptainer test {sif}",
        f"apptainer push {sif} oras://127.0.0.1:5000/some-lab/everything-on:sif-{sha}",
        f"apptainer build --force {sif} docker-daemon://127.0.0.1:5000/some-lab/everything-on:{sha}",
    ]


@pytest.mark.parametrize(
    ("task", "missing"),
    [("lock", "pixi"), ("pack", "pixi-pack"), ("build-sif", "apptainer"), ("submit-slurm", "sbatch")],
)
def test_missing_tool_is_one_sentence(project, tmp_path, task, missing):
    (project / "data").mkdir(exist_ok=True)
    empty = tmp_path / "no-tools"
    empty.mkdir()
    result, recorded = invoke(project, task, path_dirs=(empty,), system_path=False)
    assert result.returncode == 127
    assert f"{missing} is not installed or not on PATH" in result.stderr
    assert "Traceback" not in result.stderr and not recorded


def test_build_image_without_lock_says_what_to_do(project):
    (project / "pixi.lock").unlink()
    result, _ = invoke(project, "build-image")
    assert result.returncode != 0
    assert "pixi.lock is missing; run `invoke lock`" in result.stderr


@pytest.mark.skipif(not SAMPLE_LOCK.is_file(), reason=f"{SAMPLE_LOCK} is absent (set PIXI_SAMPLE_LOCK)")
def test_doctor_reads_the_locked_cuda_version(project):
    shutil.copy(SAMPLE_LOCK, project / "pixi.lock")
    result, _ = invoke(project, "doctor")
    assert result.returncode == 0, result.stderr
    assert "lock CUDA       12.9" in result.stdout
    assert "nvidia-smi      missing" in result.stdout
    assert "pixi            pixi 0.0.0 (pixi stand-in for tests)" in result.stdout


def test_submit_condor_pixi_pack_flavour(project):
    write_data_tarball(project)
    result, recorded = invoke(project, "submit-condor", "--flavour", "pixi-pack", "--build", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert recorded[0].startswith("pixi-pack --environment gpu --platform linux-64 --create-executable")
    packed = next(project.glob("everything-on-environment-*.sh"))
    submitted = project / "htcondor" / "submitted-pixi-pack.sub"
    (ad,) = condor_jobs(submitted.read_text(), submitted.parent)
    assert ad["JobUniverse"] == 5 and not ad.get("WantContainer")
    assert ad["Environment"] == f"PIXI_PACK_EXECUTABLE={packed.name}"
    assert f"../{packed.name}" in ad["TransferInput"]
    assert "osdf:///chtc/staging/someone/MNIST_data.tar.gz" in ad["TransferInput"]


def test_submit_condor_apptainer_flavour_uses_osdf_and_the_commit_tag(project):
    write_data_tarball(project)
    sha = git(project, "rev-parse", "--short=7", "HEAD").strip()
    result, recorded = invoke(project, "submit-condor", "--flavour", "apptainer", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    submitted = project / "htcondor" / "submitted-apptainer.sub"
    (ad,) = condor_jobs(submitted.read_text(), submitted.parent)
    # HTCondor fetches a URL image like an input file and runs the local copy.
    assert ad["ContainerImage"] == f"everything-on-{sha}.sif" and ad["ContainerImageSource"] == "osdf"
    assert f"osdf:///chtc/staging/someone/everything-on-{sha}.sif" in ad["TransferInput"]
    assert not recorded  # the image lives on OSDF: nothing to build here


def test_submit_condor_without_condor_submit_submits_nothing(project, tmp_path):
    write_data_tarball(project)
    result, recorded = invoke(project, "submit-condor", "--flavour", "pixi-pack", "--build", path_dirs=(tmp_path,))
    assert result.returncode == 127
    assert "condor_submit is not installed or not on PATH" in result.stderr
    assert not recorded and not (project / "htcondor" / "submitted-pixi-pack.sub").exists()


def test_submit_condor_without_data_and_offline_says_so(project):
    result, recorded = invoke(
        project,
        "submit-condor",
        "--flavour",
        "pixi-pack",
        "--dry-run",
        extra_env={"INVOKE_PROJECT_DATA_URL": "http://127.0.0.1:9/MNIST_data.tar.gz"},
    )
    assert result.returncode != 0
    assert "this machine may be offline" in result.stderr
    assert not (project / "htcondor" / "submitted-pixi-pack.sub").exists()


def test_submit_interactive_status_logs_and_model_backup(project):
    write_data_tarball(project)
    (project / "htcondor" / "mnist_cnn.pt").write_bytes(b"an earlier model")
    result, recorded = invoke(project, "submit-condor", "--flavour", "pixi-pack", "--build", "--interactive")
    assert result.returncode == 0, result.stdout + result.stderr
    assert recorded[-1] == "condor_submit -interactive submitted-pixi-pack.sub"
    backups = list((project / "htcondor").glob("mnist_cnn_*.pt.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == b"an earlier model"
    assert not (project / "htcondor" / "mnist_cnn.pt").exists()

    result, recorded = invoke(project, "submit-condor", "--flavour", "pixi-pack")
    # The interactive job took the first cluster id (the stand-in counts from 4242, as a schedd counts up).
    assert result.returncode == 0 and re.search(r"^1 job\(s\) submitted to cluster 4243\.$", result.stdout, re.M)
    (project / "htcondor" / "train_4243.log").write_text("000 (4243.000.000) Job submitted\n")
    result, recorded = invoke(project, "condor-status")
    assert result.returncode == 0 and recorded[-1] == "condor_q 4243 -nobatch"
    assert re.search(r"^4243\.0 +\S+ +.* I  0    0\.0 train\.sh --epochs 14$", result.stdout, re.M), result.stdout
    result, _ = invoke(project, "condor-logs")
    assert result.returncode == 0 and "Job submitted" in result.stdout
    result, _ = invoke(project, "condor-logs", "--cluster", "7")
    assert result.returncode != 0 and "no log files for cluster 7" in result.stderr


def test_doctor_says_so_when_the_lock_is_unreadable(project):
    (project / "pixi.lock").write_text("version: 6\nenvironments: [not, a, mapping]\n")
    result, _ = invoke(project, "doctor")
    assert result.returncode != 0
    assert "py-rattler cannot read pixi.lock" in result.stderr and "Traceback" not in result.stderr
