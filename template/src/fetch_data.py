#!/usr/bin/env python
"""Download MNIST_data.tar.gz (the lesson's copy from CHTC's templates-GPUs), verify it, extract it.

The URL and the pins (git blob id, SHA-256) come from ``[tool.invoke-tasks.data]`` in
pixi.toml, so the Invoke suite and ``pixi run fetch-data`` share one definition. A second
run is a no-op: a stamp file next to the archive records what was verified and extracted,
so the archive is only hashed again when it changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tarfile
import tempfile
import tomllib
import urllib.error
import urllib.request
import zlib
from pathlib import Path

MANIFEST = Path(__file__).resolve().parent.parent / "pixi.toml"


class FetchError(Exception):
    """A download that failed or did not match; the message is one sentence."""


# ---------------------------------------------------------------------- digests
def digests_of(path: Path) -> dict[str, str]:
    """SHA-256 and git's blob id (SHA-1 of ``blob <size>\\0`` + content), in one read."""
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha256.update(block)
            blob.update(block)
    return {"sha256": sha256.hexdigest(), "git_blob": blob.hexdigest()}


def sha256_of(path: Path) -> str:
    return digests_of(path)["sha256"]


def git_blob_of(path: Path) -> str:
    """What `git hash-object --no-filters` prints for the file."""
    return digests_of(path)["git_blob"]


# ------------------------------------------------------------------------ stamp
def stamp_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".verified")


def read_stamp(archive: Path) -> dict:
    """The stamp of ``archive``, or {} when it is missing, damaged or older than the archive."""
    try:
        stamp = json.loads(stamp_path(archive).read_text())
        stat = archive.stat()
    except (OSError, ValueError):
        return {}
    if not isinstance(stamp, dict) or stamp.get("size") != stat.st_size or stamp.get("mtime_ns") != stat.st_mtime_ns:
        return {}
    return stamp


def write_stamp(archive: Path, **fields) -> None:
    stat = archive.stat()
    stamp = {**read_stamp(archive), **fields, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    # Written under a temporary name and renamed: a stamp is whole or absent.
    partial = stamp_path(archive).with_name(stamp_path(archive).name + ".part")
    partial.write_text(json.dumps(stamp, indent=2) + "\n")
    partial.replace(stamp_path(archive))


def mismatch(digests: dict[str, str], pins: dict[str, str]) -> str | None:
    """A description of the first pin the digests contradict, or None."""
    for key, label in (("git_blob", "git blob"), ("sha256", "SHA-256")):
        if pins.get(key) and digests[key] != pins[key].lower():
            return f"{label} {digests[key]}, expected {pins[key]}"
    return None


def verify(archive: Path, pins: dict[str, str]) -> dict[str, str] | None:
    """The archive's digests if it matches every pin (from the stamp when it is current)."""
    stamp = read_stamp(archive)
    if all(stamp.get(key) == value.lower() for key, value in pins.items() if value) and any(pins.values()):
        return {key: stamp[key] for key in ("sha256", "git_blob")}
    digests = digests_of(archive)
    if mismatch(digests, pins):
        return None
    write_stamp(archive, **digests)
    return digests


# ---------------------------------------------------------------------- fetching
def data_config(manifest: Path = MANIFEST) -> dict:
    """[tool.invoke-tasks.data] of pixi.toml; a missing or broken manifest is one sentence."""
    try:
        with manifest.open("rb") as stream:
            return tomllib.load(stream)["tool"]["invoke-tasks"]["data"]
    except FileNotFoundError:
        raise FetchError(f"{manifest} not found; run this from the project that holds pixi.toml.") from None
    except tomllib.TOMLDecodeError as error:
        raise FetchError(f"{manifest} is not valid TOML ({error}).") from None
    except (KeyError, TypeError):
        raise FetchError(f"{manifest} has no [tool.invoke-tasks.data] table with the data's url.") from None


def fetch(url: str, destination: Path, sha256: str = "", timeout: float = 60, git_blob: str = "") -> Path:
    """Download ``url`` to ``destination`` unless a file matching the pins is there.

    The file is written under a ``.part`` name and renamed only once it matches the git
    blob id and SHA-256 given, so an interrupted or wrong download never looks like good
    data. With no pin at all, an existing file is taken as it is.
    """
    destination = Path(destination)
    pins = {"sha256": sha256, "git_blob": git_blob}
    if destination.is_file():
        if not any(pins.values()) or verify(destination, pins):
            return destination
        print(f"{destination} does not match its pinned digest; downloading it again.", file=sys.stderr)
    partial = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", error)
        raise FetchError(
            f"could not download the MNIST data ({reason}): this machine seems to have no internet access. "
            f"On a machine that has it, download {url} and copy the file here as {destination}, then run "
            "this again; or try everything offline first with `pixi run demo` (a tiny made-up MNIST)."
        ) from None
    except BaseException:  # Ctrl-C: no .part left behind either
        partial.unlink(missing_ok=True)
        raise
    digests = digests_of(partial)
    problem = mismatch(digests, pins)
    if problem:
        partial.unlink()
        raise FetchError(f"{url} has {problem}; the download was deleted.")
    partial.replace(destination)
    stamp_path(destination).unlink(missing_ok=True)  # it described the file just replaced
    if any(pins.values()):
        write_stamp(destination, **digests)
    if not sha256:
        how = "verified by its git blob id" if git_blob else "NOT verified: no git blob id or SHA-256 is pinned"
        print(
            f"warning: {destination.name} was {how}; its SHA-256 is {digests['sha256']}: "
            f'record sha256 = "{digests["sha256"]}" under [tool.invoke-tasks.data] in pixi.toml.',
            file=sys.stderr,
        )
    return destination


# --------------------------------------------------------------------- extracting
def extract(archive: Path, into: Path) -> bool:
    """Unpack the tarball (it holds data/MNIST/raw/...) without leaving ``into``.

    Returns False (and does nothing) when this archive was already extracted there and
    every extracted file is still in place. Files are unpacked into a temporary directory
    and renamed into place one by one, so an interrupted run leaves no half-written file.
    """
    archive, into = Path(archive), Path(into)
    key = str(into.resolve())
    done = read_stamp(archive).get("extracted", {}).get(key)
    if done and all((into / name).is_file() and (into / name).stat().st_size == size for name, size in done.items()):
        return False
    into.mkdir(parents=True, exist_ok=True)
    files = {}
    with tempfile.TemporaryDirectory(dir=into, prefix=".extract-") as scratch:
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        for path in sorted(Path(scratch).rglob("*")):
            if path.is_file() and not path.is_symlink():
                name = path.relative_to(scratch).as_posix()
                target = into / name
                target.parent.mkdir(parents=True, exist_ok=True)
                files[name] = path.stat().st_size
                os.replace(path, target)
    extracted = {**read_stamp(archive).get("extracted", {}), key: files}
    write_stamp(archive, extracted=extracted)
    return True


# ---------------------------------------------------------------------------- CLI
def fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="where to download from (default: pixi.toml's)")
    parser.add_argument("--sha256", help="expected SHA-256 (default: pixi.toml's)")
    parser.add_argument("--git-blob", help="expected git blob id (default: pixi.toml's)")
    parser.add_argument("--output", type=Path, help="archive path (default: pixi.toml's archive)")
    parser.add_argument("--extract", type=Path, default=None, help="also extract into this directory")
    args = parser.parse_args(argv)
    try:
        config = data_config() if None in (args.url, args.sha256, args.git_blob, args.output) else {}
        url = args.url or config["url"]
        sha256 = config.get("sha256", "") if args.sha256 is None else args.sha256
        git_blob = config.get("git-blob", "") if args.git_blob is None else args.git_blob
        archive = args.output or Path(config["archive"])
    except (KeyError, TypeError, AttributeError) as error:
        return fail(f"pixi.toml's [tool.invoke-tasks.data] lacks {error}; restore it from the template.", 2)
    except FetchError as error:
        return fail(str(error), 2)
    try:
        fetch(url, archive, sha256, git_blob=git_blob)
    except FetchError as error:
        return fail(str(error), 1)
    except OSError as error:
        return fail(f"cannot write {archive} ({error.strerror or error}).", 1)
    stamp = read_stamp(archive)
    if "sha256" in stamp:
        print(f"{archive}: verified (git blob {stamp['git_blob']}, SHA-256 {stamp['sha256']})")
    else:
        print(f"{archive}: present, not verified (pixi.toml pins no digest)")
    if args.extract:
        try:
            changed = extract(archive, args.extract)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            return fail(f"cannot extract {archive} into {args.extract} ({error}); delete it and run again.", 1)
        print(f"extracted into {args.extract}" if changed else f"already extracted into {args.extract}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
