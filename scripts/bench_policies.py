"""Fixed CartPole controllers for the benchmarks: rlrec takes them by ``_target_``."""

from __future__ import annotations

from typing import Any


def balance(obs: Any) -> int:
    """``int(theta + 0.5 * theta_dot > 0)``: balances 500 steps on the benchmark's seeds."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def balance_long(obs: Any) -> int:
    """``int(0.1 x + 0.5 x_dot + 10 theta + 2 theta_dot > 0)``: also keeps the cart centred, so it
    survives 5,000 steps."""
    return int(0.1 * obs[0] + 0.5 * obs[1] + 10 * obs[2] + 2 * obs[3] > 0)


class Balance:
    """``balance`` as an rlrec policy."""

    def __init__(self, observation_space: Any, action_space: Any) -> None:
        pass

    act = staticmethod(balance)


class BalanceLong(Balance):
    """``balance_long`` as an rlrec policy."""

    act = staticmethod(balance_long)
