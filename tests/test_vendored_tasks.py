"""The vendored tasks package without an engine: settings, exact commands, missing tools.

Stood in for (absent here): pixi, pixi-pack, apptainer, condor_submit and condor_q
(tests/stand-ins record their argv). The lock reader is real py-rattler, on a v7 lock
with aliased named platforms (tests/fixtures/locks) and on a real v6 lock (reference/samples).
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

from maintainer.render import git
from tests.project_helpers import dry_run_ads, dry_run_command, tiny_data_pins, write_data_tarball
from tests.services import STAND_INS, run_invoke

FIXTURES = Path(__file__).resolve().parent / "fixtures"
V7_LOCK = FIXTURES / "locks" / "tasks-gpu-aliased.v7.lock"
SAMPLE_LOCK = Path(__file__).resolve().parents[1] / "reference" / "samples" / "hello-pytorch.pixi.lock"


def committed(path: Path) -> Path:
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


@pytest.fixture
def project(copy_of):
    path = copy_of("everything")
    # A lock in the real format, for this manifest (the pixi stand-in writes v7, as pixi 0.77 does).
    subprocess.run([STAND_INS / "pixi", "lock"], cwd=path, check=True, capture_output=True)
    return committed(path)


def short_sha(project: Path) -> str:
    return git(project, "rev-parse", "--short=7", "HEAD").strip()


def invoke(project, *args, path_dirs=(STAND_INS,), extra_env=None, system_path=True):
    log = project / ".standin.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "STANDIN_LOG": str(log), **tiny_data_pins(project), **(extra_env or {})}
    system = ["/usr/bin", "/bin"] if system_path else []
    env["PATH"] = os.pathsep.join([*map(str, path_dirs), str(Path(sys.executable).parent), *system])
    result = run_invoke(project, *args, env=env)
    recorded = log.read_text().splitlines() if log.exists() else []
    return result, recorded


def one_sentence(result) -> str:
    """A task's failure: one line on stderr, no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stderr
    return lines[0]


def test_list_and_help(project):
    result, _ = invoke(project, "--list")
    names = set(re.findall(r"^  (\S+)", result.stdout, re.M))
    expected = {"build-image", "push-image", "test-image", "build-sif", "test-sif", "push-sif", "sif-name", "pack"}
    expected |= {"submit-condor", "condor-status", "condor-logs", "submit-slurm", "slurm-status", "doctor", "lock"}
    assert expected <= names
    result, _ = invoke(project, "--help", "push-image")
    assert "--allow-dirty" in result.stdout and "uncommitted changes" in result.stdout


def test_settings_come_from_pixi_toml_and_environment(project):
    result, _ = invoke(project, "settings", extra_env={"INVOKE_PROJECT_IMAGE": "example.org/me/override"})
    settings = json.loads(result.stdout)
    assert settings["image"] == "example.org/me/override"
    assert settings["pixi_version"] == "0.77.0" and settings["cuda_version"] == "12.9"
    assert settings["environment"] == "gpu" and settings["environments"] == ["default", "gpu", "tasks"]
    assert settings["platform"] == "linux/amd64"
    assert settings["htcondor"]["osdf_path"] == "osdf:///chtc/staging/someone"


def test_settings_are_layered_by_invokes_own_configuration(project, tmp_path):
    """Over pixi.toml, Invoke layers `project` as it layers its own settings (pyinvoke's
    docs/concepts/configuration.rst, invoke/executor.py: collection, project invoke.yaml, then
    INVOKE_* variables, then the -f file); a variable's value is checked as the setting's type."""
    (project / "invoke.yaml").write_text("project:\n  image: example.org/from/yaml\n  slurm:\n    partition: yaml\n")
    runtime = tmp_path / "runtime.yaml"
    runtime.write_text("project:\n  image: example.org/from/runtime\n")
    env = {"INVOKE_PROJECT_IMAGE": "example.org/from/variable", "INVOKE_PROJECT_SLURM_MAX_RUNNING": "7"}
    result, _ = invoke(project, "settings", extra_env=env)
    shown = json.loads(result.stdout)
    assert shown["image"] == "example.org/from/variable" and shown["slurm"]["partition"] == "yaml"
    assert shown["slurm"]["max_running"] == 7
    result, _ = invoke(project, "-f", str(runtime), "settings", extra_env=env)
    assert json.loads(result.stdout)["image"] == "example.org/from/runtime"
    result, _ = invoke(project, "settings", extra_env={"INVOKE_PROJECT_SLURM_MAX_RUNNING": "four"})
    assert one_sentence(result) == (
        "slurm.max-running (from Invoke's configuration: invoke.yaml, INVOKE_PROJECT_* variables or -f) must be "
        "a whole number, not 'four'."
    )


def test_a_bad_setting_is_one_sentence(project):
    result, _ = invoke(project, "settings", extra_env={"INVOKE_PROJECT_DATA_URL": "x", "INVOKE_PROJECT_ARCH": "y"})
    assert "has no setting 'arch'" in one_sentence(result)
    manifest = project / "pixi.toml"
    manifest.write_text(
        manifest.read_text().replace("[tool.invoke-tasks.htcondor]", "[tool.invoke-tasks.htcondor]\nrequest-gpu = 1")
    )
    result, _ = invoke(project, "settings")
    assert "has no setting 'htcondor.request-gpu'" in one_sentence(result)


def test_lock_check_never_writes(project):
    result, recorded = invoke(project, "lock", "--check")
    assert result.returncode == 0, result.stderr
    assert recorded == ["pixi lock --check --dry-run"]


@pytest.mark.parametrize(("platform", "subdir"), [("linux/amd64", "linux-64"), ("linux/arm64", "linux-aarch64")])
def test_doctor_matches_aliased_v7_platforms_by_subdir(project, platform, subdir):
    """In lock v7 the gpu environment has no platform *named* linux-64: p1/p2 with subdirs."""
    shutil.copy(V7_LOCK, project / "pixi.lock")
    result, _ = invoke(project, "doctor", extra_env={"INVOKE_PROJECT_PLATFORM": platform})
    assert result.returncode == 0, result.stderr
    expected = {"linux-64": "12.9", "linux-aarch64": "12.6"}[subdir]
    assert f"lock CUDA       {expected}\n" in result.stdout
    result, _ = invoke(project, "doctor", "--environment", "default")
    assert "lock CUDA       none: the default environment has no CUDA (CPU-only PyTorch)" in result.stdout


@pytest.mark.skipif(not SAMPLE_LOCK.is_file(), reason=f"{SAMPLE_LOCK} is absent (set PIXI_SAMPLE_LOCK)")
def test_doctor_reads_a_real_v6_lock(project):
    shutil.copy(SAMPLE_LOCK, project / "pixi.lock")
    result, _ = invoke(project, "doctor", "--environment", "default")
    assert result.returncode == 0, result.stderr
    assert "lock CUDA       12.9\n" in result.stdout
    assert "nvidia-smi      missing" in result.stdout


def test_doctor_says_so_when_the_lock_is_unreadable(project):
    (project / "pixi.lock").write_text("version: 6\nenvironments: [not, a, mapping]\n")
    result, _ = invoke(project, "doctor")
    assert "py-rattler cannot read pixi.lock" in one_sentence(result)


def test_pack_calls_pixi_pack_exactly_and_names_the_pack_by_the_lock(project):
    result, recorded = invoke(project, "pack")
    assert result.returncode == 0, result.stderr
    digest = __import__("hashlib").sha256((project / "pixi.lock").read_bytes()).hexdigest()[:12]
    final = project / f"everything-on-environment-gpu-linux-64-{digest}.sh"
    partial = final.with_name(f"{final.stem}.part.sh")  # kept by pixi-pack, which replaces the extension
    assert recorded == [
        f"pixi-pack --environment gpu --platform linux-64 --create-executable "
        f"--output-file {partial} {project / 'pixi.toml'}"
    ]
    assert final.is_file() and not partial.exists() and not list(project.glob("*.part*"))
    # Same lock: reused. A newer file of another lock is never taken for this one.
    result, recorded = invoke(project, "pack")
    assert recorded == [] and "reusing it" in result.stdout
    with (project / "pixi.lock").open("a") as lock:
        lock.write("# changed\n")
    os.utime(final)  # the old pack is the newest file: age must not matter
    result, recorded = invoke(project, "pack")
    assert len(recorded) == 1 and final.name not in recorded[0]


def test_pack_follows_the_linux_platform(project):
    # The gpu environment is solved for linux-64-cuda only: pack the default (CPU) one for arm64.
    result, recorded = invoke(
        project, "pack", "--environment", "default", extra_env={"INVOKE_PROJECT_PLATFORM": "linux/arm64"}
    )
    assert result.returncode == 0, result.stderr
    assert "--platform linux-aarch64" in recorded[0]
    result, _ = invoke(project, "pack", extra_env={"INVOKE_PROJECT_PLATFORM": "darwin/arm64"})
    assert "no Linux platform to build for" in one_sentence(result)


def test_one_sif_name_for_every_task(project):
    sha = short_sha(project)
    result, _ = invoke(project, "sif-name")
    sif_name = result.stdout.strip()
    assert sif_name == f"everything-on-{sha}.sif"
    sif = project / sif_name
    for task in ("build-sif", "test-sif", "push-sif"):
        result, _ = invoke(project, task)
        assert result.returncode == 0, result.stderr
    _, recorded = invoke(project, "build-sif", "--from-docker")
    assert recorded == [f"apptainer build --force {sif} docker-daemon://127.0.0.1:5000/some-lab/everything-on:{sha}"]
    # The apptainer submit file runs exactly that file, from OSDF where it was staged.
    staging = project.parent / "staging"
    staging.mkdir()
    write_data_tarball(project)
    result, _ = invoke(
        project,
        "submit-condor",
        "--flavour",
        "apptainer",
        "--dry-run",
        extra_env={"INVOKE_PROJECT_HTCONDOR_STAGING_DIR": str(staging)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (ad,) = dry_run_ads(result.stdout)
    assert ad["ContainerImage"] == sif_name and ad["ContainerImageSource"] == "osdf"
    assert f"osdf:///chtc/staging/someone/{sif_name}" in ad["TransferInput"]
    # submit-slurm hands the same name to the SLURM script.
    (project / "data").mkdir()
    result, recorded = invoke(project, "submit-slurm", path_dirs=(STAND_INS, _fake_sbatch(project)))
    assert result.returncode == 0, result.stderr
    # In sbatch's environment with --export=ALL: --export=ALL,SIF=... would split a path at its commas.
    assert "--export=ALL" in recorded[0].split() and recorded[1] == f"SIF={project / sif_name}"


def _fake_sbatch(project: Path) -> Path:
    """A recording sbatch for argv checks (the real SLURM cluster runs in tests/test_slurm.py)."""
    directory = project.parent / "fake-sbatch"
    directory.mkdir(exist_ok=True)
    script = directory / "sbatch"
    script.write_text('#!/bin/sh\necho "sbatch $*" >> "$STANDIN_LOG"\necho "SIF=${SIF:-}" >> "$STANDIN_LOG"\necho 77\n')
    script.chmod(0o755)
    return directory


def test_slurm_settings_reach_sbatch(project):
    (project / "data").mkdir()
    env = {"INVOKE_PROJECT_SLURM_PARTITION": "a100", "INVOKE_PROJECT_SLURM_TIME": "02:00:00"}
    result, recorded = invoke(project, "submit-slurm", path_dirs=(STAND_INS, _fake_sbatch(project)), extra_env=env)
    assert result.returncode == 0, result.stderr
    argv = recorded[0].split()
    assert "--partition=a100" in argv and "--time=02:00:00" in argv
    assert argv.index("--partition=a100") < argv.index(str(project / "slurm" / "train.sbatch"))


def _files(project: Path) -> dict[str, float]:
    return {str(p.relative_to(project)): p.stat().st_mtime for p in project.rglob("*") if ".git" not in p.parts}


def test_dry_run_has_no_side_effects(project):
    """No download, no build, no push, no pack, no file written: it says what it would do."""
    before = _files(project)
    env = {"INVOKE_PROJECT_DATA_URL": "http://127.0.0.1:9/MNIST_data.tar.gz"}
    for flavour in ("docker", "apptainer", "pixi-pack"):
        result, recorded = invoke(project, "submit-condor", "--flavour", flavour, "--build", "--dry-run", extra_env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "would download and verify MNIST_data.tar.gz" in result.stdout
        assert recorded == [], f"{flavour}: a dry run called {recorded}"
        assert len(dry_run_ads(result.stdout)) == 1
    assert _files(project) == before


def test_the_submit_file_and_image_override_reach_the_job(project):
    """The .sub is the one place for resources: a user's edits are what the job gets."""
    write_data_tarball(project)
    submit = project / "htcondor" / "docker.sub"
    text = submit.read_text().replace("memory_mb = 4096", "memory_mb = 16384")
    submit.write_text(text.replace("+WantGPULab = true", "+WantGPULab = false"))
    env = {"INVOKE_PROJECT_IMAGE": "example.org/me/other"}
    result, _ = invoke(
        project, "submit-condor", "--dry-run", "--queue", "--epochs 1", "--queue", "--epochs 2 --lr 0.5", extra_env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ads = dry_run_ads(result.stdout)
    assert [ad["Arguments"] for ad in ads] == ["--epochs 1", "--epochs 2 --lr 0.5"]
    for ad in ads:
        assert ad["ContainerImage"] == f"docker://example.org/me/other:{short_sha(project)}"
        assert "16384 * pow(2," in ad["RequestMemory"]  # memory_mb, doubled after each memory hold
        # No docker_pull_policy: HTCondor knows only "always" and reuses a cached image anyway.
        assert ad["RequestGPUs"] == 1 and "DockerPullPolicy" not in ad
        assert ad["WantGPULab"] is False and ad["GPUJobLength"] == "short" and ad["is_resumable"] is True
        assert ad["ProvenanceCommit"] == git(project, "rev-parse", "HEAD").strip()  # read back by the job
        assert ad["SuccessCheckpointExitCode"] == 85 and ad["TransferCheckpoint"] == "checkpoint.pt"
    command = dry_run_command(result.stdout)
    assert "request_memory" not in command and "WantGPULab" not in command


def test_osdf_stages_large_files_and_without_it_the_transfer_size_is_said(project):
    write_data_tarball(project)
    staging = project.parent / "staging"
    staging.mkdir()
    env = {"INVOKE_PROJECT_HTCONDOR_STAGING_DIR": str(staging)}
    result, recorded = invoke(project, "submit-condor", "--flavour", "pixi-pack", "--build", extra_env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    packed = next(project.glob("everything-on-environment-gpu-*.sh"))
    assert (staging / packed.name).read_bytes() == packed.read_bytes()
    assert (staging / "MNIST_data.tar.gz").is_file()
    assert f"pack_input = osdf:///chtc/staging/someone/{packed.name}" in recorded[-1]
    result, recorded = invoke(
        project,
        "submit-condor",
        "--flavour",
        "pixi-pack",
        "--dry-run",
        extra_env={"INVOKE_PROJECT_HTCONDOR_OSDF_PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "the access point transfers" in result.stdout and packed.name in result.stdout
    (ad,) = dry_run_ads(result.stdout)
    assert f"../{packed.name}" in ad["TransferInput"] and "../MNIST_data.tar.gz" in ad["TransferInput"]


def test_pack_job_disk_must_hold_the_extractor_peak(project):
    write_data_tarball(project)
    result, _ = invoke(project, "pack")
    packed = next(project.glob("everything-on-environment-gpu-*.sh"))
    packed.write_bytes(b"\0" * 2 * 2**20)  # 2 MiB: peak = 3 x 2 + 3 x 2 (estimate) = 12 MiB
    env = {"INVOKE_PROJECT_HTCONDOR_OSDF_PATH": ""}
    submit = project / "htcondor" / "pixi-pack.sub"
    rendered = submit.read_text()
    submit.write_text(rendered.replace("request_disk = 30GB", "request_disk = 10MB"))
    result, recorded = invoke(project, "submit-condor", "--flavour", "pixi-pack", extra_env=env)
    message = one_sentence(result)
    assert (
        "request_disk = 10MB in htcondor/pixi-pack.sub is too small for the pack: unpacking needs about 12.0 MiB"
        in message
    )
    assert recorded == []
    submit.write_text(rendered.replace("request_disk = 30GB", "request_disk = 13MB"))
    result, recorded = invoke(project, "submit-condor", "--flavour", "pixi-pack", extra_env=env)
    assert result.returncode == 0, result.stderr
    assert recorded[-1].startswith("condor_submit ")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("request_cpus = 1", "request_gpu = 1"),
            "HTCondor does not know a submit keyword: request_gpu is not a valid submit keyword",
        ),
        (("universe = container", "universe = nonsense"), "HTCondor rejects the submit description: "),
        (
            ("request_memory = min({$(memory_cap_mb), $(memory_mb) * pow(2, $(memory_holds))})", "request_memory = x"),
            "htcondor/apptainer.sub: request_memory = x is not a size HTCondor reads",
        ),
    ],
)
def test_htcondor_refusals_are_sentences_that_say_why(project, edit, expected):
    write_data_tarball(project)
    submit = project / "htcondor" / "apptainer.sub"
    submit.write_text(submit.read_text().replace(*edit))
    (project / f"everything-on-{short_sha(project)}.sif").write_text("image")
    result, recorded = invoke(project, "submit-condor", "--flavour", "apptainer", "--dry-run")
    message = one_sentence(result)
    assert expected in message and len(message) > len("HTCondor rejects the submit description: ")
    assert recorded == []


def test_a_resource_set_outside_the_submit_file_is_one_sentence(project):
    """Two places for one value would make one silently win: pixi.toml no longer holds resources."""
    write_data_tarball(project)
    env = {"INVOKE_PROJECT_HTCONDOR_REQUEST_MEMORY": "16GB"}
    result, recorded = invoke(project, "submit-condor", "--dry-run", extra_env=env)
    assert one_sentence(result) == (
        "htcondor.request-memory (from the INVOKE_PROJECT_* variables) is no longer read: set request_memory in "
        "htcondor/*.sub, the one place for a job's resources, and remove it here."
    )
    manifest = project / "pixi.toml"
    table = "[tool.invoke-tasks.htcondor]"
    manifest.write_text(manifest.read_text().replace(table, f'{table}\nrequest-disk = "20"'))
    result, recorded = invoke(project, "submit-condor", "--dry-run")
    assert "htcondor.request-disk (from pixi.toml [tool.invoke-tasks]) is no longer read" in one_sentence(result)
    assert recorded == []


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
    assert one_sentence(result).startswith(f"{missing} is not installed or not on PATH")
    assert not recorded


def test_build_image_without_lock_says_what_to_do(project):
    (project / "pixi.lock").unlink()
    result, _ = invoke(project, "build-image")
    assert one_sentence(result) == "pixi.lock is missing; run `invoke lock` (or `pixi lock`) and commit it first."


def test_submit_condor_without_condor_submit_submits_nothing(project, tmp_path):
    write_data_tarball(project)
    result, recorded = invoke(project, "submit-condor", "--flavour", "pixi-pack", "--build", path_dirs=(tmp_path,))
    assert result.returncode == 127
    assert one_sentence(result).startswith("condor_submit is not installed or not on PATH")
    assert not recorded


def test_submit_condor_without_data_and_offline_says_so(project):
    env = {"INVOKE_PROJECT_DATA_URL": "https://127.0.0.1:9/MNIST_data.tar.gz"}
    result, recorded = invoke(project, "submit-condor", "--flavour", "pixi-pack", "--build", extra_env=env)
    sentence = one_sentence(result)
    assert "this machine seems to have no internet access" in sentence and "`pixi run demo`" in sentence
    assert not (project / "MNIST_data.tar.gz").exists()


def test_submit_interactive_status_logs(project):
    write_data_tarball(project)
    env = {"INVOKE_PROJECT_HTCONDOR_OSDF_PATH": ""}
    result, recorded = invoke(
        project, "submit-condor", "--flavour", "pixi-pack", "--build", "--interactive", extra_env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert recorded[-1].startswith("condor_submit -append") and recorded[-1].endswith("-interactive pixi-pack.sub")

    result, recorded = invoke(project, "submit-condor", "--flavour", "pixi-pack", extra_env=env)
    assert result.returncode == 0, result.stderr
    cluster = (project / "htcondor" / ".last-cluster").read_text().strip()
    assert cluster.isdigit() and f"cluster {cluster}:" in result.stdout
    (project / "htcondor" / f"train_{cluster}.log").write_text(f"000 ({cluster}.000.000) Job submitted\n")
    result, recorded = invoke(project, "condor-status")
    assert result.returncode == 0 and recorded[-1].startswith(f"condor_q {cluster} -json -attributes ClusterId,")
    assert (
        f"no results of cluster {cluster} yet; each job's come back to htcondor/results/{cluster}.N/" in result.stdout
    )
    # What HTCondor brings back, per job (transfer_output_remaps into job_dir).
    for process, lr in enumerate((0.5, 1.0)):
        job = project / "htcondor" / "results" / f"{cluster}.{process}"
        job.mkdir(parents=True)
        (job / "train.out").write_text(f"epoch 1 of job {process}\n")
        epochs = [
            {"epoch": e, "train_loss": 1 / (e + lr), "test_loss": 1 / (e + lr), "test_accuracy": 0.9 + e / 100}
            for e in (1, 2, 3)
        ]
        (job / "metrics.json").write_text(json.dumps({"config": {"lr": lr}, "epochs": epochs}))
    result, _ = invoke(project, "condor-status")
    assert f"job {cluster}.1: htcondor/results/{cluster}.1/ holds metrics.json, train.out" in result.stdout
    result, _ = invoke(project, "condor-logs")
    assert result.returncode == 0 and "Job submitted" in result.stdout and "epoch 1 of job 1" in result.stdout
    result, _ = invoke(project, "condor-logs", "--cluster", "7")
    assert one_sentence(result) == "no log files for cluster 7 in htcondor/ yet."
    result, _ = invoke(project, "condor-plot")
    assert result.returncode == 0, result.stdout + result.stderr
    picture = project / "htcondor" / "results" / f"{cluster}.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result, _ = invoke(project, "condor-plot", "--cluster", "7")
    assert one_sentence(result) == "no metrics of cluster 7 have come back yet; see `invoke condor-status`."


HAND_WRITTEN = """\
# A manifest written by hand, as CHTC's examples are: no [tool.invoke-tasks].
[workspace]
name = "chtc-example"
channels = ["conda-forge"]
platforms = ["linux-64"]

[system-requirements]
cuda = "12"

[dependencies]
python = "3.12.*"
pytorch-gpu = ">=2.5"
cuda-version = "12.6.*"

[environments]
train = { features = [], solve-group = "default" }
"""


@pytest.fixture
def hand_written(tmp_path, renderings):
    """A project with the vendored tasks and a hand-written pixi.toml (no invoke settings)."""
    path = tmp_path / "chtc-example"
    path.mkdir()
    shutil.copytree(renderings["everything"] / "tasks", path / "tasks")
    shutil.copytree(renderings["everything"] / "htcondor", path / "htcondor")
    (path / "pixi.toml").write_text(HAND_WRITTEN)
    shutil.copy(V7_LOCK, path / "pixi.lock")
    return committed(path)


def test_a_hand_written_manifest_gets_sensible_defaults(hand_written):
    result, _ = invoke(hand_written, "settings")
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["name"] == "chtc-example" and settings["cuda_version"] == "12.6"
    assert settings["environment"] == "default" and settings["environments"] == ["default", "train"]
    assert settings["platform"] == "linux/amd64" and settings["pixi_version"] == ""
    git(hand_written, "remote", "add", "origin", "git@github.com:CHTC/Example-Lab.git")
    result, _ = invoke(hand_written, "settings")
    assert json.loads(result.stdout)["image"] == "ghcr.io/chtc/example-lab"


def test_every_task_on_a_hand_written_manifest_works_or_says_what_is_missing(hand_written):
    result, _ = invoke(hand_written, "--list")
    names = re.findall(r"^  (\S+)", result.stdout, re.M)
    # htcondor/ is here, a Dockerfile, apptainer.def and slurm/ are not: only HTCondor's tasks are listed.
    assert {"submit-condor", "condor-status", "pack", "doctor", "settings"} <= set(names)
    assert not {"build-image", "build-sif", "submit-slurm"} & set(names)
    env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    for name in names:
        result, _ = invoke(hand_written, name, extra_env=env)
        # A failing tool may print its own lines; the task's own word is the last one.
        assert "Traceback" not in result.stderr, f"{name}: {result.stderr}"
        if result.returncode != 0:
            assert result.stderr.strip().splitlines()[-1].strip(), f"{name}: {result.stderr!r}"
    result, _ = invoke(hand_written, "fetch-data")
    assert (
        one_sentence(result)
        == "pixi.toml names no data: set `url` (and `git-blob` or `sha256`) under [tool.invoke-tasks.data]."
    )


def test_the_tasks_package_reads_nothing_on_import(project):
    (project / "pixi.toml").rename(project / "elsewhere.toml")
    result, _ = invoke(project, "--list")
    assert result.returncode == 0 and "submit-condor" in result.stdout
    code = "import tasks, sys; print(sorted(m for m in sys.modules if m.startswith('tasks.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True)
    assert "tasks.settings" in out.stdout and "tasks.local" in out.stdout
    result, _ = invoke(project, "settings")
    assert "pixi.toml not found" in one_sentence(result)
