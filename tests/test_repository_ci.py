"""The template repository's own CI workflow passes the checks its generated workflows pass."""

from __future__ import annotations

from maintainer.checks import check_workflows
from maintainer.render import ROOT
from tests.test_generated_files import assert_findings


def test_repository_workflows_pass_actionlint_schema_and_zizmor():
    findings = check_workflows(ROOT)
    assert {f.file for f in findings} >= {".github/workflows/ci.yml", ".github/"}
    assert_findings(findings)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m pytest -v -rs" in readme and "python3 -m pytest -v -rs" in ci_run
    assert "bash .ci/run" in (ROOT / ".github" / "workflows" / "ci.yml").read_text()
