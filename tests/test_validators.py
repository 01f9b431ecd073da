"""Bad answers: each validator rejects its value with a sentence, and nothing is rendered."""

from __future__ import annotations

import pytest

from maintainer.render import render

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
    ("condor_request_memory", "8 gigs", "must be a size"),
    ("condor_request_disk", "lots", "must be a size"),
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
