"""HTCondor sweeps: condor-status (each job's state, and why it is held or failed), condor-results, condor-rerun.

States come from condor_q -json (jobs in the queue) and condor_history -json (jobs that
left it), read as the job ClassAd attributes of HTCondor's manual ("Job ClassAd
Attributes": JobStatus, HoldReason, HoldReasonCode, HoldReasonSubCode, ExitCode, ExitBySignal).
A rerun resubmits, with the first submission's -append commands (the same image or pack),
only the jobs without metrics that are not idle or running; `job_dir` sends each one's
results to the directory of the job it replaces.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tempfile
from pathlib import Path

from invoke import Exit, task

from .condor import CONDOR_DIR, job_dirs, last_cluster
from .helpers import ROOT, SUBMIT_TIMEOUT, git, query, run, tool
from .sweeps import Row, job_row, print_states, print_table, read_record, write_record

# Listed only in projects that use this system (tasks/__init__.py).
USED_WITH = ("htcondor",)

RESULTS = CONDOR_DIR / "results"
ATTRIBUTES = "ClusterId,ProcId,JobStatus,HoldReason,HoldReasonCode,HoldReasonSubCode,ExitCode,ExitBySignal,Args"
# JobStatus values, from the manual's JobStatus table.
STATUS = {1: "idle", 2: "running", 3: "removed", 4: "completed", 5: "held", 6: "transferring output", 7: "suspended"}
WAITING = {1, 2, 6, 7}  # still on its way: never resubmitted


def record_submission(cluster: str, submit_file: str, commands: list, arguments: list[str]) -> None:
    """Called by submit-condor: what a rerun needs to resubmit jobs of this cluster as they were."""
    kept = [[key, value] for key, value in commands if key not in {"train_args_file", "job_dir"}]
    record = {"submit_file": submit_file, "commands": kept, "arguments": arguments, "reruns": []}
    record["commit"] = git("rev-parse", "HEAD") or ""
    write_record(RESULTS, cluster, record)


def submitted_arguments(ads: list | None, queue: list[str] | None) -> list[str]:
    """Each job's arguments: from the job ads, else the --queue lines, else train_args.txt."""
    if ads:
        return [str(ad.get("Arguments", ad.get("Args", ""))) for ad in ads]
    if queue:
        return list(queue)
    lines = (CONDOR_DIR / "train_args.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def ads_from(command: list[str]) -> list[dict]:
    """The ads a -json listing prints (nothing at all where no job matches)."""
    result = query(command)
    if result.returncode != 0 or not result.stdout.strip():
        return []
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise Exit(f"{command[0]} printed something that is not JSON; run `{shlex.join(command)}` to see it.") from None


def job_ads(clusters: list[str]) -> dict[str, dict]:
    """{"CLUSTER.PROC": ad} from the queue, and from the history for jobs that left it."""
    condor_q = tool("condor_q", "run it on the access point")
    found = {}
    history = ["condor_history", *clusters, "-json", "-attributes", ATTRIBUTES]
    queue = [condor_q, *clusters, "-json", "-attributes", ATTRIBUTES]
    # The queue's ad wins: it is the current one. Some access points keep no history.
    for command in (history, queue) if shutil.which("condor_history") else (queue,):
        for ad in ads_from(command):
            found[f"{ad.get('ClusterId')}.{ad.get('ProcId')}"] = ad
    return found


def describe(ad: dict | None) -> str:
    """One line: a job's state and, for a held or failed job, why."""
    if ad is None:
        return "missing (in neither condor_q nor condor_history)"
    status = STATUS.get(ad.get("JobStatus"), f"JobStatus {ad.get('JobStatus')}")
    if status == "held":
        codes = f"HoldReasonCode {ad.get('HoldReasonCode')}, subcode {ad.get('HoldReasonSubCode')}"
        return f"held: {ad.get('HoldReason', 'no HoldReason')} ({codes})"
    if status == "completed" and ad.get("ExitBySignal"):
        return "failed: killed by a signal"
    if status == "completed" and ad.get("ExitCode") not in (0, None):
        return f"failed: exit code {ad.get('ExitCode')}"
    return status


def current_ids(cluster: str, record: dict, count: int) -> list[str]:
    """Which CLUSTER.PROC stands for each job now: its latest rerun, else itself."""
    ids = [f"{cluster}.{index}" for index in range(count)]
    for rerun in record.get("reruns", []):
        for proc, index in enumerate(rerun["jobs"]):
            ids[index] = f"{rerun['cluster']}.{proc}"
    return ids


def sweep_rows(cluster: str) -> tuple[dict, list[Row], dict[str, dict]]:
    try:
        record = read_record(RESULTS, cluster)
    except Exit:
        record = {}  # submitted before sweeps were recorded: the directories and ads still tell
    arguments = record.get("arguments") or [""] * len(job_dirs(cluster))
    ids = current_ids(cluster, record, len(arguments))
    ads = job_ads(sorted({i.split(".")[0] for i in ids}))
    rows = []
    for index, (args, job_id) in enumerate(zip(arguments, ids, strict=True)):
        name, args = f"{cluster}.{index}", args or str((ads.get(job_id) or {}).get("Args", ""))
        rows.append(job_row(name, args, RESULTS / name, job_id, describe(ads.get(job_id))))
    return record, rows, ads


@task(name="condor-status", help={"cluster": "cluster id (default: the last one submitted)"})
def condor_status(c, cluster: int = 0):
    """Show each job's state (held or failed: why, in one line) and where its results are."""
    cid = last_cluster(cluster)
    print_states(sweep_rows(cid)[1], "job")
    for directory in job_dirs(cid):
        files = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing yet"
        print(f"job {directory.name}: {directory.relative_to(ROOT)}/ holds {files}")
    if not job_dirs(cid):
        print(f"no results of cluster {cid} yet; each job's come back to htcondor/results/{cid}.N/")


@task(name="condor-results", help={"cluster": "cluster id (default: the last one submitted)"})
def condor_results(c, cluster: int = 0):
    """One row per job of a sweep (arguments, accuracy, epochs, time, state, provenance); also as CSV."""
    cid = last_cluster(cluster)
    _, rows, _ = sweep_rows(cid)
    if not rows:
        raise Exit(f"cluster {cid} has no jobs known here; see `invoke condor-status --cluster {cid}`.")
    print_table(rows, RESULTS / f"{cid}.csv")


def rerun_commands(record: dict, cluster: str, jobs: list[int], sweep: Path) -> list[tuple[str, str]]:
    """The first submission's commands, with the failed jobs' arguments and result directories."""
    dirs = [f"results/{cluster}.{index}" for index in jobs]
    # $CHOICE(Process, a, b, ...) picks the Process-th item (condor_submit's macro functions);
    # with one item it would read the item as the name of a list, so one job names it directly.
    job_dir = dirs[0] if len(dirs) == 1 else f"$CHOICE(Process, {', '.join(dirs)})"
    commands = [(key, value) for key, value in record["commands"]]
    return [*commands, ("train_args_file", str(sweep)), ("job_dir", job_dir)]


def to_rerun(rows: list[Row], ads: dict[str, dict], record: dict, cluster: str) -> tuple[list[int], list[str]]:
    """The jobs to resubmit, and the held ones among them (removed once the rerun is queued)."""
    ids = current_ids(cluster, record, len(rows))
    jobs, held = [], []
    for index, row in enumerate(rows):
        ad = ads.get(ids[index])
        if row.done or (ad is not None and ad.get("JobStatus") in WAITING):
            continue
        jobs.append(index)
        if ad is not None and ad.get("JobStatus") == 5:
            held.append(ids[index])
    return jobs, held


@task(
    name="condor-rerun",
    help={
        "cluster": "cluster id (default: the last one submitted)",
        "dry_run": "print which jobs would be resubmitted, with their arguments; submit nothing",
    },
)
def condor_rerun(c, cluster: int = 0, dry_run: bool = False):
    """Resubmit only the jobs of a sweep that failed, were held or left no results, into one new cluster."""
    cid = last_cluster(cluster)
    record, rows, ads = sweep_rows(cid)
    if not record:
        raise Exit(f"cluster {cid} has no sweep record (htcondor/results/{cid}.sweep.json); resubmit it whole.")
    jobs, held = to_rerun(rows, ads, record, cid)
    if not jobs:
        print(f"nothing to rerun: every job of cluster {cid} has results or is still idle or running.")
        return
    verb = "would resubmit" if dry_run else "resubmitting"
    for index in jobs:
        print(f"{verb} job {cid}.{index} [{rows[index].arguments}]: {rows[index].state}")
    if record.get("commit") and record["commit"] != (git("rev-parse", "HEAD") or record["commit"]):
        print(f"note: src/ has changed since cluster {cid} ({record['commit'][:7]}); the rerun sends today's src/.")
    if dry_run:
        print("# dry run: nothing submitted" + (f"; would remove the held job(s) {', '.join(held)}" if held else ""))
        return
    condor_submit = tool("condor_submit", "submit from an HTCondor access point")
    with tempfile.TemporaryDirectory() as scratch:
        sweep = Path(scratch) / "rerun.txt"
        sweep.write_text("".join(f"{rows[index].arguments}\n" for index in jobs))
        commands = rerun_commands(record, cid, jobs, sweep)
        appended = [arg for key, value in commands for arg in ("-append", f"{key} = {value}")]
        argv = [condor_submit, *appended, record["submit_file"]]
        out = run(argv, "condor_submit", cwd=CONDOR_DIR, capture=True, timeout=SUBMIT_TIMEOUT)
    print(out, end="")
    match = re.search(r"submitted to cluster (\d+)", out)
    if not match:
        raise Exit("condor_submit did not report a cluster id; see its output above.")
    record["reruns"].append({"cluster": int(match.group(1)), "jobs": jobs})
    write_record(RESULTS, cid, record)
    if held:
        run([tool("condor_rm", "run it on the access point"), *held], "condor_rm")
    print(f"cluster {match.group(1)} reruns job(s) {', '.join(map(str, jobs))} of {cid}; "
          f"`invoke condor-results --cluster {cid}` shows the sweep.")  # fmt: skip
