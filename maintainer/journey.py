"""A researcher's journey through a rendered project, step by step, on whichever tools are here.

    python -m maintainer.journey --preset defaults --workdir /tmp/journey [--steps render,lock]
    python -m maintainer.journey --preset defaults --workdir /tmp/journey --stand-ins

The same steps run in the template repository's journey workflow on the real tools (pixi,
Docker with the ghcr.io/prefix-dev/pixi base, Apptainer, pixi-pack, an HTCondor pool) and in
the tests on tests/stand-ins. Every step prints which tool it used: its path and whether that
is the real tool or a stand-in. A step whose tools are missing fails with one sentence.

Steps: render, lock, install, project-tests, image, sif, pack, condor, update.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from maintainer.commands import find_tool, run
from maintainer.project import data_pins, write_data_tarball
from maintainer.render import ROOT, git, load_answers, render_fresh

STAND_INS = ROOT / "tests" / "stand-ins"
STEPS = ["render", "lock", "install", "project-tests", "image", "sif", "pack", "condor", "update"]
# The HTCondor pool of the condor step: a container of this image, named so (see journey.yml).
CONDOR_CONTAINER = os.environ.get("JOURNEY_CONDOR_CONTAINER", "htcondor-mini")
# The pool has no GPU: the pack step packs, and the condor step submits, this one environment.
POOL_ENVIRONMENT = "default"
# What the job asks of the mini pool, sized to a GitHub runner (4 CPUs and 16 GB on public
# repositories' ubuntu-24.04, 2 and 7 GB on private ones): one CPU-epoch of the tiny data set.
POOL_MEMORY_MB = "2048"  # memory_mb in the submit file: its first request, in MB
POOL_WAIT_SECONDS = 1200
# A release tag made on a copy of the repository when it has none, so the update step runs.
STAND_IN_RELEASE = "v0.0.0"


class StepFailed(Exception):
    """A step could not run or did not pass; the message says which and why."""


class Journey:
    def __init__(self, preset: str, workdir: Path, stand_ins: bool, prune: bool = False):
        self.preset = preset
        self.project = workdir / preset
        self.stand_ins = stand_ins
        self.prune_between = prune
        self.env = dict(os.environ)
        if stand_ins:
            self.env["PATH"] = os.pathsep.join([str(STAND_INS), self.env.get("PATH", "")])
            self.env.setdefault("STANDIN_LOG", str(workdir / f"{preset}-standins.log"))

    # ------------------------------------------------------------------ helpers
    def tool(self, step: str, name: str) -> str:
        path = find_tool(name, path=self.env["PATH"])
        if path is None:
            raise StepFailed(f"step {step} needs {name}, which is not on PATH")
        kind = "stand-in" if Path(path).resolve().is_relative_to(STAND_INS) else "real"
        print(f"[{step}] tool {name}: {path} ({kind})", flush=True)
        return path

    def run(self, step: str, argv: list, cwd: Path | None = None, capture: bool = False) -> str:
        print(f"[{step}] $ {' '.join(map(str, argv))}", flush=True)
        result = run(argv, cwd=cwd or self.project, env=self.env, capture=capture)
        if result.returncode != 0:
            detail = (result.stdout or "")[-2000:] + (result.stderr or "")[-2000:] if capture else ""
            raise StepFailed(f"step {step}: `{' '.join(map(str, argv[:3]))} ...` exited {result.returncode}\n{detail}")
        return result.stdout or ""

    def invoke(self, step: str, *args: str, capture: bool = False) -> str:
        """The project's own tasks: through its pixi `tasks` environment where pixi is real."""
        pixi = find_tool("pixi", path=self.env["PATH"])
        if pixi and not Path(pixi).resolve().is_relative_to(STAND_INS):
            return self.run(step, [pixi, "run", "--locked", "-e", "tasks", "invoke", *args], capture=capture)
        return self.run(step, [sys.executable, "-m", "invoke", *args], capture=capture)

    def commit(self, message: str) -> None:
        git(self.project, "add", "-A")
        git(self.project, "commit", "-q", "--allow-empty", "-m", message)

    def has(self, path: str) -> bool:
        return (self.project / path).exists()

    def write_data(self) -> Path:
        """A tiny random MNIST_data.tar.gz in CHTC's layout, pinned as the project's data (INVOKE_*
        overrides), so the tasks verify it as they verify the real one."""
        archive = write_data_tarball(self.project)
        self.env.update(data_pins(archive))
        return archive

    def prune(self, step: str) -> None:
        """Free what a step left behind that later steps do not use (--prune; the runner's disk
        holds the CUDA environment only a few times): the image step's images and build cache,
        the sif step's SIF and Apptainer's cache. The running pool's image stays (in use)."""
        if step == "image" and find_tool("docker", path=self.env["PATH"]):
            self.run(step, ["docker", "image", "prune", "--all", "--force"], capture=True)
            self.run(step, ["docker", "builder", "prune", "--all", "--force"], capture=True)
        if step == "sif":
            for sif in self.project.glob("*.sif"):
                sif.unlink()
            if find_tool("apptainer", path=self.env["PATH"]):
                self.run(step, ["apptainer", "cache", "clean", "--force"], capture=True)
        usage = shutil.disk_usage(self.project.parent)
        print(f"[{step}] pruned; {usage.free / 1024**3:.1f} GB free under {self.project.parent}", flush=True)

    # -------------------------------------------------------------------- steps
    def step_render(self) -> None:
        import copier

        print(f"[render] tool copier: {Path(copier.__file__).parent} (real, Python package)")
        self.tool("render", "git")  # tasks tag images and packs by commit
        render_fresh(self.project, load_answers(self.preset))
        git(self.project, "init", "-q", "-b", "main")
        self.commit("start from the template")

    def step_lock(self) -> None:
        pixi = self.tool("lock", "pixi")
        self.run("lock", [pixi, "lock"])
        self.run("lock", [pixi, "lock", "--check", "--dry-run"])
        self.commit("lock")

    def step_install(self) -> None:
        pixi = self.tool("install", "pixi")
        self.run("install", [pixi, "install", "--locked", "--environment", "default"])

    def step_project_tests(self) -> None:
        pixi = self.tool("project-tests", "pixi")
        self.run("project-tests", [pixi, "run", "--locked", "--environment", "default", "test"])

    def step_image(self) -> None:
        if not self.has("Dockerfile"):
            print("[image] not in this preset (no Dockerfile)")
            return
        self.tool("image", "docker")
        self.invoke("image", "build-image")
        out = self.invoke("image", "test-image", capture=True)
        print(out)
        if "image tests passed" not in out:
            raise StepFailed("step image: test-image did not report `image tests passed`")

    def step_sif(self) -> None:
        if not self.has("apptainer.def"):
            print("[sif] not in this preset (no apptainer.def)")
            return
        self.tool("sif", "apptainer")
        self.invoke("sif", "build-sif")
        self.invoke("sif", "test-sif")  # runs the definition's %test section

    def packer(self, step: str) -> None:
        """pixi-pack from the project's `tasks` environment (real pixi) or from PATH."""
        inside = self.project / ".pixi" / "envs" / "tasks" / "bin" / "pixi-pack"
        if inside.exists():
            print(f"[{step}] tool pixi-pack: {inside} (real, the project's tasks environment)")
        else:
            self.tool(step, "pixi-pack")

    def pool_settings(self) -> None:
        """The tasks' settings for the pack and condor steps: one environment for both (the
        pack is named by it, and submit-condor looks for that name), sized to the pool."""
        self.env["INVOKE_PROJECT_ENVIRONMENT"] = POOL_ENVIRONMENT
        self.pool_resources(memory_mb=POOL_MEMORY_MB, request_gpus="0")
        # The mini pool cannot read OSDF: the tasks send the pack and the data from the project.
        self.env["INVOKE_PROJECT_HTCONDOR_OSDF_PATH"] = ""

    def pool_resources(self, **values: str) -> None:
        """The pool's resources, written into htcondor/pixi-pack.sub: the one place the tasks read them."""
        path = self.project / "htcondor" / "pixi-pack.sub"
        if not path.is_file():
            return
        text = path.read_text()
        for key, value in values.items():
            text, count = re.subn(rf"^{key}\s*=.*$", f"{key} = {value}", text, flags=re.M)
            if not count:
                text = text.replace("\nqueue ", f"\n{key} = {value}\nqueue ", 1)
        path.write_text(text)

    def step_pack(self) -> None:
        self.pool_settings()
        self.packer("pack")
        self.invoke("pack", "pack")
        packed = self.packed()
        self.write_data()
        scratch = Path(tempfile.mkdtemp(prefix="journey-unpack-"))
        shutil.copy2(packed, scratch / packed.name)
        with tarfile.open(self.project / "MNIST_data.tar.gz") as tar:
            tar.extractall(scratch, filter="data")
        self.run("pack", ["bash", f"./{packed.name}"], cwd=scratch)  # writes ./env and ./activate.sh
        for made in ("env", "activate.sh"):
            if not (scratch / made).exists():
                raise StepFailed(f"step pack: the self-extractor wrote no ./{made}")
        train = f". ./activate.sh && python {self.project / 'src' / 'torch_MNIST.py'} --data-dir data --epochs 1"
        out = self.run("pack", ["bash", "-c", train + " --device cpu"], cwd=scratch, capture=True)
        print(out)
        shutil.rmtree(scratch, ignore_errors=True)
        if "epoch  1:" not in out:
            raise StepFailed("step pack: the one-epoch training printed no `epoch  1:` line")

    def packed(self) -> Path:
        """The pack of the pool's environment (the tasks name packs <name>-environment-<env>-...)."""
        packs = list(self.project.glob(f"*-environment-{POOL_ENVIRONMENT}-*.sh"))
        if not packs:
            raise StepFailed(f"step condor: no pack of the {POOL_ENVIRONMENT} environment; run the pack step first")
        return max(packs, key=lambda p: p.stat().st_mtime)

    def pool_disk(self, packed: Path) -> str:
        """request_disk for the pack: the self-extractor's peak (3x the pack plus the environment,
        as the tasks' check_pack_disk counts it) and a quarter more, in whole GB."""
        installed = self.project / ".pixi" / "envs" / POOL_ENVIRONMENT
        files = [p for p in installed.rglob("*") if p.is_file() and not p.is_symlink()] if installed.is_dir() else []
        unpacked = sum(p.stat().st_size for p in files) or 3 * packed.stat().st_size
        need = (3 * packed.stat().st_size + unpacked) * 1.25
        return f"{max(1, math.ceil(need / 1024**3))}GB"

    def step_condor(self) -> None:
        if not self.has("htcondor/pixi-pack.sub"):
            print("[condor] not in this preset (no htcondor/pixi-pack.sub)")
            return
        self.pool_settings()
        packed = self.packed()
        self.pool_resources(request_disk=self.pool_disk(packed))
        if not (self.project / "MNIST_data.tar.gz").exists():
            self.write_data()
        # The tasks' own condor_submit command (validated by the bindings): the pack they name
        # must be the one the pack step made, or the job would unpack another environment.
        dry_run = self.invoke("condor", "submit-condor", "--flavour", "pixi-pack", "--dry-run", capture=True)
        words = shlex.split(dry_run.split("# dry run: would run, in htcondor/:\n", 1)[1].strip())
        # The printed line may first write the sweep file (`printf ... > sweep.txt &&`): keep condor_submit's call.
        start = max(i for i, word in enumerate(words) if Path(word).name == "condor_submit")
        command = words[start:]
        if f"pack_file = {packed.name}" not in command:
            raise StepFailed(f"step condor: submit-condor names another pack than {packed.name}: {' '.join(command)}")
        sweep = self.project / "htcondor" / "journey_args.txt"
        sweep.write_text("--epochs 1 --device cpu\n")
        # The pool has no GPU: ask for none (-append wins over the file's lines).
        appends = ["request_gpus = 0", "requirements = true", f"train_args_file = {sweep.name}"]
        submit = [*command[1:-1], *(arg for line in appends for arg in ("-append", line)), command[-1]]
        if self.stand_ins:
            condor_submit = self.tool("condor", "condor_submit")
            print(self.run("condor", [condor_submit, *submit], cwd=self.project / "htcondor", capture=True))
            print("[condor] stand-in: condor_submit accepted the job; no pool runs it here")
            return
        self.in_pool(submit)

    def in_pool(self, submit: list[str]) -> None:
        """Submit in the pool's container as a normal user, wait, and say why if the job is held."""
        docker = self.tool("condor", "docker")
        argv = [docker, "exec", "-u", "submituser", "-w", str(self.project / "htcondor"), CONDOR_CONTAINER]
        # The pool's submituser reads the project and writes logs and outputs into htcondor/.
        self.run("condor", ["chmod", "-R", "a+rwX", str(self.project)])
        out = self.run("condor", [*argv, "condor_submit", *submit], capture=True)
        print(out)
        cluster = out.strip().rsplit("cluster", 1)[-1].strip(" .\n")
        self.wait_for_job(argv, cluster)
        history = self.run("condor", [*argv, "condor_history", cluster, "-af", "ExitCode"], capture=True)
        job_dir = self.project / "htcondor" / "results" / f"{cluster}.0"
        if history.split() != ["0"]:
            raise StepFailed(f"step condor: job {cluster} exited {history.strip()}; see {job_dir}/train.err")
        model = job_dir / "mnist_cnn.pt"
        if not model.is_file() or model.stat().st_size == 0:
            raise StepFailed(f"step condor: the job returned no {model}")
        print(f"[condor] job {cluster}.0 completed and returned {model.relative_to(self.project)}")

    def wait_for_job(self, argv: list, cluster: str) -> None:
        """Until the job leaves the queue; a held job fails with its HoldReason, a job still
        waiting at the deadline with condor_q -better-analyze (why no slot matches)."""
        deadline = time.monotonic() + POOL_WAIT_SECONDS
        while time.monotonic() < deadline:
            state = self.run("condor", [*argv, "condor_q", cluster, "-af", "JobStatus", "HoldReason"], capture=True)
            if not state.strip():
                return  # left the queue: completed (or removed; condor_history says which)
            status, _, reason = state.strip().partition(" ")
            if status == "5":  # HTCondor's JobStatus 5: Held
                raise StepFailed(f"step condor: job {cluster} is held: {reason}")
            time.sleep(10)
        why = self.run("condor", [*argv, "condor_q", "-better-analyze", cluster], capture=True)
        raise StepFailed(f"step condor: job {cluster} did not finish within {POOL_WAIT_SECONDS} s\n{why[-3000:]}")

    def previous_release(self) -> tuple[str, str]:
        """(template source, tag): the newest v* tag of this repository, or, when it has none, a
        tag made on a copy of it (the commit before HEAD), so the update step always runs."""
        tags = git(ROOT, "tag", "--list", "v*", "--sort=-v:refname").split()
        if tags:
            return str(ROOT), tags[0]
        copy = self.project.parent / "template-copy"
        if copy.exists():
            shutil.rmtree(copy)
        git(self.project.parent, "clone", "-q", "--no-local", str(ROOT), str(copy))
        parents = git(copy, "rev-list", "--first-parent", "--max-count=2", "HEAD").split()
        git(copy, "tag", STAND_IN_RELEASE, parents[-1])
        print(f"[update] no v* release here: tagged {parents[-1][:12]} {STAND_IN_RELEASE} on a copy ({copy})")
        return str(copy), STAND_IN_RELEASE

    def step_update(self) -> None:
        """`copier update` from the previous release to this commit, with the user's edits."""
        import copier

        source, release = self.previous_release()
        print(f"[update] tool copier: {Path(copier.__file__).parent} (real, Python package); from {release}")
        project = self.project.parent / f"{self.preset}-update"
        if project.exists():
            shutil.rmtree(project)
        copier.run_copy(source, str(project), data=load_answers(self.preset), defaults=True, vcs_ref=release)
        git(project, "init", "-q", "-b", "main")
        git(project, "add", "-A")
        git(project, "commit", "-q", "-m", f"from {release}")
        training = project / "src" / "torch_MNIST.py"
        # An edit to the model, the part of the script researchers change.
        edited = training.read_text().replace("self.dropout2 = nn.Dropout(0.5)", "self.dropout2 = nn.Dropout(0.4)")
        if edited == training.read_text():
            raise StepFailed(f"step update: the journey's edit (the model's dropout) no longer fits {training}")
        training.write_text(edited)
        git(project, "commit", "-q", "-am", "my edit")
        copier.run_update(str(project), defaults=True, overwrite=True, conflict="inline", vcs_ref="HEAD")
        if "self.dropout2 = nn.Dropout(0.4)" not in training.read_text():
            raise StepFailed("step update: the user's edit was lost")
        conflicts = [
            p
            for p in project.rglob("*")
            # at a line's start only: the README and tasks/helpers.py name the markers in their text
            if p.is_file() and ".git" not in p.parts and re.search(r"^<<<<<<< ", p.read_text(errors="replace"), re.M)
        ]
        if conflicts or list(project.rglob("*.rej")):
            raise StepFailed(f"step update: conflicts in {', '.join(str(p) for p in conflicts) or '*.rej files'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="defaults")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, from: {', '.join(STEPS)}")
    parser.add_argument("--stand-ins", action="store_true", help="put tests/stand-ins first on PATH")
    parser.add_argument("--prune", action="store_true", help="after each step, free what later steps do not use")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        print(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}.", file=sys.stderr)
        return 2
    try:
        load_answers(args.preset)
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    journey = Journey(args.preset, args.workdir.resolve(), args.stand_ins, args.prune)
    for step in steps:
        started = time.perf_counter()
        print(f"== step {step} ({args.preset})", flush=True)
        try:
            getattr(journey, f"step_{step.replace('-', '_')}")()
            if args.prune:
                journey.prune(step)
        except (StepFailed, RuntimeError, OSError, ValueError) as error:  # git, copier and files say why
            print(f"== step {step} FAILED: {error}", file=sys.stderr, flush=True)
            return 1
        print(f"== step {step} ok in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
