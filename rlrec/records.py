"""What one finished episode leaves behind, and its Arrow schema in ``episodes.parquet``.

The schema is derived from ``EpisodeRecord``'s fields: adding a column is adding a field here.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import pyarrow as pa


def _column(
    arrow_type: pa.DataType, *, name: str | None = None, nullable: bool = False, **default: Any
) -> Any:
    """A record field that is a column of ``episodes.parquet`` (named ``name`` if not the field's);
    a nullable column defaults to null."""
    if nullable:
        default.setdefault("default", None)
    return field(metadata={"arrow": arrow_type, "column": name, "nullable": nullable}, **default)


@dataclass(slots=True, kw_only=True)
class EpisodeRecord:
    """One finished episode: the episode core makes it, every sink receives it.

    >>> r = EpisodeRecord(episode=0, seed=1, episode_return=9.0, length=9, duration_s=0.01,
    ...                   terminated=True, truncated=False, obs_digest="00")
    >>> r.as_row()["return"], r.as_row()["video"]
    (9.0, None)
    """

    episode: int = _column(pa.int64())
    #: None where the env was reset without a seed (a user's loop, a vector env's autoreset).
    seed: int | None = _column(pa.int64(), nullable=True)
    episode_return: float = _column(pa.float64(), name="return")
    length: int = _column(pa.int64())
    duration_s: float = _column(pa.float64())
    terminated: bool = _column(pa.bool_())
    truncated: bool = _column(pa.bool_())
    video: str | None = _column(pa.string(), nullable=True)
    success: bool | None = _column(pa.bool_(), nullable=True)
    video_reason: str | None = _column(pa.string(), nullable=True)
    obs_digest: str = _column(pa.string())
    env_index: int = _column(pa.int64(), default=0)  # which sub-environment of a vector env
    worker: int = _column(pa.int64(), default=0)  # which worker process ran it
    #: Not a column: the actions go to ``_actions.parquet`` (for replay).
    actions: list[Any] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        """The record's columns by column name."""
        return dict(zip(RECORD_COLUMNS, record_values(self), strict=True))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EpisodeRecord:
        """The record a row of ``episodes.parquet`` was written from (without its actions)."""
        return cls(**{attr: row[col] for attr, col in _ATTRS_COLUMNS if col in row})


_FIELDS = [f for f in dataclasses.fields(EpisodeRecord) if "arrow" in f.metadata]
_ATTRS_COLUMNS = [(f.name, f.metadata["column"] or f.name) for f in _FIELDS]

#: The columns that vary per episode, in ``EpisodeRecord`` field order.
RECORD_COLUMNS = tuple(column for _, column in _ATTRS_COLUMNS)
#: A record's column values, in ``RECORD_COLUMNS`` order, in one call.
record_values = attrgetter(*(attr for attr, _ in _ATTRS_COLUMNS))

#: Columns that repeat the run's identity on every row, so that a sweep's files read together can
#: still be told apart.
RUN_COLUMNS = (
    pa.field("env_id", pa.string(), nullable=False),
    pa.field("run_seed", pa.int64()),  # null: a Recorder without a run seed
    pa.field("job", pa.int64(), nullable=False),
)

#: Columns of ``episodes.parquet``, in order.
EPISODE_SCHEMA = pa.schema(
    [
        pa.field(column, f.metadata["arrow"], nullable=f.metadata["nullable"])
        for f, (_, column) in zip(_FIELDS, _ATTRS_COLUMNS, strict=True)
    ]
    + list(RUN_COLUMNS)
)


@dataclass(frozen=True)
class RunInfo:
    """What every sink may need to know about the run it records."""

    run_dir: Path
    env_id: str
    run_seed: int | None  # None: a Recorder whose loop seeds its own resets
    job: int
    episodes: int | None  # None: a Recorder, whose loop decides when it ends
    config: dict[str, Any]
    #: The run's process and its command line (a tracker in a process of its own names the
    #: run's program and watches the run's process, not its own).
    pid: int = field(default_factory=os.getpid)
    command: tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv))


#: Key of the resolved run config (JSON) in the Parquet file's key-value metadata.
CONFIG_METADATA_KEY = "rlrec.config"
VERSIONS_METADATA_KEY = "rlrec.versions"
