"""One run split into shards on a Hydra launcher and merged: the run done in one go, exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, all_frames, contract_seed, probe, run_cli

pytestmark = pytest.mark.slow

#: Columns that depend on when or where an episode ran, not on what it was.
TIMING = ("duration_s", "worker")


def rows(run_dir: Path) -> list[dict]:
    table = pq.read_table(run_dir / "episodes.parquet")
    return table.drop([c for c in TIMING if c in table.column_names]).to_pylist()


def summary(run_dir: Path) -> dict:
    found = json.loads((run_dir / "summary.json").read_text())
    return {k: v for k, v in found.items() if k not in ("wall_time_s", "peak_rss_bytes")}


def assert_same_run(merged: Path, sequential: Path) -> None:
    """Every reproducible column, the films (names and frame counts), the actions, the summary."""
    assert rows(merged) == rows(sequential)
    assert summary(merged) == summary(sequential)
    films = sorted(p.name for p in (sequential / "videos").glob("*.mp4"))
    assert sorted(p.name for p in (merged / "videos").glob("*.mp4")) == films
    for name in films:
        assert probe(merged / "videos" / name).frames == probe(sequential / "videos" / name).frames
    actions = pq.read_table(merged / "_actions.parquet")
    assert actions.equals(pq.read_table(sequential / "_actions.parquet"))


def merge_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "rlrec.merge", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_shards_merge_into_the_run_done_in_one_go(launcher, tmp_path):
    common = ["episodes=10", "trigger=every"]
    sweep = tmp_path / "sweep"
    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    result = run_cli(["shard=range(0,3)", "shards=3", *common, *extra], sweep, multirun=True)
    assert result.code == 0, result.proc.stderr[-3000:]
    assert f"3 shards merged into {sweep / 'merged'}" in result.proc.stderr
    assert run_cli(common, tmp_path / "sequential").code == 0
    assert_same_run(sweep / "merged", tmp_path / "sequential")
    # every episode once: the shards keep their logs and summaries, not their episodes or films
    assert sorted(sweep.glob("*/episodes.parquet")) == [sweep / "merged" / "episodes.parquet"]
    # the sweep's page shows the merged run: its curve, its films, its page
    page = (sweep / "report.html").read_text()
    assert "No episode finished" not in page and 'href="merged/report.html"' in page
    assert 'src="merged/videos/' in page and 'href="0/report.html"' not in page
    assert not list(sweep.glob("[0-9]*/videos"))
    assert json.loads((sweep / "1" / "summary.json").read_text())["merged_into"] == "../merged"
    jobs = pq.read_table(sweep / "summary.parquet").to_pylist()
    assert len(jobs) == 1 and jobs[0]["n_episodes"] == 10 and "shard" not in jobs[0]
    again = merge_cli(str(sweep))
    assert again.returncode == 0 and "already merged" in again.stdout


def test_adaptive_filming_is_decided_at_the_merge(tmp_path):
    common = ["episodes=12", "trigger=adaptive", "trigger.warmup=3"]
    sweep = tmp_path / "sweep"
    result = run_cli(["shard=range(0,3)", "shards=3", *common], sweep, multirun=True)
    assert result.code == 0, result.proc.stderr[-3000:]
    assert run_cli(common, tmp_path / "sequential").code == 0
    assert_same_run(sweep / "merged", tmp_path / "sequential")
    filmed = [r for r in rows(sweep / "merged") if r["video"]]
    assert filmed and all(r["video_reason"] for r in filmed)
    film = filmed[0]["video"]
    merged_film = np.stack(all_frames(sweep / "merged" / film))
    assert np.array_equal(merged_film, np.stack(all_frames(tmp_path / "sequential" / film)))


def test_a_failed_shard_is_named_run_again_and_merged(tmp_path):
    marker = tmp_path / "fail"
    marker.touch()
    failing = contract_seed(0, 4)  # episode 4: shard 1 of 3
    wrappers = (
        f"env.wrappers=[{{_target_: tests.envs.FailWhileFileExists, path: '{marker}', "
        f"seed: {failing}}}]"
    )
    common = ["episodes=9", "trigger=every", wrappers]
    sweep = tmp_path / "sweep"
    result = run_cli(["shard=range(0,3)", "shards=3", *common], sweep, multirun=True)
    assert result.code == 1
    assert "shard(s) 1 of 3 failed or did not run: 3 of 9 episodes are missing" in (
        result.proc.stderr
    )
    assert "shard=1 shards=3" in result.proc.stderr and "rlrec-merge" in result.proc.stderr
    assert (sweep / "0" / "episodes.parquet").exists() and not (sweep / "merged").exists()
    still = merge_cli(str(sweep))
    assert still.returncode == 1 and "shard(s) 1 of 3" in still.stderr
    marker.unlink()
    rerun = run_cli(["shard=1", "shards=3", *common], sweep, multirun=True)
    assert rerun.code == 0, rerun.proc.stderr[-3000:]
    assert (sweep / "3").is_dir()  # numbered after the sweep's jobs 0-2: no number twice
    assert sorted(pq.read_table(sweep / "summary.parquet")["job"].to_pylist()) == [0]  # merged
    assert run_cli(common, tmp_path / "sequential").code == 0
    assert_same_run(sweep / "merged", tmp_path / "sequential")
    assert merge_cli(str(tmp_path / "sequential")).returncode == 2  # a run, not a sweep


def test_other_swept_keys_merge_one_run_each_in_the_groups_order(tmp_path):
    common = ["episodes=6", "trigger=never"]
    sweep = tmp_path / "sweep"
    result = run_cli(["shard=range(0,2)", "shards=2", "seed=0,1", *common], sweep, multirun=True)
    assert result.code == 0, result.proc.stderr[-3000:]
    for k in (0, 1):
        assert run_cli([*common, f"seed={k}"], tmp_path / f"seed{k}").code == 0
        assert rows(sweep / "merged" / str(k)) == rows(tmp_path / f"seed{k}")
    (group,) = pq.read_table(sweep / "groups.parquet").to_pylist()
    assert group["n_seeds"] == 2 and group["seeds"] == [0, 1] and "shard" not in group
    jobs = pq.read_table(sweep / "summary.parquet").to_pylist()
    assert [j["run_seed"] for j in jobs] == [0, 1] and all(j["n_episodes"] == 6 for j in jobs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["shard=3", "shards=3"], "shard: must be an integer from 0 to shards - 1 = 2, got 3"),
        (["shards=2", "experiment=train"], "shards: rlrec.qlearning.QLearning learns"),
        (["shards=2", "env.num_envs=2", "video.tile=true"], "video.tile: each shard would"),
        (["shards=2", "trigger=adaptive", "sinks.parquet.actions=false"], "sinks.parquet.actions"),
    ],
)
def test_shard_mistakes_are_one_line(overrides, message, tmp_path):
    result = run_cli(overrides, tmp_path / "run")
    assert result.code == 2, result.proc.stderr[-2000:]
    (line,) = result.proc.stderr.strip().splitlines()
    assert line.startswith(f"rlrec: error: {message}"), line


def test_rlrec_merge_merges_a_sweep_after_the_fact(tmp_path):
    common = ["episodes=8", "trigger=periodic", "trigger.period=3"]
    sweep = tmp_path / "sweep"
    unmerged = ["shard=range(0,2)", "shards=2", *common, "~hydra.callbacks.summarize_sweep"]
    result = run_cli(unmerged, sweep, multirun=True)
    assert result.code == 0, result.proc.stderr[-3000:]
    assert not (sweep / "merged").exists()  # a sweep whose end was never reached, say
    merged = merge_cli(str(sweep))
    assert merged.returncode == 0, merged.stderr
    assert run_cli(common, tmp_path / "sequential").code == 0
    assert_same_run(sweep / "merged", tmp_path / "sequential")
    assert merge_cli(str(tmp_path / "nothing")).returncode == 2
