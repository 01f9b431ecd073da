"""Invoke tasks for this project: lock, build, test, push, pack and submit.

Run `invoke --list` (or `pixi run -e tasks invoke --list`) to see them, and
`invoke --help TASK` for a task's flags. Settings come from `[tool.invoke-tasks]` in
pixi.toml; each can be overridden with a flag or an environment variable such as
INVOKE_PROJECT_IMAGE or INVOKE_PROJECT_HTCONDOR_REQUEST_MEMORY.

This file is vendored from the project template: `copier update` refreshes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from invoke import Collection, Exit, task

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "pixi.toml"
LOCK = ROOT / "pixi.lock"
TEST_UID = "12345:12345"  # an arbitrary non-root user, as batch systems use
TAG_PLACEHOLDER = "unset-run-invoke-submit-condor"


# --------------------------------------------------------------------- settings
def _underscored(table: dict) -> dict:
    """TOML keys use dashes; Invoke's config (and INVOKE_* variables) need underscores."""
    return {k.replace("-", "_"): _underscored(v) if isinstance(v, dict) else v for k, v in table.items()}


def load_manifest() -> dict:
    try:
        with MANIFEST.open("rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError:
        raise Exit(f"{MANIFEST} not found; run invoke from the project directory.") from None
    except tomllib.TOMLDecodeError as error:
        raise Exit(f"{MANIFEST} is not valid TOML ({error}); fix it before running tasks.") from None


def project_settings(manifest: dict) -> dict:
    """[tool.invoke-tasks] plus the facts derived from the rest of the manifest."""
    settings = _underscored(manifest.get("tool", {}).get("invoke-tasks", {}))
    workspace = manifest.get("workspace", {})
    settings["name"] = workspace.get("name", ROOT.name)
    # The pinned pixi version is requires-pixi's lower bound: one place for it.
    match = re.search(r">=\s*([0-9][0-9.]*)", workspace.get("requires-pixi", ""))
    settings["pixi_version"] = match.group(1) if match else ""
    gpu = manifest.get("feature", {}).get("gpu", {}).get("dependencies", {})
    settings["cuda_version"] = str(gpu.get("cuda-version", "")).rstrip(".*")
    settings["environments"] = list(manifest.get("environments", {}))
    return settings


def settings_of(c) -> dict:
    return c.config.project


def tool(name: str, how: str) -> str:
    """Absolute path of a command, or a one-sentence Exit naming how to get it."""
    path = shutil.which(name)
    if path is None:
        raise Exit(f"{name} is not installed or not on PATH; {how}.", code=127)
    return path


def run(argv: list[str], what: str, cwd: Path = ROOT, capture: bool = False, env: dict | None = None) -> str:
    """Run a command; on failure stop with one sentence saying what failed."""
    print("+ " + shlex.join(argv), flush=True)
    result = subprocess.run(
        argv, cwd=cwd, text=True, capture_output=capture, env={**os.environ, **(env or {})}, check=False
    )
    if result.returncode != 0:
        detail = f": {(result.stderr or result.stdout).strip()[-500:]}" if capture else ""
        raise Exit(f"{what} failed (exit status {result.returncode}){detail}", code=result.returncode or 1)
    return result.stdout if capture else ""


# -------------------------------------------------------------------- git facts
def git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_short_sha() -> str | None:
    return git("rev-parse", "--short=7", "HEAD")


def git_is_dirty() -> bool:
    return bool(git("status", "--porcelain", "--untracked-files=no"))


def lock_digest() -> str:
    if not LOCK.is_file():
        raise Exit("pixi.lock is missing; run `invoke lock` (or `pixi lock`) and commit it first.")
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def immutable_tag() -> str:
    """The tag jobs use: the commit's short SHA (never `latest`, which nodes cache)."""
    sha = git_short_sha()
    if sha is None:
        raise Exit("this project is not a git repository with a commit; commit it so images get an immutable tag.")
    return sha


def image_tags(settings: dict) -> list[str]:
    return ["latest", immutable_tag(), f"lock-{lock_digest()[:12]}"]


# ------------------------------------------------------------------ environment
@task(help={"environment": "pixi environment to report on (default: the container environment)"})
def doctor(c, environment: str = ""):
    """Report which tools are here, and whether the GPU driver can run the locked CUDA."""
    s = settings_of(c)
    environment = environment or s.environment
    tools = {
        "pixi": ["pixi", "--version"],
        "docker engine": ["docker", "version", "--format", "{{.Server.Version}}"],
        "apptainer": ["apptainer", "--version"],
        "condor_submit": ["condor_submit", "-version"],
        "sbatch": ["sbatch", "--version"],
        "nvidia-smi": ["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
    }
    for name, argv in tools.items():
        if shutil.which(argv[0]) is None:
            print(f"{name:15} missing")
            continue
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        version = (result.stdout or result.stderr).strip().splitlines()
        print(f"{name:15} {version[0] if version and result.returncode == 0 else 'present, but not working'}")
    needed = locked_cuda_version(environment)
    driver = driver_cuda_version()
    print(f"{'pixi (pinned)':15} {s.pixi_version}")
    print(f"{'lock CUDA':15} {needed or 'none (no cuda-version in the ' + environment + ' environment)'}")
    print(f"{'driver CUDA':15} {driver or 'no NVIDIA driver found'}")
    if needed and driver:
        ok = tuple(map(int, driver.split(".")[:1])) >= tuple(map(int, needed.split(".")[:1]))
        print(f"{'verdict':15} {'ok' if ok else 'the driver is too old for the locked CUDA'}")


def locked_cuda_version(environment: str, lock_path: Path = LOCK) -> str | None:
    """The cuda-version package locked for ``environment`` on linux-64 (read with py-rattler)."""
    if not lock_path.is_file():
        return None
    try:
        from rattler import LockFile, Platform
    except ImportError:
        raise Exit("py-rattler is not installed; run tasks in the pixi `tasks` environment.") from None
    try:
        env = LockFile.from_path(lock_path).environment(environment)
    except Exception as error:  # a lock format newer than this py-rattler, or a damaged file
        message = f"py-rattler cannot read {lock_path.name} ({error}); update py-rattler or run `pixi lock`."
        raise Exit(message) from None
    if env is None:
        return None
    for platform in env.platforms():
        if str(platform) != str(Platform("linux-64")):
            continue
        for package in env.conda_repodata_records_for_platform(platform) or []:
            if package.name.normalized == "cuda-version":
                return str(package.version)
    return None


def driver_cuda_version() -> str | None:
    """The CUDA version the NVIDIA driver supports, from nvidia-smi's banner."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"CUDA Version:\s*([0-9.]+)", out)
    return match.group(1) if match else None


@task(help={"check": "fail if pixi.lock is stale, without rewriting it"})
def lock(c, check: bool = False):
    """Solve the environments into pixi.lock (`pixi lock`)."""
    pixi = tool("pixi", "install it from pixi.sh")
    # `pixi lock --check` alone would still write the lock file; --dry-run keeps it untouched.
    run([pixi, "lock", "--check", "--dry-run"] if check else [pixi, "lock"], "pixi lock")


@task(help={"environment": "environment to install (default: all)"})
def install(c, environment: str = ""):
    """Install the locked environment(s) (`pixi install --locked`)."""
    pixi = tool("pixi", "install it from pixi.sh")
    run([pixi, "install", "--locked", *(["--environment", environment] if environment else ["--all"])], "pixi install")


@task
def test(c):
    """Run the project's tests in the locked cpu environment."""
    run([tool("pixi", "install it from pixi.sh"), "run", "--locked", "--environment", "cpu", "test"], "the tests")


@task(help={"epochs": "epochs to train (default 14)", "environment": "pixi environment (default: default)"})
def train(c, epochs: int = 14, environment: str = "default"):
    """Train on this machine (`pixi run train`)."""
    pixi = tool("pixi", "install it from pixi.sh")
    run([pixi, "run", "--locked", "--environment", environment, "train", "--epochs", str(epochs)], "training")


@task(name="detect-gpu", help={"environment": "pixi environment (default: the container environment)"})
def detect_gpu(c, environment: str = ""):
    """Report the GPU, driver and PyTorch build (`pixi run detect-gpu`)."""
    pixi = tool("pixi", "install it from pixi.sh")
    run([pixi, "run", "--environment", environment or settings_of(c).environment, "detect-gpu"], "detect-gpu")


@task(name="fetch-data", help={"extract": "also extract the archive into data/"})
def fetch_data(c, extract: bool = False):
    """Download MNIST_data.tar.gz and check its SHA-256 (the data of every job)."""
    ensure_data(settings_of(c), extract)


def ensure_data(settings: dict, extract: bool = False) -> Path:
    sys.path.insert(0, str(ROOT / "src"))
    import fetch_data as fetcher  # src/fetch_data.py: one implementation for pixi and Invoke

    data = settings.data
    try:
        archive = fetcher.fetch(data.url, ROOT / data.archive, data.sha256)
        if extract:
            fetcher.extract(archive, ROOT)
    except fetcher.FetchError as error:
        raise Exit(str(error)) from None
    return archive


# ------------------------------------------------------------------- containers
def docker_client():
    try:
        import docker
    except ImportError:
        raise Exit("the Docker SDK for Python is missing; run tasks in the pixi `tasks` environment.") from None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as error:  # docker-py raises several types for an unreachable engine
        raise Exit(
            f"no Docker engine answers at {os.environ.get('DOCKER_HOST', 'the default socket')} ({error}); "
            "start Docker (or set DOCKER_HOST) and try again."
        ) from None
    return client


def _progress(chunk: dict, state: dict) -> None:
    """A compact progress display for docker-py's push/pull stream."""
    if "id" in chunk and "progressDetail" in chunk and chunk["progressDetail"].get("total"):
        state[chunk["id"]] = chunk["progressDetail"]
        done = sum(d.get("current", 0) for d in state.values())
        total = sum(d.get("total", 0) for d in state.values())
        print(f"\r  {len(state)} layers, {done / 2**20:,.1f} of {total / 2**20:,.1f} MiB", end="", flush=True)
    elif chunk.get("status") and "id" not in chunk:
        print(f"\n  {chunk['status']}", flush=True)


@task(
    name="build-image",
    help={
        "environment": "pixi environment baked in (default: [tool.invoke-tasks] environment)",
        "platform": "target platform (default: linux/amd64)",
        "pixi_image": "base image of the build stage (default: the pinned pixi image)",
        "runtime_image": "base image of the runtime stage (default: the Dockerfile's)",
        "no_cache": "rebuild every layer",
        "network": "network for RUN steps, e.g. host (default: the engine's)",
    },
)
def build_image(
    c,
    environment: str = "",
    platform: str = "",
    pixi_image: str = "",
    runtime_image: str = "",
    no_cache: bool = False,
    network: str = "",
):
    """Build the Docker image, tagged latest, the git short SHA and the lock digest."""
    s = settings_of(c)
    if not (ROOT / "Dockerfile").is_file():
        raise Exit("there is no Dockerfile; this project was generated without the docker container format.")
    tags = image_tags(s)
    client = docker_client()
    buildargs = {
        "PIXI_VERSION": s.pixi_version,
        "PIXI_ENVIRONMENT": environment or s.environment,
        "CUDA_VERSION": s.cuda_version,
    }
    if pixi_image:
        buildargs["PIXI_IMAGE"] = pixi_image
    if runtime_image:
        buildargs["RUNTIME_IMAGE"] = runtime_image
    labels = {
        "org.opencontainers.image.source": git("remote", "get-url", "origin") or f"file://{ROOT}",
        "org.opencontainers.image.revision": git("rev-parse", "HEAD") or "",
        "org.opencontainers.image.created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "org.opencontainers.image.version": tags[1],
        "io.pixi.lock.sha256": lock_digest(),
    }
    print(f"building {s.image}:{tags[1]} ({buildargs['PIXI_ENVIRONMENT']} environment)", flush=True)
    image_id = None
    stream = client.api.build(
        path=str(ROOT),
        tag=f"{s.image}:{tags[1]}",
        buildargs=buildargs,
        labels=labels,
        platform=platform or s.platform,
        rm=True,
        forcerm=True,  # a failed step leaves no intermediate containers behind
        nocache=no_cache,
        network_mode=network or None,
        decode=True,
    )
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            message = chunk.get("error") or chunk["errorDetail"].get("message", "")
            raise Exit(f"the image build failed: {message.strip()}")
        if "stream" in chunk:
            print(chunk["stream"], end="", flush=True)
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    if image_id is None:
        raise Exit("the image build ended without an image ID; see the output above.")
    for tag in tags:
        client.api.tag(image_id, s.image, tag)
    print(f"built {image_id[:19]}: " + ", ".join(f"{s.image}:{t}" for t in tags))


def tiny_mnist(directory: Path, train: int = 128, test: int = 32) -> Path:
    """Write a tiny random MNIST (IDX files) for smoke runs; no torch needed here."""
    import random

    rng = random.Random(0)
    for prefix, n in (("train", train), ("t10k", test)):
        (directory / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">4B3I", 0, 0, 8, 3, n, 28, 28) + bytes(rng.randrange(256) for _ in range(n * 784))
        )
        (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">4BI", 0, 0, 8, 1, n) + bytes(rng.randrange(10) for _ in range(n))
        )
    return directory


@task(name="test-image", help={"tag": "image tag to test (default: the git short SHA)"})
def test_image(c, tag: str = ""):
    """Run the GPU check and a 1-epoch dry run in the image, as a non-root UID without HOME."""
    s = settings_of(c)
    reference = f"{s.image}:{tag or immutable_tag()}"
    client = docker_client()
    with tempfile.TemporaryDirectory() as data_dir:
        os.chmod(data_dir, 0o755)  # readable by the container's non-root user
        tiny_mnist(Path(data_dir))
        runs = {
            "GPU check": ["python", "/app/src/torch_detect_GPU.py"],
            "1-epoch dry run": [
                "python",
                "/app/src/torch_MNIST.py",
                "--data-dir",
                "/data",
                "--epochs",
                "1",
                "--dry-run",
            ],
        }
        for what, command in runs.items():
            print(f"# {what} in {reference} as uid {TEST_UID}", flush=True)
            container = client.containers.run(
                reference,
                command,
                user=TEST_UID,
                environment={"HOME": ""},
                working_dir="/tmp",
                volumes={data_dir: {"bind": "/data", "mode": "ro"}},
                network_mode="none",
                detach=True,
            )
            try:
                status = container.wait(timeout=600)["StatusCode"]
                print(container.logs().decode(errors="replace"), end="", flush=True)
            finally:
                container.remove(force=True)
            if status != 0:
                raise Exit(f"{what} failed in {reference} (exit status {status}).")
    print(f"{reference}: image tests passed")


@task(
    name="push-image",
    help={"allow_dirty": "push although the git tree has uncommitted changes", "tag": "push only this tag"},
)
def push_image(c, allow_dirty: bool = False, tag: str = ""):
    """Push the image's tags to the registry; any error in the push stream is a failure."""
    s = settings_of(c)
    if git_is_dirty() and not allow_dirty:
        raise Exit("the git tree has uncommitted changes, so the SHA tag would lie; commit them or pass --allow-dirty.")
    client = docker_client()
    for name in [tag] if tag else image_tags(s):
        print(f"pushing {s.image}:{name}", flush=True)
        state: dict = {}
        # docker-py does not raise on a failed push: the error arrives inside the stream.
        for chunk in client.api.push(s.image, tag=name, stream=True, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                message = chunk.get("error") or chunk["errorDetail"].get("message", "")
                raise Exit(f"pushing {s.image}:{name} failed: {message.strip()}")
            _progress(chunk, state)
        print(f"\npushed {s.image}:{name}", flush=True)


def registry_has(client, reference: str) -> bool:
    """Whether the registry holds ``reference`` (asks the registry, not the local engine)."""
    import docker

    try:
        client.images.get_registry_data(reference)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as error:
        if "not found" in str(error).lower() or "unknown" in str(error).lower():
            return False
        raise Exit(f"could not ask the registry about {reference} ({error}).") from None
    return True


def sif_path(settings: dict, tag: str) -> Path:
    return ROOT / f"{settings.name}-{tag}.sif"


@task(name="build-sif", help={"from_docker": "convert the local Docker image instead of building apptainer.def"})
def build_sif(c, from_docker: bool = False):
    """Build the Apptainer image NAME-TAG.sif (from apptainer.def, or the local Docker image)."""
    s = settings_of(c)
    apptainer = tool("apptainer", "install Apptainer (apptainer.org) or build on a node that has it")
    tag = immutable_tag()
    source = f"docker-daemon://{s.image}:{tag}" if from_docker else "apptainer.def"
    run([apptainer, "build", "--force", str(sif_path(s, tag)), source], "apptainer build")


@task(name="test-sif")
def test_sif(c):
    """Run the image's %test section (the GPU check through the activation script)."""
    apptainer = tool("apptainer", "install Apptainer (apptainer.org)")
    path = sif_path(settings_of(c), immutable_tag())
    if not path.is_file():
        raise Exit(f"{path.name} does not exist; run `invoke build-sif` first.")
    run([apptainer, "test", str(path)], "apptainer test")


@task(name="push-sif")
def push_sif(c):
    """Push the .sif to the registry as an OCI artifact (oras://IMAGE:sif-TAG)."""
    s = settings_of(c)
    apptainer = tool("apptainer", "install Apptainer (apptainer.org)")
    tag = immutable_tag()
    path = sif_path(s, tag)
    if not path.is_file():
        raise Exit(f"{path.name} does not exist; run `invoke build-sif` first.")
    run([apptainer, "push", str(path), f"oras://{s.image}:sif-{tag}"], "apptainer push")


@task(
    help={
        "environment": "environment to pack (default: the container environment)",
        "archive": "a tarball, not an executable",
    }
)
def pack(c, environment: str = "", archive: bool = False):
    """Pack the environment for linux-64 with pixi-pack (self-extracting by default)."""
    s = settings_of(c)
    pixi_pack = tool("pixi-pack", "run tasks in the pixi `tasks` environment, which has pixi-pack")
    lock_digest()  # pixi-pack reads the lock: fail early with the fix if it is missing
    suffix = "tar" if archive else "sh"
    output = ROOT / f"environment.{suffix}"
    argv = [pixi_pack, "--environment", environment or s.environment, "--platform", "linux-64"]
    argv += [] if archive else ["--create-executable"]
    run([*argv, "--output-file", str(output), str(MANIFEST)], "pixi-pack")
    if not output.is_file():
        raise Exit(f"pixi-pack reported success but wrote no {output.name}.")
    digest = hashlib.sha256(output.read_bytes()).hexdigest()[:8]
    final = ROOT / f"{s.name}-environment-{digest}.{suffix}"
    output.replace(final)
    print(f"packed {final.name}")
    return digest


# ------------------------------------------------------------------------ batch
CONDOR_DIR = ROOT / "htcondor"
LAST_CLUSTER = CONDOR_DIR / ".last-cluster"


def queue_statement(queue: list[str]) -> str:
    """`queue 1`, or one job per argument set (a hyper-parameter sweep)."""
    if not queue:
        return "queue 1"
    lines = "\n".join(f"    {args}" for args in queue)
    return f"queue train_args from (\n{lines}\n)"


def fill_submit_file(text: str, values: dict, queue: list[str]) -> str:
    """Set the submit file's macros (container_tag, pack_tag, train_args) and its queue line."""
    for key, value in values.items():
        text, count = re.subn(rf"^{key}\s*=.*$", f"{key} = {value}", text, flags=re.M)
        if not count:
            raise Exit(f"the submit file has no `{key} =` line to fill; restore it from the template.")
    text, count = re.subn(r"^queue\b.*$", queue_statement(queue), text, flags=re.M)
    if count != 1:
        raise Exit("the submit file must end with exactly one `queue` statement.")
    return text


def back_up_model(directory: Path) -> Path | None:
    """Move an earlier mnist_cnn.pt aside, as the lesson's submit.sh does, so no job overwrites it."""
    model = directory / "mnist_cnn.pt"
    if not model.is_file():
        return None
    stamp = dt.datetime.fromtimestamp(model.stat().st_mtime).strftime("%Y%m%d-%H%M%S")
    backup = directory / f"mnist_cnn_{stamp}.pt.bak"
    model.replace(backup)
    print(f"moved the earlier {model.name} to {backup.name}")
    return backup


def validate_submit(text: str) -> list | None:
    """Job ClassAds from the HTCondor bindings, or None where they are not installed."""
    try:
        os.environ.setdefault("CONDOR_CONFIG", os.devnull)
        import htcondor
    except ImportError:
        return None
    previous = Path.cwd()
    os.chdir(CONDOR_DIR)
    try:
        return list(htcondor.Submit(text).jobs())
    except Exception as error:  # the bindings raise plain exceptions for bad submit text
        raise Exit(f"HTCondor rejects the submit description: {error}") from None
    finally:
        os.chdir(previous)


@task(
    name="submit-condor",
    iterable=["queue"],
    help={
        "flavour": "docker, apptainer or pixi-pack",
        "build": "build and push the image (or pack the environment) first when it is missing",
        "tag": "image tag to run (default: the git short SHA)",
        "queue": "argument set for one job, e.g. '--epochs 5 --lr 0.5'; repeat for a sweep",
        "dry_run": "print the job ClassAd(s) and submit nothing",
        "interactive": "start an interactive job (condor_submit -interactive)",
    },
)
def submit_condor(
    c,
    flavour: str = "docker",
    build: bool = False,
    tag: str = "",
    queue=None,
    dry_run: bool = False,
    interactive: bool = False,
):
    """Submit the training to HTCondor with an immutable image tag (never :latest)."""
    s = settings_of(c)
    flavours = ("docker", "apptainer", "pixi-pack")
    if flavour not in flavours:
        raise Exit(f"--flavour must be one of {', '.join(flavours)}, not {flavour!r}.")
    template = CONDOR_DIR / f"{flavour}.sub"
    if not template.is_file():
        raise Exit(f"{template.relative_to(ROOT)} does not exist: this project has no {flavour} flavour.")
    condor_submit = None if dry_run else tool("condor_submit", "submit from an HTCondor access point")
    ensure_data(s)
    values = {}
    if flavour == "docker":
        tag = tag or immutable_tag()
        client = docker_client()
        reference = f"{s.image}:{tag}"
        if not registry_has(client, reference):
            if not build:
                raise Exit(f"{reference} is not in the registry; run `invoke build-image push-image` or add --build.")
            build_image(c)
            push_image(c, tag=tag)
        values["container_tag"] = tag
    elif flavour == "apptainer":
        tag = tag or immutable_tag()
        if not sif_path(s, tag).is_file() and not s.htcondor.osdf_path:
            if not build:
                raise Exit(f"{sif_path(s, tag).name} does not exist; run `invoke build-sif` or add --build.")
            build_sif(c)
        values["container_tag"] = tag
    else:
        packed = sorted(ROOT.glob(f"{s.name}-environment-*.sh"), key=lambda p: p.stat().st_mtime)
        if not packed and not build:
            raise Exit("no packed environment; run `invoke pack` or add --build.")
        digest = pack(c) if not packed else packed[-1].stem.rsplit("-", 1)[-1]
        values["pack_tag"] = digest
    text = fill_submit_file(template.read_text(), values, list(queue or []))
    ads = validate_submit(text)
    filled = CONDOR_DIR / f"submitted-{flavour}.sub"
    filled.write_text(text)
    if dry_run:
        if ads is None:
            print(text)
            print("# (the htcondor bindings are not installed: the description above was not validated)")
        for ad in ads or []:
            print(ad)
        print(f"# dry run: wrote {filled.relative_to(ROOT)}, submitted nothing")
        return
    # Outputs come back renamed per job (transfer_output_remaps); a model from an older
    # submit file or a hand-run job would still be overwritten, so keep it.
    back_up_model(CONDOR_DIR)
    if interactive:
        run([condor_submit, "-interactive", filled.name], "condor_submit -interactive", cwd=CONDOR_DIR)
        return
    out = run([condor_submit, filled.name], "condor_submit", cwd=CONDOR_DIR, capture=True)
    print(out, end="")
    match = re.search(r"submitted to cluster (\d+)", out)
    if not match:
        raise Exit("condor_submit did not report a cluster id; see its output above.")
    LAST_CLUSTER.write_text(match.group(1) + "\n")
    print(f"cluster {match.group(1)}")


def last_cluster(cluster: int) -> str:
    if cluster:
        return str(cluster)
    if not LAST_CLUSTER.is_file():
        raise Exit("no cluster was submitted from here yet; pass --cluster.")
    return LAST_CLUSTER.read_text().strip()


@task(name="condor-status", help={"cluster": "cluster id (default: the last one submitted)"})
def condor_status(c, cluster: int = 0):
    """Show the cluster's jobs (condor_q), or their history once they have left the queue."""
    cid = last_cluster(cluster)
    run([tool("condor_q", "run it on the access point"), cid, "-nobatch"], "condor_q")


@task(name="condor-logs", help={"cluster": "cluster id (default: the last one submitted)"})
def condor_logs(c, cluster: int = 0):
    """Print the job log, output and error files of a cluster."""
    cid = last_cluster(cluster)
    files = sorted(CONDOR_DIR.glob(f"train_{cid}*"))
    if not files:
        raise Exit(f"no log files for cluster {cid} in htcondor/ yet.")
    for path in files:
        print(f"==> {path.relative_to(ROOT)} <==\n{path.read_text(errors='replace')}")


SLURM_SCRIPT = ROOT / "slurm" / "train.sbatch"
LAST_SLURM = ROOT / "slurm" / ".last-job"


@task(
    name="submit-slurm",
    help={"args": "arguments for torch_MNIST.py, e.g. '--epochs 5'", "sbatch_option": "extra sbatch option"},
    iterable=["sbatch_option"],
)
def submit_slurm(c, args: str = "", sbatch_option=None):
    """Submit the training with sbatch and print the job id."""
    if not SLURM_SCRIPT.is_file():
        raise Exit("slurm/train.sbatch does not exist: this project was generated without SLURM.")
    sbatch = tool("sbatch", "submit from a SLURM login node")
    if not (ROOT / "data").is_dir() and not (ROOT / "MNIST_data.tar.gz").is_file():
        raise Exit("neither data/ nor MNIST_data.tar.gz is here; run `invoke fetch-data` first.")
    argv = [sbatch, "--parsable", f"--chdir={ROOT}", f"--output={ROOT / 'slurm' / 'train_%j.out'}"]
    argv += list(sbatch_option or []) + [str(SLURM_SCRIPT), *shlex.split(args)]
    job_id = run(argv, "sbatch", capture=True).strip().split(";")[0]
    if not job_id.isdigit():
        raise Exit(f"sbatch printed {job_id!r} instead of a job id.")
    LAST_SLURM.write_text(job_id + "\n")
    print(f"job {job_id}")


def slurm_state(job_id: str) -> str | None:
    """The job's state from scontrol (sacct needs accounting, which many clusters lack)."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=False).stdout
    match = re.search(r"JobState=(\S+)", out)
    return match.group(1) if match else None


def accounting_enabled() -> bool:
    """Whether sacct can answer: the cluster stores accounting (many small clusters do not)."""
    if shutil.which("sacct") is None:
        return False
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"^AccountingStorageType\s*=\s*(\S+)", out, re.M)
    return bool(match) and match.group(1) != "accounting_storage/none"


@task(
    name="slurm-status", help={"job": "job id (default: the last one submitted)", "log": "also print the job's output"}
)
def slurm_status(c, job: int = 0, log: bool = False):
    """Show a SLURM job's state (squeue/scontrol; sacct only where accounting exists)."""
    job_id = str(job) if job else (LAST_SLURM.read_text().strip() if LAST_SLURM.is_file() else "")
    if not job_id:
        raise Exit("no job was submitted from here yet; pass --job.")
    tool("scontrol", "run it on a SLURM login node")
    state = slurm_state(job_id)
    if state is None and accounting_enabled():
        out = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            state = out.stdout.strip()
    print(f"job {job_id}: {state or 'unknown (no longer known to slurmctld, and no accounting)'}")
    output = ROOT / "slurm" / f"train_{job_id}.out"
    if log and output.is_file():
        print(output.read_text(errors="replace"))
    if state and state.split()[0] in {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}:
        raise Exit(f"job {job_id} ended {state}.")


ns = Collection.from_module(sys.modules[__name__])
ns.configure({"project": project_settings(load_manifest())})


@task(name="settings")
def show_settings(c):
    """Print the effective settings (pixi.toml, then INVOKE_PROJECT_* overrides)."""
    print(json.dumps(dict(settings_of(c)), indent=2, default=str))


ns.add_task(show_settings)
