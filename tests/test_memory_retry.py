"""Jobs held for memory are retried with a larger request, up to the submit file's cap.

The submit files are read by the real HTCondor 24.0 bindings (`Submit(text).jobs()`, no
schedd), and their request_memory and periodic_release expressions are evaluated with the
real classad module against job ads as the schedd holds them. The hold codes and messages
are HTCondor's own: src/condor_utils/condor_holdcodes.h (34 JobOutOfResources, subcode 102
Memory and 104 Disk from 24.0.13; 0 before), src/condor_starter.V6.1/vanilla_proc.cpp (the
starter's message, v23.0.0 and v24.0.23), starter.cpp (the disk hold, v24.0.1) and
param_info.in (POLICY:HOLD_IF_MEMORY_EXCEEDED: 21 StartdHeldJob, subcode 102). The schedd
counts holds per reason in NumHoldsByReason (docs/classad-attributes/job-classad-attributes.rst).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.project_helpers import project_tasks
from tests.test_vendored_tasks import invoke, one_sentence

classad = pytest.importorskip("classad", reason="the HTCondor bindings are not installed (pip install htcondor)")

# What the shadow writes into HoldReason: "Error from SLOT: " and the starter's message.
SLOT = "Error from slot1_3@e2338.chtc.wisc.edu: "
STARTER_24 = (
    "Job has gone over cgroup memory limit of {mb} megabytes. Last measured usage: {used} megabytes.  "
    "Consider resubmitting with a higher request_memory."
)
STARTER_23 = "Job has gone over memory limit of {mb} megabytes. Peak usage: {used} megabytes."
DISK_24_0_1 = "Job has exceeded request_disk (4.00 GB). Consider increasing the value of request_disk."


def held(code: int, subcode: int, reason: str, holds: dict[str, int], used: int) -> dict:
    """A job ad as the schedd keeps it while the job is held (JobStatus 5)."""
    return {
        "JobStatus": 5,
        "HoldReasonCode": code,
        "HoldReasonSubCode": subcode,
        "HoldReason": reason,
        "NumHoldsByReason": classad.ClassAd(holds),
        "MemoryUsage": used,
    }


def evaluate(expressions: dict[str, str], job: dict) -> tuple[int, bool]:
    """(RequestMemory, PeriodicRelease) of the job, as the negotiator and the schedd evaluate them."""
    ad = classad.ClassAd(job)
    for attribute, expression in expressions.items():
        ad[attribute] = classad.ExprTree(expression.removeprefix("/Expr(").removesuffix(")/"))
    return ad.eval("RequestMemory"), ad.eval("PeriodicRelease") is True


@pytest.fixture(scope="module")
def submit_files(renderings):
    """Each rendered submit file's job ad, read by the real bindings through the project's own call."""
    project = renderings["everything"]
    describe = project_tasks(project).condor_bindings.describe
    found = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted((project / "htcondor").glob("*.sub")):
            answer = describe(path.read_text(), [], path.parent)
            assert not answer.get("error") and not answer.get("warnings"), answer
            (ad,) = answer["ads"]
            found[path.name] = {key: ad[key] for key in ("RequestMemory", "PeriodicRelease")}
    assert set(found) == {"docker.sub", "apptainer.sub", "pixi-pack.sub"}
    return found


@pytest.mark.parametrize("name", ["docker.sub", "apptainer.sub", "pixi-pack.sub"])
def test_a_memory_hold_doubles_the_request_up_to_the_cap_then_stays_held(submit_files, name):
    expressions = submit_files[name]
    assert evaluate(expressions, {"JobStatus": 1}) == (4096, False)  # the first request: memory_mb
    starter = SLOT + STARTER_24.format(mb=4096, used=4101)
    first = held(34, 102, starter, {"JobOutOfResources": 1}, used=4101)
    assert evaluate(expressions, first) == (8192, True)
    second = held(34, 102, SLOT + STARTER_24.format(mb=8192, used=8190), {"JobOutOfResources": 2}, used=8190)
    assert evaluate(expressions, second) == (16384, True)  # memory_cap_mb
    at_the_cap = held(34, 102, SLOT + STARTER_24.format(mb=16384, used=16400), {"JobOutOfResources": 3}, 16400)
    assert evaluate(expressions, at_the_cap) == (16384, False)  # held for the user; condor-status says why


def test_only_memory_holds_are_released(submit_files):
    expressions = submit_files["docker.sub"]
    older_starter = held(34, 0, SLOT + STARTER_23.format(mb=4096, used=3900), {"JobOutOfResources": 1}, used=3900)
    assert evaluate(expressions, older_starter) == (8192, True)  # execute points before 24.0.13
    pool_policy = held(21, 102, "memory usage exceeded request_memory", {"StartdHeldJob": 1}, used=4500)
    assert evaluate(expressions, pool_policy) == (8192, True)  # POLICY:HOLD_IF_MEMORY_EXCEEDED
    not_memory = [
        held(34, 0, SLOT + DISK_24_0_1, {"JobOutOfResources": 1}, used=900),  # disk, on a 24.0.1 starter
        held(34, 104, SLOT + DISK_24_0_1, {"JobOutOfResources": 1}, used=900),  # disk, subcode 104
        held(1, 0, "via condor_hold (by user alice)", {"UserRequest": 1}, used=900),
        held(12, 2, "Transfer output files failure", {"TransferOutputError": 1}, used=900),
        held(21, 103, "job ran too long", {"StartdHeldJob": 1}, used=900),
    ]
    for job in not_memory:
        assert evaluate(expressions, job)[1] is False, job["HoldReason"]


def test_the_cap_is_the_users_and_a_smaller_first_request_grows_to_it(copy_of):
    """memory_mb and memory_cap_mb are the submit file's two numbers; the expression follows them."""
    project = copy_of("everything")
    path = project / "htcondor" / "pixi-pack.sub"
    path.write_text(path.read_text().replace("memory_mb = 4096", "memory_mb = 1000").replace("= 16384", "= 3000"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        answer = project_tasks(project).condor_bindings.describe(path.read_text(), [], path.parent)
    (ad,) = answer["ads"]
    expressions = {key: ad[key] for key in ("RequestMemory", "PeriodicRelease")}
    requests = [evaluate(expressions, {"JobStatus": 1})]
    for holds in (1, 2, 3):  # the schedd has counted the hold by the time periodic_release is evaluated
        job = held(34, 102, SLOT + STARTER_24.format(mb=1, used=2), {"JobOutOfResources": holds}, used=2)
        requests.append(evaluate(expressions, job))
    assert requests == [(1000, False), (2000, True), (3000, True), (3000, False)]


# ------------------------------------------------------------------ the job log's usage table
# Job 984.0 is the log of HTCondor's own test (src/condor_tests/test_condor_history.py), indented
# with the tabs condor_event.cpp writes; job 984.1 was held for memory (code 34, subcode 102),
# released and finished with twice the request. HTCondor's reader (JobEventLog) reads both.
JOB_LOG = Path(__file__).resolve().parent / "fixtures" / "htcondor" / "train_984.log"


def test_the_usage_table_is_read_as_htcondor_reads_it(renderings):
    htcondor = pytest.importorskip("htcondor")
    usage = project_tasks(renderings["everything"]).condor_usage.usage_tables(JOB_LOG.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = list(htcondor.JobEventLog(str(JOB_LOG)).events(0))
    ended = [event for event in events if event.type == htcondor.JobEventType.JOB_TERMINATED]
    assert len(ended) == 2
    for event in ended:
        table = usage[f"{event.cluster}.{event.proc}"]
        for name in ("Memory", "Disk"):
            ours = table[name]
            assert int(ours["usage"]) == event[f"{name}Usage"] and int(ours["request"]) == event[f"Request{name}"]
            assert int(ours["allocated"]) == event[name]
        assert table["Cpus"] == {"usage": "", "request": "1", "allocated": "1"}  # Cpus has no Usage column


def test_condor_memory_shows_each_jobs_use_and_the_memory_mb_that_fits(copy_of):
    project = copy_of("everything")
    (project / "htcondor" / "train_984.log").write_text(JOB_LOG.read_text())
    result, _ = invoke(project, "condor-memory", "--cluster", "984")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-3].split() == ["984.0", "2", "1", "4096"] and lines[-2].split() == ["984.1", "5900", "8192", "8192"]
    # 5900 MB and a quarter, rounded up to 256 MB
    assert lines[-1] == "largest use 5900 MB: memory_mb = 7424 in htcondor/*.sub fits it with a quarter to spare."
    missing, _ = invoke(project, "condor-memory", "--cluster", "985")
    assert one_sentence(missing) == ("htcondor/train_985.log does not exist yet; HTCondor writes it once a job starts.")
