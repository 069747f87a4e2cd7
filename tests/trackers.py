"""A tracker built on rlrec's tracker base for the tests: it logs each episode (and each film) to a
JSON-lines file in the run directory, and goes down at a chosen episode or film (or cannot start at
all)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rlrec.records import RunInfo
from rlrec.sinks.tracker import EpisodeBatch, Tracker

LOG = "flaky.jsonl"


class FlakyTracker(Tracker):
    """Goes down at episode ``fail_at`` (never with None): for good, or for ``down_s`` seconds;
    ``start_error``: cannot start; ``own_process``: its hooks run in a process of their own;
    ``retry_s``: as every tracker's (0 here: given up on at once); ``film``: it goes down when
    handed the film of ``fail_at`` (its row was taken just before), not the row."""

    name = "flaky"

    def __init__(
        self,
        fail_at: int | None = 5,
        start_error: bool = False,
        own_process: bool = False,
        retry_s: float = 0,
        down_s: float | None = None,
        film: bool = False,
    ) -> None:
        self.fail_at, self.start_error, self.down_s = fail_at, start_error, down_s
        self.film = film
        self.runs_in = "process" if own_process else "thread"
        self.retry_s = retry_s
        self._outage_since: float | None = None

    def start(self, run: RunInfo, earlier: dict[str, Any] | None) -> dict[str, Any]:
        if self.start_error:
            raise ConnectionRefusedError("[Errno 111] Connection refused (127.0.0.1:9)")
        self._log = Path(run.run_dir) / LOG
        return {"id": earlier["id"] if earlier else "flaky-run-1"}

    def log_episodes(self, batch: EpisodeBatch) -> None:
        # as a server takes them: one at a time, each kept once (an episode sent again after a
        # retry is not stored twice, as MLflow keeps one copy of an identical metric)
        held = self._held_here()
        with self._log.open("a") as out:
            for episode, _, metrics in batch.rows():
                self._outage(episode == self.fail_at and not self.film)
                if episode not in held:
                    out.write(json.dumps({"episode": episode, **metrics}) + "\n")
                    held.add(episode)

    def log_video(self, episode: int, path: Path) -> None:
        self._outage(episode == self.fail_at and self.film)
        with self._log.open("a") as out:  # every upload, so that one twice shows
            out.write(json.dumps({"film": episode, "name": path.name}) + "\n")

    def _outage(self, begins: bool) -> None:
        """Raise while the server is down: from when it ``begins``, for ``down_s`` or for good."""
        if begins or self._outage_since is not None:
            self._outage_since = self._outage_since or time.monotonic()
            if self.down_s is None or time.monotonic() - self._outage_since < self.down_s:
                raise RuntimeError("the tracker's server went away")

    def _held_here(self) -> set[int]:
        if not self._log.exists():
            return set()
        lines = self._log.read_text().splitlines()
        return {row["episode"] for row in map(json.loads, lines) if "episode" in row}
