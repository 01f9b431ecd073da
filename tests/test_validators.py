"""Bad answers: each validator rejects its value with a sentence, and nothing is rendered."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from maintainer.render import render

ROOT = Path(__file__).resolve().parents[1]

BAD_ANSWERS = [
    ("project_name", "   ", "must not be empty"),
    ("project_name", "Two\nLines", "must be one line"),
    ("project_slug", "My Study", "must start with a lowercase letter"),
    ("project_slug", "study--2", "single dashes"),
    ("description", "two\nlines", "one non-empty line"),
    ("author_email", "jane.example.org", "is not an e-mail address"),
    ("github_owner", "-bad-", "single inner dashes"),
    ("repository_name", "has space", "may hold only letters"),
    ("cuda_version", "12", "must be major.minor"),
    ("cuda_version", "10.2", "conda-forge has no CUDA 11 \\(or older\\) PyTorch builds"),
    ("cuda_version", "11.8", "conda-forge has no CUDA 11 \\(or older\\) PyTorch builds"),
    ("pytorch_version", "latest", "must be a version spec"),
    ("pixi_version", "0.77", "full release number"),
    ("pixi_version", "0.70.0", "0.72.1 or newer"),
    ("pixi_version", "0.71.0", "0.72.1 or newer"),
    ("pixi_version", "0.72.0", "0.72.1 or newer"),
    ("condor_request_memory", "8 gigs", "is not a size HTCondor reads"),
    ("condor_request_memory", "8GiB", "is not a size HTCondor reads"),
    ("condor_request_memory", "8", "has no unit, which HTCondor reads as 8 MB; write the unit, e.g.\n?\\s*8GB"),
    ("condor_request_memory", "0GB", "asks for no memory"),
    ("condor_request_gpus", 0, "so ask for 1: more would sit idle"),
    ("condor_request_gpus", 2, "Training uses one GPU"),
    ("condor_gpu_min_capability", "sm_75", "must look like 7.5"),
    ("osdf_path", "/staging/me/", "must start with osdf:///"),
    ("platforms", [], "at least one platform"),
]


@pytest.mark.parametrize(("question", "value", "sentence"), BAD_ANSWERS, ids=lambda v: str(v)[:20])
def test_validator_rejects(tmp_path, question, value, sentence):
    destination = tmp_path / "project"
    with pytest.raises(ValueError, match=sentence):
        render(destination, {question: value})
    assert not destination.exists() or not any(destination.iterdir())


@pytest.mark.parametrize(
    ("answers", "sentence"),
    [
        ({"gpu": True, "platforms": ["osx-arm64"]}, "needs linux-64"),
        ({"gpu": False, "platforms": ["osx-arm64", "win-64"]}, "Containers need linux-64 or linux-aarch64"),
        (
            {"gpu": False, "platforms": ["osx-arm64"], "container_formats": [], "batch_systems": ["slurm"]},
            "Batch jobs need linux-64 or linux-aarch64",
        ),
        ({"container_registry": "custom", "registry_host": "https://reg.example.org/"}, "without a scheme"),
        ({"batch_systems": ["slurm"], "slurm_time": "90 minutes"}, "must look like 01:00:00"),
        ({"batch_systems": ["slurm"], "slurm_partition": "gpu queue"}, "may hold only"),
    ],
    ids=[
        "gpu-without-linux",
        "containers-without-linux",
        "batch-without-linux",
        "registry-with-scheme",
        "slurm-time",
        "slurm-partition",
    ],
)
def test_dependent_validators(tmp_path, answers, sentence):
    with pytest.raises(ValueError, match=sentence):
        render(tmp_path / "project", answers)
    assert not (tmp_path / "project").exists() or not any((tmp_path / "project").iterdir())


def test_derived_defaults(tmp_path):
    project = render(tmp_path / "p", {"project_name": "Deep Dive: MNIST (v2)", "github_owner": "Big-Lab"})
    text = (project / "pixi.toml").read_text()
    assert 'name = "deep-dive-mnist-v2"' in text
    assert 'image = "ghcr.io/big-lab/deep-dive-mnist-v2"' in text


@pytest.mark.parametrize(
    ("version", "question"), [("0.72.1", "pixi_version"), ("0.100.0", "pixi_version"), ("12.0", "cuda_version")]
)
def test_the_lowest_accepted_versions_render(tmp_path, version, question):
    project = render(tmp_path / "p", {question: version})
    if question == "pixi_version":
        assert f'requires-pixi = ">={version}"' in (project / "pixi.toml").read_text()


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Étude de Réseaux", "etude-de-reseaux"),
        ("Straße über Ærø", "strasse-uber-aero"),
        ("Cafe\u0301 Łódź", "cafe-lodz"),  # a combining accent, and letters outside Latin-1
    ],
)
def test_accents_are_transliterated_in_the_slug(tmp_path, name, slug):
    project = render(tmp_path / "p", {"project_name": name})
    assert f'name = "{slug}"' in (project / "pixi.toml").read_text()


# What condor_submit 24.0 makes of request_memory / request_disk values, read with the real
# bindings below; the template's size reader (tasks/sizes.py) must agree on every one.
SIZES = ["8GB", "8 GB", "8g", "8gb", "8Gb", "8.5GB", ".5GB", "8.GB", "8KB", "8K", "8TB", "8MB", "8 M ", "2048M"]
NOT_SIZES = ["8GiB", "8 GiB", "8B", "8 gigs", "lots", "8e3", "1024*8", "8PB", "8 G B"]


def _bindings_read(value: str, command: str):
    htcondor = pytest.importorskip("htcondor")
    try:
        (ad,) = htcondor.Submit(f"executable = /bin/true\n{command} = {value}\nqueue\n").jobs()
    except Exception:  # a parse error: HTCondor refuses the value
        return None
    attribute = "RequestMemory" if command == "request_memory" else "RequestDisk"
    return ad.get(attribute) if isinstance(ad.get(attribute), int) else None


@pytest.mark.parametrize("command", ["request_memory", "request_disk"])
def test_one_size_reader_agrees_with_htcondor_and_the_copier_validator(command):
    sizes = project_module("sizes")
    unit = 2**20 if command == "request_memory" else 2**10
    for value in SIZES:
        assert -(-sizes.size_bytes(value, command) // unit) == _bindings_read(value, command), value
    for value in NOT_SIZES:
        assert _bindings_read(value, command) is None, value
        with pytest.raises(sizes.SizeError, match="is not a size HTCondor reads"):
            sizes.size_bytes(value, command)
    # A bare number HTCondor reads in the command's unit; the reader refuses it and says so.
    assert _bindings_read("20", command) == 20
    with pytest.raises(sizes.SizeError, match=f"reads as 20 {'MB' if unit == 2**20 else 'KiB'}"):
        sizes.size_bytes("20", command)
    # copier.yml's validator carries the same pattern (doubled backslashes in a Jinja string).
    validator = yaml.safe_load((ROOT / "copier.yml").read_text())["condor_request_memory"]["validator"]
    assert sizes.SIZE_PATTERN.replace("\\", "\\\\") in validator


def project_module(name: str):
    spec = importlib.util.spec_from_file_location(f"template_{name}", ROOT / "template" / "tasks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
