"""Ask a registry whether it holds IMAGE:TAG over its HTTP API, with no container engine.

HTCondor access points have no Docker engine, so submit-condor asks the registry itself
(OCI distribution spec: GET /v2/NAME/manifests/TAG; 200 = present, 404 = absent). A 401
names a token service (WWW-Authenticate: Bearer realm=...,service=...); an anonymous token
reads public images, and the credentials in ~/.docker/config.json (`auths`, or a
credential helper) read private ones. Loopback registries speak plain HTTP, as Docker
allows by default; every other host HTTPS.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from invoke import Exit

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DOCKER_HUB_KEY = "https://index.docker.io/v1/"  # the key `docker login` writes for Docker Hub


def split_image(image: str) -> tuple[str, str]:
    """ghcr.io/owner/repo -> (ghcr.io, owner/repo); a name without a host is on Docker Hub."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repository = first, rest
    else:
        host, repository = "docker.io", image
    if host in ("docker.io", "index.docker.io") and "/" not in repository:
        repository = f"library/{repository}"
    return host, repository


def api_base(host: str) -> str:
    if host in ("docker.io", "index.docker.io"):
        return "https://registry-1.docker.io"
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    loopback = name == "localhost" or name.startswith("127.") or name == "[::1]"
    return f"{'http' if loopback else 'https'}://{host}"


def docker_credentials(host: str) -> tuple[str, str] | None:
    """(user, secret) for ``host`` from the user's Docker configuration, where one is stored."""
    path = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    key = DOCKER_HUB_KEY if host in ("docker.io", "index.docker.io") else host
    helper = (config.get("credHelpers") or {}).get(key) or config.get("credsStore")
    if helper and shutil.which(f"docker-credential-{helper}"):
        result = subprocess.run(
            [f"docker-credential-{helper}", "get"], input=key, capture_output=True, text=True, check=False, timeout=60
        )
        if result.returncode == 0:
            stored = json.loads(result.stdout)
            return stored.get("Username", ""), stored.get("Secret", "")
    entry = (config.get("auths") or {}).get(key) or {}
    if entry.get("auth"):
        user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
        return user, secret
    return None


def _basic(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


def _token(challenge: str, repository: str, credentials: tuple[str, str] | None) -> str:
    """A bearer token from the service the registry named (anonymous without credentials)."""
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    query = {"service": params.get("service", ""), "scope": params.get("scope") or f"repository:{repository}:pull"}
    request = urllib.request.Request(f"{params['realm']}?{urllib.parse.urlencode(query)}")
    if credentials:
        request.add_header("Authorization", _basic(credentials))
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    return "Bearer " + (answer.get("token") or answer.get("access_token") or "")


def _get(url: str, authorization: str | None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers={"Accept": MANIFEST_TYPES})
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), ""
    except urllib.error.HTTPError as error:
        return error.code, b"", error.headers.get("WWW-Authenticate", "")


def manifest(reference: str) -> dict | None:
    """The manifest of IMAGE:TAG as the registry serves it, or None where it holds no such tag."""
    image, _, tag = reference.rpartition(":")
    host, repository = split_image(image)
    url = f"{api_base(host)}/v2/{repository}/manifests/{tag}"
    credentials = docker_credentials(host)
    try:
        status, body, challenge = _get(url, None)
        if status == 401 and challenge.lower().startswith("bearer"):
            status, body, _ = _get(url, _token(challenge, repository, credentials))
        elif status == 401 and credentials:
            status, body, _ = _get(url, _basic(credentials))
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise Exit(f"could not ask {host} about {reference} ({reason}); is this machine online?") from None
    if status == 200:
        return json.loads(body)
    if status == 404:
        return None
    if status in (401, 403):
        raise Exit(
            f"{host} will not show {reference} (HTTP {status}): it is absent or private; for a private image put "
            f"credentials for {host} in ~/.docker/config.json."
        )
    raise Exit(f"{host} answered HTTP {status} when asked for {reference}; try again later.")


def artifact_size(found: dict) -> int:
    """The bytes of an image's or artifact's layers (a SIF pushed with oras is one layer)."""
    return sum(int(layer.get("size", 0)) for layer in found.get("layers", []))
