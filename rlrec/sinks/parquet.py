"""Per-episode rows to Parquet, written so that a crash loses no finished episode.

While the run goes on, finished episodes are flushed every ``flush_seconds`` (or every
``batch_rows``) to ``episodes/part-NNNNN.parquet``, each part written under a dot-prefixed name
and renamed, so a part is whole or absent. When the run ends the parts are merged, a batch at a
time, into ``episodes.parquet`` and the folder is removed. Each episode's actions go the same way
to ``_actions/`` and ``_actions.parquet`` (the underscore keeps folder-level readers off them), so
that any episode can be replayed later.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlrec.config import check_number
from rlrec.records import (
    CONFIG_METADATA_KEY,
    EPISODE_SCHEMA,
    RECORD_COLUMNS,
    VERSIONS_METADATA_KEY,
    EpisodeRecord,
    RunInfo,
    record_values,
)
from rlrec.rundir import RunDir, atomic_path, part_file, part_files
from rlrec.sinks import Sink

log = logging.getLogger(__name__)

#: Keys of ``_actions.parquet``'s metadata: each episode's actions are stored flat.
ACTIONS_SHAPE_KEY = "rlrec.action_shape"
ACTIONS_DTYPE_KEY = "rlrec.action_dtype"
#: Bytes of rows gathered into one row group when parts are merged.
MERGE_BYTES = 16 * 2**20


class PartFiles:
    """A table written as whole part files in a folder, merged into one file at the end."""

    def __init__(self, folder: Path, target: Path, batch_rows: int) -> None:
        self.folder, self.target, self.batch_rows = folder, target, batch_rows
        folder.mkdir(parents=True, exist_ok=True)
        self._next = len(part_files(folder))
        self.schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        """Write ``table`` as the next part, whole or not at all."""
        self.schema = table.schema
        _write_whole(table, part_file(self.folder, self._next))
        self._next += 1

    def merge(self, schema: pa.Schema | None = None) -> None:
        """Merge the parts (a batch of rows at a time) into the target; remove the folder."""
        files = part_files(self.folder)
        schema = schema or self.schema or (pq.read_schema(files[0]) if files else None)
        if schema is not None:
            with atomic_path(self.target) as tmp, pq.ParquetWriter(tmp, schema) as writer:
                pending: list[pa.Table] = []
                rows = size = 0
                for file in files:
                    # ParquetFile, not read_table: that imports pyarrow.dataset (0.1-0.5 s)
                    pending.append(pq.ParquetFile(file).read(use_threads=False))
                    rows += pending[-1].num_rows
                    size += pending[-1].nbytes
                    # One row group per batch: never the whole run in memory, and action lists
                    # (large rows) are bounded by bytes as well as by rows.
                    if rows >= self.batch_rows or size >= MERGE_BYTES:
                        writer.write_table(pa.concat_tables(pending))
                        pending, rows, size = [], 0, 0
                        pa.default_memory_pool().release_unused()
                if pending or not files:
                    writer.write_table(
                        pa.concat_tables(pending) if pending else schema.empty_table()
                    )
        shutil.rmtree(self.folder)


class ParquetSink(Sink):
    """Write every finished episode (and, with ``actions``, its actions) to Parquet."""

    closes_first = True

    def __init__(
        self, flush_seconds: float = 1.0, batch_rows: int = 65_536, actions: bool = True
    ) -> None:
        check_number("sinks.parquet.flush_seconds", flush_seconds, 0)
        check_number("sinks.parquet.batch_rows", batch_rows, 1, integer=True)
        self.flush_seconds = float(flush_seconds)
        self.batch_rows = int(batch_rows)
        self.actions = bool(actions)

    def open(self, run: RunInfo) -> None:
        self._run = run
        files = RunDir(run.run_dir)
        self._episodes = PartFiles(files.episode_parts, files.episodes, self.batch_rows)
        self._metadata = {
            CONFIG_METADATA_KEY: json.dumps(run.config),
            VERSIONS_METADATA_KEY: json.dumps(_versions()),
        }
        self._schema = EPISODE_SCHEMA.with_metadata(self._metadata)
        self._actions = (
            PartFiles(files.action_parts, files.actions, self.batch_rows) if self.actions else None
        )
        self._columns: dict[str, list[Any]] = {name: [] for name in RECORD_COLUMNS}
        self._appenders = [self._columns[name].append for name in RECORD_COLUMNS]
        self._episode_actions: list[list[Any]] = []
        self._flush_at = time.monotonic() + self.flush_seconds

    def write(self, record: EpisodeRecord) -> None:
        for append, value in zip(self._appenders, record_values(record), strict=True):
            append(value)
        if self._actions is not None:
            self._episode_actions.append(record.actions)
        if len(self._columns["episode"]) >= self.batch_rows or time.monotonic() >= self._flush_at:
            self.flush()

    def flush(self) -> None:
        """Write the episodes received since the last flush as whole part files."""
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
        # the actions before the episodes: no episode without its actions. A retry after the
        # episodes' write failed (a full disk) finds these episodes' actions stored already
        if self._actions is not None and self._episode_actions:
            self._write_actions(self._columns["episode"], self._episode_actions)
            self._episode_actions = []
        self._episodes.write(pa.Table.from_arrays(arrays, schema=self._schema))
        for column in self._columns.values():
            column.clear()
        pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed pages otherwise

    def close(self, summary: dict[str, Any]) -> None:
        self.flush()
        self._episodes.merge(self._schema)
        if self._actions is not None:
            self._actions.merge()

    def _write_actions(self, episodes: list[int], actions: list[list[Any]]) -> None:
        """One row per episode: its actions flattened, their shape and dtype in the metadata."""
        arrays = [np.asarray(a) for a in actions]
        dtype, shape = arrays[0].dtype, arrays[0].shape[1:]
        if dtype.kind not in "biuf" or any(
            a.dtype != dtype or a.shape[1:] != shape for a in arrays
        ):
            log.warning(
                "actions of dtype %s cannot be stored as arrays; replay is unavailable "
                "for this run",
                dtype,
            )
            self._actions.merge()  # what was stored so far stays readable
            self._actions = None
            return
        sizes = np.array([a.size for a in arrays], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        values = np.concatenate([a.reshape(-1) for a in arrays])
        value_type = pa.from_numpy_dtype(values.dtype)
        lists = pa.LargeListArray.from_arrays(
            pa.Array.from_buffers(pa.int64(), len(offsets), [None, pa.py_buffer(offsets)]),
            pa.Array.from_buffers(value_type, len(values), [None, pa.py_buffer(values)]),
        )
        metadata = self._metadata | {
            ACTIONS_SHAPE_KEY: json.dumps(list(shape)),
            ACTIONS_DTYPE_KEY: dtype.str,
        }
        schema = pa.schema(
            [pa.field("episode", pa.int64(), nullable=False), pa.field("actions", lists.type)],
            metadata=metadata,
        )
        self._actions.write(
            pa.Table.from_arrays([_column(episodes, pa.int64()), lists], schema=schema)
        )


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
        if nulls:  # a null's slot holds 0
            values = [0 if v is None else v for v in values]
        buffers = [validity, pa.py_buffer(np.asarray(values, _NUMPY_TYPES[type_]))]
    return pa.Array.from_buffers(type_, n, buffers, null_count=nulls)


def _write_whole(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


#: The packages whose versions each run records, and their modules: a loaded module's
#: ``__version__`` is its package's version (opencv's is not; rlrec has none).
_PACKAGES = {
    "rlrec": None,
    "gymnasium": "gymnasium",
    "numpy": "numpy",
    "hydra-core": "hydra",
    "opencv-python-headless": None,
    "av": "av",
    "pyarrow": "pyarrow",
}


def _versions() -> dict[str, str]:
    """Versions from the loaded modules where they can (``importlib.metadata`` looks through
    every installed package: 2-3 ms a lookup, and 11 ms to import)."""
    found = {}
    for package, module in _PACKAGES.items():
        loaded = sys.modules.get(module) if module else None
        if loaded is not None and isinstance(getattr(loaded, "__version__", None), str):
            found[package] = loaded.__version__
            continue
        from importlib.metadata import PackageNotFoundError, version

        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found
