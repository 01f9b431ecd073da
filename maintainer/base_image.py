"""Does the registry publish the base images a rendering names? The one check that needs the network.

Every Dockerfile and apptainer.def starts from ``ghcr.io/prefix-dev/pixi:<pinned pixi>``; a pixi
release without that image breaks every build. The registry is asked as Docker asks it (the
distribution spec's token flow, docs/spec/auth/token.md in distribution/distribution): HEAD the
manifest; on 401 read the realm, service and scope from WWW-Authenticate, fetch an anonymous
token there, and ask again. 200 means published, 404 not.

It is a network check, so nothing runs it by itself: ``invoke check PATH --only base-image``
names it, and the template's CI runs that. Offline it is skipped with the reason; with
``RMT_NETWORK_CHECKS=required`` (CI) an unreachable registry fails it instead.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from maintainer.checks import Finding

# What a manifest HEAD accepts: multi-platform indexes first (the pixi images are multi-arch).
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
TIMEOUT = 20


class Unreachable(Exception):
    """The registry could not be asked (offline, DNS, TLS, an answer that is not the spec's)."""


def arg_defaults(dockerfile: str) -> dict[str, str]:
    """The Dockerfile's ARG defaults, ${NAME} expanded from earlier ones (as BuildKit does)."""
    values: dict[str, str] = {}
    for name, value in re.findall(r"^\s*ARG\s+(\w+)=(\S+)", dockerfile, re.M):
        values[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), value)
    return values


def named_images(project: Path) -> dict[str, str]:
    """{image reference: where it is named} for references that name their registry host."""
    found: dict[str, str] = {}
    dockerfile = project / "Dockerfile"
    if dockerfile.is_file():
        text = dockerfile.read_text()
        args = arg_defaults(text)
        for ref in re.findall(r"^\s*FROM\s+(\S+)", text, re.M | re.I):
            ref = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), ref)
            found[ref] = "Dockerfile"
    definition = project / "apptainer.def"
    if definition.is_file():
        for ref in re.findall(r"^\s*From:\s*(\S+)", definition.read_text(), re.M | re.I):
            found[ref] = f"{found[ref]}, apptainer.def" if ref in found else "apptainer.def"
    # Only references with an explicit registry host (a dot, a colon or localhost first) are
    # asked: the pixi base image. Docker Hub's short names would need its API host, named nowhere here.
    explicit = {ref: where for ref, where in found.items() if "/" in ref}
    return {ref: where for ref, where in explicit.items() if re.search(r"[.:]|^localhost$", ref.split("/")[0])}


def split_reference(ref: str) -> tuple[str, str, str]:
    host, _, rest = ref.partition("/")
    if "@" in rest:
        repository, _, tag = rest.partition("@")
    else:
        repository, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    return host, repository, tag


def _scheme(host: str) -> str:
    # Docker trusts plain HTTP only for loopback registries (dockerd --insecure-registry: 127.0.0.0/8).
    return "http" if host.split(":")[0] in ("127.0.0.1", "localhost") else "https"


def _request(url: str, method: str, headers: dict) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), b""
    except (urllib.error.URLError, OSError) as error:
        raise Unreachable(f"{url.split('/v2/')[0].split('?')[0]}: {getattr(error, 'reason', error)}") from None


def anonymous_token(challenge: str, repository: str) -> str:
    """A pull token from the realm a 401's WWW-Authenticate names (Bearer realm, service, scope)."""
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if not challenge.lower().startswith("bearer") or "realm" not in params:
        raise Unreachable(f"the registry asks for {challenge.split()[0] if challenge else 'no'} authentication")
    query = {"service": params.get("service", ""), "scope": params.get("scope", f"repository:{repository}:pull")}
    status, _, body = _request(f"{params['realm']}?{urllib.parse.urlencode(query)}", "GET", {})
    if status != 200:
        raise Unreachable(f"the token endpoint {params['realm']} answered {status}")
    answer = json.loads(body or b"{}")
    token = answer.get("token") or answer.get("access_token")
    if not token:
        raise Unreachable(f"the token endpoint {params['realm']} gave no token")
    return token


def published(ref: str) -> bool:
    """True if the registry has the manifest, False if it answers 404; Unreachable otherwise."""
    host, repository, tag = split_reference(ref)
    url = f"{_scheme(host)}://{host}/v2/{repository}/manifests/{tag}"
    headers = {"Accept": ACCEPT}
    status, answer, _ = _request(url, "HEAD", headers)
    if status == 401:
        token = anonymous_token(answer.get("WWW-Authenticate", answer.get("Www-Authenticate", "")), repository)
        status, _, _ = _request(url, "HEAD", {**headers, "Authorization": f"Bearer {token}"})
    if status in (200, 404):
        return status == 200
    raise Unreachable(f"{host} answered {status} for {repository}:{tag}")


def check_base_images(project: Path) -> list[Finding]:
    required = os.environ.get("RMT_NETWORK_CHECKS") == "required"
    findings = []
    for ref, where in sorted(named_images(project).items()):
        try:
            ok = published(ref)
        except Unreachable as error:
            reason = f"could not ask the registry ({error})"
            findings.append(Finding(where, f"registry has {ref}", False, reason, skipped=not required))
            continue
        detail = "" if ok else f"{ref} is not published; pin a pixi version that has a base image"
        findings.append(Finding(where, f"registry has {ref}", ok, detail))
    return findings


NETWORK_CHECKS = {"base-image": check_base_images}
