"""The console and progress sinks, on the streams a user would see."""

from __future__ import annotations

import io
import sys

import pytest

from rlrec.records import EpisodeRecord, RunInfo
from rlrec.sinks.console import ConsoleSink
from rlrec.sinks.progress import ProgressSink
from rlrec.stats import RunningStats


def _record(episode, episode_return, length, video=None):
    return EpisodeRecord(
        episode=episode,
        seed=0,
        episode_return=episode_return,
        length=length,
        duration_s=0.1,
        terminated=True,
        truncated=False,
        video=video,
        obs_digest="",
    )


def _run(tmp_path, episodes=3):
    return RunInfo(tmp_path, "CartPole-v1", 0, 0, episodes, {})


def _summary(returns):
    stats = RunningStats()
    for r in returns:
        stats.add(r)
    return {
        "status": "complete",
        **stats.summary(),
        "length": stats.summary(),
        "success_rate": None,
        "videos": 0,
    }


def test_console_prints_every_nth_episode_and_the_summary(tmp_path, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    sink = ConsoleSink(every=2)
    sink.open(_run(tmp_path, 5))
    for i in range(5):
        sink.write(
            _record(
                i,
                10.0 + i,
                10 + i,
                video="videos/eval-episode-3.mp4" if i == 3 else None,
            )
        )
    sink.close(_summary([10.0, 11.0, 12.0, 13.0, 14.0]))
    text = out.getvalue()
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("Episode")] == [
        "Episode 0",
        "Episode 2",
        "Episode 3",  # filmed: always shown
        "Episode 4",
    ]
    assert "Episode 2: 12 steps, return = 12.00" in text
    assert "mean 12.00 ± 1.58" in text and "95% CI [10.04, 13.96]" in text
    assert "success rate" not in text


def test_console_prints_every_episode_by_default(tmp_path, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    sink = ConsoleSink()
    sink.open(_run(tmp_path, 1000))
    for i in range(1000):
        sink.write(_record(i, 1.0, 1))
    assert sum(line.startswith("Episode") for line in out.getvalue().splitlines()) == 1000


def test_console_summary_of_one_episode_says_why_there_is_no_interval(tmp_path, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    sink = ConsoleSink()
    sink.open(_run(tmp_path, 1))
    sink.write(_record(0, 5.0, 5))
    sink.close(_summary([5.0]) | {"success_rate": 1.0})
    assert "n/a" in out.getvalue() and "success rate 100.0%" in out.getvalue()


@pytest.mark.parametrize(("force", "shown"), [(False, False), (True, True)])
def test_progress_bar_only_on_a_terminal_unless_forced(tmp_path, capsys, force, shown):
    sink = ProgressSink(force=force)  # under pytest stdout is not a terminal
    sink.open(_run(tmp_path, 3))
    for i in range(3):
        sink.write(_record(i, 1.0, 1))
    sink.close({"status": "complete"})
    err = capsys.readouterr().err
    assert ("3/3" in err) is shown


def test_parquet_retries_the_episodes_alone_after_their_write_failed(tmp_path, monkeypatch):
    # a full disk between a flush's actions part and its episodes part: the retry at close
    # writes the episodes, and their actions are stored once (it raised IndexError there)
    import dataclasses

    import numpy as np
    import pyarrow.parquet as pq

    from rlrec.sinks import parquet

    sink = parquet.ParquetSink(flush_seconds=3600)
    sink.open(_run(tmp_path))
    for i in range(3):
        sink.write(dataclasses.replace(_record(i, 10.0 + i, 3), actions=np.array([0, 1, i])))
    real, failures = parquet._write_whole, []

    def full_disk_once(table, path):
        if "episode" in path.parent.name and not failures:
            failures.append(path)
            raise OSError(28, "No space left on device")
        real(table, path)

    monkeypatch.setattr(parquet, "_write_whole", full_disk_once)
    with pytest.raises(OSError):
        sink.flush()
    sink.close({})
    episodes = pq.read_table(tmp_path / "episodes.parquet")
    actions = pq.read_table(tmp_path / "_actions.parquet")
    assert failures and episodes["episode"].to_pylist() == [0, 1, 2]
    assert actions["episode"].to_pylist() == [0, 1, 2]
    assert [list(a) for a in actions["actions"].to_pylist()] == [[0, 1, i] for i in range(3)]
