"""Sinks: where per-episode statistics go; each has ``open``, ``write(record)`` and ``close``.

The ``sinks`` config group holds several at once (``'sinks=[parquet,console]'``); the runner
instantiates each node and hands every finished episode to every sink.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from rlrec.records import EpisodeRecord, RunInfo


@runtime_checkable
class Sink(Protocol):
    """The interface every sink implements."""

    def open(self, run: RunInfo) -> None:
        """Called once before the first episode."""

    def write(self, record: EpisodeRecord) -> None:
        """Called once per finished episode, in episode order."""

    def close(self, summary: dict[str, Any]) -> None:
        """Called once at the end, also after an error or an interrupt (``summary['status']``)."""
