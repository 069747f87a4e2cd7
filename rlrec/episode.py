"""The episode core: one episode from its seeds to its record, whoever owns the env.

Every driver (one env in this process, a vector env, worker processes) runs an episode through an
``Episode``: it is created with the episode's index (which fixes its contract seeds and resets the
policy), takes the reset observation in ``begin``, each step in ``step`` (or the whole loop in
``run`` on a plain env), and makes the ``EpisodeRecord`` in ``finish``. So seeds, policy hooks,
the actions, the observation digest and the totals are computed in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rlrec.digest import UNLIKE, ObsDigest
from rlrec.policies import PolicyHooks
from rlrec.records import EpisodeRecord
from rlrec.seeding import episode_seed, policy_seed
from rlrec.signals import StopSignals
from rlrec.video import VideoWriter


class SuccessRule:
    """Whether an episode succeeded: its return ``>= threshold``, or the last step's
    ``info[key]``; None (not measured) when neither is set.

    >>> SuccessRule(threshold=195)(200.0, {}), SuccessRule(key="is_success")(0.0, {})
    (True, False)
    """

    def __init__(self, threshold: float | None = None, key: str | None = None) -> None:
        self.threshold, self.key = threshold, key
        self.measured = threshold is not None or key is not None

    def __call__(self, episode_return: float, info: dict[str, Any]) -> bool | None:
        if self.threshold is not None:
            return episode_return >= self.threshold
        if self.key is not None:
            return bool(info.get(self.key, False))
        return None


class Episode:
    """One episode in progress: its seeds, actions, digest and totals, and its video writer."""

    __slots__ = (
        "_observe",
        "_update",
        "actions",
        "digest",
        "env_index",
        "episode_return",
        "hooks",
        "index",
        "length",
        "live",
        "seed",
        "started",
        "writer",
    )

    def __init__(
        self,
        index: int,
        hooks: PolicyHooks,
        *,
        seed: int | None,
        policy_seed: int | None,
        env_index: int = 0,
    ) -> None:
        """Start episode ``index``, to be reset with ``seed`` (None: the env's own generator goes
        on); the policy is reset with ``policy_seed`` now (None: not reset)."""
        self.index, self.hooks, self.env_index, self.seed = index, hooks, env_index, seed
        self._update = hooks.update
        self.digest = ObsDigest()
        self._observe = self.digest.update  # begin() picks the cheapest for the env's observations
        self.actions: list[Any] = []
        self.episode_return, self.length = 0.0, 0
        self.writer: VideoWriter | None = None
        self.live = False  # filmed because the trigger chose it before it ran
        self.started = 0.0
        if hooks.reset is not None and policy_seed is not None:
            hooks.reset(policy_seed)

    @classmethod
    def of_run(
        cls, index: int, run_seed: int, hooks: PolicyHooks, *, env_index: int = 0
    ) -> Episode:
        """Episode ``index`` of a run seeded ``run_seed``, with the contract's seeds."""
        return cls(
            index,
            hooks,
            seed=episode_seed(run_seed, index),
            policy_seed=policy_seed(run_seed, index),
            env_index=env_index,
        )

    def begin(self, obs: Any, writer: VideoWriter | None = None, frame: Any = None) -> None:
        """Take the reset observation (and, when filmed, the reset frame); start the clock."""
        self.digest.update(obs)
        self._observe = self.digest.updater(obs)
        self.writer = writer
        if writer is not None:
            writer.add(frame)
        self.started = time.perf_counter()

    def step(
        self,
        obs: Any,
        action: Any,
        reward: float,
        next_obs: Any,
        terminated: bool,
        truncated: bool,
        frame: Any = None,
    ) -> None:
        """Take one step the driver made: ``obs`` -> ``action`` -> ``next_obs``."""
        self.actions.append(action)
        try:
            self._observe(next_obs)
        except UNLIKE:  # unlike the reset observation
            self.digest.update(next_obs)
        self.episode_return += float(reward)
        self.length += 1
        if self._update is not None:
            self._update(
                obs=obs,
                action=action,
                reward=reward,
                next_obs=next_obs,
                terminated=bool(terminated),
                truncated=bool(truncated),
            )
        if self.writer is not None:
            self.writer.add(frame)

    def run(self, env: gym.Env, obs: Any, signals: StopSignals) -> tuple[bool, bool, dict]:
        """Step a plain env from ``obs`` to the episode's end; return the last step's
        ``terminated``, ``truncated`` and ``info``.

        The same work as ``step``, inline: a method call per step costs a plain CartPole loop
        several percent, and this loop is what every unfilmed episode runs.
        """
        hooks, writer = self.hooks, self.writer
        step, act, update, render = env.step, hooks.act, hooks.update, env.render
        observe, digest = self._observe, self.digest
        remember = self.actions.append
        episode_return, length = 0.0, 0
        signals.in_episode = True  # a signal may stop the steps at once: nothing to corrupt
        try:
            while True:
                action = act(obs)
                remember(action)
                next_obs, reward, terminated, truncated, info = step(action)
                try:
                    observe(next_obs)
                except UNLIKE:  # unlike the reset observation
                    digest.update(next_obs)
                episode_return += float(reward)
                length += 1
                if update is not None:
                    update(
                        obs=obs,
                        action=action,
                        reward=reward,
                        next_obs=next_obs,
                        terminated=terminated,
                        truncated=truncated,
                    )
                if writer is not None:
                    writer.add(render())
                if terminated or truncated:
                    break
                obs = next_obs
        finally:
            signals.in_episode = False
            self.episode_return, self.length = episode_return, length
        return bool(terminated), bool(truncated), info

    def finish(self, terminated: bool, truncated: bool, success: bool | None) -> EpisodeRecord:
        """The episode has ended: tell the policy, and make its record (no video yet: the
        filming decides that)."""
        duration = time.perf_counter() - self.started
        end_episode = self.hooks.end_episode
        if end_episode is not None:
            end_episode(episode=self.index, episode_return=self.episode_return, length=self.length)
        return EpisodeRecord(
            episode=self.index,
            seed=self.seed,
            episode_return=self.episode_return,
            length=self.length,
            duration_s=duration,
            terminated=bool(terminated),
            truncated=bool(truncated),
            success=success,
            obs_digest=self.digest.hexdigest(),
            env_index=self.env_index,
            actions=self.actions,
        )

    def abort(self) -> None:
        """The episode will not finish: drop its video (never a half-written file)."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


def replay(
    env: gym.Env, seed: int, actions: Sequence[Any], on_frame: Callable[[np.ndarray], None]
) -> str:
    """Reset ``env`` with ``seed``, step it with ``actions``, hand every rendered frame (the reset
    frame, then one a step) to ``on_frame``; return the observations' digest. A replay that ends
    before the actions run out stops there, and its digest then differs from the original's."""
    digest = ObsDigest()
    obs, _ = env.reset(seed=seed)
    digest.update(obs)
    on_frame(env.render())
    for action in actions:
        obs, _, terminated, truncated, _ = env.step(action)
        digest.update(obs)
        on_frame(env.render())
        if terminated or truncated:
            break
    return digest.hexdigest()
