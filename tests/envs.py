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


class NonFiniteRewards(gym.Wrapper):
    """Rewards no average can take: an episode whose reset seed is 0 mod 3 earns +inf at every
    step, 1 mod 3 NaN, the others 1; with ``only`` (``"inf"`` or ``"nan"``), every episode
    earns that."""

    def __init__(self, env: gym.Env, only: str | None = None) -> None:
        super().__init__(env)
        self.only, self.reward = only, 1.0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        kind = self.only or {0: "inf", 1: "nan"}.get((seed or 0) % 3)
        self.reward = float(kind) if kind else 1.0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, self.reward, terminated, truncated, info


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


class TallyEnv(gym.Env):
    """An env that keeps its own books: each episode's length is drawn at reset from its seeded
    generator (1 to ``max_length`` steps; odd lengths end terminated, even ones truncated), the
    reward of a step is the action taken plus a tenth of the step's number, and ``episodes``
    holds ``[return, length, ended]`` for every episode begun. It is the truth a recorder's rows
    are checked against, kept inside the env (``get_attr`` reads it from an async worker)."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None, max_length: int = 6) -> None:
        self.render_mode, self.max_length = render_mode, max_length
        self.action_space = gym.spaces.Discrete(3)
        self.observation_space = gym.spaces.Box(0, np.inf, (1,), np.float32)
        self.episodes: list[list] = []
        self._length = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._length = int(self.np_random.integers(1, self.max_length + 1))
        self.episodes.append([0.0, 0, False])
        return np.zeros(1, np.float32), {}

    def step(self, action):
        episode = self.episodes[-1]
        assert not episode[2], "stepped after the end without a reset"
        episode[1] += 1
        reward = float(action) + episode[1] / 10
        episode[0] += reward
        ended = episode[1] == self._length
        episode[2] = ended
        terminated = ended and self._length % 2 == 1
        return np.array([episode[1]], np.float32), reward, terminated, ended and not terminated, {}

    def render(self):
        frame = np.zeros((16, 16, 3), np.uint8)
        frame[:, :, 0] = 10 * len(self.episodes) % 256
        return frame


gym.register("Tally-v0", entry_point=TallyEnv)
