"""Invoke tasks for this project: lock, build, test, push, pack and submit.

`invoke --list` (or `pixi run -e tasks invoke --list`) shows them and `invoke --help TASK`
a task's flags. Every module of this package is collected: a task defined in any of them,
your own `local.py` included, is listed without registering it anywhere. Settings come
from `[tool.invoke-tasks]` in pixi.toml, read on first use (importing reads nothing), and
from Invoke's configuration (settings.py says how). A module for one system (HTCondor,
SLURM, Docker, Apptainer) names the project files that show the project uses it
(USED_WITH); its tasks are listed only where those exist.

The modules other than local.py come from the project template: `copier update`
refreshes them. Put your own tasks in local.py, which updates never touch.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from invoke import Collection, Exit, Task, task

from .settings import invoke_configuration

PROJECT = Path(__file__).resolve().parent.parent
# Why a module could not be collected (a user's broken module, a task defined twice): said in
# one sentence when a task runs, so importing this package never exits.
PROBLEMS: list[str] = []


def _used_here(module) -> bool:
    """A module for one system (USED_WITH, e.g. "slurm") is listed where the project has its files."""
    paths = getattr(module, "USED_WITH", ())
    return not paths or any((PROJECT / path).exists() for path in paths)


@task
def _no_problems(c):
    if PROBLEMS:
        raise Exit(PROBLEMS[0])


def _collect() -> Collection:
    namespace = Collection()
    owners: dict[str, str] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        name = f"{__name__}.{module_info.name}"
        try:
            module = importlib.import_module(name)
        except Exception as error:  # a user's broken module: one sentence, not a traceback
            PROBLEMS.append(
                f"tasks/{module_info.name}.py cannot be imported ({type(error).__name__}: {error}); fix it."
            )
            continue
        if not _used_here(module):
            continue
        for value in vars(module).values():
            if not isinstance(value, Task) or value.body.__module__ != name:
                continue  # tasks imported from another module are listed there
            task_name = value.name or value.body.__name__.replace("_", "-")
            if task_name in owners:
                PROBLEMS.append(
                    f"the task {task_name!r} is defined twice (tasks/{owners[task_name]}.py and "
                    f"tasks/{module_info.name}.py); rename one of them."
                )
                continue
            owners[task_name] = module_info.name
            value.pre = [_no_problems, *(t for t in value.pre if t is not _no_problems)]
            namespace.add_task(value)
    return namespace


ns = _collect()
# Declares the settings to Invoke, which then layers invoke.yaml, INVOKE_PROJECT_* and -f over them.
ns.configure(invoke_configuration())
