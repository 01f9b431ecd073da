"""`copier update` brings template changes and keeps the user's edits, without conflicts."""

from __future__ import annotations

import re
import shutil
import warnings

import copier

from maintainer.render import ROOT, git


def make_template_repo(path):
    path.mkdir()
    for name in ("copier.yml", "template", "includes"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, path / name)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "template v1")
    git(path, "tag", "v1")
    return path


def replace(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def copy_and_commit(template, project):
    """`copier copy` of the template's v1, committed as a researcher's first commit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(str(template), str(project), data={"project_name": "Study"}, defaults=True, unsafe=False)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start from the template")
    return project


def update(project):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_update(str(project), defaults=True, unsafe=False, overwrite=True, conflict="inline")


CONFLICT_MARKER = re.compile(r"^(<{7}|>{7})(?: |$)", re.MULTILINE)  # as git and Copier write them


def assert_no_conflicts(project):
    for path in project.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            text = path.read_text(errors="replace")
            assert not CONFLICT_MARKER.search(text), f"conflict markers in {path}"
    assert not list(project.rglob("*.rej"))


def test_update_keeps_user_edits_and_brings_template_fixes(tmp_path):
    template = make_template_repo(tmp_path / "template-repo")
    project = copy_and_commit(template, tmp_path / "study")
    assert "_commit: v1" in (project / ".copier-answers.yml").read_text()

    # The researcher's own edits: a dependency and a change to the training code.
    replace(project / "pixi.toml", "[feature.cpu.dependencies]\n", '[feature.cpu.dependencies]\nmatplotlib = ">=3.8"\n')
    replace(project / "src/torch_MNIST.py", "self.dropout2 = nn.Dropout(0.5)", "self.dropout2 = nn.Dropout(0.4)")
    git(project, "commit", "-q", "-am", "my edits")

    # A template fix elsewhere in the same files, released as v2.
    test_deps = "[feature.test.dependencies]\n"
    replace(template / "template/pixi.toml.jinja", test_deps, test_deps + 'hypothesis = ">=6"\n')
    replace(template / "template/src/torch_detect_GPU.py", 'print(f"PyTorch version:', 'print(f"PyTorch release:')
    replace(template / "template/README.md.jinja", "## Settings\n", "## Settings\n\nSettings live in pixi.toml.\n")
    git(template, "commit", "-q", "-am", "template v2")
    git(template, "tag", "v2")

    update(project)

    manifest = (project / "pixi.toml").read_text()
    assert 'matplotlib = ">=3.8"' in manifest, "the user's dependency was lost"
    assert 'hypothesis = ">=6"' in manifest, "the template's change did not arrive"
    training = (project / "src/torch_MNIST.py").read_text()
    assert "self.dropout2 = nn.Dropout(0.4)" in training, "the user's training change was lost"
    assert 'print(f"PyTorch release:' in (project / "src/torch_detect_GPU.py").read_text()
    assert "Settings live in pixi.toml." in (project / "README.md").read_text()
    assert "_commit: v2" in (project / ".copier-answers.yml").read_text()
    assert_no_conflicts(project)
