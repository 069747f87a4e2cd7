"""Recording while training: the Q-learner, checkpoints, presets, the plot and the timelapse."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest

from rlrec.build import build
from rlrec.plots import moving_average, plot_learning_curve
from rlrec.qlearning import QLearning
from rlrec.runner import Runner, record
from tests.conftest import compose_config, decode, run_cli


def _returns(run_dir):
    return pq.read_table(run_dir / "episodes.parquet").sort_by("episode")["return"].to_numpy()


def test_the_learner_improves_and_reaches_195(tmp_path):
    cfg = compose_config(
        ["policy=qlearning", "trigger=never", "episodes=1000", "seed=0", "sinks=[parquet]"]
    )
    record(cfg, tmp_path)
    returns = _returns(tmp_path)
    assert returns[-100:].mean() > returns[:100].mean() + 50
    rolling = np.convolve(returns, np.ones(100) / 100, mode="valid")
    assert rolling.max() >= 195


def test_training_is_a_function_of_the_seed(tmp_path):
    def run(name, seed):
        record(
            compose_config(
                [
                    "policy=qlearning",
                    "trigger=never",
                    "episodes=150",
                    f"seed={seed}",
                    "sinks=[parquet]",
                ]
            ),
            tmp_path / name,
        )
        return _returns(tmp_path / name)

    assert np.array_equal(run("a", 1), run("b", 1))
    assert not np.array_equal(run("a2", 1), run("c", 2))


def test_checkpoint_round_trip_gives_the_same_greedy_actions(tmp_path):
    cfg = compose_config(["policy=qlearning", "trigger=never", "episodes=200", "sinks=[parquet]"])
    objects = build(cfg, tmp_path / "train")
    Runner(objects).run()
    trained = objects.policy
    checkpoint = tmp_path / "train" / "policy.checkpoint"
    assert checkpoint.exists()
    env = gym.make("CartPole-v1")
    loaded = QLearning(
        observation_space=env.observation_space,
        action_space=env.action_space,
        bins=[1, 1, 6, 6],
        low=[-2.4, -3.0, -0.21, -2.0],
        high=[2.4, 3.0, 0.21, 2.0],
        checkpoint=str(checkpoint),
    )
    assert np.array_equal(loaded.q, trained.q)
    observations = np.random.default_rng(0).uniform(-0.3, 0.3, (500, 4)).astype(np.float32)
    trained.epsilon = 0.0
    assert [loaded.act(o) for o in observations] == [trained.act(o) for o in observations]
    # Evaluating the checkpoint: greedy, no learning, the table unchanged.
    evaluation = build(
        compose_config(
            [
                "policy=qlearning",
                f"policy.checkpoint={checkpoint}",
                "trigger=never",
                "episodes=20",
                "sinks=[parquet]",
            ]
        ),
        tmp_path / "eval",
    )
    Runner(evaluation).run()
    assert np.array_equal(evaluation.policy.q, trained.q) and evaluation.policy.epsilon == 0.0


def test_a_bad_checkpoint_is_a_config_error(tmp_path):
    from rlrec.errors import ConfigError

    (tmp_path / "junk").write_text("not a table")
    with pytest.raises(ConfigError) as err:
        build(
            compose_config(["policy=qlearning", f"policy.checkpoint={tmp_path / 'junk'}"]),
            tmp_path / "run",
        )
    assert err.value.key == "policy.checkpoint"


def test_presets_compose_as_the_guide_describes():
    train = compose_config(["experiment=train"])
    assert (train.episodes, train.trigger.period, train.video.name_prefix) == (
        10000,
        250,
        "training",
    )
    assert train.policy._target_.endswith("QLearning") and train.video.timelapse
    assert list(train.sinks) == ["parquet", "console", "progress", "plot", "report"]
    assert "report" in compose_config(["experiment=eval"]).sinks
    evaluation = compose_config(["experiment=eval"])
    assert (evaluation.episodes, evaluation.video.name_prefix) == (4, "eval")
    assert evaluation.trigger._target_.endswith("Every")
    assert compose_config(["experiment=train", "episodes=7"]).episodes == 7


def test_plot_draws_returns_moving_average_and_filmed_marks(tmp_path):
    returns = np.random.default_rng(1).normal(50, 10, 300)
    fig = plot_learning_curve(returns, [0, 100, 200], 100, tmp_path / "curve.png")
    lines = {line.get_gid(): line for line in fig.axes[0].lines}
    x, y = lines["moving_average"].get_data()
    assert np.array_equal(x, np.arange(99, 300))
    assert y == pytest.approx([returns[i - 99 : i + 1].mean() for i in range(99, 300)])
    assert y == pytest.approx(moving_average(returns, 100)[99:])
    assert list(lines["filmed"].get_data()[0]) == [0, 100, 200]
    png = (tmp_path / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1000, 600)
    short = plot_learning_curve(returns[:50], [], 100, tmp_path / "short.png")
    assert "moving_average" not in {line.get_gid() for line in short.axes[0].lines}


def test_training_run_leaves_curve_checkpoint_and_timelapse(tmp_path):
    cfg = compose_config(
        ["experiment=train", "episodes=120", "trigger.period=40", "sinks=[parquet,plot]"]
    )
    record(cfg, tmp_path)
    rows = pq.read_table(tmp_path / "episodes.parquet").to_pylist()
    filmed = [r for r in rows if r["video"]]
    assert [r["episode"] for r in filmed] == [0, 40, 80]
    assert all(r["video"].startswith("videos/training-episode-") for r in filmed)
    frames, fps, size = decode(tmp_path / "timelapse.mp4")
    assert frames == sum(r["length"] + 1 for r in filmed)  # no title frames: captions only
    assert (fps, size) == (50.0, (600, 400))
    assert (tmp_path / "learning_curve.png").stat().st_size > 10_000
    assert (tmp_path / "policy.checkpoint").exists()


@pytest.mark.slow
def test_hyperparameter_sweep_gives_one_complete_run_per_combination(tmp_path):
    args = [
        "experiment=train",
        "policy.lr=0.05,0.2",
        "seed=range(0,2)",
        "episodes=50",
        "trigger.period=25",
    ]
    result = run_cli(args, tmp_path / "sweep", multirun=True)
    assert result.code == 0, result.proc.stderr[-3000:]
    seen = set()
    for job in range(4):
        run_dir = tmp_path / "sweep" / str(job)
        table = pq.read_table(run_dir / "episodes.parquet")
        assert table.num_rows == 50
        config = json.loads(table.schema.metadata[b"rlrec.config"])
        seen.add((config["policy"]["lr"], config["seed"]))
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"
        assert (run_dir / "timelapse.mp4").exists() and (run_dir / "learning_curve.png").exists()
    assert seen == {(0.05, 0), (0.05, 1), (0.2, 0), (0.2, 1)}
    groups = pq.read_table(tmp_path / "sweep" / "groups.parquet")
    assert sorted(groups["policy.lr"].to_pylist()) == [0.05, 0.2]
