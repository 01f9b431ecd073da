"""condor-memory: what each job of a sweep used, asked for and got, from HTCondor's job log.

When a job ends (or is evicted) HTCondor writes into its log (htcondor/train_CLUSTER.log) a
table of its resources, formatted by src/condor_utils/condor_event.cpp (formatUsageAd):

    005 (1234.000.000) 2026-03-02 14:05:11 Job terminated.
    ...
    <TAB>Partitionable Resources :    Usage  Request Allocated
    <TAB>   Memory (MB)          :      950     4096      4096

Columns are cut where the header's words end, as HTCondor's own reader (UsageLineParser)
cuts them: a value may be blank (Cpus has no Usage).
"""

from __future__ import annotations

import math
import re

from invoke import Exit, task

from .condor import CONDOR_DIR, last_cluster

# Listed only in projects that use this system (tasks/__init__.py).
USED_WITH = ("htcondor",)

EVENT = re.compile(r"^(\d{3}) \((\d+)\.(\d+)\.\d+\) ")
HEADER = "Partitionable Resources :"
HEADROOM = 1.25  # a quarter above the largest use: memory use varies a little from run to run
ROUND_MB = 256


def columns(header: str) -> tuple[int, int, int]:
    """Right edges of Usage, Request and Allocated after the colon (UsageLineParser::init)."""
    table = header.split(":", 1)[1]
    words = list(re.finditer(r"\S+", table))
    allocated = table.find("Allocated")
    return words[0].end() + 1, words[1].end() + 1, allocated + 9 if allocated >= 0 else -1


def usage_tables(log: str) -> dict[str, dict[str, dict[str, str]]]:
    """Each job's last table: {"1234.0": {"Memory": {"usage": "950", "request": "4096", "allocated": "4096"}}}."""
    tables: dict[str, dict[str, dict[str, str]]] = {}
    job, edges = None, None
    for line in log.splitlines():
        event = EVENT.match(line)
        if event:
            job, edges = f"{int(event.group(2))}.{int(event.group(3))}", None
        elif line.lstrip().startswith(HEADER) and job:
            edges = columns(line)
            tables[job] = {}
        elif edges and job and ":" in line and line.startswith("\t"):
            name = re.match(r"[\t ]*([^ :]+)", line).group(1)
            cells = line.split(":", 1)[1]
            use, request, allocated = edges
            tables[job][name] = {
                "usage": cells[:use].strip(),
                "request": cells[use:request].strip(),
                "allocated": cells[request:allocated].strip() if allocated > 0 else "",
            }
        elif not line.strip() or line == "...":
            edges = None
    return tables


def suggested_memory_mb(largest_usage_mb: int) -> int:
    return max(ROUND_MB, math.ceil(largest_usage_mb * HEADROOM / ROUND_MB) * ROUND_MB)


@task(name="condor-memory", help={"cluster": "cluster id (default: the last one submitted)"})
def condor_memory(c, cluster: int = 0):
    """Each job's memory (used, requested, given) from the job log, and the memory_mb that fits them."""
    cid = last_cluster(cluster)
    log = CONDOR_DIR / f"train_{cid}.log"
    if not log.is_file():
        raise Exit(f"{log.relative_to(CONDOR_DIR.parent)} does not exist yet; HTCondor writes it once a job starts.")
    memory = {job: table["Memory"] for job, table in usage_tables(log.read_text()).items() if "Memory" in table}
    if not memory:
        raise Exit(f"no job of cluster {cid} has ended yet, so its log holds no usage; try again later.")
    print(f"{'job':<12} {'used MB':>8} {'asked MB':>9} {'given MB':>9}")
    for job, row in sorted(memory.items(), key=lambda item: int(item[0].split(".")[1])):
        print(f"{job:<12} {row['usage'] or '-':>8} {row['request'] or '-':>9} {row['allocated'] or '-':>9}")
    used = [int(row["usage"]) for row in memory.values() if row["usage"].isdigit()]
    if used:
        print(
            f"largest use {max(used)} MB: memory_mb = {suggested_memory_mb(max(used))} in htcondor/*.sub fits it "
            "with a quarter to spare."
        )
