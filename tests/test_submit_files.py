"""Rules every rendered HTCondor submit file and SLURM batch script follows, from the tools' sources.

HTCondor sources are htcondor/htcondor at 7491a145f6 (2026-08-21), SLURM's SchedMD/slurm at
the tags named; paths are relative to those repositories.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maintainer.render import preset_names

PRESETS = preset_names()
MACRO = re.compile(r"\$\((\w+)\)")


def submit_files(project: Path) -> list[Path]:
    return sorted((project / "htcondor").glob("*.sub"))


def commands(path: Path) -> dict[str, str]:
    """The submit commands of a file (the last assignment wins, as condor_submit reads them)."""
    found = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and not key.strip().startswith("queue"):
            found[key.strip().lower()] = value.strip()
    return found


def expand(value: str, known: dict[str, str]) -> str:
    """Expands the file's own macros; HTCondor's ($(Cluster), ...) are left as they are."""
    return MACRO.sub(lambda m: expand(known[m[1].lower()], known) if m[1].lower() in known else m[0], value)


def comments(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if line.lstrip().startswith("#"))


@pytest.mark.parametrize("preset", PRESETS)
def test_streamed_output_is_never_in_a_directory_created_at_exit(renderings, preset):
    """A streamed stdout/stderr is opened on the access point when the job starts: the starter asks
    the shadow (src/condor_starter.V6.1/stream_handler.cpp:69, REMOTE_CONDOR_open), which opens the
    path as it is, creating no directory (src/condor_shadow.V6.1/NTreceivers.cpp:406-436, case
    CONDOR_open: safe_open_wrapper_follow), and a failed open holds the job ("unable to establish
    output stream", src/condor_starter.V6.1/user_proc.cpp:366). condor_submit checks no file by
    default (SUBMIT_SKIP_FILECHECKS, src/condor_submit.V6/submit.cpp:747). Only output that comes
    back at exit gets its directory made (src/condor_utils/file_transfer.cpp:2680-2700,
    ALLOW_TRANSFER_REMAP_TO_MKDIR default true in src/condor_utils/param_info.in:5029)."""
    for path in submit_files(renderings[preset]):
        known = commands(path)
        for stream, std in (("stream_output", "output"), ("stream_error", "error")):
            if known.get(stream, "false").lower() in ("true", "t", "yes", "1"):
                target = expand(known.get(std, ""), known)
                assert "/" not in target, f"{path.name}: {stream} with {std} = {target}, a directory made only at exit"


@pytest.mark.parametrize("preset", PRESETS)
def test_docker_pull_policy_is_only_ever_always(renderings, preset):
    """docker_pull_policy has one documented value, always (docs/man-pages/htcondor-jdl.rst:2191);
    src/condor_utils/docker-api.cpp:405-420 passes `--pull always` and logs "Ignoring unknown docker
    pull policy" for anything else, so another value only pretends to do something."""
    for path in submit_files(renderings[preset]):
        policy = commands(path).get("docker_pull_policy")
        assert policy is None or policy.lower() == "always", f"{path.name}: docker_pull_policy = {policy}"


def sentences(text: str) -> list[str]:
    return [" ".join(s.split()) for s in re.split(r"(?<=[.;:])\s", text)]


@pytest.mark.parametrize("preset", PRESETS)
def test_no_comment_promises_a_checkpoint_taken_on_eviction(renderings, preset):
    """With checkpoint_exit_code and when_to_transfer_output = ON_EXIT, HTCondor transfers
    transfer_checkpoint_files only when the job itself exits with that code; a checkpoint
    written when eviction's SIGTERM arrives stays in the discarded sandbox (transferring on
    eviction is ON_EXIT_OR_EVICT's "delayed transfer", docs/users-manual/
    self-checkpointing-applications.rst:284-310 and 340-350). So no word of the submit files or
    the README may tie HTCondor's restart to SIGTERM; SLURM's requeue does use it."""
    project = renderings[preset]
    for path in submit_files(project):
        known = commands(path)
        if "checkpoint_exit_code" in known and known.get("when_to_transfer_output", "").upper() == "ON_EXIT":
            assert "SIGTERM" not in comments(path), f"{path.name} says a SIGTERM checkpoint comes back"
            assert "CHECKPOINT_MINUTES" in comments(path), f"{path.name} does not say when checkpoints come back"
    if submit_files(project):
        wrong = [s for s in sentences((project / "README.md").read_text()) if "SIGTERM" in s and "HTCondor" in s]
        assert not wrong, f"README.md ties HTCondor's checkpoints to SIGTERM: {wrong}"


@pytest.mark.parametrize("preset", PRESETS)
def test_sbatch_asks_for_gpus_in_a_way_every_select_plugin_accepts(renderings, preset):
    """--gpus (tres_per_job) is refused with ESLURM_UNSUPPORTED_GRES ("Requested GRES option
    unsupported by configured SelectType plugin") unless SelectType is select/cons_tres
    (slurm-22-05-8-1 src/common/gres.c:5680-5683, under cons_res or linear; master
    src/interfaces/gres.c:6973-6975, under linear); --gres=gpu:N (tres_per_node) is accepted by
    every select plugin (sbatch(1) --gres: "--gres=gpu:2")."""
    script = renderings[preset] / "slurm" / "train.sbatch"
    if not script.is_file():
        return
    directives = [line.split(None, 1)[1] for line in script.read_text().splitlines() if line.startswith("#SBATCH ")]
    per_job = [
        d
        for d in directives
        if re.match(r"(--gpus(=|\s|$)|-G\b|--gpus-per-(task|socket)\b|--cpus-per-gpu|--mem-per-gpu)", d)
    ]
    assert not per_job, f"{preset}: {per_job} needs select/cons_tres"
    if "[feature.gpu]" in (renderings[preset] / "pixi.toml").read_text():
        assert any(re.fullmatch(r"--gres=gpu:\d+", d) for d in directives), f"{preset}: no --gres=gpu:N"
