"""The researcher's journey: pixi tasks that exist, pick the right environment, reach Invoke, and work.

pixi itself is absent here. What these tests rely on about it was read in pixi 0.77.0's
sources (crates/pixi_task): `pixi run NAME` picks the one environment that defines NAME
when the default environment does not; a task with no typed `args` gets the extra CLI
arguments appended to its cmd; `depends-on` tasks run first, without those arguments.
"""

from __future__ import annotations

import http.server
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
from functools import partial

import pytest

from maintainer.checks import read_manifest
from maintainer.project import template_module
from maintainer.render import preset_names
from tests.project_helpers import write_data_tarball
from tests.services import run_invoke

PRESETS = preset_names()


def pixi_tasks(manifest: dict) -> dict[str, dict[str, dict]]:
    """Task tables by where they are defined: "" for [tasks], else the feature's name."""
    tables = {"": manifest.get("tasks", {})}
    for name, feature in manifest.get("feature", {}).items():
        tables[name] = feature.get("tasks", {})
    return {where: {n: t if isinstance(t, dict) else {"cmd": t} for n, t in ts.items()} for where, ts in tables.items()}


def environment_tasks(manifest: dict) -> dict[str, set[str]]:
    """The task names each environment can run (the default feature unless excluded)."""
    tables = pixi_tasks(manifest)
    result = {}
    for env, spec in manifest.get("environments", {}).items():
        features = ([] if spec.get("no-default-feature") else [""]) + spec.get("features", [])
        result[env] = {name for feature in features for name in tables.get(feature, {})}
    return result


def invoke_task_names(project) -> set[str]:
    result = run_invoke(project, "--list", "--list-format=json")
    assert result.returncode == 0, result.stderr
    return {task["name"] for task in json.loads(result.stdout)["tasks"]}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_invoke_pixi_task_names_an_invoke_task(renderings, preset):
    project = renderings[preset]
    known = invoke_task_names(project)
    calls = {
        name: shlex.split(task["cmd"])
        for tasks in pixi_tasks(read_manifest(project)).values()
        for name, task in tasks.items()
        if str(task.get("cmd", "")).startswith("invoke")
    }
    assert calls, "no pixi task runs Invoke"
    for name, argv in calls.items():
        assert argv[1] in known, f"pixi task {name} runs `invoke {argv[1]}`, which the tasks package does not define"


@pytest.mark.parametrize("preset", PRESETS)
def test_invoke_tasks_run_in_the_tasks_environment_only(renderings, preset):
    manifest = read_manifest(renderings[preset])
    invoking = {n for n, t in pixi_tasks(manifest)["tasks"].items() if str(t.get("cmd", "")).startswith("invoke")}
    holders = {env: names & invoking for env, names in environment_tasks(manifest).items() if names & invoking}
    # Only one environment defines them, so `pixi run build-image` needs no -e (and it has invoke).
    assert set(holders) == {"tasks"} and holders["tasks"] == invoking
    assert "invoke" in manifest["feature"]["tasks"]["dependencies"]
    others = {name for where, tasks in pixi_tasks(manifest).items() if where != "tasks" for name in tasks}
    assert not invoking & others, "a name in two environments would make `pixi run NAME` ambiguous"
    for name in invoking:  # typed args would turn `pixi run X --flag` into an error
        assert "args" not in manifest["feature"]["tasks"]["tasks"][name]


@pytest.mark.parametrize("preset", PRESETS)
def test_only_the_tasks_that_apply_are_generated(renderings, preset):
    project = renderings[preset]
    names = set(pixi_tasks(read_manifest(project))["tasks"])
    applies = {
        ("build-image", "test-image", "push-image"): (project / "Dockerfile").is_file(),
        ("build-sif", "test-sif", "push-sif"): (project / "apptainer.def").is_file(),
        ("submit-condor", "condor-status", "condor-logs", "pack"): (project / "htcondor").is_dir(),
        ("submit-slurm", "slurm-status"): (project / "slurm").is_dir(),
        ("doctor",): True,
    }
    for tasks, wanted in applies.items():
        assert (set(tasks) <= names) if wanted else not (set(tasks) & names), (tasks, wanted)


def test_train_fetches_the_data_first(renderings):
    manifest = read_manifest(renderings["defaults"])
    train = manifest["tasks"]["train"]
    assert train["depends-on"] == ["fetch-data"] and "fetch-data" in manifest["tasks"]
    for env, names in environment_tasks(manifest).items():
        assert ("train" in names) == ("fetch-data" in names), env


README_RUN = re.compile(r"pixi run (?:(?:-e|--environment) (?P<env>\S+) )?(?P<task>[\w-]+)(?: (?P<arg>[^\s`]+))?")


@pytest.mark.parametrize("preset", PRESETS)
def test_readme_runs_only_defined_tasks(renderings, preset):
    project = renderings[preset]
    manifest = read_manifest(project)
    by_env = environment_tasks(manifest)
    anywhere = set().union(*by_env.values())
    known = invoke_task_names(project)
    runs = list(README_RUN.finditer((project / "README.md").read_text()))
    assert runs, "the README names no pixi task"
    for run in runs:
        env, task, arg = run["env"], run["task"], run["arg"]
        if task == "invoke":  # an executable of the tasks environment, not a pixi task
            assert env == "tasks", run[0]
            words = re.findall(r"[\w-]+", run.string[run.end() :].split("\n")[0])
            assert arg in ("--list", "--help") or arg in known, run[0]
            assert arg != "--help" or words[0] in known, run[0]
            continue
        assert task in (by_env[env] if env else anywhere), f"README: `{run[0]}` is not a pixi task"


def test_readme_opens_with_the_demo_and_train_then_one_command_to_a_gpu(renderings):
    readme = (renderings["defaults"] / "README.md").read_text()
    shortest = readme.split("## The shortest path", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("#")[0].strip() for line in shortest.splitlines() if line.startswith(("copier", "pixi"))]
    assert commands[:2] == ["pixi run demo", "pixi run train"]
    # The access point has no Docker engine: CI (git push) builds the image, submit-condor only submits.
    assert commands[2] == "pixi run submit-condor"
    assert "git push" in shortest and "--build" not in shortest.split("pixi run submit-condor", 1)[1].split("\n", 1)[0]
    assert readme.index("## The shortest path") < readme.index("## The journey")


# ------------------------------------------------- the tasks' commands, as pixi runs them
def run_pixi_task(project, manifest, name, *extra):
    """Run a [tasks]/[feature.cpu.tasks] task's cmd after its depends-on, extra args on the root only."""
    tasks = {**pixi_tasks(manifest)[""], **pixi_tasks(manifest).get("cpu", {})}
    for dependency in tasks[name].get("depends-on", []):
        run_pixi_task(project, manifest, dependency)
    argv = shlex.split(tasks[name]["cmd"]) + list(extra)
    argv[0] = sys.executable if argv[0] == "python" else argv[0]  # the environment's python
    result = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"pixi task {name}: {result.stdout}{result.stderr}"
    return result


@pytest.fixture
def served(renderings, tmp_path):
    """A tiny MNIST_data.tar.gz on a local HTTP server: (url, its git blob id, its SHA-256)."""
    root = tmp_path / "server"
    root.mkdir()
    shutil.copy(renderings["cpu-linux"] / "pixi.toml", root / "pixi.toml")
    for part in ("tasks", "src"):  # write_data_tarball uses the tasks' tiny_mnist, which is src/tiny_mnist.py
        shutil.copytree(renderings["cpu-linux"] / part, root / part)
    archive = write_data_tarball(root)
    digests = template_module("src/fetch_data.py").digests_of(archive)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{archive.name}", digests["git_blob"], digests["sha256"]
    server.shutdown()


def test_train_right_after_copy_fetches_verifies_trains_and_plots(copy_of, served):
    project = copy_of("cpu-linux")
    url, blob, sha256 = served
    pinned = read_manifest(project)["tool"]["invoke-tasks"]["data"]
    text = (project / "pixi.toml").read_text()
    # http:// is refused unless the SHA-256 is pinned: both pins, as a careful user writes them.
    text = text.replace(pinned["url"], url).replace(pinned["git-blob"], blob)
    text = text.replace('sha256 = ""', f'sha256 = "{sha256}"')
    (project / "pixi.toml").write_text(text)
    manifest = read_manifest(project)

    run_pixi_task(project, manifest, "train", "--epochs", "1", "--device", "cpu")
    assert json.loads((project / "MNIST_data.tar.gz.verified").read_text())["git_blob"] == blob
    assert (project / "mnist_cnn.pt").is_file() and (project / "metrics.json").is_file()
    again = run_pixi_task(project, manifest, "fetch-data")
    assert "already extracted" in again.stdout
    run_pixi_task(project, manifest, "plot")
    assert (project / "metrics.png").stat().st_size > 10_000

    git = shutil.which("git")
    if git:  # what the README's `git add -A` would commit: no data, model or stamp
        subprocess.run([git, "init", "-q"], cwd=project, check=True)
        listed = subprocess.run([git, "status", "--porcelain", "-uall"], cwd=project, capture_output=True, text=True)
        assert not re.search(r"MNIST_data|data/|\.pt$|metrics\.json", listed.stdout, re.M), listed.stdout


def test_a_wrong_download_stops_training(copy_of, served):
    project = copy_of("cpu-linux")
    url, _, _ = served
    text = (project / "pixi.toml").read_text().replace('sha256 = ""', f'sha256 = "{"0" * 64}"')
    (project / "pixi.toml").write_text(text.replace(read_manifest(project)["tool"]["invoke-tasks"]["data"]["url"], url))
    result = subprocess.run(
        [sys.executable, "src/fetch_data.py", "--extract", "."], cwd=project, capture_output=True, text=True
    )
    assert result.returncode == 1 and "the download was deleted" in result.stderr
    assert not list(project.glob("MNIST_data.tar.gz*")) and not (project / "data").exists()
