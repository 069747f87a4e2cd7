"""SIGINT and SIGTERM end a run cleanly; a second one ends it at once.

Cluster schedulers pre-empt with SIGTERM, people press Ctrl-C. The first signal stops the run at
the next safe point: during an episode's steps at once (its partial video is discarded), elsewhere
at the end of the episode, so that no sink is ever interrupted half-way through a write. The run
then writes its finished episodes and ``summary.json`` (``"status": "interrupted"``) first thing,
before anything slow (the report, a timelapse, the trackers). A second signal exits at once, except
during that first write, which it waits for: every episode the console printed is on disk, however
soon the second signal follows the first.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``exit_code`` is 128 + its number (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


class StopSignals:
    """Catches SIGINT and SIGTERM for the duration of a run (in the main thread only)."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signals = signals
        self.in_episode = False  # the runner sets it around an episode's steps
        self.pending: int | None = None  # the first signal
        self.saved = False  # the finished episodes and an "interrupted" summary are on disk
        self._saving = False
        self._second: int | None = None  # a second signal that waits for the saving to end

    def check(self) -> None:
        """Raise ``Interrupted`` if a signal arrived since the last check."""
        if self.pending is not None:
            raise Interrupted(self.pending)

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Install the handlers; restore the previous ones afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals can only be handled in the main thread; a worker's parent does
            return
        previous = {s: signal.signal(s, self._handle) for s in self.signals}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Around the write of what must be on disk when the process ends: a second signal that
        comes meanwhile ends the process as soon as it is done, not before."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
            self.saved = True
            if self._second is not None:
                os._exit(128 + self._second)

    def _handle(self, signum: int, frame: object) -> None:
        if self.pending is None:
            self.pending = signum
            if self.in_episode:
                raise Interrupted(signum)
            return
        if self.saved and not self._saving:  # the second signal: now, nothing is left unwritten
            os._exit(128 + signum)
        # before the episodes are saved: the run goes to its end at once, then to the exit
        self._second = signum
        if self.in_episode:
            raise Interrupted(signum)
