"""The run directory and the sweep directory: every file name, the atomic write, the readers.

This module is the only place that names a file of a run or a sweep; everything else asks a
``RunDir`` or a ``SweepDir`` for a path. A file appears under its final name only when it is whole:
it is written under a dot-prefixed temporary name (``atomic_path``) and renamed.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from rlrec.errors import ConfigError

#: Hydra's record of a run (``.hydra-resume-N`` beside it for each resume), and what a sweep's
#: jobs are found by.
HYDRA_DIR = ".hydra"
CONFIG_FILE = "config.yaml"
OVERRIDES_FILE = "overrides.yaml"
HYDRA_FILE = "hydra.yaml"


def hydra_record_dir(resume: int = 0) -> str:
    """The folder of Hydra's record: ``.hydra``, or ``.hydra-resume-<K>`` for the K-th resume."""
    return HYDRA_DIR if resume == 0 else f"{HYDRA_DIR}-resume-{resume}"


def write_hydra_record(folder: Path, config: Any, overrides: Any, hydra: Any) -> None:
    """The record the CLI's Hydra leaves (``rlrec.run`` writes the same): the task's config, its
    overrides, Hydra's own node."""
    from omegaconf import OmegaConf

    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, folder / CONFIG_FILE)
    OmegaConf.save(overrides, folder / OVERRIDES_FILE)
    OmegaConf.save(OmegaConf.create({"hydra": hydra}), folder / HYDRA_FILE)


def partial_path(path: Path) -> Path:
    """The temporary name a file is written under: dot-prefixed, so that no final-name pattern
    (``*.parquet``, ``<prefix>-episode-*.mp4``) ever matches it."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


_writers = itertools.count()


def writer_partial_path(path: Path) -> Path:
    """A temporary name of this writer's own for ``path``: several writers may film to one final
    name (SB3's sub-environments, each with a ``RecordVideo`` on one folder, number their episodes
    alike); each writes its own file, and the last to finish replaces the final name whole."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{next(_writers)}.partial{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; rename it to ``path`` once the block
    ends without an error, delete it otherwise. Readers see the whole file or none."""
    tmp = partial_path(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


_TRACKERS_LOCK = threading.Lock()

#: Bytes of disk a run keeps for its summary (a large one, with its temporary copy, is ~3 KB).
SUMMARY_ROOM = 64 * 1024

#: A part file of a table that a run writes as it goes (``episodes/``, ``_actions/``).
PART_GLOB = "part-*.parquet"


def part_file(folder: Path, index: int) -> Path:
    """The ``index``-th part file in ``folder``."""
    return folder / f"part-{index:05d}.parquet"


def part_files(folder: Path) -> list[Path]:
    """The whole part files in ``folder``, in order (temporary files never match)."""
    return sorted(folder.glob(PART_GLOB)) if folder.is_dir() else []


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _write_in_room(room: Path, path: Path, data: bytes) -> bool:
    """Write ``data`` over the bytes of ``room`` (a file kept for it) and rename it to ``path``;
    False, with the room gone, if there is no room or it is too small. Freeing the room first
    would let another writer on a full disk (the encoder, still filming) take the space back."""
    try:
        if room.stat().st_size >= len(data):
            with room.open("r+b") as file:
                file.write(data)
                file.truncate()
            os.replace(room, path)
            return True
    except OSError:
        pass
    room.unlink(missing_ok=True)
    return False


class Busy(Exception):
    """Another process writes the run directory (its pid, when it said)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid

    @property
    def who(self) -> str:
        """The writer, in words."""
        if self.pid == os.getpid():
            return "another writer in this process"
        return f"another process (pid {self.pid})" if self.pid else "another process"


class WriterLock:
    """The one writer of a folder: a POSIX (``fcntl``) lock on its ``.rlrec.lock``, held until
    ``release`` or the end of the process, however it ends (the OS lets go of a killed process's
    locks; they also hold on the network file systems clusters share, where ``lockd`` runs).

    POSIX locks do not exclude one another within a process, so the folders this process holds
    are also kept here: a second writer in the same process is refused too.
    """

    NAME = ".rlrec.lock"
    _held: ClassVar[dict[Path, WriterLock]] = {}

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd: int | None = None

    @classmethod
    def take(cls, folder: Path) -> WriterLock:
        """Hold ``folder`` for this process; ``Busy`` if another writer (here or elsewhere) holds
        it."""
        key = folder.resolve()
        if key in cls._held:
            raise Busy(os.getpid())
        lock = cls(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / cls.NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                raise Busy(int(holder) if holder.isdigit() else None) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # the writer before removed it as it ended: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        lock._fd = fd
        cls._held[key] = lock
        return lock

    @classmethod
    def busy(cls, folder: Path) -> bool:
        """Whether a live process (another, or this one) writes ``folder`` now."""
        if cls.holds(folder):
            return True
        try:
            fd = os.open(folder / cls.NAME, os.O_RDWR)
        except OSError:
            return False  # no lock file: nobody took it, or its writer ended
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing lets go of the lock just taken
        return False

    @classmethod
    def holds(cls, folder: Path) -> bool:
        """Whether this process holds ``folder``."""
        return folder.resolve() in cls._held

    def release(self) -> None:
        """Let the folder go: the lock file goes (a killed writer's stays, unlocked), then
        closing it releases the lock."""
        if self._fd is not None:
            self._held.pop(self.folder.resolve(), None)
            (self.folder / self.NAME).unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def hold_run_dir(folder: Path, key: str, new: bool) -> WriterLock:
    """Hold ``folder`` as the one writer of its run (until the process ends or the lock is
    released); a ``ConfigError`` naming ``key`` if another writer holds it, or if ``new`` and
    episodes were recorded there already (their rows and films would mix with this run's)."""
    try:
        lock = WriterLock.take(folder)
    except Busy as busy:
        raise ConfigError(
            key,
            f"{folder} is being written by {busy.who}; one run directory has one writer",
            "wait for that run to end, or give this one its own folder (leave hydra.run.dir "
            "unset for a new one)",
        ) from None
    run = RunDir(folder)
    if new and run.holds_records():
        lock.release()
        summary = run.read_summary()
        held = (
            f"a {summary.get('status', 'recorded')} run of {summary.get('n', '?')} episodes"
            if summary
            else "a stopped run"
        )
        raise ConfigError(
            key,
            f"{folder} holds {held} already",
            f"resume it with resume={folder}, or give this run a new folder (leave "
            "hydra.run.dir unset for outputs/<date>/<time>)",
        )
    return lock


def stopped_status(run: RunDir) -> str:
    """The status of a run without ``summary.json``: "running" while a process writes it, else
    "killed" (it ended without a word: SIGKILL, the out-of-memory killer, a lost node)."""
    return "running" if WriterLock.busy(run.path) else "killed"


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float in it replaced by None."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def hold_sweep_dir(folder: Path, key: str, overrides: list[str]) -> WriterLock:
    """Hold ``folder`` as the one writer of its sweep; a ``ConfigError`` naming ``key`` if another
    process writes it, or if it holds a sweep already and ``overrides`` do not run shards again
    (the one relaunch there is: a sharded run's missing shards, as ``rlrec-merge`` says)."""
    try:
        lock = WriterLock.take(folder)
    except Busy as busy:
        raise ConfigError(
            key,
            f"{folder} is being written by {busy.who} (a sweep, or rlrec-merge)",
            "wait for it to end, or sweep into a new folder (leave hydra.sweep.dir unset)",
        ) from None
    jobs = SweepDir(folder).job_numbers()
    shards = any(o.lstrip("+").startswith("shard=") for o in overrides)
    if jobs and not shards:
        lock.release()
        raise ConfigError(
            key,
            f"{folder} holds a sweep already (jobs {min(jobs)}-{max(jobs)}); a second sweep "
            "there would mix with its summary",
            "sweep into a new folder (leave hydra.sweep.dir unset for outputs/multirun/<date>/"
            "<time>); only a sharded run's missing shards are run again into their sweep",
        )
    return lock


class RunDir:
    """One run's folder (see the README's "The run directory")."""

    VIDEOS = "videos"
    EPISODES = "episodes.parquet"
    EPISODE_PARTS = "episodes"
    ACTIONS = "_actions.parquet"
    ACTION_PARTS = "_actions"
    SUMMARY = "summary.json"
    POLICY_CHECKPOINT = "policy.checkpoint"
    CHECKPOINTS = "_checkpoints"
    LEARNING_CURVE = "learning_curve.png"
    TIMELAPSE = "timelapse"
    REPLAY_PREFIX = "replay"
    REPORT = "report.html"
    MEMORY = "_memory.parquet"
    TRACKERS = "trackers.json"
    TENSORBOARD = "tensorboard"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- paths --------------------------------------------------------------------------------
    @property
    def videos(self) -> Path:
        return self.path / self.VIDEOS

    @property
    def episodes(self) -> Path:
        return self.path / self.EPISODES

    @property
    def episode_parts(self) -> Path:
        return self.path / self.EPISODE_PARTS

    @property
    def actions(self) -> Path:
        return self.path / self.ACTIONS

    @property
    def action_parts(self) -> Path:
        return self.path / self.ACTION_PARTS

    @property
    def summary_file(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def policy_checkpoint(self) -> Path:
        return self.path / self.POLICY_CHECKPOINT

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def learning_curve(self) -> Path:
        return self.path / self.LEARNING_CURVE

    @property
    def memory(self) -> Path:
        """``_memory.parquet``: the run's memory over time (the underscore keeps folder-level
        readers of ``*.parquet`` off it)."""
        return self.path / self.MEMORY

    @property
    def trackers(self) -> Path:
        return self.path / self.TRACKERS

    @property
    def tensorboard(self) -> Path:
        """Where the tensorboard sink writes by default."""
        return self.path / self.TENSORBOARD

    @property
    def hydra_config(self) -> Path:
        return self.path / HYDRA_DIR / CONFIG_FILE

    @property
    def hydra_overrides(self) -> Path:
        return self.path / HYDRA_DIR / OVERRIDES_FILE

    def video(self, file_name: str) -> Path:
        """``videos/<file_name>``."""
        return self.videos / file_name

    def holds_records(self) -> bool:
        """Whether episodes were recorded here (complete, stopped or killed): a new run must not
        write into it."""
        return (
            self.episodes.exists()
            or bool(part_files(self.episode_parts))
            or self.summary_file.exists()
        )

    def pending_video(self, slot: int, extension: str) -> Path:
        """Where a film whose episode index is not known yet is written (a vector Recorder
        numbers episodes as they end): dot-prefixed, renamed to its episode's name when kept."""
        return self.videos / f".pending-{slot}.{extension}"

    def replay_video(self, episode: int, extension: str) -> Path:
        """Where ``rlrec-replay`` films an episode by default."""
        return self.videos / f"{self.REPLAY_PREFIX}-episode-{episode}.{extension}"

    def timelapse(self, extension: str) -> Path:
        return self.path / f"{self.TIMELAPSE}.{extension}"

    def checkpoint(self, next_episode: int) -> Path:
        """``_checkpoints/episode-<N>/policy.checkpoint``: a learning policy's state before
        episode N."""
        return self.checkpoints / f"episode-{next_episode}" / self.POLICY_CHECKPOINT

    def write_checkpoint(self, next_episode: int, save: Callable[[Path], None]) -> None:
        """Have ``save(path)`` write the checkpoint before ``next_episode`` into a staging folder,
        put it in place whole, then remove the older ones."""
        final = self.checkpoint(next_episode).parent
        staging = partial_path(final)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save(staging / self.POLICY_CHECKPOINT)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for older in self.checkpoints.glob("episode-*"):
            if older != final:
                shutil.rmtree(older, ignore_errors=True)

    def checkpoints_up_to(self, episode: int) -> list[tuple[int, Path]]:
        """(N, checkpoint file) of the whole checkpoints taken before an episode <= ``episode``,
        oldest first."""
        found = []
        for folder in self.checkpoints.glob("episode-*"):
            n = folder.name.removeprefix("episode-")
            if n.isdigit() and int(n) <= episode:
                found.append((int(n), folder / self.POLICY_CHECKPOINT))
        return sorted(found)

    def relative(self, path: Path) -> str:
        """``path`` relative to the run directory, as the ``video`` column holds it."""
        return path.relative_to(self.path).as_posix()

    # -- what a run left ----------------------------------------------------------------------
    def read_episodes(self, columns: list[str] | None = None) -> Any:
        """``episodes.parquet`` or, if the run stopped before merging, its whole parts, as an
        Arrow table (of ``columns`` only, if given); None if neither exists."""
        return _read_table(self.episodes, self.episode_parts, columns)

    def read_actions(self) -> Any:
        """``_actions.parquet`` (or its parts) as an Arrow table; None if the run kept none."""
        return _read_table(self.actions, self.action_parts)

    def episode_videos(self) -> list[tuple[int, Path]]:
        """(episode, path) of every per-episode video the run filmed (not the replays made after
        it), under its final name."""
        found = []
        for path in self.videos.glob("*-episode-*.*") if self.videos.is_dir() else ():
            index = path.stem.rsplit("-", 1)[-1]
            if path.name.startswith((".", f"{self.REPLAY_PREFIX}-")) or not index.isdigit():
                continue
            found.append((int(index), path))
        return sorted(found)

    def timelapses(self) -> list[Path]:
        """The run's timelapse, whatever its codec's extension."""
        return sorted(self.path.glob(f"{self.TIMELAPSE}.*"))

    def replace_parts(self, folder: Path, table: Any) -> None:
        """Make ``table`` the only part of ``folder`` (and drop the merged file it would become),
        as one step: a reader sees the old parts or the new one."""
        import pyarrow.parquet as pq

        staging = partial_path(folder)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        pq.write_table(table, part_file(staging, 0))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)

    def read_memory(self) -> Any:
        """``_memory.parquet`` as an Arrow table; None if the run has none."""
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.memory).read() if self.memory.exists() else None

    def read_trackers(self) -> dict[str, Any]:
        """``trackers.json``: per tracker sink, its run id and how many episodes it logged."""
        path = self.trackers
        return json.loads(path.read_text()) if path.exists() else {}

    def update_tracker(self, name: str, entry: dict[str, Any]) -> None:
        """Set tracker ``name``'s entry in ``trackers.json``; several trackers' threads may call
        this at once, so the read and the write happen under one lock."""
        with _TRACKERS_LOCK:
            write_text(self.trackers, json.dumps(self.read_trackers() | {name: entry}, indent=2))

    def read_summary(self) -> dict[str, Any]:
        """``summary.json`` as a dict; empty if the run never wrote one."""
        path = self.summary_file
        return json.loads(path.read_text()) if path.exists() else {}

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` whole, as strict JSON (a NaN or an infinity is null), in the
        room kept for it (``keep_room_for_summary``) if the disk filled up meanwhile."""
        data = (json.dumps(_finite(summary), indent=2, allow_nan=False) + "\n").encode()
        if not _write_in_room(self.summary_room, self.summary_file, data):
            with atomic_path(self.summary_file) as tmp:
                tmp.write_bytes(data)

    def keep_room_for_summary(self) -> None:
        """Hold ``SUMMARY_ROOM`` bytes of the disk until the summary is written: a run that
        fills its disk still ends with a summary that says so."""
        with contextlib.suppress(OSError):
            self.summary_room.write_bytes(bytes(SUMMARY_ROOM))

    @property
    def summary_room(self) -> Path:
        return self.path / ".summary-room"

    def update_summary(self, **fields: Any) -> None:
        """Set ``fields`` in ``summary.json``, creating it if the run failed before it had one."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_summary(self.read_summary() | fields)

    def is_run(self) -> bool:
        """Whether a run was recorded here: by Hydra (``run.py``, ``rlrec.run``), or by a
        ``Recorder`` (its config is in the episodes' Parquet metadata)."""
        return self.hydra_config.exists() or self.read_config() is not None

    def read_config(self) -> dict[str, Any] | None:
        """The run's resolved config: Hydra's record, else the one in the metadata of
        ``episodes.parquet`` (or of a part, for a stopped run); None if neither exists."""
        if self.hydra_config.exists():
            return read_yaml(self.hydra_config)
        files = [self.episodes] if self.episodes.exists() else part_files(self.episode_parts)
        if not files:
            return None
        import pyarrow.parquet as pq

        from rlrec.records import CONFIG_METADATA_KEY

        metadata = pq.read_schema(files[0]).metadata or {}
        config = metadata.get(CONFIG_METADATA_KEY.encode())
        return json.loads(config) if config is not None else None


class SweepDir:
    """A sweep's root folder: one run directory per job, and the summaries across them."""

    SUMMARY = "summary.parquet"
    GROUPS = "groups.parquet"
    MARKDOWN = "summary.md"
    CURVES = "learning_curves.png"
    REPORT = "report.html"
    MULTIRUN = "multirun.yaml"  # Hydra's record of the sweep, written before its jobs start
    TRACKERS = RunDir.TRACKERS  # the sweep's own tracker runs (an MLflow parent run)

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @staticmethod
    def of(run: RunDir) -> SweepDir | None:
        """The sweep ``run`` is a job of; None for a single run."""
        parent = run.path.parent
        return SweepDir(parent) if (parent / SweepDir.MULTIRUN).exists() else None

    @property
    def multirun(self) -> Path:
        return self.path / self.MULTIRUN

    def read_trackers(self) -> dict[str, Any]:
        return RunDir(self.path).read_trackers()

    def update_tracker(self, name: str, entry: dict[str, Any]) -> None:
        RunDir(self.path).update_tracker(name, entry)

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def groups(self) -> Path:
        return self.path / self.GROUPS

    @property
    def markdown(self) -> Path:
        return self.path / self.MARKDOWN

    @property
    def curves(self) -> Path:
        return self.path / self.CURVES

    def runs(self) -> list[RunDir]:
        """The jobs' run directories (folders with Hydra's overrides record)."""
        return [RunDir(p.parent.parent) for p in self.path.glob(f"*/{HYDRA_DIR}/{OVERRIDES_FILE}")]

    def job_numbers(self) -> list[int]:
        """The job numbers its jobs took (``summary.json``'s ``job``, else the folder's name)."""
        numbers = []
        for run in self.runs():
            job = run.read_summary().get("job")
            if job is None:
                job = run.path.name.partition("-")[0]
            with contextlib.suppress(ValueError):
                numbers.append(int(job))
        return numbers

    @staticmethod
    def under(path: Path) -> list[SweepDir]:
        """Every sweep below ``path`` (searched recursively)."""
        found = {p.parent.parent.parent for p in path.glob(f"**/{HYDRA_DIR}/{OVERRIDES_FILE}")}
        return [SweepDir(p) for p in sorted(found)]


def parse_overrides(overrides_file: Path) -> dict[str, Any]:
    """A job's task overrides as ``{key: typed value}``, parsed as Hydra parses them."""
    return dict(_parse_override(str(line)) for line in read_yaml(overrides_file) or [])


@functools.lru_cache(maxsize=4096)
def _parse_override(line: str) -> tuple[str, Any]:
    # once per distinct line: a sweep's jobs share most of theirs (Hydra's parser: 3 ms a line)
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([line])[0]
    return parsed.key_or_group, _plain(parsed.value())


def read_yaml(path: Path) -> Any:
    """A YAML file's content, read by libyaml where PyYAML has it (ten times faster than its
    pure-Python loader: a sweep's summary reads a few files a job)."""
    import yaml

    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _plain(value: Any) -> Any:
    """Hydra override values to what a Parquet column can hold (lists and dicts as JSON)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return value


def write_parquet(table: Any, path: Path) -> None:
    """Write an Arrow table to ``path`` whole."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def numbers(column: Any) -> Any:
    """An Arrow column of numbers as a NumPy array. Not ``to_numpy()``: where pandas is installed,
    pyarrow imports it there (about 45 MiB, the largest cost of a run's end)."""
    import numpy as np

    return np.asarray(column.to_pylist())


def _read_table(final: Path, parts: Path, columns: list[str] | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def read(path: Path) -> Any:
        # ParquetFile, not read_table: that imports pyarrow.dataset (0.1-0.5 s)
        try:
            return pq.ParquetFile(path).read(columns=columns)
        except (OSError, pa.ArrowException) as err:  # Arrow's own words do not name the file
            raise DamagedFile(path, err) from err

    if final.exists():
        return read(final)
    files = part_files(parts)
    if not files:
        return None
    return pa.concat_tables([read(f) for f in files])


class DamagedFile(OSError):
    """A run's file that cannot be read: its path, and what the reader said."""

    def __init__(self, path: Path, err: BaseException) -> None:
        super().__init__(f"cannot read {path}: {' '.join(str(err).split()) or type(err).__name__}")
        self.path = path
