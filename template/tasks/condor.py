"""HTCondor: submit-condor, condor-logs, condor-plot (condor-status is in condor_sweeps.py).

The submit files in htcondor/ are rendered once; at submit time this module passes the
values that change (image tag, .sif or pack name, where large files come from, the
resources in pixi.toml, a sweep) as `condor_submit -append` commands, which come after
the file's own and before its queue statement. Nothing rewrites the files.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from pathlib import Path

from invoke import Exit, task

from .apptainer import build_sif, sif_path
from .condor_bindings import check_sizes, job_ads
from .data import data_archive, ensure_data, plot_metrics
from .helpers import MANIFEST, ROOT, SUBMIT_TIMEOUT, immutable_tag, read_resolved, run, tool
from .images import build_image, docker_client, push_image, registry_has
from .pack import check_pack_disk, condor_size, pack, pack_path
from .settings import Settings, settings
from .staging import osdf_url, report_transfer, stage, staging_dir
from .sweeps import provenance_attributes

CONDOR_DIR = ROOT / "htcondor"
LAST_CLUSTER = CONDOR_DIR / ".last-cluster"
FLAVOURS = ("docker", "apptainer", "pixi-pack")

# Listed only in projects that use this system (tasks/__init__.py).
USED_WITH = ("htcondor",)


def resource_commands(s: Settings) -> list[tuple[str, str]]:
    """pixi.toml's [tool.invoke-tasks.htcondor] resources, as submit commands (one place)."""
    h = s.htcondor
    for key, value, unit in (("request-memory", h.request_memory, "M"), ("request-disk", h.request_disk, "K")):
        if value and condor_size(value, unit) is None:
            raise Exit(f"{key} {value!r} is not a size such as 8GB; fix it under [tool.invoke-tasks.htcondor].")
    if h.request_gpus > 1:
        raise Exit(
            f"request-gpus is {h.request_gpus}, but training uses one GPU (src/torch_MNIST.py has no "
            "multi-GPU training); set request-gpus = 1 under [tool.invoke-tasks.htcondor]."
        )
    commands = [("request_memory", h.request_memory), ("request_disk", h.request_disk)]
    if h.request_gpus:
        commands += [("request_gpus", str(h.request_gpus)), ("gpus_minimum_capability", h.gpu_min_capability)]
        commands.append(("+WantGPULab", "true" if h.chtc_gpu_lab else "false"))
    return [(key, value) for key, value in commands if value]


def data_pins(s: Settings) -> str:
    """The pins train.sh verifies the data with, as the job's environment (hexadecimal: nothing to quote)."""
    pins = (("SHA256", s.data.sha256), ("GIT_BLOB", s.data.git_blob))
    return " ".join(f"INVOKE_PROJECT_DATA_{name}={value}" for name, value in pins if value)


def large_input(s: Settings, path: Path, dry_run: bool, sent: list[Path]) -> str:
    """Where a job reads ``path`` from: OSDF when osdf-path is set, else the access point."""
    if s.htcondor.osdf_path:
        return stage(s, path, dry_run)
    sent.append(path)
    return f"../{path.name}"


def docker_image(c, s: Settings, tag: str, build: bool, dry_run: bool) -> str:
    reference = f"{s.require_image()}:{tag}"
    if dry_run:
        print(f"would check that the registry holds {reference}" + (" and build and push it if not" if build else ""))
        return f"docker://{reference}"
    client = docker_client()
    if not registry_has(client, reference):
        if not build:
            raise Exit(f"{reference} is not in the registry; run `invoke build-image push-image` or add --build.")
        build_image(c)
        push_image(c, tag=tag)
    return f"docker://{reference}"


def sif_image(c, s: Settings, tag: str, build: bool, dry_run: bool, sent: list[Path]) -> str:
    path = sif_path(s, tag)
    if not path.is_file():
        if s.htcondor.osdf_path and (staging_dir(s) / path.name).is_file():
            return osdf_url(s, path.name)  # staged earlier; the local copy may be gone
        if not build:
            raise Exit(f"{path.name} does not exist; run `invoke build-sif` or add --build.")
        if dry_run:
            print(f"would build {path.name}")
            return f"../{path.name}"
        build_sif(c)
    return large_input(s, path, dry_run, sent)


def packed_environment(c, s: Settings, build: bool, dry_run: bool, sent: list[Path]) -> list[tuple[str, str]]:
    path = pack_path(s)
    if not path.is_file():
        if not build:
            raise Exit(f"{path.name} (packed from this pixi.lock) does not exist; run `invoke pack` or add --build.")
        if dry_run:
            print(f"would pack {path.name} and check request_disk against its size")
            return [("pack_file", path.name), ("pack_input", f"../{path.name}")]
        pack(c)
    check_pack_disk(s, path)
    return [("pack_file", path.name), ("pack_input", large_input(s, path, dry_run, sent))]


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


@task(
    name="submit-condor",
    iterable=["queue"],
    help={
        "flavour": "docker, apptainer or pixi-pack",
        "build": "build and push the image (or pack the environment) first when it is missing",
        "tag": "image tag to run (default: the git short SHA)",
        "queue": "argument set for one job, e.g. '--epochs 5 --lr 0.5'; repeat for a sweep",
        "dry_run": "say what would happen and print the job ClassAd(s); change and submit nothing",
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
    s = settings(c)
    if flavour not in FLAVOURS:
        raise Exit(f"--flavour must be one of {', '.join(FLAVOURS)}, not {flavour!r}.")
    submit_file = CONDOR_DIR / f"{flavour}.sub"
    if not submit_file.is_file():
        raise Exit(f"{submit_file.relative_to(ROOT)} does not exist: this project has no {flavour} flavour.")
    check_tag_and_build(tag, build)
    # Refused before anything is built or pushed: a file left mid-update (conflict markers).
    submit_text = read_resolved(submit_file)
    if not queue:
        train_args_lines()  # each of its lines is a job's arguments
    condor_submit = None if dry_run else tool("condor_submit", "submit from an HTCondor access point")
    commands = resource_commands(s) + [("data_pins", data_pins(s))]
    commands += provenance_attributes()  # read back by src/provenance.py in the job
    sent: list[Path] = [ROOT / "src", MANIFEST]
    archive = data_archive(c)
    if dry_run and not archive.is_file():
        print(f"would download and verify {archive.name} from {s.data.url}")
        url = osdf_url(s, archive.name) if s.htcondor.osdf_path else f"../{archive.name}"
        commands.append(("data_input", url))
    else:
        commands.append(("data_input", large_input(s, ensure_data(c), dry_run, sent)))
    commands += environment_commands(c, s, flavour, tag, build, dry_run, sent)
    if not s.htcondor.osdf_path:
        report_transfer(sent)

    with tempfile.TemporaryDirectory() as scratch:
        commands.append(("train_args_file", str(write_sweep(Path(scratch), queue))))
        ads = job_ads(submit_text, commands, CONDOR_DIR)
        check_sizes(ads, submit_file.relative_to(ROOT))
        appended = [arg for key, value in commands for arg in ("-append", f"{key} = {value}")]
        argv = [
            condor_submit or "condor_submit",
            *appended,
            *(["-interactive"] if interactive else []),
            submit_file.name,
        ]
        if dry_run:
            print_dry_run(ads, queue, argv)
            return
        back_up_model(CONDOR_DIR)
        if interactive:
            run(argv, "condor_submit -interactive", cwd=CONDOR_DIR)
            return
        out = run(argv, "condor_submit", cwd=CONDOR_DIR, capture=True, timeout=SUBMIT_TIMEOUT)
    print(out, end="")
    record_cluster(out)


def environment_commands(c, s: Settings, flavour: str, tag: str, build: bool, dry_run: bool, sent: list[Path]):
    """The submit commands that bring the software: a container image, or the packed environment."""
    if flavour == "docker":
        return [("container_image", docker_image(c, s, tag or immutable_tag(), build, dry_run))]
    if flavour == "apptainer":
        return [("container_image", sif_image(c, s, tag or immutable_tag(), build, dry_run, sent))]
    return packed_environment(c, s, build, dry_run, sent)


def print_dry_run(ads: list | None, queue, argv: list[str]) -> None:
    for number, ad in enumerate(ads or []):
        print(f"# job {number}\n{json.dumps(ad, indent=1, sort_keys=True)}")
    if ads is None:
        print("# (the htcondor bindings are not installed: the description was not validated)")
    if queue:
        print("# with train_args_file holding one line per job:\n" + "".join(f"#   {a}\n" for a in queue), end="")
    print("# dry run: would run, in htcondor/:\n" + " ".join(_quoted(a) for a in argv))


def record_cluster(out: str) -> None:
    """Keep the cluster id condor_submit reported, for condor-status and condor-logs."""
    match = re.search(r"submitted to cluster (\d+)", out)
    if not match:
        raise Exit("condor_submit did not report a cluster id; see its output above.")
    LAST_CLUSTER.write_text(match.group(1) + "\n")
    cluster = match.group(1)
    from .condor_sweeps import record_submission, submitted_arguments  # it imports this module

    record_submission(cluster, submit_file.name, commands, submitted_arguments(ads, queue))
    print(f"cluster {cluster}: `invoke condor-status` follows it; results come back to htcondor/results/{cluster}.N/")


def check_tag_and_build(tag: str, build: bool) -> None:
    if build and tag and tag != immutable_tag():
        raise Exit(f"--build builds this commit ({immutable_tag()}), not --tag {tag}; drop one of them.")


def write_sweep(scratch: Path, queue: list[str] | None) -> Path:
    """One line per job (--queue, else train_args.txt), escaped so that each reaches its job literally."""
    sweep = scratch / "sweep.txt"  # read by condor_submit at submit time only
    sweep.write_text("".join(f"{condor_literal(args)}\n" for args in queue or train_args_lines()))
    return sweep


def train_args_lines() -> list[str]:
    path = CONDOR_DIR / "train_args.txt"
    lines = read_resolved(path).splitlines() if path.is_file() else []
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def condor_literal(args: str) -> str:
    """A job's arguments as a `queue ... from` line that HTCondor passes on as written.

    HTCondor expands $(macro) and $ENV(NAME) (the submitter's environment, which would then
    be in the job ad for the pool to read) in the line; $(DOLLAR) is its literal $, and ""
    its literal " inside `arguments = "..."`. $$( ) is expanded when the job is matched,
    with no escape, so it is refused.
    """
    if "\n" in args or "\r" in args or "$$" in args:
        raise Exit(f"the job arguments {args!r} hold a line break or $$, which HTCondor cannot pass on as written.")
    return args.replace("$", "$(DOLLAR)").replace('"', '""')


def _quoted(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


def last_cluster(cluster: int) -> str:
    if cluster:
        return str(cluster)
    if not LAST_CLUSTER.is_file():
        raise Exit("no cluster was submitted from here yet; pass --cluster.")
    return LAST_CLUSTER.read_text().strip()


def job_dirs(cluster: str) -> list[Path]:
    """Each job's directory, htcondor/results/CLUSTER.PROCESS (see job_dir in the submit files)."""
    dirs = (CONDOR_DIR / "results").glob(f"{cluster}.*")
    return sorted((d for d in dirs if d.is_dir()), key=lambda d: int(d.name.split(".")[1]))


@task(name="condor-logs", help={"cluster": "cluster id (default: the last one submitted)"})
def condor_logs(c, cluster: int = 0):
    """Print the job log of a cluster and each job's output and error files."""
    cid = last_cluster(cluster)
    files = sorted(CONDOR_DIR.glob(f"train_{cid}.log"))
    files += [p for d in job_dirs(cid) for p in (d / "train.out", d / "train.err") if p.is_file()]
    if not files:
        raise Exit(f"no log files for cluster {cid} in htcondor/ yet.")
    for path in files:
        print(f"==> {path.relative_to(ROOT)} <==\n{path.read_text(errors='replace')}")


@task(name="condor-plot", help={"cluster": "cluster id (default: the last one submitted)"})
def condor_plot(c, cluster: int = 0):
    """Draw the loss and accuracy of every job of a cluster in one picture (a sweep comparison)."""
    cid = last_cluster(cluster)
    metrics = [d / "metrics.json" for d in job_dirs(cid) if (d / "metrics.json").is_file()]
    if not metrics:
        raise Exit(f"no metrics of cluster {cid} have come back yet; see `invoke condor-status`.")
    output = CONDOR_DIR / "results" / f"{cid}.png"
    plot_metrics(metrics, output)
    print(f"drew {len(metrics)} job(s) of cluster {cid} in {output.relative_to(ROOT)}")
