"""Draw a run's learning curve after the fact: ``python scripts/plot.py <run dir> [--window N]``.

Writes ``<run dir>/learning_curve.png`` (what the ``plot`` sink draws) from ``episodes.parquet``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlrec.plots import plot_learning_curve
from rlrec.rundir import RunDir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--window", type=int, default=100, help="episodes in the moving average")
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    table = run.read_episodes()  # the merged file, or a stopped run's parts
    if table is None:
        print(f"plot: error: {run.path} holds no episodes", file=sys.stderr)
        return 2
    table = table.select(["episode", "return", "video"]).sort_by("episode")
    returns = table["return"].to_numpy()
    filmed = [row["episode"] for row in table.to_pylist() if row["video"]]
    out = run.learning_curve
    plot_learning_curve(returns, filmed, args.window, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
