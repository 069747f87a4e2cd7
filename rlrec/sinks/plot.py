"""``learning_curve.png`` at the end of a run: returns, their moving average, filmed episodes, and
the run's memory over time."""

from __future__ import annotations

from typing import Any

from rlrec.config import check_number
from rlrec.plots import CurveData
from rlrec.records import EpisodeRecord, RunInfo
from rlrec.rundir import RunDir, numbers
from rlrec.sinks import Sink


class PlotSink(Sink):
    """Keep every return (8 bytes an episode) and draw the learning curve when the run ends."""

    closes_first = True

    def __init__(self, window: int = 100) -> None:
        check_number("sinks.plot.window", window, 1, integer=True)
        self.window = window

    def open(self, run: RunInfo) -> None:
        self._run = run
        self._curve = CurveData()

    def restore(self, records: list[EpisodeRecord]) -> None:
        """A resumed run's earlier episodes, which the curve shows too."""
        for record in records:
            self._curve.add(record)

    def write(self, record: EpisodeRecord) -> None:
        self._curve.add(record)

    def close(self, summary: dict[str, Any]) -> None:
        from rlrec.plots import plot_learning_curve

        files = RunDir(self._run.run_dir)
        if len(self._curve.returns):
            plot_learning_curve(
                self._curve.returns,
                self._curve.filmed,
                self.window,
                files.learning_curve,
                memory=run_memory(files),
            )


def run_memory(files: RunDir) -> tuple[Any, Any] | None:
    """The run's memory samples as (episodes, bytes), from ``_memory.parquet`` (written before
    the sinks close); None where the run sampled none."""
    table = files.read_memory()
    if table is None or table.num_rows == 0:
        return None
    return numbers(table["episode"]), numbers(table["rss_bytes"])
