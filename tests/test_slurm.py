"""`invoke submit-slurm` on a real single-node SLURM cluster that the suite starts and stops.

The job runs the rendered slurm/train.sbatch with RUNNER=python (this machine's CPU torch
stands where pixi's environment would be; pixi is absent here).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maintainer.render import git, load_answers, render
from tests.project_helpers import tiny_data_pins, write_data_tarball
from tests.services import STAND_INS, TIMINGS, run_invoke, slurm_cluster, start_or_skip, wait_for

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with contextlib.ExitStack() as stack:
        yield start_or_skip(stack, slurm_cluster(tmp_path_factory.mktemp("slurm")))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    path = render(tmp_path_factory.mktemp("slurm-project") / "study", load_answers("apptainer-slurm"))
    write_data_tarball(path)
    return path


# The template asks for 4 CPUs per job; this test node has 2.
SMALL = ("--sbatch-option", "--cpus-per-task=1")


def invoke(project, env, *args, runner="python"):
    # The tiny archive's pins reach the job (sbatch --export=ALL), which verifies it before extracting.
    env = {**env, **tiny_data_pins(project), "RUNNER": runner}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return run_invoke(project, *args, env=env)


def wait_until_done(project, env, job_id, timeout=240):
    states = []

    def finished():
        result = invoke(project, env, "slurm-status", "--job", job_id)
        states.append(result)
        return re.search(r": (COMPLETED|FAILED|CANCELLED|TIMEOUT)", result.stdout)

    wait_for(finished, timeout, f"job {job_id}")
    return states[-1]


def test_training_job_completes_and_returns_the_model(cluster, project):
    started = time.perf_counter()
    result = invoke(project, cluster, "submit-slurm", *SMALL, "--args", "--epochs 1 --device cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = re.search(r"job (\d+)", result.stdout).group(1)
    status = wait_until_done(project, cluster, job_id)
    turnaround = time.perf_counter() - started
    log = project / "slurm" / f"train_{job_id}.out"
    assert status.returncode == 0 and f"job {job_id}: COMPLETED" in status.stdout, status.stdout + log.read_text()
    results = project / "slurm" / "results" / job_id  # each job's own directory
    assert (results / "mnist_cnn.pt").stat().st_size > 0 and (results / "metrics.json").is_file()
    assert f"results: slurm/results/{job_id}/ holds checkpoint.pt, metrics.json, mnist_cnn.pt" in status.stdout
    assert "epoch  1:" in log.read_text()
    TIMINGS["SLURM job turnaround (submit to COMPLETED)"] = turnaround


def test_failing_job_is_reported(cluster, project):
    result = invoke(project, cluster, "submit-slurm", *SMALL, "--args", "--data-dir nowhere")
    assert result.returncode == 0, result.stderr
    job_id = re.search(r"job (\d+)", result.stdout).group(1)
    status = wait_until_done(project, cluster, job_id)
    assert status.returncode != 0
    assert f"job {job_id} ended FAILED" in status.stderr


def test_missing_data_submits_nothing(cluster, project, tmp_path):
    bare = render(tmp_path / "bare", load_answers("apptainer-slurm"))
    before = subprocess.run(["squeue", "-h"], env=cluster, capture_output=True, text=True).stdout
    result = invoke(bare, cluster, "submit-slurm")
    assert result.returncode != 0
    assert "run `invoke fetch-data` first" in result.stderr
    after = subprocess.run(["squeue", "-h"], env=cluster, capture_output=True, text=True).stdout
    assert before == after


def test_preempted_job_requeues_and_resumes(cluster, tmp_path):
    """TERM to the batch shell (as --signal=B:TERM sends it before the time limit): the
    script passes it to python, which checkpoints and exits 85; the job requeues itself
    and its second run resumes, ending with the epochs asked for, each once."""
    project = render(tmp_path / "study", load_answers("apptainer-slurm"))
    write_data_tarball(project, train=4096, test=256)  # epochs of a few seconds: time to signal
    result = invoke(project, cluster, "submit-slurm", *SMALL, "--args", "--epochs 4 --device cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = re.search(r"job (\d+)", result.stdout).group(1)
    log = project / "slurm" / f"train_{job_id}.out"
    wait_for(lambda: "epoch  1:" in log.read_text(), 240, f"epoch 1 of job {job_id}")
    # --batch: the batch shell alone, like --signal=B:; python hears of it only through the trap.
    subprocess.run(["scancel", "--signal=TERM", "--batch", job_id], env=cluster, check=True)
    # The requeued job starts again once its old credential expires (cred_expire, tests/services.py).
    status = wait_until_done(project, cluster, job_id, timeout=300)
    text = log.read_text()
    assert f"job {job_id}: COMPLETED" in status.stdout, status.stdout + text
    assert "TERM received" in text and f"requeueing job {job_id}" in text
    stopped = int(re.search(r"checkpoint holds epoch (\d+), exiting 85", text).group(1))
    assert stopped < 4 and f"resumed from epoch {stopped}" in text
    assert "Restarts=1" in scontrol_job(cluster, job_id)
    results = project / "slurm" / "results" / job_id
    metrics = json.loads((results / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4]
    assert metrics["resumed_from_epoch"] == stopped
    assert (results / "checkpoint.pt").is_file() and (results / "mnist_cnn.pt").stat().st_size > 0


def scontrol_job(cluster, job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], env=cluster, capture_output=True, text=True).stdout


def test_the_apptainer_runner_runs_this_commits_sif(cluster, tmp_path):
    """RUNNER=apptainer: the job runs `apptainer run` on the .sif submit-slurm names (the one
    SIF name); the apptainer stand-in runs the command on this host instead of a container."""
    project = render(tmp_path / "study", load_answers("apptainer-slurm"))
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start")
    write_data_tarball(project)
    log = tmp_path / "apptainer.log"
    env = {**cluster, "STANDIN_LOG": str(log), "PATH": f"{STAND_INS}{os.pathsep}{cluster['PATH']}"}
    assert invoke(project, env, "build-sif").returncode == 0
    sif = project / invoke(project, env, "sif-name").stdout.strip()
    assert sif.is_file()
    result = invoke(project, env, "submit-slurm", *SMALL, "--args", "--epochs 1 --device cpu", runner="apptainer")
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = re.search(r"job (\d+)", result.stdout).group(1)
    status = wait_until_done(project, env, job_id)
    output = (project / "slurm" / f"train_{job_id}.out").read_text()
    assert f"job {job_id}: COMPLETED" in status.stdout, status.stdout + output
    assert "runner apptainer" in output and "epoch  1:" in output
    runs = [line for line in log.read_text().splitlines() if line.startswith("apptainer run")]
    assert runs == [
        f"apptainer run --nv --bind {project} --pwd {project} {sif} python src/torch_detect_GPU.py",
        f"apptainer run --nv --bind {project} --pwd {project} {sif} python src/torch_MNIST.py --data-dir data "
        f"--save-model --model slurm/results/{job_id}/mnist_cnn.pt --metrics slurm/results/{job_id}/metrics.json "
        f"--checkpoint slurm/results/{job_id}/checkpoint.pt --epochs 1 --device cpu",
    ]
    assert (project / "slurm" / "results" / job_id / "mnist_cnn.pt").stat().st_size > 0
