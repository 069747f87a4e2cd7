"""``RecordEpisodeStatistics`` for vector envs: ``gymnasium.wrappers.vector``'s, re-implemented.

Each sub-environment's return, length and clock are kept in arrays and updated with array
operations (no Python loop over sub-environments per step), under the env's autoreset mode:
``NEXT_STEP`` (the step after an episode's end resets, and counts for nothing), ``SAME_STEP``
(the ending step resets too) and ``DISABLED`` (the user resets with ``reset_mask``). Imports only
Gymnasium, NumPy and the standard library.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any
from warnings import warn

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper


def autoreset_mode(env: VectorEnv) -> AutoresetMode:
    """The env's autoreset mode, from its metadata (``NEXT_STEP`` where it says none)."""
    mode = env.metadata.get("autoreset_mode")
    if mode is None:
        warn(
            f"{env} does not say its autoreset mode (metadata['autoreset_mode']): assuming "
            "AutoresetMode.NEXT_STEP (https://farama.org/Vector-Autoreset-Mode)",
            stacklevel=3,
        )
        return AutoresetMode.NEXT_STEP
    if not isinstance(mode, AutoresetMode):
        raise TypeError(
            f"Expected env.metadata['autoreset_mode'] to be an AutoresetMode, got {type(mode)}"
        )
    return mode


def reset_mask(options: dict[str, Any] | None, num_envs: int) -> np.ndarray | None:
    """``options["reset_mask"]``, checked as Gymnasium checks it; None when absent."""
    if options is None or "reset_mask" not in options:
        return None
    mask = options["reset_mask"]
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"`options['reset_mask']` must be a numpy array, got {type(mask)}")
    if mask.shape != (num_envs,):
        raise ValueError(
            f"`options['reset_mask']` must have shape `({num_envs},)`, got {mask.shape}"
        )
    if mask.dtype != np.bool_:
        raise TypeError(f"`options['reset_mask']` must have `dtype=np.bool_`, got {mask.dtype}")
    if not mask.any():
        raise ValueError(
            "`options['reset_mask']` must contain a boolean array with at least one True "
            f"value, got reset_mask={mask}"
        )
    return mask


class RecordEpisodeStatistics(VectorWrapper):
    """At the step an episode of sub-environment ``i`` ends, ``info[stats_key]`` holds arrays
    ``r``, ``l`` and ``t`` (the return, length and seconds of the episodes that ended, 0
    elsewhere) and ``info["_" + stats_key]`` says which sub-environments ended one; the last
    ``buffer_length`` of each are in ``return_queue``, ``length_queue`` and ``time_queue``.

    >>> import gymnasium as gym
    >>> envs = RecordEpisodeStatistics(gym.make_vec("CartPole-v1", num_envs=2))
    >>> _ = envs.reset(seed=1)
    >>> for _ in range(30):
    ...     _, _, terminated, truncated, info = envs.step(np.array([0, 1]))
    >>> sorted(info), envs.episode_count > 0
    (['_episode', 'episode'], True)
    """

    def __init__(self, env: VectorEnv, buffer_length: int = 100, stats_key: str = "episode"):
        super().__init__(env)
        self._stats_key = stats_key
        self._autoreset_mode = autoreset_mode(env)
        self.episode_count = 0
        self.episode_start_times = np.zeros(self.num_envs)
        self.episode_returns = np.zeros(self.num_envs)
        self.episode_lengths = np.zeros(self.num_envs, dtype=int)
        self.prev_dones = np.zeros(self.num_envs, dtype=bool)
        self.time_queue: deque[float] = deque(maxlen=buffer_length)
        self.return_queue: deque[float] = deque(maxlen=buffer_length)
        self.length_queue: deque[int] = deque(maxlen=buffer_length)

    def reset(
        self, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        # read before the env does: Gymnasium's vector envs pop "reset_mask" out of options, so
        # afterwards every sub-environment would look reset (Gymnasium's own wrapper reads it then)
        mask = reset_mask(options, self.num_envs)
        if mask is None:
            mask = np.ones(self.num_envs, dtype=bool)
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode_start_times[mask] = time.perf_counter()
        self.episode_returns[mask] = 0.0
        self.episode_lengths[mask] = 0
        self.prev_dones[mask] = False
        return obs, info

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        if not isinstance(infos, dict):
            raise AssertionError(
                "vector RecordEpisodeStatistics needs a dict info, got "
                f"{type(infos)} (another wrapper in the wrong order?)"
            )
        if self._autoreset_mode == AutoresetMode.SAME_STEP:
            self.episode_returns += rewards
            self.episode_lengths += 1
        else:  # the step after an end is the reset of that sub-environment: it counts nothing
            running = ~self.prev_dones
            self.episode_returns[self.prev_dones] = 0.0
            self.episode_returns[running] += rewards[running]
            self.episode_lengths[self.prev_dones] = 0
            self.episode_lengths[running] += 1
            self.episode_start_times[self.prev_dones] = time.perf_counter()
        self.prev_dones = dones = np.logical_or(terminations, truncations)
        if dones.any():
            key = self._stats_key
            if key in infos or f"_{key}" in infos:
                raise ValueError(
                    f"Attempted to add episode stats with key '{key}' but this key already "
                    f"exists in info: {list(infos)}"
                )
            seconds = np.round(time.perf_counter() - self.episode_start_times, 6)
            infos[key] = {
                "r": np.where(dones, self.episode_returns, 0.0),
                "l": np.where(dones, self.episode_lengths, 0),
                "t": np.where(dones, seconds, 0.0),
            }
            infos[f"_{key}"] = dones.copy()  # not prev_dones itself: a reset_mask clears that
            self.episode_count += int(dones.sum())
            self.time_queue.extend(seconds[dones])
            self.return_queue.extend(self.episode_returns[dones])
            self.length_queue.extend(self.episode_lengths[dones])
            if self._autoreset_mode == AutoresetMode.SAME_STEP:  # already reset: start again
                self.episode_returns[dones] = 0.0
                self.episode_lengths[dones] = 0
                self.episode_start_times[dones] = time.perf_counter()
        return obs, rewards, terminations, truncations, infos
