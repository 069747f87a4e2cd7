"""``RecordEpisodeStatistics``: Gymnasium's wrapper of the same name, re-implemented.

It imports only Gymnasium and the standard library, and does per step what Gymnasium's does (two
additions): a loop that only needs ``info["episode"]`` pays nothing for rlrec.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym


class RecordEpisodeStatistics(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds ``info[stats_key] = {"r": return, "l": length, "t": seconds}`` at each episode's end
    and keeps the last ``buffer_length`` of each in ``return_queue``, ``length_queue`` and
    ``time_queue``, as ``gymnasium.wrappers.RecordEpisodeStatistics`` does.

        >>> env = RecordEpisodeStatistics(gym.make("CartPole-v1"))
        >>> _ = env.reset(seed=0)
        >>> done = False
        >>> while not done:
        ...     _, _, terminated, truncated, info = env.step(0)
        ...     done = terminated or truncated
        >>> info["episode"]["l"], list(env.length_queue)
        (11, [11])
    """

    def __init__(self, env: gym.Env, buffer_length: int = 100, stats_key: str = "episode"):
        gym.utils.RecordConstructorArgs.__init__(
            self, buffer_length=buffer_length, stats_key=stats_key
        )
        gym.Wrapper.__init__(self, env)
        self._stats_key = stats_key
        self.episode_count = 0
        self.episode_start_time: float = -1
        self.episode_returns: float = 0.0
        self.episode_lengths: int = 0
        self.time_queue: deque[float] = deque(maxlen=buffer_length)
        self.return_queue: deque[float] = deque(maxlen=buffer_length)
        self.length_queue: deque[int] = deque(maxlen=buffer_length)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_returns += reward
        self.episode_lengths += 1
        if terminated or truncated:
            if self._stats_key in info:
                raise AssertionError(
                    f"info already holds {self._stats_key!r}: pass another stats_key"
                )
            seconds = round(time.perf_counter() - self.episode_start_time, 6)
            info[self._stats_key] = {
                "r": self.episode_returns,
                "l": self.episode_lengths,
                "t": seconds,
            }
            self.time_queue.append(seconds)
            self.return_queue.append(self.episode_returns)
            self.length_queue.append(self.episode_lengths)
            self.episode_count += 1
            self.episode_start_time = time.perf_counter()
        return obs, reward, terminated, truncated, info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode_start_time = time.perf_counter()
        self.episode_returns = 0.0
        self.episode_lengths = 0
        return obs, info
