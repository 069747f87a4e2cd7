"""The runner: episodes from a driver -> in order -> totals, sinks, checkpoints -> the summary.

``record(cfg, run_dir)`` is the whole product as a plain function; the CLI and ``rlrec.run`` are
thin layers over it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlrec.build import Objects, build
from rlrec.drivers import run_here
from rlrec.drivers.workers import WorkerPool
from rlrec.memory import MemoryMonitor
from rlrec.records import EpisodeRecord, RunInfo
from rlrec.resume import ResumePoint, find_resume_point, truncate
from rlrec.rundir import WriterLock, hold_run_dir
from rlrec.seeding import reseed_globals
from rlrec.sinks import Sink
from rlrec.sinks.tracker import Tracker
from rlrec.stats import RunTotals

log = logging.getLogger(__name__)


class Runner:
    """Runs a run's episodes where the objects say (here, a vector env, worker processes) and
    hands each finished episode, in episode order, to the totals and every sink.

    ``run()`` is the whole run. A loop that is not rlrec's (``rlrec.wrappers.Recorder``) uses the
    three parts it is made of: ``start()``, ``accept(record)`` per finished episode, in order,
    and ``finish(status)``.
    """

    def __init__(self, objects: Objects) -> None:
        self.o = objects
        self._in_order = InOrder(0)  # where a parallel run's records wait for their turn
        self._memory = MemoryMonitor(objects.run, objects.cfg.get("memory_every_s", 1.0))
        self._finished = 0  # episodes finished, in order
        self._totals = RunTotals(success_measured=objects.success.measured)
        self._opened: list[Sink] = []
        self._started = 0.0
        # read once: a DictConfig lookup costs 10-20 us, and accept() runs once an episode
        self._checkpoint_every = objects.cfg.get("checkpoint_every")

    def run(self) -> dict[str, Any]:
        """Run every episode, feed every sink, write ``summary.json``; return the summary."""
        o = self.o
        reseed_globals(o.seed)
        status = "failed"
        with o.signals.installed():
            try:
                start = self.start()
                records = self._records(start)
                try:
                    for record in records:
                        self.accept(record)
                finally:
                    records.close()  # stops the workers or the vector env: nothing left running
                    self._accept_rest()
                o.signals.check()
                status = "complete"
            except KeyboardInterrupt:
                status = "interrupted"
                raise
            finally:
                summary = self.finish(status)
        return summary

    def start(self) -> int:
        """Open the sinks (after restoring a resumed run); return the first episode to run."""
        o = self.o
        self._started = time.perf_counter()
        config = OmegaConf.to_container(o.cfg, resolve=True)
        run = RunInfo(o.run.path, o.cfg.env.id, o.seed, o.job, o.planned, config)
        point = self._resume() if o.cfg.get("resume") else ResumePoint()
        o.run.keep_room_for_summary()
        for sink in o.sinks:
            sink.open(run)
            self._opened.append(sink)
            sink.restore(point.kept)  # e.g. the plot's earlier curve
        self._finished = point.start
        self._sample_memory()
        return point.start

    def accept(self, record: EpisodeRecord) -> None:
        """Count a finished episode and hand it to every sink."""
        self._totals.add(record)
        self.o.filming.accepted(record)
        for sink in self._opened:
            sink.write(record)
        self._finished = record.episode + 1
        self._checkpoint(self._finished)
        if self._memory.due(time.monotonic()):
            self._sample_memory()

    def finish(self, status: str) -> dict[str, Any]:
        """Close the sinks, write ``summary.json`` with ``status``, release the objects; return
        the summary."""
        self._sample_memory(final=True)
        summary = self._summary(status, time.perf_counter() - self._started)
        if status == "interrupted":
            # the finished episodes and the summary first, where a second signal cannot cut them
            # off: it ends the process right after (before the report, a timelapse, the trackers)
            with self.o.signals.saving():
                for sink in self._opened:
                    sink.flush()
                self.o.run.write_summary(summary | {"tracker_failures": {}})
        self._close(summary)
        return summary

    def _records(self, start: int) -> Iterator[EpisodeRecord]:
        """The run's finished episodes from ``start`` on, in order."""
        o = self.o
        todo = o.indices[_position(o.indices, start) :]
        if not o.parallel:
            yield from run_here(o, todo)
            return
        pool = None
        if o.workers > 1:
            config = OmegaConf.to_container(o.cfg, resolve=True)
            pool = WorkerPool(config, o.run.path, o.job, o.workers, todo)
            source = pool.records(o.signals)
        else:
            source = run_here(o, todo)
        self._in_order = InOrder(todo.start, todo.step)
        try:
            for record in source:
                self._in_order.add(record)
                for ready in self._in_order.due():
                    if o.trigger.decides_after:  # in episode order, as a sequential run would
                        o.filming.settle(ready, None, live=False)
                    yield ready
        finally:
            source.close()
            for record in pool.drained if pool is not None else ():
                self._in_order.add(record)  # finished while the workers stopped: kept

    def _sample_memory(
        self, final: bool = False, at_least: int = 0, sinks: list[Sink] | None = None
    ) -> None:
        """A sample of the run's memory, to ``_memory.parquet`` and to every sink; the last ones
        also write the file, before the sinks close (the plot and the report draw it)."""
        memory = self._memory
        if not memory.enabled:
            return
        sample = memory.sample(self._finished, at_least)
        for sink in self._opened if sinks is None else sinks:
            try:
                sink.memory(sample)
            except Exception:
                if not final:
                    raise
                log.exception("sink %r failed on a memory sample", sink)
        if final:
            try:
                memory.write()
            except OSError as err:  # a full disk: the run's end still writes what it owes
                log.warning("_memory.parquet could not be written: %s", err)

    def _accept_rest(self) -> None:
        """After a stop or a crash, the finished episodes still waiting for an earlier one that
        never came: written too, so that every finished episode is readable (a resume runs the
        missing ones)."""
        for record in self._in_order.rest():
            try:
                self.accept(record)
            except Exception:
                log.exception("could not record episode %d", record.episode)
                return

    def _checkpoint(self, next_episode: int) -> None:
        """Every ``checkpoint_every`` episodes, the learning policy's state, written only after the
        episodes before it are on disk: a resume never finds a checkpoint ahead of the data."""
        o = self.o
        every = self._checkpoint_every
        if not every or next_episode % every or o.episodes is None or next_episode >= o.episodes:
            return
        if not (o.learns and o.hooks.save is not None and o.hooks.load is not None):
            return
        for sink in self._opened:
            sink.flush()
        o.run.write_checkpoint(next_episode, o.hooks.save)

    def _resume(self) -> ResumePoint:
        """Continue the run in its folder: restore what it finished and where to start."""
        o = self.o
        point = find_resume_point(o.run, o.learns, o.hooks.load is not None)
        if point.checkpoint is not None:
            o.hooks.load(point.checkpoint)
        truncate(o.run, point.start)
        self._memory.restore(point.start)
        for record in point.kept:  # the statistics
            self._totals.add(record)
        o.filming.restore(point.kept)  # the trigger's memory, the timelapse's parts
        log.info("resuming %s at episode %d of %d", o.run.path, point.start, o.episodes)
        return point

    def _summary(self, status: str, wall_time: float) -> dict[str, Any]:
        o = self.o
        return {
            "status": status,
            **self._totals.summary(),
            "episodes_planned": o.planned,
            "env_id": o.cfg.env.id,
            "seed": o.seed,
            "job": o.job,
            "wall_time_s": wall_time,
            "peak_rss_bytes": self._memory.peak if self._memory.enabled else None,
            "learns": o.learns,  # its score across tasks is its last episodes' mean
        }

    def _close(self, summary: dict[str, Any]) -> None:
        """Close the sinks that finish files first (finished episodes reach the disk before
        anything slow), save the policy, make the timelapse, take the last memory sample, close
        the other sinks, write the summary and release the objects. A run
        that fails here (a file it owes could not be written) ends failed with the cause, and
        its summary counts the episodes on disk."""
        o, sinks = self.o, self._opened
        errors: list[Exception] = []
        complete = summary["status"] == "complete"

        def failed(err: Exception, what: str) -> None:
            if isinstance(err, OSError):  # a full disk, a damaged file: the cause, not a trace
                log.error("%s failed: %s", what, err)
            else:
                log.exception("%s failed", what)
            errors.append(err)
            if summary["status"] == "complete":  # the sinks closed after it see it too
                summary.update(status="failed", error=f"{type(err).__name__}: {err}")
            if "parquet" in (o.cfg.get("sinks") or {}):  # what is on disk, not what was meant
                with contextlib.suppress(OSError):
                    table = o.run.read_episodes()
                    rows = table.to_pylist() if table is not None else []
                    summary.update(RunTotals.of_rows(rows).summary())

        def close(sink: Sink) -> None:
            try:
                sink.close(summary)
            except Exception as err:  # keep closing the others: each holds data of its own
                failed(err, f"closing sink {sink!r}")

        # The files first, watched: merging the parts, the plot, the policy and the timelapse
        # can take more memory than the episodes did. Then a last sample holds the most they
        # took, and the sinks that show the run get its whole peak; trackers last: what they
        # upload at the end (episodes.parquet) is complete by then.
        with self._memory.watching() as most:
            for sink in (sink for sink in sinks if sink.closes_first):
                close(sink)
            if o.hooks.save is not None:  # also when interrupted: what was learnt so far
                try:
                    o.hooks.save(o.run.policy_checkpoint)
                except Exception as err:
                    failed(err, "saving the policy")
            if o.cfg.video.get("timelapse") and o.trigger.films:
                try:
                    o.filming.timelapse()
                except Exception as err:
                    failed(err, "the timelapse")
        rest = _closing_order(sink for sink in sinks if not sink.closes_first)
        self._sample_memory(final=True, at_least=most[0], sinks=rest)
        if self._memory.enabled:
            summary["peak_rss_bytes"] = self._memory.peak
        trackers = [sink for sink in sinks if isinstance(sink, Tracker)]
        for sink in rest:
            if sink.closes_last:  # what became of the trackers is known by now
                summary["tracker_failures"] = _failures(trackers)
            close(sink)
        summary["tracker_failures"] = _failures(trackers)
        _tell_failures(summary["tracker_failures"], o.run.path)
        o.run.write_summary(summary)
        o.close()
        if errors and complete:
            raise errors[0]


def _closing_order(sinks: Iterator[Sink]) -> list[Sink]:
    """The sinks that show the run, then the trackers (what they upload at the end is complete
    by then), then those that tell what became of the trackers (``closes_last``: the report)."""
    return sorted(sinks, key=lambda sink: 2 if sink.closes_last else isinstance(sink, Tracker))


def _failures(trackers: list[Tracker]) -> dict[str, Any]:
    return {sink.name: sink.failure for sink in trackers if sink.failure}


def _tell_failures(failures: dict[str, Any], run_dir: Path) -> None:
    """The run's closing lines name each tracker it gave up on, and how to fill it."""
    for name, failure in failures.items():
        start = "the end" if failure["episode"] is None else failure["episode"]
        log.warning(
            "the %s tracker lacks episodes from %s on (%s): rlrec-sync %s sends them",
            name, start, failure["error"], run_dir,
        )  # fmt: skip


class InOrder:
    """Puts records that arrive in any order back in episode order.

    >>> order = InOrder(0)
    >>> for episode in (1, 0, 3):
    ...     order.add(episode)
    ...     print(list(order.due()))
    []
    [0, 1]
    []
    >>> order.rest()
    [3]
    """

    def __init__(self, first: int, step: int = 1) -> None:
        self._next, self._step = first, step  # the episode whose turn it is; a shard's stride
        self._waiting: dict[int, Any] = {}

    def add(self, record: Any) -> None:
        """Take ``record`` (an ``EpisodeRecord``, or its index) in."""
        self._waiting[getattr(record, "episode", record)] = record

    def due(self) -> Iterator[Any]:
        """The records whose turn it is, in order (each handed out once)."""
        while self._next in self._waiting:
            self._next += self._step
            yield self._waiting.pop(self._next - self._step)

    def rest(self) -> list[Any]:
        """What is still waiting (an earlier episode never came), in order; then nothing."""
        rest = [self._waiting[e] for e in sorted(self._waiting)]
        self._waiting.clear()
        return rest


def _position(indices: range, start: int) -> int:
    """How many of ``indices`` come before episode ``start`` (where a resumed run goes on).

    >>> _position(range(1, 20, 4), 0), _position(range(1, 20, 4), 6), _position(range(1, 20, 4), 99)
    (0, 2, 5)
    """
    return min(len(indices), max(0, -(-(start - indices.start) // indices.step)))


def record(cfg: Any, run_dir: Path | str, job: int = 0) -> dict[str, Any]:
    """Build everything ``cfg`` describes and run it into ``run_dir``; return the run's summary."""
    folder = Path(run_dir).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    # the CLI takes the lock before Hydra writes its record there; a sweep's job, rlrec.run here
    held = WriterLock.holds(folder)
    lock = None if held else hold_run_dir(folder, "hydra.run.dir", new=not cfg.get("resume"))
    try:
        return Runner(build(cfg, run_dir, job)).run()
    finally:
        if lock is not None:
            lock.release()
