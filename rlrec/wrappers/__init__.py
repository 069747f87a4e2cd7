"""Record inside a loop you own: wrappers around a Gymnasium env.

- ``RecordVideo`` and ``RecordEpisodeStatistics``: drop-ins for Gymnasium's classes of the same
  names (change the import line), with videos streamed to an encoder process in H.264;
- ``Recorder``: the whole of rlrec (triggers, Parquet, videos, summary, report, trackers) around
  your loop, writing the run directory ``python run.py`` writes.

Each is imported only when asked for: ``RecordEpisodeStatistics`` costs no more than Gymnasium's.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as a static reader (a type checker, the API docs) sees them
    from rlrec.wrappers.recorder import Recorder
    from rlrec.wrappers.statistics import RecordEpisodeStatistics
    from rlrec.wrappers.video import RecordVideo

_WHERE = {
    "RecordEpisodeStatistics": "rlrec.wrappers.statistics",
    "RecordVideo": "rlrec.wrappers.video",
    "Recorder": "rlrec.wrappers.recorder",
}

__all__ = ["RecordEpisodeStatistics", "RecordVideo", "Recorder"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
