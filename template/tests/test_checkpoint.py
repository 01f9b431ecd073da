"""Speed defaults, --target-accuracy, and checkpoints that survive eviction and preemption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import hardware
import preemption
import torch_MNIST
from conftest import QUICK, SRC, TINY_RUN, tiny_mnist

CPU = torch.device("cpu")
# The shape of /proc/cpuinfo on Linux x86 (abridged): one block per logical CPU.
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme de pse tsc msr pae mce cx8 {extra} sse sse2 ht syscall nx mmxext fxsr_opt
bugs\t\t: sysret_ss_attrs null_seg spectre_v1 spectre_v2

"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("avx avx2 fma", torch.float32),  # an AVX2-only EPYC: bf16 is emulated there, 11x slower
        ("avx2 avx512f avx512bw avx512_bf16", torch.bfloat16),
        ("avx2 avx512f amx_bf16 amx_tile", torch.bfloat16),
    ],
    ids=["avx2", "avx512-bf16", "amx"],
)
def test_auto_precision_follows_cpu_flags(tmp_path, extra, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=extra) * 2)
    flags = hardware.cpu_flags(cpuinfo)
    assert "sse2" in flags and "sysret_ss_attrs" not in flags  # the flags line, not "bugs"
    assert hardware.choose_precision("auto", CPU, flags) == expected
    channels_last = hardware.choose_channels_last("auto", CPU, expected)
    assert channels_last == (expected == torch.bfloat16)


def test_explicit_switches_win_and_missing_cpuinfo_means_fp32(tmp_path):
    avx2 = frozenset({"avx2"})
    assert hardware.choose_precision("on", CPU, avx2) == torch.bfloat16
    assert hardware.choose_precision("off", CPU, frozenset({"amx_bf16"})) == torch.float32
    assert hardware.cpu_flags(tmp_path / "absent") == frozenset()
    assert hardware.choose_precision("auto", torch.device("mps"), avx2) == torch.float32
    assert hardware.choose_channels_last("on", CPU, torch.float32) is True
    assert hardware.choose_channels_last("off", torch.device("cuda"), torch.bfloat16) is False
    assert hardware.choose_channels_last("auto", torch.device("cuda"), torch.float32) is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_auto_precision_on_this_gpu():
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    assert hardware.choose_precision("auto", torch.device("cuda")) == (torch.bfloat16 if native else torch.float32)


def test_switch_parsing_keeps_the_bare_flag():
    assert torch_MNIST.parse_args([]).amp == "auto" and torch_MNIST.parse_args([]).channels_last == "auto"
    args = torch_MNIST.parse_args(["--amp", "--channels-last"])
    assert args.amp == "on" and args.channels_last == "on"
    assert torch_MNIST.parse_args(["--amp", "off"]).amp == "off"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--amp", "fast"], "invalid choice"),
        (["--target-accuracy", "99"], "fraction in (0, 1]"),
        (["--checkpoint-every", "5"], "needs --checkpoint"),
        (["--checkpoint", "c.pt", "--checkpoint-every", "0"], "positive number of minutes"),
    ],
)
def test_bad_options_are_one_sentence(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        torch_MNIST.parse_args(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_metrics_record_the_chosen_precision(tiny_run):
    assert TINY_RUN[TINY_RUN.index("--amp") + 1] == "off"
    config = json.loads((tiny_run / "metrics.json").read_text())["config"]
    assert (config["amp"], config["precision"], config["memory_format"]) == ("off", "float32", "contiguous")


@pytest.mark.slow  # bf16 is emulated, and slow, on CPUs without native bf16 maths
def test_metrics_record_bf16_and_channels_last(small_mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    metrics = tmp_path / "metrics.json"
    argv = ["--data-dir", str(small_mnist), *QUICK, "--epochs", "1", "--dry-run", "--metrics", str(metrics)]
    assert torch_MNIST.main([*argv, "--amp", "--channels-last"]) == 0
    config = json.loads(metrics.read_text())["config"]
    assert (config["amp"], config["precision"], config["memory_format"]) == ("on", "bfloat16", "channels_last")


def test_target_accuracy_stops_training_and_records_when(small_mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    metrics = tmp_path / "metrics.json"
    argv = ["--data-dir", str(small_mnist), *QUICK, "--metrics", str(metrics), "--epochs", "6"]
    assert torch_MNIST.main([*argv, "--target-accuracy", "0.9"]) == 0
    report = json.loads(metrics.read_text())
    epochs, target = report["epochs"], report["target"]
    assert target["accuracy"] == 0.9 and 1 <= target["epoch"] < 6
    assert len(epochs) == target["epoch"]  # stopped there
    assert epochs[-1]["test_accuracy"] >= 0.9 and all(e["test_accuracy"] < 0.9 for e in epochs[:-1])
    assert 0 < target["seconds"] == epochs[-1]["elapsed_seconds"] <= report["train_seconds"]
    never = [*argv[:-1], "2", "--target-accuracy", "1.0", "--lr", "1e-9", "--dry-run"]
    assert torch_MNIST.main(never) == 0
    report = json.loads(metrics.read_text())
    assert len(report["epochs"]) == 2 and report["target"] == {"accuracy": 1.0, "epoch": None, "seconds": None}


def losses(report):
    """Each epoch's numbers, flat (pytest.approx compares flat sequences only)."""
    return [value for e in report["epochs"] for value in (e["epoch"], e["train_loss"], e["test_accuracy"])]


def test_resume_after_interruptions_gives_the_same_run(small_mnist, tmp_path, monkeypatch, capsys):
    """--checkpoint-every exits 85 after each epoch here; rerunning resumes and ends where one run ends."""
    monkeypatch.chdir(tmp_path)
    # One batch per epoch (--dry-run) is enough to see every state come back.
    argv = ["--data-dir", str(small_mnist), *QUICK, "--epochs", "3", "--dry-run"]
    assert torch_MNIST.main([*argv, "--metrics", "whole.json"]) == 0
    checkpointed = [*argv, "--metrics", "pieces.json", "--checkpoint", "ck/state.pt", "--checkpoint-every", "1e-9"]
    codes = [torch_MNIST.main(checkpointed) for _ in range(3)]
    assert codes == [85, 85, 0]
    out = capsys.readouterr().out
    assert "resumed from epoch 1" in out and "resumed from epoch 2" in out
    whole = json.loads((tmp_path / "whole.json").read_text())
    pieces = json.loads((tmp_path / "pieces.json").read_text())
    assert [e["epoch"] for e in pieces["epochs"]] == [1, 2, 3] and pieces["resumed_from_epoch"] == 2
    # Model, optimizer, scheduler and RNG states all came back: the same numbers as one run.
    assert losses(pieces) == pytest.approx(losses(whole))
    assert torch.load("ck/state.pt", weights_only=True)["epoch"] == 3
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["state.pt"]


def test_checkpoint_every_leaves_the_last_epoch_alone(small_mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--data-dir", str(small_mnist), *QUICK, "--epochs", "1", "--dry-run", "--checkpoint", "c.pt"]
    assert torch_MNIST.main([*argv, "--checkpoint-every", "1e-9"]) == 0  # nothing left to resume


def test_changed_options_or_a_damaged_checkpoint_are_refused(small_mnist, tmp_path, capsys):
    argv = ["--data-dir", str(small_mnist), *QUICK, "--dry-run", "--checkpoint", str(tmp_path / "c.pt")]
    assert torch_MNIST.main([*argv, "--epochs", "1"]) == 0 and (tmp_path / "c.pt").is_file()
    capsys.readouterr()
    assert torch_MNIST.main([*argv, "--epochs", "1", "--lr", "0.5"]) == 2
    assert f"with --lr {torch_MNIST.parse_args([]).lr}, not 0.5" in capsys.readouterr().err  # the recipe's lr
    # The one-cycle schedule spans the run: resuming it with other --epochs would bend it.
    assert torch_MNIST.main([*argv, "--epochs", "2"]) == 2
    assert "with --epochs 1, not 2" in capsys.readouterr().err
    (tmp_path / "c.pt").write_bytes(b"not a checkpoint")
    assert torch_MNIST.main([*argv, "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "is not a checkpoint of this script" in err and "Traceback" not in err


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    preemption.save_checkpoint(path, {"epoch": 1})
    before = path.read_bytes()

    def dies_half_way(obj, f):  # the process is killed, or the disk fills, mid-write
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError):
        preemption.save_checkpoint(path, {"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def wait_for_line(process, text, timeout=600):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if text in line:
            return lines
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"{text!r} never appeared:\n{''.join(lines)}")


@pytest.mark.slow
@pytest.mark.parametrize("after", ["epoch  1:", "images loaded"], ids=["mid-training", "before-epoch-1"])
def test_sigterm_checkpoints_and_exits_85(tmp_path, after):
    tiny_mnist(tmp_path / "data", train=1024, test=256, seed=3)
    checkpoint = tmp_path / "c.pt"
    argv = [sys.executable, str(SRC / "torch_MNIST.py"), "--data-dir", "data", "--device", "cpu"]
    # The lesson's recipe: its step schedule lets the resumed run below ask for fewer epochs.
    argv += ["--recipe", "lesson", "--epochs", "200", "--checkpoint", str(checkpoint), "--metrics", "m.json"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_for_line(process, after)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 85, out
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == len(state["history"]) and state["epoch"] < 200
    assert f"checkpoint holds epoch {state['epoch']}, exiting 85" in out
    assert not (tmp_path / "m.json").exists()  # metrics only when training is complete
    resumed = subprocess.run([*argv, "--epochs", str(state["epoch"] + 1)], cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0 and f"resumed from epoch {state['epoch']}" in resumed.stdout
    assert len(json.loads((tmp_path / "m.json").read_text())["epochs"]) == state["epoch"] + 1


TRAIN_SH = SRC.parent / "htcondor" / "train.sh"
# STAND-IN for pixi-pack's self-extractor (pixi-pack is absent here). Like the real one
# (a bash header, src/header.sh in Quantco/pixi-pack) it is run with no arguments and
# leaves ./activate.sh; this one activates the Python that runs the tests.
SELF_EXTRACTOR_STAND_IN = """#!/usr/bin/env bash
set -euo pipefail
echo unpacked >> unpack.log
mkdir -p env/bin
printf '#!/bin/sh\\nexec %s "$@"\\n' "{python}" > env/bin/python
chmod +x env/bin/python
# Like conda's activation scripts that pixi-unpack's activate.sh runs, it reads variables
# that may be unset (CONDA_SHLVL on a fresh node): train.sh must source it without -u.
cat > activate.sh <<'ACTIVATE'
export CONDA_SHLVL=$((${{CONDA_SHLVL:-0}} + 0))
if [ -n "$CONDA_PREFIX_1" ]; then :; fi
export PATH="$PWD/env/bin:$PATH"
ACTIVATE
"""


def htcondor_sandbox(path, samples=512):
    """The scratch directory of an execute point, laid out as the pixi-pack submit file transfers it."""
    import shutil
    import tarfile

    import fetch_data

    shutil.copytree(SRC, path / "src")
    shutil.copy2(TRAIN_SH, path / "train.sh")
    tiny_mnist(path / "staging" / "data" / "MNIST" / "raw", train=samples, test=128, seed=1)
    with tarfile.open(path / "MNIST_data.tar.gz", "w:gz") as tar:
        tar.add(path / "staging" / "data", arcname="data")
    shutil.rmtree(path / "staging")
    # pixi.toml travels with src/ (transfer_input_files): train.sh checks the data against its pins.
    digests = fetch_data.digests_of(path / "MNIST_data.tar.gz")
    (path / "pixi.toml").write_text(
        f'[tool.invoke-tasks.data]\nsha256 = "{digests["sha256"]}"\ngit-blob = "{digests["git_blob"]}"\n'
    )
    extractor = path / "study-environment-0123abcd.sh"
    extractor.write_text(SELF_EXTRACTOR_STAND_IN.format(python=sys.executable))
    extractor.chmod(0o644)  # file transfer may drop the executable bit
    # The job's environment carries the archive's pins, as submit-condor passes them (data_pins).
    pins = {"INVOKE_PROJECT_DATA_SHA256": digests["sha256"], "INVOKE_PROJECT_DATA_GIT_BLOB": digests["git_blob"]}
    return {**os.environ, **pins, "PIXI_PACK_EXECUTABLE": extractor.name, "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
@pytest.mark.skipif(not TRAIN_SH.is_file(), reason="this project was generated without HTCondor")
def test_htcondor_job_exits_85_and_its_restart_resumes(tmp_path):
    env = {**htcondor_sandbox(tmp_path), "CHECKPOINT_MINUTES": "1e-9"}
    job = ["bash", "train.sh", "--epochs", "2", "--device", "cpu"]
    first = subprocess.run(job, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert first.returncode == 85, first.stdout + first.stderr
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1
    # HTCondor restarts the job in the same sandbox, checkpoint.pt in place.
    second = subprocess.run(job, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resumed from epoch 1" in second.stdout
    assert (tmp_path / "unpack.log").read_text() == "unpacked\n"  # not unpacked again
    assert len(json.loads((tmp_path / "metrics.json").read_text())["epochs"]) == 2
    assert (tmp_path / "mnist_cnn.pt").stat().st_size > 0
    assert not (tmp_path / "data").exists() and not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.slow
@pytest.mark.skipif(not TRAIN_SH.is_file(), reason="this project was generated without HTCondor")
def test_htcondor_job_forwards_the_eviction_signal(tmp_path):
    env = htcondor_sandbox(tmp_path, samples=1024)
    job = ["bash", "train.sh", "--epochs", "200", "--device", "cpu"]
    process = subprocess.Popen(job, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_line(process, "epoch  1:")
        process.send_signal(signal.SIGTERM)  # to the job script only, as HTCondor's soft kill
        out, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 85, out
    assert "checkpointed: exit 85" in out
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] >= 1
