"""Each check turns red when the file it checks is broken (so a green check means something)."""

from __future__ import annotations

import re

import pytest

from maintainer.checks import run_checks


def edit(path, old, new, count=1):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def failures(project, check):
    findings = run_checks(project, [check])
    skipped = [f"{f.tool}: {f.detail}" for f in findings if f.skipped]
    if skipped:
        pytest.skip("; ".join(skipped))
    return [f for f in findings if not f.ok]


BREAKAGES = {
    "toml-syntax": ("pixi", "pixi.toml", "[dependencies]", "[dependencies", "TOML 1.0"),
    "pixi-schema": ("pixi", "pixi.toml", 'channels = ["conda-forge"]', 'channel = ["conda-forge"]', "pixi JSON schema"),
    "pixi-deprecated-cuda": (
        "pixi",
        "pixi.toml",
        "[dependencies]",
        '[system-requirements]\ncuda = "12"\n\n[dependencies]',
        "lesson semantics",
    ),
    "gpu-on-all-platforms": (
        "pixi",
        "pixi.toml",
        'platforms = ["linux-64-cuda"]',
        'platforms = ["osx-arm64"]',
        "lesson semantics",
    ),
    "hadolint": (
        "docker",
        "Dockerfile",
        "WORKDIR /app\nENTRYPOINT",
        "RUN apt-get update && apt-get install -y curl\nWORKDIR /app\nENTRYPOINT",
        "hadolint",
    ),
    "buildkit-only": (
        "docker",
        "Dockerfile",
        "COPY src/ /app/src/",
        "COPY --chmod=0755 src/ /app/src/",
        "classic-builder layout",
    ),
    "src-before-install": (
        "docker",
        "Dockerfile",
        "COPY pixi.toml pixi.lock ./",
        "COPY src/ /app/src/\nCOPY pixi.toml pixi.lock ./",
        "classic-builder layout",
    ),
    "apptainer-no-test": ("apptainer", "apptainer.def", "%test\n", "%nottest\n", "spython"),
    "actionlint": (
        "workflows",
        ".github/workflows/tests.yml",
        "runs-on: ${{ matrix.os }}",
        "runs-on: ${{ matrix.nope }}",
        "actionlint",
    ),
    "workflow-schema": ("workflows", ".github/workflows/tests.yml", "jobs:", "jobz:", "check-jsonschema"),
    "zizmor-injection": (
        "workflows",
        ".github/workflows/tests.yml",
        "run: pixi run",
        'run: echo "${{ github.event.pull_request.title }}" && pixi run',
        "zizmor",
    ),
    "shellcheck": (
        "shell",
        "htcondor/train.sh",
        "python src/fetch_data.py --no-download --extract .",
        "python src/fetch_data.py --no-download --extract $(ls -d .)",
        "shellcheck",
    ),
    "ruff": ("python", "src/torch_MNIST.py", "import argparse\n", "import argparse\nimport pickle\n", "ruff"),
    "condor-latest": (
        "htcondor",
        "htcondor/docker.sub",
        ":unset-run-invoke-submit-condor\n",
        ":latest\n",
        "htcondor",
    ),
    "condor-two-requirements": (
        "htcondor",
        "htcondor/docker.sub",
        "request_cpus = 1",
        'requirements = (Arch == "X86_64")\nrequest_cpus = 1',
        "htcondor",
    ),
    "condor-second-requirements-other-case": (
        "htcondor",
        "htcondor/apptainer.sub",
        "request_cpus = 1",
        'Requirements = (Arch == "X86_64")\nrequest_cpus = 1',
        "htcondor",
    ),
    "condor-memory-not-a-size": (
        "htcondor",
        "htcondor/docker.sub",
        "request_memory = min({$(memory_cap_mb), $(memory_mb) * pow(2, $(memory_holds))})",
        "request_memory = eight gigabytes",
        "htcondor",
    ),
    "condor-disk-without-unit": (
        "htcondor",
        "htcondor/docker.sub",
        "request_disk = 4GB",
        "request_disk = 20",
        "htcondor",
    ),
    "condor-streamed-into-a-job-directory": (
        "htcondor",
        "htcondor/docker.sub",
        "request_cpus = 1",
        "stream_output = true\nrequest_cpus = 1",
        "htcondor",
    ),
    "condor-no-queue": (
        "htcondor",
        "htcondor/docker.sub",
        "\nqueue train_args from",
        "\n# train_args from",
        "htcondor",
    ),
    "condor-second-queue": (
        "htcondor",
        "htcondor/pixi-pack.sub",
        "\nqueue train_args from $(train_args_file)",
        "\nqueue train_args from $(train_args_file)\nQueue 2",
        "htcondor",
    ),
    "buildkit-only-chmod-after-from": (
        "docker",
        "Dockerfile",
        "COPY --from=build /app/shell-hook.sh",
        "COPY --from=build --chmod=0755 /app/shell-hook.sh",
        "classic-builder layout",
    ),
    "buildkit-only-chmod-before-from": (
        "docker",
        "Dockerfile",
        "COPY --from=build /app/shell-hook.sh",
        "COPY --chmod=0755 --from=build /app/shell-hook.sh",
        "classic-builder layout",
    ),
    "cpu-feature-on-the-cuda-platform": (
        "pixi",
        "pixi.toml",
        '[feature.cpu]\nplatforms = ["linux-64", "osx-arm64", "win-64", "linux-aarch64"]\n',
        "",
        "lesson semantics",
    ),
    "unpinned-action": (
        "workflows",
        ".github/workflows/docker.yml",
        "docker/login-action@4907a6ddec9925e35a0a9e82d7399ccc52663121  # v4.1.0",
        "docker/login-action@v4",
        "zizmor",
    ),
    "condor-no-gpus": ("htcondor", "htcondor/pixi-pack.sub", "request_gpus = 1", "request_gpus = 0", "htcondor"),
    "condor-gpus": ("htcondor", "htcondor/pixi-pack.sub", "request_gpus = 1", "request_gpus = 2", "htcondor"),
    "condor-no-model": (
        "htcondor",
        "htcondor/docker.sub",
        "transfer_output_files = mnist_cnn.pt, metrics.json",
        "transfer_output_files = metrics.json",
        "htcondor",
    ),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_breaking_a_file_turns_its_check_red(copy_of, case):
    check, path, old, new, tool = BREAKAGES[case]
    project = copy_of("everything")
    assert not failures(project, check), "the unbroken rendering must pass first"
    edit(project / path, old, new)
    failed = failures(project, check)
    assert failed, f"{case}: the {check} check stayed green"
    assert any(tool in f.tool for f in failed), [f.line() for f in failed]


def test_broken_training_code_fails_the_project_tests(copy_of):
    project = copy_of("cpu-linux")
    # An off-by-one in the IDX header arithmetic must be caught by the project's tests.
    edit(project / "src/mnist_idx.py", "header = 4 + 4 * ndim", "header = 4 + 4 * ndim + 1")
    failed = failures(project, "tests")
    assert failed and re.search(r"\d+ failed", failed[0].detail)
