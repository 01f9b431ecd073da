"""The one call into the HTCondor Python bindings: a submit description -> job ClassAds.

The bindings run in a child process: they crash outright (SIGSEGV) on some malformed
values, such as `request_memory = lots`, and a task must still answer with a sentence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from invoke import Exit

CHILD = r"""
import json, os, sys, warnings
request = json.load(sys.stdin)
os.environ.setdefault("CONDOR_CONFIG", os.devnull)
try:
    import htcondor
except ImportError:
    print(json.dumps({"missing": True}))
    sys.exit(0)
os.chdir(request["cwd"])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        submit = htcondor.Submit(request["text"])
        for key, value in request["appended"]:
            submit[key] = value
        ads = [json.loads(ad.printJson()) for ad in submit.jobs()]
        error = None
    except Exception as exc:
        ads, error = [], f"{type(exc).__name__}: {exc}".strip()
print(json.dumps({"ads": ads, "error": error, "warnings": [str(w.message) for w in caught]}))
"""


def job_ads(text: str, appended: list[tuple[str, str]], cwd: Path) -> list[dict] | None:
    """The jobs HTCondor would queue, as dicts; None where the bindings are not installed.

    ``appended`` are commands placed after the file's own, as `condor_submit -append` does.
    An unknown submit keyword (a warning in the bindings) is an error naming the keyword.
    """
    request = json.dumps({"text": text, "appended": appended, "cwd": str(cwd)})
    env = {**os.environ, "CONDOR_CONFIG": os.environ.get("CONDOR_CONFIG", os.devnull)}
    try:
        result = subprocess.run(
            [sys.executable, "-c", CHILD], input=request, capture_output=True, text=True, env=env, check=False,
            timeout=120,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise Exit("HTCondor's bindings did not read the submit description within 120 s.") from None
    if result.returncode != 0:
        how = f"signal {-result.returncode}" if result.returncode < 0 else f"exit status {result.returncode}"
        raise Exit(
            f"HTCondor's bindings crashed on the submit description ({how}); look for a malformed value "
            "such as a request_memory that is not a size."
        )
    answer = json.loads(result.stdout)
    if answer.get("missing"):
        return None
    unknown = [w for w in answer["warnings"] if "not a valid submit keyword" in w]
    if unknown:
        raise Exit(f"HTCondor does not know a submit keyword: {unknown[0]}")
    if answer["error"] is not None or not answer["ads"]:
        reason = answer["error"] or "it describes no job (is the queue statement missing?)"
        raise Exit(f"HTCondor rejects the submit description: {reason}")
    return answer["ads"]


def check_sizes(ads: list | None, submit_file: Path) -> None:
    """Sizes HTCondor could not read as sizes, as one sentence (the bindings leave them as expressions)."""
    for ad in ads or []:
        for attribute, command in (("RequestMemory", "request_memory"), ("RequestDisk", "request_disk")):
            if not isinstance(ad.get(attribute), int):
                raise Exit(
                    f"{command} in {submit_file} is not a size (HTCondor would read it as "
                    f"{str(ad.get(attribute)).strip('/')}); write one such as 8GB."
                )
