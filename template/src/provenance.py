"""What a result came from, written by the job itself into metrics.json.

The submitting task passes what only it knows (the commit, the pixi.lock digest, the image,
.sif or pack) as PROVENANCE_* environment variables (SLURM: sbatch --export) or as job ClassAd
attributes (HTCondor: `MY.ProvenanceCommit`, ..., read from the job ad file the starter writes
and names in _CONDOR_JOB_AD). The job measures the rest itself: the data archive's digest, the
GPU and its driver.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

# metrics.json key -> (environment variable, job ClassAd attribute)
PASSED = {
    "commit": ("PROVENANCE_COMMIT", "ProvenanceCommit"),
    "pixi_lock_sha256": ("PROVENANCE_LOCK_SHA256", "ProvenanceLockSha256"),
    "image": ("PROVENANCE_IMAGE", "ContainerImage"),
}


def job_ad(path: str | None) -> dict[str, str]:
    """String attributes of the HTCondor job ad file (`Name = "value"` lines), or nothing."""
    if not path or not Path(path).is_file():
        return {}
    pattern = re.compile(r'^\s*(\w+)\s*=\s*"(.*)"\s*$')
    found = (pattern.match(line) for line in Path(path).read_text(errors="replace").splitlines())
    return {m.group(1): m.group(2) for m in found if m}


def sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gpu_and_driver() -> tuple[str | None, str | None]:
    """The first GPU's name and the NVIDIA driver version, from nvidia-smi (None without one)."""
    if shutil.which("nvidia-smi") is None:
        return None, None
    query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    fields = [part.strip() for part in out.splitlines()[0].split(",")] if out.strip() else []
    return (fields[0], fields[1]) if len(fields) == 2 else (None, None)


def collect(data_archive: Path | None = None, environ=os.environ) -> dict:
    """The provenance record: passed facts, the data archive's digest, the GPU and driver."""
    ad = job_ad(environ.get("_CONDOR_JOB_AD"))
    record = {key: environ.get(variable) or ad.get(attribute) for key, (variable, attribute) in PASSED.items()}
    if not record["image"] and environ.get("PIXI_PACK_EXECUTABLE"):
        record["image"] = environ["PIXI_PACK_EXECUTABLE"]  # the pixi-pack flavour's environment
    archive = Path(environ.get("PROVENANCE_DATA_ARCHIVE") or data_archive or "MNIST_data.tar.gz")
    record["data_sha256"] = environ.get("PROVENANCE_DATA_SHA256") or sha256(archive)
    record["gpu"], record["driver"] = gpu_and_driver()
    return record
