"""Resume: an interrupted or killed run, continued, equals one that never stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, decode, run_cli
from tests.test_signals import LiveRun, _episodes

# one worker makes each uninterrupted reference run once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("resume")]


def _table(run_dir):
    return pd.read_parquet(run_dir / "episodes.parquet").drop(columns=["duration_s"])


def _resume(run_dir, *extra):
    cmd = [sys.executable, str(ROOT / "run.py"), f"resume={run_dir}", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _assert_same_run(resumed, reference):
    assert json.loads((resumed / "summary.json").read_text())["status"] == "complete"
    pd.testing.assert_frame_equal(_table(resumed), _table(reference))
    for video in _table(resumed)["video"].dropna():
        length = int(_table(resumed).set_index("video").loc[video, "length"])
        assert decode(resumed / video)[0] == length + 1
    names = sorted(p.name for p in (resumed / "videos").iterdir())
    assert names == sorted(p.name for p in (reference / "videos").iterdir())


TRIGGERS = {
    "periodic": ["trigger=periodic", "trigger.period=7"],
    "adaptive": ["trigger=adaptive", "trigger.criterion=threshold", "trigger.threshold=40"],
}
RANDOM = ["episodes=400", "env.max_episode_steps=60", "sinks.parquet.flush_seconds=0.2"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run that never stopped, for each trigger: made once, read by every stopped run."""
    made = {}

    def reference(trigger: str):
        if trigger not in made:
            out = tmp_path_factory.mktemp("reference") / trigger
            assert run_cli([*TRIGGERS[trigger], *RANDOM], out).code == 0
            made[trigger] = out
        return made[trigger]

    return reference


@pytest.mark.parametrize("trigger", list(TRIGGERS))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_random_policy_resumes_to_the_uninterrupted_run(tmp_path, uninterrupted, trigger, signum):
    args = [*TRIGGERS[trigger], *RANDOM]
    run = LiveRun(tmp_path / "run", *args)
    run.wait_for_episodes(150)
    run.stop(signum)
    run.wait()
    original = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    result = _resume(tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_run(tmp_path / "run", uninterrupted(trigger))
    assert (tmp_path / "run" / ".hydra" / "config.yaml").read_text() == original
    assert (tmp_path / "run" / ".hydra-resume-1" / "overrides.yaml").exists()


def test_a_killed_learner_rolls_back_to_its_checkpoint(tmp_path):
    args = [
        "policy=qlearning",
        "trigger=periodic",
        "trigger.period=100",
        "episodes=600",
        "checkpoint_every=50",
        "sinks.parquet.flush_seconds=0.2",
    ]
    assert run_cli(args, tmp_path / "reference").code == 0
    run = LiveRun(tmp_path / "run", *args)
    run.wait_for_episodes(260)
    run.stop(signal.SIGKILL)
    run.wait()
    assert any((tmp_path / "run" / "_checkpoints").glob("episode-*"))
    result = _resume(tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_run(tmp_path / "run", tmp_path / "reference")
    tables = [
        np.load(d / "policy.checkpoint")["q"] for d in (tmp_path / "run", tmp_path / "reference")
    ]
    assert np.array_equal(*tables)


def test_overrides_that_change_the_run_are_refused(tmp_path):
    assert run_cli(["trigger=never", "episodes=5"], tmp_path / "run").code == 0
    refused = _resume(tmp_path / "run", "episodes=9", "seed=3")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "resume:" in refused.stderr and "episodes" in refused.stderr and "seed" in refused.stderr
    same = _resume(tmp_path / "run", "episodes=5", "sinks.console.every=1")
    assert same.returncode == 0, same.stderr  # same values, or display only: fine
    missing = _resume(tmp_path / "nowhere")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_a_timelapse_that_cannot_be_made_ends_the_run_failed_with_the_cause(tmp_path):
    # the encoder's join fails (a film it strings together is gone): the run ends, it does not
    # wait for ever, and says why
    args = ["trigger=every", "video.timelapse=true", "episodes=40", "env.max_episode_steps=30"]
    run = LiveRun(tmp_path / "run", *args, "sinks.parquet.flush_seconds=0.05")
    run.wait_for_episodes(10)
    run.stop(signal.SIGKILL)
    run.wait()
    kept = _episodes(tmp_path / "run")  # on disk: the resume keeps them and their films
    assert kept
    films = [tmp_path / "run" / "videos" / f"eval-episode-{kept[0]}.mp4"]
    films[0].unlink()
    result = _resume(tmp_path / "run")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert films[0].name in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and films[0].name in summary["error"]
    assert len(pd.read_parquet(tmp_path / "run" / "episodes.parquet")) == 40
    assert not list((tmp_path / "run").glob("timelapse*"))  # and nothing half-written
