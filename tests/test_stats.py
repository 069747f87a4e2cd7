"""Running statistics against numpy and scipy on the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rlrec.stats import RunningStats, t_quantile


@pytest.mark.parametrize("n", [2, 3, 50, 1000])
def test_matches_numpy_and_scipy(n):
    values = np.random.default_rng(n).normal(100.0, 30.0, n)
    running = RunningStats()
    for v in values:
        running.add(float(v))
    s = running.summary()
    low, high = stats.t.interval(0.95, n - 1, loc=values.mean(), scale=stats.sem(values))
    assert s["n"] == n
    assert s["mean"] == pytest.approx(values.mean())
    assert s["std"] == pytest.approx(values.std(ddof=1))
    assert (s["min"], s["max"]) == (values.min(), values.max())
    assert s["ci95_low"] == pytest.approx(low) and s["ci95_high"] == pytest.approx(high)
    assert s["ci95_low"] < s["mean"] < s["ci95_high"]


def test_undefined_values_are_none():
    empty = RunningStats().summary()
    assert empty["n"] == 0 and all(v is None for k, v in empty.items() if k != "n")
    one = RunningStats()
    one.add(3.0)
    s = one.summary()
    assert (s["mean"], s["min"], s["max"], s["std"], s["ci95_low"]) == (3.0, 3.0, 3.0, None, None)


@pytest.mark.parametrize("q", [0.6, 0.95, 0.975, 0.995])
def test_t_quantile_equals_scipys(q):
    """rlrec's Student-t quantile (no scipy import in a run) against scipy's, every df to 1200
    (where the closed forms and Newton's method work) and beyond (the expansion alone)."""
    dfs = np.array([*range(1, 1201), 2000, 10**5, 10**7])
    ours = np.array([t_quantile(q, int(df)) for df in dfs])
    np.testing.assert_allclose(ours, stats.t.ppf(q, dfs), rtol=1e-12)
