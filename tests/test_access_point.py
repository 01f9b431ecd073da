"""submit-condor as it runs on an HTCondor access point: no Docker engine, no Apptainer, no builds.

The registry is real (Debian's docker-registry, over HTTP on 127.0.0.1); images and SIF
artifacts are put there over the OCI distribution API, as CI's pushes put them. condor_submit,
condor_q and pixi-pack are the stand-ins of tests/stand-ins; apptainer and docker are absent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.project_helpers import dry_run_ads, dry_run_command, write_data_tarball
from tests.services import STAND_INS, registry, start_or_skip
from tests.test_vendored_tasks import committed, invoke, one_sentence, short_sha

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# What `apptainer push FILE oras://...` writes (apptainer internal/pkg/client/oras).
SIF_CONFIG = "application/vnd.sylabs.sif.config.v1+json"
SIF_LAYER = "application/vnd.sylabs.sif.layer.v1.sif"


@pytest.fixture(scope="module")
def local_registry(tmp_path_factory):
    with contextlib.ExitStack() as stack:
        host, _ = start_or_skip(stack, registry(tmp_path_factory.mktemp("registry")))
        yield host


def _blob(host: str, repository: str, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = urllib.request.Request(f"http://{host}/v2/{repository}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(start, timeout=10) as response:
        location = response.headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    upload = urllib.request.Request(
        f"{location}{'&' if '?' in location else '?'}digest={digest}", data=data, method="PUT"
    )
    upload.add_header("Content-Type", "application/octet-stream")
    urllib.request.urlopen(upload, timeout=10).close()
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def push_manifest(host: str, reference: str, config_type: str, layer_type: str, layer: bytes) -> None:
    """Put IMAGE:TAG in the registry over its HTTP API (what a push leaves there)."""
    repository, tag = reference.split("/", 1)[1].rsplit(":", 1)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _blob(host, repository, b"{}", config_type),
        "layers": [_blob(host, repository, layer, layer_type)],
    }
    request = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/{tag}", data=json.dumps(manifest).encode(), method="PUT"
    )
    request.add_header("Content-Type", OCI_MANIFEST)
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def access_point(tmp_path) -> Path:
    """A PATH as an access point has it: condor_submit, condor_q and pixi-pack; no apptainer, no docker."""
    bin_dir = tmp_path / "access-point-bin"
    bin_dir.mkdir()
    for name in ("condor_submit", "condor_q", "pixi-pack"):
        (bin_dir / name).symlink_to(STAND_INS / name)
    return bin_dir


@pytest.fixture
def project(copy_of, access_point):
    path = copy_of("everything")
    subprocess.run([STAND_INS / "pixi", "lock"], cwd=path, check=True, capture_output=True)
    committed(path)
    write_data_tarball(path)
    return path


def submit(project, access_point, host, *args):
    env = {
        "INVOKE_PROJECT_IMAGE": f"{host}/some-lab/everything-on",
        "INVOKE_PROJECT_HTCONDOR_OSDF_PATH": "",
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "DOCKER_CONFIG": str(project.parent / "no-docker-config"),
    }
    return invoke(project, "submit-condor", *args, path_dirs=(access_point,), extra_env=env)


def test_docker_flavour_asks_the_registry_not_an_engine(project, access_point, local_registry):
    image = f"{local_registry}/some-lab/everything-on:{short_sha(project)}"
    result, recorded = submit(project, access_point, local_registry, "--flavour", "docker")
    assert one_sentence(result) == (
        f"{image} is not in the registry; CI pushes it when this commit reaches main on GitHub "
        "(.github/workflows/docker.yml), or add --build where Docker runs."
    )
    assert recorded == []
    result, recorded = submit(project, access_point, local_registry, "--flavour", "docker", "--build")
    assert one_sentence(result).startswith("--build needs a Docker engine, which access points lack; CI pushes it")
    push_manifest(
        local_registry,
        image,
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar",
        b"layer",
    )
    result, recorded = submit(project, access_point, local_registry)  # docker: the first flavour
    assert result.returncode == 0, result.stdout + result.stderr
    assert recorded[-1].startswith("condor_submit ") and f"container_image = docker://{image}" in recorded[-1]


def test_apptainer_flavour_submits_the_oras_sif_ci_pushed(project, access_point, local_registry):
    sha = short_sha(project)
    remote = f"{local_registry}/some-lab/everything-on:sif-{sha}"
    result, recorded = submit(project, access_point, local_registry, "--flavour", "apptainer")
    assert one_sentence(result) == (
        f"neither everything-on-{sha}.sif nor oras://{remote} exists; CI pushes the SIF when this commit "
        "reaches main on GitHub (.github/workflows/apptainer.yml)."
    )
    result, _ = submit(project, access_point, local_registry, "--flavour", "apptainer", "--build")
    assert one_sentence(result).startswith(f"--build needs Apptainer to build everything-on-{sha}.sif; CI pushes")
    push_manifest(local_registry, remote, SIF_CONFIG, SIF_LAYER, b"SIF image")
    result, recorded = submit(project, access_point, local_registry, "--flavour", "apptainer")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"container_image = oras://{remote}" in recorded[-1]
    # A local .sif is sent instead, once request_disk holds it (a sparse 12 GiB file here).
    with (project / f"everything-on-{sha}.sif").open("wb") as sif:
        sif.truncate(12 * 2**30)
    result, recorded = submit(project, access_point, local_registry, "--flavour", "apptainer")
    assert one_sentence(result) == (
        f"request_disk = 12GB in htcondor/apptainer.sub is too small for everything-on-{sha}.sif (12.0 GiB), "
        "which the job's sandbox holds; raise it to at least 13.0 GiB."
    )
    assert recorded == []


def test_pixi_pack_flavour_and_the_default_flavour(project, access_point, local_registry):
    result, recorded = submit(project, access_point, local_registry, "--flavour", "pixi-pack", "--build")
    assert result.returncode == 0, result.stdout + result.stderr
    assert recorded[0].startswith("pixi-pack ") and "pack_file = everything-on-environment-gpu-" in recorded[-1]
    # Without the docker flavour, the README's sweep command runs the first flavour there is.
    (project / "htcondor" / "docker.sub").unlink()
    result, _ = submit(project, access_point, local_registry, "--dry-run", "--queue", "--epochs 1")
    assert result.returncode == 0, result.stdout + result.stderr
    (ad,) = dry_run_ads(result.stdout)
    assert ad["ContainerImage"].startswith("oras://")


def test_staging_shows_progress_line_by_line(project, access_point, local_registry):
    """Copies to the OSDF staging directory (GBs for a pack) print progress as they go: whole lines in a log."""
    staging = project.parent / "ospool-data"
    staging.mkdir()
    env = {
        "INVOKE_PROJECT_IMAGE": f"{local_registry}/some-lab/everything-on",
        "INVOKE_PROJECT_HTCONDOR_OSDF_PATH": "osdf:///ospool/ap40/data/someone/mnist",
        "INVOKE_PROJECT_HTCONDOR_STAGING_DIR": str(staging),
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
    }
    args = ("submit-condor", "--flavour", "pixi-pack", "--build")
    result, recorded = invoke(project, *args, path_dirs=(access_point,), extra_env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    staged = sorted(path.name for path in staging.iterdir())
    assert len(staged) == 2 and "MNIST_data.tar.gz" in staged, staged
    for name in staged:
        lines = [line for line in result.stderr.splitlines() if line.startswith(f"staging {name}: ")]
        assert len(lines) >= 2 and "\r" not in result.stderr, result.stderr
        assert re.search(r": (\S+ \w+) of \1 \(100%\).* in [0-9.]+ s$", lines[-1]), lines
    assert recorded[-1].startswith("condor_submit ")
    # Submitted again: each staged file is compared with ours, byte for byte, with progress too.
    again, _ = invoke(project, *args, path_dirs=(access_point,), extra_env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    for name in staged:
        compared = [line for line in again.stderr.splitlines() if line.startswith(f"comparing {name} with the staged")]
        assert compared and "(100%)" in compared[-1] and f"{name} is already staged" in again.stdout, again.stderr


def test_the_dry_run_command_runs_as_printed(project, access_point, local_registry):
    args = ("--flavour", "pixi-pack", "--build", "--dry-run", "--queue", "--epochs 1", "--queue", "--lr '0.5' $HOME")
    result, _ = submit(project, access_point, local_registry, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    command = dry_run_command(result.stdout)
    env = {
        **os.environ,
        "PATH": f"{access_point}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "STANDIN_LOG": str(project / "ran.log"),
    }
    ran = subprocess.run(["bash", "-c", command], cwd=project / "htcondor", env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "2 job(s) submitted" in ran.stdout
    assert (project / "htcondor" / "sweep.txt").read_text() == "--epochs 1\n--lr '0.5' $(DOLLAR)HOME\n"
    assert shlex.split(command)[0] == "printf"


def test_docker_credentials_come_from_the_docker_config(tmp_path, project, monkeypatch):
    from tests.project_helpers import project_tasks

    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(b"someone:ghp_token").decode()
    (config / "config.json").write_text(
        json.dumps({"auths": {"ghcr.io": {"auth": auth}, "https://index.docker.io/v1/": {"auth": auth}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    registry_module = project_tasks(project).registry
    assert registry_module.docker_credentials("ghcr.io") == ("someone", "ghp_token")
    assert registry_module.docker_credentials("docker.io") == ("someone", "ghp_token")
    assert registry_module.docker_credentials("quay.io") is None
    assert registry_module.split_image("ubuntu") == ("docker.io", "library/ubuntu")
    assert registry_module.api_base("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert registry_module.api_base("ghcr.io") == "https://ghcr.io"


def _files(project: Path) -> dict[str, float]:
    return {str(p.relative_to(project)): p.stat().st_mtime for p in project.rglob("*") if ".git" not in p.parts}


def _edit(project: Path, old: str, new: str, name: str = "docker.sub") -> None:
    path = project / "htcondor" / name
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))


# The submit files' request_memory: memory_mb, doubled after each memory hold, up to memory_cap_mb.
GROWING_MEMORY = "request_memory = min({$(memory_cap_mb), $(memory_mb) * pow(2, $(memory_holds))})"

BAD_VALUES = [
    (
        ("request_disk = 4GB", "request_disk = 20"),
        [],
        {},
        "htcondor/docker.sub: request_disk = 20 has no unit, which HTCondor reads as 20 KiB; write the unit, e.g. "
        "20GB.",
    ),
    (
        (GROWING_MEMORY, "request_memory = 8"),
        [],
        {},
        "htcondor/docker.sub: request_memory = 8 has no unit, which HTCondor reads as 8 MB; write the unit, e.g. 8GB.",
    ),
    (
        ("memory_mb = 4096", "memory_mb = 8GB"),
        [],
        {},
        "htcondor/docker.sub: memory_mb = 8GB is not a whole number of MB, which request_memory reads; write one "
        "such as 4096 (4 GB).",
    ),
    (
        ("memory_cap_mb = 16384", "memory_cap_mb = 2048"),
        [],
        {},
        "htcondor/docker.sub: memory_cap_mb = 2048 is below memory_mb = 4096, so a job held for memory would ask for "
        "less; raise memory_cap_mb.",
    ),
    (
        (GROWING_MEMORY, "request_memory = 8GiB"),
        [],
        {},
        "htcondor/docker.sub: request_memory = 8GiB is not a size HTCondor reads (a number and K, M, G or T, e.g. "
        "8GB or 512MB; not GiB).",
    ),
    (
        ("gpus_minimum_capability = 7.5", "gpus_minimum_capability = seven"),
        [],
        {},
        "htcondor/docker.sub: gpus_minimum_capability = seven is not a compute capability such as 7.5.",
    ),
    (
        ("request_gpus = 1", "request_gpus = 0"),
        [],
        {},
        "htcondor/docker.sub asks for no GPU (request_gpus = 0) but the environment it runs is the CUDA one; set "
        "request_gpus = 1.",
    ),
    (
        ("queue train_args from $(train_args_file)", "# no queue statement"),
        [],
        {},
        "htcondor/docker.sub doesn't contain any queue commands, so condor_submit refuses it; end it with "
        "`queue train_args from $(train_args_file)`.",
    ),
    (
        ("request_cpus = 1", "request_cpus = 1\nrequirements = (TARGET.HasCHTCStaging == true)"),
        [],
        {},
        "htcondor/docker.sub sets requirements more than once and HTCondor keeps only the last; join them into one "
        "line with &&.",
    ),
    (
        (" && (TARGET.HasCHTCStaging == true)", ""),
        [],
        {"INVOKE_PROJECT_HTCONDOR_OSDF_PATH": "osdf:///chtc/staging/someone"},
        "htcondor/docker.sub reads its large files from osdf:///chtc/staging/someone (CHTC's /staging) but its "
        "requirements do not ask for HasCHTCStaging; add `&& (TARGET.HasCHTCStaging == true)` to its requirements "
        "line.",
    ),
    (
        None,
        ["--tag", "latest"],
        {},
        "--tag latest moves with every push and execute points cache it; pass a commit's short SHA.",
    ),
    (
        None,
        [],
        {"INVOKE_PROJECT_IMAGE": "ghcr.io/x/y:latest"},
        "image 'ghcr.io/x/y:latest' names a tag or digest; set the name alone: the tasks add the commit's tag.",
    ),
    (
        None,
        [],
        {"INVOKE_PROJECT_IMAGE": "ghcr.io/Some-Lab/y"},
        "image 'ghcr.io/Some-Lab/y' has capitals, which registries refuse; write 'ghcr.io/some-lab/y'.",
    ),
    (
        ("--epochs 14", ""),
        [],
        {},
        "htcondor/train_args.txt holds no arguments, so no job would be queued; write one line of arguments per "
        "job (e.g. --epochs 14).",
    ),
]


@pytest.mark.parametrize(("edit", "args", "env", "sentence"), BAD_VALUES, ids=lambda v: str(v)[:30])
def test_every_bad_value_is_one_sentence_and_writes_nothing(project, access_point, edit, args, env, sentence):
    if edit and edit[0] == "--epochs 14":
        (project / "htcondor" / "train_args.txt").write_text("\n")
    elif edit:
        _edit(project, *edit)
    before = _files(project)
    environment = {
        "INVOKE_PROJECT_HTCONDOR_OSDF_PATH": "",
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "INVOKE_PROJECT_HTCONDOR_STAGING_DIR": str(project.parent / "staging"),
        **env,
    }
    result, recorded = invoke(project, "submit-condor", *args, path_dirs=(access_point,), extra_env=environment)
    assert one_sentence(result) == sentence
    assert recorded == [] and _files(project) == before


def test_batch_site_chooses_the_site_conventions(tmp_path):
    """CHTC: GPU Lab with the chosen job length, resumable; OSPool: none of them; neither streams output."""
    from maintainer.render import render

    chtc = render(tmp_path / "chtc", {"chtc_gpu_job_length": "long"})
    text = (chtc / "htcondor" / "docker.sub").read_text()
    for line in ("+WantGPULab = true", '+GPUJobLength = "long"', "+is_resumable = true"):
        assert f"\n{line}\n" in text
    assert "\nstream_output" not in text and "\nstream_error" not in text  # tests/test_submit_files.py
    ospool = render(tmp_path / "ospool", {"batch_site": "ospool"})
    lines = (ospool / "htcondor" / "docker.sub").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.startswith("#"))
    assert not any(word in text for word in ("WantGPULab", "GPUJobLength", "is_resumable", "HasCHTCStaging"))
