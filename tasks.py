"""Maintainer tasks for the template itself (not the generated project's tasks.py).

invoke render --preset everything     # render into build/everything
invoke check build/everything         # every consuming tool, one line per file
invoke release 1.2.0                  # tag what `copier update` will offer
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from invoke import Exit, task

from maintainer.base_image import NETWORK_CHECKS
from maintainer.checks import CHECKS, iter_findings
from maintainer.release import release_problem, tag
from maintainer.render import ROOT, load_answers, preset_names, render_fresh

BUILD = ROOT / "build"


@task(
    help={
        "preset": f"answer preset: {', '.join(preset_names())} (default: defaults)",
        "answers": "a YAML answers file instead of a preset (e.g. a project's .copier-answers.yml)",
        "output": "destination directory (default: build/<preset or file stem>)",
    }
)
def render(c, preset: str = "defaults", answers: str = "", output: str = ""):
    """Render the template (working tree, uncommitted edits included) into build/."""
    source = answers or preset
    try:
        data = load_answers(source)
    except FileNotFoundError as error:
        raise Exit(str(error)) from None
    destination = Path(output) if output else BUILD / Path(source).stem.lstrip(".")
    started = time.perf_counter()
    try:
        render_fresh(destination, data)
    except ValueError as error:  # copier's validators speak in sentences
        raise Exit(f"the answers were rejected: {error}") from None
    print(f"rendered {destination} in {time.perf_counter() - started:.2f} s")


@task(
    help={
        "path": "a rendered project, e.g. build/defaults",
        "only": f"run only these checks, comma-separated: {', '.join([*CHECKS, *NETWORK_CHECKS])}",
    }
)
def check(c, path: str, only: str = ""):
    """Check a rendered project with every consuming tool; one line per file and tool.

    The network check (base-image: does the registry publish the pixi base image?) runs only
    when named in --only; offline it is skipped with the reason (RMT_NETWORK_CHECKS=required
    makes that a failure, as in the template's CI).
    """
    project = Path(path)
    if not (project / "pixi.toml").is_file():
        raise Exit(f"{project} is not a rendered project; run `invoke render` first.")
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = set(names) - set(CHECKS) - set(NETWORK_CHECKS)
    if unknown:
        choices = ", ".join([*CHECKS, *NETWORK_CHECKS])
        raise Exit(f"unknown check(s) {', '.join(sorted(unknown))}; choose from {choices}.")
    offline = [n for n in names if n in CHECKS] if names else list(CHECKS)
    network = [n for n in names if n in NETWORK_CHECKS]
    print(f"checking {project}: {', '.join(offline + network)} (each line as its tool finishes)", flush=True)
    findings = []
    for finding in itertools.chain(
        iter_findings(project, offline) if offline else [], *(NETWORK_CHECKS[n](project) for n in network)
    ):
        print(finding.line(), flush=True)
        findings.append(finding)
    if not names:
        print(f"(network checks not run: {', '.join(NETWORK_CHECKS)}; name them in --only to ask the registry)")
    failed = [f for f in findings if not f.ok and not f.skipped]
    skipped = [f for f in findings if f.skipped]
    print(f"{len(findings) - len(failed) - len(skipped)} ok, {len(failed)} failed, {len(skipped)} skipped")
    if failed:
        raise Exit(f"{len(failed)} check(s) failed in {project}.")


@task(help={"version": "the version to tag, e.g. 1.2.0", "push": "also push the tag to origin"})
def release(c, version: str, push: bool = False):
    """Tag the template version that `copier update` will offer (vX.Y.Z, its CHANGELOG section as message)."""
    problem = release_problem(ROOT, version)
    if problem:
        raise Exit(problem)
    try:
        tag(ROOT, version)
    except RuntimeError as error:
        raise Exit(f"could not create the tag v{version}: {error}") from None
    if push:
        c.run(f"git push origin v{version}")
    print(f"tagged v{version}; projects get it with `copier update` (or `copier update --vcs-ref v{version}`)")
