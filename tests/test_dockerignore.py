"""The rendered .dockerignore keeps what the tasks and jobs write out of the build context.

Judged by docker-py's own .dockerignore logic (docker.utils.build.exclude_paths), on the
file names the tasks, the submit files and the SLURM script produce.
"""

from __future__ import annotations

import pytest
from docker.utils.build import exclude_paths

# {slug} is the project's slug; each name is one a task or a job writes.
PRODUCED = [
    "{slug}-environment-1a2b3c4d.sh",  # invoke pack
    "{slug}-environment-1a2b3c4d.tar",  # invoke pack --archive
    "environment.sh",  # pixi-pack's output before pack renames it
    "{slug}-abc1234.sif",  # invoke build-sif
    "MNIST_data.tar.gz",  # invoke fetch-data
    "data/MNIST/raw/train-images-idx3-ubyte",
    "mnist_cnn.pt",  # pixi run train
    "metrics.json",
    "htcondor/mnist_cnn_12_0.pt",  # transfer_output_remaps
    "htcondor/metrics_12_0.json",
    "htcondor/train_12.log",
    "htcondor/train_12_0.out",
    "htcondor/train_12_0.err",
    "htcondor/submitted-docker.sub",  # invoke submit-condor
    "htcondor/.last-cluster",
    "slurm/mnist_cnn_4242.pt",  # slurm/train.sbatch
    "slurm/metrics_4242.json",
    "slurm/slurm-4242.out",
    "slurm/.last-job",  # invoke submit-slurm
    "checkpoints/epoch_3.pt",
    "checkpoints/state.ckpt",
    "logs/train.log",
    "results/sweep.csv",
    ".pixi/envs/cpu/bin/python",
    "build/everything/pixi.toml",
    "src/__pycache__/torch_MNIST.cpython-312.pyc",
]
# What the Dockerfile copies (and the recipes beside it) must stay in the context.
KEPT = ["pixi.toml", "pixi.lock", "src/torch_MNIST.py", "src/fetch_data.py", "container/entrypoint.sh", "Dockerfile"]


@pytest.fixture
def context(copy_of):
    project = copy_of("everything")
    slug = project.joinpath("pixi.toml").read_text().split('name = "', 1)[1].split('"', 1)[0]
    (project / "pixi.lock").write_text("version: 6\n")
    produced = [name.format(slug=slug) for name in PRODUCED]
    for name in produced:
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    patterns = [
        line.strip()
        for line in (project / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return project, produced, set(exclude_paths(str(project), patterns, dockerfile="Dockerfile"))


def test_task_outputs_stay_out_of_the_build_context(context):
    _, produced, included = context
    leaked = [name for name in produced if name in included]
    assert not leaked, f"these would be sent to the Docker build: {leaked}"


def test_what_the_images_need_stays_in(context):
    project, _, included = context
    missing = [name for name in KEPT if name not in included]
    assert not missing, f".dockerignore drops what the Dockerfile copies: {missing}"
    # Every file the Dockerfile COPYs from the context (not --from=build) must be there.
    for line in (project / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert any(p == source.rstrip("/") or p.startswith(source) for p in included), source
