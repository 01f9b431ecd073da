"""A newcomer's first hour in a generated project: the README's first success offline, one CPU
environment, detect-gpu where the GPU is, doctor's advice, true README statements, plain words."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maintainer.checks import manifest_semantics, read_manifest, run_checks
from maintainer.render import ROOT, preset_names, render
from tests.project_helpers import project_tasks
from tests.services import STAND_INS, TIMINGS, run_invoke

# Imported by every Python process started with it on PYTHONPATH (the pixi stand-in, the
# training): any connection that is not to this machine fails, and is written down.
NETWORK_GUARD = """
import os, socket
_LOG = os.environ["NETWORK_GUARD_LOG"]
_LOCAL = ("127.", "::1", "localhost")

def _refuse(address):
    host = address[0] if isinstance(address, tuple) else str(address)
    if isinstance(host, str) and host.startswith(_LOCAL):
        return
    with open(_LOG, "a") as log:
        log.write(f"{os.getpid()} {address}\\n")
    raise OSError(101, f"network blocked by the test ({address})")

_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
socket.socket.connect = lambda self, address: (_refuse(address), _connect(self, address))[1]
socket.socket.connect_ex = lambda self, address: (_refuse(address), _connect_ex(self, address))[1]
_getaddrinfo = socket.getaddrinfo
socket.getaddrinfo = lambda host, *a, **k: (_refuse((host,)), _getaddrinfo(host, *a, **k))[1]
"""


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    guard = tmp_path / "network-guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(NETWORK_GUARD)
    path = os.pathsep.join([str(STAND_INS), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(guard), "NETWORK_GUARD_LOG": str(tmp_path / "network.log")}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "CONDA_OVERRIDE_CUDA"):
        env.pop(name, None)
    return {**env, **extra}


def without_network(argv: list[str]) -> list[str]:
    """In a network namespace of its own where this machine allows it (root), else as given: the guard holds."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False) if os.geteuid() == 0 else None
    return ["unshare", "-n", *argv] if probe is not None and probe.returncode == 0 else argv


def readme_first_success(project: Path) -> list[str]:
    """The first command of the README's shortest path, as the newcomer types it."""
    readme = (project / "README.md").read_text()
    section = readme.split("## The shortest path\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return shlex.split(block.splitlines()[0].split("#", 1)[0])


def test_the_network_guard_blocks(tmp_path):
    code = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=1)"
    result = subprocess.run([sys.executable, "-c", code], env=offline_env(tmp_path), capture_output=True, text=True)
    assert result.returncode != 0 and "network blocked by the test" in result.stderr
    assert (tmp_path / "network.log").read_text().strip()


def test_the_readme_first_success_trains_a_model_offline(copy_of, tmp_path):
    project = copy_of("defaults")
    command = readme_first_success(project)
    assert command == ["pixi", "run", "demo"]
    started = time.perf_counter()
    result = subprocess.run(
        without_network(command), cwd=project, env=offline_env(tmp_path), capture_output=True, text=True, check=False
    )
    TIMINGS["pixi run demo (stand-in pixi, offline)"] = time.perf_counter() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "network.log").exists(), (tmp_path / "network.log").read_text()
    assert not (project / "MNIST_data.tar.gz").exists(), "the demo downloaded the real data"
    import torch

    state = torch.load(project / "demo" / "mnist_cnn.pt", map_location="cpu", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    epochs = json.loads((project / "demo" / "metrics.json").read_text())["epochs"]
    assert len(epochs) == 2
    assert epochs[-1]["test_accuracy"] > 0.5, "the tiny MNIST's classes are learnable: far above chance (0.1)"
    git = subprocess.run(["git", "init", "-q", str(project)], check=True)
    assert git.returncode == 0
    ignored = subprocess.run(
        ["git", "check-ignore", "demo/mnist_cnn.pt", "demo/data/train-images-idx3-ubyte", "metrics.png"],
        cwd=project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ignored.stdout.split() == ["demo/mnist_cnn.pt", "demo/data/train-images-idx3-ubyte", "metrics.png"]


def test_tiny_mnist_is_one_implementation(copy_of, tmp_path):
    project = copy_of("defaults")
    sys.path.insert(0, str(project / "src"))
    try:
        import tiny_mnist
        import torch_MNIST

        via_tasks = project_tasks(project).data.tiny_mnist(tmp_path / "tasks", 64, 16)
        direct = tiny_mnist.tiny_mnist(tmp_path / "src", 64, 16)
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
            assert (via_tasks / name).read_bytes() == (direct / name).read_bytes()
        images, labels = torch_MNIST.load_split(direct, "train")
        assert tuple(images.shape) == (64, 28, 28) and int(labels.max()) <= 9
    finally:
        sys.path.remove(str(project / "src"))
        for name in ("tiny_mnist", "torch_MNIST"):
            sys.modules.pop(name, None)
    for module in (project / "tasks").glob("*.py"):
        assert '">4B3I"' not in module.read_text(), f"tasks/{module.name} writes IDX files itself"


def test_the_project_tests_write_mnist_through_tiny_mnist():
    """The project's tests draw made-up digits with src/tiny_mnist.py and encode IDX with its
    idx_bytes: one writer of MNIST files for the demo, the tasks and the tests."""
    tests = ROOT / "template" / "tests"
    for module in tests.glob("*.py"):
        text = module.read_text()
        assert "struct.pack" not in text, f"tests/{module.name} encodes IDX headers itself"
        assert "def synthetic_digits" not in text, f"tests/{module.name} draws its own made-up digits"
    conftest = (tests / "conftest.py").read_text()
    assert "from tiny_mnist import idx_bytes, tiny_mnist" in conftest


@pytest.mark.parametrize("preset", preset_names())
def test_one_cpu_environment(renderings, preset):
    manifest = read_manifest(renderings[preset])
    environments = manifest["environments"]
    assert "cpu" not in environments and "cpu" in environments["default"]["features"]
    features = [tuple(sorted(e["features"])) for e in environments.values()]
    assert len(features) == len(set(features)), environments
    settings = manifest["tool"]["invoke-tasks"]
    assert settings["environment"] == ("gpu" if "gpu" in environments else "default")
    assert "pixi-pack" in manifest["feature"]["tasks"]["dependencies"], "pixi-pack wherever the tasks run"
    detect = manifest["tasks"]["detect-gpu"]
    assert detect.get("default-environment") == ("gpu" if "gpu" in environments else None)


def test_a_duplicate_environment_is_caught(renderings):
    manifest = read_manifest(renderings["defaults"])
    manifest["environments"]["cpu"] = dict(manifest["environments"]["default"])
    assert "environments default and cpu have the same features: keep one" in manifest_semantics(manifest)


def test_an_intel_mac_platform_renders_and_checks(tmp_path):
    project = render(tmp_path / "intel-mac", {"platforms": ["linux-64", "osx-64"]})
    assert "osx-64" in read_manifest(project)["workspace"]["platforms"]
    failed = [f.line() for f in run_checks(project, ["pixi"]) if not f.ok]
    assert not failed, failed


def run_detect_gpu(project: Path, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    env = offline_env(tmp_path, **extra)
    return subprocess.run(["pixi", "run", "detect-gpu"], cwd=project, env=env, capture_output=True, text=True)


@pytest.mark.skipif(Path("/proc/driver/nvidia/version").exists(), reason="this machine has an NVIDIA driver")
def test_detect_gpu_runs_where_the_gpu_is_and_says_why_not(copy_of, tmp_path):
    project = copy_of("defaults")
    # No driver: pixi runs the task in the default environment, which says why in one sentence.
    result = run_detect_gpu(project, tmp_path)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("the pixi environment 'default' has the CPU build of PyTorch, and the gpu environment")
    # A machine whose driver supports CUDA 12 (CONDA_OVERRIDE_CUDA, as pixi honours it): the gpu environment.
    result = run_detect_gpu(project, tmp_path, CONDA_OVERRIDE_CUDA="12.9")
    assert result.returncode == 0, result.stderr
    assert "the pixi environment 'gpu'" in result.stdout


def invoke_here(project: Path, tmp_path: Path, *args: str, path_dirs: tuple = ()) -> subprocess.CompletedProcess:
    env = offline_env(tmp_path)
    env["PATH"] = os.pathsep.join([*map(str, path_dirs), env["PATH"]])
    return run_invoke(project, *args, env=env)


def fake_tool(directory: Path, name: str, stderr: str, code: int = 1) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(f"#!/bin/sh\necho {shlex.quote(stderr)} >&2\nexit {code}\n")
    (directory / name).chmod(0o755)


def test_doctor_gives_a_reason_and_a_next_step(copy_of, tmp_path):
    project = copy_of("everything")
    fakes = tmp_path / "fakes"
    fake_tool(
        fakes,
        "docker",
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
    )
    fake_tool(fakes, "sbatch", "sbatch: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host")
    result = invoke_here(project, tmp_path, "doctor", path_dirs=(fakes,))
    assert result.returncode == 0, result.stderr
    lines = {line[:15].strip(): line[15:].strip() for line in result.stdout.splitlines()}
    assert lines["docker engine"] == (
        "present, but not working (Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the "
        "docker daemon running?); the engine is not running: start it (sudo systemctl start docker, or open "
        "Docker Desktop)"
    )
    assert lines["sbatch"].startswith("present, but not working (sbatch: error: resolve_ctls_from_dns_srv")
    assert lines["sbatch"].endswith("; run `sbatch --version` to see why")
    assert lines["lock CUDA"] == "no pixi.lock yet; run `pixi lock` and commit pixi.lock"
    for name, text in lines.items():
        if text.startswith(("missing", "none", "present, but")):
            assert ";" in text or ":" in text, f"{name}: {text} gives no reason or next step"


def test_doctor_leaves_out_systems_the_project_does_not_use(renderings, tmp_path):
    result = invoke_here(renderings["cpu-linux"], tmp_path, "doctor")
    assert result.returncode == 0, result.stderr
    names = {line[:15].strip() for line in result.stdout.splitlines()}
    assert {"pixi", "nvidia-smi", "lock CUDA"} <= names
    assert not {"docker engine", "apptainer", "htcondor", "sbatch"} & names


def test_the_readme_says_how_settings_come_from_the_environment_and_it_is_true(copy_of, tmp_path):
    project = copy_of("everything")
    readme = (project / "README.md").read_text()
    assert "every Invoke flag can also be set" not in readme
    examples = dict(re.findall(r"`(INVOKE_PROJECT_[A-Z_]+)=([^`.]+)`", readme))
    assert examples.get("INVOKE_PROJECT_DATA_MAX_SIZE_MB") == "2048"
    env = {**offline_env(tmp_path), **examples}
    settings = json.loads(run_invoke(project, "settings", env=env).stdout)
    assert settings["data"]["max_size_mb"] == 2048


def test_a_cjk_project_name_gets_a_valid_slug(tmp_path):
    project = render(tmp_path / "cjk", {"project_name": "深度学习研究"})
    answers = (project / ".copier-answers.yml").read_text()
    assert "project_slug: study\n" in answers
    assert read_manifest(project)["workspace"]["name"] == "study"
    project = render(tmp_path / "digits", {"project_name": "2024 MNIST"})
    assert "project_slug: study-2024-mnist\n" in (project / ".copier-answers.yml").read_text()


def test_plots_are_group_readable_and_the_help_matches_the_results_layout(renderings, tmp_path):
    project = renderings["everything"]
    sys.path.insert(0, str(project / "src"))
    try:
        import plot_metrics

        metrics = tmp_path / "metrics.json"
        epoch = {"epoch": 1, "train_loss": 1.0, "test_loss": 0.5, "test_accuracy": 0.9}
        metrics.write_text(json.dumps({"config": {}, "epochs": [epoch]}))
        old = os.umask(0o022)
        try:
            assert plot_metrics.main([str(metrics), "--output", str(tmp_path / "metrics.png")]) == 0
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / "metrics.png").stat().st_mode) == 0o644
        assert "htcondor/results/1234.*/metrics.json" in plot_metrics.__doc__
        assert "slurm/results/5678/metrics.json" in plot_metrics.__doc__
        assert "metrics_*" not in plot_metrics.__doc__
    finally:
        sys.path.remove(str(project / "src"))
        sys.modules.pop("plot_metrics", None)


JARGON = ["git short SHA", "lock digest", "git blob id", "OCI artifact", "exit code 85", "OSDF", "access point"]


@pytest.mark.parametrize("preset", preset_names())
def test_no_authoring_lore_and_every_term_explained(renderings, preset):
    project = renderings[preset]
    texts = {p: p.read_text(errors="replace") for p in project.rglob("*") if p.is_file() and ".git" not in p.parts}
    for path, text in texts.items():
        for lore in ("its authors", "had no network", "the template's authors", "stand-in"):
            assert lore not in text, f"{path.relative_to(project)} says {lore!r}"
    readme = texts[project / "README.md"]
    words = readme.split("## Words used here\n", 1)[1].split("\n## ", 1)[0]
    user_facing = readme + texts[project / "pixi.toml"]
    for term in JARGON:
        shown = term.lower() in user_facing.lower() or term.replace("exit code ", "exits ") in user_facing
        if shown:
            assert f"| {term}" in words or f", {term}" in words, f"{term!r} is used but not explained"


def test_build_image_shows_the_base_image_pull_progress(copy_of, capsys, monkeypatch):
    """docker-py's build stream carries the FROM pulls' layer progress; docker build shows it, so do we."""
    from invoke import Context

    project = copy_of("everything")
    (project / "pixi.lock").write_text("version: 7\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "start"], cwd=project, check=True)
    images = project_tasks(project).images
    chunks = [
        {"status": "Pulling from prefix-dev/pixi", "id": "0.77.0"},
        {"status": "Downloading", "id": "a1", "progressDetail": {"current": 2**20, "total": 4 * 2**20}},
        {"status": "Downloading", "id": "b2", "progressDetail": {"current": 2**20, "total": 2**20}},
        {"stream": "Step 2/9 : RUN pixi install\n"},
        {"aux": {"ID": "sha256:" + "0" * 64}},
    ]

    class Api:
        def build(self, **kwargs):
            return iter(chunks)

        def tag(self, *args):
            return True

    monkeypatch.setattr(images, "docker_client", lambda: type("Client", (), {"api": Api()})())
    images.build_image.body(Context())
    shown = capsys.readouterr()
    # src/progress.py's line on stderr (whole lines: capsys is no terminal); the build's steps on stdout.
    assert "pulling (2 layers): 2.0 MiB of 5.0 MiB (40%)" in shown.err and "\r" not in shown.err
    assert "Step 2/9 : RUN pixi install" in shown.out


def test_the_pixi_stand_in_picks_the_task_environment_as_pixi_does(tmp_path):
    """pixi_task/src/task_environment.rs find_task (v0.77.0): one environment has it, or ambiguous."""
    (tmp_path / "pixi.toml").write_text(
        '[workspace]\nname = "w"\nchannels = ["conda-forge"]\nplatforms = ["linux-64", "osx-arm64", "win-64"]\n\n'
        '[feature.a.tasks]\nhello = "echo from-a"\nonly-a = "echo only $PIXI_ENVIRONMENT_NAME"\n\n'
        '[feature.b.tasks]\nhello = "echo from-b"\n\n'
        '[environments]\na = ["a"]\nb = ["b"]\n'
    )
    env = offline_env(tmp_path)
    run = lambda *args: subprocess.run(["pixi", "run", *args], cwd=tmp_path, env=env, capture_output=True, text=True)  # noqa: E731
    result = run("only-a")
    assert result.returncode == 0 and result.stdout.strip() == "only a", result.stderr
    result = run("hello")
    assert result.returncode == 1
    assert result.stderr.startswith("Error:   × the task 'hello' is ambiguous\n")
    assert "These environments provide the task 'hello': a, b" in result.stderr
    assert run("-e", "b", "hello").stdout.strip() == "from-b"
