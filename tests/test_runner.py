"""The episode loop against an independent Gymnasium loop built from the contract's seeds."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from rlrec.build import build
from rlrec.runner import Runner, record
from tests.conftest import compose_config, contract_seed, decode, plain_loop
from tests.policies import BalancePolicy

KEY_COLUMNS = ["episode", "seed", "return", "length", "terminated", "truncated"]


def _rows(run_dir):
    table = pq.read_table(run_dir / "episodes.parquet")
    return table.select(KEY_COLUMNS).to_pylist()


@pytest.mark.parametrize(
    ("env", "env_id"),
    [
        ("cartpole", "CartPole-v1"),
        ("acrobot", "Acrobot-v1"),
        ("pendulum", "Pendulum-v1"),
        ("mountaincar", "MountainCar-v0"),
    ],
)
def test_random_policy_matches_plain_gymnasium_loop(tmp_path, env, env_id):
    episodes = 3 if env in ("cartpole",) else 2
    cfg = compose_config(
        [
            f"env={env}",
            "trigger=never",
            "sinks=[parquet]",
            f"episodes={episodes}",
            "seed=7",
            "env.max_episode_steps=120",
        ]
    )
    record(cfg, tmp_path)
    assert _rows(tmp_path) == plain_loop(env_id, 7, episodes, max_episode_steps=120)


def test_deterministic_custom_policy_matches_plain_loop(tmp_path):
    cfg = compose_config(
        [
            "policy=custom",
            "policy._target_=tests.policies.BalancePolicy",
            "trigger=never",
            "sinks=[parquet]",
            "episodes=5",
            "seed=3",
            "env.max_episode_steps=300",
        ]
    )
    record(cfg, tmp_path)
    policy = BalancePolicy(None, None)
    expected = plain_loop("CartPole-v1", 3, 5, act=policy.act, max_episode_steps=300)
    assert _rows(tmp_path) == expected
    assert all(row["length"] == 300 and row["truncated"] for row in expected)  # it balances


def test_same_config_same_columns_other_seed_other_columns(tmp_path):
    def run(name, seed):
        cfg = compose_config(["trigger=never", "sinks=[parquet]", "episodes=20", f"seed={seed}"])
        record(cfg, tmp_path / name)
        return _rows(tmp_path / name)

    first, again, other = run("a", 0), run("b", 0), run("c", 1)
    assert first == again
    assert [r["seed"] for r in first] != [r["seed"] for r in other]
    assert [r["return"] for r in first] != [r["return"] for r in other]


def test_policy_hooks_receive_the_episode_as_it_ran(tmp_path):
    cfg = compose_config(
        [
            "policy=custom",
            "policy._target_=tests.policies.HookRecorder",
            "+policy.tag=x",
            "trigger=never",
            "sinks=[parquet]",
            "episodes=3",
            "seed=5",
            "env.max_episode_steps=40",
        ]
    )
    objects = build(cfg, tmp_path)
    Runner(objects).run()
    policy = objects.policy
    rows = pq.read_table(tmp_path / "episodes.parquet").to_pylist()
    assert policy.tag == "x"
    assert policy.resets == [contract_seed(5, i, 1) for i in range(3)]
    assert policy.ends == [
        {"episode": r["episode"], "episode_return": r["return"], "length": r["length"]}
        for r in rows
    ]
    assert len(policy.updates) == sum(r["length"] for r in rows)
    assert sum(u["reward"] for u in policy.updates) == pytest.approx(sum(r["return"] for r in rows))
    first = policy.updates[0]
    assert set(first) == {"obs", "action", "reward", "next_obs", "terminated", "truncated"}
    assert (first["next_obs"] == policy.updates[1]["obs"]).all()  # consecutive steps chain
    ends = [u for u in policy.updates if u["terminated"] or u["truncated"]]
    assert len(ends) == 3


def test_only_filmed_episodes_render(tmp_path):
    cfg = compose_config(
        [
            "trigger=periodic",
            "trigger.period=3",
            "sinks=[parquet]",
            "episodes=7",
            "env.max_episode_steps=30",
        ]
    )
    objects = build(cfg, tmp_path)
    calls = []
    real_render = objects.env.render
    objects.env.render = lambda: calls.append(1) or real_render()
    Runner(objects).run()
    rows = pq.read_table(tmp_path / "episodes.parquet").to_pylist()
    filmed = [r for r in rows if r["video"] is not None]
    assert [r["episode"] for r in filmed] == [0, 3, 6]
    assert len(calls) == sum(r["length"] + 1 for r in filmed)
    for r in filmed:
        frames, fps, size = decode(tmp_path / r["video"])
        assert (frames, fps, size) == (r["length"] + 1, 50.0, (600, 400))


def test_stats_only_run_builds_env_without_rendering(tmp_path):
    cfg = compose_config(["trigger=never", "sinks=[parquet]", "episodes=2"])
    objects = build(cfg, tmp_path)
    assert objects.env.render_mode is None
    Runner(objects).run()
    assert not (tmp_path / "videos").exists()


def test_summary_json_statistics(tmp_path):
    import numpy as np
    from scipy import stats

    cfg = compose_config(
        ["trigger=never", "sinks=[parquet]", "episodes=12", "seed=4", "success_threshold=20"]
    )
    summary = record(cfg, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    returns = np.array([r["return"] for r in plain_loop("CartPole-v1", 4, 12)])
    low, high = stats.t.interval(
        0.95, len(returns) - 1, loc=returns.mean(), scale=stats.sem(returns)
    )
    assert summary["status"] == "complete"
    assert summary["n"] == 12
    assert summary["mean"] == pytest.approx(returns.mean())
    assert summary["std"] == pytest.approx(returns.std(ddof=1))
    assert (summary["min"], summary["max"]) == (returns.min(), returns.max())
    assert (summary["ci95_low"], summary["ci95_high"]) == (pytest.approx(low), pytest.approx(high))
    assert summary["success_rate"] == pytest.approx((returns >= 20).mean())
    rows = pq.read_table(tmp_path / "episodes.parquet").to_pylist()
    assert [r["success"] for r in rows] == [bool(x >= 20) for x in returns]


def test_single_episode_summary_has_nulls_not_nan(tmp_path):
    cfg = compose_config(["trigger=never", "sinks=[parquet]", "episodes=1"])
    record(cfg, tmp_path)
    text = (tmp_path / "summary.json").read_text()
    summary = json.loads(text)
    assert "NaN" not in text
    assert summary["n"] == 1 and summary["mean"] == summary["min"] == summary["max"]
    assert summary["std"] is None and summary["ci95_low"] is None and summary["ci95_high"] is None
    assert summary["success_rate"] is None


def test_failure_inside_episode_keeps_finished_episodes_and_no_partial_video(tmp_path):
    cfg = compose_config(
        [
            "policy=custom",
            "policy._target_=tests.policies.BalancePolicy",
            "sinks=[parquet]",
            "episodes=5",
            "env.max_episode_steps=20",
        ]
    )
    objects = build(cfg, tmp_path)
    real_step, steps = objects.env.step, []

    def failing_step(action):
        steps.append(action)
        if len(steps) == 50:  # the middle of episode 2
            raise RuntimeError("the simulator crashed")
        return real_step(action)

    objects.env.step = failing_step
    with pytest.raises(RuntimeError, match="simulator crashed"):
        Runner(objects).run()
    rows = pq.read_table(tmp_path / "episodes.parquet").to_pylist()
    assert [r["episode"] for r in rows] == [0, 1]
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [
        "eval-episode-0.mp4",
        "eval-episode-1.mp4",
    ]
