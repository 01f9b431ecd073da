"""The template's own tasks.py (not the generated project's tasks/): render, check and release."""

from __future__ import annotations

from invoke import Context

import tasks as maintainer_tasks
from maintainer import checks
from maintainer.render import ROOT
from tests.services import run_invoke


def invoke(*args):
    return run_invoke(ROOT, *args)


def test_render_then_check(tmp_path):
    target = tmp_path / "cpu"
    result = invoke("render", "--preset", "cpu-linux", "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert (target / "pixi.toml").is_file()
    result = invoke("check", str(target), "--only", "pixi,python")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("ok") and "pixi.toml" in line and "lesson semantics" in line for line in lines)
    # pixi's schema travels with the repository (reference/): no row is skipped.
    assert lines[-1].endswith("0 failed, 0 skipped")


def test_check_fails_on_a_broken_rendering(tmp_path):
    target = tmp_path / "cpu"
    invoke("render", "--preset", "cpu-linux", "--output", str(target))
    (target / "pixi.toml").write_text((target / "pixi.toml").read_text().replace("[dependencies]", "[dependencies"))
    result = invoke("check", str(target), "--only", "pixi")
    assert result.returncode != 0
    assert result.stdout.splitlines()[0] == f"checking {target}: pixi (each line as its tool finishes)"
    assert result.stdout.splitlines()[1].split()[:3] == ["FAIL", "pixi.toml", "TOML"]
    assert result.stdout.splitlines()[-1] == "0 ok, 1 failed, 0 skipped"
    assert result.stderr.strip() == f"1 check(s) failed in {target}."


def test_bad_input_is_one_sentence_and_writes_nothing(tmp_path):
    result = invoke("render", "--preset", "no-such-preset", "--output", str(tmp_path / "x"))
    assert result.returncode != 0 and "neither an answers file nor a preset" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    answers = tmp_path / "answers.yml"
    answers.write_text("author_email: not-an-address\n")
    result = invoke("render", "--answers", str(answers), "--output", str(tmp_path / "y"))
    assert result.returncode != 0 and "is not an e-mail address" in result.stderr
    assert not (tmp_path / "y").exists() or not any((tmp_path / "y").iterdir())
    result = invoke("check", str(tmp_path / "nowhere"))
    assert result.returncode != 0
    assert result.stderr.strip() == f"{tmp_path / 'nowhere'} is not a rendered project; run `invoke render` first."
    assert invoke("render", "--preset", "cpu-linux", "--output", str(tmp_path / "z")).returncode == 0
    result = invoke("check", str(tmp_path / "z"), "--only", "nonsense")
    assert result.returncode != 0
    assert result.stderr.strip().startswith("unknown check(s) nonsense; choose from pixi, docker,")
    result = invoke("release", "1.2")
    assert result.returncode != 0 and result.stderr.strip() == "'1.2' is not a version like 1.2.0."
    assert "Traceback" not in result.stderr


def test_check_prints_each_result_as_its_check_finishes(tmp_path, monkeypatch, capsys):
    """The slow checks take minutes: the fast ones' lines are out before those start."""
    (tmp_path / "pixi.toml").touch()
    seen_before_second = []

    def second(project):
        seen_before_second.append(capsys.readouterr().out)
        return [checks.Finding("b.txt", "second tool", True)]

    monkeypatch.setitem(checks.CHECKS, "first", lambda project: [checks.Finding("a.txt", "first tool", True)])
    monkeypatch.setitem(checks.CHECKS, "second", second)
    maintainer_tasks.check.body(Context(), str(tmp_path), only="first,second")
    (earlier,) = seen_before_second
    header = f"checking {tmp_path}: first, second (each line as its tool finishes)"
    assert earlier.splitlines() == [header, checks.Finding("a.txt", "first tool", True).line()]
    assert capsys.readouterr().out.splitlines()[-1] == "2 ok, 0 failed, 0 skipped"
