"""The contract's seed formulas: any episode can be rebuilt from (run seed, episode index) alone."""

from __future__ import annotations

import random
import sys

import numpy as np


def ss(*keys: int) -> int:
    """``int(SeedSequence(list(keys)).generate_state(1)[0])``: a uint32 derived from ``keys``."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def episode_seed(run_seed: int, episode: int) -> int:
    """The seed passed to ``env.reset`` for ``episode`` of a run seeded ``run_seed``."""
    return ss(run_seed, episode)


def policy_seed(run_seed: int, episode: int) -> int:
    """The seed handed to ``policy.reset`` at the start of ``episode``."""
    return ss(run_seed, episode, 1)


def reseed_globals(run_seed: int) -> None:
    """Seed the process-wide generators a user's policy might lean on.

    Hydra's joblib launcher reuses worker processes, so a job must not inherit the global random
    state that an earlier job left behind.
    """
    seed = ss(run_seed, 2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")  # only if the user's code already imported it
    if torch is not None:
        torch.manual_seed(seed)
