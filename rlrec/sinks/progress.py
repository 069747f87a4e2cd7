"""A tqdm progress bar over episodes."""

from __future__ import annotations

import sys
from typing import Any

from rlrec.records import EpisodeRecord, RunInfo
from rlrec.sinks import Sink


class ProgressSink(Sink):
    """A bar over the run's episodes with the mean return so far.

    Off when stdout is not a terminal (logs, CI, sweeps), unless ``force`` is true.
    """

    def __init__(self, force: bool = False) -> None:
        self.force = force
        self._bar: Any = None

    def open(self, run: RunInfo) -> None:
        if self.force or sys.stdout.isatty():
            from tqdm import tqdm  # only when shown: logs and sweeps never pay for the import

            self._bar = tqdm(total=run.episodes, unit="ep", dynamic_ncols=True, mininterval=0.2)
            self._total = 0.0

    def write(self, record: EpisodeRecord) -> None:
        if self._bar is not None:
            self._total += record.episode_return
            self._bar.update(1)
            if self._bar.n % 50 == 1:  # the postfix redraw is not free; refresh it now and then
                self._bar.set_postfix(mean_return=f"{self._total / self._bar.n:.1f}", refresh=False)

    def close(self, summary: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.close()
