"""The Parquet sink: schema, metadata, part files while running, the merge at the end."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from rlrec.records import EpisodeRecord, RunInfo
from rlrec.runner import record
from rlrec.sinks.parquet import ParquetSink
from tests.conftest import compose_config

CONTRACT_TYPES = {
    "episode": pa.int64(),
    "seed": pa.int64(),
    "return": pa.float64(),
    "length": pa.int64(),
    "duration_s": pa.float64(),
    "terminated": pa.bool_(),
    "truncated": pa.bool_(),
    "video": pa.string(),
    "env_id": pa.string(),
    "run_seed": pa.int64(),
    "job": pa.int64(),
}


def _info(tmp_path, config=None):
    return RunInfo(tmp_path, "CartPole-v1", 11, 3, 10, config or {"seed": 11})


def _record(i, video=None):
    return EpisodeRecord(
        episode=i,
        seed=1000 + i,
        episode_return=float(i),
        length=i + 1,
        duration_s=0.01 * i,
        terminated=i % 2 == 0,
        truncated=i % 2 == 1,
        video=video,
        obs_digest="",
    )


def test_run_file_has_contract_schema_and_config_metadata(tmp_path):
    cfg = compose_config(
        [
            "trigger=periodic",
            "trigger.period=2",
            "episodes=3",
            "seed=9",
            "sinks=[parquet]",
            "env.max_episode_steps=15",
        ]
    )
    record(cfg, tmp_path)
    table = pq.read_table(tmp_path / "episodes.parquet")
    for name, type_ in CONTRACT_TYPES.items():
        assert table.schema.field(name).type == type_, name
    meta = json.loads(table.schema.metadata[b"rlrec.config"])
    assert (
        meta["seed"] == 9 and meta["trigger"]["period"] == 2 and meta["env"]["id"] == "CartPole-v1"
    )
    versions = json.loads(table.schema.metadata[b"rlrec.versions"])
    assert {"rlrec", "gymnasium", "numpy"} <= set(versions)
    rows = table.to_pylist()
    assert [r["video"] for r in rows] == [
        "videos/eval-episode-0.mp4",
        None,
        "videos/eval-episode-2.mp4",
    ]
    assert {(r["env_id"], r["run_seed"], r["job"]) for r in rows} == {("CartPole-v1", 9, 0)}
    assert all(r["duration_s"] > 0 for r in rows)
    assert not (tmp_path / "episodes").exists()
    assert pd.read_parquet(tmp_path / "episodes.parquet")["episode"].tolist() == [0, 1, 2]


def test_parts_are_readable_while_running_and_merged_in_order(tmp_path):
    sink = ParquetSink(flush_seconds=3600, batch_rows=4)
    sink.open(_info(tmp_path))
    for i in range(10):
        sink.write(_record(i))
    parts = sorted((tmp_path / "episodes").glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet"]
    # What a crash right now would leave: a dataset of whole parts, readable by pyarrow and pandas.
    assert ds.dataset(tmp_path / "episodes").to_table()["episode"].to_pylist() == list(range(8))
    assert len(pd.read_parquet(tmp_path / "episodes")) == 8
    sink.close({"status": "complete"})
    table = pq.read_table(tmp_path / "episodes.parquet")
    assert table["episode"].to_pylist() == list(range(10))
    assert table["job"].to_pylist() == [3] * 10
    assert pq.ParquetFile(tmp_path / "episodes.parquet").metadata.num_row_groups == 3
    assert not (tmp_path / "episodes").exists()


def test_flush_interval_writes_parts_by_time(tmp_path):
    sink = ParquetSink(flush_seconds=0.0)
    sink.open(_info(tmp_path))
    sink.write(_record(0))
    sink.write(_record(1))
    assert len(list((tmp_path / "episodes").glob("part-*.parquet"))) == 2
    sink.close({"status": "complete"})
    assert pq.read_table(tmp_path / "episodes.parquet").num_rows == 2


def test_a_run_with_no_episode_still_leaves_a_readable_empty_file(tmp_path):
    sink = ParquetSink()
    sink.open(_info(tmp_path))
    sink.close({"status": "failed"})
    table = pq.read_table(tmp_path / "episodes.parquet")
    assert table.num_rows == 0 and set(CONTRACT_TYPES) <= set(table.column_names)


@pytest.mark.parametrize("batch_rows", [1, 7, 1000])
def test_merge_never_depends_on_batch_size(tmp_path, batch_rows):
    sink = ParquetSink(flush_seconds=3600, batch_rows=batch_rows)
    sink.open(_info(tmp_path))
    for i in range(23):
        sink.write(_record(i, video=f"videos/x-episode-{i}.mp4" if i % 5 == 0 else None))
    sink.close({"status": "complete"})
    rows = pq.read_table(tmp_path / "episodes.parquet").to_pylist()
    assert [r["episode"] for r in rows] == list(range(23))
    assert [r["video"] is not None for r in rows] == [i % 5 == 0 for i in range(23)]
