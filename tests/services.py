"""Services the tests start and stop themselves: a Docker engine, a registry, a base image.

Each helper raises ``Unavailable`` (turned into a pytest skip with its reason) when the
package it needs is not installed; `.ci/install` installs them all, so with CI=true such a
skip fails the run instead: nothing skips silently where the packages were installed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

STAND_INS = Path(__file__).resolve().parent / "stand-ins"
BASE_IMAGE = "rmt-test-base:bookworm"
# Durations the service tests measure, printed at the end of the run by conftest.py.
TIMINGS: dict[str, float] = {}


class Unavailable(Exception):
    """A service's package is missing; the message says which and how to install it."""


def skip_or_fail(reason: str) -> None:
    """Skip with the reason; under CI (CI=true, where .ci/install installed everything) fail instead."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a service test must not skip)", pytrace=False)
    pytest.skip(reason)


def start_or_skip(stack: contextlib.ExitStack, service):
    """Enter a service's context on ``stack``, or skip (fail under CI) with the reason it is unavailable."""
    try:
        return stack.enter_context(service)
    except Unavailable as error:
        skip_or_fail(str(error))


def run_invoke(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m invoke ARGS` in ``cwd``, output captured (env: this process's unless given)."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s\n{tail}")


def stop(process: subprocess.Popen, grace: float = 30) -> None:
    """TERM, then KILL after ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return sorted((p for p in points if p.startswith(str(path))), key=len, reverse=True)


@contextlib.contextmanager
def docker_engine(workdir: Path):
    """A private dockerd (own socket, data and exec roots, no bridge or iptables)."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise Unavailable("dockerd is not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise Unavailable("dockerd needs root here")
    import docker

    root = workdir / "docker"
    exec_root = Path(f"/run/rmt-docker-{os.getpid()}")  # short: unix socket paths are limited
    for path in (root / "data", exec_root):
        path.mkdir(parents=True, exist_ok=True)
    socket_path = exec_root / "docker.sock"
    log = root / "dockerd.log"
    argv = [
        dockerd,
        f"--data-root={root / 'data'}",
        f"--exec-root={exec_root}",
        f"--pidfile={exec_root / 'docker.pid'}",
        f"--host=unix://{socket_path}",
        "--storage-driver=overlay2",
        "--iptables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
    ]
    clients = []

    def answers():
        # The client asks for the API version on creation, so create it once dockerd answers.
        clients.append(docker.DockerClient(base_url=f"unix://{socket_path}", timeout=900))
        return clients[-1].ping()

    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:  # from here on, any failure (start-up included) stops the engine and unmounts
        wait_for(answers, 60, "dockerd", log)
        yield clients[-1], f"unix://{socket_path}"
    finally:
        with contextlib.suppress(Exception):
            for container in clients[-1].containers.list(all=True):
                container.remove(force=True)
        for client in clients:
            client.close()
        stop(process)
        # The engine leaves its network namespace and its data-root bind mount behind.
        for point in _mounts_under(exec_root) + _mounts_under(root):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(exec_root, ignore_errors=True)


@contextlib.contextmanager
def registry(workdir: Path):
    """Debian's docker-registry serving on 127.0.0.1:<free port>, storage under workdir."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise Unavailable("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    root = workdir / f"registry-{port}"
    (root / "storage").mkdir(parents=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = root / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"

    def answers():
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=2) as response:
            return response.status == 200

    try:
        wait_for(answers, 30, "docker-registry", log)
        yield host, process
    finally:
        if process.poll() is None:
            stop(process)


def registry_tags(host: str, repository: str) -> list[str]:
    import json

    with urllib.request.urlopen(f"http://{host}/v2/{repository}/tags/list", timeout=10) as response:
        return sorted(json.load(response).get("tags") or [])


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (read at run time, never hard-coded)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    sources += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text()
        for stanza in re.split(r"\n\s*\n", text):
            if re.search(r"^Suites:.*\bbookworm\b", stanza, re.M) and "security" not in stanza:
                match = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if match:
                    return match.group(1)
        match = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text, re.M)
        if match:
            return match.group(1)
    raise Unavailable("no Debian bookworm mirror found in /etc/apt/sources.list.d/ for debootstrap")


def torch_requirement() -> str:
    """The CPU build of the torch pinned in pyproject.toml's dev group (the one place for its version)."""
    from maintainer.groups import group, split_torch

    (pin,) = split_torch(group("dev"))[1]
    return pin


def image_python(rootfs: Path) -> str:
    """The X.Y of the python3 that debootstrap put into ``rootfs`` (bookworm: 3.11)."""
    versions = sorted(
        p.name[len("python") :] for p in (rootfs / "usr" / "bin").glob("python3.[0-9]*") if "-" not in p.name
    )
    if not versions:
        raise Unavailable(f"the base image has no python3 under {rootfs / 'usr/bin'}")
    return versions[0]


def wheel_tags(site: Path, distribution: str) -> list[str]:
    (info,) = site.glob(f"{distribution}-*.dist-info")
    return [
        line.split(":", 1)[1].strip() for line in (info / "WHEEL").read_text().splitlines() if line.startswith("Tag:")
    ]


def torch_wheel_site(target: Path, python_version: str) -> None:
    """Install the CPU torch built for ``python_version`` (and its pure-Python needs) into ``target``.

    The wheel must match the image's Python, not this interpreter's: pip is told the version,
    and the installed wheel's tag is checked, so a mismatch is one clear sentence.
    """
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", str(target)]
    argv += ["--python-version", python_version, "--only-binary=:all:", torch_requirement()]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    uv = shutil.which("uv")
    if result.returncode != 0 and uv:
        # Where pip is not pointed at PyTorch's CPU wheels (the template's CI: .ci/container),
        # uv finds them itself (--torch-backend cpu), so no index host is written here.
        argv = [uv, "pip", "install", "--quiet", "--target", str(target), "--python-version", python_version]
        argv += ["--python", sys.executable, "--only-binary", ":all:", "--torch-backend", "cpu", torch_requirement()]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise Unavailable(
            f"pip found no {torch_requirement()} wheel for the base image's Python {python_version} "
            f"(this machine runs Python {here}): {result.stderr.strip()[-300:]}"
        )
    wanted = "cp" + python_version.replace(".", "")
    tags = wheel_tags(target, "torch")
    if not any(tag.startswith(f"{wanted}-") for tag in tags):
        raise Unavailable(
            f"the torch wheel installed ({', '.join(tags)}) is not for the base image's Python {python_version}"
        )


def build_base_image(client, workdir: Path) -> str:
    """A local stand-in for the pixi base image: Debian minbase + python3 + CPU torch + pixi stand-in.

    No image can be pulled here, so the Dockerfile's PIXI_IMAGE and RUNTIME_IMAGE build
    args point at this image in the tests.
    """
    import docker

    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    try:
        return _debootstrap_base_image(client, workdir)
    except Unavailable as error:
        skip_or_fail(f"the debootstrap base image cannot be built here: {error}")


def _debootstrap_base_image(client, workdir: Path) -> str:
    if shutil.which("debootstrap") is None:
        raise Unavailable("debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise Unavailable("debootstrap needs root")
    mirror = apt_mirror()  # also: a host without a bookworm mirror (not Debian) cannot build it
    rootfs = workdir / "rootfs"
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(rootfs), mirror],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise Unavailable(f"debootstrap failed: {(result.stdout + result.stderr).strip()[-500:]}")
    version = image_python(rootfs)
    torch_wheel_site(rootfs / "usr" / "local" / "lib" / f"python{version}" / "dist-packages", version)
    # The pixi stand-in and the module it imports.
    for name in ("pixi", "standin_common.py"):
        shutil.copy2(STAND_INS / name, rootfs / "usr" / "local" / "bin" / name)
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / cache, ignore_errors=True)
    archive = workdir / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    shutil.rmtree(rootfs, ignore_errors=True)
    repository, tag = BASE_IMAGE.split(":")
    client.api.import_image_from_file(str(archive), repository=repository, tag=tag)
    archive.unlink()
    return BASE_IMAGE


@contextlib.contextmanager
def slurm_cluster(workdir: Path):
    """A one-node SLURM cluster on 127.0.0.1: munged, slurmctld and slurmd, config made here.

    Yields the environment (SLURM_CONF) that every client command needs.
    """
    for binary, package in (("slurmctld", "slurm-wlm"), ("slurmd", "slurm-wlm"), ("munged", "munge")):
        if shutil.which(binary) is None:
            raise Unavailable(f"{binary} is not installed (apt-get install {package})")
    if os.geteuid() != 0:
        raise Unavailable("the local SLURM cluster needs root here")
    root = workdir / "slurm"
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    try:
        # munged refuses to run as root with root's key: run it as the munge user.
        munge_dir = Path("/run/munge")
        munge_dir.mkdir(exist_ok=True)
        shutil.chown(munge_dir, "munge", "munge")
        if not Path("/etc/munge/munge.key").is_file():
            subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "--create"], check=True)
        munge_log = root / "log" / "munged.log"
        with munge_log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    ["runuser", "-u", "munge", "--", "munged", "--foreground", "--force"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_for(lambda: Path("/run/munge/munge.socket.2").exists(), 15, "munged", munge_log)

        host = socket.gethostname().split(".")[0]
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
        node_name = node.split()[0].split("=", 1)[1]
        ctld_port, slurmd_port = free_port(), free_port()
        (root / "gres.conf").write_text(f"NodeName={node_name} Name=gpu File=/dev/null\n")
        (root / "slurm.conf").write_text(
            "\n".join(
                [
                    "ClusterName=rmt-tests",
                    f"SlurmctldHost={host}(127.0.0.1)",
                    f"SlurmctldPort={ctld_port}",
                    f"SlurmdPort={slurmd_port}",
                    "AuthType=auth/munge",
                    # A requeued job waits out its old credential's lifetime (default 120 s)
                    # before it may start again: short here, so the requeue test is quick.
                    "AuthInfo=cred_expire=10",
                    "SlurmUser=root",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "SchedulerParameters=batch_sched_delay=0",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "JobCompType=jobcomp/none",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "MinJobAge=600",
                    "GresTypes=gpu",
                    f"StateSaveLocation={root / 'state'}",
                    f"SlurmdSpoolDir={root / 'spool'}",
                    f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
                    f"{node} NodeAddr=127.0.0.1 Gres=gpu:1 State=UNKNOWN",
                    "PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "PartitionName=cpu Nodes=ALL MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        for daemon in ("slurmctld", "slurmd"):
            with (root / "log" / f"{daemon}.out").open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [daemon, "-D", "-f", str(root / "slurm.conf")], env=env, stdout=out, stderr=subprocess.STDOUT
                    )
                )

        def node_idle():
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
            return "idle" in out

        wait_for(node_idle, 60, "slurmctld/slurmd", root / "log" / "slurmctld.log")
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True, check=False)
        with contextlib.suppress(RuntimeError):
            wait_for(
                lambda: not subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True).stdout.strip(),
                30,
                "an empty queue",
            )
        for process in reversed(processes):
            stop(process)
