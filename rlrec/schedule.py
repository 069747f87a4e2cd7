"""Gymnasium's default filming schedule, in a module that imports nothing (the drop-in wrappers
and the triggers share it)."""

from __future__ import annotations


def capped_cubic(episode: int) -> bool:
    """Film episodes 0, 1, 8, 27, ... (the cubes) below 1000, then every 1000th.

    >>> [e for e in range(3001) if capped_cubic(e)]
    [0, 1, 8, 27, 64, 125, 216, 343, 512, 729, 1000, 2000, 3000]
    """
    if episode < 1000:
        return round(episode ** (1 / 3)) ** 3 == episode
    return episode % 1000 == 0
