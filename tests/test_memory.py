"""Memory over time: ``_memory.parquet``, ``peak_rss_bytes``, the console, the plot, the report."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

from rlrec.plots import plot_learning_curve
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow


def _memory(run):
    table = pq.read_table(run / "_memory.parquet")
    assert [(f.name, str(f.type)) for f in table.schema] == [
        ("time_s", "double"),
        ("episode", "int64"),
        ("rss_bytes", "int64"),
    ]
    return table.to_pandas()


def test_a_run_samples_the_memory_of_its_whole_process_tree(tmp_path):
    # memory, not time: other tests beside it change nothing it asserts
    args = ["episodes=300", "trigger=periodic", "trigger.period=100", "memory_every_s=0.05"]
    args += ["sinks=[parquet,console,plot,report]", "env.max_episode_steps=100"]
    one = run_cli([*args, "workers=1"], tmp_path / "one")
    two = run_cli([*args, "workers=2"], tmp_path / "two")
    for result in (one, two):
        assert result.code == 0, result.proc.stderr[-2000:]
        run = result.out_dir
        memory = _memory(run)
        assert len(memory) >= 3 and (memory["rss_bytes"] > 2**20).all()
        assert memory["time_s"].is_monotonic_increasing and memory["time_s"].iloc[0] >= 0
        assert memory["episode"].is_monotonic_increasing
        assert memory["episode"].iloc[[0, -1]].tolist() == [0, 300]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["peak_rss_bytes"] == memory["rss_bytes"].max()
        mib = round(summary["peak_rss_bytes"] / 2**20)
        assert f"peak memory {mib} MiB" in result.proc.stdout
        assert "<h2>Memory</h2>" in (run / "report.html").read_text()
        png = (run / "learning_curve.png").read_bytes()
        assert int.from_bytes(png[20:24], "big") == 800  # taller: the memory panel below
    # a second worker process (and its encoder) is counted: tens of MiB more while the episodes
    # run (the peak of the run's end is the main process's own: the plot, the report)
    one_most, two_most = (
        _memory(r.out_dir).query("episode < 300")["rss_bytes"].max() for r in (one, two)
    )
    assert two_most > one_most + 30 * 2**20, (one_most / 2**20, two_most / 2**20)


def test_memory_stays_flat_over_100000_episodes(tmp_path):
    # memory, not time (the samples are per 0.2 s of whatever speed): it runs beside others
    # short episodes (a million steps in all): what could grow is per episode (rows, parts,
    # statistics, samples), and the run takes half the time of CartPole's own length
    args = ["episodes=100000", "env.max_episode_steps=10", "trigger=never", "sinks=[parquet]"]
    args.append("memory_every_s=0.2")
    result = run_cli(args, tmp_path / "run", timeout=600)
    assert result.code == 0, result.proc.stderr[-2000:]
    memory = _memory(tmp_path / "run")
    assert memory["episode"].iloc[-1] == 100000 and len(memory) >= 50
    rss = memory["rss_bytes"].to_numpy()
    tenth = len(rss) // 10
    warm = rss[tenth : 2 * tenth].mean()  # the first tenth after warm-up (imports, first parts)
    last = rss[-tenth:].mean()
    assert abs(last - warm) <= 0.10 * warm, (warm / 2**20, last / 2**20)


def test_no_samples_when_sampling_is_off(tmp_path):
    result = run_cli(["episodes=2", "trigger=never", "memory_every_s=0"], tmp_path / "run")
    assert result.code == 0, result.proc.stderr[-2000:]
    assert not (tmp_path / "run" / "_memory.parquet").exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["peak_rss_bytes"] is None
    refused = run_cli(["memory_every_s=-1"], tmp_path / "bad")
    assert refused.code == 2 and "memory_every_s" in refused.proc.stderr


def test_the_plot_draws_memory_below_the_returns(tmp_path):
    returns = np.arange(50, dtype=float)
    episodes, rss = [0, 20, 50], [100 * 2**20, 120 * 2**20, 121 * 2**20]
    fig = plot_learning_curve(returns, [], 10, tmp_path / "c.png", memory=(episodes, rss))
    top, bottom = fig.axes
    line = {line.get_gid(): line for line in bottom.lines}["memory"]
    assert line.get_xdata().tolist() == episodes
    assert line.get_ydata().tolist() == pytest.approx([100, 120, 121])
    assert bottom.get_ylabel() == "memory (MiB)" and top.get_ylabel() == "return"


def test_a_sweep_summary_lists_each_jobs_peak(tmp_path):
    result = run_cli(["seed=0,1", "episodes=2", "trigger=never"], tmp_path, multirun=True)
    assert result.code == 0, result.proc.stderr[-2000:]
    jobs = pd.read_parquet(tmp_path / "summary.parquet")
    for job in jobs.itertuples():
        summary = json.loads((tmp_path / str(job.job) / "summary.json").read_text())
        assert job.peak_rss_bytes == summary["peak_rss_bytes"] > 0


def test_the_peak_covers_the_end_of_the_run(tmp_path):
    # The end of a long stats run (merging its parts, the report) used to take far more memory
    # than its episodes did (94 MiB said, 166 MiB seen). Watched from outside every 20 ms, the
    # summary's peak is not below what was seen, and every place that tells it says the same.
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "run.py"), "trigger=never", "episodes=20000"]
    proc = subprocess.Popen(
        [*cmd, "sinks.console.every=50000", f"hydra.run.dir={run}"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    root, seen = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            tree = [root, *root.children(recursive=True)]
            seen = max(seen, sum(p.memory_info().rss for p in tree))
        time.sleep(0.02)
    assert proc.returncode == 0
    peak = json.loads((run / "summary.json").read_text())["peak_rss_bytes"]
    assert peak >= 0.95 * seen, (peak / 2**20, seen / 2**20)
    memory = pq.read_table(run / "_memory.parquet")
    assert max(memory["rss_bytes"].to_pylist()) == peak
    assert memory["episode"].to_pylist()[-1] == 20000
    assert f"peak memory {round(peak / 2**20)} MiB" in proc.stdout.read()
    assert f"<b>{round(peak / 2**20)} MiB</b>peak memory" in (run / "report.html").read_text()
