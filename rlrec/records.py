"""What one finished episode leaves behind, and its Arrow schema in ``episodes.parquet``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa


@dataclass(slots=True)
class EpisodeRecord:
    """One finished episode: the runner makes it, every sink receives it."""

    episode: int
    seed: int
    episode_return: float
    length: int
    duration_s: float
    terminated: bool
    truncated: bool
    video: str | None = None
    success: bool | None = None
    video_reason: str | None = None
    obs_digest: str = ""
    env_index: int = 0  # which sub-environment of a vector env ran it
    worker: int = 0  # which worker process ran it
    actions: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class RunInfo:
    """What every sink may need to know about the run it records."""

    run_dir: Path
    env_id: str
    run_seed: int
    job: int
    episodes: int
    config: dict[str, Any]


#: Columns of ``episodes.parquet``, in order. ``env_id``, ``run_seed`` and ``job`` repeat per row so
#: that a sweep's files can be read together and still be told apart.
EPISODE_SCHEMA = pa.schema(
    [
        pa.field("episode", pa.int64(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("return", pa.float64(), nullable=False),
        pa.field("length", pa.int64(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("terminated", pa.bool_(), nullable=False),
        pa.field("truncated", pa.bool_(), nullable=False),
        pa.field("video", pa.string()),
        pa.field("success", pa.bool_()),
        pa.field("video_reason", pa.string()),
        pa.field("obs_digest", pa.string(), nullable=False),
        pa.field("env_index", pa.int64(), nullable=False),
        pa.field("worker", pa.int64(), nullable=False),
        pa.field("env_id", pa.string(), nullable=False),
        pa.field("run_seed", pa.int64(), nullable=False),
        pa.field("job", pa.int64(), nullable=False),
    ]
)

#: The columns that vary per episode, in ``EpisodeRecord`` field order.
RECORD_COLUMNS = (
    "episode",
    "seed",
    "return",
    "length",
    "duration_s",
    "terminated",
    "truncated",
    "video",
    "success",
    "video_reason",
    "obs_digest",
    "env_index",
    "worker",
)

#: Key of the resolved run config (JSON) in the Parquet file's key-value metadata.
CONFIG_METADATA_KEY = "rlrec.config"
VERSIONS_METADATA_KEY = "rlrec.versions"
