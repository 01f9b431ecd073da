"""Sweeps without an engine: condor-status reasons, condor-results, condor-rerun, the array sbatch.

Stood in for (absent here): condor_submit, condor_q, condor_history and condor_rm
(tests/stand-ins). The test plays the schedd: it writes each job's JobStatus, HoldReason and
ExitCode into the stand-ins' queue, with the values and texts of HTCondor's manual (Job
ClassAd Attributes: JobStatus table; HoldReasonCode table, 12 TransferOutputError, 34
JobOutOfResources), and writes what HTCondor would bring back into results/CLUSTER.PROC.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from maintainer.render import load_answers, render
from tests.project_helpers import write_data_tarball
from tests.services import STAND_INS
from tests.test_vendored_tasks import committed, invoke, one_sentence

# A real HoldReason for a job whose train.sh failed: the starter could not send metrics.json
# back (transfer_output_files lists it), HoldReasonCode 12, subcode 2 (ENOENT).
TRANSFER_HOLD = (
    "Error from slot1_1@e1234.chtc.wisc.edu: STARTER at 10.0.0.1 failed to send file(s) to <10.0.0.2:9618>: "
    "error reading from /var/lib/condor/execute/dir_1/metrics.json: (errno 2) No such file or directory; "
    "SHADOW failed to receive file(s) from <10.0.0.1:9618>"
)
MEMORY_HOLD = "Error from slot1_1@e1234.chtc.wisc.edu: Job has gone over cgroup memory limit of 2048 megabytes."
SWEEP = ["--epochs 1 --lr 0.5", "--epochs 1 --lr 1.0", "--epochs 2 --lr 0.5", "--epochs 2 --lr 1.0"]


@pytest.fixture
def project(copy_of):
    path = copy_of("everything")
    subprocess.run([STAND_INS / "pixi", "lock"], cwd=path, check=True, capture_output=True)  # a v7 lock
    write_data_tarball(path)
    return committed(path)


def queue_file(project: Path) -> Path:
    return project / ".standin-condor-queue.json"


def set_job(project: Path, job_id: str, **attributes) -> None:
    """Play the schedd: change a job's ad in the stand-ins' queue."""
    path = queue_file(project)
    clusters = json.loads(path.read_text())
    cluster, proc = (int(x) for x in job_id.split("."))
    for entry in clusters:
        for job in entry["jobs"]:
            if entry["cluster"] == cluster and job["proc"] == proc:
                job["ad"].update(attributes)
    path.write_text(json.dumps(clusters))


def bring_back(project: Path, job_id: str, accuracy: float, provenance: dict | None = None) -> None:
    """What transfer_output_remaps brings back for a finished job: its metrics.json."""
    directory = project / "htcondor" / "results" / job_id
    directory.mkdir(parents=True, exist_ok=True)
    epochs = [{"epoch": 1, "test_accuracy": accuracy}]
    metrics = {"epochs": epochs, "final_test_accuracy": accuracy, "train_seconds": 12.5}
    metrics["provenance"] = provenance or {"commit": "a" * 40, "gpu": "NVIDIA A100-SXM4-80GB", "driver": "550.54"}
    (directory / "metrics.json").write_text(json.dumps(metrics))


def submit_sweep(project: Path) -> str:
    args = [a for line in SWEEP for a in ("--queue", line)]
    env = {"INVOKE_PROJECT_HTCONDOR_OSDF_PATH": ""}
    result, _ = invoke(project, "submit-condor", "--flavour", "pixi-pack", "--build", *args, extra_env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return (project / "htcondor" / ".last-cluster").read_text().strip()


def test_status_gives_each_jobs_state_and_a_held_jobs_reason(project):
    cluster = submit_sweep(project)
    set_job(project, f"{cluster}.0", JobStatus=2)
    set_job(project, f"{cluster}.1", JobStatus=5, HoldReason=MEMORY_HOLD, HoldReasonCode=34, HoldReasonSubCode=0)
    set_job(project, f"{cluster}.2", JobStatus=4, ExitCode=1, ExitBySignal=False)
    result, recorded = invoke(project, "condor-status")
    assert result.returncode == 0, result.stderr
    assert f"condor_q {cluster} -json -attributes" in "\n".join(recorded)
    lines = [line for line in result.stdout.splitlines() if line.startswith("job ")]
    assert lines == [
        f"job {cluster}.0 [--epochs 1 --lr 0.5]: running",
        f"job {cluster}.1 [--epochs 1 --lr 1.0]: held: {MEMORY_HOLD} (HoldReasonCode 34, subcode 0)",
        f"job {cluster}.2 [--epochs 2 --lr 0.5]: failed: exit code 1",
        f"job {cluster}.3 [--epochs 2 --lr 1.0]: idle",
    ]


def test_results_table_and_a_rerun_of_only_the_failed_jobs(project):
    cluster = submit_sweep(project)
    for proc, accuracy in ((0, 0.91), (2, 0.95)):
        set_job(project, f"{cluster}.{proc}", JobStatus=4, ExitCode=0)
        bring_back(project, f"{cluster}.{proc}", accuracy)
    set_job(project, f"{cluster}.1", JobStatus=5, HoldReason=TRANSFER_HOLD, HoldReasonCode=12, HoldReasonSubCode=2)
    set_job(project, f"{cluster}.3", JobStatus=4, ExitCode=1)

    result, _ = invoke(project, "condor-results")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((project / "htcondor" / "results" / f"{cluster}.csv").open()))
    assert [r["state"] for r in rows] == ["done", f"held: {TRANSFER_HOLD} (HoldReasonCode 12, subcode 2)", "done",
                                          "failed: exit code 1"]  # fmt: skip
    assert [r["final_test_accuracy"] for r in rows] == ["0.9100", "", "0.9500", ""]
    assert [r["arguments"] for r in rows] == SWEEP and rows[0]["gpu"] == "NVIDIA A100-SXM4-80GB"
    assert f"2 of 4 job(s) have results; the table is in htcondor/results/{cluster}.csv" in result.stdout

    result, recorded = invoke(project, "condor-rerun", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"would resubmit job {cluster}.1 [--epochs 1 --lr 1.0]" in result.stdout
    assert f"would resubmit job {cluster}.3 [--epochs 2 --lr 1.0]" in result.stdout
    assert f"{cluster}.0" not in result.stdout and not any(r.startswith("condor_submit") for r in recorded)

    result, recorded = invoke(project, "condor-rerun")
    assert result.returncode == 0, result.stdout + result.stderr
    submit = next(r for r in recorded if r.startswith("condor_submit"))
    assert f"-append job_dir = $CHOICE(Process, results/{cluster}.1, results/{cluster}.3)" in submit
    assert "-append MY.ProvenanceCommit = " in submit and submit.endswith("pixi-pack.sub")
    assert f"condor_rm {cluster}.1" in recorded  # the held job, replaced by the rerun
    rerun = str(int(cluster) + 1)
    queued = json.loads(queue_file(project).read_text())[-1]["jobs"]
    assert [job["args"] for job in queued] == ["--epochs 1 --lr 1.0", "--epochs 2 --lr 1.0"]

    result, _ = invoke(project, "condor-results")
    assert f"job {cluster}.1" not in result.stdout  # rows are named by job, not by a sentence
    rows = list(csv.DictReader((project / "htcondor" / "results" / f"{cluster}.csv").open()))
    assert [r["state"] for r in rows] == ["done", f"idle (rerun as {rerun}.0)", "done", f"idle (rerun as {rerun}.1)"]

    # The rerun's jobs finish; their results come back where the first run's would have.
    for proc, index, accuracy in ((0, 1, 0.93), (1, 3, 0.97)):
        set_job(project, f"{rerun}.{proc}", JobStatus=4, ExitCode=0)
        bring_back(project, f"{cluster}.{index}", accuracy, {"commit": "b" * 40})
    result, _ = invoke(project, "condor-results", "--cluster", cluster)
    rows = list(csv.DictReader((project / "htcondor" / "results" / f"{cluster}.csv").open()))
    assert [r["final_test_accuracy"] for r in rows] == ["0.9100", "0.9300", "0.9500", "0.9700"]
    assert "note: these jobs differ in more than their arguments: commit, gpu, driver" in result.stdout
    result, _ = invoke(project, "condor-rerun")
    assert result.returncode == 0 and "nothing to rerun" in result.stdout


def test_rerun_without_a_record_is_one_sentence(project):
    result, _ = invoke(project, "condor-rerun", "--cluster", "77")
    assert one_sentence(result) == "cluster 77 has no sweep record (htcondor/results/77.sweep.json); resubmit it whole."


def test_more_than_one_gpu_is_refused_in_a_sentence(project):
    submit = project / "htcondor" / "docker.sub"
    submit.write_text(submit.read_text().replace("request_gpus = 1", "request_gpus = 2"))
    result, recorded = invoke(project, "submit-condor", "--dry-run")
    assert one_sentence(result) == (
        "htcondor/docker.sub: request_gpus = 2, but training uses one GPU (src/torch_MNIST.py has no multi-GPU "
        "training); set request_gpus = 1."
    )
    assert not recorded


@pytest.mark.parametrize(("site", "duration"), [("ospool", "Medium"), ("chtc", None)])
def test_submit_files_follow_the_site_and_limit_idle_jobs(tmp_path, monkeypatch, site, duration):
    """OSPool asks every job for +JobDurationCategory (Medium: expected < 10 h); a sweep
    materializes at most max_idle idle jobs, except from a transferred .sif (HTCONDOR-3092)."""
    htcondor = pytest.importorskip("htcondor")
    path = render(tmp_path / site, {**load_answers("defaults"), "batch_site": site})
    monkeypatch.chdir(path / "htcondor")  # queue ... from train_args.txt is read from here
    monkeypatch.setenv("CONDOR_CONFIG", os.devnull)
    docker = list(htcondor.Submit((path / "htcondor" / "docker.sub").read_text()).jobs())[0]
    apptainer = list(htcondor.Submit((path / "htcondor" / "apptainer.sub").read_text()).jobs())[0]
    assert docker.get("JobDurationCategory") == duration and apptainer.get("JobDurationCategory") == duration
    assert docker["JobMaterializeMaxIdle"] == 100 and "JobMaterializeMaxIdle" not in apptainer
