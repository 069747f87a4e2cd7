"""Aggregate statistics of a run, updated as episodes arrive: memory does not grow with the run."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

from rlrec.records import EpisodeRecord


def t_quantile(q: float, df: int) -> float:
    """Student's t quantile ``q`` (0.5 < q < 1) with ``df`` degrees of freedom, to about 1e-13.

    Not ``scipy.special.stdtrit``: importing it costs each run 0.15 s, a third of a short run's
    start. From the Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5), exact to double
    precision from df = 1000 on; below, refined by Newton's method on the closed form of the
    distribution for integer df (26.7.3 and 26.7.4).

    >>> round(t_quantile(0.975, 1), 10), round(t_quantile(0.975, 9), 10)
    (12.7062047362, 2.2621571628)
    """
    z = NormalDist().inv_cdf(q)
    z2 = z * z
    g = (
        z * (z2 + 1) / 4,
        z * ((5 * z2 + 16) * z2 + 3) / 96,
        z * (((3 * z2 + 19) * z2 + 17) * z2 - 15) / 384,
        z * ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) / 92160,
    )
    t = z + sum(gk / df ** (k + 1) for k, gk in enumerate(g))
    if df >= 1000:
        return t
    if df == 1:  # closed forms where the expansion is far off
        return math.tan(math.pi * (q - 0.5))
    if df == 2:
        return (2 * q - 1) * math.sqrt(2 / (1 - (2 * q - 1) ** 2))
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    for _ in range(20):
        density = math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))
        step = (_central_t(t, df) - (2 * q - 1)) / (2 * density)
        t -= step
        if abs(step) <= 1e-15 * t:
            break
    return t


def _central_t(t: float, df: int) -> float:
    """P(|T| <= t) for Student's T with integer ``df`` >= 2 (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 0:  # sin(theta) * (1 + c2/2 + 1*3/(2*4) c2^2 + ... up to c2^((df-2)/2))
        term = total = 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return math.sin(theta) * total
    # odd: 2/pi * (theta + sin(theta) * (c + 2/3 c^3 + ... up to c^(df-2)))
    term = total = math.cos(theta)
    for k in range(1, (df - 1) // 2):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + math.sin(theta) * total)


class RunningStats:
    """Count, mean, sample standard deviation, min and max by Welford's update.

    NaN and infinite values are counted (``nonfinite``) and left out of the statistics, which
    are those of the finite values: a summary is always strict JSON.

    >>> s = RunningStats()
    >>> for x in (1.0, 2.0, 3.0, float("inf")):
    ...     s.add(x)
    >>> s.summary()["n"], s.summary()["mean"], s.summary()["std"], s.nonfinite
    (4, 2.0, 1.0, 1)
    """

    def __init__(self) -> None:
        self.n = 0  # every value
        self.nonfinite = 0  # NaN, +inf, -inf
        self.mean = 0.0
        self._m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, x: float) -> None:
        """Take one value into the statistics."""
        self.n += 1
        if not math.isfinite(x):
            self.nonfinite += 1
            return
        k = self.n - self.nonfinite
        delta = x - self.mean
        self.mean += delta / k
        self._m2 += delta * (x - self.mean)
        self.min = min(self.min, x)
        self.max = max(self.max, x)

    def summary(self) -> dict[str, float | int | None]:
        """n, then the mean, std (ddof=1), min, max and a 95% Student-t interval for the mean of
        the finite values; None, not NaN, where a value is undefined (none finite, or fewer than
        2 for std and the interval)."""
        k = self.n - self.nonfinite
        if k == 0:
            keys = ("mean", "std", "min", "max", "ci95_low", "ci95_high")
            return {"n": self.n} | dict.fromkeys(keys)
        std = math.sqrt(self._m2 / (k - 1)) if k >= 2 else None
        low = high = None
        if std is not None:
            half = t_quantile(0.975, k - 1) * std / math.sqrt(k)
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


def t_interval(n: int, mean: float | None, std: float | None) -> tuple[float | None, ...]:
    """The 95% Student-t interval of a mean over ``n`` values of standard deviation ``std``;
    (None, None) where it is undefined (fewer than 2 values, no finite mean).

    >>> [round(x, 4) for x in t_interval(10, 5.0, 2.0)]
    [3.5693, 6.4307]
    """
    if n < 2 or mean is None or std is None:
        return None, None
    half = t_quantile(0.975, n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


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

    @classmethod
    def of_rows(cls, rows: list[dict[str, Any]]) -> RunTotals:
        """The totals of ``episodes.parquet`` rows (what is on disk, for a run that could not
        count its own)."""
        from rlrec.records import EpisodeRecord

        totals = cls(success_measured=any(row.get("success") is not None for row in rows))
        for row in sorted(rows, key=lambda row: row["episode"]):
            totals.add(EpisodeRecord.from_row(row))
        return totals

    def summary(self) -> dict[str, Any]:
        """The returns' statistics at the top level, then lengths, success rate and videos."""
        n = self.returns.n
        rate = self.successes / n if self.success_measured and n else None
        return {
            **self.returns.summary(),
            "n_nonfinite": self.returns.nonfinite,  # NaN or infinite returns, not in the stats
            "length": self.lengths.summary(),
            "success_rate": rate,
            "videos": self.videos,
        }
