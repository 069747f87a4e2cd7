"""The files under examples/ run as written, each in a fresh folder, and leave what they say."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import ROOT, decode, plain_loop

EXAMPLES = ROOT / "examples"

# the examples learn for up to a minute each: one worker runs them, starting early
pytestmark = pytest.mark.xdist_group("examples")


def run_example(name, cwd):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return out


def test_guide_evaluation_with_the_drop_ins(tmp_path):
    out = run_example("guide_evaluate.py", tmp_path)
    lengths = [int(n) for n in re.findall(r"^Episode \d+: (\d+) steps", out.stdout, re.M)]
    assert len(lengths) == 4
    for episode, length in enumerate(lengths):
        frames, fps, _ = decode(tmp_path / "cartpole-agent" / f"eval-episode-{episode}.mp4")
        assert (frames, fps) == (length + 1, 50)
    assert f"Episode lengths: {lengths}" in out.stdout
    assert sorted(p.name for p in (tmp_path / "cartpole-agent").iterdir()) == [
        f"eval-episode-{e}.mp4" for e in range(4)
    ]


def test_guide_training_with_the_drop_ins(tmp_path):
    out = run_example("guide_train.py", tmp_path)
    names = {p.name for p in (tmp_path / "cartpole-training").iterdir()}
    assert names == {f"training-episode-{e}.mp4" for e in range(0, 10_000, 250)}
    assert decode(tmp_path / "cartpole-training" / "training-episode-9750.mp4")[1] == 50
    assert out.stderr.count("average of the last 100") == 10  # logging's lines


def test_recorder_evaluation_equals_a_plain_gymnasium_loop(tmp_path):
    run_example("recorder_evaluate.py", tmp_path)
    run = tmp_path / "outputs" / "evaluate"
    episodes = pd.read_parquet(run / "episodes.parquet")
    expected = plain_loop("CartPole-v1", 0, 4)
    for column in ("seed", "return", "length", "terminated", "truncated"):
        assert episodes[column].tolist() == [r[column] for r in expected], column
    for row in episodes.itertuples():
        assert decode(run / row.video)[0] == row.length + 1
    assert (run / "report.html").exists() and not (run / ".hydra").exists()


def test_recorder_training_logs_to_tensorboard_and_learns(tmp_path):
    run_example("recorder_train.py", tmp_path)
    run = tmp_path / "outputs" / "train"
    episodes = pd.read_parquet(run / "episodes.parquet")
    assert len(episodes) == 600
    assert episodes["video"].notna().tolist() == [e % 100 == 0 for e in range(600)]
    assert episodes["return"][-100:].mean() > 3 * episodes["return"][:100].mean()
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    returns = events.Scalars("episode/return")
    assert [e.step for e in returns] == list(range(600))
    assert [e.value for e in returns] == episodes["return"].tolist()
    assert (run / "learning_curve.png").exists()


def test_cleanrl_style_reinforce_records_while_it_learns(tmp_path):
    out = run_example("cleanrl_reinforce.py", tmp_path)
    run = tmp_path / "outputs" / "reinforce"
    episodes = pd.read_parquet(run / "episodes.parquet")
    assert len(episodes) == 400 and episodes["video"].notna().sum() == 8
    first, last = episodes["return"][:50].mean(), episodes["return"][-50:].mean()
    assert last > first + 100, (first, last)
    assert f"first 50 episodes {first:.1f}, last 50 {last:.1f}" in out.stdout
    for row in episodes.dropna(subset=["video"]).itertuples():
        frames, fps, _ = decode(run / row.video)
        assert (frames, fps) == (row.length + 1, 50)


def test_cleanrl_style_vector_reinforce_records_every_sub_environment(tmp_path):
    out = run_example("cleanrl_vector_reinforce.py", tmp_path)
    run = tmp_path / "outputs" / "reinforce-vector"
    episodes = pd.read_parquet(run / "episodes.parquet")
    assert episodes["episode"].tolist() == list(range(len(episodes)))
    assert len(episodes) >= 400 and set(episodes["env_index"]) == {0, 1, 2, 3}
    first, last = episodes["return"][:100].mean(), episodes["return"][-100:].mean()
    assert last > first + 50, (first, last)
    assert f"first 100 {first:.1f}, last 100 {last:.1f}" in out.stdout
    filmed = episodes.dropna(subset=["video"])
    expected = episodes[(episodes["env_index"] == 0) & (episodes["episode"] % 50 == 0)]
    assert filmed["episode"].tolist() == expected["episode"].tolist() and len(filmed) >= 1
    for row in filmed.itertuples():
        assert decode(run / row.video)[:2] == (row.length + 1, 50)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_is_tested(name):
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert f'"{name}"' in tests
