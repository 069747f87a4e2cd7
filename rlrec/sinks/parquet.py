"""Per-episode rows to ``episodes.parquet``, written so that a crash loses no finished episode.

While the run goes on, finished episodes are flushed every ``flush_seconds`` (or every
``batch_rows``) to ``episodes/part-NNNNN.parquet``, each part written under a dot-prefixed name
and renamed, so a part is whole or absent. When the run ends the parts are merged, a batch at a
time, into ``episodes.parquet`` and the folder is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlrec.records import (
    CONFIG_METADATA_KEY,
    EPISODE_SCHEMA,
    RECORD_COLUMNS,
    VERSIONS_METADATA_KEY,
    EpisodeRecord,
    RunInfo,
)

EPISODES_FILE = "episodes.parquet"
PARTS_DIR = "episodes"


class ParquetSink:
    """Write every finished episode to Parquet in the run directory."""

    def __init__(self, flush_seconds: float = 1.0, batch_rows: int = 65_536) -> None:
        self.flush_seconds = float(flush_seconds)
        self.batch_rows = int(batch_rows)

    def open(self, run: RunInfo) -> None:
        self._run = run
        self._parts = run.run_dir / PARTS_DIR
        self._parts.mkdir(parents=True, exist_ok=True)
        self._next_part = _count_parts(self._parts)
        self._schema = EPISODE_SCHEMA.with_metadata(
            {
                CONFIG_METADATA_KEY: json.dumps(run.config),
                VERSIONS_METADATA_KEY: json.dumps(_versions()),
            }
        )
        self._columns: dict[str, list[Any]] = {name: [] for name in RECORD_COLUMNS}
        self._appenders = [self._columns[name].append for name in RECORD_COLUMNS]
        self._flush_at = time.monotonic() + self.flush_seconds

    def write(self, record: EpisodeRecord) -> None:
        for append, value in zip(self._appenders, _values(record), strict=True):
            append(value)
        if len(self._columns["episode"]) >= self.batch_rows or time.monotonic() >= self._flush_at:
            self.flush()

    def flush(self) -> None:
        """Write the episodes received since the last flush as one whole part file."""
        self._flush_at = time.monotonic() + self.flush_seconds
        rows = len(self._columns["episode"])
        if not rows:
            return
        run = self._run
        arrays = [
            _column(self._columns[name], EPISODE_SCHEMA.field(name).type) for name in RECORD_COLUMNS
        ]
        arrays += [
            _column([run.env_id] * rows, pa.string()),
            _column([run.run_seed] * rows, pa.int64()),
            _column([run.job] * rows, pa.int64()),
        ]
        table = pa.Table.from_arrays(arrays, schema=self._schema)
        _write_whole(table, self._parts / f"part-{self._next_part:05d}.parquet")
        self._next_part += 1
        for column in self._columns.values():
            column.clear()

    def close(self, summary: dict[str, Any]) -> None:
        self.flush()
        merge_parts(self._parts, self._run.run_dir / EPISODES_FILE, self._schema, self.batch_rows)


def merge_parts(parts: Path, target: Path, schema: pa.Schema, batch_rows: int) -> None:
    """Merge ``parts/part-*.parquet`` into ``target`` (written whole) and remove ``parts``."""
    files = sorted(parts.glob("part-*.parquet"))
    tmp = target.with_name(f".{target.name}.partial")
    with pq.ParquetWriter(tmp, schema) as writer:
        pending: list[pa.Table] = []
        pending_rows = 0
        for file in files:
            table = pq.ParquetFile(file).read()  # not read_table: that imports pyarrow.dataset
            pending.append(table)
            pending_rows += table.num_rows
            if pending_rows >= batch_rows:  # one row group per batch, never the whole run at once
                writer.write_table(pa.concat_tables(pending))
                pending, pending_rows = [], 0
        if pending or not files:
            writer.write_table(pa.concat_tables(pending) if pending else schema.empty_table())
    os.replace(tmp, target)
    shutil.rmtree(parts)


_NUMPY_TYPES = {pa.int64(): np.int64, pa.float64(): np.float64}


def _column(values: list[Any], type_: pa.DataType) -> pa.Array:
    """Python values as an Arrow array, laid out from numpy buffers.

    ``pa.array`` and ``pa.scalar`` import pandas whenever it is installed: a quarter of a second,
    a real share of a short run. Arrow's layout for these four types is simple enough to build.
    """
    n = len(values)
    valid = [v is not None for v in values]
    nulls = n - sum(valid)
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    if pa.types.is_boolean(type_):
        buffers = [
            validity,
            pa.py_buffer(np.packbits([bool(v) for v in values], bitorder="little")),
        ]
    elif pa.types.is_string(type_):
        encoded = [v.encode() if v is not None else b"" for v in values]
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    else:
        buffers = [validity, pa.py_buffer(np.asarray(values, _NUMPY_TYPES[type_]))]
    return pa.Array.from_buffers(type_, n, buffers, null_count=nulls)


def _values(record: EpisodeRecord) -> tuple[Any, ...]:
    return (
        record.episode,
        record.seed,
        record.episode_return,
        record.length,
        record.duration_s,
        record.terminated,
        record.truncated,
        record.video,
        record.success,
    )


def _write_whole(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _count_parts(parts: Path) -> int:
    return len(list(parts.glob("part-*.parquet")))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in (
        "rlrec",
        "gymnasium",
        "numpy",
        "hydra-core",
        "opencv-python-headless",
        "pyarrow",
    ):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found
