"""Benchmark: wall time to render each preset with Copier (goal for the defaults: <= 2 s).

python bench/bench_render.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from maintainer.render import load_answers, preset_names, render  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="renderings per preset (5)")
    args = parser.parse_args()
    for preset in preset_names():
        seconds = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                render(Path(tmp) / "project", load_answers(preset))
                seconds.append(time.perf_counter() - start)
        print(
            f"{preset:16} median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s "
            f"over {args.repeat} renderings"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
