"""Streaming video: frames go to an encoder in a helper process while the episode runs.

The encoder is PyAV (H.264, AV1, GIF) or OpenCV (mp4v, VP9, VP8, MJPG), as ``video.codec`` says
(``rlrec.codecs``). Why a process and not a thread: encoding a 600x400 frame costs about as much
CPU as rendering it.
On a thread, OpenCV releases the GIL while it encodes, but every time it needs the GIL back the
stepping thread is made to stop and hand it over, a few times per frame. Measured on CartPole,
rendering slowed by 16% next to an encoder thread and by 6% next to an encoder process.

Frames travel through a ring of ``SLOTS`` shared-memory slots (one copy each), commands through the
process's stdin, and an acknowledgement comes back for every encoded frame: the episode never runs
more than ``SLOTS`` frames ahead of the encoder, so memory does not grow with episode length. A file
is written under a dot-prefixed temporary name and renamed only when complete; if this process
dies, the encoder sees its input end and deletes the partial file.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlrec.codecs import DEFAULT_PRESET, Codec
from rlrec.errors import FrameError
from rlrec.rundir import partial_path, writer_partial_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoSettings:
    """How filmed episodes are encoded (the top-level ``video`` node, resolved)."""

    codec: Codec
    fps: float
    name_prefix: str = "eval"
    preset: str = DEFAULT_PRESET
    crf: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fps", self.codec.stored_fps(self.fps))

    def encoder_spec(self) -> dict[str, Any]:
        """What the encoder process needs to write a video (JSON-able)."""
        return {"codec": self.codec.spec(self.preset, self.crf), "fps": self.fps}

    def file_name(self, episode: int) -> str:
        """``<prefix>-episode-<N>.<ext>``: the contract's name of a filmed episode's video."""
        return f"{self.name_prefix}-episode-{episode}.{self.codec.extension}"


#: Where an env declares no ``render_fps``.
DEFAULT_FPS = 30
#: The Atari 2600 draws 60 frames a second; one ALE step is ``frameskip`` of them.
ATARI_HZ = 60


def video_fps(
    fps: float | None, metadata: dict[str, Any], spec: Any = None, skip: float = 1.0
) -> float:
    """``video.fps``, or the rate at which a film lasts as long as its episode's simulated time:
    60 / frameskip for ALE envs (whose ``render_fps`` of 30 ignores the frame skip), else
    ``metadata["render_fps"]`` (MuJoCo derives it from its time step and frame skip), else 30;
    divided by ``skip``, the frames the wrappers skip (``frame_skip``).

    >>> import gymnasium as gym
    >>> video_fps(None, {"render_fps": 50}), video_fps(24, {"render_fps": 50})
    (50.0, 24.0)
    >>> video_fps(None, {"render_fps": 30}, gym.envs.registration.EnvSpec(
    ...     "ALE/Pong-v5", "ale_py.env:AtariEnv", kwargs={"frameskip": 4}))
    15.0
    >>> video_fps(None, {"render_fps": 30}, gym.envs.registration.EnvSpec(
    ...     "PongNoFrameskip-v4", "ale_py.env:AtariEnv", kwargs={"frameskip": 1}), skip=4)
    15.0
    """
    if fps:
        return float(fps)
    frames = atari_frameskip(spec)
    if frames is not None:
        return ATARI_HZ / frames / skip
    return float(metadata.get("render_fps") or DEFAULT_FPS) / skip


#: A wrapper's own attributes that declare how many steps of the env inside one of its steps
#: spans: Gymnasium's ``AtariPreprocessing.frame_skip`` and ``MaxAndSkipObservation._skip``,
#: Stable-Baselines3's ``MaxAndSkipEnv._skip``, and the usual names of hand-written ones.
SKIP_ATTRIBUTES = ("frame_skip", "_skip", "skip", "frameskip", "_frame_skip")


@dataclass(frozen=True)
class FrameSkip:
    """The steps of the base env that one step of a wrapped env spans (the product of the skips
    its wrappers declare), and the wrappers whose name says they skip but whose skip rlrec cannot
    read."""

    factor: float = 1.0
    unread: tuple[str, ...] = ()


def frame_skip(env: Any) -> FrameSkip:
    """The frame skips of the wrappers around ``env``'s base env (a vector env's: those of its
    first sub-environment, where this process holds it, as a sync vector env does).

    >>> env = gym.make("CartPole-v1")
    >>> frame_skip(gym.wrappers.MaxAndSkipObservation(env, skip=4)).factor
    4.0
    >>> frame_skip(env)
    FrameSkip(factor=1.0, unread=())
    """
    if isinstance(env, gym.vector.VectorEnv):
        sub_envs = getattr(env.unwrapped, "envs", None)
        if not sub_envs:
            return FrameSkip()
        env = sub_envs[0]
    factor, unread = 1.0, []
    while isinstance(env, gym.Wrapper):
        own = vars(env)  # the wrapper's own attributes, not the env's inside it
        skips = [own[name] for name in SKIP_ATTRIBUTES if _is_count(own.get(name))]
        if skips:
            factor *= int(skips[0])
        elif "skip" in type(env).__name__.lower():
            unread.append(type(env).__name__)
        env = env.env
    return FrameSkip(factor, tuple(unread))


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def atari_frameskip(spec: Any) -> float | None:
    """The console frames one step of an ALE env spans (the mean of a stochastic frame skip,
    drawn from ``range(low, high)``), or None for any other env."""
    entry = getattr(spec, "entry_point", None)
    if not isinstance(entry, str):
        entry = f"{getattr(entry, '__module__', '')}:{getattr(entry, '__qualname__', '')}"
    if entry != "ale_py.env:AtariEnv":
        return None
    skip = spec.kwargs.get("frameskip", 4)  # AtariEnv's default
    if isinstance(skip, (tuple, list)):
        return (skip[0] + skip[1] - 1) / 2
    return float(skip)


def declares_fps(metadata: dict[str, Any], spec: Any = None) -> bool:
    """Whether ``video_fps`` knows the env's real-time rate rather than falling back to 30."""
    return bool(metadata.get("render_fps")) or atari_frameskip(spec) is not None


def tile(frames: list[np.ndarray | None], grid: np.ndarray | None = None) -> np.ndarray:
    """One grid frame of the sub-environments' ``frames`` (``ceil(sqrt(n))`` columns; black where
    a frame is None), written into ``grid`` when given (the previous step's, reused).

    >>> tile([np.ones((2, 3, 3), np.uint8), None, np.ones((2, 3, 3), np.uint8)]).shape
    (4, 6, 3)
    """
    first = next(f for f in frames if f is not None)
    height, width, channels = first.shape
    cols = math.ceil(math.sqrt(len(frames)))
    if grid is None:
        rows = math.ceil(len(frames) / cols)
        grid = np.zeros((rows * height, cols * width, channels), first.dtype)
    for i, frame in enumerate(frames):
        row, col = divmod(i, cols)
        cell = grid[row * height : (row + 1) * height, col * width : (col + 1) * width]
        cell[...] = frame if frame is not None else 0
    return grid


#: Frames the episode may run ahead of the encoder; bounds memory whatever the episode length.
SLOTS = 16
#: ... but no more than fit in this many bytes (at least ``MIN_SLOTS``): a ring of 480x480 MuJoCo
#: frames holds 8, not 16 (the ring's pages count in both processes' memory).
RING_BYTES = 6 * 2**20
MIN_SLOTS = 8
#: Frame commands sent in one write: a pipe write that wakes the encoder costs about as much as
#: copying an Atari frame, so the episode pays it once per ``BATCH`` frames.
BATCH = 4


#: Every live Encoder of this process: a forked child lets go of each (``forget_after_fork``).
_ENCODERS: weakref.WeakSet[Encoder] = weakref.WeakSet()


def _forget_encoders_after_fork() -> None:
    for encoder in list(_ENCODERS):
        encoder.forget_after_fork()


os.register_at_fork(after_in_child=_forget_encoders_after_fork)


#: A ring's name: its owner's pid and start time (1/100 s), so that an owner's death can be told.
RING_PREFIX = "rlrec-frames-"
_rings_swept: set[str] = set()  # folders this process has cleared of dead owners' rings


def _ring_prefix() -> str:
    import psutil

    return f"{RING_PREFIX}{os.getpid()}-{round(psutil.Process().create_time() * 100)}-"


def _remove_orphan_rings(folder: str) -> None:
    """Remove the rings in ``folder`` whose owner is dead (a process group killed outright leaves
    its ring behind: its encoder died with it), once a process; a ring of a live process, or of
    an unknown owner, stays."""
    if folder in _rings_swept:
        return
    _rings_swept.add(folder)
    import psutil

    for path in Path(folder).glob(f"{RING_PREFIX}*"):
        pid, _, rest = path.name.removeprefix(RING_PREFIX).partition("-")
        started = rest.partition("-")[0]
        if not (pid.isdigit() and started.isdigit()):
            continue  # not named by its owner: not ours to judge
        try:
            alive = round(psutil.Process(int(pid)).create_time() * 100) == int(started)
        except psutil.Error:
            alive = False
        if not alive:  # gone, or its pid now names another process
            path.unlink(missing_ok=True)


class Encoder:
    """The helper process, started at the first filmed episode and shared by all of a run's videos.

    >>> import tempfile
    >>> from rlrec.codecs import CODECS
    >>> folder = Path(tempfile.mkdtemp())
    >>> with Encoder() as encoder:
    ...     video = VideoSettings(CODECS["h264"], fps=50)
    ...     writer = encoder.open(folder / "demo-episode-0.mp4", video)
    ...     for _ in range(3):  # one add per frame: the reset frame, then one a step
    ...         writer.add(np.zeros((64, 96, 3), np.uint8))
    ...     writer.close().name  # complete under its final name from here on
    'demo-episode-0.mp4'
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._ring: np.memmap | None = None
        self._ring_path: str | None = None
        self._slots = SLOTS
        # The ring is the encoder's, not a video's: a video closed without waiting may still
        # have frames in it, so the next video goes on from the next slot.
        self._in_flight = 0  # frames sent and not yet acknowledged ("ok")
        self._next_slot = 0
        self._unsent: list[bytes] = []  # frame commands not yet written (BATCH)
        self._replies: io.BufferedReader | None = None
        self._owed = 0  # videos closed without waiting whose "closed" is still to come
        self._sent = False  # whether it was ever given work
        self._folder: Path | None = None  # where the last film opened goes
        _ENCODERS.add(self)

    def start(self, codec: Codec | None = None) -> None:
        """Start the process now: it imports its libraries (OpenCV, and PyAV for ``codec``s
        that need it) while the caller goes on (0.2-0.3 s)."""
        if self._proc is None or self._proc.poll() is not None:
            preload = [codec.backend] if codec is not None else []
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "rlrec._encode_worker", *preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
            )
            # buffered: the acknowledgements of several frames arrive in one read
            self._replies = io.BufferedReader(self._proc.stdout)

    def open(self, path: Path, video: VideoSettings, source: str | None = None) -> VideoWriter:
        """A writer for one video at ``path`` (its frames fix the size at the first ``add``);
        ``source`` names where its frames come from in errors (the env and the episode)."""
        self.start()
        self._folder = path.parent  # where a full disk would have killed it
        return VideoWriter(self, path, video, source)

    def join(
        self,
        path: Path,
        video: VideoSettings,
        parts: list[tuple[Path, str]],
        width: int | None = None,
    ) -> Path:
        """String finished videos together into ``path`` (a timelapse, or one video in another
        codec), each frame captioned with its part's text (none if empty) and, with ``width``,
        scaled down to at most that width; the file appears under its final name once complete."""
        self.start()
        self.settle()
        spec = {
            "tmp": str(partial_path(path)),
            "final": str(path),
            **video.encoder_spec(),
            "parts": [[str(p), caption] for p, caption in parts],
            "width": width,
        }
        self.send(f"join {json.dumps(spec)}")
        error = None
        while (reply := self.receive()) != "closed":
            error = error or (reply[6:] if reply.startswith("error ") else None)
        if error is not None:
            raise OSError(f"{path.name}: {error}")
        return path

    def ring(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, str]:
        """The shared-memory slots for frames of ``shape``, reallocated when the shape changes."""
        ring = self._ring
        if ring is None or ring.shape[1:] != shape or ring.dtype != dtype:
            self.settle()  # no frame of an earlier video is still read from the old ring
            self._drop_ring()
            self._in_flight, self._next_slot = 0, 0
            folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
            _remove_orphan_rings(folder)
            fd, self._ring_path = tempfile.mkstemp(prefix=_ring_prefix(), dir=folder)
            os.close(fd)
            frame_bytes = max(1, math.prod(shape) * np.dtype(dtype).itemsize)
            slots = max(MIN_SLOTS, min(SLOTS, RING_BYTES // frame_bytes))
            ring = np.memmap(self._ring_path, dtype=dtype, mode="w+", shape=(slots, *shape))
            self._ring, self._slots = ring, slots
        return ring.view(np.ndarray), self._ring_path  # a memmap's slices cost 3 us each

    def send(self, line: str) -> None:
        """Write a command, after the frame commands still waiting for their batch."""
        self._write([*self._unsent, line.encode() + b"\n"])

    def send_frame(self, slot: int) -> None:
        """The frame in ``slot`` is ready: its command goes out with the next ``BATCH``."""
        self._unsent.append(b"frame %d\n" % slot)
        if len(self._unsent) >= BATCH:
            self._write(self._unsent)

    def _write(self, lines: list[bytes]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        data = b"".join(lines)
        self._unsent = []
        self._sent = True
        try:
            self._proc.stdin.write(data)
        except BrokenPipeError:
            raise self._died() from None

    def receive(self) -> str:
        assert self._replies is not None
        if self._unsent:  # the reply may be to a frame not sent yet
            self._write(self._unsent)
        line = self._replies.readline()
        if not line:
            raise self._died()
        return line.decode().rstrip("\n")

    def _died(self) -> OSError:
        """The encoder process ended without a word: FFmpeg may crash rather than report a
        disk that filled up under it, so a full disk is named as the cause."""
        import errno
        import shutil

        folder = self._folder
        try:
            full = folder is not None and shutil.disk_usage(folder).free < 64 * 1024
        except OSError:
            full = False
        if full:
            words = f"No space left on device (the video encoder died writing to {folder})"
            return OSError(errno.ENOSPC, words)
        return OSError("the video encoder process exited unexpectedly")

    def claim_slot(self, video: str) -> int:
        """A free ring slot for the next frame; waits only while every slot is in flight."""
        while self._in_flight == self._slots:
            reply = self._reply()
            if reply.startswith("error "):
                raise OSError(f"video {video}: {reply[6:]}")
        slot = self._next_slot
        self._next_slot = (slot + 1) % self._slots
        self._in_flight += 1
        return slot

    def drain(self, final: str, video: str, raise_errors: bool = True) -> None:
        """Read the replies up to this video's ``final`` one ("closed", "aborted")."""
        error = None
        while (reply := self._reply()) != final:
            if reply.startswith("error ") and error is None:
                error = OSError(f"video {video}: {reply[6:]}")
        self._in_flight = 0  # every frame sent before the final reply is acknowledged
        if error is not None and raise_errors:
            raise error

    def owe(self) -> None:
        """A video was closed without waiting for its "closed"."""
        self._owed += 1

    def settle(self) -> None:
        """Wait until every video closed without waiting is finished (under its final name)."""
        while self._owed:
            self._reply()

    def _reply(self) -> str:
        """One reply, with its bookkeeping: an "ok" frees a slot; the replies of a video closed
        without waiting are taken here (its failure is logged: it is not under its name)."""
        reply = self.receive()
        if reply == "ok":
            self._in_flight -= 1
        elif self._owed and reply == "closed":
            self._owed -= 1
            return ""
        elif self._owed and reply.startswith("error "):
            log.warning("a finished video could not be written: %s", reply[6:])
            return ""
        return reply

    def shutdown(self) -> None:
        """Let the process finish and exit; free the shared memory."""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            if not self._sent:  # nothing to finish: not worth waiting for its imports to end
                self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc.stdout.close()
            self._proc = self._replies = None
        self._drop_ring()

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's process and ring without touching them.
        The process learns that its parent died from its input ending, which a child holding a
        copy of the pipe would put off for as long as the child lives."""
        for pipe in (self._proc.stdin, self._replies) if self._proc is not None else ():
            with contextlib.suppress(OSError):
                pipe.close()  # the child's copy: the parent's pipe stays open
        self._proc = self._replies = None
        self._ring, self._ring_path = None, None  # the parent's to remove
        self._in_flight, self._next_slot, self._unsent, self._owed = 0, 0, [], 0

    def _drop_ring(self) -> None:
        self._ring = None
        if self._ring_path is not None:
            Path(self._ring_path).unlink(missing_ok=True)
            self._ring_path = None

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class VideoWriter:
    """One video: ``add`` each frame, then ``close`` (or ``abort``)."""

    def __init__(
        self, encoder: Encoder, path: Path, video: VideoSettings, source: str | None = None
    ) -> None:
        self.path = path
        self.tmp_path = writer_partial_path(path)
        self.frames = 0
        self.source = source or path.name
        self._encoder, self._video = encoder, video
        self._ring: np.ndarray | None = None

    def add(self, frame: np.ndarray) -> None:
        """Hand one RGB frame to the encoder; waits only while it is ``SLOTS`` frames behind.
        A frame no film can hold is a ``FrameError`` (a ``ValueError``)."""
        if self._ring is None:
            problem = frame_problem(frame)
            if problem is not None:
                raise FrameError(self.source, problem)
            self._start(frame)
        elif getattr(frame, "shape", None) != self._ring.shape[1:]:
            problem = frame_problem(frame) or (
                f"render() returned {_described(frame)} after frames of shape "
                f"{self._ring.shape[1:]}; one film holds frames of one size"
            )
            raise FrameError(self.source, f"{problem} (frame {self.frames} of its film)")
        slot = self._encoder.claim_slot(self.path.name)
        np.copyto(self._ring[slot], frame, casting="unsafe")
        self._encoder.send_frame(slot)
        self.frames += 1

    def close(self, final: Path | None = None, wait: bool = True) -> Path:
        """Finish encoding, under ``final`` (a name known only now) or the name it was opened
        with, which is returned. ``wait``: the file is complete under that name when this
        returns; else the encoder finishes it while the caller goes on (``Encoder.settle``
        waits for it)."""
        if self._ring is None:
            raise ValueError(f"{self.path.name} has no frames")
        self._encoder.send("close" if final is None else f"close {final}")
        if wait:
            self._encoder.drain("closed", self.path.name)
        else:
            self._encoder.owe()
        return self.path if final is None else final

    def abort(self) -> None:
        """Drop the video: nothing appears under its final name and the partial file is deleted."""
        if self._ring is None:
            return
        try:
            with contextlib.suppress(OSError):
                self._encoder.send("abort")
                self._encoder.drain("aborted", self.path.name, raise_errors=False)
        finally:  # the encoder deletes it; one that died closing it (a full disk) could not
            self.tmp_path.unlink(missing_ok=True)

    def _start(self, frame: np.ndarray) -> None:
        self._ring, ring_path = self._encoder.ring(frame.shape, frame.dtype)
        spec = {
            "tmp": str(self.tmp_path),
            "final": str(self.path),
            **self._video.encoder_spec(),
            "shape": list(frame.shape),
            "dtype": frame.dtype.str,
            "shm": ring_path,
            "slots": len(self._ring),
        }
        self._encoder.send(f"open {json.dumps(spec)}")


def frame_problem(frame: Any) -> str | None:
    """What keeps ``frame`` out of a film (None if nothing): films hold grey, RGB or RGBA images
    of at least 2x2 pixels (4:2:0 codecs store colour per 2x2 block).

    >>> frame_problem(np.zeros((210, 160, 3), np.uint8)) is None
    True
    >>> frame_problem(np.zeros((1, 1, 3), np.uint8))
    'render() returned a frame of shape (1, 1, 3); a film needs at least 2x2 pixels'
    """
    if not isinstance(frame, np.ndarray) or not np.issubdtype(frame.dtype, np.number):
        return f"render() returned {_described(frame)}, not an image"
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4))):
        return (
            f"render() returned {_described(frame)}, not an image (height, width) or "
            "(height, width, channels) with 1, 3 or 4 channels"
        )
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        return f"render() returned {_described(frame)}; a film needs at least 2x2 pixels"
    return None


def _described(frame: Any) -> str:
    if frame is None:
        return "None"
    if isinstance(frame, np.ndarray):
        return f"a frame of shape {frame.shape}"
    return f"a {type(frame).__name__}"
