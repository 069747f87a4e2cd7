"""Summarize runs after the fact: ``python scripts/summarize.py <run, sweep or folder of sweeps>``.

For a sweep this writes what the end of the sweep writes (summary.parquet, groups.parquet,
summary.md, learning_curves.png at its root) and prints the groups; a folder is searched for
sweeps; a single run is printed only. Exits 1 if any job did not complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlrec.sweep import summarize_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a run directory, a sweep, or a folder of sweeps")
    parser.add_argument("--window", type=int, default=100, help="episodes in the moving average")
    args = parser.parse_args()
    if not args.path.is_dir():
        print(f"summarize: error: {args.path} is not a folder", file=sys.stderr)
        return 2
    summaries = summarize_path(args.path, args.window)
    if not summaries:
        print(f"summarize: error: no rlrec run under {args.path}", file=sys.stderr)
        return 2
    for summary in summaries:
        print(summary.markdown)
    return 1 if any(summary.failed for summary in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
