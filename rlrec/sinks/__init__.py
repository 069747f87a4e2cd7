"""Sinks: where per-episode statistics go.

The ``sinks`` config group holds several at once (``'sinks=[parquet,console]'``); each node is
built by its ``_target_`` and receives every finished episode, in episode order. A sink of your own
is any class with ``open(run)``, ``write(record)`` and ``close(summary)``; it may also have
``flush()``, ``restore(records)`` and ``memory(sample)``. Deriving from ``Sink`` gives no-op
defaults for all six.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rlrec.memory import MemorySample
from rlrec.records import EpisodeRecord, RunInfo


class Sink:
    """The interface every sink implements; each hook does nothing unless overridden."""

    #: Closed before the run's end is measured: it finishes files (merges the episodes, draws
    #: the plot) and may take memory doing it. The others close after, given the summary with
    #: the whole run's peak memory, the end included.
    closes_first: ClassVar[bool] = False
    #: Closes after the trackers, given which of them the run gave up on (the report's page).
    closes_last: ClassVar[bool] = False

    def open(self, run: RunInfo) -> None:
        """Called once before the first episode."""

    def restore(self, records: list[EpisodeRecord]) -> None:
        """On resume, right after ``open``: the episodes the run finished before it stopped (they
        are already on disk; a sink that draws or counts across the run may want them)."""

    def write(self, record: EpisodeRecord) -> None:
        """Called once per finished episode, in episode order."""

    def flush(self) -> None:
        """Put everything written so far on disk (before a checkpoint is taken)."""

    def memory(self, sample: MemorySample) -> None:
        """A sample of the run's memory (about once a second, and at the start and the end)."""

    def close(self, summary: dict[str, Any]) -> None:
        """Called once at the end, also after an error or an interrupt (``summary['status']``)."""


class _UserSink(Sink):
    """A sink of the user's that does not derive from ``Sink``: the hooks it lacks do nothing."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        for hook in ("open", "restore", "write", "flush", "memory", "close"):
            method = getattr(sink, hook, None)
            if callable(method):
                setattr(self, hook, method)

    def __repr__(self) -> str:
        return repr(self.sink)


def as_sink(obj: Any) -> Sink:
    """``obj`` as a ``Sink``: itself if it derives from ``Sink``, else wrapped."""
    return obj if isinstance(obj, Sink) else _UserSink(obj)


__all__ = ["Sink", "as_sink"]
