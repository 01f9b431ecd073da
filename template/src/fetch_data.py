#!/usr/bin/env python
"""Download MNIST_data.tar.gz (the lesson's copy from CHTC's templates-GPUs), verify it, extract it.

The URL and the pins (git blob id, SHA-256) come from ``[tool.invoke-tasks.data]`` in
pixi.toml, so the Invoke suite and ``pixi run fetch-data`` share one definition;
INVOKE_PROJECT_DATA_* variables may replace a pin but never remove one. Verification
fails closed: an archive matching no pin is never used. Downloads stop at a size cap and
an overall deadline; archives extract only into data/ and within a size limit. A second
run is a no-op: a stamp file next to the archive records what was verified and extracted.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from progress import Progress

MANIFEST = Path(__file__).resolve().parent.parent / "pixi.toml"
DATA_DIR = "data"  # the archive's one top-level directory, and the only place it extracts to
MiB = 2**20
# [tool.invoke-tasks.data] and its defaults; the two pins are the ones never removed.
DEFAULTS = {"url": "", "archive": "MNIST_data.tar.gz", "sha256": "", "git-blob": "", "max-size-mb": 1024,
            "max-extracted-mb": 4096}  # fmt: skip
PINS = ("sha256", "git-blob")
ENV_PREFIX = "INVOKE_PROJECT_DATA_"
MAX_MEMBERS = 100_000
DEADLINE_S = 900.0  # the whole download, however slowly the server sends
HASH_PROGRESS_FROM = 256 * MiB  # checksums of smaller files take well under a second


class FetchError(Exception):
    """A download or archive that failed or did not match; the message is one sentence."""


# ---------------------------------------------------------------------- digests
def digests_of(path: Path) -> dict[str, str]:
    """SHA-256 and git's blob id (SHA-1 of ``blob <size>\\0`` + content), in one read (with progress when big)."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    shown = Progress(f"checking {path.name}", size) if size >= HASH_PROGRESS_FROM else None
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha256.update(block)
            blob.update(block)
            if shown:
                shown.advance(len(block))
    if shown:
        shown.close()
    return {"sha256": sha256.hexdigest(), "git_blob": blob.hexdigest()}


def sha256_of(path: Path) -> str:
    return digests_of(path)["sha256"]


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


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write under a unique temporary name and rename: whole or absent, even with two writers."""
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
        os.chmod(partial, mode)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def write_stamp(archive: Path, **fields) -> None:
    stat = archive.stat()
    stamp = {**read_stamp(archive), **fields, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    write_atomically(stamp_path(archive), (json.dumps(stamp, indent=2) + "\n").encode())


def mismatch(digests: dict[str, str], pins: dict[str, str]) -> str | None:
    """A description of the first pin the digests contradict, or None."""
    for key, label in (("git_blob", "git blob"), ("sha256", "SHA-256")):
        if pins.get(key) and digests[key] != pins[key].lower():
            return f"{label} {digests[key]}, expected {pins[key]}"
    return None


def verify(archive: Path, pins: dict[str, str]) -> dict[str, str] | None:
    """The archive's digests if it matches every pin (from the stamp when it is current); never without a pin."""
    if not any(pins.values()):
        return None
    stamp = read_stamp(archive)
    if all(stamp.get(key) == value.lower() for key, value in pins.items() if value):
        return {key: stamp[key] for key in ("sha256", "git_blob")}
    digests = digests_of(archive)
    if mismatch(digests, pins):
        return None
    write_stamp(archive, **digests)
    return digests


def unpinned(name: str, sha256: str) -> str:
    return (
        f"{name} is not pinned, so it was not used; its SHA-256 is {sha256}: if you trust it, record "
        f'sha256 = "{sha256}" under [tool.invoke-tasks.data] in pixi.toml.'
    )


# ----------------------------------------------------------------- configuration
def manifest_table(manifest: Path | dict = MANIFEST) -> dict:
    """[tool.invoke-tasks.data] of pixi.toml (a path or the parsed file), or {}."""
    if isinstance(manifest, Path):
        try:
            with manifest.open("rb") as stream:
                manifest = tomllib.load(stream)
        except FileNotFoundError:
            raise FetchError(f"{manifest} not found; run this from the project that holds pixi.toml.") from None
        except tomllib.TOMLDecodeError as error:
            raise FetchError(f"{manifest} is not valid TOML ({error}).") from None
    table = manifest.get("tool", {}).get("invoke-tasks", {}).get("data", {})
    if not isinstance(table, dict):
        raise FetchError("[tool.invoke-tasks.data] in pixi.toml must be a table.")
    return table


def environment_overrides(environ) -> dict:
    """INVOKE_PROJECT_DATA_GIT_BLOB=... and the like, as a table."""
    return {k.removeprefix(ENV_PREFIX).lower(): v for k, v in environ.items() if k.startswith(ENV_PREFIX)}


def _setting(key: str, value, where: str):
    if isinstance(DEFAULTS[key], int):
        try:
            return int(str(value).strip())
        except ValueError:
            raise FetchError(f"data.{key} (from {where}) must be a whole number, not {value!r}.") from None
    value = str(value).strip()
    digits = {"sha256": 64, "git-blob": 40}.get(key)
    if digits and value and not re.fullmatch(f"[0-9a-fA-F]{{{digits}}}", value):
        raise FetchError(f"data.{key} (from {where}) must be {digits} hexadecimal digits, not {value!r}.")
    return value


def data_config(manifest: Path | dict = MANIFEST, overrides=(), environ=None) -> dict:
    """The data settings: pixi.toml's table, then ``overrides`` [(where, table)], then the environment.

    The one reader of [tool.invoke-tasks.data], for this script and the Invoke settings. A
    pin that pixi.toml records may be replaced but not emptied: verification fails closed.
    """
    config = dict(DEFAULTS)
    environ = os.environ if environ is None else environ
    layers = [("pixi.toml", manifest_table(manifest)), *overrides]
    layers.append((f"the {ENV_PREFIX}* variables", environment_overrides(environ)))
    for where, table in layers:
        for raw_key, value in table.items():
            key = raw_key.replace("_", "-")
            if key not in DEFAULTS:
                raise FetchError(f"{where} has no data setting {raw_key!r} (known: {', '.join(DEFAULTS)}).")
            value = _setting(key, value, where)
            if key in PINS and config[key] and not value:
                raise FetchError(
                    f"{where} sets data.{key} empty, which would remove its pin; a pin may be replaced, never removed."
                )
            config[key] = value
    return config


# ---------------------------------------------------------------------- fetching
def check_url(url: str, pins: dict[str, str]) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "http" and not pins.get("sha256"):
        raise FetchError(f"{url} is not encrypted (http://); use https:// or pin its sha256 in pixi.toml.")
    if scheme not in {"https", "http", "file"}:
        raise FetchError(f"{url} is not an https:// URL; fetch-data downloads only over https.")


@contextlib.contextmanager
def terminate_cleanly():
    """SIGTERM raises SystemExit here, so the cleanup below runs (main thread only: Python's rule)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def download(url: str, partial: Path, max_bytes: int, deadline: float, timeout: float) -> None:
    """Copy ``url`` into ``partial``; more than ``max_bytes``, or past ``deadline`` seconds, is an error."""
    end = time.monotonic() + deadline
    with urllib.request.urlopen(url, timeout=min(timeout, deadline)) as response, partial.open("wb") as out:
        length = response.headers.get("Content-Length") if response.headers else None
        total = int(length) if length and length.isdigit() else None
        if total and total > max_bytes:
            raise FetchError(f"{url} is {total:,} bytes, over the limit of {max_bytes:,} (data.max-size-mb).")
        written = 0
        name = PurePosixPath(urllib.parse.urlsplit(url).path).name or url
        with Progress(f"downloading {name}", total) as shown:
            # read1: one receive at a time, so a server trickling bytes cannot outlast the deadline.
            while block := response.read1(1 << 16):
                written += len(block)
                if written > max_bytes:
                    raise FetchError(f"{url} sent over {max_bytes:,} bytes, the limit (data.max-size-mb in pixi.toml).")
                if time.monotonic() > end:
                    raise FetchError(f"{url} did not arrive within {deadline:g} s; try again on a faster network.")
                out.write(block)
                shown.update(written)


def fetch(
    url: str,
    destination: Path,
    sha256: str = "",
    timeout: float = 60,
    git_blob: str = "",
    max_bytes: int = DEFAULTS["max-size-mb"] * MiB,
    deadline: float = DEADLINE_S,
    allow_download: bool = True,
) -> Path:
    """The archive at ``destination``, verified against the pins; downloaded first where needed.

    The download goes to a ``.part`` name and is renamed only once it matches a pin, so
    an interrupted (even by SIGTERM) or wrong download never looks like good data.
    """
    destination = Path(destination)
    pins = {"sha256": sha256.strip().lower(), "git_blob": git_blob.strip().lower()}
    if destination.is_file():
        if not any(pins.values()):
            raise FetchError(unpinned(str(destination), sha256_of(destination)))
        if verify(destination, pins):
            return destination
        if not allow_download:
            raise FetchError(f"{destination} does not match its pin ({mismatch(digests_of(destination), pins)}).")
        print(f"{destination} does not match its pinned digest; downloading it again.", file=sys.stderr)
    elif not allow_download:
        raise FetchError(f"{destination} is missing; run `pixi run fetch-data` where the network is reachable.")
    check_url(url, pins)
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    os.close(descriptor)
    partial = Path(name)
    try:
        with terminate_cleanly():
            download(url, partial, max_bytes, deadline, timeout)
        digests = digests_of(partial)
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", error)
        raise FetchError(
            f"could not download the MNIST data ({reason}): this machine seems to have no internet access. "
            f"On a machine that has it, download {url} and copy the file here as {destination}, then run "
            "this again; or try everything offline first with `pixi run demo` (a tiny made-up MNIST)."
        ) from None
    except BaseException as error:  # too big, too slow, Ctrl-C, SIGTERM: no .part left behind
        partial.unlink(missing_ok=True)
        if isinstance(error, FetchError):
            raise FetchError(f"{error.args[0].rstrip('.')}; the download was deleted.") from None
        raise
    return keep_if_pinned(url, partial, destination, digests, pins)


def keep_if_pinned(url: str, partial: Path, destination: Path, digests: dict, pins: dict) -> Path:
    """Rename the download into place if it matches a pin; delete it otherwise."""
    if not any(pins.values()):
        partial.unlink()
        raise FetchError(unpinned(url, digests["sha256"]))
    problem = mismatch(digests, pins)
    if problem:
        partial.unlink()
        raise FetchError(f"{url} has {problem}; the download was deleted.")
    os.chmod(partial, 0o644)  # mkstemp made it 0600; data is for the group's jobs too
    partial.replace(destination)
    stamp_path(destination).unlink(missing_ok=True)  # it described the file just replaced
    write_stamp(destination, **digests)
    if not pins["sha256"]:
        print(
            f"warning: {destination.name} was verified by its git blob id only; its SHA-256 is "
            f'{digests["sha256"]}: record sha256 = "{digests["sha256"]}" under [tool.invoke-tasks.data] in pixi.toml.',
            file=sys.stderr,
        )
    return destination


# --------------------------------------------------------------------- extracting
def safe_members(tar: tarfile.TarFile, archive: Path, max_bytes: int) -> list[tarfile.TarInfo]:
    """Every member, if all lie under data/, none is a link or device, and they sum to at most max_bytes."""
    members, total = [], 0
    for member in tar:
        parts = PurePosixPath(member.name).parts
        if not parts and member.isdir():
            continue  # "./", the archive's root
        if member.name.startswith("/") or ".." in parts or not parts or parts[0] != DATA_DIR:
            raise FetchError(f"{archive.name} holds {member.name!r}, outside {DATA_DIR}/, so nothing was extracted.")
        if not (member.isfile() or member.isdir()):
            kind = "a link" if member.issym() or member.islnk() else "a special file"
            raise FetchError(f"{archive.name} holds {kind}, {member.name!r}, so nothing was extracted.")
        total += member.size
        if total > max_bytes or len(members) >= MAX_MEMBERS:
            raise FetchError(
                f"{archive.name} unpacks to more than {max_bytes // MiB:,} MiB or {MAX_MEMBERS:,} files "
                "(data.max-extracted-mb in pixi.toml), so nothing was extracted."
            )
        members.append(member)
    return members


def extract(archive: Path, into: Path, max_bytes: int = DEFAULTS["max-extracted-mb"] * MiB) -> bool:
    """Unpack the tarball (it holds data/MNIST/raw/...) into ``into``/data/, and nowhere else.

    Returns False (and does nothing) when this archive was already extracted there and
    every extracted file is still in place. Every member is checked before any is
    unpacked; files go to a temporary directory first and are renamed into place one by
    one, so a refused or interrupted run leaves no half-written file.
    """
    archive, into = Path(archive), Path(into)
    key = str(into.resolve())
    done = read_stamp(archive).get("extracted", {}).get(key)
    if done and all((into / name).is_file() and (into / name).stat().st_size == size for name, size in done.items()):
        return False
    files = {}
    with tarfile.open(archive) as tar:
        members = safe_members(tar, archive, max_bytes)
        (into / DATA_DIR).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=into / DATA_DIR, prefix=".extract-") as scratch:
            # tarfile's "data" filter (Python >= 3.11.4) as a second guard where it exists.
            guard = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            with Progress(f"extracting {archive.name}", sum(member.size for member in members)) as shown:
                for member in members:
                    tar.extract(member, scratch, **guard)
                    shown.advance(member.size)
            for path in sorted(Path(scratch).rglob("*")):
                if path.is_file() and not path.is_symlink():
                    name = path.relative_to(scratch).as_posix()
                    target = into / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    files[name] = path.stat().st_size
                    os.chmod(path, 0o644)  # readable by the group's jobs; never the archive's own bits
                    os.replace(path, target)
    extracted = {**read_stamp(archive).get("extracted", {}), key: files}
    write_stamp(archive, extracted=extracted)
    return True


# ---------------------------------------------------------------------------- CLI
def fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="where to download from (default: pixi.toml's)")
    parser.add_argument("--sha256", help="expected SHA-256 (default: pixi.toml's)")
    parser.add_argument("--git-blob", help="expected git blob id (default: pixi.toml's)")
    parser.add_argument("--output", type=Path, help="archive path (default: pixi.toml's archive)")
    parser.add_argument("--extract", type=Path, default=None, help="also extract into DIR/data/")
    parser.add_argument("--no-download", action="store_true", help="verify the archive in place, never download")
    parser.add_argument("--deadline", type=float, default=DEADLINE_S, help="seconds the whole download may take")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    given = {"url": args.url, "sha256": args.sha256, "git-blob": args.git_blob, "archive": args.output}
    given = {key: str(value) for key, value in given.items() if value is not None}
    try:
        # Everything on the command line: pixi.toml is not needed (the environment still applies).
        manifest = {} if len(given) == 4 else MANIFEST
        config = data_config(manifest, [("the command line", given)])
        if not config["url"] and not args.no_download:
            raise FetchError("pixi.toml names no data: set url (and sha256) under [tool.invoke-tasks.data].")
    except FetchError as error:
        return fail(str(error), 2)
    archive = Path(config["archive"])
    try:
        with terminate_cleanly():
            return fetch_and_extract(config, archive, args)
    except FetchError as error:
        return fail(str(error), 1)
    except OSError as error:
        return fail(f"cannot write {archive} or extract it ({error.strerror or error}).", 1)


def fetch_and_extract(config: dict, archive: Path, args) -> int:
    fetch(
        config["url"], archive, config["sha256"], git_blob=config["git-blob"],
        max_bytes=config["max-size-mb"] * MiB, deadline=args.deadline, allow_download=not args.no_download,
    )  # fmt: skip
    stamp = read_stamp(archive)
    pinned = "SHA-256" if config["sha256"] else "git blob id"
    print(f"{archive}: verified by its {pinned} (git blob {stamp['git_blob']}, SHA-256 {stamp['sha256']})")
    if args.extract:
        try:
            changed = extract(archive, args.extract, config["max-extracted-mb"] * MiB)
        except (tarfile.TarError, EOFError, zlib.error) as error:
            return fail(f"cannot extract {archive} into {args.extract} ({error}); delete it and run again.", 1)
        where = args.extract / DATA_DIR
        print(f"extracted into {where}" if changed else f"already extracted into {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
