"""``RecordVideo``: Gymnasium's wrapper of the same name, streaming.

Gymnasium's keeps every frame of a recording in a list and hands the list to moviepy when the
recording stops (0.72 MB a CartPole frame: 3.6 GB for a 5,000-step episode). This one hands each
frame to rlrec's encoder process as it is rendered (``rlrec.video``): memory stays flat, nothing
needs moviepy, the default codec (H.264, ``yuv420p``) plays in browsers, and a video is written
under a temporary name and renamed only once whole, so a crash leaves no half-written file.
The constructor, the file names, the triggers, the attributes and the errors are Gymnasium's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import logger

from rlrec import mujoco_envs
from rlrec.codecs import DEFAULT_PRESET, codec_for
from rlrec.schedule import capped_cubic
from rlrec.video import Encoder, VideoSettings, VideoWriter, frame_skip, video_fps


class StreamedRecording:
    """What the plain and the vector ``RecordVideo`` share: the triggers and settings they are
    given, the encoder process, and the recording under way (its frames streamed, its file
    renamed into place when it stops)."""

    def _setup(
        self,
        env: Any,
        video_folder: str,
        episode_trigger: Callable[[int], bool] | None,
        step_trigger: Callable[[int], bool] | None,
        video_length: int,
        name_prefix: str,
        fps: float | None,
        disable_logger: bool,
        gc_trigger: Callable[[int], bool] | None,
        codec: str,
        preset: str,
        crf: int | None,
    ) -> None:
        if env.render_mode in {None, "human", "ansi"}:
            raise ValueError(
                f"Render mode is {env.render_mode}, which is incompatible with RecordVideo: "
                "initialize your environment with a render_mode that returns an image, "
                "such as rgb_array."
            )
        # pygame-based envs draw off-screen; without a display SDL only complains (the user's wins)
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        mujoco_envs.prepare_gl_for(env)  # a headless OpenGL backend, before the first frame
        if episode_trigger is None and step_trigger is None:
            episode_trigger = capped_cubic
        self.episode_trigger = episode_trigger
        self.step_trigger = step_trigger
        self.disable_logger = disable_logger
        self.gc_trigger = gc_trigger
        self.video_folder = os.path.abspath(video_folder)
        if os.path.isdir(self.video_folder):
            logger.warn(
                f"Overwriting existing videos at {self.video_folder} folder (try specifying a "
                "different `video_folder` for the `RecordVideo` wrapper if this is not desired)"
            )
        os.makedirs(self.video_folder, exist_ok=True)
        chosen = codec_for(codec)
        if fps is None:  # the env's real-time rate, frame-skipping wrappers included
            fps = video_fps(None, env.metadata, env.spec, frame_skip(env).factor)
        self.frames_per_sec = fps
        self.name_prefix = name_prefix
        self.video_length: float = video_length if video_length != 0 else float("inf")
        self._settings = VideoSettings(chosen, self.frames_per_sec, name_prefix, preset, crf)
        self.recording = False
        self.step_id = -1
        self.episode_id = -1
        self._video_name: str | None = None
        self._writer: VideoWriter | None = None
        spec = getattr(env, "spec", None)
        self._env_name = f"env {spec.id if spec is not None else type(env.unwrapped).__name__}"
        self._encoder = Encoder()
        self._encoder.start(chosen)  # imports its codec while the loop starts

    @property
    def recorded_frames_count(self) -> int:
        """Frames in the recording under way (0 when not recording)."""
        return self._writer.frames if self._writer is not None else 0

    def start_recording(self, video_name: str) -> None:
        """Start recording into ``<video_name>.<ext>``, ending the recording under way first."""
        if self.recording:
            self.stop_recording()
        self.recording = True
        self._video_name = video_name
        path = os.path.join(self.video_folder, f"{video_name}.{self._settings.codec.extension}")
        source = f"{self._env_name}, {video_name}"  # in errors: which env, which film
        self._writer = self._encoder.open(Path(path), self._settings, source)

    def stop_recording(self) -> None:
        """End the recording: the file is whole under its final name when this returns."""
        assert self.recording, "stop_recording was called, but no recording was started"
        writer, self._writer = self._writer, None
        self.recording = False
        self._video_name = None
        if writer is None or writer.frames == 0:
            logger.warn("Ignored saving a video as there were zero frames to save.")
            return
        if writer.path.exists():  # e.g. another sub-environment's wrapper, numbering alike
            logger.warn(f"Overwriting {writer.path}: another recording had the same name")
        writer.close()

    def _add(self, frame: np.ndarray) -> None:
        try:
            self._writer.add(frame)
        except BaseException:  # e.g. Ctrl-C: never a half-written file under the final name
            self._writer.abort()
            self._writer, self.recording, self._video_name = None, False, None
            raise

    def _end_recording(self) -> None:
        """At ``close``: finish the recording under way, stop the encoder."""
        if self.recording:
            self.stop_recording()
        self._encoder.shutdown()

    def __del__(self) -> None:
        # A wrapper dropped without close(): as Gymnasium's, the recording under way is lost
        # (with its warning); its encoder process ends now, not when the interpreter does.
        # (A half-built wrapper, whose __init__ raised, has none of these attributes.)
        writer, encoder = getattr(self, "_writer", None), getattr(self, "_encoder", None)
        if writer is not None and writer.frames:
            logger.warn("Unable to save last video! Did you call close()?")
        try:
            if writer is not None:
                writer.abort()
            if encoder is not None:
                encoder.shutdown()
        except Exception:  # at interpreter exit the modules it needs may be gone already
            pass


class RecordVideo(StreamedRecording, gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Films episodes (``episode_trigger``) or stretches of steps (``step_trigger``) of ``env``
    into ``video_folder/<name_prefix>-episode-<N>.mp4`` or ``-step-<N>.mp4``.

    Without a trigger, episodes 0, 1, 8, 27, ..., 729, 1000, 2000, ... are filmed (Gymnasium's
    capped cubic schedule). A recording ends at the next ``reset`` (``video_length=0``) or after
    ``video_length`` frames past its first, across episodes; the file is complete under its final
    name when the ``reset``, ``step`` or ``close`` that ends it returns.

    Beyond Gymnasium's arguments: ``codec`` (``h264``, ``av1``, ``gif``, ``mp4v``, ``vp9``,
    ``vp8``, ``mjpg``; the extension follows it), ``preset`` and ``crf`` (H.264 speed and
    quality). ``disable_logger`` and ``gc_trigger`` are accepted for compatibility: there is no
    moviepy logger, and no list of frames for the garbage collector to free.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> env = RecordVideo(gym.make("CartPole-v1", render_mode="rgb_array"), folder)
    >>> _ = env.reset(seed=0)
    >>> _ = env.step(0)
    >>> env.close()
    >>> sorted(os.listdir(folder))
    ['rl-video-episode-0.mp4']
    """

    def __init__(
        self,
        env: gym.Env,
        video_folder: str,
        episode_trigger: Callable[[int], bool] | None = None,
        step_trigger: Callable[[int], bool] | None = None,
        video_length: int = 0,
        name_prefix: str = "rl-video",
        fps: int | None = None,
        disable_logger: bool = True,
        gc_trigger: Callable[[int], bool] | None = lambda episode: True,
        codec: str = "h264",
        preset: str = DEFAULT_PRESET,
        crf: int | None = None,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self,
            video_folder=video_folder,
            episode_trigger=episode_trigger,
            step_trigger=step_trigger,
            video_length=video_length,
            name_prefix=name_prefix,
            fps=fps,
            disable_logger=disable_logger,
            gc_trigger=gc_trigger,
            codec=codec,
            preset=preset,
            crf=crf,
        )
        gym.Wrapper.__init__(self, env)
        self._setup(
            env,
            video_folder,
            episode_trigger,
            step_trigger,
            video_length,
            name_prefix,
            fps,
            disable_logger,
            gc_trigger,
            codec,
            preset,
            crf,
        )
        self.render_history: list[np.ndarray] = []  # rgb_array_list frames render() gives back

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the env; end a whole-episode recording; start one if the trigger says so."""
        obs, info = super().reset(seed=seed, options=options)
        self.episode_id += 1
        if self.recording and self.video_length == float("inf"):
            self.stop_recording()
        if self.episode_trigger and self.episode_trigger(self.episode_id):
            self.start_recording(f"{self.name_prefix}-episode-{self.episode_id}")
        if self.recording:
            self._capture_frame()
            if self.recorded_frames_count > self.video_length:
                self.stop_recording()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; film the frame if recording (starting one if the step trigger says so)."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.step_id += 1
        if self.step_trigger and self.step_trigger(self.step_id):
            self.start_recording(f"{self.name_prefix}-step-{self.step_id}")
        if self.recording:
            self._capture_frame()
            if self.recorded_frames_count > self.video_length:
                self.stop_recording()
        return obs, reward, terminated, truncated, info

    def render(self) -> Any:
        """The env's render; for ``rgb_array_list`` envs, also the frames this wrapper took."""
        out = super().render()
        if self.recording and isinstance(out, list):
            for frame in out:
                self._add(frame)
        if self.render_history:
            history, self.render_history = self.render_history, []
            return history + out
        return out

    def close(self) -> None:
        """Close the env, then finish the recording under way and stop the encoder."""
        super().close()
        self._end_recording()

    def _capture_frame(self) -> None:
        assert self.recording, "Cannot capture a frame, recording wasn't started."
        frame = self.env.render()
        if isinstance(frame, list):
            if not frame:
                logger.warn(
                    "Trying to capture render frame but 'env.render()' has just been called. "
                    "The frame cannot be captured."
                )
                return
            self.render_history += frame
            frame = frame[-1]
        if isinstance(frame, np.ndarray):
            self._add(frame)
        else:
            self.stop_recording()
            logger.warn(
                "Recording stopped: expected type of frame returned by render to be a numpy "
                f"array, got instead {type(frame)}."
            )
