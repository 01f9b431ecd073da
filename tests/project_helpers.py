"""Helpers for tests on a rendered project (project_tasks and write_data_tarball live in maintainer/project.py)."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

from maintainer.project import data_pins, project_tasks, write_data_tarball

__all__ = ["project_tasks", "write_data_tarball", "tiny_data_pins", "dry_run_ads", "dry_run_command", "tar_members"]


def tar_members(archive: Path) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive.read_bytes())) as tar:
        return tar.getnames()


def dry_run_ads(stdout: str) -> list[dict]:
    """The job ClassAds `invoke submit-condor --dry-run` prints (as `# job N` + JSON)."""
    blocks = re.findall(r"^# job \d+\n(\{.*?^\})", stdout, re.M | re.S)
    return [json.loads(block) for block in blocks]


def dry_run_command(stdout: str) -> str:
    """The condor_submit command line a dry run says it would run."""
    return stdout.split("# dry run: would run, in htcondor/:\n", 1)[1].strip()


def tiny_data_pins(project: Path) -> dict[str, str]:
    """The tiny archive written by write_data_tarball, pinned as the project's data ({} without one).

    The real archive's pins stay in pixi.toml; a test archive is verified like any other.
    """
    archive = project / "MNIST_data.tar.gz"
    return data_pins(archive) if archive.is_file() else {}
