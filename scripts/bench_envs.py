"""Envs for the benchmarks: ``env.id=bench_envs:SlowCartPole-v1`` (from ``scripts/``).

``SlowCartPole-v1`` is CartPole behind a wrapper that burns a millisecond of CPU per step: an env
whose step costs what a physics simulator's might, so that stepping dominates a run.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym

STEP_SECONDS = 0.001


class BurnCPU(gym.Wrapper):
    """Spin (not sleep: a sleeping env leaves the CPU to others) ``seconds`` on every step."""

    def __init__(self, env: gym.Env, seconds: float = STEP_SECONDS) -> None:
        super().__init__(env)
        self.seconds = seconds

    def step(self, action: Any) -> Any:
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass
        return self.env.step(action)


def slow_cartpole(**kwargs: Any) -> gym.Env:
    return BurnCPU(gym.make("CartPole-v1", **kwargs).unwrapped)


gym.register("SlowCartPole-v1", entry_point=slow_cartpole, max_episode_steps=500)
