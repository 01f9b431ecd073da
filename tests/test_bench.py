"""The training bench still runs and prints its three result lines (a smoke run on tiny data;
its numbers mean nothing at this size: the goals are read from a full run, see README)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_training_bench_prints_its_three_result_lines(tmp_path):
    results_file = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "bench/bench_training.py",
            "--samples",
            "512",
            "--test-samples",
            "128",
            "--rounds",
            "1",
            "--target",
            "0.2",
            "--json",
            str(results_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    last = result.stdout.strip().splitlines()[-3:]
    assert re.fullmatch(r"time-to-target ratio: \d+\.\d\dx", last[0]), last
    assert re.fullmatch(r"accuracy: lesson 0\.\d{4}, template 0\.\d{4}", last[1]), last
    assert re.fullmatch(r"ceiling fraction: \d+\.\d\d", last[2]), last
    results = json.loads(results_file.read_text())
    assert len(results["lesson"]["accuracy"]) == 14 and len(results["template"]["accuracy"]) == 3
    lesson, template = results["lesson"]["target_seconds"], results["template"]["target_seconds"]
    assert results["ratio"] == lesson / template
