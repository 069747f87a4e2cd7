"""The mlflow sink against a real MLflow server on 127.0.0.1, read back with ``MlflowClient``."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from rlrec.rundir import RunDir
from tests.conftest import (
    ROOT,
    decode,
    kill_after_first_commit,
    plain_loop,
    resume_cli,
    run_cli,
)
from tests.system import LoopbackOnly
from tests.test_signals import LiveRun

# one worker starts the module's MLflow server once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlflow server`` on 127.0.0.1 with a SQLite store and an artifact folder of its own;
    ``start`` again after ``stop``: the same port and store, as a restarted server."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.uri = f"http://127.0.0.1:{_free_port()}"
        self.start()
        # imported here: a second of imports that every worker would pay while collecting
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(self.uri)

    def start(self) -> None:
        folder = self.folder
        port = self.uri.rsplit(":", 1)[1]
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", port]
        cmd += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
        cmd += ["--artifacts-destination", str(folder / "artifacts"), "--workers", "1"]
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.log = (folder / "server.log").open("a")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    break
            except OSError:
                assert self.proc.poll() is None, (folder / "server.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "the MLflow server did not start"
                time.sleep(0.25)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    watch = LoopbackOnly()  # the server and its workers listen on 127.0.0.1 only
    running = Server(tmp_path_factory.mktemp("mlflow"))
    yield running
    running.stop()
    watch.stop()
    watch.check()


def _run_id(run_dir: Path) -> str:
    return json.loads((run_dir / "trackers.json").read_text())["mlflow"]["id"]


def test_a_run_is_an_mlflow_run_with_its_episodes_films_and_summary(server, tmp_path):
    args = ["sinks=[parquet,mlflow]", f"sinks.mlflow.tracking_uri={server.uri}"]
    args += ["episodes=12", "trigger=periodic", "trigger.period=5"]
    result = run_cli(args, tmp_path / "run")
    assert result.code == 0, result.proc.stderr[-2000:]
    run = server.client.get_run(_run_id(tmp_path / "run"))
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["env.id"] == "CartPole-v1" and params["episodes"] == "12"
    assert params["trigger.period"] == "5"
    tags = run.data.tags
    assert (tags["env_id"], tags["seed"], tags["job"]) == ("CartPole-v1", "0", "0")
    assert tags["run_dir"] == str((tmp_path / "run").resolve())
    # where MLflow's UI looks: the training view, the source, the user, the git commit
    experiment = server.client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.source.name"] == str(ROOT / "run.py")
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    if head.returncode == 0:
        assert tags["mlflow.source.git.commit"] == head.stdout.decode().strip()
    assert tags["command"].startswith("python ") and "trigger.period=5" in tags["command"]
    # memory at the times it was sampled, as _memory.parquet says (not one stamp a batch)
    memory = pd.read_parquet(tmp_path / "run" / "_memory.parquet")
    history = server.client.get_metric_history(run.info.run_id, "system/rss_bytes")
    in_time = sorted(history, key=lambda m: m.timestamp)
    assert [m.value for m in in_time] == memory["rss_bytes"].tolist()
    gaps = [(b.timestamp - a.timestamp) / 1000 for a, b in itertools.pairwise(in_time)]
    expected_gaps = memory["time_s"].diff().dropna().tolist()
    assert gaps == pytest.approx(expected_gaps, abs=0.002)

    expected = plain_loop("CartPole-v1", 0, 12)
    for key, column in (("episode/return", "return"), ("episode/length", "length")):
        history = sorted(
            server.client.get_metric_history(run.info.run_id, key), key=lambda m: m.step
        )
        assert [m.step for m in history] == list(range(12))
        assert [m.value for m in history] == [r[column] for r in expected]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert run.data.metrics["summary/mean"] == pytest.approx(summary["mean"])
    assert run.data.metrics["summary/peak_rss_bytes"] == summary["peak_rss_bytes"]

    films = [a.path for a in server.client.list_artifacts(run.info.run_id, "videos")]
    assert sorted(films) == [f"videos/eval-episode-{i}.mp4" for i in (0, 10, 5)]
    local = Path(server.client.download_artifacts(run.info.run_id, "videos", str(tmp_path)))
    for i in (0, 5, 10):
        frames, fps, _ = decode(local / f"eval-episode-{i}.mp4")
        assert (frames, fps) == (expected[i]["length"] + 1, 50)
    top = {a.path for a in server.client.list_artifacts(run.info.run_id)}
    assert {"episodes.parquet", "learning_curve.png"} <= top
    parquet = server.client.download_artifacts(run.info.run_id, "episodes.parquet", str(tmp_path))
    assert pd.read_parquet(parquet)["return"].tolist() == [r["return"] for r in expected]


def test_a_sweep_is_a_parent_run_with_a_child_per_job(server, tmp_path):
    args = ["sinks=[parquet,mlflow]", f"sinks.mlflow.tracking_uri={server.uri}"]
    args += ["sinks.mlflow.experiment_name=sweeps", "seed=0,1", "episodes=3", "trigger=never"]
    args += ["env.max_episode_steps=20,30"]
    result = run_cli(args, tmp_path / "sweep", multirun=True)
    assert result.code == 0, result.proc.stderr[-2000:]
    parent_id = json.loads((tmp_path / "sweep" / "trackers.json").read_text())["mlflow"]["id"]
    parent = server.client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    # the parent holds the sweep: its swept keys as params, each group's statistics as metrics
    assert parent.data.params["env.max_episode_steps"] == "20,30"
    assert parent.data.params["seed"] == "0,1"
    groups = pd.read_parquet(tmp_path / "sweep" / "groups.parquet").to_dict("records")
    assert len(groups) == 2
    for row in groups:
        label = f"env.max_episode_steps_{row['env.max_episode_steps']}"
        for name in ("mean", "iqm", "mean_ci95_low", "mean_ci95_high"):
            assert parent.data.metrics[f"{label}/{name}"] == pytest.approx(row[name])
    assert parent.data.tags["mlflow.source.name"] == str(ROOT / "run.py")
    artifacts = {a.path for a in server.client.list_artifacts(parent_id)}
    assert {"groups.parquet", "summary.md"} <= artifacts
    experiment = server.client.get_experiment_by_name("sweeps")
    children = server.client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    names = sorted(c.info.run_name for c in children)
    assert names == [f"seed={s},env.max_episode_steps={m}" for s in (0, 1) for m in (20, 30)]
    for child in children:
        seed = int(child.data.tags["seed"])
        steps = int(child.data.params["env.max_episode_steps"])
        history = server.client.get_metric_history(child.info.run_id, "episode/return")
        expected = [
            r["return"] for r in plain_loop("CartPole-v1", seed, 3, max_episode_steps=steps)
        ]
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == expected


def test_a_resumed_run_continues_its_mlflow_run_without_repeats(server, tmp_path):
    run_dir = tmp_path / "run"
    args = ["sinks=[parquet,console,mlflow]", f"sinks.mlflow.tracking_uri={server.uri}"]
    args += ["episodes=3000", "env.max_episode_steps=60", "trigger=never"]
    kill_after_first_commit(run_dir, "mlflow", *args)
    first_id = _run_id(run_dir)
    resumed = resume_cli(run_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _run_id(run_dir) == first_id
    run = server.client.get_run(first_id)
    assert run.info.status == "FINISHED"
    history = server.client.get_metric_history(first_id, "episode/return")
    assert sorted(m.step for m in history) == list(range(3000))  # each episode once


def _logging_run(server: Server, run_dir: Path, episodes: int, retry_s: float) -> LiveRun:
    """A run logging to ``server``, once the tracker holds some episodes (it starts logging a
    second or so into the run): the moment to take the server away."""
    args = ["sinks=[parquet,console,mlflow]", f"sinks.mlflow.tracking_uri={server.uri}"]
    args += [f"episodes={episodes}", "env.max_episode_steps=60", "trigger=periodic"]
    live = LiveRun(run_dir, *args, "trigger.period=500", f"sinks.mlflow.retry_s={retry_s}")
    live.wait_for_episodes(200)
    deadline = time.monotonic() + 120
    while not json.loads((run_dir / "trackers.json").read_text())["mlflow"].get("logged"):
        assert time.monotonic() < deadline and live.proc.poll() is None, live.proc.stderr.read()
        time.sleep(0.02)
    return live


def _steps(server: Server, run_id: str) -> list[int]:
    return sorted(m.step for m in server.client.get_metric_history(run_id, "episode/return"))


@contextlib.contextmanager
def _running_again(server: Server) -> Iterator[Server]:
    """The module's server, taken away by the test within, running again after it (the tests
    after it use it too)."""
    try:
        yield server
    finally:
        if server.proc.poll() is not None:
            server.start()


def test_a_server_back_after_an_outage_gets_every_episode_once(server, tmp_path):
    with _running_again(server) as outage:
        run_dir = tmp_path / "run"
        live = _logging_run(outage, run_dir, episodes=3000, retry_s=120)
        outage.stop()  # the server's whole process group, killed mid-run
        time.sleep(1)
        outage.start()  # the same port and store, a few seconds later (it takes ~7 s to start)
        code = live.wait()
        output = live.proc.stderr.read()
        assert code == 0, output[-2000:]
        run_id = _run_id(run_dir)
        run = outage.client.get_run(run_id)
        rows = pd.read_parquet(run_dir / "episodes.parquet")
        assert _steps(outage, run_id) == list(range(3000))  # each episode once
        history = outage.client.get_metric_history(run_id, "episode/return")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == rows["return"].tolist()
        assert run.info.status == "FINISHED"
        artifacts = [a.path for a in outage.client.list_artifacts(run_id, "videos")]
        assert len(artifacts) == 6  # the films of the outage too
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["tracker_failures"] == {}
    entry = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    assert entry["episodes"] == [[0, 2999]] and entry["ended"] == "complete"
    log = (run_dir / "rlrec.log").read_text()
    assert "the mlflow tracker failed at episode" in log and "retrying for 120" in log
    assert "the mlflow tracker is back after" in log


def test_a_server_down_to_the_end_is_filled_by_rlrec_sync(server, tmp_path):
    from tests.test_smoke import _script

    with _running_again(server) as down:
        run_dir = tmp_path / "run"
        live = _logging_run(down, run_dir, episodes=2000, retry_s=2)
        down.stop()
        code = live.wait()
        assert code == 0, live.proc.stderr.read()[-2000:]
        output = (run_dir / "rlrec.log").read_text()
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["n"] == 2000
        failure = summary["tracker_failures"]["mlflow"]
        assert failure["error"] and failure["episode"] > 0
        closing = [line for line in output.splitlines() if "lacks episodes" in line]
        assert closing and f"rlrec-sync {run_dir}" in closing[0]
        run_id = _run_id(run_dir)
        down.start()
        assert down.client.get_run(run_id).info.status == "RUNNING"  # never told it ended
        synced = _script("rlrec-sync", str(run_dir))
        assert synced.returncode == 0, synced.stderr[-2000:]
        assert _steps(down, run_id) == list(range(2000))
        assert down.client.get_run(run_id).info.status == "FINISHED"
        assert len(down.client.list_artifacts(run_id, "videos")) == 4
        again = _script("rlrec-sync", str(run_dir))
        assert again.returncode == 0 and "nothing to send" in again.stdout, again.stderr
        assert _steps(down, run_id) == list(range(2000))


def test_rlrec_sync_takes_the_run_lock(server, tmp_path):
    from tests.test_smoke import _script

    run_dir = tmp_path / "run"
    args = ["sinks=[parquet,console]", "episodes=2000", "env.max_episode_steps=60"]
    args.append("trigger=never")
    live = LiveRun(run_dir, *args)
    try:
        live.wait_for_episodes(50)
        busy = _script("rlrec-sync", str(run_dir), "--sink", "mlflow")
        assert busy.returncode == 2 and "one run directory has one writer" in busy.stderr
        assert "Traceback" not in busy.stderr
    finally:
        live.proc.send_signal(signal.SIGINT)
        live.wait()
    # a run recorded with no tracker, sent to one afterwards
    uri = f"sinks.mlflow.tracking_uri={server.uri}"
    sent = _script("rlrec-sync", str(run_dir), "--sink", "mlflow", uri)
    assert sent.returncode == 0, sent.stderr[-2000:]
    run_id = _run_id(run_dir)
    rows = RunDir(run_dir).read_episodes().sort_by("episode")
    assert _steps(server, run_id) == rows["episode"].to_pylist() and len(rows) >= 50
    assert server.client.get_run(run_id).info.status == "FINISHED"


def test_a_start_failure_names_its_cause_and_the_fix(tmp_path):
    # a port that answers HTTP but is no MLflow server, and an address without its scheme
    import http.server
    import threading

    web = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        port = web.server_address[1]
        cases = {
            f"http://127.0.0.1:{port}": "HTTP 404, not the tracker's server; it answered: ",
            f"127.0.0.1:{port}": f"has no scheme (MLflow would take it for a folder). "
            f"Fix: pass sinks.mlflow.tracking_uri=http://127.0.0.1:{port}",
        }
        for i, (uri, words) in enumerate(cases.items()):
            args = ["sinks=[parquet,mlflow]", f"sinks.mlflow.tracking_uri={uri}"]
            result = run_cli(args, tmp_path / str(i))
            assert result.code == 2 and "Traceback" not in result.proc.stderr
            (line,) = result.proc.stderr.strip().splitlines()
            assert line.startswith("rlrec: error: sinks.mlflow.tracking_uri: ") and words in line
    finally:
        web.shutdown()
    assert not (tmp_path / "1" / "mlflow.db").exists()


@pytest.mark.alone
@pytest.mark.xdist_group("alone")  # out of the module's group (no server): it runs at the end
def test_an_unreachable_server_ends_the_run_at_once(tmp_path):
    start = time.monotonic()
    uri = f"http://127.0.0.1:{_free_port()}"
    result = run_cli(["sinks=[parquet,mlflow]", f"sinks.mlflow.tracking_uri={uri}"], tmp_path)
    assert result.code == 2 and time.monotonic() - start < 60
    lines = result.proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlrec: error: sinks.mlflow.tracking_uri"), lines
    assert uri in lines[0] and "Traceback" not in result.proc.stderr
    # the cause first, whatever the length of MLflow's own words
    assert "could not be used: connection refused (nothing listens there)" in lines[0]
