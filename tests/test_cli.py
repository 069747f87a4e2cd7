"""The contract's commands through the real CLI, in subprocesses, writing under tmp_path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, decode, plain_loop, run_cli

pytestmark = pytest.mark.slow

KEY = ["episode", "seed", "return", "length", "terminated", "truncated"]


def _episodes(run_dir: Path) -> list[dict]:
    return pq.read_table(run_dir / "episodes.parquet").to_pylist()


def _assert_ok(result) -> None:
    assert result.code == 0, result.proc.stderr[-3000:]
    assert "Traceback" not in result.proc.stderr


def _assert_complete_run(run_dir: Path, episodes: int) -> list[dict]:
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"
    rows = _episodes(run_dir)
    assert [r["episode"] for r in rows] == list(range(episodes))
    return rows


def test_default_run_is_the_evaluation_scenario(tmp_path):
    result = run_cli([], tmp_path / "run")
    _assert_ok(result)
    rows = _assert_complete_run(tmp_path / "run", 4)
    expected = plain_loop("CartPole-v1", 0, 4, digests=True)
    assert [{k: r[k] for k in (*KEY, "obs_digest")} for r in rows] == expected
    for r in rows:
        assert r["video"] == f"videos/eval-episode-{r['episode']}.mp4"
        assert decode(tmp_path / "run" / r["video"]) == (r["length"] + 1, 50.0, (600, 400))
    out = result.proc.stdout
    for r in rows:
        assert f"Episode {r['episode']}: {r['length']} steps, return = {r['return']:.2f}" in out
    assert "95% CI" in out and "mean" in out and "success rate" not in out


def test_periodic_films_every_250th_of_1000(tmp_path):
    result = run_cli(["trigger=periodic", "trigger.period=250", "episodes=1000"], tmp_path / "run")
    _assert_ok(result)
    rows = _assert_complete_run(tmp_path / "run", 1000)
    filmed = [r["episode"] for r in rows if r["video"]]
    assert filmed == [0, 250, 500, 750]
    assert sorted(p.name for p in (tmp_path / "run" / "videos").iterdir()) == [
        f"eval-episode-{e}.mp4" for e in sorted(filmed, key=str)
    ]


def test_every_and_mountaincar(tmp_path):
    _assert_ok(run_cli(["trigger=every", "episodes=4"], tmp_path / "every"))
    assert all(r["video"] for r in _assert_complete_run(tmp_path / "every", 4))
    _assert_ok(run_cli(["env=mountaincar"], tmp_path / "mc"))
    rows = _assert_complete_run(tmp_path / "mc", 4)
    assert [{k: r[k] for k in KEY} for r in rows] == plain_loop("MountainCar-v0", 0, 4)
    assert decode(tmp_path / "mc" / rows[0]["video"])[0] == rows[0]["length"] + 1


def test_custom_policy_as_written_in_the_contract(tmp_path):
    result = run_cli(["policy=custom", "policy._target_=mypackage.agents.MyPolicy"], tmp_path / "r")
    _assert_ok(result)
    rows = _assert_complete_run(tmp_path / "r", 4)
    assert all(r["length"] == 500 and r["truncated"] for r in rows)  # the example balances


def test_vp9_and_stats_only(tmp_path):
    _assert_ok(run_cli(["video.codec=vp9", "episodes=2"], tmp_path / "vp9"))
    for r in _assert_complete_run(tmp_path / "vp9", 2):
        assert r["video"].endswith(".webm")
        assert decode(tmp_path / "vp9" / r["video"])[0] == r["length"] + 1
    _assert_ok(run_cli(["trigger=never", "sinks=[parquet]"], tmp_path / "never"))
    assert all(r["video"] is None for r in _assert_complete_run(tmp_path / "never", 4))
    assert not (tmp_path / "never" / "videos").exists()


def test_multirun_seeds_one_complete_run_per_job(tmp_path):
    result = run_cli(
        ["seed=0,1,2", "trigger=never", "episodes=5"], tmp_path / "sweep", multirun=True
    )
    _assert_ok(result)
    for job in range(3):
        rows = _assert_complete_run(tmp_path / "sweep" / str(job), 5)
        assert {(r["run_seed"], r["job"]) for r in rows} == {(job, job)}
        assert [{k: r[k] for k in KEY} for r in rows] == plain_loop("CartPole-v1", job, 5)


def test_multirun_range_grid(tmp_path):
    args = ["seed=range(0,4)", "trigger=periodic", "trigger.period=10,50", "episodes=3"]
    _assert_ok(run_cli(args, tmp_path / "sweep", multirun=True))
    assert sorted(int(p.name) for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == list(
        range(8)
    )
    for job in range(8):
        _assert_complete_run(tmp_path / "sweep" / str(job), 3)


LAUNCHED = ["seed=range(0,4)", "trigger=periodic", "trigger.period=2", "episodes=3"]


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    """The sweep every other launcher is compared with, on Hydra's basic launcher."""
    sweep = tmp_path_factory.mktemp("basic")
    _assert_ok(run_cli(LAUNCHED, sweep, multirun=True))
    return sweep


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers_give_the_same_columns_as_the_basic_one(basic_sweep, tmp_path, launcher):
    args = [f"hydra/launcher={launcher}", *LAUNCHED]
    _assert_ok(run_cli(args, tmp_path / "other", multirun=True))
    for job in range(4):
        basic = _assert_complete_run(basic_sweep / str(job), 3)
        other = _assert_complete_run(tmp_path / "other" / str(job), 3)
        assert [{k: r[k] for k in [*KEY, "video"]} for r in basic] == [
            {k: r[k] for k in [*KEY, "video"]} for r in other
        ]
        for r in other:
            if r["video"]:
                assert decode(tmp_path / "other" / str(job) / r["video"])[0] == r["length"] + 1


USER_ERRORS = [
    (["env.id=CartPol-v1"], "env.id", "CartPole-v1"),
    (["trigger=periodic", "trigger.period=0"], "trigger.period", ">= 1"),
    (["env.id=tests.envs:NoRgbCartPole-v0"], "trigger", "trigger=never"),
    (["video.codec=h265"], "video.codec", "h264"),
    (["policy=custom", "policy._target_=nowhere.Policy"], "policy._target_", "nowhere"),
    (["episodes=0"], "episodes", ">= 1"),
    (["hydra.run.dir=/proc/rlrec-cannot-write"], "hydra.run.dir", "writable"),
]


@pytest.mark.parametrize(("args", "key", "hint"), USER_ERRORS)
def test_user_errors_exit_2_with_the_key_and_no_traceback(tmp_path, args, key, hint):
    cmd = [sys.executable, str(ROOT / "run.py"), *args]
    if not any(a.startswith("hydra.run.dir") for a in args):
        cmd.append(f"hydra.run.dir={tmp_path / 'run'}")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"{key}:" in proc.stderr and hint in proc.stderr and "Fix:" in proc.stderr


def test_failed_job_in_a_sweep_does_not_stop_the_others(tmp_path):
    args = ["trigger=periodic", "trigger.period=0,2", "episodes=3"]
    result = run_cli(args, tmp_path / "sweep", multirun=True)
    assert result.code != 0
    assert "Traceback" not in result.proc.stderr
    failed = json.loads((tmp_path / "sweep" / "0" / "summary.json").read_text())
    assert failed["status"] == "failed" and "trigger.period" in failed["error"]
    _assert_complete_run(tmp_path / "sweep" / "1", 3)


def test_rlrec_run_from_any_folder_imports_that_folder(tmp_path):
    rlrec_run = shutil.which("rlrec-run") or str(Path(sys.executable).parent / "rlrec-run")
    (tmp_path / "my_agents.py").write_text(
        "class Lefty:\n"
        "    def __init__(self, observation_space, action_space):\n"
        "        pass\n\n"
        "    def act(self, obs):\n"
        "        return 0\n"
    )
    result = run_cli(
        ["policy=custom", "policy._target_=my_agents.Lefty", "trigger=never"],
        tmp_path / "run",
        cwd=tmp_path,
        command=[rlrec_run],
    )
    _assert_ok(result)
    rows = _assert_complete_run(tmp_path / "run", 4)
    assert [{k: r[k] for k in KEY} for r in rows] == plain_loop(
        "CartPole-v1", 0, 4, act=lambda o: 0
    )


def test_two_runs_in_the_same_second_get_two_folders(tmp_path):
    cmd = [sys.executable, str(ROOT / "run.py"), "trigger=never", "sinks=[parquet]", "episodes=1"]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    runs = sorted((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 3
    for run in runs:
        _assert_complete_run(run, 1)
