"""Draw a run's learning curve after the fact: ``python scripts/plot.py <run dir> [--window N]``.

Writes ``<run dir>/learning_curve.png`` (what the ``plot`` sink draws) from ``episodes.parquet``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow.parquet as pq

from rlrec.plots import plot_learning_curve
from rlrec.sinks.plot import CURVE_FILE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--window", type=int, default=100, help="episodes in the moving average")
    args = parser.parse_args()
    episodes = args.run_dir / "episodes.parquet"
    if not episodes.exists():
        print(f"plot: error: {episodes} does not exist", file=sys.stderr)
        return 2
    table = pq.read_table(episodes, columns=["episode", "return", "video"]).sort_by("episode")
    returns = table["return"].to_numpy()
    filmed = [row["episode"] for row in table.to_pylist() if row["video"]]
    out = args.run_dir / CURVE_FILE
    plot_learning_curve(returns, filmed, args.window, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
