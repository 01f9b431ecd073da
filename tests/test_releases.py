"""`invoke release X.Y.Z`: semantic-version tags that `copier update` offers, each with its CHANGELOG section."""

from __future__ import annotations

import warnings

import copier
import pytest
import yaml

from maintainer.release import changelog_section, parse, released
from maintainer.render import ROOT, git
from tests.project_helpers import clone_with_working_tree
from tests.services import run_invoke

WORKING_TREE = ("tasks.py", "maintainer", "CHANGELOG.md", "copier.yml", "template", "includes")


@pytest.fixture
def clone(tmp_path):
    """A clone of this repository with the working tree committed on top, as a maintainer's checkout."""
    path = clone_with_working_tree(tmp_path / "template", WORKING_TREE)
    git(path, "config", "user.name", "Template Maintainer")
    git(path, "config", "user.email", "maintainer@example.org")
    return path


def next_major(path) -> str:
    """A version newer than every release in ``path`` (the clone may hold real tags) and absent from CHANGELOG.md."""
    last = released(path)
    return f"{(parse(last[-1])[0] if last else 0) + 100}.0.0"


def add_changelog_section(path, version: str, body: str = "### What you must do\n\nNothing.") -> None:
    changelog = path / "CHANGELOG.md"
    text = changelog.read_text()
    changelog.write_text(text.replace("## Unreleased\n", f"## Unreleased\n\n## {version} — 2026-12-24\n\n{body}\n", 1))
    git(path, "commit", "-q", "-am", f"CHANGELOG: {version}")


def release(path, *args):
    result = run_invoke(path, "release", *args)
    assert "Traceback" not in result.stderr
    return result


def test_the_changelog_has_a_section_for_every_release():
    for version in released(ROOT):
        assert changelog_section(ROOT, version), f"CHANGELOG.md has no section for the release {version}"
    assert "What you must do" in changelog_section(ROOT, "1.0.0")


@pytest.mark.parametrize("version", ["1.2", "v1.2.0", "01.2.0", "1.2.0-rc1", "1.2.0.1"])
def test_release_refuses_a_version_that_is_not_semver(clone, version):
    result = release(clone, version)
    assert result.returncode != 0 and result.stderr.strip() == f"'{version}' is not a version like 1.2.0."
    assert git(clone, "tag", "--list", "v*") == git(ROOT, "tag", "--list", "v*")


def test_release_refuses_a_dirty_tree_and_a_missing_changelog_section(clone):
    version = next_major(clone)
    (clone / "copier.yml").write_text((clone / "copier.yml").read_text() + "# an uncommitted edit\n")
    result = release(clone, version)
    assert result.returncode != 0
    assert result.stderr.strip() == "the working tree has uncommitted changes; commit them before tagging a release."
    git(clone, "checkout", "-q", "--", "copier.yml")
    result = release(clone, version)
    assert result.returncode != 0
    assert result.stderr.strip().startswith(f"CHANGELOG.md has no section for {version}; add `## {version}`")
    assert f"v{version}" not in git(clone, "tag", "--list").split()


def test_release_tags_the_changelog_section_and_copier_offers_it(clone, tmp_path):
    version = next_major(clone)
    add_changelog_section(clone, version, "### What you must do\n\nRename your sweep file.")
    result = release(clone, version)
    assert result.returncode == 0, result.stderr
    assert git(clone, "cat-file", "-t", f"v{version}").strip() == "tag"  # annotated
    message = git(clone, "tag", "--list", "--format=%(contents)", f"v{version}")
    assert message.startswith(f"Template release {version}") and "Rename your sweep file." in message
    assert "Template Maintainer" in git(clone, "tag", "--list", "--format=%(taggername)", f"v{version}")
    # Copier offers the newest tag: a fresh copy records it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(str(clone), str(tmp_path / "study"), defaults=True, unsafe=False, quiet=True)
    answers = yaml.safe_load((tmp_path / "study/.copier-answers.yml").read_text())
    assert answers["_commit"] == f"v{version}"
    # The same version again, or an older one, is refused.
    for again in (version, "0.0.1"):
        result = release(clone, again)
        assert result.returncode != 0
        refusal = f"{again} is not newer than the last release {version}; choose a greater version."
        assert result.stderr.strip() == refusal
