"""Record inside a loop you own, on a Gymnasium vector env.

- ``RecordVideo`` and ``RecordEpisodeStatistics``: drop-ins for ``gymnasium.wrappers.vector``'s
  classes of the same names, with the tiled grid streamed to an encoder process;
- ``Recorder``: the whole of rlrec around a vector env: one row per finished episode with its
  ``env_index``, films of chosen sub-environments or one tiled grid.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "RecordEpisodeStatistics": "rlrec.wrappers.vector.statistics",
    "RecordVideo": "rlrec.wrappers.vector.video",
    "Recorder": "rlrec.wrappers.vector.recorder",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
