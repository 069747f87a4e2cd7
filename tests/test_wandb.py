"""The wandb sink in offline mode (no network), its run files read back by ``tests/wandb_files``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from rlrec.rundir import RunDir
from tests.conftest import ROOT, decode, kill_after_first_commit, plain_loop, resume_cli, run_cli
from tests.wandb_files import config, history, offline_runs, records, run_record, summary_values

pytestmark = pytest.mark.slow

OFFLINE = ["sinks.wandb.mode=offline"]


def test_an_offline_run_holds_each_episode_at_its_step_and_playable_films(tmp_path):
    args = ["sinks=[parquet,console,wandb]", *OFFLINE, "episodes=12"]
    args += ["trigger=periodic", "trigger.period=5", "+sinks.wandb.tags=[cartpole]"]
    result = run_cli(args, tmp_path / "run")
    assert result.code == 0, result.proc.stderr[-2000:]
    (path,) = offline_runs(tmp_path / "run")
    recs = records(path)
    run = run_record(recs)
    assert run.run_id == json.loads((tmp_path / "run" / "trackers.json").read_text())["wandb"]["id"]
    assert list(run.tags) == ["cartpole"] and run.project == "rlrec"
    settings = config(recs)
    assert settings["env.id"] == "CartPole-v1" and settings["episodes"] == 12

    rows = history(recs)
    episodes = [r for r in rows if "episode/return" in r]
    expected = plain_loop("CartPole-v1", 0, 12)
    assert [r["episode"] for r in episodes] == list(range(12))
    assert [r["episode/return"] for r in episodes] == [e["return"] for e in expected]
    assert [r["episode/length"] for r in episodes] == [e["length"] for e in expected]

    films = [r for r in rows if "film/path" in r]
    assert [r["episode"] for r in films] == [0, 5, 10]
    for film in films:
        assert film["film/_type"] == "video-file" and film["film/path"].endswith(".mp4")
        frames, fps, _ = decode(path.parent / "files" / film["film/path"])
        assert (frames, fps) == (expected[film["episode"]]["length"] + 1, 50)
    assert any("learning_curve/path" in r for r in rows)
    # memory under the key every tracker uses, on an axis of its own: the run's summary keeps
    # the last episode (11), not the episode count of a sample taken after it (12)
    memory = [r for r in rows if "system/rss_bytes" in r]
    assert memory and all(r["system/rss_bytes"] > 2**20 and "episode" not in r for r in memory)
    samples = pd.read_parquet(tmp_path / "run" / "_memory.parquet")
    assert [r["system/rss_bytes"] for r in memory] == samples["rss_bytes"].tolist()
    assert [r["system/episode"] for r in memory] == samples["episode"].tolist()
    assert summary_values(recs)["episode"] == 11
    # the Logs tab holds what the run printed (the tracker process prints nothing)
    logs = "".join(r.output_raw.line for r in recs if r.WhichOneof("record_type") == "output_raw")
    printed = [
        line for line in result.proc.stdout.splitlines() if line.startswith(("Episode", "Complete"))
    ]
    assert printed and all(line in logs for line in printed), (printed, logs[-2000:])
    # the program and arguments are the user's command line, not rlrec's tracker process
    (environment,) = [
        r.environment for r in recs if r.HasField("environment") and r.environment.program
    ]
    assert environment.program == str(ROOT / "run.py")
    assert list(environment.args)[:3] == args[:3]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["tracker_failures"] == {}


def test_a_sweeps_jobs_share_a_group_and_its_summary_has_a_run(tmp_path):
    args = ["sinks=[parquet,wandb]", *OFFLINE, "seed=0,1", "episodes=3", "trigger=never"]
    result = run_cli(args, tmp_path / "sweep", multirun=True)
    assert result.code == 0, result.proc.stderr[-2000:]
    group = "/".join((tmp_path / "sweep").resolve().parts[-2:])
    for job in (0, 1):
        (path,) = offline_runs(tmp_path / "sweep" / str(job))
        run = run_record(records(path))
        assert (run.run_group, run.display_name, run.job_type) == (group, f"seed={job}", "run")
    (path,) = offline_runs(tmp_path / "sweep")
    recs = records(path)
    run = run_record(recs)
    assert (run.run_group, run.job_type) == (group, "sweep")
    logged = {key for row in history(recs) for key in row}
    assert {"groups/_type", "learning_curves/_type"} <= logged


def test_a_resumed_run_logs_no_episode_twice(tmp_path):
    run_dir = tmp_path / "run"
    args = ["sinks=[parquet,console,wandb]", *OFFLINE, "episodes=3000"]
    args += ["env.max_episode_steps=60", "trigger=never"]
    kill_after_first_commit(run_dir, "wandb", *args)
    resumed = resume_cli(run_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    folders = offline_runs(run_dir)
    assert len(folders) == 2  # W&B's second offline folder, for the same run id
    assert len({run_record(records(f)).run_id for f in folders}) == 1
    logged = [r["episode"] for f in folders for r in history(records(f)) if "episode/return" in r]
    assert sorted(logged) == list(range(3000))  # every episode, once across the folders


def test_rlrec_sync_sends_a_killed_runs_rest_to_its_wandb_run(tmp_path):
    from tests.test_smoke import _script

    run_dir = tmp_path / "run"
    args = ["sinks=[parquet,console,wandb]", *OFFLINE, "episodes=3000"]
    args += ["env.max_episode_steps=60", "trigger=never"]
    kill_after_first_commit(run_dir, "wandb", *args)
    synced = _script("rlrec-sync", str(run_dir))
    assert synced.returncode == 0, synced.stderr[-2000:]
    folders = offline_runs(run_dir)
    assert len({run_record(records(f)).run_id for f in folders}) == 1  # one W&B run
    logged = {
        r["episode"]: r["episode/return"]
        for f in folders
        for r in history(records(f))
        if "episode/return" in r
    }
    count = sum("episode/return" in r for f in folders for r in history(records(f)))
    rows = RunDir(run_dir).read_episodes().to_pandas()  # the killed run's parts
    assert count == len(logged) == len(rows)  # every episode on disk, once across the folders
    assert [logged[e] for e in rows["episode"]] == rows["return"].tolist()
    again = _script("rlrec-sync", str(run_dir))
    assert "nothing to send" in again.stdout and len(offline_runs(run_dir)) == len(folders)


def test_online_without_credentials_is_refused_before_the_first_episode(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    env |= {"HOME": str(tmp_path), "PYTHONPATH": ""}  # no ~/.netrc of the machine's
    cmd = [sys.executable, str(ROOT / "run.py"), "sinks=[parquet,wandb]"]
    cmd += ["sinks.wandb.mode=online", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlrec: error: sinks.wandb.mode"), lines
    assert "wandb login" in lines[0] and "sinks.wandb.mode=offline" in lines[0]


def test_wandbs_system_charts_watch_the_run_not_its_tracker_process(tmp_path):
    # the run's process holds 400 MB more than any other: W&B's process memory says whose it is
    # (it described rlrec's tracker process, about 100 MB)
    code = (
        "import runpy, sys, numpy; ballast = numpy.ones(400 * 2**20 // 8); "
        f"sys.argv = ['run.py', *{[*OFFLINE, 'sinks=[parquet,wandb]', 'episodes=30']!r}, "
        f"'trigger=never', 'hydra.run.dir={tmp_path / 'run'}']; "
        "runpy.run_path('run.py', run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = offline_runs(tmp_path / "run")
    stats = [
        {i.key: json.loads(i.value_json) for i in r.stats.item}
        for r in records(path)
        if r.WhichOneof("record_type") == "stats"
    ]
    assert stats and all(s["proc.memory.rssMB"] > 400 for s in stats), stats
