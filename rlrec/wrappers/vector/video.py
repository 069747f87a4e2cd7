"""``RecordVideo`` for vector envs: ``gymnasium.wrappers.vector``'s, streaming.

As Gymnasium's, every sub-environment's frame (or the first's alone) is laid out in one grid whose
aspect ratio is closest to ``video_aspect_ratio``, and episodes are counted on sub-environment 0
under the env's autoreset mode. The grid is built in one reused array and handed to the encoder
process (``rlrec.wrappers.video.StreamedRecording``), never kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import logger
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from rlrec.codecs import DEFAULT_PRESET
from rlrec.wrappers.vector.statistics import autoreset_mode
from rlrec.wrappers.video import StreamedRecording


class RecordVideo(StreamedRecording, VectorWrapper, gym.utils.RecordConstructorArgs):
    """Films episodes of sub-environment 0 (``episode_trigger``) or stretches of steps
    (``step_trigger``) of every sub-environment, tiled, into
    ``video_folder/<name_prefix>-episode-<N>.mp4`` or ``-step-<N>.mp4``; ``record_first_only``
    films sub-environment 0 alone. Beyond Gymnasium's arguments: ``codec``, ``preset``, ``crf``.

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> envs = gym.make_vec("CartPole-v1", num_envs=4, render_mode="rgb_array")
    >>> envs = RecordVideo(envs, folder, episode_trigger=lambda e: e == 0)
    >>> _ = envs.reset(seed=0)
    >>> for _ in range(40):
    ...     _ = envs.step(envs.action_space.sample())
    >>> envs.close()
    >>> os.listdir(folder), (envs.frame_rows, envs.frame_cols)
    (['rl-video-episode-0.mp4'], (2, 2))
    """

    def __init__(
        self,
        env: VectorEnv,
        video_folder: str,
        video_aspect_ratio: tuple[int, int] = (1, 1),
        record_first_only: bool = False,
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
        VectorWrapper.__init__(self, env)
        gym.utils.RecordConstructorArgs.__init__(
            self,
            video_folder=video_folder,
            video_aspect_ratio=video_aspect_ratio,
            record_first_only=record_first_only,
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
        self.autoreset_mode = autoreset_mode(env)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            logger.warn(
                "Vector environment's autoreset mode is same-step "
                "(https://farama.org/Vector-Autoreset-Mode): recorded episodes will not "
                "contain the last frame of the episode."
            )
        self.has_autoreset = False
        self.record_first_only = record_first_only
        self.video_aspect_ratio = video_aspect_ratio
        self.frame_rows = self.frame_cols = -1
        self._grid: np.ndarray | None = None

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset; a reset of sub-environment 0 starts its next episode (and maybe a film)."""
        # read before the env does: Gymnasium's vector envs pop "reset_mask" out of options
        first_reset = options is None or "reset_mask" not in options or options["reset_mask"][0]
        if first_reset:
            self._next_episode()
        obs, info = self.env.reset(seed=seed, options=options)
        if self.recording and first_reset:  # one frame a step: others' resets wait for the next
            self._capture_frame()
            if self.recorded_frames_count > self.video_length:
                self.stop_recording()
        if first_reset:  # else sub-environment 0 still autoresets at the next step if it ended
            self.has_autoreset = False
        return obs, info

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every sub-environment; follow sub-environment 0's episodes; film if recording."""
        obs, rewards, terminations, truncations, info = self.env.step(actions)
        self.step_id += 1
        ended = bool(terminations[0] or truncations[0])
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            if self.has_autoreset:  # this step was sub-environment 0's reset
                self._next_episode()
            self.has_autoreset = ended
        elif self.autoreset_mode == AutoresetMode.SAME_STEP and ended:
            self._next_episode()
        if self.step_trigger and self.step_trigger(self.step_id):
            self.start_recording(f"{self.name_prefix}-step-{self.step_id}")
        if self.recording:
            self._capture_frame()
            if self.recorded_frames_count > self.video_length:
                self.stop_recording()
        return obs, rewards, terminations, truncations, info

    def close(self, **kwargs: Any) -> None:
        """Close the env, then finish the recording under way and stop the encoder."""
        super().close(**kwargs)
        self._end_recording()

    def _next_episode(self) -> None:
        self.episode_id += 1
        if self.recording and self.video_length == float("inf"):
            self.stop_recording()
        if self.episode_trigger and self.episode_trigger(self.episode_id):
            self.start_recording(f"{self.name_prefix}-episode-{self.episode_id}")

    def _capture_frame(self) -> None:
        assert self.recording, "Cannot capture a frame, recording wasn't started."
        frames = self.env.render()
        assert isinstance(frames, Sequence), type(frames)
        assert len(frames) == self.num_envs
        if self.record_first_only:
            frames = frames[:1]
        self._add(self._tile(frames))

    def _tile(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """The frames in a grid (rows x columns picked once, for the aspect ratio)."""
        height, width, channels = frames[0].shape
        if self._grid is None:
            self.frame_rows, self.frame_cols = grid_shape(
                len(frames), height, width, self.video_aspect_ratio
            )
            shape = (self.frame_rows * height, self.frame_cols * width, channels)
            self._grid = np.zeros(shape, frames[0].dtype)
        for i, frame in enumerate(frames):
            row, col = divmod(i, self.frame_cols)
            self._grid[row * height : (row + 1) * height, col * width : (col + 1) * width] = frame
        return self._grid


def grid_shape(n: int, height: int, width: int, aspect: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) of a grid of ``n`` frames, rows dividing ``n``, whose width / height is
    closest to ``aspect`` (Gymnasium's layout: the fewer rows win a tie).

    >>> grid_shape(8, 400, 600, (1, 1)), grid_shape(5, 400, 600, (1, 1))
    ((2, 4), (1, 5))
    """
    target = aspect[0] / aspect[1]
    best, best_diff = (1, n), float("inf")
    for rows in range(1, int(n**0.5) + 1):
        if n % rows == 0:
            cols = n // rows
            diff = abs(cols * width / (rows * height) - target)
            if diff < best_diff:
                best, best_diff = (rows, cols), diff
    return best
