"""Tabular Q-learning on a grid over Box observations: the built-in learner, `policy=qlearning`."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlrec.errors import ConfigError


class QLearning:
    """Epsilon-greedy tabular Q-learning; each Box dimension is cut into ``bins`` equal cells
    between ``low`` and ``high`` (values outside fall into the end cells).

    Exploration draws from a generator reseeded at every episode with the episode's policy seed,
    so a run is a function of its seed. ``epsilon`` decays by ``epsilon_decay`` after every
    episode down to ``epsilon_min``. With ``checkpoint`` the saved table is loaded and the policy
    acts greedily without learning: an evaluation of a trained agent.

    Example::

        policy = QLearning(observation_space=env.observation_space,
                           action_space=env.action_space, bins=[1, 1, 6, 12])
        action = policy.act(obs)
        policy.update(obs=obs, action=action, reward=1.0, next_obs=obs2, terminated=False,
                      truncated=False)
    """

    def __init__(
        self,
        *,
        observation_space: gym.Space,
        action_space: gym.Space,
        lr: float = 0.1,
        gamma: float = 0.99,
        epsilon: float = 1.0,
        epsilon_min: float = 0.05,
        epsilon_decay: float = 0.99,
        bins: Sequence[int] | None = None,
        low: Sequence[float] | None = None,
        high: Sequence[float] | None = None,
        checkpoint: str | None = None,
    ) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ConfigError(
                "policy",
                f"qlearning needs Discrete actions, not {action_space}",
                "use an env with discrete actions, e.g. env=cartpole",
            )
        if not isinstance(observation_space, gym.spaces.Box) or observation_space.shape is None:
            raise ConfigError(
                "policy",
                f"qlearning needs Box observations, not {observation_space}",
                "use e.g. env=cartpole or env=mountaincar",
            )
        for key, value, low_, high_ in (
            ("lr", lr, 0, 1),
            ("gamma", gamma, 0, 1),
            ("epsilon", epsilon, 0, 1),
            ("epsilon_min", epsilon_min, 0, 1),
            ("epsilon_decay", epsilon_decay, 0, 1),
        ):
            if not isinstance(value, (int, float)) or not low_ <= value <= high_:
                raise ConfigError(
                    f"policy.{key}",
                    f"must be a number in [{low_}, {high_}], got {value!r}",
                    f"pass e.g. policy.{key}={low_ + (high_ - low_) / 2}",
                )
        dims = int(np.prod(observation_space.shape))
        self.bins = np.asarray(bins if bins is not None else [6] * dims, dtype=np.int64)
        self.low = np.asarray(low if low is not None else _finite(observation_space.low), float)
        self.high = np.asarray(high if high is not None else _finite(observation_space.high), float)
        for key, array in (("bins", self.bins), ("low", self.low), ("high", self.high)):
            if array.shape != (dims,):
                raise ConfigError(
                    f"policy.{key}",
                    f"needs {dims} values (one per observation dimension), got {array.tolist()}",
                    f"pass {dims} values",
                )
        if (self.bins < 1).any() or (self.high <= self.low).any():
            raise ConfigError(
                "policy.bins",
                "every dimension needs bins >= 1 and high > low",
                "fix policy.bins, policy.low or policy.high",
            )
        self.lr, self.gamma = float(lr), float(gamma)
        self.epsilon, self.epsilon_min = float(epsilon), float(epsilon_min)
        self.epsilon_decay = float(epsilon_decay)
        self.n_actions = int(action_space.n)
        self.q = np.zeros((int(np.prod(self.bins)), self.n_actions))
        self._scale = self.bins / (self.high - self.low)
        self._strides = np.cumprod(np.r_[1, self.bins[::-1][:-1]])[::-1]
        self._rng = np.random.default_rng(0)
        self._last_obs: Any = None
        self._last_state = 0
        self.learning = checkpoint is None
        if checkpoint is not None:
            self.load(checkpoint)
            self.epsilon = 0.0

    def reset(self, seed: int) -> None:
        """Reseed exploration with the episode's policy seed."""
        self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> int:
        """Epsilon-greedy on the Q-values of ``obs``'s cell (ties go to the lowest action)."""
        state = self._state(obs)
        if self.epsilon > 0 and self._rng.random() < self.epsilon:
            return int(self._rng.integers(self.n_actions))
        return int(self.q[state].argmax())

    def update(
        self,
        *,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """One Q-learning step; a terminal state has no future value (a truncation does)."""
        if not self.learning:
            return
        state = self._state(obs)
        next_state = self._state(next_obs)
        future = 0.0 if terminated else self.gamma * self.q[next_state].max()
        self.q[state, action] += self.lr * (reward + future - self.q[state, action])

    def end_episode(self, *, episode: int, episode_return: float, length: int) -> None:
        """Decay exploration."""
        if self.learning:
            self.epsilon = max(self.epsilon_min, self.epsilon * self.epsilon_decay)

    def save(self, path: Path | str) -> None:
        """Write the table, the grid and the exploration state to ``path`` (NumPy ``.npz`` data)."""
        buffer = io.BytesIO()
        np.savez(
            buffer, q=self.q, bins=self.bins, low=self.low, high=self.high, epsilon=self.epsilon
        )
        Path(path).write_bytes(buffer.getvalue())

    def load(self, path: Path | str) -> None:
        """Read a table written by ``save``; its grid must match this policy's."""
        try:
            data = np.load(Path(path))
        except (OSError, ValueError) as err:
            raise ConfigError(
                "policy.checkpoint",
                f"cannot read {str(path)!r} ({err})",
                "pass the policy.checkpoint file a qlearning run wrote",
            ) from None
        if data["q"].shape != self.q.shape or not np.array_equal(data["bins"], self.bins):
            raise ConfigError(
                "policy.checkpoint",
                f"{path} has a table of shape "
                f"{data['q'].shape}, this policy's grid needs {self.q.shape}",
                "use the same policy.bins as the run that saved it",
            )
        self.q = data["q"].copy()
        self.epsilon = float(data["epsilon"])

    def _state(self, obs: Any) -> int:
        if obs is self._last_obs:  # act(obs) and update(obs=...) ask for the same cell
            return self._last_state
        cells = ((np.asarray(obs, float).reshape(-1) - self.low) * self._scale).astype(np.int64)
        state = int(np.clip(cells, 0, self.bins - 1) @ self._strides)
        self._last_obs, self._last_state = obs, state
        return state


def _finite(bounds: np.ndarray, limit: float = 10.0) -> np.ndarray:
    """Observation bounds with infinities clipped: a grid needs finite edges."""
    return np.clip(np.asarray(bounds, float).reshape(-1), -limit, limit)
