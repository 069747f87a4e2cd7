"""Triggers decide which episodes are filmed.

Gymnasium's triggers are callables on the episode index, decided before the episode starts; ours
are too (``trigger(episode) -> bool``). A trigger that can only decide once an episode has ended
(on its return) sets ``decides_after`` and implements ``after_episode``; the runner then keeps
what it needs to film the episode after the fact.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any

from rlrec.config import check_choice, check_number, is_number
from rlrec.errors import ConfigError
from rlrec.schedule import capped_cubic


class Trigger:
    """Films no episode; subclasses say which ones.

    A trigger of your own need not derive from this class: any class with ``__call__(episode)
    -> bool`` will do, named by ``trigger._target_``. One that decides after the episode sets
    ``decides_after = True`` and implements ``after_episode(episode, episode_return) -> bool``.
    The attributes below are read (with these defaults) by ``TriggerView`` alone.
    """

    #: Whether any episode can be filmed at all (decides if the env is built to render).
    films: bool = True
    #: Whether the decision waits for the episode's end (see ``after_episode``).
    decides_after: bool = False
    #: Why an episode this trigger chose is filmed.
    reason: str = "never"
    #: Whether the trigger will choose no more episodes (``max_videos`` reached).
    exhausted: bool = False
    #: How a trigger that decides afterwards gets its films: replay, buffer or auto.
    method: str = "replay"

    def __call__(self, episode: int) -> bool:
        """Film ``episode`` live, as it runs?"""
        return False

    def after_episode(self, episode: int, episode_return: float) -> bool:
        """Film ``episode`` now that it has ended with ``episode_return``?"""
        return False


class Every(Trigger):
    """Film every episode (evaluation).

    >>> Every()(7)
    True
    """

    reason = "every"

    def __call__(self, episode: int) -> bool:
        return True


class Periodic(Trigger):
    """Film episodes 0, period, 2·period, … (training progress).

    >>> [e for e in range(1000) if Periodic(period=250)(e)]
    [0, 250, 500, 750]
    """

    reason = "periodic"

    def __init__(self, period: int = 250) -> None:
        check_number("trigger.period", period, 1, integer=True, example=250)
        self.period = period

    def __call__(self, episode: int) -> bool:
        return episode % self.period == 0


class CappedCubic(Trigger):
    """Film episodes 0, 1, 8, 27, ..., 729, then every 1000th: Gymnasium's default schedule (the
    default of ``rlrec.wrappers.RecordVideo`` and ``Recorder``).

    >>> [e for e in range(100) if CappedCubic()(e)]
    [0, 1, 8, 27, 64]
    """

    reason = "capped_cubic"

    def __call__(self, episode: int) -> bool:
        return capped_cubic(episode)


class Never(Trigger):
    """Film nothing: statistics only, and the env is built without rendering."""

    films = False
    reason = "never"


class Adaptive(Trigger):
    """Film the episodes whose return stands out, decided once each episode has ended.

    ``criterion``:

    - ``best``: a return strictly greater than every earlier one (episode 0 counts);
    - ``worst``: strictly lower than every earlier one (episode 0 counts);
    - ``threshold``: return >= ``threshold`` (``above=true``) or <= it (``above=false``);
    - ``outlier``: |return - mean| > ``z`` sample standard deviations of the previous ``window``
      returns (the current one excluded), once ``warmup`` episodes have run.

    ``max_videos`` caps the films of a run. ``method`` says how a chosen episode is filmed: by
    ``replay`` (reset with its seed, the same actions, rendering on), by ``buffer`` (every episode
    filmed to a temporary file, kept or deleted at its end), or ``auto``: replay, and buffer from
    the first episode that does not replay exactly.

    >>> trigger = Adaptive(criterion="best")
    >>> [trigger.after_episode(e, r) for e, r in enumerate([3.0, 1.0, 3.0, 4.0])]
    [True, False, False, True]
    """

    decides_after = True
    CRITERIA = ("best", "worst", "threshold", "outlier")
    METHODS = ("auto", "replay", "buffer")

    def __init__(
        self,
        criterion: str = "best",
        threshold: float | None = None,
        above: bool = True,
        z: float = 2.0,
        window: int = 100,
        warmup: int = 10,
        max_videos: int | None = None,
        method: str = "auto",
    ) -> None:
        check_choice("trigger.criterion", criterion, self.CRITERIA)
        check_choice("trigger.method", method, self.METHODS)
        if criterion == "threshold" and not is_number(threshold):
            raise ConfigError(
                "trigger.threshold",
                f"must be a number, got {threshold!r}",
                "pass e.g. trigger.threshold=200 with trigger.criterion=threshold",
            )
        if not is_number(z) or z <= 0:
            raise ConfigError(
                "trigger.z", f"must be a number > 0, got {z!r}", "pass e.g. trigger.z=2"
            )
        check_number("trigger.window", window, 2, integer=True)
        check_number("trigger.warmup", warmup, 0, integer=True)
        check_number("trigger.max_videos", max_videos, 0, integer=True, allow_none=True)
        self.criterion, self.threshold, self.above, self.z = criterion, threshold, above, z
        self.window, self.warmup, self.max_videos, self.method = window, warmup, max_videos, method
        self.reason = criterion
        self.videos = 0
        self._best = -math.inf
        self._worst = math.inf
        self._recent: deque[float] = deque(maxlen=window)
        self._seen = 0

    @property
    def exhausted(self) -> bool:
        """Whether ``max_videos`` films have been chosen already."""
        return self.max_videos is not None and self.videos >= self.max_videos

    def after_episode(self, episode: int, episode_return: float) -> bool:
        chosen = self._stands_out(episode_return) and not self.exhausted
        self.videos += chosen
        self._best = max(self._best, episode_return)
        self._worst = min(self._worst, episode_return)
        self._recent.append(episode_return)
        self._seen += 1
        return chosen

    def _stands_out(self, value: float) -> bool:
        if self.criterion == "best":
            return value > self._best
        if self.criterion == "worst":
            return value < self._worst
        if self.criterion == "threshold":
            return value >= self.threshold if self.above else value <= self.threshold
        if self._seen < max(self.warmup, 2):  # outlier: needs a spread to compare with
            return False
        mean = statistics.fmean(self._recent)
        return abs(value - mean) > self.z * statistics.stdev(self._recent)


class TriggerView:
    """The one reader of a trigger's flags, with defaults for a user's trigger that lacks them.

    >>> view = TriggerView(lambda episode: episode % 3 == 0)
    >>> view.before(3), view.decides_after, view.reason
    (True, False, 'custom')
    """

    def __init__(self, trigger: Any) -> None:
        self.trigger = trigger
        #: Whether any episode can be filmed at all (decides if the env is built to render).
        self.films = bool(getattr(trigger, "films", True))
        #: Whether the decision waits for the episode's end (``after_episode``).
        self.decides_after = bool(getattr(trigger, "decides_after", False))
        #: How a trigger that decides afterwards gets its films: replay, buffer or auto.
        self.method = getattr(trigger, "method", "replay") if self.decides_after else "replay"
        #: Why an episode this trigger chose is filmed (the ``video_reason`` column).
        self.reason = str(getattr(trigger, "reason", None) or "custom")

    @property
    def exhausted(self) -> bool:
        """Whether the trigger will choose no more episodes (``max_videos`` reached)."""
        return bool(getattr(self.trigger, "exhausted", False))

    def before(self, episode: int) -> bool:
        """Film ``episode`` live, as it runs?"""
        return self.films and bool(self.trigger(episode))

    def after(self, episode: int, episode_return: float) -> bool:
        """Film ``episode`` now that it has ended (a trigger that decides afterwards)?"""
        return self.decides_after and bool(self.trigger.after_episode(episode, episode_return))
