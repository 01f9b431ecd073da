#!/usr/bin/env python
"""Report whether PyTorch can use a GPU here, and which one (the lesson's check, extended)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import torch


def nvidia_smi(*query: str) -> str | None:
    """Output of nvidia-smi, or None where it is absent or fails."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        result = subprocess.run(["nvidia-smi", *query], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def report() -> bool:
    """Print the diagnostics; return whether a CUDA GPU is usable."""
    print(f"PyTorch version: {torch.__version__}")
    print(f"PyTorch build CUDA version: {torch.version.cuda}")
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    print(f"PyTorch build cuDNN version: {cudnn}")
    print(f"CUDA_VISIBLE_DEVICES: {os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")
    available = torch.cuda.is_available()
    print(f"CUDA available: {available}")
    print(f"Number of GPUs: {torch.cuda.device_count() if available else 0}")
    if available:
        driver = nvidia_smi("--query-gpu=driver_version", "--format=csv,noheader")
        print(f"NVIDIA driver version: {driver.splitlines()[0] if driver else 'unknown (nvidia-smi absent)'}")
        print(f"PyTorch supported architectures: {' '.join(torch.cuda.get_arch_list())}")
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            free, total = torch.cuda.mem_get_info(index)
            print(f"GPU {index}: {props.name}")
            print(f"  compute capability: {props.major}.{props.minor}")
            print(f"  memory: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB")
            print(f"  multiprocessors: {props.multi_processor_count}")
        mig = [line for line in (nvidia_smi("-L") or "").splitlines() if "MIG" in line]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        print(f"MIG: {'yes, ' + '; '.join(m.strip() for m in mig) if mig or 'MIG-' in visible else 'no'}")
        # A tiny kernel proves the driver, runtime and device actually work together.
        x = torch.ones(1024, device="cuda")
        print(f"Test computation on GPU 0: {'ok' if float((x * 2).sum()) == 2048.0 else 'WRONG RESULT'}")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        print("Apple MPS available: True")
    return available


def why_no_gpu() -> str:
    """One sentence: why this run has no CUDA, and where it would have one."""
    environment = os.environ.get("PIXI_ENVIRONMENT_NAME", "")
    where = f"the pixi environment {environment!r}" if environment else "this Python"
    if torch.version.cuda is not None:
        return f"{where} has a CUDA build of PyTorch, but no NVIDIA GPU or driver is usable here."
    if not sys.platform.startswith("linux"):
        system = "macOS" if sys.platform == "darwin" else "Windows"
        return (
            f"{where} has the CPU build of PyTorch: conda-forge builds PyTorch with CUDA for Linux only, so "
            f"the gpu environment cannot be installed on {system}; train on the CPU here or on a cluster's GPUs."
        )
    if nvidia_smi() is None:
        return (
            f"{where} has the CPU build of PyTorch, and the gpu environment needs an NVIDIA driver, which this "
            "machine lacks (no working nvidia-smi); train on the CPU here or on a cluster's GPUs."
        )
    return (
        f"{where} has the CPU build of PyTorch; on this machine with an NVIDIA driver run `pixi run -e gpu detect-gpu`."
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--require-gpu", action="store_true", help="exit with status 1 when no CUDA GPU is usable")
    args = parser.parse_args(argv)
    available = report()
    if not available:
        print(why_no_gpu())
    if args.require_gpu and not available:
        print("error: no CUDA GPU is usable here (--require-gpu).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
