"""One writer per run directory: a second run, a second ``resume=``, a new run into a folder that
holds a run, or a second Recorder is refused before it writes anything (one line, exit 2), and the
first writer is untouched; a killed writer's lock goes with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pyarrow.parquet as pq
import pytest

from rlrec.errors import ConfigError
from rlrec.wrappers import Recorder
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow


def _start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    """A long stats-only run in the background, its episodes flushed to parts often."""
    cmd = [sys.executable, str(ROOT / "run.py"), "trigger=never", "episodes=200000"]
    cmd += ["sinks.parquet.flush_seconds=0.2", *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_parts(run_dir: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not list((run_dir / "episodes").glob("part-*.parquet")):
        assert proc.poll() is None, proc.stderr.read()  # read only once it ended: no hang
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _listing(folder: Path) -> dict[str, float]:
    """Every file under ``folder`` but the writer's growing parts, with its modification time."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime
        for p in folder.rglob("*")
        if p.is_file() and "part-" not in p.name and p.name != "_memory.parquet"
    }


def _refused(result, key: str, folder: Path, says: str) -> None:
    assert result.code == 2, result.proc.stderr[-2000:]
    (line,) = result.proc.stderr.strip().splitlines()
    assert line.startswith(f"rlrec: error: {key}: {folder} ") and says in line, line
    assert "Fix: " in line


def test_a_second_writer_is_refused_and_the_first_goes_on(tmp_path):
    run_dir = tmp_path / "run"
    first = _start(run_dir, "seed=1")
    try:
        _wait_for_parts(run_dir, first)
        before = _listing(run_dir)
        for overrides, key in ((["seed=2"], "hydra.run.dir"), ([], "resume")):
            args = [*overrides, "episodes=5", "trigger=never"]
            if key == "resume":
                args = [f"resume={run_dir}"]
            result = run_cli(args, run_dir)
            _refused(result, key, run_dir, f"is being written by another process (pid {first.pid})")
        assert _listing(run_dir) == before  # nothing written by the refused ones
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
    rows = pq.read_table(run_dir / "episodes.parquet").to_pylist()
    assert [r["episode"] for r in rows] == list(range(len(rows)))  # one run's rows, once each
    assert {r["run_seed"] for r in rows} == {1}


def test_a_new_run_into_a_folder_that_holds_a_run_is_refused(tmp_path):
    done = run_cli(["episodes=3", "trigger=every"], tmp_path / "done")
    assert done.code == 0, done.proc.stderr
    before = _listing(tmp_path / "done")
    again = run_cli(["episodes=3", "seed=5"], tmp_path / "done")
    _refused(again, "hydra.run.dir", tmp_path / "done", "holds a complete run of 3 episodes")
    assert f"resume={tmp_path / 'done'}" in again.proc.stderr
    assert _listing(tmp_path / "done") == before
    # a killed run's folder: its parts are records too, and the OS let go of its lock
    killed = _start(tmp_path / "killed", "episodes=4000")
    _wait_for_parts(tmp_path / "killed", killed)
    killed.kill()
    killed.wait()
    refused = run_cli(["episodes=3"], tmp_path / "killed")
    _refused(refused, "hydra.run.dir", tmp_path / "killed", "holds a stopped run")
    resumed = run_cli(["resume=" + str(tmp_path / "killed")], tmp_path / "killed")
    assert resumed.code == 0, resumed.proc.stderr[-2000:]
    assert not (tmp_path / "killed" / ".rlrec.lock").exists()


def test_a_recorder_killed_mid_run_leaves_its_folder_to_the_next_writer(tmp_path):
    code = f"""
import gymnasium as gym, sys
from rlrec.wrappers import Recorder
env = Recorder(gym.make("CartPole-v1"), {str(tmp_path / "run")!r}, "never", sinks=["parquet"])
env.reset(seed=0)
print("recording", flush=True)
sys.stdin.readline()
"""
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline() == "recording\n"
    with pytest.raises(ConfigError, match=f"another process \\(pid {child.pid}\\)") as err:
        Recorder(gym.make("CartPole-v1"), tmp_path / "run", "never", sinks=["parquet"])
    assert err.value.key == "run_dir"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with Recorder(gym.make("CartPole-v1"), tmp_path / "run", "never", sinks=["parquet"]) as env:
        env.reset(seed=0)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    assert pq.read_table(tmp_path / "run" / "episodes.parquet").num_rows == 1


def test_a_second_sweep_into_a_sweep_folder_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    first = run_cli(["seed=0,1", "episodes=2", "trigger=never"], sweep, multirun=True)
    assert first.code == 0, first.proc.stderr[-2000:]
    before = _listing(sweep)
    again = run_cli(["seed=7", "episodes=2", "trigger=never"], sweep, multirun=True)
    _refused(again, "hydra.sweep.dir", sweep, "holds a sweep already (jobs 0-1)")
    assert "leave hydra.sweep.dir unset" in again.proc.stderr
    assert _listing(sweep) == before  # no folder 0-1, no second job 0, the same summary
    assert pq.read_table(sweep / "summary.parquet")["job"].to_pylist() == [0, 1]


def test_a_running_sweep_holds_its_folder_against_a_sweep_and_a_merge(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "shard=0,1", "shards=2", "trigger=never"]
    cmd += ["episodes=400000", "sinks.parquet.flush_seconds=0.2", f"hydra.sweep.dir={sweep}"]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_parts(sweep / "0", first)
        again = run_cli(["shard=1", "shards=2", "episodes=2"], sweep, multirun=True)
        _refused(again, "hydra.sweep.dir", sweep, f"another process (pid {first.pid})")
        merge = subprocess.run(
            [sys.executable, "-m", "rlrec.merge", str(sweep)], capture_output=True, text=True
        )
        assert merge.returncode == 2, merge.stderr
        (line,) = merge.stderr.strip().splitlines()
        assert line.startswith(f"rlrec-merge: error: {sweep} is being written by another")
        assert not (sweep / "merged").exists() and not (sweep / "1").exists()
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)


def _one_line(result, says: str) -> None:
    assert result.code == 2, result.proc.stderr[-2000:]
    (line,) = result.proc.stderr.strip().splitlines()
    assert line.startswith("rlrec: error: resume: ") and says in line and "Fix: " in line, line


def test_a_refused_resume_writes_nothing_anywhere(tmp_path):
    good = tmp_path / "good"
    assert run_cli(["episodes=3", "trigger=every"], good).code == 0
    before = _listing(good)
    changed = run_cli([f"resume={good}", "episodes=10"], good)
    _one_line(changed, "episodes (recorded 3, given 10)")
    elsewhere = run_cli([f"resume={good}"], tmp_path / "elsewhere")
    assert elsewhere.code == 2 and "hydra.run.dir: a resume continues the run in its own" in (
        elsewhere.proc.stderr
    )
    assert _listing(good) == before  # summary.json still says complete
    assert not (tmp_path / "elsewhere").exists()
    notarun = tmp_path / "notarun"
    notarun.mkdir()
    (notarun / "notes.txt").write_text("mine")
    _one_line(run_cli([f"resume={notarun}"], notarun), "is not an rlrec run directory")
    assert [p.name for p in notarun.iterdir()] == ["notes.txt"]
    missing = tmp_path / "does" / "not" / "exist"
    _one_line(run_cli([f"resume={missing}"], missing), "does not exist")
    assert not (tmp_path / "does").exists()
    recorded = tmp_path / "recorder"
    with Recorder(gym.make("CartPole-v1"), recorded, "never", sinks=["parquet"]) as env:
        env.reset(seed=0)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    before = _listing(recorded)
    _one_line(run_cli([f"resume={recorded}"], recorded), "was recorded by a Recorder")
    assert _listing(recorded) == before


def test_a_resume_applies_the_display_keys_it_takes(tmp_path):
    run_dir = tmp_path / "run"
    killed = _start(run_dir, "episodes=5000")
    _wait_for_parts(run_dir, killed)
    killed.kill()
    killed.wait()
    resumed = run_cli([f"resume={run_dir}", "sinks.console.every=1000"], run_dir)
    assert resumed.code == 0, resumed.proc.stderr[-2000:]
    lines = [x for x in resumed.proc.stdout.splitlines() if x.startswith("Episode ")]
    every_1000 = tuple(f"Episode {k}:" for k in range(1000, 5000, 1000))
    assert 1 <= len(lines) <= 4 and all(x.startswith(every_1000) for x in lines), lines[:5]
    assert pq.read_table(run_dir / "episodes.parquet")["episode"].to_pylist() == list(range(5000))
