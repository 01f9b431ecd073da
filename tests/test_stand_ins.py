"""The stand-ins (tests/stand-ins) accept what the real tools accept and refuse what they refuse.

The expected messages and exit codes are those of the real CLIs' sources: pixi 0.77 and
pixi-pack (clap: exit 2), Apptainer (cobra), condor_submit and condor_q of HTCondor 24.0.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.services import STAND_INS

LOCKS = Path(__file__).resolve().parent / "fixtures" / "locks"
MANIFEST = """\
[workspace]
name = "demo"
channels = ["conda-forge"]
platforms = ["linux-64", "osx-arm64", { name = "linux-64-cuda", platform = "linux-64", cuda = "12" }]

[dependencies]
python = "3.12.*"

[feature.cpu]
platforms = ["linux-64", "osx-arm64"]

[feature.cpu.dependencies]
pytorch-cpu = "2.5.*"

[feature.gpu]
platforms = ["linux-64-cuda"]

[feature.gpu.dependencies]
pytorch-gpu = "2.5.*"
cuda-version = "12.6.*"

[feature.test.tasks]
hello = "python -c 'import sys; print(\\"hello from\\", sys.argv[1:])'"

[environments]
cpu = ["cpu", "test"]
gpu = ["gpu"]
"""


def run(tool: str, *args: str, cwd: Path, env: dict | None = None, stdin: str | None = None):
    base = {k: v for k, v in os.environ.items() if k != "CONDA_OVERRIDE_CUDA"}
    environment = {**base, "STANDIN_CONDOR_QUEUE": str(cwd / "queue.json"), **(env or {})}
    return subprocess.run(
        [STAND_INS / tool, *args], cwd=cwd, env=environment, capture_output=True, text=True, input=stdin, check=False
    )


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "pixi.toml").write_text(MANIFEST)
    return tmp_path


# ------------------------------------------------------------------------ pixi
def test_pixi_refuses_an_unknown_flag_and_subcommand(workspace):
    result = run("pixi", "lock", "--chek", cwd=workspace)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "error: unexpected argument '--chek' found"
    result = run("pixi", "pack", cwd=workspace)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "error: unrecognized subcommand 'pack'"
    result = run("pixi", "install", "--locked", "--frozen", cwd=workspace)
    assert result.returncode == 2 and "'--locked' cannot be used with '--frozen'" in result.stderr
    assert not (workspace / "pixi.lock").exists()


def test_pixi_lock_writes_v7_that_py_rattler_reads(workspace):
    result = run("pixi", "lock", cwd=workspace)
    assert result.returncode == 0, result.stderr
    text = (workspace / "pixi.lock").read_text()
    assert text.startswith("version: 7\nplatforms:\n- name: linux-64\n")
    assert "- name: p1\n  subdir: linux-64\n  virtual-packages:\n  - __cuda=12\n" in text
    from rattler import LockFile

    lock = LockFile.from_path(workspace / "pixi.lock")
    platforms = {name: {(p.name, str(p.subdir)) for p in env.platforms()} for name, env in lock.environments()}
    assert platforms == {
        "default": {("linux-64", "linux-64"), ("osx-arm64", "osx-arm64"), ("p1", "linux-64")},
        "cpu": {("linux-64", "linux-64"), ("osx-arm64", "osx-arm64")},
        "gpu": {("p1", "linux-64")},
    }
    gpu = lock.environment("gpu")
    (p1,) = gpu.platforms()
    versions = {r.name.normalized: str(r.version) for r in gpu.conda_repodata_records_for_platform(p1)}
    assert versions == {"python": "3.12", "pytorch-gpu": "2.5", "cuda-version": "12.6"}
    assert run("pixi", "lock", "--check", "--dry-run", cwd=workspace).returncode == 0


@pytest.mark.parametrize(
    ("edit", "missing"),
    [
        (("gpu = [\"gpu\"]\n", "gpu = [\"gpu\"]\nextra = [\"cpu\"]\n"), "the environment 'extra' is missing"),
        (("\"osx-arm64\", {", "\"osx-arm64\", \"win-64\", {"), "the platform 'win-64' of environment 'default'"),
        (('cuda = "12" }', 'cuda = "12" }, { name = "linux-64-cuda13", platform = "linux-64", cuda = "13" }'),
         "the platform 'linux-64-cuda13' of environment 'default'"),
        (("pytorch-gpu = ", "nccl = \"*\"\npytorch-gpu = "), "nccl of environment 'gpu' on 'linux-64-cuda' not locked"),
    ],
)  # fmt: skip
def test_pixi_lock_check_fails_on_what_the_lock_lacks(workspace, edit, missing):
    assert run("pixi", "lock", cwd=workspace).returncode == 0
    before = (workspace / "pixi.lock").read_text()
    manifest = workspace / "pixi.toml"
    assert edit[0] in manifest.read_text()
    manifest.write_text(manifest.read_text().replace(edit[0], edit[1], 1))
    result = run("pixi", "lock", "--check", "--dry-run", cwd=workspace)
    assert result.returncode == 1 and missing in result.stderr, result.stderr
    assert (workspace / "pixi.lock").read_text() == before, "--dry-run wrote the lock"
    result = run("pixi", "install", "--locked", "-e", "cpu", cwd=workspace)
    assert result.returncode == 1 and "lock-file not up-to-date" in result.stderr
    # Without --dry-run, --check still writes the new lock (and fails), as pixi does.
    assert run("pixi", "lock", "--check", cwd=workspace).returncode == 1
    assert run("pixi", "lock", "--check", "--dry-run", cwd=workspace).returncode == 0


def test_pixi_lock_check_reads_the_fixture_with_named_platforms(workspace):
    # The fixture's default environment is the cpu one (restricted to linux-64 and osx-arm64).
    manifest = workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace("[environments]\n", '[environments]\ndefault = ["cpu"]\n'))
    shutil.copy(LOCKS / "cpu-gpu-named-platform.pixi.lock", workspace / "pixi.lock")
    result = run("pixi", "lock", "--check", "--dry-run", cwd=workspace)
    assert result.returncode == 0, result.stderr
    shutil.copy(LOCKS / "cpu-only.pixi.lock", workspace / "pixi.lock")
    result = run("pixi", "lock", "--check", "--dry-run", cwd=workspace)
    assert result.returncode == 1
    assert "the environment 'gpu' is missing from the lock file" in result.stderr


def test_pixi_install_run_and_shell_hook(workspace):
    assert run("pixi", "lock", cwd=workspace).returncode == 0
    result = run("pixi", "run", "--locked", "-e", "cpu", "hello", "a b", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from ['a b']"
    python = workspace / ".pixi/envs/cpu/bin/python"
    assert subprocess.run([python, "-c", "import torch"], check=False).returncode == 0, "the env lost site-packages"
    result = run("pixi", "shell-hook", "--frozen", "-e", "cpu", "-s", "bash", cwd=workspace)
    assert result.returncode == 0
    assert f'export CONDA_PREFIX="{workspace / ".pixi/envs/cpu"}"' in result.stdout.splitlines()
    result = run("pixi", "shell-hook", "-e", "cpu", "-s", "tcsh", cwd=workspace)
    assert result.returncode == 2 and "invalid value 'tcsh' for '--shell <SHELL>'" in result.stderr


def test_pixi_cuda_environment_needs_a_driver_or_override(workspace):
    assert run("pixi", "lock", cwd=workspace).returncode == 0
    if Path("/proc/driver/nvidia/version").exists():
        pytest.skip("this machine has an NVIDIA driver, so the CUDA gate is open")
    result = run("pixi", "install", "--locked", "-e", "gpu", cwd=workspace)
    assert result.returncode == 1 and "requires __cuda=12" in result.stderr
    result = run("pixi", "install", "--locked", "-e", "gpu", cwd=workspace, env={"CONDA_OVERRIDE_CUDA": "12.6"})
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------- pixi-pack
@pytest.fixture
def locked(workspace):
    assert run("pixi", "lock", cwd=workspace).returncode == 0
    return workspace


def test_pixi_pack_has_no_pack_subcommand(locked):
    result = run("pixi-pack", "pack", "--environment", "cpu", cwd=locked)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: manifest path does not exist at pack"
    result = run("pixi-pack", "--env", "cpu", cwd=locked)
    assert result.returncode == 2 and result.stderr.splitlines()[0] == "error: unexpected argument '--env' found"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e", "nope"], "Error: environment not found in lockfile: nope"),
        (["-e", "gpu", "-p", "osx-arm64"], "Error: platform not found in lockfile: osx-arm64"),
        (["-e", "cpu", "-p", "linux-65"], "error: invalid value 'linux-65' for '--platform <PLATFORM>'"),
        (["--create-executable", "--directory-only"], "error: the argument '--create-executable' cannot be used"),
    ],
)
def test_pixi_pack_refuses_what_pixi_pack_refuses(locked, args, message):
    result = run("pixi-pack", *args, cwd=locked)
    assert result.returncode != 0 and result.stderr.startswith(message), result.stderr
    assert not list(locked.glob("environment*"))


def test_pixi_pack_self_extractor_gives_env_and_activate(locked, tmp_path):
    output = locked / "env.sh"
    args = ["--environment", "gpu", "--platform", "linux-64", "--create-executable", "--output-file", str(output)]
    result = run("pixi-pack", *args, str(locked / "pixi.toml"), cwd=locked)
    assert result.returncode == 0, result.stderr
    unpack = tmp_path / "unpack"
    unpack.mkdir()
    subprocess.run(["bash", str(output)], cwd=unpack, check=True)
    activated = subprocess.run(
        ["bash", "-c", ". ./activate.sh && python -c 'import sys; print(sys.prefix)' && echo $CONDA_PREFIX"],
        cwd=unpack, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert activated.stdout.splitlines()[-1] == str(unpack / "env")


@pytest.mark.parametrize(
    ("given", "written", "mode"),
    [
        ("X.sh.part", "X.sh.sh", "--create-executable"),  # the name the old pack task gave it
        ("X.part.sh", "X.part.sh", "--create-executable"),
        ("X", "X.sh", "--create-executable"),
        ("X.tar.part", "X.tar.part", None),  # an archive keeps the path as given
    ],
)
def test_pixi_pack_replaces_the_executables_extension(locked, given, written, mode):
    """pixi-pack src/pack.rs open_output_file(target, Some("sh")) writes target.with_extension("sh")."""
    args = ["-e", "gpu", "-p", "linux-64", *([mode] if mode else []), "--output-file", str(locked / given)]
    result = run("pixi-pack", *args, str(locked / "pixi.toml"), cwd=locked)
    assert result.returncode == 0, result.stderr
    assert (locked / written).is_file() and sorted(p.name for p in locked.glob("X*")) == [written]


# ------------------------------------------------------------------- apptainer
def test_apptainer_refuses_unknown_flag_command_and_arg_count(tmp_path):
    result = run("apptainer", "build", "--forse", "x.sif", "x.def", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == 'Error for command "build": unknown flag: --forse'
    result = run("apptainer", "bild", "x.sif", "x.def", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.splitlines()[0] == 'Error: unknown command "bild" for "apptainer"'
    result = run("apptainer", "build", "x.sif", cwd=tmp_path)
    assert result.returncode == 1 and "accepts 2 arg(s), received 1" in result.stderr


def test_apptainer_build_test_push(tmp_path):
    (tmp_path / "bad.def").write_text("From: ubuntu\n")
    result = run("apptainer", "build", "x.sif", "bad.def", cwd=tmp_path)
    assert result.returncode == 255 and result.stderr.startswith("FATAL:") and not (tmp_path / "x.sif").exists()
    (tmp_path / "good.def").write_text("Bootstrap: docker\nFrom: ubuntu:24.04\n%test\n    true\n")
    assert run("apptainer", "build", "x.sif", "good.def", cwd=tmp_path).returncode == 0
    result = run("apptainer", "build", "x.sif", "good.def", cwd=tmp_path)
    assert result.returncode == 255 and "Use --force" in result.stderr
    assert run("apptainer", "build", "--force", "x.sif", "good.def", cwd=tmp_path).returncode == 0
    assert run("apptainer", "test", "x.sif", cwd=tmp_path).returncode == 0
    assert run("apptainer", "test", "y.sif", cwd=tmp_path).returncode == 255
    assert run("apptainer", "push", "x.sif", "oras://127.0.0.1:5000/a/b:sif-1", cwd=tmp_path).returncode == 0
    result = run("apptainer", "exec", "--nv", "x.sif", "python", "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # flags after the image belong to the command


# --------------------------------------------------------------- condor_submit
JOB = """\
universe = vanilla
executable = job.sh
tag = unset
arguments = "$(tag)"
transfer_input_files = missing-input.tar.gz
queue 1
"""


@pytest.fixture
def submit_dir(tmp_path):
    (tmp_path / "job.sh").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "job.sub").write_text(JOB)
    return tmp_path


def dry_run_ads(directory: Path, *args: str) -> str:
    result = run("condor_submit", "-dry-run", "ads.txt", *args, cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.fullmatch(r"Dry-Run job\(s\)\.+\n\d job\(s\) dry-run to cluster 1\.\n", result.stdout), result.stdout
    return (directory / "ads.txt").read_text()


def test_condor_submit_unknown_option_prints_usage(submit_dir):
    result = run("condor_submit", "-frobnicate", "job.sub", cwd=submit_dir)
    assert result.returncode == 1
    assert result.stderr.startswith("Usage: condor_submit [options] [<attrib>=<value>] [- | <submit-file>]\n")
    result = run("condor_submit", "-version", cwd=submit_dir)  # 24.0 has no -version (condor_version has)
    assert result.returncode == 1 and result.stderr.startswith("Usage: condor_submit")
    assert not (submit_dir / "queue.json").exists()


def test_condor_submit_accepts_and_reports_the_cluster(submit_dir):
    result = run("condor_submit", "job.sub", cwd=submit_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Submitting job(s).\n1 job(s) submitted to cluster 4242.\n"
    assert result.stderr == "", "input files are not checked by default (SUBMIT_SKIP_FILECHECKS)"
    result = run("condor_submit", "job.sub", "-queue", "3", cwd=submit_dir)
    assert result.returncode == 1
    assert "-queue argument conflicts with queue statement in submit file" in result.stderr
    (submit_dir / "noqueue.sub").write_text(JOB.replace("queue 1\n", ""))
    result = run("condor_submit", "noqueue.sub", "-queue", "3", cwd=submit_dir)
    assert result.stdout == "Submitting job(s)...\n3 job(s) submitted to cluster 4243.\n"


def test_condor_submit_append_wins_and_macros_lose(submit_dir):
    ads = dry_run_ads(submit_dir, "job.sub", "-append", "tag = from-append", "tag=from-macro")
    assert 'Arguments = "from-append"' in ads.splitlines()
    ads = dry_run_ads(submit_dir, "job.sub", "tag=from-macro")  # placed before the file: the file's line wins
    assert 'Arguments = "unset"' in ads.splitlines()
    (submit_dir / "free.sub").write_text(JOB.replace("tag = unset\n", "").replace("queue 1\n", ""))
    ads = dry_run_ads(submit_dir, "free.sub", "tag=from-macro", "-queue", "tag", "in", "(a,", "b)")
    assert [line for line in ads.splitlines() if line.startswith("Arguments")] == ['Arguments = "a"', 'Arguments = "b"']


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "universe = container\nexecutable = job.sh\nqueue\n",
            "container jobs require a container_image or docker_image",
        ),
        ("executable = nothere.sh\nqueue\n", "Executable file {dir}/nothere.sh does not exist"),
        ("executable = job.sh\n", '"bad.sub" doesn\'t contain any "queue" commands -- no jobs queued'),
    ],
)
def test_condor_submit_refuses_what_condor_submit_refuses(submit_dir, text, message):
    (submit_dir / "bad.sub").write_text(text)
    result = run("condor_submit", "bad.sub", cwd=submit_dir)
    assert result.returncode == 1
    assert f"ERROR: {message.format(dir=submit_dir)}" in result.stderr.splitlines()
    assert result.stdout == "" and not (submit_dir / "queue.json").exists()


def test_condor_submit_warns_about_misspelled_keywords(submit_dir):
    (submit_dir / "typo.sub").write_text(JOB.replace("queue 1", "request_gpu = 1\nreqest_memory = 4GB\nqueue 1"))
    result = run("condor_submit", "typo.sub", cwd=submit_dir)
    assert result.returncode == 0 and "1 job(s) submitted to cluster 4242." in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line]
    assert warnings == [
        "WARNING: request_gpu is not a valid submit keyword, did you mean request_gpus?",
        "WARNING: the line 'request_gpu = 1' was unused by condor_submit. Is it a typo?",
        "WARNING: the line 'reqest_memory = 4GB' was unused by condor_submit. Is it a typo?",
    ]


# -------------------------------------------------------------------- condor_q
def test_condor_q_nobatch_shape_and_unknown_option(submit_dir):
    run("condor_submit", "job.sub", cwd=submit_dir)
    result = run("condor_q", "4242", "-nobatch", cwd=submit_dir)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"-- Schedd: \S+ : <[\d.]+:\d+\?\.\.\. @ \d\d/\d\d/\d\d \d\d:\d\d:\d\d", lines[2])
    assert lines[3].split() == ["ID", "OWNER", "SUBMITTED", "RUN_TIME", "ST", "PRI", "SIZE", "CMD"]
    job_id, owner, _, _, *state = lines[4].split()
    assert (job_id, owner, state) == ("4242.0", getpass.getuser(), ["0+00:00:00", "I", "0", "0.0", "job.sh", "unset"])
    assert lines[6] == "Total for query: 1 jobs; 0 completed, 0 removed, 1 idle, 0 running, 0 held, 0 suspended "
    result = run("condor_q", "4242", "-af", "ClusterId", "ProcId", cwd=submit_dir)
    assert result.stdout == "4242 0\n"
    result = run("condor_q", "-nobath", cwd=submit_dir)
    assert result.returncode == 1 and result.stderr.splitlines()[0] == "Error: unrecognized argument -nobath"


def test_condor_q_json_history_and_rm_follow_the_job_state(submit_dir):
    """condor_q -json lists jobs in the queue, condor_history -json those that left it (removed
    by condor_rm: JobStatus 3); -attributes limits the ad; no match prints nothing at all."""
    run("condor_submit", "job.sub", cwd=submit_dir)
    result = run("condor_q", "4242", "-json", "-attributes", "ClusterId,ProcId,JobStatus,Cmd", cwd=submit_dir)
    (ad,) = json.loads(result.stdout)
    assert ad == {"ClusterId": 4242, "ProcId": 0, "JobStatus": 1, "Cmd": str(submit_dir / "job.sh")}
    assert run("condor_history", "4242", "-json", cwd=submit_dir).stdout == ""
    result = run("condor_rm", "4242.0", cwd=submit_dir)
    assert result.stdout == "Job 4242.0 marked for removal\n"
    assert run("condor_q", "4242", "-json", cwd=submit_dir).stdout == ""
    (ad,) = json.loads(run("condor_history", "4242.0", "-json", "-attr", "JobStatus", cwd=submit_dir).stdout)
    assert ad == {"JobStatus": 3}
    assert run("condor_rm", "4242.0", cwd=submit_dir).stderr == "Job 4242.0 not found\n"
    result = run("condor_history", "-jsn", cwd=submit_dir)
    assert result.returncode == 1 and result.stderr == "Error: Unknown argument -jsn\n"


# ------------------------------------------- what the services and installs rely on
def test_a_service_skip_fails_under_ci(monkeypatch):
    from tests.services import skip_or_fail

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="^dockerd is not installed$"):
        skip_or_fail("dockerd is not installed")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(
        pytest.fail.Exception, match=r"dockerd is not installed \(CI=true: a service test must not skip\)"
    ):
        skip_or_fail("dockerd is not installed")


def test_base_image_python_and_torch_wheel_must_match(tmp_path):
    from tests.services import Unavailable, image_python, torch_requirement, torch_wheel_site

    bin_dir = tmp_path / "rootfs" / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python3", "python3.11", "python3.11-config"):
        (bin_dir / name).write_text("")
    assert image_python(tmp_path / "rootfs") == "3.11"
    assert torch_requirement() == "torch==2.13.0+cpu"
    with pytest.raises(
        Unavailable, match=r"^pip found no torch==2\.13\.0\+cpu wheel for the base image's Python 3\.8 "
    ):
        torch_wheel_site(tmp_path / "site", "3.8")


def test_dev_group_is_the_one_list_and_install_uses_a_venv():
    import tomllib

    from maintainer.render import ROOT

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "optional-dependencies" not in pyproject["project"]
    group = pyproject["dependency-groups"]["dev"]
    assert "py-rattler>=0.24" in group  # lock format v7
    install = (ROOT / ".ci" / "install").read_text()
    assert '"$python" -m venv .venv' in install and "-m maintainer.groups dev" in install
    assert "python3 -m pip install" not in install, "PEP 668: no pip into the system Python"
