"""What a submission runs and reads: the image, .sif or pack, and the data, found without building.

On an access point there is no Docker engine and building images is not allowed: the
registry is asked over HTTP (registry.py), the SIF CI pushed is used where there is no
local one, and --build is refused in a sentence where no builder exists.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from invoke import Exit

from .apptainer import build_sif, sif_path
from .data import data_archive, ensure_data
from .helpers import human_size, immutable_tag
from .images import build_image, docker_client, push_image
from .pack import check_pack_disk, pack, pack_path
from .registry import artifact_size, manifest
from .settings import Settings
from .staging import osdf_url, stage, staging_dir
from .submit_file import SubmitFile

# What a job's sandbox holds besides a .sif: the data, its extraction, checkpoints and outputs.
SANDBOX_MARGIN = 2**30


def ci_pushes(what: str = "it", workflow: str = "docker") -> str:
    """Where images come from when this machine cannot build them: the project's workflows."""
    return f"CI pushes {what} when this commit reaches main on GitHub (.github/workflows/{workflow}.yml)"


def large_input(s: Settings, path: Path, dry_run: bool, sent: list[Path]) -> str:
    """Where a job reads ``path`` from: OSDF when osdf-path is set, else the access point."""
    if s.htcondor.osdf_path:
        return stage(s, path, dry_run)
    sent.append(path)
    return f"../{path.name}"


def checked_tag(tag: str) -> str:
    """The image tag jobs run: the commit's short SHA unless --tag names another immutable one."""
    if not tag:
        return immutable_tag()
    if tag == "latest":
        raise Exit("--tag latest moves with every push and execute points cache it; pass a commit's short SHA.")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", tag):
        raise Exit(f"--tag {tag!r} is not an image tag (letters, digits, '.', '_' and '-', at most 128).")
    return tag


def docker_image(c, s: Settings, tag: str, build: bool, dry_run: bool) -> str:
    reference = f"{s.require_image()}:{tag}"
    if dry_run:
        print(f"would ask the registry for {reference}" + (" and build and push it if absent" if build else ""))
    elif manifest(reference) is None:
        if not build:
            raise Exit(f"{reference} is not in the registry; {ci_pushes()}, or add --build where Docker runs.")
        docker_client(
            f"--build needs a Docker engine, which access points lack; {ci_pushes()}, or build on your own computer"
        )
        build_image(c)
        push_image(c, tag=tag)
    return f"docker://{reference}"


def sif_image(c, s: Settings, submit: SubmitFile, tag: str, build: bool, dry_run: bool, sent: list[Path]) -> str:
    """A local or staged .sif where there is one, else the oras:// artifact CI pushed."""
    path = sif_path(s, tag)
    if build and not path.is_file():
        if shutil.which("apptainer") is None:
            raise Exit(
                f"--build needs Apptainer to build {path.name}; {ci_pushes('the SIF', 'apptainer')}, "
                "or build it with `invoke build-sif` where Apptainer runs (CHTC: an interactive build job)."
            )
        if dry_run:
            print(f"would build {path.name}")
            return f"../{path.name}"
        build_sif(c)
    if path.is_file():
        check_sif_disk(submit, path.name, path.stat().st_size)
        return large_input(s, path, dry_run, sent)
    if s.htcondor.osdf_path and (staging_dir(s) / path.name).is_file():
        check_sif_disk(submit, path.name, (staging_dir(s) / path.name).stat().st_size)
        return osdf_url(s, path.name)  # staged earlier; the local copy may be gone
    remote = f"{s.require_image()}:sif-{tag}"
    if dry_run:
        print(f"would ask the registry for {remote} (no {path.name} here)")
        return f"oras://{remote}"
    found = manifest(remote)
    if found is None:
        raise Exit(f"neither {path.name} nor oras://{remote} exists; {ci_pushes('the SIF', 'apptainer')}.")
    check_sif_disk(submit, f"oras://{remote}", artifact_size(found))
    return f"oras://{remote}"


def check_sif_disk(submit: SubmitFile, name: str, size: int) -> None:
    """The .sif is copied into the job's sandbox: request_disk must hold it and the job's files."""
    need = size + SANDBOX_MARGIN
    if submit.disk_bytes() < need:
        raise Exit(
            f"request_disk = {submit.last('request_disk')} in {submit.name} is too small for {name} "
            f"({human_size(size)}), which the job's sandbox holds; raise it to at least {human_size(need)}."
        )


def packed_environment(c, s: Settings, submit: SubmitFile, build: bool, dry_run: bool, sent: list[Path]) -> list:
    path = pack_path(s)
    if not path.is_file():
        if not build:
            raise Exit(f"{path.name} (packed from this pixi.lock) does not exist; run `invoke pack` or add --build.")
        if dry_run:
            print(f"would pack {path.name} and check request_disk against its size")
            return [("pack_file", path.name), ("pack_input", f"../{path.name}")]
        pack(c)
    check_pack_disk(s, path, submit)
    return [("pack_file", path.name), ("pack_input", large_input(s, path, dry_run, sent))]


def data_input(c, s: Settings, dry_run: bool, sent: list[Path]) -> str:
    archive = data_archive(c)
    if dry_run and not archive.is_file():
        print(f"would download and verify {archive.name} from {s.data.url}")
        return osdf_url(s, archive.name) if s.htcondor.osdf_path else f"../{archive.name}"
    return large_input(s, ensure_data(c), dry_run, sent)


def environment_commands(c, s: Settings, flavour: str, submit: SubmitFile, options: dict, sent: list) -> list:
    """The image, .sif or pack this submission runs, as submit commands."""
    tag, build, dry_run = options["tag"], options["build"], options["dry_run"]
    if flavour == "docker":
        return [("container_image", docker_image(c, s, tag, build, dry_run))]
    if flavour == "apptainer":
        return [("container_image", sif_image(c, s, submit, tag, build, dry_run, sent))]
    return packed_environment(c, s, submit, build, dry_run, sent)
