"""Vector environments and worker processes: the same rows as the sequential run, only faster."""

from __future__ import annotations

import heapq
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import rlrec
from rlrec.records import EPISODE_SCHEMA
from tests.conftest import ROOT, decode, plain_loop, run_cli
from tests.policies import BalancePolicy

COMPARED = ["episode", "seed", "return", "length", "terminated", "truncated"]
BALANCE = "policy._target_=tests.policies.BalancePolicy"
BATCH_BALANCE = "policy._target_=tests.policies.BatchBalancePolicy"


def _run(tmp_path: Path, name: str, *overrides: str) -> pd.DataFrame:
    result = rlrec.run(
        ["trigger=never", "sinks=[parquet]", "success_threshold=20", *overrides],
        run_dir=tmp_path / name,
    )
    assert result.summary["status"] == "complete"
    return result.episodes.to_pandas()


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """The sequential runs every parallel run must equal (7 episodes: 2, 3 and 4 do not divide)."""
    tmp = tmp_path_factory.mktemp("sequential")
    return {
        "random": _run(tmp, "random", "episodes=7"),
        "balance": _run(tmp, "balance", "episodes=7", "policy=custom", BALANCE),
    }


@pytest.mark.parametrize(
    ("num_envs", "vectorization", "workers", "policy"),
    [
        (3, "sync", 1, "random"),
        (4, "async", 1, "random"),
        (1, "sync", 2, "random"),
        (2, "sync", 3, "random"),
        (2, "async", 2, "balance"),
        (3, "sync", 1, "balance"),
        (3, "async", 1, "batch"),
    ],
)
def test_rows_equal_the_sequential_run(
    tmp_path: Path,
    sequential: dict[str, pd.DataFrame],
    num_envs: int,
    vectorization: str,
    workers: int,
    policy: str,
) -> None:
    chosen = {"random": [], "balance": ["policy=custom", BALANCE]}.get(
        policy, ["policy=custom", BATCH_BALANCE]
    )
    rows = _run(
        tmp_path,
        "parallel",
        "episodes=7",
        f"env.num_envs={num_envs}",
        f"env.vectorization={vectorization}",
        f"workers={workers}",
        *chosen,
    )
    expected = sequential["balance" if policy == "batch" else policy]
    assert list(rows["episode"]) == list(range(7))  # every episode once, in order
    pd.testing.assert_frame_equal(rows[COMPARED], expected[COMPARED])
    assert list(rows["obs_digest"]) == list(expected["obs_digest"])  # every observation equal
    assert list(rows["success"]) == list(expected["success"])
    act = BalancePolicy(None, None).act if policy != "random" else None
    independent = pd.DataFrame(plain_loop("CartPole-v1", 0, 7, act=act))
    pd.testing.assert_frame_equal(rows[COMPARED], independent[COMPARED])
    assert set(rows["worker"]) <= set(range(workers))
    if workers == 1:  # in one process, which sub-env runs what follows from the lengths
        assert set(rows["env_index"]) == set(range(num_envs))
    else:  # workers take chunks of episodes as they free up
        assert set(rows["env_index"]) <= set(range(num_envs))
    table = pq.read_table(tmp_path / "parallel" / "episodes.parquet")
    for name in ("env_index", "worker"):
        assert table.schema.field(name).type == EPISODE_SCHEMA.field(name).type


@pytest.mark.parametrize("extra", [[], ["env.num_envs=3"], ["workers=2"]])
def test_a_policy_with_only_act_batch(
    tmp_path: Path, sequential: dict[str, pd.DataFrame], extra: list[str]
) -> None:
    only_batch = "policy._target_=tests.policies.OnlyBatchPolicy"
    rows = _run(tmp_path, "batch", "episodes=7", "policy=custom", only_batch, *extra)
    pd.testing.assert_frame_equal(rows[COMPARED], sequential["balance"][COMPARED])


def test_more_sub_environments_and_workers_than_episodes(tmp_path: Path) -> None:
    rows = _run(tmp_path, "few", "episodes=2", "env.num_envs=5", "workers=3")
    expected = pd.DataFrame(plain_loop("CartPole-v1", 0, 2))
    pd.testing.assert_frame_equal(rows[COMPARED], expected[COMPARED])
    assert set(rows["worker"]) <= {0, 1, 2}  # the rows name workers that exist


def test_pendulum_box_actions_in_a_vector_env(tmp_path: Path) -> None:
    rows = _run(tmp_path, "pendulum", "env=pendulum", "episodes=3", "env.num_envs=2")
    expected = pd.DataFrame(plain_loop("Pendulum-v1", 0, 3))
    pd.testing.assert_frame_equal(rows[COMPARED], expected[COMPARED])


def test_a_signal_while_one_async_sub_environment_sends_its_frame_leaves_a_clean_close() -> None:
    """A run films some of its async sub-environments by asking their processes alone for
    frames. A signal that lands while a frame crosses its pipe (half of it read) must not leave
    the pipe to be read by ``close``: each of 60 moments ends in a clean, quick close (asked
    without the env knowing, 22 of 60 closes raised OSError here, and a run's end could hang)."""
    script = textwrap.dedent(
        """
        import signal, time
        import gymnasium as gym
        import numpy as np
        from rlrec.drivers.vector import _render_some
        from rlrec.envs import close_vector_env

        class Frames(gym.Env):
            observation_space = gym.spaces.Box(-1, 1, (1,))
            action_space = gym.spaces.Discrete(2)
            metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
            render_mode = "rgb_array"
            frame = np.ones((400, 600, 3), np.uint8)  # CartPole's size
            def reset(self, seed=None, options=None):
                return np.zeros(1, np.float32), {}
            def render(self):
                return self.frame

        class Stop(Exception):
            pass

        def stop(*_):
            raise Stop

        signal.signal(signal.SIGALRM, stop)
        for k in range(60):
            vec = gym.vector.AsyncVectorEnv([Frames, Frames])
            vec.reset()
            try:
                signal.setitimer(signal.ITIMER_REAL, 0.002 + 0.0005 * k)
                while True:
                    _render_some(vec, [0])
            except Stop:
                pass
            start = time.monotonic()
            close_vector_env(vec)
            assert time.monotonic() - start < 10 and vec.closed, k
            assert not any(p.is_alive() for p in vec.processes), k
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_films_from_other_sub_environments_and_workers(tmp_path: Path) -> None:
    result = run_cli(
        ["trigger=every", "episodes=6", "env.num_envs=2", "workers=2", "policy=custom", BALANCE],
        tmp_path / "run",
    )
    assert result.code == 0, result.proc.stderr
    rows = pd.read_parquet(tmp_path / "run" / "episodes.parquet")
    assert len(rows) == 6
    assert {(1, 1), (0, 1), (1, 0)} <= set(zip(rows["env_index"], rows["worker"], strict=True))
    for row in rows.itertuples():
        assert row.video == f"videos/eval-episode-{row.episode}.mp4"
        frames, fps, size = decode(tmp_path / "run" / row.video)
        assert (frames, fps, size) == (row.length + 1, 50, (600, 400))
    videos = sorted(p.name for p in (tmp_path / "run" / "videos").iterdir())
    assert videos == [f"eval-episode-{e}.mp4" for e in range(6)]  # nothing temporary left


def test_async_films_only_the_triggered_episodes(tmp_path: Path) -> None:
    result = rlrec.run(
        [
            *("trigger=periodic", "trigger.period=3", "episodes=7", "env.num_envs=3"),
            *("env.vectorization=async", "sinks=[parquet]"),
        ],
        run_dir=tmp_path / "run",
    )
    rows = result.episodes.to_pandas()
    filmed = rows.dropna(subset=["video"])
    assert list(filmed["episode"]) == [0, 3, 6]
    assert set(filmed["video_reason"]) == {"periodic"}
    for row in filmed.itertuples():
        assert decode(tmp_path / "run" / row.video)[:2] == (row.length + 1, 50)


def _grid_steps(lengths: list[int], n: int) -> int:
    """Vector steps until every episode has ended: each sub-env takes the next episode when its
    own ends (lower sub-env index first when several end together)."""
    free = [(0, i) for i in range(n)]  # (step at which the sub-env is free, its index)
    end = 0
    for length in lengths:
        start, i = heapq.heappop(free)
        end = max(end, start + length)
        heapq.heappush(free, (start + length, i))
    return end


def test_tile_films_every_sub_environment_in_one_grid(tmp_path: Path) -> None:
    result = run_cli(
        ["trigger=every", "episodes=6", "env.num_envs=4", "video.tile=true", "sinks=[parquet]"],
        tmp_path / "run",
    )
    assert result.code == 0, result.proc.stderr
    rows = pd.read_parquet(tmp_path / "run" / "episodes.parquet")
    assert set(rows["video"]) == {"videos/eval-tiled.mp4"}
    assert [p.name for p in (tmp_path / "run" / "videos").iterdir()] == ["eval-tiled.mp4"]
    frames, fps, size = decode(tmp_path / "run" / "videos" / "eval-tiled.mp4")
    # the reset frames, then one grid a step: a 2 x 2 grid of 600 x 400 frames
    assert (frames, fps, size) == (1 + _grid_steps(list(rows["length"]), 4), 50, (1200, 800))


def test_adaptive_films_the_same_episodes_as_the_sequential_run(tmp_path: Path) -> None:
    base = ["trigger=adaptive", "trigger.criterion=best", "episodes=12", "sinks=[parquet]"]
    sequential = rlrec.run(base, run_dir=tmp_path / "seq").episodes.to_pandas()
    for name, extra in (("workers", ["workers=2"]), ("vector", ["env.num_envs=3"])):
        rows = rlrec.run(base + extra, run_dir=tmp_path / name).episodes.to_pandas()
        assert list(rows["video"]) == list(sequential["video"])
        assert rows["video"].notna().sum() >= 2
        for row in rows.dropna(subset=["video"]).itertuples():
            assert decode(tmp_path / name / row.video)[0] == row.length + 1


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["env.num_envs=0"], "env.num_envs"),
        (["env.vectorization=threads"], "env.vectorization"),
        (["workers=0"], "workers"),
        (["video.tile=maybe"], "video.tile"),
        (["workers=2", "policy=qlearning"], "workers"),
        (["env.num_envs=2", "policy=qlearning"], "env.num_envs"),
        (["env.num_envs=2", "trigger=adaptive", "trigger.method=buffer"], "trigger.method"),
        (["env.num_envs=2", "trigger=adaptive", "video.tile=true"], "video.tile"),
        (["video.tile=true"], "video.tile"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, overrides: list[str], key: str) -> None:
    result = run_cli(["episodes=2", *overrides], tmp_path / "run")
    assert result.code == 2, result.proc.stderr
    assert f"rlrec: error: {key}:" in result.proc.stderr
    assert "Fix:" in result.proc.stderr and "Traceback" not in result.proc.stderr


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_worker_fails_the_run_and_keeps_the_episodes(tmp_path: Path, how: str) -> None:
    failing = "policy._target_=tests.policies.FailsInWorker"
    # The failing worker fails only once the other has finished an episode (its keeping is what
    # this test checks); a killed one is noticed at once (its pipe ends).
    after = 30 if how == "raise" else 120
    result = run_cli(
        [
            *("episodes=400", "trigger=never", "workers=2", "policy=custom", failing),
            *(f"+policy.how={how}", f"+policy.after={after}", "sinks=[parquet]"),
            f"+policy.mark={tmp_path / 'worker-0-finished-one'}",
        ],
        tmp_path / "run",
    )
    assert result.code == 1
    stderr = result.proc.stderr
    assert ("the policy broke" if how == "raise" else "exited with code -9") in stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed"
    rows = pd.read_parquet(tmp_path / "run" / "episodes.parquet")
    # Worker 1 fails at its 31st episode; what it finished before comes with its error. One
    # killed outright loses what it had not sent yet (at most FLUSH_SECONDS' worth), as a killed
    # run loses the episodes since its last flush.
    by_worker = rows["worker"].value_counts()
    assert len(rows) < 400 and by_worker[0] > 0
    assert by_worker[1] == after if how == "raise" else by_worker.get(1, 0) <= after
    expected = pd.DataFrame(plain_loop("CartPole-v1", 0, 400, act=BalancePolicy(None, None).act))
    kept = expected[expected["episode"].isin(rows["episode"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows[COMPARED].reset_index(drop=True), kept[COMPARED])


@pytest.mark.slow
@pytest.mark.parametrize("group", [False, True], ids=["parent", "process-group"])
@pytest.mark.parametrize(
    "parallel",
    [["workers=2", "env.num_envs=2"], ["env.num_envs=3", "env.vectorization=async"]],
    ids=["workers", "async"],
)
def test_ctrl_c_stops_cleanly_and_resume_completes(
    tmp_path: Path, group: bool, parallel: list[str]
) -> None:
    out = tmp_path / "run"
    args = ["episodes=300", "trigger=periodic", "trigger.period=10", *parallel]
    # the first part is written early, so that the interrupt comes well before the run's end
    args += ["sinks=[parquet]", "sinks.parquet.flush_seconds=0.25", "env.max_episode_steps=200"]
    env = os.environ | {"SDL_VIDEODRIVER": "dummy"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args, f"hydra.run.dir={out}"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not list((out / "episodes").glob("part-*.parquet")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    if group:  # what a terminal's Ctrl-C does: every process of the group gets SIGINT
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, proc.stderr.read()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    rows = pd.read_parquet(out / "episodes.parquet")
    assert 0 < len(rows) < 300
    assert rows["episode"].is_unique
    for video in (out / "videos").iterdir():  # only whole films under final names
        assert not video.name.startswith(".")
        episode = int(video.stem.rsplit("-", 1)[1])
        length = int(rows.loc[rows["episode"] == episode, "length"].iloc[0])
        assert decode(video)[0] == length + 1
    resumed = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), f"resume={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    rows = pd.read_parquet(out / "episodes.parquet")
    expected = pd.DataFrame(plain_loop("CartPole-v1", 0, 300, max_episode_steps=200))
    pd.testing.assert_frame_equal(rows[COMPARED], expected[COMPARED])
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(
        f"eval-episode-{e}.mp4" for e in range(0, 300, 10)
    )


def test_a_trained_checkpoint_evaluates_in_parallel(tmp_path: Path) -> None:
    trained = rlrec.run(
        ["policy=qlearning", "episodes=60", "trigger=never", "sinks=[parquet]"],
        run_dir=tmp_path / "train",
    )
    evaluate = ["policy=qlearning", f"policy.checkpoint={trained.run_dir / 'policy.checkpoint'}"]
    sequential = _run(tmp_path, "seq", "episodes=9", *evaluate)
    for name, extra in (("workers", "workers=2"), ("vector", "env.num_envs=4")):
        rows = _run(tmp_path, name, "episodes=9", *evaluate, extra)
        pd.testing.assert_frame_equal(rows[COMPARED], sequential[COMPARED])
    assert sequential["return"].nunique() > 1  # greedy, but the episodes differ by their seeds


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_workers_inside_a_launchers_jobs(tmp_path: Path, launcher: str) -> None:
    """A joblib job runs in a loky process, whose default start method a spawned child does not
    know; a submitit job runs in a process of its own."""
    result = run_cli(
        [
            f"hydra/launcher={launcher}",
            "seed=0,1",
            "workers=2",
            "env.num_envs=2",
            "episodes=6",
            "trigger=never",
            "sinks=[parquet]",
        ],
        tmp_path / "sweep",
        multirun=True,
    )
    assert result.code == 0, result.proc.stderr
    for job, seed in ((0, 0), (1, 1)):
        rows = pd.read_parquet(tmp_path / "sweep" / str(job) / "episodes.parquet")
        expected = pd.DataFrame(plain_loop("CartPole-v1", seed, 6))
        pd.testing.assert_frame_equal(rows[COMPARED], expected[COMPARED])


def test_an_async_env_stopped_mid_step_closes_without_waiting_for_it() -> None:
    """A signal that lands while the sub-environments step: closing terminates their processes
    instead of reading half an answer (the Ctrl-C tests reach this only when the signal happens
    to land there)."""
    import gymnasium as gym
    import numpy as np

    from rlrec.envs import close_vector_env

    vec = gym.vector.AsyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    vec.reset(seed=0)
    vec.step_async(np.zeros(2, dtype=np.int64))  # the step is under way, its answers unread
    processes = list(vec.processes)
    close_vector_env(vec)
    assert vec.closed and not any(p.is_alive() for p in processes)
