"""Learning curves: one run's (``learning_curve.png``) and a sweep's (``learning_curves.png``).

matplotlib with the Agg backend, imported only when a plot is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start).

    >>> moving_average(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist()
    [1.0, 1.5, 2.5, 3.5]
    """
    totals = np.concatenate([[0.0], np.cumsum(values, dtype=float)])
    end = np.arange(1, len(values) + 1)
    start = np.maximum(0, end - window)
    return (totals[end] - totals[start]) / (end - start)


def plot_learning_curve(returns: np.ndarray, filmed: Sequence[int], window: int, path: Path) -> Any:
    """Returns per episode, their moving average (drawn from ``window`` episodes on) and a mark
    at every filmed episode; saved to ``path``. Returns the figure (closed), whose lines hold the
    data drawn."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 6))
    x = np.arange(len(returns))
    ax.plot(x, returns, alpha=0.3, linewidth=0.8, label="return", gid="returns")
    if len(returns) >= window:
        ax.plot(
            x[window - 1 :],
            moving_average(returns, window)[window - 1 :],
            linewidth=2,
            label=f"{window}-episode moving average",
            gid="moving_average",
        )
    if len(filmed):
        filmed = np.asarray(filmed, dtype=int)
        ax.plot(
            filmed,
            returns[filmed],
            "v",
            color="tab:red",
            markersize=7,
            label="filmed",
            gid="filmed",
        )
    ax.set_xlabel("episode")
    ax.set_ylabel("return")
    ax.set_title("Learning progress")
    ax.grid(True, alpha=0.3)
    ax.legend()
    _save(fig, path)
    return fig


def plot_learning_curves(
    groups: Sequence[tuple[str, Sequence[np.ndarray]]], window: int, path: Path
) -> Any:
    """Per group (a label and its runs' returns), the across-run mean of each run's moving
    average, with a 95% Student-t band where a group has two runs or more."""
    from scipy import stats

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, runs in groups:
        if not runs:
            continue
        length = min(len(r) for r in runs)  # a group's runs have one length unless cut short
        curves = np.array([moving_average(r[:length], window) for r in runs])
        mean = curves.mean(axis=0)
        x = np.arange(length)
        (line,) = ax.plot(x, mean, label=f"{label} (n={len(runs)})")
        if len(runs) >= 2:
            half = stats.t.ppf(0.975, len(runs) - 1) * stats.sem(curves, axis=0)
            ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("episode")
    ax.set_ylabel(f"return, moving average over {window} episodes")
    ax.set_title("Learning curves: mean across seeds, 95% t-interval band")
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    _save(fig, path)
    return fig


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Write the figure whole (temporary name, then rename) and release it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
