"""The shape of the code a researcher reads first."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAINING = ROOT / "template" / "src" / "torch_MNIST.py"


def test_the_training_script_reads_like_the_lesson():
    """Model, data, one epoch, evaluation and a short main loop; machinery lives beside it."""
    text = TRAINING.read_text()
    assert len(text.splitlines()) <= 250, f"{TRAINING.name} has {len(text.splitlines())} lines; keep it at most 250"
    order = [text.index(name) for name in ("class Net", "def to_device", "def train_epoch", "def evaluate", "def main")]
    assert order == sorted(order), "the script should read: model, data, training epoch, evaluation, main"


def test_quick_project_tests_by_default_and_every_test_in_ci(renderings):
    """`pixi run test` leaves out the tests marked slow; `test-all`, the project's CI and the
    template's own check of a rendering (maintainer/checks.py: plain `pytest tests`) run them."""
    import inspect
    import tomllib

    from maintainer import checks

    project = renderings["defaults"]
    tasks = tomllib.loads((project / "pixi.toml").read_text())["feature"]["test"]["tasks"]
    assert tasks["test"]["cmd"] == "pytest tests -m 'not slow'" and tasks["test-all"]["cmd"] == "pytest tests"
    workflow = (project / ".github" / "workflows" / "tests.yml").read_text()
    assert "test-all" in workflow and "run --environment default test\n" not in workflow
    slow = [p.name for p in (project / "tests").glob("test_*.py") if "@pytest.mark.slow" in p.read_text()]
    assert "test_checkpoint.py" in slow
    assert '"tests"]' in inspect.getsource(checks.check_project_tests) and "not slow" not in inspect.getsource(checks)


FUNCTION_LIMIT = 60
CODE = ("template", "maintainer", "tasks.py", "noxfile.py")


def long_functions(root: Path = ROOT, limit: int = FUNCTION_LIMIT) -> list[str]:
    """Every function (method, nested function) in CODE longer than ``limit`` lines, from `def` to its end."""
    import ast

    files = []
    for name in CODE:
        path = root / name
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length})")
    return found


def test_no_function_is_longer_than_60_lines():
    assert long_functions() == [], "split these into functions that each do one thing"


def test_the_length_check_sees_methods_and_nested_functions(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(60))
    (tmp_path / "maintainer").mkdir()
    (tmp_path / "maintainer" / "m.py").write_text(f"class C:\n    def method(self):\n{body}\n")
    (tmp_path / "tasks.py").write_text("def short():\n    pass\n")
    assert long_functions(tmp_path) == ["maintainer/m.py:2 method (61)"]


CHECKS_IN_A_FRESH_PROCESS = """
import json, sys
from pathlib import Path
from maintainer.checks import run_checks
from maintainer.project import write_data_tarball
project = Path(sys.argv[1]).resolve()
findings = run_checks(project, ["htcondor"])
write_data_tarball(project).unlink()
files = {name: Path(getattr(module, "__file__", None) or "/") for name, module in list(sys.modules.items())}
loaded = [name for name, path in files.items() if project in path.parents]
print(json.dumps({"findings": [f.line() for f in findings if not f.ok and not f.skipped], "loaded": loaded}))
"""


def test_the_maintainer_side_imports_no_rendered_tasks(renderings):
    """The checks read submit files with the tasks' one bindings call and size reader, and the
    journey writes its data with src/tiny_mnist.py, all reached in the template where they are
    written once: no module of a rendered project is imported into the maintainer's process."""
    import json
    import subprocess
    import sys

    project = renderings["defaults"]
    result = subprocess.run(
        [sys.executable, "-c", CHECKS_IN_A_FRESH_PROCESS, str(project)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer == {"findings": [], "loaded": []}
    for path in sorted((ROOT / "maintainer").glob("*.py")):
        assert "project_tasks" not in path.read_text(), f"maintainer/{path.name} imports a rendered project's tasks"


def test_the_maintainer_side_runs_programs_in_one_place():
    """One lookup and one call of other programs for the checks, the journey, rendering and
    releases (maintainer/commands.py); the project's tasks, shipped to users, keep theirs in
    tasks/helpers.py."""
    callers = [
        path.name
        for path in sorted((ROOT / "maintainer").glob("*.py"))
        if any(call in path.read_text() for call in ("subprocess.run(", "shutil.which(", "subprocess.Popen("))
    ]
    assert callers == ["commands.py"]
