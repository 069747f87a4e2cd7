"""What a user plugs in: env wrappers, their own trigger and sink; keys that nothing reads."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest

from rlrec.build import build
from rlrec.errors import ConfigError
from rlrec.runner import record
from tests.conftest import ROOT, compose_config, contract_seed, decode, run_cli

KEY_COLUMNS = ["episode", "seed", "return", "length", "terminated", "truncated", "obs_digest"]
TIME_AWARE = "env.wrappers=[{_target_: gymnasium.wrappers.TimeAwareObservation}]"
CLIPPED = "env.wrappers=[{_target_: gymnasium.wrappers.ClipReward, min_reward: 0, max_reward: 0.5}]"


def _wrapped_loop(run_seed: int, episodes: int, max_steps: int) -> list[dict]:
    """The contract's episodes on CartPole clipped to rewards <= 0.5, by Gymnasium alone."""
    env = gym.wrappers.ClipReward(
        gym.make("CartPole-v1", max_episode_steps=max_steps), min_reward=0, max_reward=0.5
    )
    rows = []
    for i in range(episodes):
        env.action_space.seed(contract_seed(run_seed, i, 1))
        env.reset(seed=contract_seed(run_seed, i))
        total, length, done = 0.0, 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, length, done = total + float(reward), length + 1, terminated or truncated
        rows.append({"episode": i, "return": total, "length": length})
    return rows


@pytest.mark.parametrize("parallel", [[], ["env.num_envs=3"]], ids=["plain", "vector"])
def test_wrappers_apply_to_plain_and_vector_envs_with_exact_seeds(tmp_path, parallel):
    cfg = compose_config(
        [CLIPPED, "trigger=never", "sinks=[parquet]", "episodes=6", "seed=4", *parallel]
    )
    record(cfg, tmp_path)
    rows = pq.read_table(tmp_path / "episodes.parquet").to_pylist()
    got = [{k: r[k] for k in ("episode", "return", "length")} for r in rows]
    assert got == _wrapped_loop(4, 6, 500)
    assert all(r["return"] == pytest.approx(0.5 * r["length"]) for r in rows)  # clipped: applied


def test_wrapped_runs_replay_exactly(tmp_path):
    """The adaptive trigger films by replay, which rebuilds the same wrapper stack: every film
    it chose is kept (a different stack would change the observations, and so the digest)."""
    cfg = compose_config([TIME_AWARE, "trigger=adaptive", "sinks=[parquet]", "episodes=8"])
    record(cfg, tmp_path)
    rows = pq.read_table(tmp_path / "episodes.parquet").to_pylist()
    filmed = [r for r in rows if r["video"]]
    assert filmed and all(r["video_reason"] == "best" for r in filmed)
    for r in filmed:
        frames, fps, _ = decode(tmp_path / r["video"])
        assert (frames, fps) == (r["length"] + 1, 50.0)
    plain = compose_config(["trigger=never", "sinks=[parquet]", "episodes=8"])
    record(plain, tmp_path / "plain")
    unwrapped = pq.read_table(tmp_path / "plain" / "episodes.parquet")["obs_digest"].to_pylist()
    assert [r["obs_digest"] for r in rows] != unwrapped  # the time feature is in the digest


def test_a_wrapper_that_does_not_import_names_its_key(tmp_path):
    cfg = compose_config(["env.wrappers=[{_target_: nowhere.Wrapper}]", "trigger=never"])
    with pytest.raises(ConfigError) as err:
        build(cfg, tmp_path)
    assert err.value.key == "env.wrappers[0]._target_"


@pytest.mark.parametrize(
    ("overrides", "key", "hint"),
    [
        (["+env.max_episode_step=100"], "env.max_episode_step", "env.max_episode_steps"),
        (["+episode=3"], "episode", "episodes"),
        (["trigger=periodic", "+trigger.perod=3"], "trigger.perod", "trigger.period"),
        (["+video.fsp=10"], "video.fsp", "video.fps"),
        (["+sinks.parquet.flush_second=2"], "sinks.parquet.flush_second", "flush_seconds"),
        ([CLIPPED.replace("max_reward", "max_rewrd")], "env.wrappers[0].max_rewrd", "max_reward"),
    ],
)
def test_keys_nothing_reads_are_refused_with_the_closest(tmp_path, overrides, key, hint):
    with pytest.raises(ConfigError) as err:
        build(compose_config(overrides), tmp_path)
    assert err.value.key == key and hint in err.value.fix


def test_keys_a_users_class_takes_stay_allowed(tmp_path):
    cfg = compose_config(
        [
            "policy=custom",
            "policy._target_=mypackage.agents.MyPolicy",
            "+policy.gain=0.8",
            "trigger=custom",
            "trigger._target_=mypackage.triggers.EveryThird",
            "+trigger.offset=1",
            "+sinks.mine={_target_: mypackage.sinks.JsonLines, file: mine.jsonl}",
        ]
    )
    objects = build(cfg, tmp_path)
    assert objects.policy.gain == 0.8 and objects.trigger.trigger.offset == 1
    objects.close()


@pytest.mark.slow
def test_a_misspelt_key_on_the_command_line_exits_2_naming_it(tmp_path):
    result = run_cli(["+env.max_episode_step=100"], tmp_path / "run")
    assert result.code == 2 and "Traceback" not in result.proc.stderr
    assert (
        "env.max_episode_step: not a key of env. Fix: did you mean env.max_episode_steps?"
        in result.proc.stderr
    )


@pytest.mark.slow
def test_a_users_trigger_and_sink_run_from_the_command_line(tmp_path):
    result = run_cli(
        [
            "episodes=7",
            "trigger=custom",
            "trigger._target_=mypackage.triggers.EveryThird",
            "+sinks.mine={_target_: mypackage.sinks.JsonLines}",
        ],
        tmp_path / "run",
    )
    assert result.code == 0, result.proc.stderr[-2000:]
    rows = pq.read_table(tmp_path / "run" / "episodes.parquet").to_pylist()
    assert [r["episode"] for r in rows if r["video"]] == [0, 3, 6]
    assert {r["video_reason"] for r in rows if r["video"]} == {"every_third"}
    lines = [json.loads(x) for x in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert [x["episode"] for x in lines[:-1]] == list(range(7))
    assert [x["return"] for x in lines[:-1]] == [r["return"] for r in rows]
    assert lines[-1]["summary"]["status"] == "complete" and lines[-1]["summary"]["n"] == 7


def test_a_users_trigger_that_decides_after_films_by_replay(tmp_path):
    cfg = compose_config(
        [
            "episodes=12",
            "trigger=custom",
            "trigger._target_=mypackage.triggers.LongerThan",
            "+trigger.steps=25",
            "sinks=[parquet]",
        ]
    )
    record(cfg, tmp_path)
    rows = pq.read_table(tmp_path / "episodes.parquet").to_pylist()
    filmed = [r for r in rows if r["video"]]
    assert [r["episode"] for r in filmed] == [r["episode"] for r in rows if r["return"] > 25]
    assert filmed and {r["video_reason"] for r in filmed} == {"longer_than_25"}
    for r in filmed:
        assert decode(tmp_path / r["video"])[0] == r["length"] + 1


@pytest.mark.parametrize("trigger", ["never", "adaptive"])
def test_the_training_preset_takes_any_trigger(tmp_path, trigger):
    cfg = compose_config(["experiment=train", f"trigger={trigger}", "episodes=30"])
    assert cfg.trigger._target_.lower().endswith(trigger)
    summary = record(cfg, tmp_path)
    assert summary["status"] == "complete" and summary["n"] == 30
    rows = pq.read_table(tmp_path / "episodes.parquet").to_pylist()
    filmed = [r for r in rows if r["video"]]
    if trigger == "never":
        assert not filmed and not (tmp_path / "videos").exists()
    else:  # the best returns so far, the adaptive way
        returns = np.array([r["return"] for r in rows])
        best = [i for i in range(30) if returns[i] > returns[:i].max(initial=-np.inf)]
        assert [r["episode"] for r in filmed] == best


@pytest.mark.slow
def test_the_training_preset_with_trigger_never_runs_from_the_command_line(tmp_path):
    result = run_cli(["experiment=train", "trigger=never", "episodes=20"], tmp_path / "run")
    assert result.code == 0, result.proc.stderr[-2000:]
    assert pq.read_table(tmp_path / "run" / "episodes.parquet").num_rows == 20


@pytest.mark.slow
def test_doctests_run_in_the_readme_test_command():
    """``pytest`` alone (the README's command) collects the package's docstring examples."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "rlrec/episode.py::rlrec.episode.SuccessRule" in proc.stdout
    assert "rlrec/video.py::rlrec.video.Encoder" in proc.stdout
