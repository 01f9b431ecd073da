"""Answers reach their files intact: validators match whole values, free text is escaped per file.

Issue 21: `$` in a validator matched before a trailing newline, and a description or
author with quotes, backslashes, `$` or `%` broke pixi.toml, the Dockerfile LABEL (where
Docker expands variables) and apptainer.def. Each file is read back by its own tool.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib

import pytest
import yaml

from maintainer.checks import run_checks
from maintainer.render import ROOT, load_answers, render

SLURM = {"batch_systems": ["htcondor", "slurm"]}
CUSTOM = {"container_registry": "custom"}
# Every validated answer, as a good value with a newline after it: each must be refused.
TRAILING_NEWLINE = [
    ("project_slug", "study", {}),
    ("author_email", "jane@example.org", {}),
    ("github_owner", "jane", {}),
    ("repository_name", "study", {}),
    ("registry_host", "registry.example.org", CUSTOM),
    ("cuda_version", "12.9", {}),
    ("pytorch_version", ">=2.7,<3", {}),
    ("pixi_version", "0.77.0", {}),
    ("condor_request_memory", "8GB", {}),
    ("condor_gpu_min_capability", "7.5", {}),
    ("osdf_path", "osdf:///chtc/staging/jane", {}),
    ("slurm_partition", "gpu", SLURM),
    ("slurm_account", "lab", SLURM),
    ("slurm_time", "01:00:00", SLURM),
    ("project_name", "Study", {}),
    ("description", "A study", {}),
    ("author_name", "Jane", {}),
]


@pytest.mark.parametrize(("question", "value", "context"), TRAILING_NEWLINE, ids=[q for q, _, _ in TRAILING_NEWLINE])
def test_a_trailing_newline_is_refused(tmp_path, question, value, context):
    with pytest.raises(ValueError):
        render(tmp_path / "p", {**context, question: value + "\n"})
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_the_trailing_newline_cases_accept_the_value_itself(tmp_path):
    answers = {**SLURM, **CUSTOM}
    answers.update({question: value for question, value, _ in TRAILING_NEWLINE})
    assert (render(tmp_path / "p", answers) / "pixi.toml").is_file()


HOSTILE_TEXT = {
    "description": 'A "quoted" back\\slash, $5 and $HOME at 50% \\ within',
    "author_name": 'Jane "JJ" O\\Neil $USER 100%',
    "author_email": '"jane$%\\"x"@example.org',
    "project_name": 'Study "$(whoami)" 100% \\',
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return render(tmp_path_factory.mktemp("hostile") / "p", {**load_answers("everything"), **HOSTILE_TEXT})


def test_pixi_toml_holds_the_answers_as_written(hostile):
    manifest = tomllib.loads((hostile / "pixi.toml").read_text())
    workspace = manifest.get("workspace") or manifest["project"]
    assert workspace["description"] == HOSTILE_TEXT["description"]
    assert workspace["authors"] == [f"{HOSTILE_TEXT['author_name']} <{HOSTILE_TEXT['author_email']}>"]


def test_the_dockerfile_label_is_escaped_and_parses(hostile):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed")
    result = subprocess.run([hadolint, "--failure-threshold", "warning", "Dockerfile"], cwd=hostile,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    # Docker's double-quoted LABEL values: \\ \" and \$ are the literal characters (no variable expanded).
    escaped = HOSTILE_TEXT["description"].replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    assert f'org.opencontainers.image.description="{escaped}" \\\n' in (hostile / "Dockerfile").read_text()


def test_apptainer_def_keeps_its_sections(hostile):
    parsers = pytest.importorskip("spython.main.parse.parsers")
    runtime = parsers.SingularityParser(str(hostile / "apptainer.def")).recipe["runtime"]
    # spython files %help under comments; the sections after it are still sections.
    assert f"# {HOSTILE_TEXT['description']}" in runtime.comments
    title, licenses = runtime.labels
    assert title == "org.opencontainers.image.title study-whoami-100" and licenses.endswith("licenses MIT")
    assert runtime.test


@pytest.mark.parametrize("path", ["osdf:///chtc/staging/$ENV(HOME)", 'osdf:///chtc/staging/a"b', "osdf:///a b"])
def test_an_osdf_path_with_macro_or_quote_characters_is_refused(tmp_path, path):
    with pytest.raises(ValueError, match="must start with osdf:///"):
        render(tmp_path / "p", {"osdf_path": path})


def test_a_description_starting_with_percent_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must not start with %"):
        render(tmp_path / "p", {"description": "%post rm -rf /"})


def test_a_description_ending_in_a_backslash_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must not end with a backslash"):
        render(tmp_path / "p", {"description": "A study \\"})


def test_pixi_checks_accept_the_hostile_answers(hostile):
    """pixi's manifest schema and the lesson's needs, on the manifest that holds the answers."""
    from tests.test_generated_files import assert_findings

    findings = run_checks(hostile, ["pixi"])
    assert findings
    assert_findings(findings)


def test_every_free_text_answer_with_a_validator_is_tried_with_a_newline():
    """A question added (or removed) in copier.yml must be added to (or removed from) the list above."""
    questions = yaml.safe_load((ROOT / "copier.yml").read_text())
    free_text = {
        name
        for name, question in questions.items()
        if isinstance(question, dict)
        and "validator" in question
        and question.get("type") == "str"
        and not question.get("choices")
    }
    assert free_text == {name for name, _, _ in TRAILING_NEWLINE}
