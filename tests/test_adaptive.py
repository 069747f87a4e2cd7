"""Adaptive filming (decided after each episode) and replay of past episodes."""

from __future__ import annotations

import statistics
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from rlrec.digest import ObsDigest
from rlrec.episode import replay
from rlrec.errors import ConfigError
from rlrec.runner import record
from rlrec.triggers import Adaptive
from tests.conftest import ROOT, compose_config, console_script, contract_seed, decode, run_cli


def _rows(run_dir):
    return pq.read_table(run_dir / "episodes.parquet").to_pylist()


def _expected(
    returns, criterion, threshold=None, above=True, z=2.0, window=100, warmup=10, max_videos=None
):
    """The episodes a criterion picks, computed from the returns alone."""
    chosen = []
    for i, r in enumerate(returns):
        before = returns[:i]
        if criterion == "best":
            hit = not before or r > max(before)
        elif criterion == "worst":
            hit = not before or r < min(before)
        elif criterion == "threshold":
            hit = r >= threshold if above else r <= threshold
        else:
            recent = before[-window:]
            hit = (
                i >= warmup
                and len(recent) >= 2
                and abs(r - statistics.fmean(recent)) > z * statistics.stdev(recent)
            )
        if hit and (max_videos is None or len(chosen) < max_videos):
            chosen.append(i)
    return chosen


CASES = [
    (["trigger.criterion=best"], {"criterion": "best"}),
    (["trigger.criterion=worst"], {"criterion": "worst"}),
    (
        ["trigger.criterion=threshold", "trigger.threshold=30"],
        {"criterion": "threshold", "threshold": 30},
    ),
    (
        ["trigger.criterion=threshold", "trigger.threshold=12", "trigger.above=false"],
        {"criterion": "threshold", "threshold": 12, "above": False},
    ),
    (
        ["trigger.criterion=outlier", "trigger.z=1.5", "trigger.window=20", "trigger.warmup=5"],
        {"criterion": "outlier", "z": 1.5, "window": 20, "warmup": 5},
    ),
    (
        ["trigger.criterion=threshold", "trigger.threshold=20", "trigger.max_videos=3"],
        {"criterion": "threshold", "threshold": 20, "max_videos": 3},
    ),
]


@pytest.mark.parametrize(("overrides", "spec"), CASES)
def test_each_criterion_films_exactly_its_episodes(tmp_path, overrides, spec):
    cfg = compose_config(
        ["trigger=adaptive", *overrides, "episodes=60", "seed=1", "sinks=[parquet]"]
    )
    record(cfg, tmp_path)
    rows = _rows(tmp_path)
    expected = _expected([r["return"] for r in rows], **spec)
    assert expected, "the case should film something"
    assert [r["episode"] for r in rows if r["video"]] == expected
    for r in rows:
        if r["video"]:
            assert r["video_reason"] == spec["criterion"]
            assert decode(tmp_path / r["video"])[0] == r["length"] + 1
        else:
            assert r["video_reason"] is None
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == sorted(
        f"eval-episode-{e}.mp4" for e in expected
    )


def test_ties_are_not_new_bests():
    trigger = Adaptive(criterion="best")
    assert [trigger.after_episode(i, r) for i, r in enumerate([5, 5, 6, 6, 4, 7])] == [
        True,
        False,
        True,
        False,
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"criterion": "median"}, "trigger.criterion"),
        ({"criterion": "threshold"}, "trigger.threshold"),
        ({"z": 0}, "trigger.z"),
        ({"window": 1}, "trigger.window"),
        ({"max_videos": -1}, "trigger.max_videos"),
        ({"method": "magic"}, "trigger.method"),
    ],
)
def test_bad_settings_name_their_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        Adaptive(**kwargs)
    assert err.value.key == key


def test_replayed_frames_equal_the_frames_filmed_live(tmp_path):
    cfg = compose_config(["trigger=never", "episodes=4", "seed=2", "sinks=[parquet]"])
    record(cfg, tmp_path)
    actions = pq.read_table(tmp_path / "_actions.parquet").to_pylist()
    for row, stored in zip(_rows(tmp_path), actions, strict=True):
        # The episode as it happened, rendered live by a plain Gymnasium loop.
        env = gym.make("CartPole-v1", render_mode="rgb_array")
        env.action_space.seed(contract_seed(2, row["episode"], 1))
        obs, _ = env.reset(seed=row["seed"])
        live, digest, taken = [env.render()], ObsDigest(), []
        digest.update(obs)
        while True:
            taken.append(env.action_space.sample())
            obs, _, terminated, truncated, _ = env.step(taken[-1])
            digest.update(obs)
            live.append(env.render())
            if terminated or truncated:
                break
        assert stored["actions"] == taken
        assert digest.hexdigest() == row["obs_digest"]
        replayed: list[np.ndarray] = []
        other = gym.make("CartPole-v1", render_mode="rgb_array")
        assert replay(other, row["seed"], stored["actions"], replayed.append) == row["obs_digest"]
        assert len(replayed) == len(live) == row["length"] + 1
        assert all(np.array_equal(a, b) for a, b in zip(live, replayed, strict=True))


@pytest.mark.parametrize("method", ["auto", "replay", "buffer"])
def test_unreproducible_env_falls_back_and_films_the_right_episodes(tmp_path, method):
    cfg = compose_config(
        [
            "env.id=tests.envs:NoisyCartPole-v0",
            "trigger=adaptive",
            "trigger.criterion=threshold",  # not best: the noise is unseeded, and about half
            "trigger.threshold=20",  # of the episodes pass 20 whatever it does
            f"trigger.method={method}",
            "episodes=40",
            "seed=3",
            "sinks=[parquet]",
        ]
    )
    record(cfg, tmp_path)
    rows = _rows(tmp_path)
    chosen = _expected([r["return"] for r in rows], "threshold", threshold=20)
    assert len(chosen) >= 3
    filmed = [r["episode"] for r in rows if r["video"]]
    mismatched = [r["episode"] for r in rows if r["video_reason"] == "replay_mismatch"]
    if method == "buffer":
        assert (filmed, mismatched) == (chosen, [])
    elif method == "replay":
        assert (filmed, mismatched) == ([], chosen)
    else:  # the first choice fails to replay; from then on every episode is buffered
        assert (mismatched, filmed) == (chosen[:1], chosen[1:])
    for r in rows:
        if r["video"]:
            assert r["video_reason"] == "threshold"
            assert decode(tmp_path / r["video"])[0] == r["length"] + 1
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == sorted(
        f"eval-episode-{e}.mp4" for e in filmed
    )


def test_actions_file_is_skipped_by_folder_readers_and_can_be_switched_off(tmp_path):
    record(compose_config(["trigger=never", "episodes=3", "sinks=[parquet]"]), tmp_path / "on")
    files = ds.dataset(tmp_path / "on", format="parquet").files  # discovery skips "_" names
    assert str(tmp_path / "on" / "episodes.parquet") in files
    assert str(tmp_path / "on" / "_actions.parquet") not in files
    assert (tmp_path / "on" / "_actions.parquet").exists()
    record(
        compose_config(
            ["trigger=never", "episodes=3", "sinks=[parquet]", "sinks.parquet.actions=false"]
        ),
        tmp_path / "off",
    )
    assert not (tmp_path / "off" / "_actions.parquet").exists()


@pytest.mark.slow
def test_replay_an_old_run_and_a_sweep_job_from_their_folders(tmp_path):
    assert run_cli(["trigger=never", "episodes=5", "seed=4"], tmp_path / "run").code == 0
    assert (
        run_cli(
            ["seed=0,1", "env=pendulum", "trigger=never", "episodes=3", "env.max_episode_steps=30"],
            tmp_path / "sweep",
            multirun=True,
        ).code
        == 0
    )
    for run_dir, episode in [(tmp_path / "run", 3), (tmp_path / "sweep" / "1", 2)]:
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "replay.py"),
                str(run_dir),
                "--episode",
                str(episode),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        video = run_dir / "videos" / f"replay-episode-{episode}.mp4"
        assert proc.stdout.strip() == str(video)
        length = _rows(run_dir)[episode]["length"]
        assert decode(video)[0] == length + 1


@pytest.mark.slow
def test_replay_fails_clearly(tmp_path):
    assert (
        run_cli(
            ["trigger=never", "episodes=2", "sinks.parquet.actions=false"], tmp_path / "noactions"
        ).code
        == 0
    )
    assert (
        run_cli(
            ["env.id=tests.envs:NoisyCartPole-v0", "trigger=never", "episodes=2"],
            tmp_path / "noisy",
        ).code
        == 0
    )
    replay_cmd = [console_script("rlrec-replay")]
    cases = [
        (tmp_path / "noactions", 0, 2, "not stored"),
        (tmp_path / "noisy", 1, 1, "did not replay exactly"),
        (tmp_path / "noisy", 7, 2, "episode 7 is not in"),
        (tmp_path, 0, 2, "not an rlrec run directory"),
    ]
    for run_dir, episode, code, message in cases:
        proc = subprocess.run(
            [*replay_cmd, str(run_dir), "--episode", str(episode)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert proc.returncode == code, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "noisy" / "videos").exists() or not any(
        (tmp_path / "noisy" / "videos").iterdir()
    )
