"""``learning_curve.png`` at the end of a run: returns, their moving average, filmed episodes, and
the run's memory over time."""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from rlrec.config import check_number
from rlrec.records import EpisodeRecord, RunInfo
from rlrec.rundir import RunDir
from rlrec.sinks import Sink


class PlotSink(Sink):
    """Keep every return (8 bytes an episode) and draw the learning curve when the run ends."""

    def __init__(self, window: int = 100) -> None:
        check_number("sinks.plot.window", window, 1, integer=True)
        self.window = window

    def open(self, run: RunInfo) -> None:
        self._run = run
        self._returns = array("d")
        self._filmed: list[int] = []

    def restore(self, records: list[EpisodeRecord]) -> None:
        """A resumed run's earlier episodes, which the curve shows too."""
        for record in records:
            self.write(record)

    def write(self, record: EpisodeRecord) -> None:
        self._returns.append(record.episode_return)
        if record.video is not None:
            self._filmed.append(record.episode)

    def close(self, summary: dict[str, Any]) -> None:
        from rlrec.plots import plot_learning_curve

        files = RunDir(self._run.run_dir)
        if self._returns:
            plot_learning_curve(
                np.frombuffer(self._returns),
                self._filmed,
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
    return table["episode"].to_numpy(), table["rss_bytes"].to_numpy()
