"""The rendered workflows: images tagged as the tasks tag them, actions pinned to commits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from maintainer.render import ROOT, git
from tests.project_helpers import project_tasks

FACTS = ROOT / "reference" / "facts" / "github-actions.md"
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.M)


def metadata_action_sha_tag(spec: str, sha: str, env: dict, flavor: str = "") -> str:
    """docker/metadata-action v6's rule for a `type=sha` entry (src/tag.ts, src/meta.ts).

    Attributes are comma-separated key=value; prefix defaults to `sha-` when the key is
    absent (an empty `prefix=` means none), format to `short`; short is the first
    DOCKER_METADATA_SHORT_SHA_LENGTH (default 7) characters; the flavor's prefix applies
    only when the entry has no prefix key.
    """
    attrs = dict(item.split("=", 1) for item in spec.split(","))
    assert attrs.pop("type") == "sha"
    flavors = dict(line.split("=", 1) for line in flavor.split() if "=" in line)
    prefix = attrs.get("prefix", "sha-")
    if "prefix" not in attrs and flavors.get("prefix"):
        prefix = flavors["prefix"]
    value = sha
    if attrs.get("format", "short") == "short":
        value = sha[: int(env.get("DOCKER_METADATA_SHORT_SHA_LENGTH", 7))]
    return f"{prefix}{value}{attrs.get('suffix', '')}"


def metadata_step(workflow: Path) -> dict:
    steps = yaml.safe_load(workflow.read_text())["jobs"]["build"]["steps"]
    return next(step for step in steps if step.get("uses", "").startswith("docker/metadata-action@"))


@pytest.mark.parametrize("preset", ["defaults", "everything"])
def test_ci_pushes_the_tag_the_tasks_look_for(copy_of, preset):
    project = copy_of(preset)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "rendered")
    full_sha = git(project, "rev-parse", "HEAD").strip()
    tasks_tag = project_tasks(project).helpers.immutable_tag()  # what submit-condor and test-image look for
    step = metadata_step(project / ".github/workflows/docker.yml")
    specs = [line.strip() for line in step["with"]["tags"].splitlines() if line.strip().startswith("type=sha")]
    assert len(specs) == 1, specs
    ci_tag = metadata_action_sha_tag(specs[0], full_sha, step.get("env", {}), step["with"].get("flavor", ""))
    assert ci_tag == tasks_tag


def test_the_rule_reproduces_metadata_actions_documented_default():
    # README: `type=sha` gives tags "like sha-860c190".
    sha = "860c1904a1ce19322e91ac35af1ab07466440c37"
    assert metadata_action_sha_tag("type=sha", sha, {}) == "sha-860c190"
    assert metadata_action_sha_tag("type=sha,format=long", sha, {}) == f"sha-{sha}"
    assert metadata_action_sha_tag("type=sha", sha, {"DOCKER_METADATA_SHORT_SHA_LENGTH": "12"}) == "sha-860c1904a1ce"


def rendered_uses(renderings) -> list[tuple[str, str, str]]:
    found = []
    for preset, project in renderings.items():
        for workflow in sorted((project / ".github" / "workflows").glob("*.yml")):
            for ref, comment in USES.findall(workflow.read_text()):
                found.append((f"{preset}/{workflow.name}", ref, comment.strip()))
    return found


def test_every_action_is_pinned_to_a_commit_with_its_version(renderings):
    found = rendered_uses(renderings)
    assert found
    for where, ref, comment in found:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), f"{where}: {ref} is not pinned to a commit"
        assert re.fullmatch(r"#\s*v\d+(\.\d+)*", comment), f"{where}: {ref} needs its version as a comment"


def test_pins_are_the_commits_of_their_tags(renderings):
    table = {}
    for row in FACTS.read_text().splitlines():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"[0-9a-f]{40}", cells[2]):
            table[(cells[0], cells[1].split()[0])] = cells[2]
    for where, ref, comment in rendered_uses(renderings):
        action, commit = ref.split("@")
        version = comment.lstrip("#").strip()
        assert table.get((action, version)) == commit, f"{where}: {action} {version} is not commit {commit}"


def build_steps(project: Path) -> list[dict]:
    return yaml.safe_load((project / ".github/workflows/docker.yml").read_text())["jobs"]["build"]["steps"]


@pytest.mark.parametrize("workflow", ["docker.yml", "apptainer.yml"])
def test_cuda_image_builds_free_the_runners_disk_first(renderings, workflow):
    steps = yaml.safe_load((renderings["everything"] / ".github/workflows" / workflow).read_text())["jobs"]["build"][
        "steps"
    ]
    first_build = next(i for i, s in enumerate(steps) if s.get("name") == "Build")
    freeing = [i for i, s in enumerate(steps) if "docker system prune -af" in s.get("run", "")]
    assert freeing and freeing[0] < first_build, "free the disk before the CUDA environment is built"
    script = steps[freeing[0]]["run"]
    for path in ("/usr/share/dotnet", "/usr/local/lib/android", "/opt/ghc", "/opt/hostedtoolcache/CodeQL"):
        assert path in script


def test_the_image_is_built_once_and_never_exported_again(renderings):
    steps = build_steps(renderings["everything"])
    builds = [s for s in steps if s.get("uses", "").startswith("docker/build-push-action@")]
    assert len(builds) == 1, "one build step"
    assert not builds[0]["with"].get("load"), "a `load` export copies the whole image a second time"
    buildx = next(s for s in steps if s.get("uses", "").startswith("docker/setup-buildx-action@"))
    # With the docker driver the build lands in the engine's store, which the smoke test and the push use.
    assert buildx.get("with", {}).get("driver") == "docker"


@pytest.mark.parametrize("preset", ["defaults", "apptainer-slurm"])
def test_the_apptainer_workflow_uses_the_tasks_one_sif_name(renderings, preset):
    """build-sif, test-sif and push-sif name the file (apptainer.sif_name); the workflow names none."""
    text = (renderings[preset] / ".github/workflows/apptainer.yml").read_text()
    steps = yaml.safe_load(text)["jobs"]["build"]["steps"]
    runs = {s.get("name"): s.get("run", "") for s in steps}
    assert 'invoke" build-sif' in runs["Build"] and 'invoke" test-sif' in runs["Test"]
    assert 'invoke" push-sif' in runs["Push"]
    assert not [s for s in steps if ".sif" in str(s)], "a step names a .sif file of its own"
