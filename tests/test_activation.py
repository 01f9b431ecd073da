"""The containers' activation works when sourced under `set -euo pipefail` (job scripts do)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

# What `pixi shell-hook --shell bash` prints (rattler_shell's bash: `export K="V"` lines, then
# `. "<script>"` for each activate.d script), and activate.d scripts in conda-forge's style:
# they back up variables that are unset in a fresh container and end on a test that fails.
SHELL_HOOK = """export PATH="/app/.pixi/envs/gpu/bin:${PATH}"
export CONDA_PREFIX="/app/.pixi/envs/gpu"
export PIXI_PROJECT_NAME="study"
export PIXI_ENVIRONMENT_NAME="gpu"
export CONDA_DEFAULT_ENV="study:gpu"
. "/app/.pixi/envs/gpu/etc/conda/activate.d/cuda-nvcc_activate.sh"
. "/app/.pixi/envs/gpu/etc/conda/activate.d/libxml2_activate.sh"
"""
ACTIVATE_D = {
    "cuda-nvcc_activate.sh": 'export CONDA_BACKUP_CUDA_HOME="$CUDA_HOME"\nexport CUDA_HOME="$CONDA_PREFIX"\n',
    "libxml2_activate.sh": '[ -n "$XML_CATALOG_FILES" ] && export xml_catalog_files_libxml2="$XML_CATALOG_FILES"\n',
}


def relocated(text: str, root: Path) -> str:
    return text.replace("/app/", f"{root}/app/")


def bash(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no CUDA_HOME, no XML_CATALOG_FILES
    return subprocess.run(["bash", *args, "-c", script], capture_output=True, text=True, env=env, check=False)


@pytest.fixture
def app(renderings, tmp_path) -> Path:
    """/app as the images lay it out (shell-hook.sh, activate.sh, entrypoint.sh), under tmp_path."""
    project = renderings["everything"]
    for name, body in ACTIVATE_D.items():
        script = tmp_path / "app/.pixi/envs/gpu/etc/conda/activate.d" / name
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(relocated(body, tmp_path))
    (tmp_path / "app/shell-hook.sh").write_text(relocated(SHELL_HOOK, tmp_path))
    for name in ("activate.sh", "entrypoint.sh"):
        source = project / "container" / name
        assert source.is_file(), f"container/{name} is not rendered"
        (tmp_path / "app" / name).write_text(relocated(source.read_text(), tmp_path))
        shutil.copymode(source, tmp_path / "app" / name)
    return tmp_path / "app"


def test_the_fixture_breaks_plain_strict_sourcing(app):
    """Sourcing pixi's hook directly under strict mode fails: the fixture is a real hazard."""
    result = bash(f'set -euo pipefail; . "{app}/shell-hook.sh"; echo activated')
    assert result.returncode != 0 and "activated" not in result.stdout
    assert "unbound variable" in result.stderr


def test_activate_sh_sources_under_strict_mode_and_keeps_it(app):
    script = f"""set -euo pipefail
. "{app}/activate.sh"
echo "prefix=$CONDA_PREFIX cuda_home=$CUDA_HOME flags=$-"
"""
    result = bash(script)
    assert result.returncode == 0, result.stderr
    assert f"prefix={app}/.pixi/envs/gpu cuda_home={app}/.pixi/envs/gpu" in result.stdout
    flags = result.stdout.rsplit("flags=", 1)[1]
    assert "e" in flags and "u" in flags, "the caller's strict mode must be restored"


def test_activate_sh_leaves_a_lenient_caller_lenient(app):
    result = bash(f'. "{app}/activate.sh"; echo "flags=$-"; echo "$NOT_SET_ANYWHERE" done')
    assert result.returncode == 0, result.stderr
    assert "u" not in result.stdout.split("flags=", 1)[1].splitlines()[0]


@pytest.mark.parametrize("shell_flags", [[], ["-u"], ["-eu"]], ids=["plain", "bash-u", "bash-eu"])
def test_entrypoint_activates_and_runs_the_command(app, shell_flags):
    result = subprocess.run(
        ["bash", *shell_flags, str(app / "entrypoint.sh"), "printenv", "CUDA_HOME"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{app}/.pixi/envs/gpu"


@pytest.mark.parametrize("recipe", ["Dockerfile", "apptainer.def"])
def test_images_write_the_hook_where_activate_sh_reads_it(renderings, recipe):
    project = renderings["everything"]
    hook = re.search(r'^\. "?(/app/[^"\s]+)', (project / "container/activate.sh").read_text(), re.M).group(1)
    text = (project / recipe).read_text()
    assert re.search(rf"pixi shell-hook .*> {re.escape(hook)}(\s|$)", text, re.M), f"{recipe} must write {hook}"
    # The runtime stage receives the hook and the wrapper beside the entrypoint.
    runtime = text.split("runtime", 1)[1]
    assert hook in runtime and "/app/activate.sh" in runtime
