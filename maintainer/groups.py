"""The PEP 735 dependency groups of pyproject.toml: the one list of the maintainer's tools.

Used by .ci/install (into .venv) and by the nox sessions (into their own environments).
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def group(name: str) -> list[str]:
    """A group's requirements, included groups expanded (PEP 735 `include-group`)."""
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    if name not in groups:
        raise SystemExit(f"pyproject.toml has no dependency group {name!r} (groups: {', '.join(groups)}).")
    expanded = []
    for entry in groups[name]:
        expanded += group(entry["include-group"]) if isinstance(entry, dict) else [entry]
    return expanded


def split_torch(requirements: list[str]) -> tuple[list[str], list[str]]:
    """(the rest, torch pinned to its CPU build): a bare torch pin pulls the multi-GB CUDA build on Linux."""
    torch = [r.replace(" ", "") for r in requirements if r.replace(" ", "").startswith("torch==")]
    rest = [r for r in requirements if r.replace(" ", "") not in torch]
    return rest, [f"{pin}+cpu" for pin in torch]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group")
    parser.add_argument("--requirements", required=True, help="write the group, torch left out, here")
    parser.add_argument("--torch", required=True, help="write torch's CPU pin here (empty if the group has none)")
    args = parser.parse_args()
    rest, torch = split_torch(group(args.group))
    with open(args.requirements, "w") as stream:
        stream.write("".join(f"{r}\n" for r in rest))
    with open(args.torch, "w") as stream:
        stream.write("".join(f"{r}\n" for r in torch))


if __name__ == "__main__":
    main()
