"""HTCondor: submit-condor, condor-logs, condor-plot (condor-status is in condor_sweeps.py).

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
import tempfile
from pathlib import Path

from invoke import Exit, task

from .condor_bindings import bindings_installed, job_ads
from .data import plot_metrics
from .helpers import MANIFEST, ROOT, SUBMIT_TIMEOUT, immutable_tag, read_resolved, run, tool
from .job_inputs import checked_tag, data_input, environment_commands
from .settings import Settings, settings
from .staging import report_transfer
from .submit_file import SubmitFile, check_staging_requirement, check_submit_file, read_submit_file
from .sweeps import provenance_attributes

CONDOR_DIR = ROOT / "htcondor"
LAST_CLUSTER = CONDOR_DIR / ".last-cluster"
FLAVOURS = ("docker", "apptainer", "pixi-pack")

# Listed only in projects that use this system (tasks/__init__.py).
USED_WITH = ("htcondor",)


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
    lines = job_lines(submit, queue or None)
    check_tag_and_build(tag, build)
    check_staging_requirement(submit, s.htcondor.osdf_path)
    if flavour != "pixi-pack":
        s.require_image()  # a bad name is refused before anything is downloaded or staged
    options = {"tag": checked_tag(tag) if flavour != "pixi-pack" else tag, "build": build, "dry_run": dry_run}
    condor_submit = None if dry_run else tool("condor_submit", "submit from an HTCondor access point")
    sent: list[Path] = [ROOT / "src", MANIFEST]
    commands = [("data_input", data_input(c, s, dry_run, sent)), ("data_pins", data_pins(s))]
    commands += provenance_attributes()  # read back by src/provenance.py in the job
    commands += environment_commands(c, s, flavour, submit, options, sent)
    if not s.htcondor.osdf_path:
        report_transfer(sent)
    submit_and_report(submit, commands, (lines, queue), condor_submit, dry_run, interactive)


def condor_submit_argv(condor_submit: str, commands: list, interactive: bool, submit: SubmitFile) -> list[str]:
    appended = [arg for key, value in commands for arg in ("-append", f"{key} = {value}")]
    return [condor_submit, *appended, *(["-interactive"] if interactive else []), submit.path.name]


def print_dry_run(ads: list[dict] | None, argv: list[str], lines: list[str]) -> None:
    for number, ad in enumerate(ads or []):
        print(f"# job {number}\n{json.dumps(ad, indent=1, sort_keys=True)}")
    # The sweep file is written by the same command line, so that it runs as printed.
    command = f"printf '%s\\n' {shlex.join(lines)} > sweep.txt && {shlex.join(argv)}"
    print("# dry run: would run, in htcondor/:\n" + command)


def submit_and_report(submit: SubmitFile, commands: list, sweep_of: tuple, condor_submit, dry_run, interactive):
    lines, queue = sweep_of  # the escaped lines, and the --queue sets as given
    with tempfile.TemporaryDirectory() as scratch:
        sweep = Path(scratch) / "sweep.txt"  # read by condor_submit at submit time only
        sweep.write_text("".join(f"{line}\n" for line in lines))
        shown = [*commands, ("train_args_file", "sweep.txt")]  # the printed command writes it there
        commands = [*commands, ("train_args_file", str(sweep))]
        ads = job_ads(submit.text, commands, CONDOR_DIR)
        argv = condor_submit_argv(condor_submit or "condor_submit", commands, interactive, submit)
        if dry_run:
            print_dry_run(ads, condor_submit_argv("condor_submit", shown, interactive, submit), lines)
            return
        if interactive:
            run(argv, "condor_submit -interactive", cwd=CONDOR_DIR)
            return
        out = run(argv, "condor_submit", cwd=CONDOR_DIR, capture=True, timeout=SUBMIT_TIMEOUT)
    print(out, end="")
    match = re.search(r"submitted to cluster (\d+)", out)
    if not match:
        raise Exit("condor_submit did not report a cluster id; see its output above.")
    LAST_CLUSTER.write_text(match.group(1) + "\n")
    cluster = match.group(1)
    from .condor_sweeps import record_submission, submitted_arguments  # it imports this module

    record_submission(cluster, submit.path.name, commands, submitted_arguments(ads, queue))
    print(f"cluster {cluster}: `invoke condor-status` follows it; results come back to htcondor/results/{cluster}.N/")


def data_pins(s: Settings) -> str:
    """The pins train.sh verifies the data with, as the job's environment (hexadecimal: nothing to quote)."""
    pins = (("SHA256", s.data.sha256), ("GIT_BLOB", s.data.git_blob))
    return " ".join(f"INVOKE_PROJECT_DATA_{name}={value}" for name, value in pins if value)


def check_tag_and_build(tag: str, build: bool) -> None:
    if build and tag and tag != immutable_tag():
        raise Exit(f"--build builds this commit ({immutable_tag()}), not --tag {tag}; drop one of them.")


def job_lines(submit: SubmitFile, queue: list[str] | None) -> list[str]:
    """One line per job (--queue, else the file train_args_file names), escaped for HTCondor; never none."""
    if queue is not None:
        if not any(args.strip() for args in queue):
            raise Exit("--queue was given only empty argument sets; give one set of arguments per job.")
        return [condor_literal(args) for args in queue]
    path = CONDOR_DIR / (submit.last("train_args_file") or "train_args.txt")
    lines = read_resolved(path).splitlines() if path.is_file() else []
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise Exit(
            f"{path.relative_to(ROOT)} holds no arguments, so no job would be queued; write one line of "
            "arguments per job (e.g. --epochs 14)."
        )
    return [condor_literal(line) for line in lines]


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
    """Print the job log of a cluster and each finished job's output and error (a running job's: condor_tail)."""
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
