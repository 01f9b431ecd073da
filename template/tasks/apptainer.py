"""The Apptainer image: build-sif, test-sif, push-sif, sif-name."""

from __future__ import annotations

from pathlib import Path

from invoke import Exit, task

from .helpers import ROOT, git_is_dirty, immutable_tag, run, tool
from .settings import Settings, settings

APPTAINER_HOW = "install Apptainer (apptainer.org) or run this on a node that has it"

# Listed only in projects that use this system (tasks/__init__.py).
USED_WITH = ("apptainer.def",)


def clean_tag(what: str) -> str:
    """The commit's tag, refusing a tree with uncommitted changes: the name would lie about the content."""
    tag = immutable_tag()
    if git_is_dirty():
        raise Exit(f"the git tree has uncommitted changes, so {what} would be named after commit {tag} without "
                   "being it; commit them first.")  # fmt: skip
    return tag


def sif_name(s: Settings, tag: str) -> str:
    """The one SIF file name, used by the tasks, the submit file, the SLURM script and CI."""
    return f"{s.name}-{tag}.sif"


def sif_path(s: Settings, tag: str = "") -> Path:
    return ROOT / sif_name(s, tag or immutable_tag())


def existing_sif(c) -> Path:
    path = sif_path(settings(c))
    if not path.is_file():
        raise Exit(f"{path.name} does not exist; run `invoke build-sif` first.")
    return path


@task(name="sif-name", help={"tag": "tag (default: the git short SHA)"})
def print_sif_name(c, tag: str = ""):
    """Print the .sif file name for this commit (for scripts and CI)."""
    print(sif_name(settings(c), tag or immutable_tag()))


@task(
    name="build-sif",
    help={
        "from_docker": "convert the local Docker image instead of building apptainer.def",
        "environment": "pixi environment baked in (default: [tool.invoke-tasks] environment)",
    },
)
def build_sif(c, from_docker: bool = False, environment: str = ""):
    """Build the Apptainer image NAME-TAG.sif (from apptainer.def, or the local Docker image)."""
    s = settings(c)
    apptainer = tool("apptainer", APPTAINER_HOW)
    tag = clean_tag("the .sif")
    if not from_docker and not (ROOT / "apptainer.def").is_file():
        raise Exit("there is no apptainer.def; pass --from-docker to convert the Docker image instead.")
    if from_docker:
        source, arguments = f"docker-daemon://{s.require_image()}:{tag}", []
    else:  # apptainer.def's %arguments, as build-image passes the Dockerfile's ARG
        source, arguments = "apptainer.def", ["--build-arg", f"PIXI_ENVIRONMENT={environment or s.environment}"]
    run([apptainer, "build", "--force", *arguments, str(sif_path(s, tag)), source], "apptainer build")


@task(name="test-sif")
def test_sif(c):
    """Run the image's %test section (the GPU check through the activation script)."""
    apptainer = tool("apptainer", APPTAINER_HOW)
    run([apptainer, "test", str(existing_sif(c))], "apptainer test")


@task(name="push-sif")
def push_sif(c):
    """Push the .sif to the registry as an OCI artifact (oras://IMAGE:sif-TAG)."""
    s = settings(c)
    apptainer = tool("apptainer", APPTAINER_HOW)
    tag = clean_tag("the pushed .sif")
    path = existing_sif(c)
    run([apptainer, "push", str(path), f"oras://{s.require_image()}:sif-{tag}"], "apptainer push")
