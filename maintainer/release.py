"""Releases of the template: vX.Y.Z tags that `copier update` offers, each with its CHANGELOG section.

Copier picks the newest tag by PEP 440 order and records it as the project's `_commit`;
the CHANGELOG section of a version says what changed for a generated project and what a
user must do, and becomes the tag's message.
"""

from __future__ import annotations

import re
from pathlib import Path

from maintainer.commands import run
from maintainer.render import git

# Semantic versioning 2.0.0, core only (https://semver.org/#spec-item-2): no leading zeros.
SEMVER = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
CHANGELOG = "CHANGELOG.md"


def parse(version: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of X.Y.Z, or None for anything else."""
    match = SEMVER.fullmatch(version)
    return tuple(int(part) for part in match.groups()) if match else None  # type: ignore[return-value]


def released(root: Path) -> list[str]:
    """The versions already tagged vX.Y.Z, oldest first."""
    tags = git(root, "tag", "--list", "v*").split()
    versions = [tag[1:] for tag in tags if parse(tag[1:])]
    return sorted(versions, key=parse)


def changelog_section(root: Path, version: str) -> str:
    """The text under CHANGELOG.md's `## X.Y.Z` heading, up to the next `## ` ('' without one)."""
    path = root / CHANGELOG
    if not path.is_file():
        return ""
    text = path.read_text()
    heading = re.search(rf"^## \[?v?{re.escape(version)}\]?(?:[ \t].*)?$", text, re.MULTILINE)
    if not heading:
        return ""
    rest = text[heading.end() :]
    following = re.search(r"^## ", rest, re.MULTILINE)
    return rest[: following.start() if following else len(rest)].strip()


def release_problem(root: Path, version: str) -> str | None:
    """Why ``version`` cannot be released from ``root`` now, in one sentence; None when it can."""
    if parse(version) is None:
        return f"'{version}' is not a version like 1.2.0."
    if git(root, "status", "--porcelain").strip():
        return "the working tree has uncommitted changes; commit them before tagging a release."
    earlier = released(root)
    if earlier and parse(version) <= parse(earlier[-1]):
        return f"{version} is not newer than the last release {earlier[-1]}; choose a greater version."
    if not changelog_section(root, version):
        return (
            f"{CHANGELOG} has no section for {version}; add `## {version}` saying what changed for a "
            "generated project and what a user must do, commit it, then release."
        )
    return None


def tag(root: Path, version: str) -> None:
    """Create the annotated tag vX.Y.Z (as the maintainer's git identity), its CHANGELOG section as message."""
    message = f"Template release {version}\n\n{changelog_section(root, version)}\n"
    result = run(["git", "tag", "-a", f"v{version}", "-F", "-"], cwd=root, input=message)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip())
