"""Trackers: TensorBoard's event files read back with TensorBoard's own reader, and the tracker
base's promises (one warning and a complete run when a tracker fails, exit 2 when one cannot
start, each episode logged once across a resume)."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import ROOT, kill_after_first_commit, plain_loop, resume_cli, run_cli
from tests.trackers import LOG

pytestmark = pytest.mark.slow

EVERYTHING = {"scalars": 0, "images": 0, "tensors": 0}


def _events(folder, purge=True):
    """Every event under ``folder``, as TensorBoard loads them (``purge=False``: without hiding
    the steps a restart wrote again, so a duplicate would show)."""
    events = EventAccumulator(str(folder), size_guidance=EVERYTHING, purge_orphaned_data=purge)
    return events.Reload()


def _hparams(events):
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams


def test_tensorboard_holds_each_episode_the_config_the_films_and_the_curve(tmp_path):
    args = ["sinks=[parquet,tensorboard]", "episodes=12", "trigger=periodic", "trigger.period=1"]
    result = run_cli(args, tmp_path / "run")
    assert result.code == 0, result.proc.stderr[-2000:]
    run = tmp_path / "run"
    episodes = pd.read_parquet(run / "episodes.parquet")
    events = _events(run / "tensorboard")

    returns = events.Scalars("episode/return")
    assert [e.step for e in returns] == list(range(12))
    expected = plain_loop("CartPole-v1", 0, 12)
    assert [e.value for e in returns] == [r["return"] for r in expected]
    assert [e.value for e in events.Scalars("episode/length")] == [r["length"] for r in expected]
    durations = [e.value for e in events.Scalars("episode/duration_s")]
    assert durations == pytest.approx(episodes["duration_s"].tolist(), rel=1e-6)
    assert "episode/success" not in events.Tags()["scalars"]  # not measured in this run

    # HPARAMS: what tells the run apart (its command line, the env, the seed), integers as
    # integers, against the summary's headline statistics; every config key on the TEXT tab
    hparams = _hparams(events)
    assert set(hparams) == {"env.id", "seed", "sinks", "episodes", "trigger", "trigger.period"}
    assert hparams["env.id"].string_value == "CartPole-v1" and hparams["seed"].string_value == "0"
    assert (
        hparams["episodes"].string_value == "12" and hparams["trigger"].string_value == "periodic"
    )
    content = events.SummaryMetadata("_hparams_/experiment").plugin_data.content
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics == [
        f"summary/{k}" for k in ("mean", "ci95_low", "ci95_high", "success_rate", "peak_rss_bytes")
    ]
    summary = json.loads((run / "summary.json").read_text())
    assert events.Scalars("summary/mean")[0].value == pytest.approx(summary["mean"])
    assert {t for t in events.Tags()["scalars"] if t.startswith("summary/")} <= set(metrics)
    (config_text,) = events.Tensors("config/text_summary")
    text = config_text.tensor_proto.string_val[0].decode()
    assert "| trigger.period | 1 |" in text and "| sinks.parquet.batch_rows | 8192 |" in text
    (summary_text,) = events.Tensors("summary/text_summary")
    text = summary_text.tensor_proto.string_val[0].decode()
    assert (
        f"| length_mean | {float(summary['length']['mean'])} |" in text
        and "| status | complete |" in text
    )

    # every film visible with the reader's defaults (10 images a tag): one tag a film
    shown = EventAccumulator(str(run / "tensorboard")).Reload()
    tags = [t for t in shown.Tags()["images"] if t.startswith("film/")]
    assert tags == [f"film/episode_{e:06d}" for e in range(12)]
    films = [image for tag in tags for image in shown.Images(tag)]
    assert [f.step for f in films] == list(range(12))
    for film in films:
        with Image.open(io.BytesIO(film.encoded_image_string)) as gif:
            # scaled to film_width (300) from CartPole's 600x400
            assert gif.format == "GIF" and gif.size == (300, 200) == (film.width, film.height)
            assert gif.n_frames == expected[film.step]["length"] + 1  # the reset frame too
            assert gif.info["duration"] == 20  # ms a frame: CartPole's 50 fps
    (curve,) = events.Images("learning_curve")
    assert curve.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and curve.step == 12

    rss = events.Scalars("system/rss_bytes")
    memory = pd.read_parquet(run / "_memory.parquet")
    assert [e.value for e in rss] == pytest.approx(memory["rss_bytes"].tolist())
    assert json.loads((run / "trackers.json").read_text())["tensorboard"]["logged"] == 12
    assert summary["tracker_failures"] == {}


def test_a_sweep_shows_its_jobs_side_by_side_with_their_hparams(tmp_path):
    args = ["sinks=[parquet,tensorboard]", "seed=0,1", "episodes=3", "trigger=never"]
    args.append("sinks.tensorboard.own_process=true")  # the same from a process of its own
    result = run_cli(args, tmp_path / "sweep", multirun=True)
    assert result.code == 0, result.proc.stderr[-2000:]
    runs = EventMultiplexer()
    runs.AddRunsFromDirectory(str(tmp_path / "sweep"))
    runs.Reload()
    # each run named by its swept overrides, and its HPARAMS holding those
    assert sorted(runs.Runs()) == ["0/tensorboard/seed=0", "1/tensorboard/seed=1"]
    for job in (0, 1):
        events = runs.GetAccumulator(f"{job}/tensorboard/seed={job}")
        hparams = _hparams(events)
        assert set(hparams) == {"env.id", "seed"} and hparams["seed"].string_value == str(job)
        expected = [r["return"] for r in plain_loop("CartPole-v1", job, 3)]
        assert [e.value for e in events.Scalars("episode/return")] == expected
    jobs = pd.read_parquet(tmp_path / "sweep" / "summary.parquet")
    assert jobs["peak_rss_bytes"].dtype == "int64" and (jobs["peak_rss_bytes"] > 2**20).all()


@pytest.mark.parametrize("own_process", [False, True])
def test_a_tracker_that_fails_mid_run_costs_one_warning_not_the_run(tmp_path, own_process):
    args = [
        f"+sinks.flaky.own_process={own_process}",
        "episodes=12",
        "trigger=periodic",
        "trigger.period=4",
        "+sinks.flaky._target_=tests.trackers.FlakyTracker",
        "+sinks.flaky.fail_at=5",
    ]
    result = run_cli(args, tmp_path / "run")
    assert result.code == 0, result.proc.stderr[-2000:]
    run = tmp_path / "run"
    output = result.proc.stdout + result.proc.stderr  # Hydra logs to stdout
    warnings = [line for line in output.splitlines() if "flaky" in line]
    # when it fails, and in the run's closing lines: what it lacks and how to send it
    assert len(warnings) == 2 and all("WARNING" in w for w in warnings), output
    assert "failed at episode 5" in warnings[0] and "Traceback" not in output
    assert "lacks episodes from 5 on" in warnings[1] and f"rlrec-sync {run}" in warnings[1]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["n"] == 12
    assert summary["tracker_failures"] == {
        "flaky": {
            "episode": 5,
            "error": "RuntimeError: the tracker's server went away",
            "retried_s": 0.0,
        }
    }
    assert "rlrec-sync" in (run / "report.html").read_text()  # the page names it too
    assert json.loads((run / "trackers.json").read_text())["flaky"]["episodes"] == [[0, 4]]
    assert pd.read_parquet(run / "episodes.parquet")["episode"].tolist() == list(range(12))
    assert sorted(p.name for p in (run / "videos").iterdir()) == [
        f"eval-episode-{i}.mp4" for i in (0, 4, 8)
    ]
    logged = _tracker_log(run)
    assert [x["episode"] for x in logged if "episode" in x] == [0, 1, 2, 3, 4]  # once each
    assert [x["film"] for x in logged if "film" in x] == [0, 4]


@pytest.mark.parametrize("own_process", [False, True])
def test_a_tracker_down_for_a_while_gets_every_episode_once(tmp_path, own_process):
    args = [
        f"+sinks.flaky.own_process={own_process}",
        "episodes=400",
        "env.max_episode_steps=50",
        "trigger=never",
        "+sinks.flaky._target_=tests.trackers.FlakyTracker",
        "+sinks.flaky.fail_at=5",
        "+sinks.flaky.down_s=2.5",
        "+sinks.flaky.retry_s=30",
    ]
    result = run_cli(args, tmp_path / "run")
    assert result.code == 0, result.proc.stderr[-2000:]
    run = tmp_path / "run"
    output = result.proc.stdout + result.proc.stderr
    assert "flaky tracker failed at episode 5" in output and "retrying for 30" in output
    assert "flaky tracker is back after" in output and "lacks episodes" not in output
    logged = [x for x in _tracker_log(run) if "episode" in x]
    assert [x["episode"] for x in logged] == list(range(400))  # every episode, in order, once
    rows = pd.read_parquet(run / "episodes.parquet")
    assert [x["return"] for x in logged] == rows["return"].tolist()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["tracker_failures"] == {}
    entry = json.loads((run / "trackers.json").read_text())["flaky"]
    assert entry["episodes"] == [[0, 399]] and entry["logged"] == 400
    assert entry["ended"] == "complete"


def test_a_film_whose_upload_failed_is_sent_when_the_tracker_is_back(tmp_path):
    # the film's episode row went through just before the outage: the row is held, the film not
    args = ["+sinks.flaky.own_process=true", "episodes=40", "env.max_episode_steps=30"]
    args += ["trigger=periodic", "trigger.period=10", "+sinks.flaky.film=true"]
    args += ["+sinks.flaky._target_=tests.trackers.FlakyTracker", "+sinks.flaky.fail_at=10"]
    args += ["+sinks.flaky.down_s=1.5", "+sinks.flaky.retry_s=30"]
    result = run_cli(args, tmp_path / "run")
    assert result.code == 0, result.proc.stderr[-2000:]
    output = result.proc.stdout + result.proc.stderr
    assert "flaky tracker failed at episode 10" in output and "is back after" in output
    logged = _tracker_log(tmp_path / "run")
    assert [x["episode"] for x in logged if "episode" in x] == list(range(40))
    films = [(x["film"], x["name"]) for x in logged if "film" in x]
    assert films == [(e, f"eval-episode-{e}.mp4") for e in (0, 10, 20, 30)]  # each once


def test_a_film_still_owed_when_the_tracker_was_given_up_on_is_sent_by_rlrec_sync(tmp_path):
    # down for good at the film of episode 10 (its row went through): trackers.json keeps the
    # film as owed, and rlrec-sync sends it with the rows after it, each once
    from tests.test_smoke import _script

    run = tmp_path / "run"
    args = ["+sinks.flaky.own_process=true", "episodes=40", "env.max_episode_steps=30"]
    args += ["trigger=periodic", "trigger.period=10", "+sinks.flaky.film=true"]
    args += ["+sinks.flaky._target_=tests.trackers.FlakyTracker", "+sinks.flaky.fail_at=10"]
    result = run_cli(args, run)
    assert result.code == 0, result.proc.stderr[-2000:]
    entry = json.loads((run / "trackers.json").read_text())["flaky"]
    assert entry["films_owed"] == [10] and entry["episodes"] == [[0, 10]]
    synced = _script("rlrec-sync", str(run), "sinks.flaky.fail_at=null")
    assert synced.returncode == 0, synced.stderr[-2000:]
    logged = _tracker_log(run)
    assert [x["episode"] for x in logged if "episode" in x] == list(range(40))
    assert sorted(x["film"] for x in logged if "film" in x) == [0, 10, 20, 30]
    entry = json.loads((run / "trackers.json").read_text())["flaky"]
    assert "films_owed" not in entry and entry["episodes"] == [[0, 39]]
    again = _script("rlrec-sync", str(run), "sinks.flaky.fail_at=null")
    assert again.returncode == 0 and "nothing to send" in again.stdout, again.stderr


def _tracker_log(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / LOG).read_text().splitlines()]


@pytest.mark.parametrize("own_process", [False, True])
def test_a_tracker_that_cannot_start_ends_the_run_before_its_first_episode(tmp_path, own_process):
    args = [
        f"+sinks.flaky.own_process={own_process}",
        "+sinks.flaky._target_=tests.trackers.FlakyTracker",
        "+sinks.flaky.start_error=true",
    ]
    result = run_cli(args, tmp_path / "run")
    assert result.code == 2
    lines = result.proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlrec: error: sinks.flaky: could not start"), (
        lines
    )
    assert "Connection refused" in lines[0] and "Traceback" not in result.proc.stderr
    assert len(pd.read_parquet(tmp_path / "run" / "episodes.parquet")) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


def test_a_missing_extra_gives_the_pip_install_line(tmp_path):
    shadow = tmp_path / "shadow" / "tensorboardX"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named tensorboardX')\n")
    cmd = [sys.executable, str(ROOT / "run.py"), "sinks=[parquet,tensorboard]"]
    cmd.append(f"hydra.run.dir={tmp_path / 'run'}")
    env = {"PYTHONPATH": str(tmp_path / "shadow"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert 'pip install -e ".[tensorboard]"' in proc.stderr and "sinks.tensorboard" in proc.stderr
    assert not (tmp_path / "run" / "episodes.parquet").exists()


def test_a_resumed_run_logs_each_episode_to_tensorboard_once(tmp_path):
    run = tmp_path / "run"
    args = [
        "sinks=[parquet,console,tensorboard]",
        "episodes=3000",
        "env.max_episode_steps=60",
        "trigger=never",
        "sinks.parquet.flush_seconds=0.2",
    ]
    kill_after_first_commit(run, "tensorboard", *args)
    before = json.loads((run / "trackers.json").read_text())["tensorboard"]
    # As if the kill had come after the tracker wrote an episode but before it committed it:
    # that episode runs again after the resume and must not be in the files twice.
    with open(run / "tensorboard" / before["file"], "ab") as events_file:
        events_file.write(_event_record(before["logged"], -1.0))
    resumed = resume_cli(run)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    events = _events(run / "tensorboard", purge=False)
    steps = [e.step for e in events.Scalars("episode/return")]
    assert steps == list(range(3000)), f"logged {before['logged']} before the kill"
    expected = plain_loop("CartPole-v1", 0, 3000, max_episode_steps=60)
    assert [e.value for e in events.Scalars("episode/return")] == [r["return"] for r in expected]
    trackers = json.loads((run / "trackers.json").read_text())["tensorboard"]
    assert trackers["id"] == str(run / "tensorboard") and trackers["logged"] == 3000


def test_ctrl_c_with_workers_then_resume_gives_tensorboard_every_episode_once(tmp_path):
    # stopped with workers, later episodes finish while earlier ones never came: a gap, which
    # trackers.json's ranges show and the resume fills
    import signal

    from tests.test_signals import LiveRun

    run = tmp_path / "run"
    args = ["sinks=[parquet,console,tensorboard]", "episodes=3000", "env.max_episode_steps=60"]
    live = LiveRun(run, *args, "trigger=never", "workers=2", "sinks.parquet.flush_seconds=0.2")
    live.wait_for_episodes(800)
    live.stop(signal.SIGINT)
    assert live.wait() == 130
    stopped = json.loads((run / "trackers.json").read_text())["tensorboard"]
    assert stopped["ended"] == "interrupted" and stopped["logged"] < 3000
    resumed = resume_cli(run)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    events = _events(run / "tensorboard")  # as TensorBoard reads it
    logged = sorted((e.step, e.value) for e in events.Scalars("episode/return"))
    rows = pd.read_parquet(run / "episodes.parquet")
    assert logged == list(zip(rows["episode"], rows["return"], strict=True))  # each once
    assert [step for step, _ in logged] == list(range(3000))
    trackers = json.loads((run / "trackers.json").read_text())["tensorboard"]
    assert trackers["episodes"] == [[0, 2999]] and trackers["ended"] == "complete"


def _event_record(step, value):
    """One framed event holding ``episode/return`` at ``step``, as an event file stores it."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    summary = Summary(value=[Summary.Value(tag="episode/return", simple_value=value)])
    data = Event(wall_time=0.0, step=step, summary=summary).SerializeToString()
    header = struct.pack("<Q", len(data))
    crcs = struct.pack("<I", masked_crc32c(header)), struct.pack("<I", masked_crc32c(data))
    return header + crcs[0] + data + crcs[1]


def test_ctrl_c_ends_a_tensorboard_session_as_neither_success_nor_failure(tmp_path):
    # TensorBoard has no "aborted" status: asking for one made every Ctrl-C a tracker failure
    import signal

    from tensorboard.plugins.hparams import api_pb2

    from tests.test_signals import LiveRun

    run = tmp_path / "run"
    live = LiveRun(run, "sinks=[parquet,console,tensorboard]", "episodes=100000", "trigger=never")
    live.wait_for_episodes(20)
    live.stop(signal.SIGINT)
    assert live.wait() == 130, live.proc.stderr.read()[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["tracker_failures"] == {}
    events = _events(run / "tensorboard")
    content = events.SummaryMetadata("_hparams_/session_end_info").plugin_data.content
    end = plugin_data_pb2.HParamsPluginData.FromString(content).session_end_info
    assert end.status == api_pb2.STATUS_UNKNOWN
    assert len(events.Scalars("episode/return")) == summary["n"]


def test_rlrec_sync_sends_every_job_of_a_sweep(tmp_path):
    from tests.test_smoke import _script

    sweep = tmp_path / "sweep"
    result = run_cli(
        ["seed=0,1", "episodes=5", "trigger=never", "sinks=[parquet]"], sweep, multirun=True
    )
    assert result.code == 0, result.proc.stderr[-2000:]
    synced = _script("rlrec-sync", str(sweep), "--sink", "tensorboard")
    assert synced.returncode == 0, synced.stderr[-2000:]
    for job, seed in ((0, 0), (1, 1)):
        events = _events(sweep / str(job) / "tensorboard" / f"seed={seed}")
        logged = [(e.step, e.value) for e in events.Scalars("episode/return")]
        rows = pd.read_parquet(sweep / str(job) / "episodes.parquet")
        assert logged == list(zip(rows["episode"], rows["return"], strict=True))


def test_rlrec_sync_mistakes_name_the_fix(tmp_path):
    from tests.test_smoke import _script

    run = tmp_path / "run"
    assert run_cli(["episodes=2", "trigger=never", "sinks=[parquet]"], run).code == 0
    cases = {
        (str(tmp_path / "nothing"),): "holds no rlrec run or sweep",
        (str(run),): "--sink: " + f"{run} was recorded with no tracker",
        (str(run), "--sink", "nosuch"): "--sink: 'nosuch' is not a tracker rlrec knows",
        (str(run), "--sink", "tensorboard", "seed=3"): "seed=3: is not a sink setting",
    }
    for args, words in cases.items():
        out = _script("rlrec-sync", *args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith("rlrec-sync: error: ") and words in line, line
    assert not (run / "trackers.json").exists()  # nothing changed
