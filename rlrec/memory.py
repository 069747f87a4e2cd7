"""Memory over time: the resident memory of the run's process tree, sampled as the run goes.

The tree is this process and everything it started (encoder processes, worker processes and their
encoders), summed: what the machine gives the run. A sample costs tens of microseconds (one
``/proc`` read per process), taken about once a second, so the loop does not notice it. Finding
the tree means scanning every process of the machine (0.6 ms among 60 processes, measured; far more
on a busy node), so the tree is looked up again only as often as keeps that under
``LOOKUP_SHARE`` of the run's time.

psutil reads the memory of a process the same way on Linux, macOS and Windows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import psutil

from rlrec.rundir import RunDir, write_parquet

#: The share of the run's time that looking up its processes may take.
LOOKUP_SHARE = 0.005
#: Seconds between two writes of ``_memory.parquet`` while the run goes on (and at its end).
WRITE_EVERY_S = 10.0


class MemorySample(NamedTuple):
    """One sample: seconds since the run started, episodes finished, bytes resident."""

    time_s: float
    episode: int
    rss_bytes: int


class MemoryMonitor:
    """Samples the process tree's resident memory every ``every_s`` seconds into
    ``_memory.parquet`` (``time_s``, ``episode``, ``rss_bytes``).

    >>> import tempfile
    >>> monitor = MemoryMonitor(RunDir(tempfile.mkdtemp()), every_s=1.0)
    >>> first = monitor.sample(episode=0)
    >>> first.rss_bytes > 10 * 2**20, monitor.peak == first.rss_bytes
    (True, True)
    """

    def __init__(self, run: RunDir, every_s: float | None = 1.0) -> None:
        self.run = run
        self.every_s = float(every_s or 0)
        self.samples: list[MemorySample] = []
        self.peak = 0
        self._root = psutil.Process()
        self._tree: list[psutil.Process] = []
        self._lookup_at = 0.0  # when the tree is looked up next (monotonic)
        self._lookup_cost = float("inf")  # the cheapest look so far (the first one is cold)
        self._started = time.monotonic()
        self._offset = 0.0  # a resumed run's time goes on from where the earlier one stopped
        self._next = self._started if self.every_s > 0 else float("inf")
        self._written_at = self._started

    @property
    def enabled(self) -> bool:
        return self.every_s > 0

    def due(self, now: float) -> bool:
        """Whether a sample is due at monotonic time ``now``."""
        return now >= self._next

    def sample(self, episode: int, at_least: int = 0) -> MemorySample:
        """Take a sample now, ``episode`` episodes into the run; write the file when it is time.
        ``at_least``: the most seen since the last sample (by ``watching``)."""
        now = time.monotonic()
        if now >= self._lookup_at:
            self._look_up(now)
        rss = 0
        for process in self._tree:
            try:
                rss += process.memory_info().rss
            except psutil.Error:  # it ended since the last look (an encoder that finished)
                self._lookup_at = now
        rss = max(rss, at_least)
        taken = MemorySample(self._offset + now - self._started, episode, rss)
        self.samples.append(taken)
        self.peak = max(self.peak, rss)
        self._next = now + self.every_s
        if now - self._written_at >= WRITE_EVERY_S:
            self.write()
        return taken

    @contextmanager
    def watching(self, every_s: float = 0.05) -> Iterator[list[int]]:
        """Within: the process tree is looked at every ``every_s`` seconds, and the most it held
        is the list's one item (for the sample after). The end of a run (merging its parts,
        drawing its plot) can take more memory than its episodes did."""
        most = [0]
        if not self.enabled:
            yield most
            return
        # A spike shorter than the watch's period slips between two looks: the kernel keeps this
        # process's own high-water mark, reset here so that it covers the watch alone.
        own_peak = _reset_own_peak()
        stop = threading.Event()

        def watch() -> None:
            while True:
                tree = [self._root, *_children(self._root)]
                most[0] = max(most[0], sum(_rss(process) for process in tree))
                if stop.wait(every_s):
                    return

        watcher = threading.Thread(target=watch, name="rlrec-memory-watch", daemon=True)
        watcher.start()
        try:
            yield most
        finally:
            stop.set()
            watcher.join()
            if own_peak:
                most[0] = max(most[0], _own_peak())

    def restore(self, start: int) -> None:
        """A resumed run, before its first sample: keep the earlier run's samples up to episode
        ``start`` (the episodes after it run again) and go on counting time from the last one."""
        table = self.run.read_memory()
        if table is None:
            return
        columns = (table.column(name).to_pylist() for name in MemorySample._fields)
        self.samples = [MemorySample(*row) for row in zip(*columns, strict=True) if row[1] <= start]
        if self.samples:
            self.peak = max(s.rss_bytes for s in self.samples)
            self._offset = self.samples[-1].time_s

    def write(self) -> None:
        """Write every sample so far to ``_memory.parquet`` (whole: a reader never sees half)."""
        self._written_at = time.monotonic()
        if self.samples:
            write_parquet(memory_table(self.samples), self.run.memory)

    def _look_up(self, now: float) -> None:
        """Find the run's processes; the next look comes after ``1 / LOOKUP_SHARE`` times what
        this one took."""
        self._tree = [self._root, *_children(self._root)]
        self._lookup_cost = min(self._lookup_cost, time.monotonic() - now)
        self._lookup_at = now + self._lookup_cost / LOOKUP_SHARE


def _reset_own_peak() -> bool:
    """Reset this process's peak resident memory (``VmHWM``; Linux 4.0 and later), if it can."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _own_peak() -> int:
    """This process's peak resident memory since the last reset, in bytes (0 if unknown)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:  # it ended while we looked
        return 0


def memory_table(samples: list[MemorySample]) -> Any:
    """Samples as the Arrow table of ``_memory.parquet``."""
    import numpy as np
    import pyarrow as pa

    types = {"time_s": (np.float64, pa.float64()), "episode": (np.int64, pa.int64())}
    types["rss_bytes"] = types["episode"]
    arrays = []
    columns = zip(*samples, strict=True)
    for values, (dtype, arrow_type) in zip(columns, types.values(), strict=True):
        # from the buffer: pa.array would import pandas (a quarter of a second) where installed
        buffer = pa.py_buffer(np.asarray(values, dtype))
        arrays.append(pa.Array.from_buffers(arrow_type, len(values), [None, buffer]))
    return pa.Table.from_arrays(arrays, names=list(types))
