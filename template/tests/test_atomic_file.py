"""Models, checkpoints and metrics are written whole or not at all."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from atomic_file import write_atomically, write_text_atomically
from conftest import SRC

# Writes half of a new file, says so, then waits to be killed.
HALF_WRITER = """
import sys, time
sys.path.insert(0, {src!r})
from atomic_file import write_atomically

def write(out):
    out.write(b'{{"epochs": [')
    out.flush()
    print("half written", flush=True)
    time.sleep(60)

write_atomically(__import__("pathlib").Path({path!r}), write)
"""


def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path):
    metrics = tmp_path / "metrics.json"
    write_text_atomically(metrics, json.dumps({"epochs": [1]}))
    code = HALF_WRITER.format(src=str(SRC), path=str(metrics))
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "half written\n"
        process.send_signal(signal.SIGKILL)  # no handler, no finally: as the OOM killer or a node's loss
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert json.loads(metrics.read_text()) == {"epochs": [1]}
    # What the killed writer left is a hidden temporary file, never the file readers open.
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["metrics.json"]


def test_a_failed_write_leaves_nothing_new(tmp_path):
    target = tmp_path / "out" / "mnist_cnn.pt"

    def disk_full(out):
        out.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomically(target, disk_full)
    assert list(target.parent.iterdir()) == []
