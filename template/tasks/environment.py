"""The pixi environments: doctor, lock, install, test, train, detect-gpu."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from invoke import Exit, task

from .helpers import LOCK, QUERY_TIMEOUT, ROOT, run, tool
from .settings import settings

PIXI_HOW = "install it from pixi.sh"


def pixi() -> str:
    return tool("pixi", PIXI_HOW)


# name -> (command printing its version, project file that shows it is used, what to do where it is missing)
TOOLS = {
    "pixi": (["pixi", "--version"], "", f"{PIXI_HOW} (every other tool comes from its environments)"),
    "docker engine": (
        ["docker", "version", "--format", "{{.Server.Version}}"],
        "Dockerfile",
        "needed only to build and push images: install Docker (docs.docker.com/engine/install)",
    ),
    "apptainer": (
        ["apptainer", "--version"],
        "apptainer.def",
        "needed only to build .sif images: install Apptainer (apptainer.org) or use a cluster node that has it",
    ),
    "htcondor": (
        ["condor_version"],
        "htcondor",
        "HTCondor jobs are submitted from an access point: run submit-condor there",
    ),  # condor_submit has no -version
    "sbatch": (["sbatch", "--version"], "slurm", "SLURM jobs are submitted from a login node: run submit-slurm there"),
    "nvidia-smi": (
        ["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
        "",
        "no NVIDIA driver here: train on the CPU (pixi run train) or on a cluster's GPUs",
    ),
}
# Why a present tool may not work, recognised in its error output, and the next step.
NOT_WORKING = [
    ("permission denied", "you may not use the Docker engine: add yourself to the docker group and log in again"),
    ("cannot connect", "the engine is not running: start it (sudo systemctl start docker, or open Docker Desktop)"),
    ("daemon running", "the engine is not running: start it (sudo systemctl start docker, or open Docker Desktop)"),
    ("slurm_conf", "SLURM is not configured on this machine: run this on the cluster's login node"),
    ("configuration", "this machine is not part of a pool or cluster: run this on its access point or login node"),
    ("nvml", "the NVIDIA driver is not loaded or does not match its library: reboot, or reinstall the driver"),
]


def tool_report(argv: list[str], missing: str) -> str:
    """One line: the tool's version, or why it is not usable here and what to do."""
    if shutil.which(argv[0]) is None:
        return f"missing; {missing}"
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=QUERY_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"present, but not answering within {QUERY_TIMEOUT} s; run `{' '.join(argv)}` to see where it hangs"
    lines = (result.stdout or result.stderr).strip().splitlines()
    if result.returncode == 0 and lines:
        return lines[0]
    error = (result.stderr or result.stdout).strip().splitlines()
    reason = error[0] if error else f"exit status {result.returncode}"
    step = next(
        (s for key, s in NOT_WORKING if key in (result.stderr + result.stdout).lower()),
        f"run `{' '.join(argv)}` to see why",
    )
    return f"present, but not working ({reason[:120]}); {step}"


@task(help={"environment": "pixi environment to report on (default: the container environment)"})
def doctor(c, environment: str = ""):
    """Report which tools are here, and whether the GPU driver can run the locked CUDA."""
    s = settings(c)
    environment = environment or s.environment
    for name, (argv, used_with, missing) in TOOLS.items():
        if used_with and not (ROOT / used_with).exists():
            continue  # a system this project does not use
        print(f"{name:15} {tool_report(argv, missing)}")
    pinned = s.pixi_version or "not pinned; add requires-pixi = '>=X.Y.Z' under [workspace] in pixi.toml"
    print(f"{'pixi (pinned)':15} {pinned}")
    if not LOCK.is_file():
        print(f"{'lock CUDA':15} no pixi.lock yet; run `pixi lock` and commit pixi.lock")
        needed = None
    else:
        needed = locked_cuda_version(environment, s.subdir if s.platform else "linux-64")
        print(f"{'lock CUDA':15} {needed or f'none: the {environment} environment has no CUDA (CPU-only PyTorch)'}")
    driver = driver_cuda_version()
    print(f"{'driver CUDA':15} {driver or 'none: no NVIDIA driver found (GPU jobs run on the cluster)'}")
    if needed and driver:
        ok = int(driver.split(".")[0]) >= int(needed.split(".")[0])
        advice = (
            f"the driver (CUDA {driver}) is too old for the locked CUDA {needed}; update the NVIDIA driver, "
            "or lower cuda_version with copier update"
        )
        print(f"{'verdict':15} {'ok' if ok else advice}")


def locked_cuda_version(environment: str, subdir: str = "linux-64", lock_path: Path = LOCK) -> str | None:
    """The cuda-version package locked for ``environment`` on ``subdir`` (read with py-rattler).

    Lock format v7 (pixi >= 0.71) stores a named platform such as linux-64-cuda under an
    alias (p1, p2, ...) with its subdir and virtual packages, so platforms are matched by
    subdir, those that promise __cuda first, never by the name.
    """
    if not lock_path.is_file():
        return None
    try:
        from rattler import LockFile
    except ImportError:
        raise Exit("py-rattler is not installed; run tasks in the pixi `tasks` environment.") from None
    try:
        env = LockFile.from_path(lock_path).environment(environment)
        platforms = list(env.platforms()) if env is not None else []
    except Exception as error:  # a lock format newer than this py-rattler, or a damaged file
        message = f"py-rattler cannot read {lock_path.name} ({error}); update py-rattler (>=0.24) or run `pixi lock`."
        raise Exit(message) from None

    def promises_cuda(platform) -> bool:
        return any(str(v).startswith("__cuda") for v in getattr(platform, "virtual_packages", None) or [])

    candidates = [p for p in platforms if str(getattr(p, "subdir", p)) == subdir]
    for platform in sorted(candidates, key=lambda p: not promises_cuda(p)):
        for package in env.conda_repodata_records_for_platform(platform) or []:
            if package.name.normalized == "cuda-version":
                return str(package.version)
    return None


def driver_cuda_version() -> str | None:
    """The CUDA version the NVIDIA driver supports, from nvidia-smi's banner."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=False, timeout=QUERY_TIMEOUT).stdout
    except subprocess.TimeoutExpired:  # a hung driver: as good as none, for this question
        return None
    match = re.search(r"CUDA Version:\s*([0-9.]+)", out)
    return match.group(1) if match else None


@task(help={"check": "fail if pixi.lock is stale, without rewriting it"})
def lock(c, check: bool = False):
    """Solve the environments into pixi.lock (`pixi lock`)."""
    # `pixi lock --check` alone would still write the lock file; --dry-run keeps it untouched.
    run([pixi(), "lock", "--check", "--dry-run"] if check else [pixi(), "lock"], "pixi lock")


@task(help={"environment": "environment to install (default: all)"})
def install(c, environment: str = ""):
    """Install the locked environment(s) (`pixi install --locked`)."""
    run(
        [pixi(), "install", "--locked", *(["--environment", environment] if environment else ["--all"])], "pixi install"
    )


@task(help={"slow": "the slow end-to-end tests too (`pixi run test-all`, as CI runs them)"})
def test(c, slow: bool = False):
    """Run the project's tests in the locked default (CPU) environment (the quick ones unless --slow)."""
    run([pixi(), "run", "--locked", "--environment", "default", "test-all" if slow else "test"], "the tests")


@task(help={"epochs": "epochs to train (default: the recipe's)", "environment": "pixi environment (default: default)"})
def train(c, epochs: int = 0, environment: str = "default"):
    """Train on this machine (`pixi run train`)."""
    extra = ["--epochs", str(epochs)] if epochs else []
    run([pixi(), "run", "--locked", "--environment", environment, "train", *extra], "training")


@task(name="detect-gpu", help={"environment": "pixi environment (default: the container environment)"})
def detect_gpu(c, environment: str = ""):
    """Report the GPU, driver and PyTorch build (`pixi run detect-gpu`)."""
    run([pixi(), "run", "--environment", environment or settings(c).environment, "detect-gpu"], "detect-gpu")
