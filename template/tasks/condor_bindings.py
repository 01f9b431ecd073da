"""The one call into the HTCondor Python bindings: a submit description -> job ClassAds.

Used by the tasks (submit-condor) and by the template's own checks, so both read submit
files the same way. The bindings run in a child process, for two reasons: they crash
outright (SIGSEGV) on some malformed values, such as `request_memory = lots`, and a task
must still answer with a sentence; and the child alone gets CONDOR_CONFIG and the submit
directory as its working directory, so the caller's environment and directory never change.
The v1 module `htcondor` (HTCondor 24.0 LTS) is the one with Submit.jobs(); HTCondor 25
removed it and htcondor2 does not implement jobs() yet.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from invoke import Exit

CHILD = r"""
import json, sys, warnings
request = json.load(sys.stdin)
try:
    import htcondor
except ImportError:
    print(json.dumps({"missing": True}))
    sys.exit(0)
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


def bindings_installed() -> bool:
    """Whether this interpreter has the v1 bindings (found without importing them)."""
    return importlib.util.find_spec("htcondor") is not None


def describe(text: str, appended: list[tuple[str, str]], cwd: Path) -> dict:
    """What the bindings make of a submit description, run in a child process in ``cwd``.

    Returns {"missing": True}, {"crashed": "signal 11"}, {"timeout": 120} or
    {"ads": [...], "error": ..., "warnings": [...]}.
    ``appended`` are commands placed after the file's own, as `condor_submit -append` does.
    """
    request = json.dumps({"text": text, "appended": appended})
    # No pool is needed to turn submit text into job ads; without a configuration the bindings warn.
    env = {**os.environ, "CONDOR_CONFIG": os.environ.get("CONDOR_CONFIG", os.devnull)}
    try:
        result = subprocess.run(
            [sys.executable, "-c", CHILD], input=request, capture_output=True, text=True, env=env, cwd=cwd,
            check=False, timeout=120,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"timeout": 120}
    if result.returncode != 0:
        how = f"signal {-result.returncode}" if result.returncode < 0 else f"exit status {result.returncode}"
        return {"crashed": how}
    return json.loads(result.stdout)


def job_ads(text: str, appended: list[tuple[str, str]], cwd: Path) -> list[dict] | None:
    """The jobs HTCondor would queue, as dicts; None where the bindings are not installed.

    An unknown submit keyword (a warning in the bindings) is an error naming the keyword.
    """
    answer = describe(text, appended, cwd)
    if answer.get("missing"):
        return None
    if "timeout" in answer:
        raise Exit(f"HTCondor's bindings did not read the submit description within {answer['timeout']} s.")
    if "crashed" in answer:
        raise Exit(
            f"HTCondor's bindings crashed on the submit description ({answer['crashed']}); look for a malformed "
            "value such as a request_memory that is not a size."
        )
    unknown = [w for w in answer["warnings"] if "not a valid submit keyword" in w]
    if unknown:
        raise Exit(f"HTCondor does not know a submit keyword: {unknown[0]}")
    if answer["error"] is not None or not answer["ads"]:
        reason = answer["error"] or "it describes no job"
        raise Exit(f"HTCondor rejects the submit description: {reason}")
    return answer["ads"]
