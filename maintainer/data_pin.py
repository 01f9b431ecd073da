"""The real MNIST_data.tar.gz, downloaded where the network is (CI), verified, its SHA-256 compared.

`python -m maintainer.data_pin` renders the defaults preset and runs that project's own
src/fetch_data.py against the URL and pins of its pixi.toml (the template's), so the
download is verified exactly as a user's is: by the git blob id of CHTC's commit, and by
the SHA-256 once the template records it. It prints the SHA-256 either way; where the
template records none yet it says so as a GitHub notice, with the line to paste. Never
run by the tests (they send nothing beyond 127.0.0.1); journey.yml runs it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import tomllib
from pathlib import Path

from maintainer.commands import run
from maintainer.render import load_answers, render


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        project = render(Path(scratch) / "defaults", load_answers("defaults"))
        pins = tomllib.loads((project / "pixi.toml").read_text())["tool"]["invoke-tasks"]["data"]
        fetch = run([sys.executable, "src/fetch_data.py"], cwd=project)
        print(fetch.stdout + fetch.stderr, end="")
        if fetch.returncode != 0:
            print(f"the data archive at {pins['url']} did not verify against the template's pins.", file=sys.stderr)
            return 1
        sha256 = json.loads((project / f"{pins['archive']}.verified").read_text())["sha256"]
    if not pins.get("sha256"):
        print(f'::notice::MNIST_data.tar.gz verified by its git blob id; record sha256 = "{sha256}" in '
              "template/pixi.toml.jinja.")  # fmt: skip
    else:
        print(f"SHA-256 {sha256} matches the template's pin.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
