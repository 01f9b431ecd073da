"""The project's settings: one typed object, read on first use.

Sources, later ones winning: facts derived from pixi.toml (name, environments, platforms,
CUDA, pinned pixi), `[tool.invoke-tasks]` in pixi.toml, then Invoke's configuration under
`project`, which Invoke layers itself (invoke.yaml, INVOKE_PROJECT_* variables such as
INVOKE_PROJECT_IMAGE, a -f file). Written here: the typed check of each value, and a sentence
for a variable that names no setting. src/fetch_data.py reads the data section and its
INVOKE_PROJECT_DATA_* variables (it runs without Invoke). A hand-written pixi.toml without
`[tool.invoke-tasks]` works: every setting has a default or a task says what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field, fields

from invoke import Config, Exit, task

from .helpers import MANIFEST, ROOT, fetcher, git, read_toml

# pixi's subdir -> the container engine's platform, for the Linux platforms containers run on.
CONTAINER_PLATFORMS = {"linux-64": "linux/amd64", "linux-aarch64": "linux/arm64", "linux-ppc64le": "linux/ppc64le"}


@dataclass(frozen=True)
class DataSettings:
    """[tool.invoke-tasks.data], read by src/fetch_data.py's data_config (pins are never removed)."""

    url: str = ""
    archive: str = "MNIST_data.tar.gz"
    sha256: str = ""
    git_blob: str = ""
    max_size_mb: int = 1024
    max_extracted_mb: int = 4096


@dataclass(frozen=True)
class HTCondorSettings:
    # Resources are not settings: htcondor/*.sub is the one place for them (see MOVED).
    # Where large files (the .sif, the pack, the data) are read from by jobs (osdf:///...),
    # and the directory on this access point that is published there.
    osdf_path: str = ""
    staging_dir: str = ""


@dataclass(frozen=True)
class SlurmSettings:
    partition: str = ""
    account: str = ""
    time: str = ""
    max_running: int = 4  # tasks of a sweep's job array running at once (--array=0-N%K)


@dataclass(frozen=True)
class Settings:
    name: str
    image: str = ""
    environment: str = ""
    environments: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    platform: str = ""
    cuda_version: str = ""
    pixi_version: str = ""
    container_formats: tuple[str, ...] = ()
    data: DataSettings = field(default_factory=DataSettings)
    htcondor: HTCondorSettings = field(default_factory=HTCondorSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)

    @property
    def subdir(self) -> str:
        """pixi's platform for containers and packs (linux/arm64 -> linux-aarch64)."""
        for subdir, platform in CONTAINER_PLATFORMS.items():
            if platform == self.platform:
                return subdir
        raise Exit(
            f"no Linux platform to build for (platform {self.platform!r}, workspace platforms "
            f"{', '.join(self.platforms) or 'none'}); add linux-64 or linux-aarch64 to pixi.toml."
        )

    def require_image(self) -> str:
        """The image name without a tag (the tasks add the commit's), as registries accept it."""
        if not self.image:
            raise Exit("no image name: set `image` under [tool.invoke-tasks] in pixi.toml (or INVOKE_PROJECT_IMAGE).")
        host, _, path = self.image.partition("/")
        if "@" in self.image or ":" in path:
            raise Exit(
                f"image {self.image!r} names a tag or digest; set the name alone: the tasks add the commit's tag."
            )
        if self.image != self.image.lower():
            raise Exit(f"image {self.image!r} has capitals, which registries refuse; write {self.image.lower()!r}.")
        if not re.fullmatch(r"[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)+", self.image):
            raise Exit(f"image {self.image!r} is not an image name such as ghcr.io/owner/repository.")
        return self.image


SECTIONS = {"data": DataSettings, "htcondor": HTCondorSettings, "slurm": SlurmSettings}
# Settings that moved into the submit files: one place for each resource, read by HTCondor.
MOVED = {
    "request_memory": "request_memory",
    "request_disk": "request_disk",
    "request_gpus": "request_gpus",
    "gpu_min_capability": "gpus_minimum_capability",
    "chtc_gpu_lab": "+WantGPULab",
}
DERIVED = {"name", "environments", "platforms", "cuda_version", "pixi_version"}
_cache: dict[str, Settings] = {}


ENV_PREFIX = "INVOKE_PROJECT_"
INVOKE_LAYER = "Invoke's configuration: invoke.yaml, INVOKE_PROJECT_* variables or -f"


def invoke_configuration() -> dict:
    """Every setting, without a value, under `project`: the collection declares them (tasks/__init__.py)
    because Invoke loads INVOKE_PROJECT_* only for keys it knows; for a None it keeps the text."""
    table: dict = {f.name: None for f in fields(Settings) if f.name not in DERIVED and f.name not in SECTIONS}
    for name, cls in SECTIONS.items():
        if name != "data":  # src/fetch_data.py reads [tool.invoke-tasks.data] and INVOKE_PROJECT_DATA_*
            table[name] = {f.name: None for f in fields(cls)}
    return {"project": table}


def _given(value):
    """Invoke's configuration as plain dicts, without the keys nothing set (None)."""
    if hasattr(value, "items"):
        return {key: _given(item) for key, item in value.items() if item is not None}
    return value


def invoke_layer(c) -> dict:
    """`project` of Invoke's configuration for this run, as Invoke layered it."""
    config = c.config if c is not None else None
    if config is None or config.get("project") is None:
        config = Config(lazy=True)  # a bare Context, not run by Invoke's executor: load the variables
        config.load_collection(invoke_configuration())
        config.load_shell_env()
    return _given(config.project)


def settings(c=None) -> Settings:
    """The settings, read once per process (per Invoke configuration)."""
    layer = invoke_layer(c)
    key = json.dumps(layer, sort_keys=True, default=str)
    if key not in _cache:
        _cache[key] = load(read_toml(MANIFEST), layer, os.environ)
    return _cache[key]


def _underscored(table: dict) -> dict:
    return {k.replace("-", "_"): _underscored(v) if isinstance(v, dict) else v for k, v in table.items()}


def _coerce(kind, value, where: str):
    """A value from TOML or an environment variable, as the field's type (its annotation, a string here)."""
    text = str(value).strip()
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise Exit(f"{where} must be a whole number, not {text!r}.") from None
    if kind.startswith("tuple"):
        if isinstance(value, (list, tuple)):
            return tuple(str(v) for v in value)
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def _apply(cls, base: dict, table: dict, where: str, section: str = "") -> dict:
    known = {f.name: f for f in fields(cls)}
    for key, value in table.items():
        if key in SECTIONS and cls is Settings:
            continue  # a section, applied on its own
        if cls is HTCondorSettings and key in MOVED:
            raise Exit(
                f"htcondor.{key.replace('_', '-')} (from {where}) is no longer read: set {MOVED[key]} in "
                "htcondor/*.sub, the one place for a job's resources, and remove it here."
            )
        if key not in known or key in DERIVED:
            names = ", ".join(sorted(k.replace("_", "-") for k in known if k not in DERIVED))
            raise Exit(f"{where} has no setting '{section}{key.replace('_', '-')}' (known: {names}).")
        base[key] = _coerce(known[key].type, value, f"{section}{key.replace('_', '-')} (from {where})")
    return base


def _unread_variables(environ) -> dict:
    """INVOKE_PROJECT_* variables Invoke passes over (no such setting), for _apply to refuse by name."""
    declared = set()
    for key, value in invoke_configuration()["project"].items():
        names = value if isinstance(value, dict) else {"": None}
        declared |= {f"{ENV_PREFIX}{key}_{name}".rstrip("_").upper() for name in names}
    table: dict = {}
    for variable, value in environ.items():
        if not variable.startswith(ENV_PREFIX) or variable in declared or variable.startswith(ENV_PREFIX + "DATA_"):
            continue
        name = variable.removeprefix(ENV_PREFIX).lower()
        section = next((s for s in SECTIONS if name.startswith(s + "_")), None)
        if section:
            table.setdefault(section, {})[name.removeprefix(section + "_")] = value
        else:
            table[name] = value
    return table


def _version_of(spec) -> str:
    """'12.9.*' or '>=12.4,<13' or { version = "12.9" } -> the first version number."""
    if isinstance(spec, dict):
        spec = spec.get("version", "")
    match = re.search(r"[0-9]+(?:\.[0-9]+)?", str(spec))
    return match.group(0) if match else ""


def derived_facts(manifest: dict) -> dict:
    """What the rest of pixi.toml already says; works for hand-written manifests too."""
    workspace = manifest.get("workspace") or manifest.get("project") or {}
    features = manifest.get("feature", {})
    platforms = []
    for entry in workspace.get("platforms", []):
        subdir = entry.get("platform", "") if isinstance(entry, dict) else str(entry)
        if subdir and subdir not in platforms:
            platforms.append(subdir)
    # CUDA: the gpu feature's cuda-version, else any dependency table's, else the platform promise.
    cuda = ""
    tables = [features.get("gpu", {}).get("dependencies", {}), manifest.get("dependencies", {})]
    tables += [f.get("dependencies", {}) for f in features.values()]
    for table in tables:
        if "cuda-version" in table:
            cuda = _version_of(table["cuda-version"])
            break
    if not cuda:
        promises = [e.get("cuda") for e in workspace.get("platforms", []) if isinstance(e, dict) and e.get("cuda")]
        promises.append(manifest.get("system-requirements", {}).get("cuda"))
        cuda = next((_version_of(p) for p in promises if p), "")
    match = re.search(r">=\s*([0-9][0-9.]*)", str(workspace.get("requires-pixi", "")))
    environments = ["default", *(e for e in manifest.get("environments", {}) if e != "default")]
    platform = next((CONTAINER_PLATFORMS[p] for p in CONTAINER_PLATFORMS if p in platforms), "")
    return {
        "name": str(workspace.get("name") or ROOT.name),
        "environments": tuple(environments),
        "platforms": tuple(platforms),
        "cuda_version": cuda,
        "pixi_version": match.group(1) if match else "",
        "environment": "gpu" if "gpu" in environments else "default",
        "platform": platform,
        "image": _image_from_remote(),
    }


def _image_from_remote() -> str:
    """ghcr.io/OWNER/REPO for a GitHub remote: a sensible default where pixi.toml names none."""
    remote = git("remote", "get-url", "origin") or ""
    match = re.search(r"github\.com[:/]([^/]+)/([^/]+?)(?:\.git)?/?$", remote)
    return f"ghcr.io/{match.group(1)}/{match.group(2)}".lower() if match else ""


def load(manifest: dict, overrides: dict, environ) -> Settings:
    values = derived_facts(manifest)
    sections: dict[str, dict] = {name: {} for name in SECTIONS}
    layers = [
        ("pixi.toml [tool.invoke-tasks]", _underscored(manifest.get("tool", {}).get("invoke-tasks", {}))),
        (INVOKE_LAYER, _underscored(overrides)),
        ("the INVOKE_PROJECT_* variables", _unread_variables(environ)),  # refused by name
    ]
    for where, table in layers:
        _apply(Settings, values, table, where)
        for name, cls in SECTIONS.items():
            if isinstance(table.get(name), dict) and name != "data":
                _apply(cls, sections[name], table[name], where, f"{name}.")
    sections["data"] = _data_settings(manifest, overrides, environ)
    result = Settings(**values, **{name: cls(**sections[name]) for name, cls in SECTIONS.items()})
    if result.environment not in result.environments:
        raise Exit(
            f"the environment {result.environment!r} is not in pixi.toml (environments: "
            f"{', '.join(result.environments)}); set `environment` under [tool.invoke-tasks]."
        )
    return result


def _data_settings(manifest: dict, overrides: dict, environ) -> dict:
    """The data section, from the one reader that `pixi run fetch-data` uses too."""
    layer = overrides.get("data") or {}
    configured = manifest.get("tool", {}).get("invoke-tasks", {}).get("data") or layer
    configured = configured or any(key.startswith("INVOKE_PROJECT_DATA_") for key in environ)
    if not configured and not (ROOT / "src" / "fetch_data.py").is_file():
        return {}  # a hand-written project without data settings or src/fetch_data.py: no data
    fetch_data = fetcher()
    try:
        config = fetch_data.data_config(manifest, [(INVOKE_LAYER, layer)], environ)
    except fetch_data.FetchError as error:
        raise Exit(str(error)) from None
    return {key.replace("-", "_"): value for key, value in config.items()}


@task(name="settings")
def show_settings(c):
    """Print the effective settings (pixi.toml, then Invoke configuration, then INVOKE_PROJECT_*)."""
    print(json.dumps(dataclasses.asdict(settings(c)), indent=2))
