"""HTCondor: submit-condor, condor-status, condor-logs, condor-plot.

The submit files in htcondor/ are rendered once and are the one place for a job's
resources (request_memory, request_disk, GPUs, +WantGPULab, ...): what the file says is
what the job gets. At submit time this module passes only what changes per submission
(the image tag, the .sif or pack, where large files come from, a sweep) as
`condor_submit -append` commands. Nothing rewrites the files. It runs on an access point:
no Docker engine is needed (the registry is asked over HTTP) and nothing is built there
unless --build is given where a builder exists.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tempfile
from pathlib import Path

from invoke import Exit, task

from .apptainer import build_sif, sif_path
from .condor_bindings import bindings_installed, job_ads
from .data import data_archive, ensure_data, plot_metrics
from .helpers import ROOT, human_size, immutable_tag, run, tool
from .images import build_image, docker_client, push_image
from .pack import check_pack_disk, pack, pack_path
from .registry import artifact_size, manifest
from .settings import Settings, settings
from .staging import osdf_url, report_transfer, stage, staging_dir
from .submit_file import SubmitFile, check_queue_items, check_staging_requirement, check_submit_file, read_submit_file

CONDOR_DIR = ROOT / "htcondor"
LAST_CLUSTER = CONDOR_DIR / ".last-cluster"
FLAVOURS = ("docker", "apptainer", "pixi-pack")
CI_PUSHES = "CI pushes it when this commit reaches GitHub (the images workflow)"
# What a job's sandbox holds besides a .sif: the data, its extraction, checkpoints and outputs.
SANDBOX_MARGIN = 2**30


def large_input(s: Settings, path: Path, dry_run: bool, sent: list[Path]) -> str:
    """Where a job reads ``path`` from: OSDF when osdf-path is set, else the access point."""
    if s.htcondor.osdf_path:
        return stage(s, path, dry_run)
    sent.append(path)
    return f"../{path.name}"


def checked_tag(tag: str) -> str:
    """The image tag jobs run: the commit's short SHA unless --tag names another immutable one."""
    if not tag:
        return immutable_tag()
    if tag == "latest":
        raise Exit("--tag latest moves with every push and execute points cache it; pass a commit's short SHA.")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", tag):
        raise Exit(f"--tag {tag!r} is not an image tag (letters, digits, '.', '_' and '-', at most 128).")
    return tag


def docker_image(c, s: Settings, tag: str, build: bool, dry_run: bool) -> str:
    reference = f"{s.require_image()}:{tag}"
    if dry_run:
        print(f"would ask the registry for {reference}" + (" and build and push it if absent" if build else ""))
    elif manifest(reference) is None:
        if not build:
            raise Exit(f"{reference} is not in the registry; {CI_PUSHES}, or add --build where Docker runs.")
        docker_client(
            f"--build needs a Docker engine, which access points lack; {CI_PUSHES}, or build on your own computer"
        )
        build_image(c)
        push_image(c, tag=tag)
    return f"docker://{reference}"


def sif_image(c, s: Settings, submit: SubmitFile, tag: str, build: bool, dry_run: bool, sent: list[Path]) -> str:
    """A local or staged .sif where there is one, else the oras:// artifact CI pushed."""
    path = sif_path(s, tag)
    if build and not path.is_file():
        if shutil.which("apptainer") is None:
            raise Exit(
                f"--build needs Apptainer to build {path.name}; {CI_PUSHES.replace('it', 'the SIF')}, "
                "or build it with `invoke build-sif` where Apptainer runs (CHTC: an interactive build job)."
            )
        if dry_run:
            print(f"would build {path.name}")
            return f"../{path.name}"
        build_sif(c)
    if path.is_file():
        check_sif_disk(submit, path.name, path.stat().st_size)
        return large_input(s, path, dry_run, sent)
    if s.htcondor.osdf_path and (staging_dir(s) / path.name).is_file():
        check_sif_disk(submit, path.name, (staging_dir(s) / path.name).stat().st_size)
        return osdf_url(s, path.name)  # staged earlier; the local copy may be gone
    remote = f"{s.require_image()}:sif-{tag}"
    if dry_run:
        print(f"would ask the registry for {remote} (no {path.name} here)")
        return f"oras://{remote}"
    found = manifest(remote)
    if found is None:
        raise Exit(f"neither {path.name} nor oras://{remote} exists; {CI_PUSHES.replace('it', 'the SIF')}.")
    check_sif_disk(submit, f"oras://{remote}", artifact_size(found))
    return f"oras://{remote}"


def check_sif_disk(submit: SubmitFile, name: str, size: int) -> None:
    """The .sif is copied into the job's sandbox: request_disk must hold it and the job's files."""
    need = size + SANDBOX_MARGIN
    if submit.disk_bytes() < need:
        raise Exit(
            f"request_disk = {submit.last('request_disk')} in {submit.name} is too small for {name} "
            f"({human_size(size)}), which the job's sandbox holds; raise it to at least {human_size(need)}."
        )


def packed_environment(c, s: Settings, submit: SubmitFile, build: bool, dry_run: bool, sent: list[Path]) -> list:
    path = pack_path(s)
    if not path.is_file():
        if not build:
            raise Exit(f"{path.name} (packed from this pixi.lock) does not exist; run `invoke pack` or add --build.")
        if dry_run:
            print(f"would pack {path.name} and check request_disk against its size")
            return [("pack_file", path.name), ("pack_input", f"../{path.name}")]
        pack(c)
    check_pack_disk(s, path, submit)
    return [("pack_file", path.name), ("pack_input", large_input(s, path, dry_run, sent))]


def data_input(c, s: Settings, dry_run: bool, sent: list[Path]) -> str:
    archive = data_archive(c)
    if dry_run and not archive.is_file():
        print(f"would download and verify {archive.name} from {s.data.url}")
        return osdf_url(s, archive.name) if s.htcondor.osdf_path else f"../{archive.name}"
    return large_input(s, ensure_data(c), dry_run, sent)


def chosen_submit_file(flavour: str) -> tuple[str, SubmitFile]:
    """The flavour asked for, or the first this project has (docker, apptainer, pixi-pack)."""
    present = [f for f in FLAVOURS if (CONDOR_DIR / f"{f}.sub").is_file()]
    if flavour and flavour not in FLAVOURS:
        raise Exit(f"--flavour must be one of {', '.join(FLAVOURS)}, not {flavour!r}.")
    if flavour and flavour not in present:
        raise Exit(f"htcondor/{flavour}.sub does not exist: this project has no {flavour} flavour.")
    if not present:
        raise Exit("htcondor/ holds no submit file (docker.sub, apptainer.sub or pixi-pack.sub).")
    flavour = flavour or present[0]
    return flavour, read_submit_file(CONDOR_DIR / f"{flavour}.sub")


def environment_commands(c, s: Settings, flavour: str, submit: SubmitFile, options: dict, sent: list) -> list:
    """The image, .sif or pack this submission runs, as submit commands."""
    tag, build, dry_run = options["tag"], options["build"], options["dry_run"]
    if flavour == "docker":
        return [("container_image", docker_image(c, s, tag, build, dry_run))]
    if flavour == "apptainer":
        return [("container_image", sif_image(c, s, submit, tag, build, dry_run, sent))]
    return packed_environment(c, s, submit, build, dry_run, sent)


@task(
    name="submit-condor",
    iterable=["queue"],
    help={
        "flavour": "docker, apptainer or pixi-pack (default: the first this project has)",
        "build": "build and push the image (or pack the environment) first when it is missing",
        "tag": "image tag to run (default: the git short SHA)",
        "queue": "argument set for one job, e.g. '--epochs 5 --lr 0.5'; repeat for a sweep",
        "dry_run": "say what would happen and print the job ClassAd(s); change and submit nothing",
        "interactive": "start an interactive job (condor_submit -interactive)",
    },
)
def submit_condor(
    c,
    flavour: str = "",
    build: bool = False,
    tag: str = "",
    queue=None,
    dry_run: bool = False,
    interactive: bool = False,
):
    """Submit the training to HTCondor with an immutable image tag (never :latest); resources come from the .sub."""
    s = settings(c)
    if dry_run and not bindings_installed():
        print("# the HTCondor bindings are not installed here: nothing below was validated by HTCondor")
    flavour, submit = chosen_submit_file(flavour)
    check_submit_file(submit, needs_gpu=bool(s.cuda_version) and s.environment == "gpu")
    check_queue_items(submit, queue or None)
    options = {"tag": checked_tag(tag) if flavour != "pixi-pack" else tag, "build": build, "dry_run": dry_run}
    condor_submit = None if dry_run else tool("condor_submit", "submit from an HTCondor access point")
    sent: list[Path] = [ROOT / "src"]
    commands = [("data_input", data_input(c, s, dry_run, sent))]
    commands += environment_commands(c, s, flavour, submit, options, sent)
    check_staging_requirement(submit, [value for _, value in commands])
    if not s.htcondor.osdf_path:
        report_transfer(sent)
    submit_and_report(submit, commands, queue, condor_submit, dry_run, interactive)


def condor_submit_argv(condor_submit: str, commands: list, interactive: bool, submit: SubmitFile) -> list[str]:
    appended = [arg for key, value in commands for arg in ("-append", f"{key} = {value}")]
    return [condor_submit, *appended, *(["-interactive"] if interactive else []), submit.path.name]


def print_dry_run(ads: list[dict] | None, argv: list[str], queue) -> None:
    for number, ad in enumerate(ads or []):
        print(f"# job {number}\n{json.dumps(ad, indent=1, sort_keys=True)}")
    command = shlex.join(argv)
    if queue:  # the sweep file, written by the same command line so that it runs as printed
        command = f"printf '%s\\n' {shlex.join(queue)} > sweep.txt && {command}"
    print("# dry run: would run, in htcondor/:\n" + command)


def submit_and_report(submit: SubmitFile, commands: list, queue, condor_submit, dry_run: bool, interactive: bool):
    with tempfile.TemporaryDirectory() as scratch:
        shown = commands
        if queue:
            sweep = Path(scratch) / "sweep.txt"  # read by condor_submit at submit time only
            sweep.write_text("".join(f"{args}\n" for args in queue))
            commands = [*commands, ("train_args_file", str(sweep))]
            shown = [*shown, ("train_args_file", "sweep.txt")]  # the printed command writes it there
        ads = job_ads(submit.text, commands, CONDOR_DIR)
        argv = condor_submit_argv(condor_submit or "condor_submit", commands, interactive, submit)
        if dry_run:
            print_dry_run(ads, condor_submit_argv("condor_submit", shown, interactive, submit), queue)
            return
        if interactive:
            run(argv, "condor_submit -interactive", cwd=CONDOR_DIR)
            return
        out = run(argv, "condor_submit", cwd=CONDOR_DIR, capture=True)
    print(out, end="")
    match = re.search(r"submitted to cluster (\d+)", out)
    if not match:
        raise Exit("condor_submit did not report a cluster id; see its output above.")
    LAST_CLUSTER.write_text(match.group(1) + "\n")
    cluster = match.group(1)
    print(f"cluster {cluster}: `invoke condor-status` follows it; results come back to htcondor/results/{cluster}.N/")


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


@task(name="condor-status", help={"cluster": "cluster id (default: the last one submitted)"})
def condor_status(c, cluster: int = 0):
    """Show the cluster's jobs (condor_q) and where their results are."""
    cid = last_cluster(cluster)
    run([tool("condor_q", "run it on the access point"), cid, "-nobatch"], "condor_q")
    for directory in job_dirs(cid):
        files = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing yet"
        print(f"job {directory.name}: {directory.relative_to(ROOT)}/ holds {files}")
    if not job_dirs(cid):
        print(f"no results of cluster {cid} yet; each job's come back to htcondor/results/{cid}.N/")


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
