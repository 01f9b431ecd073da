"""The GPU check: its report, and --require-gpu where no GPU is usable."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import torch_detect_GPU
from conftest import SRC


def test_report_runs(capsys):
    assert torch_detect_GPU.main([]) == 0
    out = capsys.readouterr().out
    assert f"CUDA available: {torch.cuda.is_available()}" in out
    assert "PyTorch build CUDA version" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is usable here")
def test_require_gpu_fails_without_gpu(capsys):
    assert torch_detect_GPU.main(["--require-gpu"]) == 1
    assert "no CUDA GPU is usable" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_require_gpu_passes_with_gpu(capsys):
    assert torch_detect_GPU.main(["--require-gpu"]) == 0
    assert "compute capability" in capsys.readouterr().out


@pytest.mark.slow
def test_the_script_runs_as_a_command():
    result = subprocess.run([sys.executable, str(SRC / "torch_detect_GPU.py")], capture_output=True, text=True)
    assert result.returncode == 0 and "PyTorch build CUDA version" in result.stdout
