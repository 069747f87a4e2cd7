"""Fault injection: SIGKILL at many moments of a shard merge and of a sweep's end, each moment
chosen by the progress of the files; after each, the next ``rlrec-merge`` finishes the work, and
every episode is read once, every film is whole, and no reader ever sees an episode twice.

The killed process runs rlrec's own code (``rlrec.merge.main``, the sweep's end callback), forked
from a server that imported it once: a fresh interpreter per moment would cost a second of imports
each, and the moments are many.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import decode, run_cli

# one worker: the fork server and the sharded sweep are made once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("faults")]

#: Modules the killed processes need, imported once by the fork server.
#: How often the files are looked at while a process is to be killed: a look that never rests takes
#: a core from the process it watches (two cores here, another test on the other).
POLL_S = 0.001
PRELOAD = [
    "rlrec.merge",
    "rlrec.build",
    "rlrec.runner",
    "rlrec.report",
    "rlrec.sweep",
    "rlrec.hydra_callbacks",
    "rlrec.sinks.parquet",
    "rlrec.sinks.report",
    "gymnasium.envs.classic_control.cartpole",
    "pyarrow.parquet",
    "pyarrow.compute",
    "pandas",
    "matplotlib.pyplot",
]
FINAL_VIDEO = re.compile(r"^[a-z]+-episode-\d+\.mp4$")
EPISODES, SHARDS = 12, 3
#: What a sweep's end writes at its root once the shards are merged, in that order.
SWEEP_FILES = ("summary.parquet", "groups.parquet", "summary.md", "learning_curves.png")
SWEEP_FILES += ("report.html",)
COMMON = [f"episodes={EPISODES}", "trigger=every", "env.max_episode_steps=12"]
COMMON += ["sinks=[parquet,report]", "memory_every_s=0"]


@pytest.fixture(scope="module")
def forks():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


@pytest.fixture(scope="module")
def unmerged(tmp_path_factory):
    """A sharded sweep whose end never came (its shards done, not merged), and the same run done
    in one go."""
    root = tmp_path_factory.mktemp("faults")
    sweep = root / "sweep"
    args = [f"shard=range(0,{SHARDS})", f"shards={SHARDS}", *COMMON]
    done = run_cli([*args, "~hydra.callbacks.summarize_sweep"], sweep, multirun=True)
    assert done.code == 0, done.proc.stderr[-3000:]
    assert run_cli(COMMON, root / "sequential").code == 0
    reference = pq.read_table(root / "sequential" / "episodes.parquet")
    return sweep, reference.select(["episode", "seed", "return", "length"]).to_pylist()


def _merge(sweep: str) -> None:
    from rlrec.merge import main

    os._exit(main([sweep]))


def _sweep_end(sweep: str) -> None:
    """What a sweep does once its jobs are done (``SummarizeSweep.on_multirun_end``)."""
    from omegaconf import OmegaConf

    from rlrec.hydra_callbacks import SummarizeSweep

    config = OmegaConf.create({"hydra": {"sweep": {"dir": sweep}}, "sinks": {"parquet": {}}})
    SummarizeSweep().on_multirun_end(config)
    os._exit(0)


def _recover(sweep: str) -> None:
    """What the README says to run after a sweep's end was stopped."""
    from rlrec.merge import main as merge
    from rlrec.report import main as report

    os._exit(merge([sweep]) or report([sweep]))


def _progress(sweep: Path) -> tuple:
    """What a merge has done so far, as its files show it."""
    staged, merged = sweep / ".merged.partial", sweep / "merged"
    shards = [sweep / str(s) for s in range(SHARDS)]
    return (
        staged.exists(),
        (staged / "episodes.parquet").exists(),
        len(glob.glob(str(staged / "videos" / "*.mp4"))),
        (staged / "report.html").exists(),
        (staged / "summary.json").exists(),
        sum(not (s / "episodes.parquet").exists() for s in shards),
        merged.exists(),
        sum(not (s / "videos").exists() for s in shards),
        sum("merged_into" in (s / "summary.json").read_text() for s in shards),
        *((sweep / name).exists() for name in SWEEP_FILES),
    )


def _moments() -> list[Callable[[tuple], bool]]:
    """Kill points along a merge, in the order it gets there (22 of them)."""
    films = [lambda p, k=k: p[2] >= k for k in (1, 2, 3, 4, 6, 8, 10, 12)]
    return [
        lambda p: p[0],
        lambda p: p[1],
        *films,
        lambda p: p[3],
        lambda p: p[4],
        lambda p: p[5] >= 1,
        lambda p: p[5] >= 2,
        lambda p: p[5] >= 3,
        lambda p: p[6],
        lambda p: p[7] >= 1,
        lambda p: p[7] >= 2,
        lambda p: p[7] >= 3,
        lambda p: p[8] >= 1,
        lambda p: p[8] >= 2,
        lambda p: p[8] >= 3,
    ]


def _kill_when(
    forks, sweep: Path, moment: Callable[[tuple], bool], target: Callable = _merge
) -> tuple | None:
    """``target`` (a merge) on ``sweep``, SIGKILLed as soon as its files reach ``moment``; what
    they showed (None: it ended first)."""
    proc = forks.Process(target=target, args=(str(sweep),))
    proc.start()
    deadline = time.monotonic() + 60
    try:
        while proc.is_alive():
            seen = _progress(sweep)
            if moment(seen):
                proc.kill()
                return seen
            assert time.monotonic() < deadline
            time.sleep(POLL_S)
    finally:
        proc.join(30)
    return None


def _read_once(sweep: Path, reference: list[dict]) -> None:
    """What ``<sweep>/*/episodes.parquet`` reads: no episode twice; all of them, each as the run
    done in one go recorded it, where the merge is complete."""
    files = sorted(glob.glob(str(sweep / "*" / "episodes.parquet")))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    episodes = [r["episode"] for r in rows]
    assert len(episodes) == len(set(episodes)), files
    for path in glob.glob(str(sweep / "**" / "*.mp4"), recursive=True):
        if FINAL_VIDEO.match(Path(path).name):
            assert decode(Path(path))[0] > 0, path


def _finished(sweep: Path, reference: list[dict]) -> None:
    files = sorted(glob.glob(str(sweep / "*" / "episodes.parquet")))
    assert files == [str(sweep / "merged" / "episodes.parquet")]
    table = pq.read_table(files[0])
    assert table.select(["episode", "seed", "return", "length"]).to_pylist() == reference
    for row in table.to_pylist():
        assert decode(sweep / "merged" / row["video"])[0] == row["length"] + 1
    assert not (sweep / ".merged.partial").exists()
    for s in range(SHARDS):
        assert not (sweep / str(s) / "videos").exists()
        assert not (sweep / str(s) / "_actions.parquet").exists()


def test_a_merge_killed_at_any_moment_is_finished_by_the_next(forks, unmerged, tmp_path):
    sweep, reference = unmerged
    reached = []
    for k, moment in enumerate(_moments()):
        copy = tmp_path / str(k)
        shutil.copytree(sweep, copy, symlinks=True)
        seen = _kill_when(forks, copy, moment)
        reached.append(seen)
        _read_once(copy, reference)  # at the moment of the kill
        rerun = forks.Process(target=_merge, args=(str(copy),))
        rerun.start()
        rerun.join(60)
        assert rerun.exitcode == 0, (k, seen)
        _finished(copy, reference)
    killed = [seen for seen in reached if seen is not None]
    assert len(set(killed)) >= 10, reached  # the kills met the merge at many distinct points


def test_a_sweep_end_killed_at_any_moment_is_finished_by_merge_and_report(
    forks, unmerged, tmp_path
):
    sweep, reference = unmerged
    merging = _moments()[::2]  # 11 moments of its merge, then 10 of its summaries
    ends = [lambda p, k=k: p[9 + k] for k in range(len(SWEEP_FILES))]
    ends += [lambda p, k=k: p[9 + k] and not p[10 + k] for k in range(len(SWEEP_FILES) - 1)]
    ends += [lambda p: p[-1]]
    reached = []
    for k, moment in enumerate([*merging, *ends]):
        copy = tmp_path / str(k)
        shutil.copytree(sweep, copy, symlinks=True)
        reached.append(_kill_when(forks, copy, moment, _sweep_end))
        _read_once(copy, reference)
        rerun = forks.Process(target=_recover, args=(str(copy),))
        rerun.start()
        rerun.join(60)
        assert rerun.exitcode == 0, (k, reached[-1])
        _finished(copy, reference)
        (job,) = pq.read_table(copy / "summary.parquet").to_pylist()  # the merged run, once
        assert job["n_episodes"] == EPISODES and job["status"] == "complete"
        assert (copy / "report.html").exists() and (copy / "groups.parquet").exists()
    killed = [seen for seen in reached if seen is not None]
    assert len(killed) >= 16 and len(set(killed)) >= 8, reached


RESUMED = ["trigger=periodic", "trigger.period=25", "episodes=300", "env.max_episode_steps=20"]
RESUMED += ["sinks.parquet.flush_seconds=0.01", "memory_every_s=0"]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run killed a third of the way, and the same run done in one go."""
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    root = tmp_path_factory.mktemp("resume-faults")
    assert run_cli(RESUMED, root / "reference").code == 0
    run = root / "stopped"
    cmd = [sys.executable, str(ROOT / "run.py"), *RESUMED, "sinks.parquet.flush_seconds=0.05"]
    proc = subprocess.Popen([*cmd, f"hydra.run.dir={run}"], cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list((run / "episodes").glob("part-*.parquet"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return run, pq.read_table(root / "reference" / "episodes.parquet").drop(["duration_s"])


def _resume(run: str) -> None:
    from rlrec.api import run as record

    os._exit(0 if record([f"resume={run}"], run_dir=run).summary["status"] == "complete" else 1)


def _resume_progress(run: Path, before: set[str]) -> tuple:
    # glob.glob: the resume replaces the parts folder as it starts (no error while it is away)
    parts = {Path(p).name for p in glob.glob(str(run / "episodes" / "part-*.parquet"))}
    summary = run / "summary.json"
    return (
        len(parts - before),
        len(glob.glob(str(run / "videos" / "*.mp4"))),
        (run / "episodes.parquet").exists(),
        (run / "report.html").exists(),
        summary.exists() and "complete" in summary.read_text(),
    )


def test_a_resume_killed_at_any_moment_is_finished_by_the_next(forks, stopped, tmp_path):
    run, reference = stopped
    # new parts, films (the stopped run had some: their count falls as the resume starts), then
    # the end: the merged episodes, the parts folder gone, the report, the summary
    moments = [lambda p, k=k: p[0] >= k for k in range(1, 11)]
    moments += [lambda p, k=k: p[1] >= k for k in (7, 8, 9, 10, 11, 12)]
    moments += [lambda p: p[2], lambda p: p[2] and not p[0], lambda p: p[2] and not p[3]]
    moments += [lambda p: p[3], lambda p: p[4]]
    reached = []
    for k, moment in enumerate(moments):
        copy = tmp_path / str(k)
        shutil.copytree(run, copy, symlinks=True)
        before = {p.name for p in (copy / "episodes").glob("part-*.parquet")}
        proc = forks.Process(target=_resume, args=(str(copy),))
        proc.start()
        seen, deadline = None, time.monotonic() + 60
        while proc.is_alive():
            progress = _resume_progress(copy, before)
            if moment(progress):
                proc.kill()
                seen = progress
                break
            assert time.monotonic() < deadline
            time.sleep(POLL_S)
        proc.join(30)
        reached.append(seen)
        rerun = forks.Process(target=_resume, args=(str(copy),))
        rerun.start()
        rerun.join(60)
        assert rerun.exitcode == 0, (k, seen)
        table = pq.read_table(copy / "episodes.parquet").drop(["duration_s"])
        assert table.equals(reference), (k, seen)
        for row in table.to_pylist():
            if row["video"] is not None:
                assert decode(copy / row["video"])[0] == row["length"] + 1, (k, row["video"])
        films = {p.name for p in (copy / "videos").iterdir()}
        assert films == {Path(v).name for v in table["video"].to_pylist() if v}, (k, seen)
    killed = [seen for seen in reached if seen is not None]
    assert len(killed) >= 16 and len(set(killed)) >= 10, reached
