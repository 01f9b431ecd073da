"""Shared by the STAND-INs in this folder (imported by them, never run on its own).

record() appends the call to $STANDIN_LOG (one test's calls) and $STANDIN_SUMMARY (the whole
run's, which tests/conftest.py reports). lock_layout() reads the layout of a pixi.lock (v6 or
v7) without PyYAML, so the pixi stand-in also works inside a bare base image.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path


def record(tool: str, argv: list[str]) -> None:
    for log in (os.environ.get("STANDIN_LOG"), os.environ.get("STANDIN_SUMMARY")):
        if log:
            with open(log, "a") as stream:
                stream.write(f"{tool} {' '.join(argv)}".rstrip() + "\n")


def fail(message: str, code: int = 1) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def locked_names(path: Path) -> dict[tuple[str, str], set[str]]:
    """{(environment, lock platform name): names of the conda packages locked there}."""
    names: dict[tuple[str, str], set[str]] = {}
    env = platform = None
    section = None
    for line in path.read_text().splitlines():
        if re.match(r"^[a-z-]+:", line):
            section = line.rstrip(":")
        elif section == "environments":
            if m := re.match(r"^  (\S+):$", line):
                env = m.group(1)
            elif m := re.match(r"^      (\S+):$", line):
                platform = m.group(1)
                names[(env, platform)] = set()
            elif (m := re.match(r"^      - conda: \S+/([^/]+?)(?:\.conda|\.tar\.bz2)$", line)) and platform:
                names[(env, platform)].add(m.group(1).rsplit("-", 2)[0])
    return names


def lock_layout(path: Path) -> tuple[int, dict[str, str], dict[str, list[str]]]:
    """(version, {lock platform name: subdir}, {environment: [lock platform names]}).

    Raises ValueError where the text is not in the shape pixi writes.
    """
    text = path.read_text()
    match = re.match(r"version: (\d+)\n", text)
    if not match:
        raise ValueError("the file does not start with `version: N`")
    version = int(match.group(1))
    subdirs: dict[str, str] = {}
    environments: dict[str, list[str]] = {}
    section = current_platform = current_env = None
    in_packages = False
    for line in text.splitlines()[1:]:
        if re.match(r"^[a-z-]+:", line):
            section = line.rstrip(":")
            continue
        if section == "platforms":
            if m := re.match(r"^- name: (\S+)$", line):
                current_platform = m.group(1)
                subdirs[current_platform] = current_platform
            elif (m := re.match(r"^  subdir: (\S+)$", line)) and current_platform:
                subdirs[current_platform] = m.group(1)
        elif section == "environments":
            if m := re.match(r"^  (\S+):$", line):
                current_env = m.group(1)
                environments[current_env] = []
                in_packages = False
            elif re.match(r"^    \S", line):
                in_packages = line.strip() == "packages:"
            elif in_packages and (m := re.match(r"^      (\S+):$", line)) and current_env:
                environments[current_env].append(m.group(1))
    if version < 7:  # before v7 a platform is named by its subdir
        subdirs = {p: p for env in environments.values() for p in env}
    for env, platforms in environments.items():
        unknown = [p for p in platforms if p not in subdirs]
        if unknown:
            raise ValueError(f"environment {env} uses platform(s) {', '.join(unknown)} not listed under platforms")
    return version, subdirs, environments


def condor_queue_file() -> Path:
    """Where the condor_submit stand-in keeps accepted clusters and condor_q reads them."""
    if os.environ.get("STANDIN_CONDOR_QUEUE"):
        return Path(os.environ["STANDIN_CONDOR_QUEUE"])
    base = Path(os.environ["STANDIN_LOG"]).parent if os.environ.get("STANDIN_LOG") else Path("/tmp")
    return base / ".standin-condor-queue.json"


# JobStatus values, from HTCondor's manual (docs/classad-attributes/job-classad-attributes.rst,
# JobStatus): 1 Idle, 2 Running, 3 Removing, 4 Completed, 5 Held, 6 Transferring Output, 7 Suspended.
# Removed and completed jobs leave the queue (condor_q) for the history (condor_history).
LEFT_QUEUE = {3, 4}


def condor_jobs(restrictions: list[str], in_queue: bool) -> list[dict]:
    """The kept job ads that match CLUSTER, CLUSTER.PROC or an owner (any of them), queue or history."""
    import json

    state = condor_queue_file()
    clusters = json.loads(state.read_text()) if state.is_file() else []
    found = []
    for cluster in clusters:
        for job in cluster["jobs"]:
            ad = job.get("ad") or {"ClusterId": cluster["cluster"], "ProcId": job["proc"], "JobStatus": 1}
            job_id = f"{cluster['cluster']}.{job['proc']}"
            names = (str(cluster["cluster"]), job_id, cluster["owner"])
            wanted = not restrictions or any(r in names for r in restrictions)
            if wanted and (ad.get("JobStatus", 1) not in LEFT_QUEUE) == in_queue:
                found.append({**ad, "_cluster": cluster, "_job": job})
    return found


def print_json_ads(ads: list[dict], attributes: str | None) -> None:
    """-json: a JSON array of ads, nothing at all when none match (CondorClassAdListWriter);
    -attributes A,B: only those attributes (names are case-insensitive in ClassAds)."""
    import json

    wanted = {a.strip().lower() for a in attributes.split(",")} if attributes else None
    shown = [
        {k: v for k, v in ad.items() if not k.startswith("_") and (wanted is None or k.lower() in wanted)} for ad in ads
    ]
    if shown:
        print("[\n" + ",\n".join(json.dumps(ad, indent=2) for ad in shown) + "\n]")
