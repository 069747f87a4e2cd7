"""Environments the tests need and Gymnasium does not ship; registered on import
(``env.id=tests.envs:NoRgbCartPole-v0``)."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class NoRgbCartPole(CartPoleEnv):
    """CartPole that can only render for humans: filming it must be refused."""

    metadata: ClassVar[dict] = {"render_modes": ["human"], "render_fps": 50}


class OddFrameCartPole(CartPoleEnv):
    """CartPole whose frames are 301x199: odd sizes must still encode."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self.screen_width, self.screen_height = 301, 199


class NoFpsCartPole(CartPoleEnv):
    """CartPole that does not say how fast its frames come (no ``render_fps``)."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"]}


gym.register("NoRgbCartPole-v0", entry_point=NoRgbCartPole, max_episode_steps=500)
gym.register("NoFpsCartPole-v0", entry_point=NoFpsCartPole, max_episode_steps=500)
gym.register("OddFrameCartPole-v0", entry_point=OddFrameCartPole, max_episode_steps=500)


class NoisyCartPole(CartPoleEnv):
    """CartPole with a disturbance its seed does not govern: its episodes cannot be replayed."""

    _noise = np.random.default_rng()  # deliberately unseeded

    def step(self, action):
        self.state = np.asarray(self.state) + self._noise.normal(0.0, 0.02, 4)
        return super().step(action)


gym.register("NoisyCartPole-v0", entry_point=NoisyCartPole, max_episode_steps=500)


class NoiseFrameCartPole(CartPoleEnv):
    """CartPole filmed as 120x160 noise: frames that compress badly fill a disk quickly."""

    _pixels = np.random.default_rng(0)

    def render(self):
        return self._pixels.integers(0, 255, (120, 160, 3), dtype=np.uint8)


gym.register("NoiseFrameCartPole-v0", entry_point=NoiseFrameCartPole, max_episode_steps=500)


class FailWhileFileExists(gym.Wrapper):
    """Fails the reset with seed ``seed`` while ``path`` exists: a job that crashes once, then
    succeeds when run again (the file removed), with the same config."""

    def __init__(self, env: gym.Env, path: str, seed: int) -> None:
        super().__init__(env)
        self.path, self.fail_seed = path, seed

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        import os

        if seed == self.fail_seed and os.path.exists(self.path):
            raise RuntimeError(f"failing on purpose at seed {seed} while {self.path} exists")
        return self.env.reset(seed=seed, options=options)


class PixelCartPole(CartPoleEnv):
    """CartPole filmed as synthetic frames of any size (``width`` x ``height``: coloured blocks
    and a square that moves with the step count); with ``bad_frame`` (e.g. ``"none"``,
    ``"1x1"``, ``"0rows"``, ``"2channels"``, ``"resize"``) every render from the env's
    ``bad_at``-th step on (counted across episodes) is one no film can hold. ``frames`` keeps
    every frame it rendered: the oracle's truth."""

    def __init__(
        self,
        render_mode: str | None = None,
        width: int = 160,
        height: int = 210,
        bad_frame: str | None = None,
        bad_at: int = 0,
    ) -> None:
        super().__init__(render_mode=render_mode)
        self.size, self.bad_frame, self.bad_at = (width, height), bad_frame, bad_at
        self.steps, self.lifetime_steps = 0, 0
        self.frames: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        self.steps = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.steps += 1
        self.lifetime_steps += 1
        return super().step(action)

    def render(self):
        from tests.pixels import synthetic_frame

        width, height = self.size
        if self.bad_frame is not None and self.lifetime_steps >= self.bad_at:
            return {
                "none": None,
                "1x1": np.zeros((1, 1, 3), np.uint8),
                "0rows": np.zeros((0, width, 3), np.uint8),
                "2channels": np.zeros((height, width, 2), np.uint8),
                "resize": np.zeros((height + 2, width, 3), np.uint8),
            }[self.bad_frame]
        frame = synthetic_frame(width, height, self.steps)
        self.frames.append(frame)
        return frame


gym.register("PixelCartPole-v0", entry_point=PixelCartPole, max_episode_steps=500)


class OpaqueSkip(gym.Wrapper):
    """A frame-skipping wrapper that does not say its skip (no ``frame_skip`` or ``_skip``):
    rlrec must say which rate it films at."""

    def step(self, action):
        total = 0.0
        for _ in range(2):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info
