"""`invoke submit-slurm` on a real single-node SLURM cluster that the suite starts and stops.

The job runs the rendered slurm/train.sbatch with RUNNER=python (this machine's CPU torch
stands where pixi's environment would be; pixi is absent here).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
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


def sweep_lines(project, env, array: str) -> list[str]:
    result = invoke(project, env, "slurm-status", "--job", array)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith(f"task {array}_")]


def wait_for_sweep(project, env, array: str, timeout=300) -> list[str]:
    states = []

    def settled():
        states.append(sweep_lines(project, env, array))
        return states[-1] and all(line.endswith(": done") or ": failed: " in line for line in states[-1])

    wait_for(settled, timeout, f"sweep {array}")
    return states[-1]


def results_rows(project, env, array: str) -> list[dict]:
    result = invoke(project, env, "slurm-results", "--job", array)
    assert result.returncode == 0, result.stdout + result.stderr
    return list(csv.DictReader((project / "slurm" / "results" / f"{array}.csv").open()))


def test_a_sweep_is_one_job_array_and_a_rerun_resubmits_only_its_failed_task(cluster, tmp_path):
    """Four tasks in one array (two at a time); the third fails (its data is not staged yet).
    slurm-rerun resubmits that task alone, into the same results directory, and the table then
    has four rows with accuracies."""
    project = render(tmp_path / "study", load_answers("apptainer-slurm"))
    write_data_tarball(project)
    with tarfile.open(project / "MNIST_data.tar.gz") as tar:
        tar.extractall(project, filter="data")  # data/ once: tasks starting together do not race to unpack it
    sweep = [f"--epochs 1 --device cpu --lr {lr}" for lr in (0.5, 1.0)]
    sweep += ["--epochs 1 --device cpu --data-dir staged-later", "--epochs 1 --device cpu --lr 2.0"]
    env = {**cluster, "INVOKE_PROJECT_SLURM_MAX_RUNNING": "2"}
    result = invoke(project, env, "submit-slurm", *SMALL, *[a for line in sweep for a in ("--queue", line)])
    assert result.returncode == 0, result.stdout + result.stderr
    array = re.search(r"sweep (\d+): one job array of 4 task\(s\), at most 2 running", result.stdout).group(1)
    records = subprocess.run(["scontrol", "-o", "show", "job", array], env=cluster, capture_output=True, text=True)
    assert {m for m in re.findall(r"ArrayJobId=(\d+)", records.stdout)} == {array}, records.stdout
    assert re.search(r"ArrayTaskId=\S*%2\b|ArrayTaskThrottle=2\b", records.stdout), records.stdout

    lines = wait_for_sweep(project, env, array)
    assert [line.split("]: ")[1] for line in lines][:2] == ["done", "done"], lines
    assert lines[2].startswith(f"task {array}_2 [--epochs 1 --device cpu --data-dir staged-later]: failed: FAILED")
    rows = results_rows(project, env, array)
    assert [bool(r["final_test_accuracy"]) for r in rows] == [True, True, False, True]
    assert rows[0]["results"] == f"slurm/results/{array}_0" and len(rows[0]["data_sha256"]) == 64

    dry = invoke(project, env, "slurm-rerun", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert [line for line in dry.stdout.splitlines() if "resubmit" in line] == [
        f"would resubmit task {array}_2 [--epochs 1 --device cpu --data-dir staged-later]"
    ]
    shutil.copytree(project / "data", project / "staged-later")  # the data arrives; the task can run now
    rerun = invoke(project, env, "slurm-rerun")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert re.search(rf"job array (\d+) reruns task\(s\) 2 of sweep {array}", rerun.stdout), rerun.stdout
    lines = wait_for_sweep(project, env, array)
    assert all(line.endswith(": done") for line in lines), lines
    rows = results_rows(project, env, array)
    assert len(rows) == 4 and all(float(r["final_test_accuracy"]) >= 0 for r in rows)
    assert rows[2]["results"] == f"slurm/results/{array}_2" and rows[2]["epochs"] == "1"
