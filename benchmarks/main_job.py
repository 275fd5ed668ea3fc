"""Wall time and peak memory of a command (default: the README's main job).

Usage: python benchmarks/main_job.py [-- COMMAND ...]
Peak memory is the largest resident set of any process the command started (getrusage RUSAGE_CHILDREN).
"""
from __future__ import annotations

import resource
import subprocess
import sys
import time

DEFAULT = [".venv/bin/movie-genres", "train", "--model", "all", "--out", "runs/bench-main"]


def main() -> None:
    cmd = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else DEFAULT
    t = time.perf_counter()
    rc = subprocess.call(cmd)
    wall = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\n| command | exit | wall time | peak RSS |\n| --- | --- | --- | --- |\n| `{' '.join(cmd)}` | {rc} | {wall:.0f} s | {peak_mb:,.0f} MiB |")
    sys.exit(rc)


if __name__ == "__main__":
    main()
