"""Triggers decide which episodes are filmed.

Gymnasium's triggers are callables on the episode index, decided before the episode starts; ours
are too (``trigger(episode) -> bool``). A trigger that can only decide once an episode has ended
(on its return) sets ``decides_after`` and implements ``after_episode``; the runner then keeps
what it needs to film the episode after the fact.
"""

from __future__ import annotations

from rlrec.errors import ConfigError


class Trigger:
    """Films no episode; subclasses say which ones."""

    #: Whether any episode can be filmed at all (decides if the env is built to render).
    films: bool = True
    #: Whether the decision waits for the episode's end (see ``after_episode``).
    decides_after: bool = False
    #: Why an episode this trigger chose is filmed.
    reason: str = "never"

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
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise ConfigError(
                "trigger.period",
                f"must be an integer >= 1, got {period!r}",
                "pass e.g. trigger.period=250 to film every 250th episode",
            )
        self.period = period

    def __call__(self, episode: int) -> bool:
        return episode % self.period == 0


class Never(Trigger):
    """Film nothing: statistics only, and the env is built without rendering."""

    films = False
    reason = "never"
