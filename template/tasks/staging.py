"""Large files for HTCondor jobs: staged under OSDF, or sent by the access point.

CHTC and the OSPool ask that files over about 100 MB (a .sif, a pack, often the data) do
not go through the access point's file transfer: they are copied to a directory that is
published on OSDF and jobs read them as osdf:///... URLs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from invoke import Exit

from .helpers import human_size, progress
from .settings import Settings

TRANSFER_LIMIT = 100 * 2**20  # CHTC's guidance for files sent through the access point

# OSDF namespaces whose directory on the access point is known.
KNOWN_NAMESPACES = [
    (r"^osdf:///chtc/staging/(.+)$", r"/staging/\1"),
    (r"^osdf:///ospool/(ap\d+)/data/(.+)$", r"/ospool/\1/data/\2"),
]


def osdf_url(s: Settings, filename: str) -> str:
    return f"{s.htcondor.osdf_path.rstrip('/')}/{filename}"


def staging_dir(s: Settings) -> Path:
    """The directory on this access point that holds what osdf_path publishes."""
    if s.htcondor.staging_dir:
        return Path(s.htcondor.staging_dir)
    for pattern, local in KNOWN_NAMESPACES:
        if re.match(pattern, s.htcondor.osdf_path):
            return Path(re.sub(pattern, local, s.htcondor.osdf_path))
    raise Exit(
        f"cannot tell which directory here publishes {s.htcondor.osdf_path}; set `staging-dir` under "
        "[tool.invoke-tasks.htcondor] in pixi.toml."
    )


def same_content(ours: Path, staged: Path) -> bool:
    """Byte for byte, with progress: a staged pack or .sif is GBs read over a shared filesystem."""
    size = ours.stat().st_size
    if size != staged.stat().st_size:
        return False
    shown = progress().Progress(f"comparing {ours.name} with the staged copy", size)
    with shown, ours.open("rb") as mine, staged.open("rb") as theirs:
        while block := mine.read(progress().BLOCK):
            if block != theirs.read(len(block)):
                return False
            shown.advance(len(block))
    return True


def place(partial: Path, target: Path) -> None:
    """Give ``partial`` the name ``target`` unless a file took it meanwhile (FileExistsError)."""
    try:
        os.link(partial, target)  # unlike a rename, never replaces
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: check, then rename
        if target.exists():
            raise FileExistsError(target) from None
        os.replace(partial, target)


def stage(s: Settings, path: Path, dry_run: bool = False) -> str:
    """Copy ``path`` into the staging directory (once; atomically) and return its osdf:// URL.

    A file already staged under the name is reused only when its content is the same; a
    different one is never replaced (OSDF caches by name: jobs could read either).
    """
    url = osdf_url(s, path.name)
    target = staging_dir(s) / path.name
    if target.is_file():
        if not same_content(path, target):
            raise Exit(
                f"{target} holds a different {path.name} than this project's; OSDF caches files by name, so "
                "replacing it could serve jobs either: move it aside, or stage under another osdf-path."
            )
        print(f"{path.name} is already staged as {url} (same content)")
        return url
    if dry_run:
        print(f"would stage {path.name} ({human_size(path.stat().st_size)}) to {target} ({url})")
        return url
    if not target.parent.is_dir():
        raise Exit(f"the staging directory {target.parent} does not exist; create it or fix `osdf-path`.")
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        progress().copy_file(path, partial, f"staging {path.name}")
        os.chmod(partial, 0o644)  # read by the OSDF origin's service account, whatever the umask
        place(partial, target)
    except FileExistsError:
        raise Exit(f"{target} appeared while staging; run the submission again to compare it.") from None
    except OSError as error:
        raise Exit(f"staging {path.name} to {target.parent} failed ({error.strerror}).") from None
    finally:
        partial.unlink(missing_ok=True)
    print(f"staged {path.name} ({human_size(path.stat().st_size)}) as {url}")
    return url


def report_transfer(paths: list[Path]) -> None:
    """Say how much goes through the access point, and warn where it is too much."""
    total = sum(p.stat().st_size for p in paths if p.is_file())
    print(f"the access point transfers {human_size(total)} per job ({', '.join(p.name for p in paths)})")
    for path in paths:
        if path.is_file() and path.stat().st_size > TRANSFER_LIMIT:
            print(
                f"note: {path.name} is {human_size(path.stat().st_size)}; files over 100 MB should come from "
                "OSDF: set `osdf-path` under [tool.invoke-tasks.htcondor]."
            )
