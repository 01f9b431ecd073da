"""Device and precision choice: the fastest settings this hardware runs correctly."""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch

SWITCH = ("on", "off", "auto")
# CPU flags (/proc/cpuinfo) of native bf16 matrix maths; without them bf16 is emulated and
# slower than fp32 (11x slower on an AVX2-only EPYC).
NATIVE_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


class DeviceError(Exception):
    """A device that was asked for but is not usable; the message is one sentence."""


def pick_device(name: str) -> torch.device:
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError("--device cuda was asked for but no CUDA GPU is usable here.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queue, so that a clock read after this measures the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def choose_precision(request: str, device: torch.device, flags: frozenset | None = None) -> torch.dtype:
    """bfloat16 for ``on``; for ``auto`` only where bf16 maths is native, else float32."""
    if request == "on":
        return torch.bfloat16
    if request == "off":
        return torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float32
    if device.type == "cpu":
        flags = cpu_flags() if flags is None else flags
        return torch.bfloat16 if flags & NATIVE_BF16_CPU_FLAGS else torch.float32
    return torch.float32


def choose_channels_last(request: str, device: torch.device, precision: torch.dtype) -> bool:
    """channels_last on CUDA, and on CPUs only with bf16 (oneDNN's bf16 convolutions); fp32 CPU
    convolutions gained nothing from it in bench/bench_training.py."""
    if request != "auto":
        return request == "on"
    return device.type == "cuda" or (device.type == "cpu" and precision == torch.bfloat16)


def set_up(seed: int, threads: int, deterministic: bool) -> None:
    """Seed torch, set its CPU threads, and make results repeatable (slower) when asked."""
    torch.manual_seed(seed)
    random.seed(seed)
    if threads:
        torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
