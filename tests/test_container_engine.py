"""The vendored Invoke suite against a real Docker engine and a real registry.

The suite starts its own dockerd and Debian's docker-registry, builds a local base image
with debootstrap (no image can be pulled here), and drives `invoke build-image`,
`test-image` and `push-image` in a rendered project.

Then `invoke submit-condor` runs against that registry, and the rendered HTCondor job
script runs inside the built image the way an execute point runs it.

Stood in for (absent here): pixi, inside the base image (tests/stand-ins/pixi), and
condor_submit (tests/stand-ins). Docker, the registry, the Dockerfile, the tasks package, the
job script, the HTCondor bindings and the training code are real.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from maintainer.checks import read_manifest
from maintainer.render import git, load_answers, render
from tests.project_helpers import dry_run_ads, tiny_data_pins, write_data_tarball
from tests.services import (
    STAND_INS,
    TIMINGS,
    build_base_image,
    docker_engine,
    free_port,
    registry,
    registry_tags,
    run_invoke,
    start_or_skip,
)

pytestmark = pytest.mark.engine
TEST_UID = "12345:12345"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    work = tmp_path_factory.mktemp("engine")
    with contextlib.ExitStack() as stack:
        client, host = start_or_skip(stack, docker_engine(work))
        started = time.perf_counter()
        base = build_base_image(client, work)
        TIMINGS["base image (debootstrap + torch + import)"] = time.perf_counter() - started
        yield client, host, base


@pytest.fixture(scope="module")
def local_registry(tmp_path_factory):
    with contextlib.ExitStack() as stack:
        yield start_or_skip(stack, registry(tmp_path_factory.mktemp("registry")))


@pytest.fixture(scope="module")
def project(tmp_path_factory, local_registry):
    host, _ = local_registry
    answers = {**load_answers("defaults"), "container_registry": "custom", "registry_host": host}
    path = render(tmp_path_factory.mktemp("project") / "study", answers)
    git(path, "init", "-q", "-b", "main")
    (path / "pixi.lock").write_text("placeholder, replaced by invoke lock\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


def invoke(project, *args, docker_host="", log=None, extra_env=None):
    env = {
        **os.environ,
        "PATH": f"{STAND_INS}{os.pathsep}{os.environ['PATH']}",
        "STANDIN_LOG": str(log or project / "standin.log"),
        **tiny_data_pins(project),
        **(extra_env or {}),
    }
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return run_invoke(project, *args, env=env)


def commit_all(project, message):
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message)


def timed_build(project, docker_host, base, what):
    """`invoke build-image` on the local base image (the engine has no bridge: RUN steps get none)."""
    started = time.perf_counter()
    result = invoke(
        project,
        "build-image",
        "--pixi-image",
        base,
        "--runtime-image",
        base,
        "--network",
        "none",
        docker_host=docker_host,
    )
    TIMINGS[what] = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return result


@pytest.fixture(scope="module")
def built(engine, project):
    """`invoke lock` then `invoke build-image` once, on the local base image."""
    client, host, base = engine
    lock = invoke(project, "lock")
    assert lock.returncode == 0, lock.stderr
    assert "pixi lock" in (project / "standin.log").read_text()
    commit_all(project, "lock")
    return timed_build(project, host, base, "first build-image")


def image_of(project):
    return read_manifest(project)["tool"]["invoke-tasks"]["image"]


def short_sha(project):
    return git(project, "rev-parse", "--short=7", "HEAD").strip()


def test_build_image_tags_and_labels(engine, project, built):
    client, _, _ = engine
    assert "pixi stand-in: installing environment gpu" in built.stdout
    settings = image_of(project)
    image = client.images.get(f"{settings}:{short_sha(project)}")
    tags = set(image.tags)
    assert {f"{settings}:latest", f"{settings}:{short_sha(project)}"} <= tags
    assert any(t.startswith(f"{settings}:lock-") for t in tags)
    labels = image.labels
    assert labels["org.opencontainers.image.revision"] == git(project, "rev-parse", "HEAD").strip()
    assert len(labels["io.pixi.lock.sha256"]) == 64
    assert not client.containers.list(all=True), "the build left containers behind"


def test_source_edit_does_not_reinstall_the_environment(engine, project, built):
    _, host, base = engine
    source = project / "src" / "torch_MNIST.py"
    source.write_text(source.read_text() + "\n# a researcher's edit\n")
    commit_all(project, "edit the training code")
    result = timed_build(project, host, base, "rebuild after a source edit")
    install_step = result.stdout.split("pixi install --locked")[1].split("Step")[0]
    assert "Using cache" in install_step, "the environment layer was rebuilt"
    assert "pixi stand-in: installing environment" not in result.stdout
    assert f":{short_sha(project)}" in result.stdout


def test_image_runs_as_non_root_without_home(engine, project, built):
    _, host, _ = engine
    result = invoke(project, "test-image", docker_host=host)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "CUDA available: False" in result.stdout
    assert "epoch  1:" in result.stdout
    assert "image tests passed" in result.stdout


def test_push_image_to_registry(engine, project, built, local_registry):
    _, host, _ = engine
    registry_host, _ = local_registry
    started = time.perf_counter()
    result = invoke(project, "push-image", docker_host=host)
    TIMINGS["push-image (3 tags)"] = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    # The engine's layer progress, summed: whole lines in a log (no carriage returns), ending complete.
    pushing = [line for line in result.stderr.splitlines() if line.startswith(f"pushing {image_of(project)}:")]
    assert pushing and "\r" not in result.stderr, result.stderr
    assert re.search(r" layers?\): (\S+ \w+) of \1 \(100%\).* in [0-9.]+ s$", pushing[-1]), pushing
    repository = image_of(project).split("/", 1)[1]
    tags = registry_tags(registry_host, repository)
    assert "latest" in tags and short_sha(project) in tags
    assert any(t.startswith("lock-") for t in tags)


def test_push_refuses_a_dirty_tree(engine, project, built):
    _, host, _ = engine
    readme = project / "README.md"
    original = readme.read_text()
    readme.write_text(original + "\nuncommitted\n")
    try:
        result = invoke(project, "push-image", docker_host=host)
    finally:
        readme.write_text(original)
    assert result.returncode != 0
    assert "uncommitted changes" in result.stderr


def test_submit_condor_dry_run_renders_a_sweep(engine, project, built):
    _, host, _ = engine
    write_data_tarball(project)
    result = invoke(
        project,
        "submit-condor",
        "--dry-run",
        "--queue",
        "--epochs 1",
        "--queue",
        "--epochs 2 --lr 0.5",
        docker_host=host,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    ads = dry_run_ads(result.stdout)
    assert [ad["Arguments"] for ad in ads] == ["--epochs 1", "--epochs 2 --lr 0.5"]
    assert {ad["ContainerImage"] for ad in ads} == {f"docker://{image_of(project)}:{short_sha(project)}"}
    assert all(ad["JobUniverse"] == 5 and ad["WantContainer"] for ad in ads)


def test_submit_condor_submits_the_pushed_tag(engine, project, built):
    _, host, _ = engine
    write_data_tarball(project)
    log = project / "condor-standin.log"
    result = invoke(project, "submit-condor", docker_host=host, log=log)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    (line,) = log.read_text().splitlines()
    image = f"docker://{image_of(project)}:{short_sha(project)}"
    # The image of this commit is appended; the submit file itself comes last (its jobs read train_args.txt).
    assert line.startswith("condor_submit -append") and line.endswith(" docker.sub")
    assert f"-append container_image = {image} -append" in line
    cluster = (project / "htcondor" / ".last-cluster").read_text().strip()
    assert cluster.isdigit() and f"cluster {cluster}:" in result.stdout


def test_submit_condor_refuses_a_tag_never_pushed(engine, project, built):
    _, host, _ = engine
    log = project / "never-pushed.log"
    result = invoke(project, "submit-condor", "--tag", "deadbee", docker_host=host, log=log)
    assert result.returncode != 0
    assert "is not in the registry; CI pushes it when this commit reaches main on GitHub" in result.stderr
    assert not log.exists(), "condor_submit was called for an image that does not exist"


def job_ad(project, host, *queue):
    """The job ClassAd(s) submit-condor would submit (its own dry run)."""
    args = [a for q in queue for a in ("--queue", q)]
    dry_run = invoke(project, "submit-condor", "--dry-run", *args, docker_host=host)
    assert dry_run.returncode == 0, dry_run.stdout[-3000:] + dry_run.stderr
    return dry_run_ads(dry_run.stdout)[0]


def execute_point_sandbox(project, ad, scratch: Path, checkpoint: Path | None = None) -> Path:
    """A job's scratch directory as an execute point lays it out: TransferInput, the
    executable, and on a restart the checkpoint files HTCondor kept (transfer_checkpoint_files)."""
    scratch.mkdir()
    scratch.chmod(0o777)  # the job's UID owns its scratch directory on a real execute point
    submit_dir = project / "htcondor"
    for item in [i.strip() for i in ad["TransferInput"].split(",")] + [ad["Cmd"]]:
        source = (submit_dir / item).resolve()
        if source.is_dir():
            shutil.copytree(source, scratch / source.name)
        else:
            shutil.copy2(source, scratch / source.name)
    if checkpoint is not None:
        shutil.copy2(checkpoint, scratch / ad["TransferCheckpoint"])
        (scratch / ad["TransferCheckpoint"]).chmod(0o666)
    return scratch


def run_job(client, project, ad, scratch: Path, until_log: str | None = None) -> tuple[int, str]:
    """train.sh in the image as the starter runs it (non-root, no HOME, no network, the job ad
    in .job.ad named by _CONDOR_JOB_AD); with ``until_log``, SIGTERM (an eviction's soft kill)
    once that text is in its output."""
    # The starter writes the job's ClassAd into the scratch directory (old ClassAd syntax).
    lines = [f"{k} = {json.dumps(v) if isinstance(v, str) else v}" for k, v in ad.items() if not isinstance(v, dict)]
    (scratch / ".job.ad").write_text("\n".join(lines) + "\n")
    container = client.containers.run(
        f"{image_of(project)}:{short_sha(project)}",
        [f"./{Path(ad['Cmd']).name}", *ad["Arguments"].split(), "--device", "cpu"],
        user=TEST_UID,
        # The ad's environment (the data's pins, for train.sh's verification), as the starter sets it.
        environment={
            "HOME": "",
            "_CONDOR_SCRATCH_DIR": "/scratch",
            "_CONDOR_JOB_AD": "/scratch/.job.ad",
            **dict(pair.split("=", 1) for pair in ad.get("Environment", "").split()),
        },
        working_dir="/scratch",
        volumes={str(scratch): {"bind": "/scratch", "mode": "rw"}},
        network_mode="none",
        detach=True,
    )
    try:
        if until_log is not None:
            deadline = time.monotonic() + 300
            while until_log not in container.logs().decode(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.2)
            container.kill(signal="SIGTERM")
        status = container.wait(timeout=600)["StatusCode"]
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    return status, logs


def test_job_script_on_an_emulated_execute_point(engine, project, built, tmp_path):
    """Run htcondor/train.sh in the image as an execute point would, then check the outputs."""
    client, host, _ = engine
    write_data_tarball(project)
    ad = job_ad(project, host)
    scratch = execute_point_sandbox(project, ad, tmp_path / "scratch")
    started = time.perf_counter()
    status, logs = run_job(client, project, ad, scratch)
    TIMINGS["emulated HTCondor job (docker flavour)"] = time.perf_counter() - started
    assert status == 0, logs[-3000:]
    assert "CUDA available: False" in logs and "epoch  1:" in logs
    for name in [o.strip() for o in ad["TransferOutput"].split(",")]:
        assert (scratch / name).is_file() and (scratch / name).stat().st_size > 0, f"{name} missing\n{logs[-2000:]}"
    assert not (scratch / "data").exists(), "the job left the extracted data for transfer"


def test_an_evicted_job_resumes_from_its_checkpoint(engine, project, built, tmp_path):
    """SIGTERM mid-training: train.sh exits 85 (checkpoint_exit_code) leaving checkpoint.pt;
    the restarted job, given that checkpoint, resumes and ends with each epoch once."""
    client, host, _ = engine
    write_data_tarball(project, train=4096, test=256)  # epochs of a few seconds: time to signal
    ad = job_ad(project, host, "--epochs 3")
    assert ad["SuccessCheckpointExitCode"] == 85 and ad["TransferCheckpoint"] == "checkpoint.pt"
    first = execute_point_sandbox(project, ad, tmp_path / "first")
    status, logs = run_job(client, project, ad, first, until_log="epoch  1:")
    assert status == 85, logs[-3000:]
    assert (first / "checkpoint.pt").is_file() and not (first / "metrics.json").exists()
    second = execute_point_sandbox(project, ad, tmp_path / "second", checkpoint=first / "checkpoint.pt")
    status, logs = run_job(client, project, ad, second)
    assert status == 0, logs[-3000:]
    stopped = int(re.search(r"resumed from epoch (\d+)", logs).group(1))
    assert 1 <= stopped < 3
    metrics = json.loads((second / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert not (second / "checkpoint.pt").exists(), "a finished job sends no checkpoint back"


def bring_back(project, ad, scratch: Path) -> None:
    """What the shadow does with a finished job's outputs: transfer_output_remaps."""
    for pair in ad["TransferOutputRemaps"].split(";"):
        name, target = (part.strip() for part in pair.split("="))
        destination = project / "htcondor" / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(scratch / name, destination)


def run_queued(client, project, queue_file: Path, cluster: str, tmp_path: Path, no_data: set[int] = frozenset()):
    """Run each job of a cluster on the emulated execute point and record its end in the
    stand-ins' queue as the schedd would: completed, or held when its outputs are missing
    (transfer_output_files names metrics.json: HoldReasonCode 12 TransferOutputError, subcode 2)."""
    clusters = json.loads(queue_file.read_text())
    (entry,) = [c for c in clusters if str(c["cluster"]) == cluster]
    for job in entry["jobs"]:
        ad = job["ad"]
        scratch = execute_point_sandbox(project, ad, tmp_path / f"{cluster}.{job['proc']}")
        if job["proc"] in no_data:
            (scratch / "MNIST_data.tar.gz").unlink()  # an input that did not arrive
        status, logs = run_job(client, project, ad, scratch)
        if status == 0:
            bring_back(project, ad, scratch)
            ad.update(JobStatus=4, ExitCode=0, ExitBySignal=False)
        else:
            assert "MNIST_data.tar.gz was not transferred" in logs, logs[-2000:]
            reason = (
                f"Error from slot1@ep.example.org: STARTER at 127.0.0.1 failed to send file(s) to <127.0.0.1:9618>: "
                f"error reading from {scratch}/metrics.json: (errno 2) No such file or directory"
            )
            ad.update(JobStatus=5, HoldReason=reason, HoldReasonCode=12, HoldReasonSubCode=2)
    queue_file.write_text(json.dumps(clusters))


def test_a_sweep_with_a_failed_job_reruns_that_job_alone(engine, project, built, tmp_path):
    """Four jobs of one cluster on the emulated execute point; the third is held (its data did
    not arrive, so metrics.json could not come back). condor-status says why, condor-rerun
    resubmits it alone into results/CLUSTER.2, and condor-results then has four accuracies."""
    client, host, _ = engine
    write_data_tarball(project)
    queue_file = tmp_path / "queue.json"
    env = {"STANDIN_CONDOR_QUEUE": str(queue_file)}
    sweep = ["--epochs 1 --lr 0.5", "--epochs 1 --lr 1.0", "--epochs 2 --lr 0.5", "--epochs 2 --lr 1.0"]
    args = [a for line in sweep for a in ("--queue", line)]
    pushed = invoke(project, "push-image", docker_host=host)  # this commit's tag, whatever ran before
    assert pushed.returncode == 0, pushed.stdout[-3000:] + pushed.stderr
    result = invoke(project, "submit-condor", *args, docker_host=host, extra_env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    cluster = (project / "htcondor" / ".last-cluster").read_text().strip()
    run_queued(client, project, queue_file, cluster, tmp_path, no_data={2})

    status = invoke(project, "condor-status", extra_env=env)
    assert status.returncode == 0, status.stderr
    assert f"job {cluster}.2 [--epochs 2 --lr 0.5]: held: Error from slot1@ep.example.org: " in status.stdout
    assert "No such file or directory (HoldReasonCode 12, subcode 2)" in status.stdout
    assert f"job {cluster}.0 [--epochs 1 --lr 0.5]: done" in status.stdout

    dry_run = invoke(project, "condor-rerun", "--dry-run", extra_env=env)
    resubmitted = [line for line in dry_run.stdout.splitlines() if line.startswith("would resubmit")]
    assert len(resubmitted) == 1
    assert resubmitted[0].startswith(f"would resubmit job {cluster}.2 [--epochs 2 --lr 0.5]: held: Error from")
    rerun = invoke(project, "condor-rerun", extra_env=env)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr
    new_cluster = re.search(r"cluster (\d+) reruns job\(s\) 2 of", rerun.stdout).group(1)
    run_queued(client, project, queue_file, new_cluster, tmp_path)

    table = invoke(project, "condor-results", "--cluster", cluster, extra_env=env)
    assert table.returncode == 0, table.stdout + table.stderr
    rows = list(csv.DictReader((project / "htcondor" / "results" / f"{cluster}.csv").open()))
    assert [r["arguments"] for r in rows] == sweep and [r["state"] for r in rows] == ["done"] * 4
    assert all(0 <= float(r["final_test_accuracy"]) <= 1 for r in rows)
    assert [r["epochs"] for r in rows] == ["1", "1", "2", "2"]
    image = f"docker://{image_of(project)}:{short_sha(project)}"
    commit = git(project, "rev-parse", "HEAD").strip()
    assert {(r["image"], r["commit"]) for r in rows} == {(image, commit)}, rows  # written by each job
    assert all(len(r["data_sha256"]) == 64 for r in rows)


def test_missing_engine_is_one_sentence(project):
    result = invoke(project, "build-image", docker_host="unix:///nonexistent/docker.sock")
    assert result.returncode != 0
    assert "no Docker engine answers" in result.stderr
    assert "Traceback" not in result.stderr


def test_push_to_a_registry_that_does_not_answer_fails(engine, project, built):
    """docker-py reports a failed push inside its stream; the task must turn it into a failure."""
    client, host, _ = engine
    silent = f"127.0.0.1:{free_port()}/lab/study"  # nothing listens there
    client.api.tag(f"{image_of(project)}:latest", silent, "latest")
    result = invoke(
        # --allow-dirty: what earlier tests left in the shared project is not this test's subject.
        project,
        "push-image",
        "--tag",
        "latest",
        "--allow-dirty",
        docker_host=host,
        extra_env={"INVOKE_PROJECT_IMAGE": silent},
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(f"pushing {silent}:latest failed: ")
    assert "Traceback" not in result.stderr
