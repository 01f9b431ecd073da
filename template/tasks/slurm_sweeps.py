"""SLURM sweeps: one job array per sweep, slurm-results, slurm-rerun, each task's state and reason.

A sweep is submitted as one array (sbatch --array=0-N%K, K = max-running): task N reads line
N+1 of an arguments file kept under slurm/sweeps/ (named by its content, never rewritten) and
writes to slurm/results/ARRAYJOB_N. States come from scontrol (JobState, Reason, ExitCode of
each array task) and, where the cluster keeps accounting, sacct for tasks slurmctld forgot.
"""

from __future__ import annotations

import hashlib
import re
import shutil

from invoke import Exit, task

from .helpers import ROOT, SUBMIT_TIMEOUT, query, run, tool
from .settings import settings
from .sweeps import Row, job_row, print_states, print_table, provenance_facts, read_record, write_record

# Listed only in projects that use this system (tasks/__init__.py).
USED_WITH = ("slurm",)

SLURM_DIR = ROOT / "slurm"
RESULTS = SLURM_DIR / "results"
WAITING = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD"}


def arguments_file(lines: list[str]) -> str:
    """The sweep's argument lines in slurm/sweeps/, named by content (a running task may read it)."""
    text = "".join(f"{line}\n" for line in lines)
    path = SLURM_DIR / "sweeps" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        path.with_suffix(".partial").write_text(text)
        path.with_suffix(".partial").replace(path)
    return str(path.relative_to(ROOT))


def provenance_environment() -> dict[str, str]:
    """PROVENANCE_* for the job, in sbatch's environment (--export=ALL carries it)."""
    return {f"PROVENANCE_{key.upper()}": value for key, value in provenance_facts().items() if value}


def array_spec(tasks: list[int], limit: int) -> str:
    """--array=0-3%2 (a range) or --array=1,3%2 (a list), as sbatch(1) writes them."""
    if tasks == list(range(tasks[0], tasks[-1] + 1)) and len(tasks) > 1:
        spec = f"{tasks[0]}-{tasks[-1]}"
    else:
        spec = ",".join(map(str, tasks))
    return f"--array={spec}%{max(limit, 1)}" if len(tasks) > 1 else f"--array={spec}"


def submit_array(argv: list[str], env: dict[str, str], tasks: list[int], limit: int) -> str:
    """sbatch one array, ``env`` reaching its tasks through --export=ALL; its job id."""
    command = [*argv[:1], array_spec(tasks, limit), *argv[1:]]
    job_id = run(command, "sbatch", capture=True, env=env, timeout=SUBMIT_TIMEOUT).strip().split(";")[0]
    if not job_id.isdigit():
        raise Exit(f"sbatch printed {job_id!r} instead of a job id.")
    return job_id


def submit_sweep(c, options: list[str], script: str, env: dict[str, str], queue: list[str]) -> str:
    """Called by submit-slurm with --queue: the whole sweep as one job array."""
    env = {**env, "ARGS_FILE": arguments_file(list(queue))}
    argv = [tool("sbatch", "submit from a SLURM login node"), "--parsable", *options, script]
    # --output is a filename pattern: %A the array's job id, %a the task; a % in the path is %%.
    output = "--output=" + str(SLURM_DIR).replace("%", "%%") + "/train_%A_%a.out"
    limit = settings(c).slurm.max_running
    job_id = submit_array([argv[0], output, *argv[1:]], env, list(range(len(queue))), limit)
    record = {"arguments": list(queue), "argv": [output, *argv[1:]], "environment": env, "reruns": []}
    write_record(RESULTS, job_id, record)
    print(f"sweep {job_id}: one job array of {len(queue)} task(s), at most {limit} running at once")
    return job_id


def accounting_enabled() -> bool:
    """Whether sacct can answer: the cluster stores accounting (many small clusters do not)."""
    if shutil.which("sacct") is None:
        return False
    out = query(["scontrol", "show", "config"]).stdout
    match = re.search(r"^AccountingStorageType\s*=\s*(\S+)", out, re.M)
    return bool(match) and match.group(1) != "accounting_storage/none"


def task_states(job_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """{"ARRAYJOB_TASK": (JobState, Reason, ExitCode)} from scontrol -o, else sacct."""
    found: dict[str, tuple[str, str, str]] = {}
    if accounting_enabled():
        command = ["sacct", "-n", "-X", "-P", "-o", "JobID,State,Reason,ExitCode", "-j", ",".join(job_ids)]
        for line in query(command).stdout.splitlines():
            fields = line.split("|")
            if len(fields) == 4 and "_" in fields[0] and "[" not in fields[0]:
                found[fields[0]] = (fields[1].split()[0], fields[2], fields[3])
    for job_id in job_ids:  # slurmctld's view wins: it is the current one
        for line in query(["scontrol", "-o", "show", "job", job_id]).stdout.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            for index in expand(fields.get("ArrayTaskId", "")):
                state = (fields.get("JobState", ""), fields.get("Reason", ""), fields.get("ExitCode", ""))
                found[f"{fields.get('ArrayJobId', job_id)}_{index}"] = state
    return found


def expand(spec: str) -> list[int]:
    """ArrayTaskId as scontrol prints it: 3, or 0-3%2, or 1,3-5 for tasks still pending."""
    indices = []
    for part in spec.split("%")[0].split(","):
        if re.fullmatch(r"\d+", part):
            indices.append(int(part))
        elif m := re.fullmatch(r"(\d+)-(\d+)", part):
            indices.extend(range(int(m.group(1)), int(m.group(2)) + 1))
    return indices


def describe(state: tuple[str, str, str] | None) -> str:
    if state is None:
        return "missing (unknown to slurmctld, and no accounting)"
    job_state, reason, exit_code = state
    if job_state in {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED", "PREEMPTED", "BOOT_FAIL"}:
        return f"failed: {job_state}, exit code {exit_code or '?'} (Reason {reason or 'None'})"
    if job_state == "PENDING" and reason not in ("", "None"):
        return f"pending: {reason}"
    return job_state.lower() or "unknown"


def sweep_rows(job_id: str) -> tuple[dict, list[Row], dict[int, tuple[str, str, str] | None]]:
    record = read_record(RESULTS, job_id)
    current = {index: f"{job_id}_{index}" for index in range(len(record["arguments"]))}
    for rerun in record["reruns"]:
        current.update({index: f"{rerun['job']}_{index}" for index in rerun["tasks"]})
    states = task_states(sorted({key.split("_")[0] for key in current.values()}))
    rows, known = [], {}
    for index, arguments in enumerate(record["arguments"]):
        known[index] = states.get(current[index])
        name = f"{job_id}_{index}"
        rows.append(job_row(name, arguments, RESULTS / name, current[index], describe(known[index])))
    return record, rows, known


def print_task_states(job_id: str) -> None:
    """slurm-status for a sweep: one line per task, its state and, when failed, why."""
    print_states(sweep_rows(job_id)[1], "task")


def is_sweep(job_id: str) -> bool:
    return (RESULTS / f"{job_id}.sweep.json").is_file()


def last_sweep(job: int) -> str:
    last = SLURM_DIR / ".last-job"
    job_id = str(job) if job else (last.read_text().strip() if last.is_file() else "")
    if not job_id:
        raise Exit("no sweep was submitted from here yet; pass --job.")
    if not is_sweep(job_id):
        raise Exit(f"job {job_id} is not a sweep submitted from here (no slurm/results/{job_id}.sweep.json).")
    return job_id


@task(name="slurm-results", help={"job": "the sweep's array job id (default: the last one submitted)"})
def slurm_results(c, job: int = 0):
    """One row per task of a sweep (arguments, accuracy, epochs, time, state, provenance); also as CSV."""
    job_id = last_sweep(job)
    tool("scontrol", "run it on a SLURM login node")
    _, rows, _ = sweep_rows(job_id)
    print_table(rows, RESULTS / f"{job_id}.csv")


@task(
    name="slurm-rerun",
    help={
        "job": "the sweep's array job id (default: the last one submitted)",
        "dry_run": "print which tasks would be resubmitted, with their arguments; submit nothing",
    },
)
def slurm_rerun(c, job: int = 0, dry_run: bool = False):
    """Resubmit only the tasks of a sweep that failed or left no results, as one new job array."""
    job_id = last_sweep(job)
    tool("scontrol", "run it on a SLURM login node")
    record, rows, known = sweep_rows(job_id)
    tasks = [i for i, row in enumerate(rows) if not row.done and (known[i] is None or known[i][0] not in WAITING)]
    if not tasks:
        print(f"nothing to rerun: every task of sweep {job_id} has results or is still pending or running.")
        return
    for index in tasks:
        print(f"{'would resubmit' if dry_run else 'resubmitting'} task {job_id}_{index} [{rows[index].arguments}]")
    if dry_run:
        return
    sbatch = tool("sbatch", "submit from a SLURM login node")
    env = {**record["environment"], "SWEEP_ID": job_id}
    rerun = submit_array([sbatch, *record["argv"]], env, tasks, settings(c).slurm.max_running)
    record["reruns"].append({"job": rerun, "tasks": tasks})
    write_record(RESULTS, job_id, record)
    (SLURM_DIR / ".last-job").write_text(job_id + "\n")
    print(f"job array {rerun} reruns task(s) {', '.join(map(str, tasks))} of sweep {job_id}")
