"""Sweeps past one machine: a real Ray cluster and a real SLURM, started here on 127.0.0.1 only.

Each gives the summaries the basic launcher gives for the same sweep, records a job it loses as
failed (the process killed outright: no exception, no summary of its own) and lets the others
finish. Every socket their processes open is watched: none may listen beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.clusters import RAY_ENV, RayCluster, Slurm
from tests.conftest import ROOT, run_cli
from tests.system import LoopbackOnly
from tests.test_shards import assert_same_run
from tests.test_sweep import _assert_same_summaries

# one worker starts each cluster once for the module (and SLURM's munged is machine-wide)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("clusters")]

#: Two by two: seeds and a trigger that films (each job's encoder runs where the job runs).
GRID = ["seed=0,1", "trigger=never,every", "episodes=4", "env.max_episode_steps=60"]
DOOMED = [
    "policy._target_=tests.policies.DiesOnSeed",
    "+policy.run_seed=${seed}",
    "+policy.doomed=1",
    "seed=0,1",
    "episodes=3",
    "trigger=never",
]


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("basic") / "sweep"
    result = run_cli(GRID, out, multirun=True)
    assert result.code == 0, result.proc.stderr[-3000:]
    return out


def watched(start, folder):
    """The cluster ``start(folder)`` starts, with every socket opened while it runs watched; after
    the module's tests, stopped, and none may have listened beyond 127.0.0.1."""
    watch = LoopbackOnly()
    cluster = None
    try:
        cluster = start(folder)
        cluster.watch = watch
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        watch.stop()
    watch.check()


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    yield from watched(RayCluster, tmp_path_factory.mktemp("ray"))


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    yield from watched(Slurm, tmp_path_factory.mktemp("slurm"))


def assert_lost_job_recorded(sweep, result) -> str:
    """Job 1 was killed: failed with the cluster's word for it; job 0 complete; exit 1."""
    assert result.code == 1, result.proc.stderr[-3000:]
    assert "Traceback" not in result.proc.stderr
    jobs = {j["run_seed"]: j for j in pq.read_table(sweep / "summary.parquet").to_pylist()}
    assert jobs[0]["status"] == "complete" and jobs[0]["n_episodes"] == 3
    assert jobs[1]["status"] == "failed" and jobs[1]["n_episodes"] == 0
    lost = json.loads((sweep / "1" / "summary.json").read_text())
    assert lost["status"] == "failed" and lost["job"] == 1
    assert "job(s) did not complete: 1" in result.proc.stderr
    return lost["error"]


def assert_interrupted_sweep_ends_its_jobs(sweep: Path, args: list[str], environ: dict) -> None:
    """A two-job sweep stopped by SIGINT to its process once both jobs have episodes on disk:
    exit 130, no traceback, each job ``interrupted`` with a summary of what is on its disk."""
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *args, "seed=0,1", "episodes=200000"]
    cmd += ["trigger=never", "sinks.parquet.flush_seconds=0.2", f"hydra.sweep.dir={sweep}"]
    env = os.environ | {"PYTHONPATH": ""}
    for name, value in environ.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not all(any((sweep / j / "episodes").glob("part-*")) for j in ("0", "1")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    for job in (sweep / "0", sweep / "1"):
        summary = json.loads((job / "summary.json").read_text())
        table = (
            pq.read_table(job / "episodes.parquet")
            if (job / "episodes.parquet").exists()
            else pq.ParquetDataset(job / "episodes").read()
        )
        episodes = sorted(table["episode"].to_pylist())
        assert summary["status"] == "interrupted" and summary["n"] == len(episodes) > 0, summary
        assert episodes == list(range(len(episodes)))


# --- Ray ------------------------------------------------------------------------------------


def test_ray_sweep_equals_the_basic_launchers(ray_cluster, basic_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        ["hydra/launcher=ray", *GRID], sweep, multirun=True, environ=ray_cluster.client_env
    )
    assert result.code == 0, result.proc.stderr[-3000:]
    _assert_same_summaries(sweep, basic_sweep)
    for job in range(4):
        assert_same_run(sweep / str(job), basic_sweep / str(job))
    # the cluster ran them: four tasks of this sweep's driver, finished
    assert ray_cluster.sweep_tasks(sweep) == ["FINISHED"] * 4
    assert "Connecting to existing Ray cluster" in result.proc.stderr
    ray_cluster.watch.check()


def test_shards_on_ray_merge_into_the_run_done_in_one_go(ray_cluster, tmp_path):
    common = ["episodes=9", "trigger=every", "env.max_episode_steps=40"]
    sweep = tmp_path / "sweep"
    args = ["hydra/launcher=ray", "shard=range(0,3)", "shards=3", *common]
    result = run_cli(args, sweep, multirun=True, environ=ray_cluster.client_env)
    assert result.code == 0, result.proc.stderr[-3000:]
    assert f"3 shards merged into {sweep / 'merged'}" in result.proc.stderr
    assert run_cli(common, tmp_path / "sequential").code == 0
    assert_same_run(sweep / "merged", tmp_path / "sequential")
    assert ray_cluster.sweep_tasks(sweep) == ["FINISHED"] * 3


def test_a_job_ray_loses_is_recorded_failed(ray_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["hydra/launcher=ray", *DOOMED]
    result = run_cli(args, sweep, multirun=True, environ=ray_cluster.client_env)
    error = assert_lost_job_recorded(sweep, result)
    assert "WorkerCrashedError" in error or "died" in error, error
    assert sorted(ray_cluster.sweep_tasks(sweep)) == ["FAILED", "FINISHED"]


def test_an_interrupted_ray_sweep_ends_its_jobs_interrupted(ray_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    assert_interrupted_sweep_ends_its_jobs(sweep, ["hydra/launcher=ray"], ray_cluster.client_env)
    assert "RUNNING" not in ray_cluster.sweep_tasks(sweep)


def test_a_client_whose_token_the_cluster_refuses_is_one_line(ray_cluster, tmp_path):
    """Authentication off on the client (RAY_AUTH_MODE=disabled) against a cluster whose token
    authentication is on: the cluster's reason at once, not Ray's minute of retries."""
    sweep = tmp_path / "sweep"
    environ = ray_cluster.client_env | {"RAY_AUTH_MODE": "disabled"}
    result = run_cli(["hydra/launcher=ray", "seed=0,1"], sweep, multirun=True, environ=environ)
    assert result.code == 2, result.proc.stderr[-3000:]
    (line,) = result.proc.stderr.strip().splitlines()
    assert line.startswith(
        f"rlrec: error: RAY_ADDRESS: the Ray cluster at {ray_cluster.address} has token "
        "authentication on and refused this client (RPC error: InvalidAuthToken"
    )
    assert "Fix: put the cluster's token" in line and "~/.ray/auth_token" in line
    assert not (sweep / "multirun.yaml").exists()


def test_ray_reaches_a_cluster_whose_authentication_is_off(tmp_path):
    """The same user (a token in the home folder, RAY_AUTH_MODE unset) and a cluster started
    with RAY_AUTH_MODE=disabled: the token the client sends is ignored."""
    (tmp_path / "ray").mkdir()
    started = contextlib.contextmanager(watched)
    with started(functools.partial(RayCluster, auth=False), tmp_path / "ray") as cluster:
        sweep = tmp_path / "sweep"
        args = ["hydra/launcher=ray", "seed=0,1", "episodes=2", "trigger=never"]
        result = run_cli(args, sweep, multirun=True, environ=cluster.client_env)
        assert result.code == 0, result.proc.stderr[-3000:]
        jobs = pq.read_table(sweep / "summary.parquet").to_pylist()
        assert [(j["status"], j["n_episodes"]) for j in jobs] == [("complete", 2)] * 2
        assert cluster.sweep_tasks(sweep) == ["FINISHED"] * 2


@pytest.mark.alone  # every process that listens on this machine meanwhile must be Ray's
@pytest.mark.xdist_group("alone")  # out of the module's group (a cluster of its own): at the end
def test_ray_starts_a_local_cluster_of_its_own_when_given_none(tmp_path):
    """No address, no RAY_ADDRESS: a cluster of this machine, on 127.0.0.1, gone afterwards."""
    from tests.system import require_module

    require_module("ray", 'pip install -e ".[ray]"')
    watch = LoopbackOnly()
    sweep = tmp_path / "sweep"
    # Ray's defaults: its mode unset, so the new cluster turns token authentication on and
    # writes the token to the home folder (a temporary one here)
    home = tmp_path / "home"
    home.mkdir()
    environ = {"RAY_ADDRESS": None, "RAY_AUTH_MODE": None, "RAY_USAGE_STATS_ENABLED": "0"}
    environ["HOME"] = str(home)
    args = ["hydra/launcher=ray", "hydra.launcher.num_cpus=2", "seed=0,1", "episodes=3"]
    args.append("trigger=never")
    result = run_cli(args, sweep, multirun=True, environ=environ)
    watch.stop()
    assert result.code == 0, result.proc.stderr[-3000:]
    assert "Started a local Ray instance" in result.proc.stderr
    assert (home / ".ray" / "auth_token").is_file()  # Ray made it: authentication was on
    jobs = pq.read_table(sweep / "summary.parquet").to_pylist()
    assert [(j["run_seed"], j["status"], j["n_episodes"]) for j in jobs] == [
        (0, "complete", 3),
        (1, "complete", 3),
    ]
    listeners = watch.check()
    assert any("gcs_server" in process for _, process in listeners)
    assert any("raylet" in process for _, process in listeners)
    # the cluster went with the sweep: none of the processes that listened is left running
    pids = {int(p.split(",")[0]) for _, process in listeners for p in process.split("pid=")[1:]}
    assert pids and not [pid for pid in pids if _running(pid)]


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting for its parent to read it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_an_unreachable_ray_address_is_one_line(tmp_path):
    from tests.clusters import free_port
    from tests.system import require_module

    require_module("ray", 'pip install -e ".[ray]"')
    address = f"127.0.0.1:{free_port()}"
    sweep = tmp_path / "sweep"
    args = ["hydra/launcher=ray", f"hydra.launcher.address={address}", "seed=0,1"]
    result = run_cli(args, sweep, multirun=True, environ=RAY_ENV, timeout=60)
    assert result.code == 2
    lines = result.proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.proc.stderr
    assert lines[0].startswith(
        f"rlrec: error: hydra.launcher.address: cannot start or reach the Ray cluster at {address}"
    )
    assert "ray start --head" in lines[0]
    assert not (sweep / "multirun.yaml").exists()


def test_ray_not_installed_names_the_extra(tmp_path):
    """A ``ray`` that cannot be imported (shadowed here) ends with the extra to install."""
    fake = tmp_path / "site" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    sweep = tmp_path / "sweep"
    result = run_cli(
        ["hydra/launcher=ray", "seed=0,1"],
        sweep,
        multirun=True,
        environ={"PYTHONPATH": str(tmp_path / "site")},
    )
    assert result.code == 2
    assert result.proc.stderr.strip() == (
        'rlrec: error: hydra/launcher=ray: Ray is not installed. Fix: pip install "rlrec[ray]"'
    )


# --- SLURM ----------------------------------------------------------------------------------


def slurm_args(*args: str) -> list[str]:
    """The ``slurm`` preset as a user points it at a cluster: its partition and what a job
    needs (this node has two CPUs and no 8 GB to spare per job)."""
    resources = ["hydra.launcher.partition=rlrec", "hydra.launcher.cpus_per_task=1"]
    return ["hydra/launcher=slurm", *resources, "hydra.launcher.mem_gb=1", *args]


def test_slurm_sweep_equals_the_basic_launchers(slurm, basic_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(slurm_args(*GRID), sweep, multirun=True, environ=slurm.env)
    assert result.code == 0, result.proc.stderr[-3000:]
    _assert_same_summaries(sweep, basic_sweep)
    for job in range(4):
        assert_same_run(sweep / str(job), basic_sweep / str(job))
    # SLURM ran them: one array job of four tasks, each with its own log from srun
    logs = sorted(p.name for p in (sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 4 and len({name.split("_")[0] for name in logs}) == 1, logs
    slurm.watch.check()


def test_a_job_slurm_loses_is_recorded_failed(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(slurm_args(*DOOMED), sweep, multirun=True, environ=slurm.env)
    error = assert_lost_job_recorded(sweep, result)
    assert error.startswith("SLURM job ") and "without a result" in error, error
    assert ".submitit" in error  # where its log is


def test_an_interrupted_slurm_sweep_ends_its_jobs_interrupted(slurm, tmp_path):
    assert_interrupted_sweep_ends_its_jobs(tmp_path / "sweep", slurm_args(), slurm.env)
