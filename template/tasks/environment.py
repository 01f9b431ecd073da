"""The pixi environments: doctor, lock, install, test, train, detect-gpu."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from invoke import Exit, task

from .helpers import LOCK, QUERY_TIMEOUT, run, tool
from .settings import settings

PIXI_HOW = "install it from pixi.sh"


def pixi() -> str:
    return tool("pixi", PIXI_HOW)


@task(help={"environment": "pixi environment to report on (default: the container environment)"})
def doctor(c, environment: str = ""):
    """Report which tools are here, and whether the GPU driver can run the locked CUDA."""
    s = settings(c)
    environment = environment or s.environment
    tools = {
        "pixi": ["pixi", "--version"],
        "docker engine": ["docker", "version", "--format", "{{.Server.Version}}"],
        "apptainer": ["apptainer", "--version"],
        "htcondor": ["condor_version"],  # condor_submit has no -version
        "sbatch": ["sbatch", "--version"],
        "nvidia-smi": ["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
    }
    for name, argv in tools.items():
        if shutil.which(argv[0]) is None:
            print(f"{name:15} missing")
            continue
        try:
            result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=QUERY_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"{name:15} present, but not answering within {QUERY_TIMEOUT} s")
            continue
        version = (result.stdout or result.stderr).strip().splitlines()
        print(f"{name:15} {version[0] if version and result.returncode == 0 else 'present, but not working'}")
    needed = locked_cuda_version(environment, s.subdir if s.platform else "linux-64")
    driver = driver_cuda_version()
    print(f"{'pixi (pinned)':15} {s.pixi_version or 'not pinned (no requires-pixi in pixi.toml)'}")
    print(f"{'lock CUDA':15} {needed or 'none (no cuda-version in the ' + environment + ' environment)'}")
    print(f"{'driver CUDA':15} {driver or 'no NVIDIA driver found'}")
    if needed and driver:
        ok = int(driver.split(".")[0]) >= int(needed.split(".")[0])
        print(f"{'verdict':15} {'ok' if ok else 'the driver is too old for the locked CUDA'}")


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


def tests_environment(c) -> str:
    """The environment that has the `test` task: cpu in the template, default in many manifests."""
    environments = settings(c).environments
    return "cpu" if "cpu" in environments else "default"


@task(help={"slow": "the slow end-to-end tests too (`pixi run test-all`, as CI runs them)"})
def test(c, slow: bool = False):
    """Run the project's tests in the locked cpu environment (the quick ones unless --slow)."""
    name = "test-all" if slow else "test"
    run([pixi(), "run", "--locked", "--environment", tests_environment(c), name], "the tests")


@task(help={"epochs": "epochs to train (default: the recipe's)", "environment": "pixi environment (default: default)"})
def train(c, epochs: int = 0, environment: str = "default"):
    """Train on this machine (`pixi run train`)."""
    extra = ["--epochs", str(epochs)] if epochs else []
    run([pixi(), "run", "--locked", "--environment", environment, "train", *extra], "training")


@task(name="detect-gpu", help={"environment": "pixi environment (default: the container environment)"})
def detect_gpu(c, environment: str = ""):
    """Report the GPU, driver and PyTorch build (`pixi run detect-gpu`)."""
    run([pixi(), "run", "--environment", environment or settings(c).environment, "detect-gpu"], "detect-gpu")
