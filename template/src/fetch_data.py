#!/usr/bin/env python
"""Download MNIST_data.tar.gz (the lesson's copy from CHTC's templates-GPUs) and check it.

The URL and the expected SHA-256 come from ``[tool.invoke-tasks.data]`` in pixi.toml, so
the Invoke suite and ``pixi run fetch-data`` share one definition.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

MANIFEST = Path(__file__).resolve().parent.parent / "pixi.toml"


class FetchError(Exception):
    """A download that failed or did not match; the message is one sentence."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_config(manifest: Path = MANIFEST) -> dict:
    with manifest.open("rb") as stream:
        return tomllib.load(stream)["tool"]["invoke-tasks"]["data"]


def fetch(url: str, destination: Path, sha256: str = "", timeout: float = 60) -> Path:
    """Download ``url`` to ``destination`` unless a file with the right checksum is there.

    The file is written under a temporary name and renamed only once its checksum
    matches, so an interrupted or wrong download never looks like good data.
    """
    if destination.is_file() and (not sha256 or sha256_of(destination) == sha256):
        return destination
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
            f"could not download {url} ({reason}); this machine may be offline: "
            f"copy MNIST_data.tar.gz to {destination} by hand."
        ) from None
    actual = sha256_of(partial)
    if sha256 and actual != sha256:
        partial.unlink()
        raise FetchError(f"{url} has SHA-256 {actual}, expected {sha256}; the download was discarded.")
    partial.replace(destination)
    if not sha256:
        print(f"warning: no SHA-256 is recorded for {url}; it downloaded as {actual}", file=sys.stderr)
    return destination


def extract(archive: Path, into: Path) -> None:
    """Unpack the tarball (it holds data/MNIST/raw/...) without leaving its tree."""
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")


def main(argv=None) -> int:
    config = data_config()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=config["url"], help="where to download from (default: pixi.toml's)")
    parser.add_argument("--sha256", default=config.get("sha256", ""), help="expected checksum (default: pixi.toml's)")
    parser.add_argument(
        "--output", type=Path, default=Path(config["archive"]), help="archive path (default: %(default)s)"
    )
    parser.add_argument("--extract", type=Path, default=None, help="also extract into this directory")
    args = parser.parse_args(argv)
    try:
        archive = fetch(args.url, args.output, args.sha256)
        print(f"{archive}: SHA-256 {sha256_of(archive)}")
        if args.extract:
            extract(archive, args.extract)
            print(f"extracted into {args.extract}")
    except (FetchError, tarfile.TarError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
