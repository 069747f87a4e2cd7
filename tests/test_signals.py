"""Nothing lost: real runs stopped by SIGINT, SIGTERM and SIGKILL, and what they leave behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from tests.conftest import ROOT, decode

pytestmark = pytest.mark.slow

FINAL_VIDEO = re.compile(r"^[a-z]+-episode-\d+\.mp4$")


class LiveRun:
    """``python run.py`` in the background, its episode lines timestamped as they are printed."""

    def __init__(self, out: Path, *overrides: str) -> None:
        self.out = out
        cmd = [
            sys.executable,
            str(ROOT / "run.py"),
            *overrides,
            "sinks.console.every=1",
            f"hydra.run.dir={out}",
        ]
        env = os.environ | {"PYTHONUNBUFFERED": "1", "SDL_VIDEODRIVER": "dummy"}
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.finished: list[tuple[float, int]] = []  # (when printed, episode)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            match = re.match(r"Episode (\d+):", line)
            if match:
                self.finished.append((time.monotonic(), int(match.group(1))))

    def wait_for_episodes(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.finished) < n:
            assert time.monotonic() < deadline and self.proc.poll() is None, self.proc.stderr.read()
            time.sleep(0.02)

    def stop(self, signum: int) -> float:
        sent = time.monotonic()
        self.proc.send_signal(signum)
        return sent

    def wait(self) -> int:
        code = self.proc.wait(timeout=120)
        self._reader.join(timeout=10)
        return code


def _episodes(run_dir: Path) -> list[int]:
    """Episodes readable from the run folder: the merged file or, after a kill, the parts."""
    if (run_dir / "episodes.parquet").exists():
        return sorted(pd.read_parquet(run_dir / "episodes.parquet")["episode"])
    parts = run_dir / "episodes"
    if not any(parts.glob("part-*.parquet")):
        return []  # killed before the first flush
    from_arrow = sorted(ds.dataset(parts, format="parquet").to_table()["episode"].to_pylist())
    assert from_arrow == sorted(pd.read_parquet(parts)["episode"])  # pandas reads the same
    return from_arrow


def _check_videos(run_dir: Path) -> None:
    """Every file under a final video name decodes to the end; no other file looks like one."""
    videos = run_dir / "videos"
    if not videos.exists():
        return
    for path in videos.iterdir():
        if FINAL_VIDEO.match(path.name):
            frames, _, _ = decode(path)
            assert frames > 0, path
        else:
            assert path.name.startswith("."), path  # only dot-prefixed temporary files


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_flushes_statistics_and_marks_the_run(tmp_path, signum, code):
    run = LiveRun(
        tmp_path / "run",
        "trigger=periodic",
        "trigger.period=3",
        "episodes=100000",
        "env.max_episode_steps=60",
    )
    run.wait_for_episodes(12)
    run.stop(signum)
    assert run.wait() == code
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    episodes = _episodes(tmp_path / "run")
    assert episodes == list(range(len(episodes))) and len(episodes) >= 12
    assert summary["n"] == len(episodes)
    assert not (tmp_path / "run" / "episodes").exists()  # merged: the run ended in order
    _check_videos(tmp_path / "run")
    assert "Traceback" not in run.proc.stderr.read()


@pytest.mark.alone
def test_a_second_ctrl_c_exits_at_once_and_loses_no_finished_episode(tmp_path):
    # A timelapse of many filmed episodes makes the clean-up long enough to interrupt.
    run = LiveRun(
        tmp_path / "run",
        "trigger=every",
        "video.timelapse=true",
        "episodes=100000",
        "env.max_episode_steps=40",
    )
    run.wait_for_episodes(40)
    run.stop(signal.SIGINT)
    time.sleep(0.3)  # not a wait for a condition: the gap between a user's two Ctrl-C presses
    second = run.stop(signal.SIGINT)
    assert run.wait() == 130
    assert time.monotonic() - second < 5
    printed = sorted(episode for _, episode in run.finished)
    episodes = _episodes(tmp_path / "run")
    assert episodes == list(range(len(episodes)))
    assert set(printed) <= set(episodes)  # every episode it reported is on disk
    _check_videos(tmp_path / "run")


@pytest.mark.parametrize("gap", [0.002, 0.008])
def test_two_ctrl_c_at_once_keep_every_printed_episode_and_the_summary(tmp_path, gap):
    # two presses within 10 ms: the second comes before the first has written anything
    run = LiveRun(tmp_path / "run", "trigger=periodic", "trigger.period=50", "episodes=30000")
    run.wait_for_episodes(300)
    os.kill(run.proc.pid, signal.SIGINT)
    time.sleep(gap)
    os.kill(run.proc.pid, signal.SIGINT)
    assert run.wait() == 130
    printed = {episode for _, episode in run.finished}
    episodes = _episodes(tmp_path / "run")
    assert episodes == list(range(len(episodes)))
    assert printed <= set(episodes), sorted(printed - set(episodes))[:5]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["n"] == len(episodes)
    _check_videos(tmp_path / "run")


@pytest.mark.alone
@pytest.mark.parametrize("after", [8, 30, 90])
def test_sigkill_keeps_every_episode_older_than_the_flush_interval(tmp_path, after):
    flush = 0.5
    run = LiveRun(
        tmp_path / "run",
        "trigger=periodic",
        "trigger.period=7",
        "episodes=100000",
        "env.max_episode_steps=80",
        f"sinks.parquet.flush_seconds={flush}",
    )
    run.wait_for_episodes(after)
    killed = run.stop(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    episodes = _episodes(tmp_path / "run")
    assert episodes == list(range(len(episodes)))  # whole parts only: a prefix of the run
    old = {e for when, e in run.finished if when < killed - flush - 0.2}
    assert old <= set(episodes)
    _check_videos(tmp_path / "run")
    deadline = time.monotonic() + 10  # the orphaned encoder removes its partial file
    while any(p.name.startswith(".") for p in (tmp_path / "run" / "videos").glob("*")):
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize("to", ["process-group", "sweep-process"])
def test_an_interrupted_joblib_sweep_ends_every_job_interrupted(tmp_path, to):
    # a terminal's Ctrl-C reaches every process of the group; `kill -INT` the sweep's alone
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "seed=0,1", "hydra/launcher=joblib"]
    cmd += ["hydra.launcher.n_jobs=2", "episodes=200000", "trigger=never"]
    cmd += ["sinks.parquet.flush_seconds=0.2", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,  # a line an episode: never read, never a full pipe
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not all(any((sweep / j / "episodes").glob("part-*")) for j in ("0", "1")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    if to == "process-group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    for job in (sweep / "0", sweep / "1"):
        summary = json.loads((job / "summary.json").read_text())
        episodes = _episodes(job)
        assert summary["status"] == "interrupted" and summary["n"] == len(episodes) > 0
        assert episodes == list(range(len(episodes)))
    assert not (sweep / ".rlrec.lock").exists()
