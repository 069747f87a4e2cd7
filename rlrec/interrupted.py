"""A sweep stopped by Ctrl-C or SIGTERM: each job it started ends with an ``interrupted`` summary.

A job that runs in this process (Hydra's basic launcher) ends itself as a single run does. Jobs in
worker processes (joblib) got the terminal's signal too and end themselves the same way, but the
launcher kills its workers as soon as the signal reaches this process: ``jobs_end_first`` holds the
signal back until they have written what they finished, and ``record_interrupted_jobs`` writes the
summary of any job that could not (killed, or never told), from the episodes it left on disk.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rlrec.rundir import RunDir, SweepDir, WriterLock
from rlrec.signals import Interrupted
from rlrec.stats import RunTotals

#: How long a stopped sweep waits for its jobs to write what they finished.
GRACE_S = 10.0
#: How long a job on this machine has to end by itself (it got a terminal's Ctrl-C too) before
#: the signal is passed on to it (it was sent to the sweep's process alone).
PASS_ON_S = 1.0
#: Statuses a job writes when it ends.
ENDED = ("complete", "failed", "interrupted")


def launch_jobs(sweep_dir: Path, first: int) -> dict[int, RunDir]:
    """The sweep's jobs numbered ``first`` or later (those of this launch), by number."""
    found = {}
    for run in SweepDir(sweep_dir).runs():
        number = run.path.name.partition("-")[0]
        if number.isdigit() and int(number) >= first:
            found[int(number)] = run
    return found


@contextmanager
def jobs_end_first(sweep_dir: Path, first: int) -> Iterator[None]:
    """Within: the first SIGINT or SIGTERM waits (``GRACE_S`` at most, a second signal ends the
    wait) for the jobs still writing to end, then stops the sweep. The jobs run on this machine;
    those that did not get the signal (sent to this process alone) are passed it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        for restored, handler in previous.items():  # a second signal acts at once
            signal.signal(restored, handler)
        start = time.monotonic()
        told = False
        # looked for again each time: a job may start its folder meanwhile
        while busy := [
            run for run in launch_jobs(sweep_dir, first).values() if WriterLock.busy(run.path)
        ]:
            waited = time.monotonic() - start
            if waited > GRACE_S:
                break
            if not told and waited > PASS_ON_S:
                _pass_on(busy, signum)
                told = True
            time.sleep(0.05)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _pass_on(jobs: list[RunDir], signum: int) -> None:
    """Send ``signum`` to the processes writing ``jobs`` (their pids are in their lock files)."""
    for run in jobs:
        with contextlib.suppress(OSError, ValueError):
            pid = int((run.path / WriterLock.NAME).read_text().strip())
            if pid != os.getpid():
                os.kill(pid, signum)


def record_interrupted_jobs(sweep_dir: Path, first: int) -> list[RunDir]:
    """Give each job of this launch that did not end itself an ``interrupted`` summary of the
    episodes on its disk; return them. A job still written by a live process is left to it."""
    recorded = []
    for job, run in launch_jobs(sweep_dir, first).items():
        if run.read_summary().get("status") in ENDED or WriterLock.busy(run.path):
            continue
        table = run.read_episodes()
        totals = RunTotals.of_rows(table.to_pylist() if table is not None else [])
        run.update_summary(status="interrupted", job=job, **totals.summary())
        recorded.append(run)
    return recorded
