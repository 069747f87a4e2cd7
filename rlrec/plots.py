"""Learning curves: one run's (``learning_curve.png``) and a sweep's (``learning_curves.png``).

matplotlib's object interface (no pyplot), imported only when a plot is drawn.
"""

from __future__ import annotations

import io
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlrec.rundir import atomic_path
from rlrec.stats import t_quantile

#: A run's memory as drawn: the episodes finished at each sample, and the bytes resident.
Memory = tuple[Sequence[int], Sequence[int]]


class CurveData:
    """What a run's learning curve is drawn from, kept as episodes finish: every return (8 bytes
    an episode) and the filmed episodes."""

    def __init__(self) -> None:
        self._returns = array("d")
        self.filmed: list[int] = []

    def add(self, record: Any) -> None:
        """One finished episode (an ``EpisodeRecord``)."""
        self._returns.append(record.episode_return)
        if record.video is not None:
            self.filmed.append(record.episode)

    @property
    def returns(self) -> np.ndarray:
        return np.frombuffer(self._returns)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start).

    >>> moving_average(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist()
    [1.0, 1.5, 2.5, 3.5]
    """
    totals = np.concatenate([[0.0], np.cumsum(values, dtype=float)])
    end = np.arange(1, len(values) + 1)
    start = np.maximum(0, end - window)
    return (totals[end] - totals[start]) / (end - start)


def plot_learning_curve(
    returns: np.ndarray,
    filmed: Sequence[int],
    window: int,
    path: Path,
    memory: Memory | None = None,
) -> Any:
    """Returns per episode, their moving average (drawn from ``window`` episodes on) and a mark
    at every filmed episode, with the run's memory below where ``memory`` (episodes, bytes) is
    given; saved to ``path``. Returns the figure, whose lines hold the data drawn."""
    fig = learning_curve_figure(returns, filmed, window, memory)
    _save(fig, path)
    return fig


def learning_curve_png(
    returns: np.ndarray, filmed: Sequence[int], window: int, memory: Memory | None = None
) -> bytes:
    """The learning curve as PNG bytes (for a tracker)."""
    buffer = io.BytesIO()
    learning_curve_figure(returns, filmed, window, memory).savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def learning_curve_figure(
    returns: np.ndarray, filmed: Sequence[int], window: int, memory: Memory | None = None
) -> Any:
    """The figure ``plot_learning_curve`` saves."""
    fig = _figure((10, 8) if memory is not None else (10, 6))
    if memory is not None:
        ax, ax_memory = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    else:
        ax = fig.subplots()
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
    ax.set_ylabel("return")
    ax.set_title("Learning progress")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if memory is not None:
        episodes, rss = memory
        ax_memory.plot(episodes, np.asarray(rss) / 2**20, color="tab:gray", gid="memory")
        ax_memory.set_ylabel("memory (MiB)")
        ax_memory.set_ylim(bottom=0)
        ax_memory.grid(True, alpha=0.3)
        ax = ax_memory
    ax.set_xlabel("episode")
    fig.tight_layout()
    return fig


def plot_learning_curves(
    groups: Sequence[tuple[str, Sequence[np.ndarray]]], window: int, path: Path
) -> Any:
    """Per group (a label and its runs' returns), the across-run mean of each run's moving
    average, with a 95% Student-t band where a group has two runs or more."""
    fig = _figure((9, 5.5))
    ax = fig.subplots()
    for label, runs in groups:
        if not runs:
            continue
        length = min(len(r) for r in runs)  # a group's runs have one length unless cut short
        curves = np.array([moving_average(r[:length], window) for r in runs])
        mean = curves.mean(axis=0)
        x = np.arange(length)
        (line,) = ax.plot(x, mean, label=f"{label} (n={len(runs)})")
        if len(runs) >= 2:
            sem = curves.std(axis=0, ddof=1) / np.sqrt(len(runs))
            half = t_quantile(0.975, len(runs) - 1) * sem
            ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("episode")
    ax.set_ylabel(f"return, moving average over {window} episodes")
    ax.set_title("Learning curves: mean across seeds, 95% t-interval band")
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    _save(fig, path)
    return fig


def load_matplotlib() -> None:
    """Import what drawing and saving a figure needs (about 0.4 s), before the first figure."""
    import matplotlib.backends.backend_agg
    import matplotlib.figure
    import matplotlib.font_manager  # noqa: F401 (reads the font cache)


def _figure(size: tuple[float, float]) -> Any:
    """A matplotlib figure of its own, not pyplot's: no global state, so a tracker's thread may
    draw while the run goes on."""
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def _save(fig: Any, path: Path) -> None:
    """Write the figure whole (temporary name, then rename)."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=path.suffix[1:])
