"""The Docker image: build-image, test-image, push-image."""

from __future__ import annotations

import codecs
import datetime as dt
import os
import re
import tempfile
import urllib.parse
from pathlib import Path

from invoke import Exit, task

from .data import tiny_mnist
from .helpers import ROOT, git, git_is_dirty, immutable_tag, lock_digest, progress
from .settings import settings

TEST_UID = "12345:12345"  # an arbitrary non-root user, as batch systems use

# Listed only in projects that use this system (tasks/__init__.py).
USED_WITH = ("Dockerfile",)


def image_tags() -> list[str]:
    """latest, the commit's short SHA (what jobs run) and the lock digest."""
    return ["latest", immutable_tag(), f"lock-{lock_digest()[:12]}"]


def source_url(remote: str) -> str:
    """The remote as a public https URL for the image's source label: no credentials, no local path ("" then)."""
    scp_like = re.fullmatch(r"[^@/:]+@([^/:]+):(?!/)(.+)", remote)  # git@github.com:owner/repo.git
    if scp_like:
        host, path = scp_like.groups()
    else:
        parts = urllib.parse.urlsplit(remote)
        if parts.scheme not in {"https", "http", "ssh", "git"} or not parts.hostname:
            return ""  # a local path or file:// URL: nothing to publish
        host, path = parts.hostname, parts.path.lstrip("/")
        if parts.port and parts.scheme in {"https", "http"}:
            host = f"{host}:{parts.port}"
    return f"https://{host}/{path.removesuffix('.git').removesuffix('/')}"


def image_labels(version: str) -> dict[str, str]:
    """The OCI labels of a build: the source is a public URL (never credentials or a local path)."""
    labels = {
        "org.opencontainers.image.source": source_url(git("remote", "get-url", "origin") or ""),
        "org.opencontainers.image.revision": git("rev-parse", "HEAD") or "",
        "org.opencontainers.image.created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "org.opencontainers.image.version": version,
        "io.pixi.lock.sha256": lock_digest(),
    }
    return {key: value for key, value in labels.items() if value}


def docker_client(instead: str = ""):
    """A client of a running Docker engine; ``instead`` is the sentence to say where none runs."""
    try:
        import docker
    except ImportError:
        raise Exit("the Docker SDK for Python is missing; run tasks in the pixi `tasks` environment.") from None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as error:  # docker-py raises several types for an unreachable engine
        where = os.environ.get("DOCKER_HOST", "the default socket")
        raise Exit(
            f"{instead} (no Docker engine answers at {where})."
            if instead
            else f"no Docker engine answers at {where} ({error}); start Docker (or set DOCKER_HOST) and try again."
        ) from None
    return client


def stream_errors(chunk: dict) -> str | None:
    """docker-py does not raise on a failed build or push: the error arrives inside the stream."""
    if "error" in chunk or "errorDetail" in chunk:
        return (chunk.get("error") or chunk["errorDetail"].get("message", "")).strip() or "no message"
    return None


# A layer's last status (moby distribution/xfer: push and pull), after which its bytes are all there.
LAYER_DONE = {"Pushed", "Pull complete", "Download complete", "Already exists", "Layer already exists"}


class LayerProgress:
    """docker push and pull streams (moby's jsonmessage: status, id, progressDetail) as one progress line.

    The engine reports each layer's bytes; this sums them into src/progress.py's display (a line
    redrawn on a terminal, whole lines in a log), and prints the stream's other statuses as lines.
    """

    def __init__(self, what: str):
        self.what, self.layers, self.shown = what, {}, None

    def feed(self, chunk: dict) -> None:
        detail = chunk.get("progressDetail") or {}
        if chunk.get("id") in self.layers and chunk.get("status") in LAYER_DONE:
            detail = {"current": self.layers[chunk["id"]]["total"], "total": self.layers[chunk["id"]]["total"]}
        if "id" in chunk and detail.get("total"):
            self.layers[chunk["id"]] = detail
            done = sum(layer.get("current", 0) for layer in self.layers.values())
            total = sum(layer["total"] for layer in self.layers.values())
            count = f"{len(self.layers)} layer{'s' if len(self.layers) > 1 else ''}"
            if self.shown is None:
                self.shown = progress().Progress(f"{self.what} ({count})", total)
            self.shown.what = f"{self.what} ({count})"
            self.shown.update(min(done, total), total)
        elif chunk.get("status") and "id" not in chunk:
            self.close()
            print(f"  {chunk['status']}", flush=True)

    def close(self) -> None:
        if self.shown is not None:
            self.shown.close()
            self.shown = None


@task(
    name="build-image",
    help={
        "environment": "pixi environment baked in (default: [tool.invoke-tasks] environment)",
        "platform": "target platform (default: [tool.invoke-tasks] platform, from the Linux platforms)",
        "pixi_image": "base image of the build stage (default: the pinned pixi image)",
        "runtime_image": "base image of the runtime stage (default: the Dockerfile's)",
        "no_cache": "rebuild every layer",
        "network": "network for RUN steps, e.g. host (default: the engine's)",
    },
)
def build_image(
    c,
    environment: str = "",
    platform: str = "",
    pixi_image: str = "",
    runtime_image: str = "",
    no_cache: bool = False,
    network: str = "",
):
    """Build the Docker image, tagged latest, the git short SHA and the lock digest."""
    s = settings(c)
    if not (ROOT / "Dockerfile").is_file():
        raise Exit("there is no Dockerfile; this project was generated without the docker container format.")
    image = s.require_image()
    platform = platform or s.platform
    if not platform:
        s.subdir  # noqa: B018 -- raises the sentence naming the missing Linux platform
    tags = image_tags()
    client = docker_client()
    # Only facts pixi.toml states; the Dockerfile's own defaults cover the rest.
    buildargs = {"PIXI_ENVIRONMENT": environment or s.environment}
    for name, value in (("PIXI_VERSION", s.pixi_version), ("CUDA_VERSION", s.cuda_version)):
        if value:
            buildargs[name] = value
    if pixi_image:
        buildargs["PIXI_IMAGE"] = pixi_image
    if runtime_image:
        buildargs["RUNTIME_IMAGE"] = runtime_image
    labels = image_labels(tags[1])
    print(f"building {image}:{tags[1]} ({buildargs['PIXI_ENVIRONMENT']} environment, {platform})", flush=True)
    image_id = None
    stream = client.api.build(
        path=str(ROOT),
        tag=f"{image}:{tags[1]}",
        buildargs=buildargs,
        labels=labels,
        platform=platform,
        rm=True,
        forcerm=True,  # a failed step leaves no intermediate containers behind
        nocache=no_cache,
        network_mode=network or None,
        decode=True,
    )
    pulls = LayerProgress("pulling")  # base images pulled by FROM report layer progress, as docker pull shows it
    for chunk in stream:
        if (message := stream_errors(chunk)) is not None:
            pulls.close()
            raise Exit(f"the image build failed: {message}")
        if "stream" in chunk:  # the classic builder's step output, streamed as it comes
            pulls.close()
            print(chunk["stream"], end="", flush=True)
        elif "status" in chunk:
            pulls.feed(chunk)
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    if image_id is None:
        raise Exit("the image build ended without an image ID; see the output above.")
    for tag in tags:
        client.api.tag(image_id, image, tag)
    print(f"built {image_id[:19]}: " + ", ".join(f"{image}:{t}" for t in tags))


@task(name="test-image", help={"tag": "image tag to test (default: the git short SHA)"})
def test_image(c, tag: str = ""):
    """Run the GPU check and a 1-epoch dry run in the image, as a non-root UID without HOME."""
    reference = f"{settings(c).require_image()}:{tag or immutable_tag()}"
    client = docker_client()
    with tempfile.TemporaryDirectory() as data_dir:
        os.chmod(data_dir, 0o755)  # readable by the container's non-root user
        tiny_mnist(Path(data_dir))
        runs = {
            "GPU check": ["python", "/app/src/torch_detect_GPU.py"],
            "1-epoch dry run": [
                "python",
                "/app/src/torch_MNIST.py",
                "--data-dir",
                "/data",
                "--epochs",
                "1",
                "--dry-run",
            ],
        }
        for what, command in runs.items():
            print(f"# {what} in {reference} as uid {TEST_UID}", flush=True)
            container = client.containers.run(
                reference,
                command,
                user=TEST_UID,
                environment={"HOME": ""},
                working_dir="/tmp",
                volumes={data_dir: {"bind": "/data", "mode": "ro"}},
                network_mode="none",
                detach=True,
            )
            try:  # the run's output as it comes (a dry run takes minutes), then its exit status
                decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
                for piece in container.logs(stream=True, follow=True):
                    print(decode(piece), end="", flush=True)
                status = container.wait(timeout=600)["StatusCode"]
            finally:
                container.remove(force=True)
            if status != 0:
                raise Exit(f"{what} failed in {reference} (exit status {status}).")
    print(f"{reference}: image tests passed")


@task(
    name="push-image",
    help={"allow_dirty": "push although the git tree has uncommitted changes", "tag": "push only this tag"},
)
def push_image(c, allow_dirty: bool = False, tag: str = ""):
    """Push the image's tags to the registry; any error in the push stream is a failure."""
    image = settings(c).require_image()
    if git_is_dirty() and not allow_dirty:
        raise Exit("the git tree has uncommitted changes, so the SHA tag would lie; commit them or pass --allow-dirty.")
    client = docker_client()
    for name in [tag] if tag else image_tags():
        print(f"pushing {image}:{name}", flush=True)
        layers = LayerProgress(f"pushing {image}:{name}")
        for chunk in client.api.push(image, tag=name, stream=True, decode=True):
            if (message := stream_errors(chunk)) is not None:
                layers.close()
                raise Exit(f"pushing {image}:{name} failed: {message}")
            layers.feed(chunk)
        layers.close()
        print(f"pushed {image}:{name}", flush=True)
