"""The GPU check: its report, and --require-gpu where no GPU is usable."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import SRC

SCRIPT = str(SRC / "torch_detect_GPU.py")


def test_report_runs():
    result = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, check=True)
    assert f"CUDA available: {torch.cuda.is_available()}" in result.stdout
    assert "PyTorch build CUDA version" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is usable here")
def test_require_gpu_fails_without_gpu():
    result = subprocess.run([sys.executable, SCRIPT, "--require-gpu"], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "no CUDA GPU is usable" in result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_require_gpu_passes_with_gpu():
    result = subprocess.run([sys.executable, SCRIPT, "--require-gpu"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "compute capability" in result.stdout
