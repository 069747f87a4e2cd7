"""``report.html`` at the end of a run: the summary, the curve, the films, the episodes."""

from __future__ import annotations

from typing import Any

from rlrec.records import EpisodeRecord, RunInfo
from rlrec.report import RunReport, write_run_report
from rlrec.rundir import RunDir
from rlrec.sinks import Sink


class ReportSink(Sink):
    """Keep what the page shows as episodes arrive (a float per episode, a few hundred rows and
    the films), and write the page when the run ends, however it ends."""

    closes_last = True  # the page names the trackers the run gave up on

    def open(self, run: RunInfo) -> None:
        self._run = run
        self._report = RunReport()

    def restore(self, records: list[EpisodeRecord]) -> None:
        """A resumed run's earlier episodes: the page shows the whole run."""
        for record in records:
            self.write(record)

    def write(self, record: EpisodeRecord) -> None:
        self._report.add(record.as_row())

    def close(self, summary: dict[str, Any]) -> None:
        write_run_report(RunDir(self._run.run_dir), self._report, summary, self._run.config)
