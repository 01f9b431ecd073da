"""SLURM: submit-slurm, slurm-status."""

from __future__ import annotations

import re
import shlex

from invoke import Exit, task

from .apptainer import sif_name
from .helpers import ROOT, SUBMIT_TIMEOUT, git, immutable_tag, query, read_resolved, run, tool
from .settings import settings
from .slurm_sweeps import accounting_enabled, is_sweep, print_task_states, provenance_environment, submit_sweep

SLURM_DIR = ROOT / "slurm"
SLURM_SCRIPT = SLURM_DIR / "train.sbatch"
LAST_JOB = SLURM_DIR / ".last-job"

# Listed only in projects that use this system (tasks/__init__.py).
USED_WITH = ("slurm",)


def sbatch_options(c) -> list[str]:
    """pixi.toml's [tool.invoke-tasks.slurm] as sbatch options (they win over #SBATCH lines)."""
    slurm = settings(c).slurm
    pairs = (("--partition", slurm.partition), ("--account", slurm.account), ("--time", slurm.time))
    return [f"{flag}={value}" for flag, value in pairs if value]


@task(
    name="submit-slurm",
    help={
        "args": "arguments for torch_MNIST.py, e.g. '--epochs 5'",
        "sbatch_option": "extra sbatch option",
        "queue": "argument set for one task of a sweep (one job array), e.g. '--lr 0.5'; repeat it",
    },
    iterable=["sbatch_option", "queue"],
)
def submit_slurm(c, args: str = "", sbatch_option=None, queue=None):
    """Submit the training with sbatch (a sweep: one job array) and print the job id."""
    if not SLURM_SCRIPT.is_file():
        raise Exit("slurm/train.sbatch does not exist: this project was generated without SLURM.")
    read_resolved(SLURM_SCRIPT)  # a script left mid-update would run its conflict markers
    sbatch = tool("sbatch", "submit from a SLURM login node")
    if not (ROOT / "data").is_dir() and not (ROOT / settings(c).data.archive).is_file():
        raise Exit("neither data/ nor the data archive is here; run `invoke fetch-data` first.")
    # --output is a filename pattern (sbatch(1), "filename pattern"): a % in the project's path is written %%.
    output = str(SLURM_DIR).replace("%", "%%") + "/train_%j.out"
    # The apptainer runner runs this commit's .sif: the one name, from apptainer.sif_name. It travels
    # in sbatch's environment (--export=ALL), not in --export=SIF=..., which splits at commas.
    env = {"SIF": str(ROOT / sif_name(settings(c), immutable_tag()))} if git("rev-parse", "HEAD") else {}
    env.update(provenance_environment())  # read back by src/provenance.py in the job
    options = [f"--chdir={ROOT}", "--export=ALL", *sbatch_options(c), *(sbatch_option or [])]
    if queue:
        if args:
            raise Exit("--args and --queue do not mix: put the shared arguments into every --queue.")
        LAST_JOB.write_text(submit_sweep(c, options, str(SLURM_SCRIPT), env, list(queue)) + "\n")
        print("`invoke slurm-status` follows it; `invoke slurm-results` tabulates it")
        return
    argv = [sbatch, "--parsable", f"--output={output}", *options, str(SLURM_SCRIPT), *shlex.split(args)]
    job_id = run(argv, "sbatch", capture=True, env=env, timeout=SUBMIT_TIMEOUT).strip().split(";")[0]
    if not job_id.isdigit():
        raise Exit(f"sbatch printed {job_id!r} instead of a job id.")
    LAST_JOB.write_text(job_id + "\n")
    print(f"job {job_id}: `invoke slurm-status` follows it; its output goes to slurm/train_{job_id}.out")


def slurm_state(job_id: str) -> str | None:
    """The job's state from scontrol (sacct needs accounting, which many clusters lack); a job
    that did not complete also says why (scontrol's Reason and ExitCode)."""
    out = query(["scontrol", "show", "job", job_id]).stdout
    fields = dict(re.findall(r"\b(JobState|Reason|ExitCode)=(\S+)", out))
    if "JobState" not in fields:
        return None
    if fields["JobState"] in {"COMPLETED", "RUNNING"}:
        return fields["JobState"]
    return f"{fields['JobState']} (Reason {fields.get('Reason', 'None')}, ExitCode {fields.get('ExitCode', '?')})"


@task(
    name="slurm-status", help={"job": "job id (default: the last one submitted)", "log": "also print the job's output"}
)
def slurm_status(c, job: int = 0, log: bool = False):
    """Show a SLURM job's state (squeue/scontrol; sacct only where accounting exists) and its output."""
    job_id = str(job) if job else (LAST_JOB.read_text().strip() if LAST_JOB.is_file() else "")
    if not job_id:
        raise Exit("no job was submitted from here yet; pass --job.")
    tool("scontrol", "run it on a SLURM login node")
    if is_sweep(job_id):
        print_task_states(job_id)
        return
    state = slurm_state(job_id)
    if state is None and accounting_enabled():
        out = query(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id])
        if out.returncode == 0 and out.stdout.strip():
            state = out.stdout.strip()
    print(f"job {job_id}: {state or 'unknown (no longer known to slurmctld, and no accounting)'}")
    output = SLURM_DIR / f"train_{job_id}.out"
    print(f"output: {output.relative_to(ROOT)}" + ("" if output.is_file() else " (not written yet)"))
    results = SLURM_DIR / "results" / job_id  # OUT in slurm/train.sbatch
    held = ", ".join(sorted(p.name for p in results.iterdir())) if results.is_dir() else "nothing yet"
    print(f"results: {results.relative_to(ROOT)}/ holds {held}")
    if log and output.is_file():
        print(output.read_text(errors="replace"))
    if state and state.split()[0] in {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}:
        raise Exit(f"job {job_id} ended {state}.")
