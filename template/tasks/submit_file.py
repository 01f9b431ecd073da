"""The submit files in htcondor/: the one place a user sets a job's HTCondor resources.

submit-condor reads them as condor_submit would and refuses, in one sentence, what condor_submit
refuses or what a job would silently misread: no queue statement, two `requirements` lines
(the last one alone would win), a size that is not one, a GPU job that asks for no GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from invoke import Exit

from .helpers import ROOT, read_resolved
from .sizes import SizeError, size_bytes

# condor_submit (src/condor_submit.V6/submit.cpp) ends a file without a queue statement with
# "ERROR: <file> doesn't contain any queue commands".
QUEUE = re.compile(r"^\s*(queue|iterate)(\s|$)", re.I)
# request_memory as the template writes it: memory_mb, doubled after each memory hold, up to memory_cap_mb.
GROWING_MEMORY = "$(memory_mb)*pow(2,"
COMMAND = re.compile(r"^\s*([+A-Za-z_.][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class SubmitFile:
    path: Path
    text: str
    values: dict[str, list[str]]  # command (lower case) -> its values in file order

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))

    def last(self, command: str) -> str | None:
        """The value HTCondor uses: the last one set (submit commands ignore case)."""
        values = self.values.get(command.lower())
        return values[-1] if values else None

    def disk_bytes(self) -> int:
        return size_bytes(self.last("request_disk") or "", "request_disk")


def read_submit_file(path: Path) -> SubmitFile:
    """The file's commands; refused before anything is built or pushed while it holds conflict markers."""
    text = read_resolved(path)
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = COMMAND.match(line)
        if match and not line.lstrip().startswith("#"):
            values.setdefault(match.group(1).lower(), []).append(match.group(2))
    return SubmitFile(path, text, values)


def check_submit_file(submit: SubmitFile, needs_gpu: bool) -> None:
    """Refuse what condor_submit refuses, or what the job would misread, in one sentence."""
    lines = [line for line in submit.text.splitlines() if not line.lstrip().startswith("#")]
    if not any(QUEUE.match(line) for line in lines):
        raise Exit(
            f"{submit.name} doesn't contain any queue commands, so condor_submit refuses it; end it with "
            "`queue train_args from $(train_args_file)`."
        )
    if len(submit.values.get("requirements", [])) > 1:
        raise Exit(
            f"{submit.name} sets requirements more than once and HTCondor keeps only the last; "
            "join them into one line with &&."
        )
    for command in ("request_memory", "request_disk"):
        if submit.last(command) is None:
            raise Exit(f"{submit.name} sets no {command}, so the pool's default applies; set one such as 8GB.")
        if command == "request_memory" and GROWING_MEMORY in submit.last(command).replace(" ", ""):
            _check_growing_memory(submit)
            continue
        try:
            size_bytes(submit.last(command), command)
        except SizeError as error:
            raise Exit(f"{submit.name}: {error}") from None
    _check_gpus(submit, needs_gpu)


def _check_growing_memory(submit: SubmitFile) -> None:
    """The template's request_memory, which doubles after each memory hold: its two numbers in MB."""
    first, cap = submit.last("memory_mb"), submit.last("memory_cap_mb")
    for name, value in (("memory_mb", first), ("memory_cap_mb", cap)):
        if value is None or not re.fullmatch(r"[0-9]+", value) or int(value) == 0:
            raise Exit(
                f"{submit.name}: {name} = {value or '(unset)'} is not a whole number of MB, which request_memory "
                "reads; write one such as 4096 (4 GB)."
            )
    if int(cap) < int(first):
        raise Exit(
            f"{submit.name}: memory_cap_mb = {cap} is below memory_mb = {first}, so a job held for memory would ask "
            "for less; raise memory_cap_mb."
        )


def _check_gpus(submit: SubmitFile, needs_gpu: bool) -> None:
    gpus = submit.last("request_gpus")
    if gpus is not None and not re.fullmatch(r"[0-9]+", gpus):
        raise Exit(f"{submit.name}: request_gpus = {gpus} is not a whole number of GPUs.")
    if gpus is not None and int(gpus) > 1:
        raise Exit(
            f"{submit.name}: request_gpus = {gpus}, but training uses one GPU (src/torch_MNIST.py has no "
            "multi-GPU training); set request_gpus = 1."
        )
    if needs_gpu and int(gpus or 0) < 1:
        raise Exit(
            f"{submit.name} asks for no GPU (request_gpus = {gpus or 'unset'}) but the environment it runs "
            "is the CUDA one; set request_gpus = 1."
        )
    capability = submit.last("gpus_minimum_capability")
    if capability is not None and not re.fullmatch(r"[0-9]+(\.[0-9]+)?", capability):
        raise Exit(f"{submit.name}: gpus_minimum_capability = {capability} is not a compute capability such as 7.5.")


def check_staging_requirement(submit: SubmitFile, osdf_path: str) -> None:
    """CHTC runs jobs that read /staging only where HasCHTCStaging is true (CHTC's large-data guide)."""
    staged = osdf_path.startswith("osdf:///chtc/staging/")
    if staged and "haschtcstaging" not in (submit.last("requirements") or "").lower():
        raise Exit(
            f"{submit.name} reads its large files from {osdf_path} (CHTC's /staging) but its requirements do not "
            "ask for HasCHTCStaging; add `&& (TARGET.HasCHTCStaging == true)` to its requirements line."
        )
