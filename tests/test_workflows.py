"""The rendered workflows: images tagged as the tasks tag them, actions pinned to commits."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from maintainer.render import ROOT, git, load_answers, render
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


# docker/metadata-action v6.2.0 (dc80280410): entries run in priority order (src/tag.ts:43-52,
# 69-85); the first that yields a value decides `latest` (src/meta.ts setVersion), true under
# the default flavor latest=auto for ref event=tag, semver, pep440 and match (procRefTag ...),
# else whatever latest=true|false says (src/flavor.ts, README "Latest tag").
METADATA_PRIORITY = {"schedule": 1000, "semver": 900, "pep440": 900, "match": 800, "edge": 700, "ref": 600, "raw": 200}
METADATA_AUTO_LATEST = {"semver", "pep440", "match", "ref/tag"}


def metadata_action_tags_latest(specs: list[str], flavor: str, ref: str) -> bool:
    """Whether metadata-action outputs a `latest` tag for a push of `ref` (GitHub expressions in
    `enable=` compare github.ref only, as ours do)."""
    latest_flavor = dict(line.split("=", 1) for line in flavor.split() if "=" in line).get("latest", "auto")
    entries = []
    for spec in specs:
        spec = re.sub(r"\$\{\{\s*github\.ref == '([^']*)'\s*\}\}", lambda m: str(ref == m[1]).lower(), spec)
        attrs = dict(item.split("=", 1) for item in spec.split(","))
        entries.append(attrs)
    entries.sort(key=lambda a: -int(a.get("priority", METADATA_PRIORITY.get(a["type"], 100))))
    yields = {"tag": "refs/tags/", "pr": "refs/pull/", "branch": "refs/heads/"}
    decided = None
    for attrs in (a for a in entries if a.get("enable", "true") == "true"):
        kind = attrs["type"] + ("/" + attrs["event"] if attrs["type"] == "ref" else "")
        if attrs["type"] == "ref" and not ref.startswith(yields[attrs["event"]]):
            continue
        if decided is None:
            decided = kind in METADATA_AUTO_LATEST if latest_flavor == "auto" else latest_flavor == "true"
    named = any(
        a["type"] == "raw" and a.get("value") == "latest" and a.get("enable", "true") == "true" for a in entries
    )
    return bool(decided) or named


def test_the_latest_rule_reproduces_metadata_actions_readme():
    # README "Latest tag": ref event=tag sets latest by default; a raw rule does so where enabled.
    assert metadata_action_tags_latest(["type=ref,event=tag", "type=sha"], "", "refs/tags/v1.0")
    assert not metadata_action_tags_latest(["type=ref,event=tag", "type=sha"], "latest=false", "refs/tags/v1.0")
    assert not metadata_action_tags_latest(["type=sha", "type=ref,event=pr"], "", "refs/pull/3/merge")


def test_only_main_is_tagged_latest(renderings):
    step = metadata_step(renderings["everything"] / ".github/workflows/docker.yml")
    specs = [line.strip() for line in step["with"]["tags"].splitlines() if line.strip()]
    flavor = step["with"].get("flavor", "")
    assert metadata_action_tags_latest(specs, flavor, "refs/heads/main")
    for ref in ("refs/tags/v1.2.0", "refs/heads/feature", "refs/pull/7/merge"):
        assert not metadata_action_tags_latest(specs, flavor, ref), f"a push of {ref} is tagged latest"


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


@pytest.mark.parametrize("workflow", ["docker.yml", "apptainer.yml"])
def test_cuda_image_builds_write_to_the_runners_second_disk(renderings, workflow):
    """/ has ~14 GB free, /mnt ~70 GB (reference/facts/real-world-limits.md): the build's writes go
    to /mnt with the commands the template's own journey workflow uses (.github/workflows/journey.yml)."""
    steps = workflow_steps(renderings["everything"], workflow)
    first_build = next(i for i, s in enumerate(steps) if s.get("name") == "Build")
    before = "\n".join(s.get("run", "") for s in steps[:first_build])
    journey = next(s["run"] for s in workflow_steps(ROOT, "journey.yml", "journey") if "data-root" in s.get("run", ""))
    if workflow == "docker.yml":  # Docker's data root holds the layers and the image
        moving = [line.strip() for line in journey.splitlines() if "daemon.json" in line or "restart docker" in line]
        assert moving and all(line in before for line in moving), "move Docker's data root as journey.yml does"
        assert '"data-root": "/mnt/docker"' in before
    else:  # Apptainer's build sandbox and layer cache
        for variable in ("APPTAINER_TMPDIR=/mnt/", "APPTAINER_CACHEDIR=/mnt/"):
            assert f'echo "{variable}' in before and '>> "$GITHUB_ENV"' in before, f"set {variable} before the build"


def test_the_image_is_built_once_and_never_exported_again(renderings):
    steps = build_steps(renderings["everything"])
    builds = [s for s in steps if s.get("uses", "").startswith("docker/build-push-action@")]
    assert len(builds) == 1, "one build step"
    assert not builds[0]["with"].get("load"), "a `load` export copies the whole image a second time"
    buildx = next(s for s in steps if s.get("uses", "").startswith("docker/setup-buildx-action@"))
    # With the docker driver the build lands in the engine's store, which the smoke test and the push use.
    assert buildx.get("with", {}).get("driver") == "docker"


def test_the_docker_driver_build_asks_for_no_attestation(renderings):
    """build-push-action v7.3.0 (53b7df96c9, src/context.ts:249-265) adds `--attest type=provenance`
    unless `provenance` is set, `load` is true or an output is of type docker; buildx then refuses
    any attestation on the docker driver without the containerd image store (build/opt.go:
    supportAttestations needs driver.MultiPlatform, driver/docker/driver.go: useContainerdSnapshotter).
    `false` becomes `disabled=true`, which buildx drops (util/buildflags/attests.go ToMap)."""
    build = next(
        s for s in build_steps(renderings["everything"]) if s.get("uses", "").startswith("docker/build-push-action@")
    )
    options = build.get("with", {})
    assert not options.get("load") and not options.get("outputs"), "the action's own exception applies then"
    assert options.get("provenance") is False and options.get("sbom") is False


@pytest.mark.parametrize("preset", ["defaults", "apptainer-slurm"])
def test_the_apptainer_workflow_uses_the_tasks_one_sif_name(renderings, preset):
    """build-sif, test-sif and push-sif name the file (apptainer.sif_name); the workflow names none."""
    text = (renderings[preset] / ".github/workflows/apptainer.yml").read_text()
    steps = yaml.safe_load(text)["jobs"]["build"]["steps"]
    runs = {s.get("name"): s.get("run", "") for s in steps}
    assert 'invoke" build-sif' in runs["Build"] and 'invoke" test-sif' in runs["Test"]
    assert 'invoke" push-sif' in runs["Push"]
    assert not [s for s in steps if ".sif" in str(s)], "a step names a .sif file of its own"


def workflow_steps(project: Path, name: str, job: str = "build") -> list[dict]:
    return yaml.safe_load((project / ".github/workflows" / name).read_text())["jobs"][job]["steps"]


def test_tests_workflow_passes_before_and_after_the_first_lock(renderings):
    """setup-pixi (src/options.ts): `cache` and `locked` unset mean "only when pixi.lock exists"."""
    for preset, project in renderings.items():
        if not (project / ".github").is_dir():
            continue
        steps = workflow_steps(project, "tests.yml", "test")
        (pixi,) = [s for s in steps if s.get("uses", "").startswith("prefix-dev/setup-pixi@")]
        assert "cache" not in pixi["with"] and "locked" not in pixi["with"], preset
        assert all("--locked" not in s.get("run", "") for s in steps), "pixi run --locked fails before `pixi lock`"


@pytest.mark.parametrize("workflow", ["docker.yml", "apptainer.yml"])
@pytest.mark.parametrize("locked", [True, False])
def test_image_workflows_say_when_pixi_lock_was_not_committed(renderings, tmp_path, workflow, locked):
    steps = workflow_steps(renderings["defaults"], workflow)
    (index,) = [i for i, s in enumerate(steps) if s.get("name") == "pixi.lock is committed"]
    assert index < next(i for i, s in enumerate(steps) if s.get("name") == "Build")
    if locked:
        (tmp_path / "pixi.lock").write_text("version: 6\n")
    result = subprocess.run(["bash", "-e", "-c", steps[index]["run"]], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == (0 if locked else 1)
    if not locked:
        assert result.stdout.strip() == (
            "::error file=pixi.toml::pixi.lock is not committed: run `pixi lock`, commit pixi.lock and push again."
        )


def apptainer_install(project: Path) -> dict:
    steps = workflow_steps(project, "apptainer.yml")
    assert not [s for s in steps if s.get("uses", "").startswith("eWaterCycle/setup-apptainer@")], "node20, 1.3.0"
    (step,) = [s for s in steps if s.get("name", "").startswith("Install Apptainer")]
    return step


def test_apptainer_is_the_pinned_release_on_amd64(renderings):
    version = yaml.safe_load((ROOT / "copier.yml").read_text())["apptainer_version"]["default"]
    step = apptainer_install(renderings["defaults"])
    assert step["env"]["APPTAINER_VERSION"] == version
    assert 'gh release download "v${APPTAINER_VERSION}" --repo apptainer/apptainer' in step["run"]
    assert '"apptainer_${APPTAINER_VERSION}_amd64.deb"' in step["run"]


def test_arm_projects_install_apptainer_built_for_arm(tmp_path):
    """Apptainer's releases hold amd64 .debs only (release.yml: GO_ARCH linux-amd64); its PPA builds arm64."""
    answers = {**load_answers("defaults"), "platforms": ["linux-aarch64", "osx-arm64"]}
    project = render(tmp_path / "arm", answers)
    workflow = yaml.safe_load((project / ".github/workflows/apptainer.yml").read_text())
    assert workflow["jobs"]["build"]["runs-on"] == "ubuntu-24.04-arm"
    step = apptainer_install(project)
    assert "amd64" not in step["run"] and "ppa:apptainer/ppa" in step["run"]


@pytest.mark.parametrize(
    ("registry", "user", "token"),
    [
        ("ghcr.io", "${{ github.actor }}", "${{ secrets.GITHUB_TOKEN }}"),
        ("docker.io", "${{ secrets.REGISTRY_USERNAME }}", "${{ secrets.REGISTRY_TOKEN }}"),
        ("custom", "${{ secrets.REGISTRY_USERNAME }}", "${{ secrets.REGISTRY_TOKEN }}"),
    ],
)
def test_registry_logins_use_the_account_the_readme_names(tmp_path, registry, user, token):
    answers = {**load_answers("defaults"), "container_registry": registry}
    if registry == "custom":
        answers["registry_host"] = "registry.example.org"
    project = render(tmp_path / registry, answers)
    (login,) = [
        s for s in workflow_steps(project, "docker.yml") if s.get("uses", "").startswith("docker/login-action@")
    ]
    assert (login["with"]["username"], login["with"]["password"]) == (user, token)
    (push,) = [s for s in workflow_steps(project, "apptainer.yml") if s.get("name") == "Push"]
    assert (push["env"]["REGISTRY_USER"], push["env"]["REGISTRY_TOKEN"]) == (user, token)
    readme = (project / "README.md").read_text()
    section = readme.split("### Registry accounts", 1)[1].split("\n## ", 1)[0]
    for secret in re.findall(r"secrets\.(\w+)", user + token):
        if secret != "GITHUB_TOKEN":
            assert f"`{secret}`" in section, f"the README does not name the secret {secret}"
    assert ("GITHUB_TOKEN" in section) == (registry == "ghcr.io")


def test_lock_update_workflow_opens_a_reviewed_pull_request(renderings):
    """pixi's "Update lockfiles with GitHub Actions": pixi update --json into pixi-diff-to-markdown."""
    project = renderings["defaults"]
    workflow = yaml.safe_load((project / ".github/workflows/update-lock.yml").read_text())
    assert "schedule" in workflow[True] and "workflow_dispatch" in workflow[True]
    assert workflow["permissions"] == {}
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "pixi update --no-install --json" in runs and "pixi-diff-to-markdown" in runs
    assert "set -o pipefail" in runs, "a failed update must not open an empty pull request"
    (pr,) = [s for s in job["steps"] if s.get("uses", "").startswith("peter-evans/create-pull-request@")]
    assert pr["with"]["add-paths"] == "pixi.lock"
    assert pr["with"]["body-path"] == "${{ runner.temp }}/lock-diff.md" and "$RUNNER_TEMP/lock-diff.md" in runs
    assert "update-lock" in (project / "README.md").read_text()
