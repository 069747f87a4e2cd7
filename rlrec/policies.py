"""Policies: the built-in random one, and how any policy class is built and called.

A policy is any class (or factory) called with ``observation_space`` and ``action_space`` plus the
other keys of the ``policy`` node. It has ``act(obs)`` (or only ``act_batch``, then called with a
batch of one); it may have ``reset(seed)``,
``update(*, obs, action, reward, next_obs, terminated, truncated)``,
``end_episode(*, episode, episode_return, length)``, ``act_batch``, ``save`` and ``load``.
The runner calls what the policy has and nothing else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig

from rlrec.config import instantiate_node
from rlrec.errors import ConfigError


class RandomPolicy:
    """Uniform actions: ``action_space.seed(seed)`` at an episode's start, one ``sample()`` a step.

    Example::

        policy = RandomPolicy(
            observation_space=env.observation_space, action_space=env.action_space
        )
        policy.reset(seed=123)
        action = policy.act(obs)
    """

    def __init__(self, *, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.action_space = action_space

    def reset(self, seed: int) -> None:
        """Reseed the action space so that the episode's actions follow from its seed alone."""
        self.action_space.seed(seed)

    def act(self, obs: Any) -> Any:
        """A uniformly random action."""
        return self.action_space.sample()


@dataclass(frozen=True)
class PolicyHooks:
    """The policy's methods, looked up once: ``None`` where the policy does not have one."""

    policy: Any
    act: Callable[[Any], Any]
    act_batch: Callable[[Any], Any] | None
    reset: Callable[[int], None] | None
    update: Callable[..., None] | None
    end_episode: Callable[..., None] | None
    save: Callable[[Any], None] | None
    load: Callable[[Any], None] | None

    @classmethod
    def of(cls, policy: Any) -> PolicyHooks:
        """Bind the optional methods ``policy`` has."""
        act, act_batch = _method(policy, "act"), _method(policy, "act_batch")
        if act is None:  # act_batch alone: a batch of one observation

            def act(obs: Any) -> Any:
                return act_batch(np.expand_dims(obs, 0))[0]

        return cls(
            policy=policy,
            act=act,
            act_batch=act_batch,
            reset=_method(policy, "reset"),
            update=_method(policy, "update"),
            end_episode=_method(policy, "end_episode"),
            save=_method(policy, "save"),
            load=_method(policy, "load"),
        )


def build_policy(
    policy_cfg: DictConfig, observation_space: gym.Space, action_space: gym.Space
) -> Any:
    """Instantiate the ``policy`` node with an env's spaces."""
    policy = instantiate_node(
        policy_cfg, "policy", observation_space=observation_space, action_space=action_space
    )
    if _method(policy, "act") is None and _method(policy, "act_batch") is None:
        raise ConfigError(
            "policy._target_",
            f"{policy_cfg._target_} has no act(obs) method",
            "give the class an act(obs) method that returns an action",
        )
    return policy


#: Where a user sets how many threads torch (and the libraries under it) may use.
THREAD_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_torch_thread() -> bool:
    """Limit torch to one thread in this process, when the policy has imported torch and the
    user has not said how many threads it may use; True if limited.

    Called where several processes or sub-environments share the cores (``workers``, a vector
    env): torch's intra-op threads (one per core by default) then wait for each other at every
    step of a small network. Measured on 2 cores with one other busy process: an SB3 PPO policy
    on ``env.num_envs=2`` took 36 s with torch's default against 11 s with one thread.
    """
    if "torch" not in sys.modules or any(os.environ.get(k) for k in THREAD_SETTINGS):
        return False
    sys.modules["torch"].set_num_threads(1)
    return True


def _method(obj: Any, name: str) -> Callable[..., Any] | None:
    method = getattr(obj, name, None)
    return method if callable(method) else None
