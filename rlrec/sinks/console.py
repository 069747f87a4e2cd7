"""A line per episode and the run's summary on stdout: the only part of rlrec that prints."""

from __future__ import annotations

import sys
from typing import Any

from rlrec.config import check_number
from rlrec.records import EpisodeRecord, RunInfo
from rlrec.rundir import RunDir
from rlrec.sinks import Sink


class ConsoleSink(Sink):
    """Print ``Episode 3: 24 steps, return = 24.00`` lines and the run's summary.

    ``every``: a line every ``every`` episodes (1: every episode); a filmed episode's line, which
    names its video, is always printed.
    """

    def __init__(self, every: int = 1) -> None:
        check_number("sinks.console.every", every, 1, integer=True)
        self.every = every

    @property
    def _out(self):  # looked up at each line: a tracker may be watching it (W&B's Logs tab)
        return sys.stdout

    def open(self, run: RunInfo) -> None:
        self._run = run

    def write(self, record: EpisodeRecord) -> None:
        if record.episode % self.every and record.video is None:
            return
        video = f"  -> {record.video}" if record.video else ""
        print(
            f"Episode {record.episode}: {record.length} steps, "
            f"return = {record.episode_return:.2f}{video}",
            file=self._out,
        )

    def close(self, summary: dict[str, Any]) -> None:
        run, ret, length = self._run, summary, summary["length"]
        print(
            f"\n{summary['status'].capitalize()}: {ret['n']} episodes of {run.env_id}, "
            f"{'no run seed' if run.run_seed is None else f'seed {run.run_seed}'} ({run.run_dir})",
            file=self._out,
        )
        if ret["mean"] is not None:
            print(
                f"  return  {_pm(ret)}  95% CI {_ci(ret)}  min {ret['min']:.2f}  "
                f"max {ret['max']:.2f}",
                file=self._out,
            )
        if summary.get("n_nonfinite"):
            print(
                f"  {summary['n_nonfinite']} return(s) NaN or infinite: left out of the "
                "statistics above",
                file=self._out,
            )
        if ret["n"]:
            print(
                f"  length  {_pm(length)}  min {length['min']:.0f}  max {length['max']:.0f}",
                file=self._out,
            )
        if summary.get("success_rate") is not None:
            print(f"  success rate {summary['success_rate']:.1%}", file=self._out)
        if summary.get("videos"):
            print(f"  {summary['videos']} videos in {RunDir(run.run_dir).videos}", file=self._out)
        if summary.get("peak_rss_bytes"):
            print(
                f"  peak memory {summary['peak_rss_bytes'] / 2**20:.0f} MiB "
                f"(rlrec and its encoder and worker processes)",
                file=self._out,
            )
        self._out.flush()


def _pm(stats: dict[str, Any]) -> str:
    std = "n/a" if stats["std"] is None else f"{stats['std']:.2f}"
    return f"mean {stats['mean']:.2f} ± {std}"


def _ci(stats: dict[str, Any]) -> str:
    if stats["ci95_low"] is None:
        return "n/a (needs 2 episodes)"
    return f"[{stats['ci95_low']:.2f}, {stats['ci95_high']:.2f}]"
