"""Worker processes: ``workers=K`` shares a run's episodes among K processes.

Each worker takes the next chunk of consecutive episodes from a shared queue whenever it needs
work, runs them with an env (or vector env) and an encoder of its own, and sends the finished
episodes to the run's process in batches; that process puts them in order and owns every sink, the
trigger's memory and the summary. Chunks are taken as workers free up, not dealt out in advance:
filmed episodes cost far more than the others, and a fixed deal (every K-th episode to the same
worker, say) would give one worker every film of ``trigger.period=K``. Workers are started
with ``spawn``: a forked child would inherit the parent's pipes (an encoder's input among them, so
that encoder would never see its end) and whatever threads the user's code had started.

Ctrl-C reaches every process of the terminal's group: workers ignore SIGINT and the run's process
stops them with SIGTERM, which ends a worker's episode in progress (its partial video deleted) and
sends what it finished. A worker whose parent dies exits at its next batch.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import time
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from rlrec.build import build
from rlrec.drivers import run_here
from rlrec.errors import ConfigError
from rlrec.records import EpisodeRecord
from rlrec.signals import StopSignals

#: A worker sends its finished episodes at least this often (seconds) ...
FLUSH_SECONDS = 0.1
#: ... or once it has this many: the parent reads few large messages rather than many small ones.
BATCH_EPISODES = 256
#: Most episodes in one chunk of work: small enough that workers finish together.
CHUNK_EPISODES = 64
#: How long a stopped worker has to send what it finished before it is killed.
STOP_TIMEOUT = 10.0


class WorkerError(RuntimeError):
    """A worker failed on something that is not the user's config; carries its traceback."""


class WorkerPool:
    """K worker processes running ``episodes`` of the run configured by ``config`` (a plain
    dict: it is pickled to each); ``records()`` yields what they finish (in the order it
    arrives); after a stop, ``drained`` holds what came in while stopping."""

    def __init__(
        self, config: dict[str, Any], run_dir: Path, job: int, workers: int, episodes: range
    ) -> None:
        self.config, self.run_dir, self.job = config, run_dir, job
        self.workers, self.episodes = workers, episodes
        self.drained: list[EpisodeRecord] = []

    def records(self, signals: StopSignals) -> Iterator[EpisodeRecord]:
        context = mp.get_context("spawn")
        tasks = context.Queue()
        for chunk in _chunks(self.episodes, self.workers):
            tasks.put(chunk)
        for _ in range(self.workers):
            tasks.put(None)  # no more work
        # A pipe per worker, whose sending end only that worker holds: if it dies, even in the
        # middle of a message, reading gives EOFError. (A shared queue would block for ever on
        # the rest of a message that never comes.)
        pipes = [context.Pipe(duplex=False) for _ in range(self.workers)]
        procs = [
            context.Process(
                target=work,
                args=(self.config, str(self.run_dir), self.job, w),
                kwargs={"tasks": tasks, "outbox": pipes[w][1]},
                name=f"rlrec-worker-{w}",
                daemon=False,  # a worker may start processes of its own (async sub-envs)
            )
            for w in range(self.workers)
        ]
        with _spawn_by_default():
            for proc in procs:
                proc.start()
        for _, sending in pipes:
            sending.close()
        inbox = _Inbox([receiving for receiving, _ in pipes], procs)
        try:
            quiet = 0
            while inbox.running:
                signals.check()
                messages = inbox.receive(timeout=0.2)
                quiet = 0 if messages else quiet + 1
                if not messages:
                    _check_alive(procs, inbox.running, quiet)
                for kind, payload in messages:
                    if kind == "records":
                        yield from payload
                    elif kind != "done":
                        raise _rebuild(kind, payload)
        finally:
            self._stop(procs, inbox, tasks)

    def _stop(self, procs: list[mp.Process], inbox: _Inbox, tasks: mp.Queue) -> None:
        """SIGTERM the workers still running; keep what they send until each says it is done."""
        for w in inbox.running:
            if procs[w].is_alive():
                procs[w].terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        while inbox.running and time.monotonic() < deadline:
            for kind, payload in inbox.receive(timeout=0.2):
                if kind == "records":
                    self.drained.extend(payload)
            inbox.running -= {w for w in inbox.running if not procs[w].is_alive()}
        for proc in procs:
            proc.join(timeout=STOP_TIMEOUT)
            if proc.is_alive():
                proc.kill()
                proc.join()
        inbox.close()
        tasks.cancel_join_thread()  # chunks nobody took: nothing to wait for
        tasks.close()


class _Inbox:
    """What the workers send, each through its own pipe; ``running`` holds the workers that
    have not said they are done (or failed, or died)."""

    def __init__(self, pipes: list[Connection], procs: list[mp.Process]) -> None:
        self.pipes, self.procs = pipes, procs
        self.running = set(range(len(pipes)))

    def receive(self, timeout: float) -> list[tuple[str, Any]]:
        """The messages that arrive within ``timeout``, as (kind, payload); a worker that ends
        its run ("done", an error) or dies leaves ``running``."""
        open_pipes = {self.pipes[w]: w for w in self.running}
        messages = []
        for pipe in wait(list(open_pipes), timeout=timeout):
            worker = open_pipes[pipe]
            try:
                kind, _, payload = pipe.recv()
            except (EOFError, OSError):  # it died: what it sent whole was read before
                self.running.discard(worker)
                proc = self.procs[worker]
                proc.join(timeout=STOP_TIMEOUT)
                messages.append(("died", (worker, proc.exitcode)))
                continue
            if kind != "records":
                self.running.discard(worker)
            messages.append((kind, payload))
        return messages

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.close()


def work(
    config: dict[str, Any], run_dir: str, job: int, worker: int, tasks: mp.Queue, outbox: Connection
) -> None:
    """A worker process: build the run's objects as worker ``worker`` (no sinks; only the films
    the trigger picks before an episode), run the episodes of the chunks it takes from
    ``tasks``; send the records, then "done" (or the error)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's process's to handle
    parent = mp.parent_process()
    batch: list[EpisodeRecord] = []
    ending: tuple[str, int, Any] = ("done", worker, None)
    try:
        objects = build(OmegaConf.create(config), Path(run_dir), job, worker=worker)
        try:
            with objects.signals.installed():
                sent = time.monotonic()
                for record in run_here(objects, _take(tasks)):
                    record.worker = worker
                    record.actions = _compact(record.actions)
                    batch.append(record)
                    now = time.monotonic()
                    if len(batch) >= BATCH_EPISODES or now - sent >= FLUSH_SECONDS:
                        if parent is not None and not parent.is_alive():
                            return  # nobody to send to; the encoder drops its partial file
                        outbox.send(("records", worker, batch))  # whole, from this thread
                        batch, sent = [], now
        finally:
            objects.close()
    except KeyboardInterrupt:
        pass  # stopped by the run's process: what was finished is sent below
    except ConfigError as err:
        ending = ("config", worker, (err.key, err.problem, err.fix))
    except OSError as err:
        ending = ("oserror", worker, (err.errno, f"{err.strerror or err}"))
    except BaseException as err:
        text = "".join(traceback.format_exception(err))
        ending = ("error", worker, f"worker {worker} failed: {type(err).__name__}: {err}\n{text}")
    if batch:
        outbox.send(("records", worker, batch))
    outbox.send(ending)
    outbox.close()


@contextlib.contextmanager
def _spawn_by_default() -> Iterator[None]:
    """Make ``spawn`` the default start method while workers start.

    A spawned child is told the parent's *default* start method and sets it up first. Inside a
    joblib (loky) worker, as with ``hydra/launcher=joblib``, that default is ``loky``, which a
    fresh interpreter does not know, so the child would die before running anything.
    """
    previous = mp.get_start_method(allow_none=True)
    if previous in (None, "spawn", "fork", "forkserver"):
        yield
        return
    mp.set_start_method("spawn", force=True)
    try:
        yield
    finally:
        mp.set_start_method(previous, force=True)


def _chunks(episodes: range, workers: int) -> Iterator[tuple[int, int, int]]:
    """``episodes`` (a shard's every ``shards``-th) as (start, stop, step) chunks: at least 32
    per worker, at most CHUNK_EPISODES long.

    >>> list(_chunks(range(1, 10, 4), 2))
    [(1, 5, 4), (5, 9, 4), (9, 13, 4)]
    """
    size = max(1, min(CHUNK_EPISODES, len(episodes) // (workers * 32)))
    for first in range(0, len(episodes), size):
        chunk = episodes[first : first + size]
        yield chunk.start, chunk.stop, chunk.step


def _take(tasks: mp.Queue) -> Iterator[int]:
    """The episodes of the chunks this worker takes, one chunk whenever it needs more."""
    while (chunk := tasks.get()) is not None:
        yield from range(*chunk)


def _compact(actions: list[Any]) -> Any:
    """An episode's actions as one array (one buffer to pickle, not an object per step)."""
    try:
        array = np.asarray(actions)
    except ValueError:  # ragged: keep the list
        return actions
    return array if array.dtype != object else actions


def _rebuild(kind: str, payload: Any) -> BaseException:
    """The worker's error, as the same kind of exception in the run's process."""
    if kind == "config":
        return ConfigError(*payload)
    if kind == "oserror":
        return OSError(*payload)
    if kind == "died":
        worker, code = payload
        return WorkerError(f"worker {worker} exited with code {code} before finishing its episodes")
    return WorkerError(payload)


def _check_alive(procs: list[mp.Process], running: set[int], quiet: int) -> None:
    """A worker that died without a word (killed, out of memory) fails the run."""
    for w in running:
        code = procs[w].exitcode
        # exit 0 without "done" cannot happen, unless its last message is still on the way
        if code is not None and (code != 0 or quiet > 5):
            raise WorkerError(f"worker {w} exited with code {code} before finishing its episodes")
