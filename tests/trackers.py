"""A tracker built on rlrec's tracker base for the tests: it logs each episode to a JSON-lines file
in the run directory, and goes down at a chosen episode (or cannot start at all)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlrec.records import RunInfo
from rlrec.sinks.tracker import EpisodeBatch, Tracker

LOG = "flaky.jsonl"


class FlakyTracker(Tracker):
    """Raises at episode ``fail_at`` (never with None); ``start_error``: cannot start;
    ``own_process``: its hooks run in a process of their own."""

    name = "flaky"

    def __init__(
        self, fail_at: int | None = 5, start_error: bool = False, own_process: bool = False
    ) -> None:
        self.fail_at, self.start_error = fail_at, start_error
        self.runs_in = "process" if own_process else "thread"

    def start(self, run: RunInfo, earlier: dict[str, Any] | None) -> dict[str, Any]:
        if self.start_error:
            raise ConnectionRefusedError("[Errno 111] Connection refused (127.0.0.1:9)")
        self._log = Path(run.run_dir) / LOG
        return {"id": earlier["id"] if earlier else "flaky-run-1"}

    def log_episodes(self, batch: EpisodeBatch) -> None:
        with self._log.open("a") as out:
            for episode, _, metrics in batch.rows():
                if episode == self.fail_at:
                    raise RuntimeError("the tracker's server went away")
                out.write(json.dumps({"episode": episode, **metrics}) + "\n")
