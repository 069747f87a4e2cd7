"""The base of the tracker sinks (TensorBoard, W&B, MLflow): what every tracker gets from a run.

A tracker receives, in episode order, one row per episode (``return``, ``length``, ``duration_s``
and ``success`` where measured) with the episode index as its x-axis, each filmed episode's video
at its episode, the resolved config once (flattened, dotted keys), the memory samples as system
metrics, and at the end the summary and the learning curve as an image.

The episode loop only appends to a queue (under a microsecond an episode); a background thread
takes what has gathered about once a second and logs it as a batch, so a tracker's own cost
(protobuf, HTTP, disk) stays out of the loop. A tracker that fails mid-run costs one warning and
stops logging; the run, its Parquet, its videos and its ``summary.json`` go on untouched, and
``summary.json`` says which tracker failed, at which episode, and why (``tracker_failures``). One
that cannot start (a missing extra, a server out of reach) ends the run before its first episode.

``trackers.json`` keeps each tracker's run id and how many episodes it has logged (updated after
each batch is committed), so ``resume=<run>`` continues the same tracker run and does not log an
episode twice.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from rlrec.config import check_number, is_number
from rlrec.episode_ranges import EpisodeRanges
from rlrec.errors import ConfigError
from rlrec.memory import MemorySample
from rlrec.plots import CurveData
from rlrec.records import EpisodeRecord, RunInfo
from rlrec.rundir import RunDir
from rlrec.sinks import Sink
from rlrec.sinks.tracker_process import StartFailed, TrackerProcess

log = logging.getLogger(__name__)

#: The per-episode metrics a tracker logs, in this order (``success`` only where measured).
METRICS = ("return", "length", "duration_s", "success")


def require(module: str, extra: str, key: str) -> Any:
    """Import ``module`` or end the run with the ``pip install`` line of rlrec's ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            key,
            f"needs the {extra} extra ({err})",
            f'pip install -e ".[{extra}]" (or pip install "rlrec[{extra}]")',
        ) from None


#: The key of ``trackers.json``'s entry listing the episodes whose films the tracker lacks
#: though it holds their rows (an upload that failed after the row went through).
FILMS_OWED = "films_owed"


def retry_delay(name: str, retry_s: Any) -> float:
    """``sinks.<name>.retry_s`` checked: seconds, 0 or more (0: give up at the first failure)."""
    check_number(f"sinks.{name}.retry_s", retry_s, 0)
    return float(retry_s)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as one level of dotted keys; lists stay lists.

    >>> flatten({"env": {"id": "CartPole-v1", "kwargs": {}}, "seed": 0, "sinks": {"a": None}})
    {'env.id': 'CartPole-v1', 'env.kwargs': {}, 'seed': 0, 'sinks.a': None}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def start_failure(err: BaseException) -> str:
    """Why a tracker's first requests failed, cause first (refused, a name not resolved, a
    timeout, or the HTTP status and what answered), then the backend's own words, cut at a word:
    a long message cut at a fixed length lost the cause."""
    import socket

    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or err.__context__
    words = " ".join(str(chain[0]).split())
    status = re.search(r"(?:error|status) code:? (\d{3})", words)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        cause = "connection refused (nothing listens there)"
    elif any(isinstance(e, socket.gaierror) for e in chain):
        cause = "the host name could not be resolved"
    elif any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        cause = "no answer in time"
    elif status:
        body = re.search(r"Response body: '(.*)", words)
        text = " ".join(re.sub(r"<[^>]*>", " ", body.group(1)).split()) if body else ""
        answered = f"; it answered: {text[:120]}" if text else ""
        cause = f"HTTP {status.group(1)}, not the tracker's server{answered}"
    else:
        root = chain[-1]
        cause = f"{type(root).__name__}: {' '.join(str(root).split())}"
    if len(words) > 300:
        words = words[:300].rsplit(" ", 1)[0] + " ..."
    return f"{cause}. {type(chain[0]).__name__}: {words}"


def _wait_for_exit(pid: int, timeout_s: float = 120.0) -> None:
    """Wait for a killed run's tracker process (if it is still there) to finish its batch."""
    import psutil

    try:
        process = psutil.Process(pid)
        if "rlrec.sinks.tracker_process" in " ".join(process.cmdline()):
            process.wait(timeout_s)
    except (psutil.Error, psutil.TimeoutExpired):
        pass


def summary_numbers(summary: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """The summary's numbers as metrics, nested keys joined with ``_`` (``length_mean``); the
    seed, the job and the planned episodes are settings, not results.

    >>> summary_numbers({"mean": 2, "length": {"max": 9}, "seed": 0, "status": "complete"})
    [('mean', 2.0), ('length_max', 9.0)]
    """
    found = []
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found += summary_numbers(value, f"{name}_")
        elif is_number(value) and name not in ("seed", "job", "episodes_planned"):
            found.append((name, float(value)))
    return found


class EpisodeBatch:
    """Consecutive episodes to log at once: per metric, a list over the episodes.

    ``current`` is the episode being logged: the first until ``rows()`` moves on, so a tracker
    that fails is known to have logged the episodes before it.
    """

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        columns = list(zip(*rows, strict=True))
        self.episodes: list[int] = list(columns[0])
        self.wall_times: list[float] = list(columns[1])
        self.metrics: dict[str, list[Any]] = dict(zip(METRICS, columns[2:], strict=True))
        self.current = self.episodes[0]

    def rows(self) -> Iterator[tuple[int, float, dict[str, float]]]:
        """(episode, wall time, {metric: value}) per episode; success as 0/1, left out where
        not measured."""
        returns, lengths, durations, successes = self.metrics.values()
        for i, episode in enumerate(self.episodes):
            self.current = episode
            values = {
                "return": float(returns[i]),
                "length": float(lengths[i]),
                "duration_s": float(durations[i]),
            }
            if successes[i] is not None:
                values["success"] = float(successes[i])
            yield episode, self.wall_times[i], values


class TrackerHooks:
    """The hooks a tracker implements, and how a batch is handed to them where they run (a
    thread of the run's process, or the tracker's own process): ``begin``, then ``handle``."""

    # -- what a tracker implements ------------------------------------------------------------
    def start(self, run: RunInfo, earlier: dict[str, Any] | None) -> dict[str, Any]:
        """Connect (or open files); ``earlier`` is this tracker's entry in ``trackers.json`` when
        the run is resumed (continue that tracker run). Return the entry to keep: at least
        ``{"id": ...}``. Raise ``ConfigError`` (naming the key and the fix) if it cannot start."""
        raise NotImplementedError

    def log_config(self, config: dict[str, Any]) -> None:
        """The resolved config, flattened (dotted keys); once per tracker run."""

    def log_episodes(self, batch: EpisodeBatch) -> None:
        """Consecutive finished episodes; the episode index is the x-axis."""

    def log_video(self, episode: int, path: Path) -> None:
        """A filmed episode's video (complete under its final name)."""

    def log_memory(self, samples: list[MemorySample]) -> None:
        """Memory samples, as system metrics."""

    def log_summary(self, summary: dict[str, Any], curve_png: bytes | None) -> None:
        """The run's summary and its learning curve (PNG; None without episodes)."""

    def log_console(self, writes: list[tuple[str, str]]) -> None:
        """With ``shows_console``: what the run wrote, as (``stdout`` or ``stderr``, text)."""

    def commit(self) -> dict[str, Any] | None:
        """Make what was logged so far durable: after this, ``trackers.json`` counts it (with
        the entries returned here, e.g. where the tracker's file ends)."""

    def finish(self, status: str) -> None:
        """End the tracker run (``status``: complete, interrupted or failed)."""

    def lost(self, entry: dict[str, Any]) -> bool:
        """Whether the tracker run ``entry`` names is gone (its files deleted): then it holds
        nothing, whatever ``trackers.json`` says."""
        return False

    def holds(self) -> list[int]:
        """On a resumed tracker run, the episodes its backend says it holds already (asked of
        the backend itself where it can say: they are not sent again)."""
        return []

    # -- where the hooks run (this process's thread, or the tracker's own process) -------------
    def begin(self, run: RunInfo, earlier: dict[str, Any] | None) -> None:
        """Start the tracker and record it in ``trackers.json``. From here on, the process the
        hooks run in is the one that counts what was logged, after each commit: a run killed
        while its tracker's process finishes a batch still has that batch counted."""
        self._files = RunDir(run.run_dir)
        entry = self.start(run, earlier)
        # a backend that lost its run's files (a deleted TensorBoard folder) starts again empty
        fresh = entry.pop("fresh", False) or earlier is None
        self._held = EpisodeRanges() if fresh else EpisodeRanges.of_entry(earlier)
        if not fresh:
            self._held.add_all(self.holds())
        self._config_logged = not fresh
        # a film whose upload failed after its episode's row was committed: owed, though held
        # (kept in trackers.json, so that a resume or rlrec-sync sends it)
        self._films_owed: set[int] = set() if fresh else set(earlier.get(FILMS_OWED, []))
        pid = os.getpid() if self.runs_in == "process" else None
        self._entry = {k: v for k, v in entry.items() if k != "ended"} | {"pid": pid}
        self._entry |= {"episodes": self._held.ranges(), "logged": len(self._held)}
        self._entry = self._with_owed(self._entry)
        self._files.update_tracker(self.name, self._entry)

    def _committed(self, done: list[int], commit: dict[str, Any] | None) -> None:
        entry = self._entry | (commit or {})
        if done:
            self._held.add_all(done)
            entry |= {"episodes": self._held.ranges(), "logged": len(self._held)}
        entry = self._with_owed(entry)
        if entry != self._entry:
            self._entry = entry
            self._files.update_tracker(self.name, entry)

    def _with_owed(self, entry: dict[str, Any]) -> dict[str, Any]:
        """``entry`` listing the films still owed (no key when none is)."""
        entry = {k: v for k, v in entry.items() if k != FILMS_OWED}
        return entry | ({FILMS_OWED: sorted(self._films_owed)} if self._films_owed else {})

    def handle(self, items: list[tuple[str, Any]]) -> dict[str, Any]:
        """Hand ``items`` to the hooks in order, a run of consecutive episodes as one batch (an
        episode the tracker holds already is left out), commit, and count it in
        ``trackers.json``. Returns ``{}``, or ``{"failure": {"episode", "error"}}``: the items
        may be handed again (a retry), and what was committed is not logged twice."""
        rows: list[tuple[Any, ...]] = []
        samples: list[MemorySample] = []
        console: list[tuple[str, str]] = []
        done: list[int] = []
        at, batch, held, film = None, None, self._held, None
        try:
            for kind, item in items:
                if kind == "episode":
                    if item[0] not in held:
                        rows.append(item)
                        at = item[0]
                    continue
                if kind == "memory":
                    samples.append(MemorySample(*item))
                    continue
                if kind == "console":
                    console.append(item)
                    continue
                if rows:
                    batch = EpisodeBatch(rows)
                    self.log_episodes(batch)
                    done += batch.episodes
                    rows, batch = [], None
                if kind == "video" and (item[0] not in held or item[0] in self._films_owed):
                    at = film = item[0]
                    _await_file(item[1])
                    self.log_video(*item)
                    self._films_owed.discard(film)
                    film = None
                elif kind == "config" and not self._config_logged:
                    self.log_config(item)
                    self._config_logged = True
                elif kind == "abandon":  # given up on: ended as failed, if it can be reached
                    self.finish("failed")
                    self._committed([], {"ended": "failed", "pid": None})
                    return {}
            if rows:
                batch = EpisodeBatch(rows)
                self.log_episodes(batch)
                done += batch.episodes
                batch = None
            if samples:
                self.log_memory(samples)
            if console:
                self.log_console(console)
            ends = [item for kind, item in items if kind == "end"]
            # counted before the end's work: episodes logged stay counted if that fails
            self._committed(done, self.commit())
            if ends:
                summary = ends[0][0]
                self._committed([], self._end(*ends[0]))
                # finished: nothing to wait for, and nothing for rlrec-sync to end again
                self._committed([], {"pid": None, "ended": summary.get("status", "failed")})
            return {}
        except Exception as err:
            if film is not None:
                self._films_owed.add(film)
            if done or film is not None:
                with contextlib.suppress(Exception):
                    self._committed(done, self.commit() if done else None)
            error = f"{type(err).__name__}: {' '.join(str(err).split())}"
            return {"failure": {"episode": batch.current if batch else at, "error": error}}

    def _end(self, summary: dict[str, Any], curve: Any) -> dict[str, Any] | None:
        """The summary and the curve, a last commit, and the end of the tracker run."""
        from rlrec.plots import learning_curve_png

        returns, filmed, memory = curve
        png = learning_curve_png(returns, filmed, self.window, memory) if len(returns) else None
        self.log_summary(summary, png)
        commit = self.commit()
        self.finish(summary.get("status", "failed"))
        return commit


class Tracker(TrackerHooks, Sink):
    """A sink that logs to an experiment tracker from a background thread.

    A subclass names itself (``name``: its key under ``sinks``) and implements ``start`` (before
    the first episode) and the ``log_*`` hooks, ``commit`` and ``finish`` (in the order the run
    produced them), all where ``runs_in`` says: a background thread of the run's process, or a
    process of the tracker's own.
    """

    name: ClassVar[str] = "tracker"
    #: Where the hooks run: ``"thread"``, a thread of the run's process (their work holds the
    #: GIL, so it is taken out of the loop's time), or ``"process"``, a process of the tracker's
    #: own (the loop never waits for them, for the process's memory; the tracker is pickled).
    runs_in: str = "thread"
    #: Seconds between two batches; the last batch is logged when the run ends.
    interval_s: ClassVar[float] = 1.0
    #: How long the run waits at its end for the tracker to finish logging.
    close_timeout_s: ClassVar[float] = 300.0
    #: Episodes in the learning curve's moving average.
    window: ClassVar[int] = 100
    #: How long a failing tracker keeps being retried (with backoff) before the run goes on
    #: without it (``sinks.<name>.retry_s``); what it missed meanwhile is sent when it is back.
    retry_s: float = 60.0
    #: The longest wait between two retries.
    max_backoff_s: ClassVar[float] = 10.0

    #: Whether the tracker shows the run's console (W&B's Logs tab): what the run prints and
    #: logs while it goes is handed to ``log_console``.
    shows_console: ClassVar[bool] = False

    failure: dict[str, Any] | None = None  # in the run's process: why the tracker stopped

    # -- the sink (in the run's thread) -------------------------------------------------------
    def open(self, run: RunInfo) -> None:
        self._files = RunDir(run.run_dir)
        earlier = self._files.read_trackers().get(self.name)
        if earlier and earlier.get("pid"):  # a killed run's tracker may still finish a batch
            _wait_for_exit(earlier["pid"])
            earlier = self._files.read_trackers().get(self.name)
        self._remote = TrackerProcess(self) if self.runs_in == "process" else None
        try:
            self._remote.begin(run, earlier) if self._remote else self.begin(run, earlier)
        except ConfigError:
            raise
        except Exception as err:
            words = str(err) if isinstance(err, StartFailed) else f"{type(err).__name__}: {err}"
            raise ConfigError(
                f"sinks.{self.name}",
                f"could not start ({' '.join(words.split())})",
                f"check the sinks.{self.name} settings, or leave {self.name} out of sinks",
            ) from None
        entry = self._files.read_trackers().get(self.name, {})
        #: The episodes the tracker holds already (a resume, rlrec-sync): not sent again, but
        #: for the films it still lacks.
        self._held = EpisodeRanges.of_entry(entry)
        self._films_owed = set(entry.get(FILMS_OWED, []))
        url = entry.get("url")
        if url:  # where to look: the tracker's page of this run
            log.info("%s: %s", self.name, url)
        self._queue: deque[tuple[str, Any]] = deque()
        self._curve = CurveData()
        self._memory: tuple[list[int], list[int]] = ([], [])
        self._videos: set[str] = set()  # a grid video shared by several episodes is logged once
        self._wake = threading.Event()
        self._closing = False
        self._pending: list[tuple[str, Any]] = []  # handed over while it failed: retried
        self._down_since: float | None = None
        self._retry_at, self._backoff = 0.0, 1.0
        self._queue.append(("config", flatten(run.config)))  # left out if it has it already
        self._thread = threading.Thread(target=self._work, name=f"rlrec-{self.name}", daemon=True)
        self._thread.start()
        self._console = None
        if self.shows_console:
            from rlrec.console_capture import ConsoleCapture

            self._console = ConsoleCapture(self._heard)
            self._console.start()

    def _heard(self, stream: str, text: str) -> None:
        if self.failure is None:
            self._queue.append(("console", (stream, text)))

    def restore(self, records: list[EpisodeRecord]) -> None:
        """A resumed run's earlier episodes: the curve needs them, and a tracker added on resume
        logs them (one that was there already logged them: skipped)."""
        for record in records:
            self.write(record)

    def write(self, record: EpisodeRecord) -> None:
        self._curve.add(record)
        if self.failure is not None:
            return
        if record.episode in self._held:
            if record.episode in self._films_owed and record.video is not None:
                self._queue.append(("video", (record.episode, self._files.path / record.video)))
            return
        self._queue.append(
            (
                "episode",
                (
                    record.episode,
                    time.time(),
                    record.episode_return,
                    record.length,
                    record.duration_s,
                    record.success,
                ),
            )
        )
        if record.video is not None and record.video not in self._videos:
            self._videos.add(record.video)
            self._queue.append(("video", (record.episode, self._files.path / record.video)))

    def memory(self, sample: MemorySample) -> None:
        self._memory[0].append(sample.episode)  # for the curve's memory panel
        self._memory[1].append(sample.rss_bytes)
        if self.failure is None and sample.episode >= self._held.end():
            self._queue.append(("memory", tuple(sample)))

    def close(self, summary: dict[str, Any]) -> None:
        """Log what is left, the summary and the curve; wait for the tracker to finish."""
        if self._console is not None:  # the console sink's summary has been printed
            self._console.stop()
        memory = self._memory if len(self._memory[0]) >= 2 else None
        curve = (self._curve.returns, list(self._curve.filmed), memory)
        # given up on: ended in its backend as failed, if it can be reached by now
        end = ("abandon", None) if self.failure is not None else ("end", (summary, curve))
        self._queue.append(end)
        self._closing = True
        self._wake.set()
        self._thread.join(self.close_timeout_s)
        if self._thread.is_alive():
            self._fail({"episode": None, "error": f"still logging after {self.close_timeout_s} s"})
        if self._remote is not None:
            self._remote.stop()

    # -- the background thread: hands what has gathered to the hooks --------------------------
    def _work(self) -> None:
        while not self._closing:
            self._wake.wait(self.interval_s)
            self._drain()
        self._drain()
        while self._pending:  # down at the end: retried until it is back or its time is up
            time.sleep(max(0.0, self._retry_at - time.monotonic()))
            self._drain()

    def _drain(self) -> None:
        queue = self._queue
        items = self._pending + [queue.popleft() for _ in range(len(queue))]
        self._pending = []
        if not items:
            return
        if self.failure is not None:  # given up: only its ending is still tried
            items = [item for item in items if item[0] == "abandon"]
            if not items:
                return
        elif time.monotonic() < self._retry_at:
            self._pending = items  # down: wait for the next retry
            return
        gone = False
        try:
            outcome = self._remote.handle(items) if self._remote else self.handle(items)
        except (OSError, EOFError) as err:  # the tracker's process is gone: no retry
            gone = True
            first = next((item[0] for kind, item in items if kind == "episode"), None)
            outcome = {"failure": {"episode": first, "error": f"{type(err).__name__}: {err}"}}
        if "failure" in outcome:
            self._down(outcome["failure"], items, gone)
        elif self._down_since is not None and self.failure is None:  # not its ending alone
            log.warning(
                "the %s tracker is back after %.0f s; what it missed is sent",
                self.name,
                time.monotonic() - self._down_since,
            )
            self._down_since, self._backoff = None, 1.0

    def _down(self, failure: dict[str, Any], items: list[tuple[str, Any]], gone: bool) -> None:
        """A batch failed: keep it and retry with backoff, or give up once ``retry_s`` is up."""
        if self.failure is not None:
            return
        # where it failed; or, if that was no episode's (a memory sample, the end), the first
        # episode of what it was handed
        first = next((item[0] for kind, item in items if kind == "episode"), None)
        if failure["episode"] is None:
            failure = failure | {"episode": first}
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            if not gone and self.retry_s > 0:
                log.warning(
                    "the %s tracker failed at episode %s (%s); retrying for %s s",
                    self.name, failure["episode"], failure["error"], self.retry_s,
                )  # fmt: skip
        if gone or now - self._down_since >= self.retry_s:
            self._fail(failure | {"retried_s": round(now - self._down_since, 1)})
            return
        self._pending = items
        self._retry_at = now + self._backoff
        self._backoff = min(2 * self._backoff, self.max_backoff_s)

    def _fail(self, failure: dict[str, Any]) -> None:
        if self.failure is not None:
            return
        self.failure = failure
        episode = failure["episode"]
        where = f"at episode {episode}" if episode is not None else "at the end of the run"
        log.warning(
            "the %s tracker failed %s (%s); the run goes on without it (rlrec-sync %s sends "
            "it what it lacks)",
            self.name,
            where,
            failure["error"],
            self._files.path,
        )


__all__ = [
    "METRICS",
    "EpisodeBatch",
    "Tracker",
    "flatten",
    "require",
    "retry_delay",
    "start_failure",
    "summary_numbers",
]


def _await_file(path: Path, timeout_s: float = 60.0) -> None:
    """Wait for a film the encoder may still be finishing (a vector Recorder does not wait for
    it): it appears under its final name only when whole."""
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
