"""Aggregate statistics of a run, updated as episodes arrive: memory does not grow with the run."""

from __future__ import annotations

import math
from typing import Any

from rlrec.records import EpisodeRecord


class RunningStats:
    """Count, mean, sample standard deviation, min and max by Welford's update.

    >>> s = RunningStats()
    >>> for x in (1.0, 2.0, 3.0):
    ...     s.add(x)
    >>> s.summary()["mean"], s.summary()["std"]
    (2.0, 1.0)
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, x: float) -> None:
        """Take one value into the statistics."""
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (x - self.mean)
        self.min = min(self.min, x)
        self.max = max(self.max, x)

    def summary(self) -> dict[str, float | int | None]:
        """n, mean, std (ddof=1), min, max and a 95% Student-t interval for the mean; None, not NaN,
        where a value is undefined (no episodes, or n < 2 for std and the interval)."""
        if self.n == 0:
            return {"n": 0} | dict.fromkeys(("mean", "std", "min", "max", "ci95_low", "ci95_high"))
        std = math.sqrt(self._m2 / (self.n - 1)) if self.n >= 2 else None
        low = high = None
        if std is not None:
            from scipy.special import stdtrit  # Student-t quantile; imported only when needed

            half = float(stdtrit(self.n - 1, 0.975)) * std / math.sqrt(self.n)
            low, high = self.mean - half, self.mean + half
        return {
            "n": self.n,
            "mean": self.mean,
            "std": std,
            "min": self.min,
            "max": self.max,
            "ci95_low": low,
            "ci95_high": high,
        }


class RunTotals:
    """What ``summary.json`` aggregates over a run's finished episodes."""

    def __init__(self, success_measured: bool) -> None:
        self.returns, self.lengths = RunningStats(), RunningStats()
        self.videos = self.successes = 0
        self.success_measured = success_measured

    def add(self, record: EpisodeRecord) -> None:
        """Take one finished episode into the totals."""
        self.returns.add(record.episode_return)
        self.lengths.add(record.length)
        self.videos += record.video is not None
        self.successes += record.success is True

    def summary(self) -> dict[str, Any]:
        """The returns' statistics at the top level, then lengths, success rate and videos."""
        n = self.returns.n
        rate = self.successes / n if self.success_measured and n else None
        return {
            **self.returns.summary(),
            "length": self.lengths.summary(),
            "success_rate": rate,
            "videos": self.videos,
        }
