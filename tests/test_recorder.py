"""rlrec.wrappers.Recorder: the run directory of ``python run.py`` from a loop the user owns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import pyarrow.parquet as pq
import pytest

from rlrec.errors import ConfigError
from rlrec.rundir import RunDir
from rlrec.wrappers import Recorder
from tests.conftest import ROOT, decode, plain_loop, run_cli
from tests.policies import BalancePolicy
from tests.test_adaptive import _expected

#: The columns that must be equal, run after run, for the same config and seed.
REPRODUCIBLE = ["episode", "seed", "return", "length", "terminated", "truncated", "obs_digest"]


def user_loop(env, episodes, act=None, seeds=None):
    """The loop of the guide: reset, act until the episode ends."""
    for i in range(episodes):
        obs, _ = env.reset() if seeds is None else env.reset(seed=seeds[i])
        done = False
        while not done:
            action = env.action_space.sample() if act is None else act(obs)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated


def test_recorder_rows_are_the_contracts_seeds_totals_and_digests(tmp_path):
    """Stats only, the guide's loop with random actions: every row (the digest of every
    observation included) equals a plain Gymnasium loop seeded as the contract says."""
    env = Recorder(gym.make("CartPole-v1"), tmp_path, trigger="never", sinks=["parquet"], seed=4)
    user_loop(env, 6)
    env.close()
    expected = plain_loop("CartPole-v1", 4, 6, digests=True)
    assert [{k: r[k] for k in expected[0]} for r in _rows(tmp_path)] == expected


def _rows(run_dir):
    return pq.read_table(run_dir / "episodes.parquet").to_pylist()


def _columns(rows, columns=(*REPRODUCIBLE, "video")):
    return [{c: r[c] for c in columns} for r in rows]


@pytest.mark.parametrize("policy", ["random", "balance"])
def test_same_rows_and_films_as_run_py(tmp_path, policy):
    episodes, seed, steps = 7, 5, 120  # the balancing policy's episodes end truncated, not at 500
    overrides = [f"episodes={episodes}", f"seed={seed}", "trigger=periodic", "trigger.period=3"]
    overrides.append(f"env.max_episode_steps={steps}")
    if policy == "balance":
        overrides += ["policy=custom", "policy._target_=tests.policies.BalancePolicy"]
    cli = run_cli([*overrides, "sinks=[parquet]"], tmp_path / "cli")
    assert cli.code == 0, cli.proc.stderr
    act = None
    if policy == "balance":
        act = BalancePolicy(None, None).act
    env = Recorder(
        gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=steps),
        tmp_path / "loop",
        trigger={"_target_": "rlrec.triggers.Periodic", "period": 3},
        sinks=["parquet"],
        seed=seed,
    )
    user_loop(env, episodes, act)
    env.close()
    ours, theirs = _rows(tmp_path / "loop"), _rows(tmp_path / "cli")
    assert _columns(ours) == _columns(theirs)
    assert [r["env_id"] for r in ours] == ["CartPole-v1"] * episodes
    assert {r["run_seed"] for r in ours} == {seed}
    for row in ours:
        if row["video"]:
            assert decode(tmp_path / "loop" / row["video"])[:2] == (row["length"] + 1, 50)
    assert [r["episode"] for r in ours if r["video"]] == [0, 3, 6]
    if policy == "balance":
        assert {r["length"] for r in ours} == {steps} and all(r["truncated"] for r in ours)
    assert not (tmp_path / "loop" / ".hydra").exists()
    summary = json.loads((tmp_path / "loop" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["n"] == episodes
    assert summary["mean"] == pytest.approx(sum(r["return"] for r in ours) / episodes)


def test_config_in_metadata_actions_and_replay(tmp_path):
    env = Recorder(
        gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=60),
        tmp_path,
        trigger="never",
        video={"name_prefix": "loop", "fps": 25},
        seed=2,
    )
    user_loop(env, 3)
    env.close()
    config = RunDir(tmp_path).read_config()
    assert config["env"] == {
        "id": "CartPole-v1",
        "max_episode_steps": 60,
        "kwargs": {},
        "wrappers": [],
    }
    assert config["recorder"]["video"] == {"name_prefix": "loop", "fps": 25}
    assert config["recorder"]["seed"] == 2 and config["recorder"]["trigger"] == "never"
    assert config["video"]["name_prefix"] == "loop" and config["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "_actions.parquet",
        "_memory.parquet",
        "episodes.parquet",
        "report.html",
        "summary.json",
    ]
    row = _rows(tmp_path)[1]
    out = subprocess.run(
        [sys.executable, "-m", "rlrec.replay", str(tmp_path), "--episode", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert decode(tmp_path / "videos" / "replay-episode-1.mp4")[:2] == (row["length"] + 1, 25)
    summarized = subprocess.run(
        [sys.executable, "scripts/summarize.py", str(tmp_path)], capture_output=True, text=True
    )
    assert summarized.returncode == 0 and "3 episodes" in summarized.stdout
    (tmp_path / "report.html").unlink()
    reported = subprocess.run(
        [sys.executable, "-m", "rlrec.report", str(tmp_path)], capture_output=True, text=True
    )
    assert reported.returncode == 0, reported.stderr
    page = (tmp_path / "report.html").read_text()
    assert "CartPole-v1" in page and "rebuild_error" in page  # the config it ran with


def test_explicit_and_missing_seeds(tmp_path):
    env = Recorder(gym.make("CartPole-v1"), tmp_path / "a", trigger="never", sinks=["parquet"])
    user_loop(env, 2, seeds=[11, None])  # no run seed: the loop's own seeds, or none
    env.close()
    rows = _rows(tmp_path / "a")
    assert [r["seed"] for r in rows] == [11, None] and rows[0]["run_seed"] is None
    seeded = Recorder(gym.make("CartPole-v1"), tmp_path / "b", "never", sinks=["parquet"], seed=4)
    user_loop(seeded, 2, seeds=[99, None])  # an explicit seed wins and is recorded
    seeded.close()
    from rlrec.seeding import ss

    assert [r["seed"] for r in _rows(tmp_path / "b")] == [99, ss(4, 1)]


def test_a_reset_before_the_end_drops_the_episode(tmp_path):
    env = Recorder(gym.make("CartPole-v1", render_mode="rgb_array"), tmp_path, "every", seed=0)
    env.reset()
    env.step(0)
    assert env.recording
    user_loop(env, 2)
    env.close()
    rows = _rows(tmp_path)
    assert [r["episode"] for r in rows] == [0, 1]
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [
        "eval-episode-0.mp4",
        "eval-episode-1.mp4",
    ]
    assert decode(tmp_path / rows[0]["video"])[0] == rows[0]["length"] + 1


ADAPTIVE = [
    ({"criterion": "best"}, "auto"),
    ({"criterion": "threshold", "threshold": 25}, "buffer"),
    ({"criterion": "outlier", "z": 1.5, "window": 20, "warmup": 5}, "replay"),
]


@pytest.mark.parametrize(("spec", "method"), ADAPTIVE)
def test_adaptive_films_what_the_runner_films(tmp_path, spec, method):
    overrides = [f"trigger.{k}={v}" for k, v in spec.items()]
    cli = run_cli(
        ["trigger=adaptive", *overrides, f"trigger.method={method}", "episodes=40", "seed=1"],
        tmp_path / "cli",
    )
    assert cli.code == 0, cli.proc.stderr
    trigger = {"_target_": "rlrec.triggers.Adaptive", **spec, "method": method}
    env = Recorder(gym.make("CartPole-v1", render_mode="rgb_array"), tmp_path / "loop", trigger)
    user_loop(env, 40)  # unseeded resets: films are buffered, kept if the trigger picks them
    env.close()
    theirs = _rows(tmp_path / "cli")
    # the Recorder above has no run seed: compare its films with its own returns' choices,
    # and, seeded like the CLI, with the runner's films
    ours = _rows(tmp_path / "loop")
    chosen = _expected([r["return"] for r in ours], **spec)
    assert [r["episode"] for r in ours if r["video"]] == chosen
    for row in ours:
        if row["video"]:
            assert decode(tmp_path / "loop" / row["video"])[0] == row["length"] + 1
    seeded = Recorder(
        gym.make("CartPole-v1", render_mode="rgb_array"), tmp_path / "seeded", trigger, seed=1
    )
    user_loop(seeded, 40)
    seeded.close()
    assert _columns(_rows(tmp_path / "seeded")) == _columns(theirs)
    assert any(r["video"] for r in theirs)


def test_bad_arguments_name_their_key(tmp_path):
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    cases = [
        ({"trigger": "sometimes"}, "trigger"),
        ({"trigger": {"_target_": "rlrec.triggers.Periodic", "period": 0}}, "trigger.period"),
        ({"video": {"codecs": "h264"}}, "video.codecs"),
        ({"video": {"codec": "divx"}}, "video.codec"),
        ({"sinks": ["parquet", "nowhere"]}, "sinks"),
        ({"seed": -1}, "seed"),
    ]
    for i, (kwargs, key) in enumerate(cases):
        with pytest.raises(ConfigError) as err:
            Recorder(env, tmp_path / str(i), **kwargs)
        assert err.value.key == key, err.value
    with pytest.raises(ConfigError, match="rgb_array") as err:
        Recorder(gym.make("CartPole-v1"), tmp_path / "no-frames", trigger="every")
    assert err.value.key == "trigger"
    done = Recorder(env, tmp_path / "done", "never", sinks=["parquet"], seed=0)
    user_loop(done, 1)
    done.close()
    with pytest.raises(ConfigError, match="holds a recorded run") as err:
        Recorder(gym.make("CartPole-v1"), tmp_path / "done", "never")
    assert err.value.key == "run_dir"
    first = Recorder(gym.make("CartPole-v1"), tmp_path / "shared", "never", sinks=["parquet"])
    with pytest.raises(ConfigError, match="another writer in this process") as err:  # n_envs=2
        Recorder(gym.make("CartPole-v1"), tmp_path / "shared", "never", sinks=["parquet"])
    assert err.value.key == "run_dir"
    user_loop(first, 1)
    first.close()
    assert not (tmp_path / "shared" / ".rlrec.lock").exists()


def test_an_env_without_spec_records_and_says_it_cannot_be_replayed(tmp_path):
    from gymnasium.envs.classic_control import CartPoleEnv

    env = Recorder(CartPoleEnv(render_mode="rgb_array"), tmp_path, "every", seed=0)
    user_loop(env, 2)
    env.close()
    rows = _rows(tmp_path)
    assert [r["env_id"] for r in rows] == ["CartPoleEnv"] * 2 and all(r["video"] for r in rows)
    out = subprocess.run(
        [sys.executable, "-m", "rlrec.replay", str(tmp_path), "--episode", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "gymnasium.make" in out.stderr
    assert "Traceback" not in out.stderr


SCRIPT = textwrap.dedent(
    """
    import sys, time
    import gymnasium as gym
    from rlrec.wrappers import Recorder
    mode, run_dir = sys.argv[1], sys.argv[2]
    env = Recorder(gym.make("CartPole-v1", render_mode="rgb_array"), run_dir,
                   trigger="every", sinks=[{"_target_": "rlrec.sinks.parquet.ParquetSink",
                   "flush_seconds": 0}], seed=0)
    for episode in range(1000):
        env.reset()
        for step in range(10_000):
            if episode == 3 and step == 5:
                if mode == "raise":
                    raise RuntimeError("the user's loop fails")
                if mode == "hang":
                    print("ready", flush=True)
                    time.sleep(60)
            *_, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break
        if mode == "forget" and episode == 2:
            break
    """
)


def _wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("mode", ["raise", "forget", "kill"])
def test_a_loop_that_ends_badly_leaves_every_finished_episode(tmp_path, mode):
    cmd = [sys.executable, "-c", SCRIPT, "hang" if mode == "kill" else mode, str(tmp_path)]
    if mode == "kill":
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        # the films of the finished episodes are closed without waiting: let them land first
        _wait_for(lambda: len(list((tmp_path / "videos").glob("eval-episode-*.mp4"))) == 3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        # the encoder process sees its input end and deletes the partial film
        _wait_for(lambda: not list((tmp_path / "videos").glob(".*")))
    else:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == (1 if mode == "raise" else 0), out.stderr
    table = RunDir(tmp_path).read_episodes()
    assert table["episode"].to_pylist() == [0, 1, 2]
    videos = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert videos == [f"eval-episode-{e}.mp4" for e in range(3)]  # no partial file
    for row in table.to_pylist():
        assert decode(tmp_path / row["video"])[0] == row["length"] + 1
    summary = RunDir(tmp_path).read_summary()
    if mode == "kill":
        assert summary == {}
    else:
        assert summary["status"] == ("failed" if mode == "raise" else "complete")
        assert summary["n"] == 3 and (tmp_path / "episodes.parquet").exists()


def test_run_dir_none_is_a_new_folder_however_many_recorders_a_second(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recorders = [
        Recorder(gym.make("CartPole-v1"), None, trigger="never", sinks=["parquet"])
        for _ in range(3)
    ]
    folders = {r.run_dir for r in recorders}
    for recorder in recorders:
        recorder.reset(seed=0)
        recorder.close()
    assert len(folders) == 3 and all(f.parent.parent == tmp_path / "outputs" for f in folders)
    assert all((f / "episodes.parquet").exists() or (f / "summary.json").exists() for f in folders)
