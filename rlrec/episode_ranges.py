"""Which episodes a tracker holds, as ranges: what ``trackers.json`` keeps per tracker.

A tracker's episodes are not always one prefix: a run stopped with workers finishes later
episodes while earlier ones never came, and a tracker that was down has a hole. Ranges say
exactly what is there, so that a resume, a retry or ``rlrec-sync`` sends what is missing, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class EpisodeRanges:
    """A set of episode indices kept as sorted, disjoint, inclusive ``[first, last]`` ranges.

    >>> held = EpisodeRanges([[0, 4]])
    >>> held.add_all([5, 6, 9])
    >>> held.ranges(), len(held), 7 in held, 9 in held
    ([[0, 6], [9, 9]], 8, False, True)
    >>> held.missing(11)
    [7, 8, 10]
    """

    def __init__(self, ranges: Iterable[Iterable[int]] = ()) -> None:
        self._ranges: list[list[int]] = []
        for first, last in ranges:
            self.add_all(range(int(first), int(last) + 1))

    @classmethod
    def of_entry(cls, entry: dict[str, Any] | None) -> EpisodeRanges:
        """The episodes a ``trackers.json`` entry says its tracker holds (an entry written before
        ranges says ``logged``: the first that many)."""
        if not entry:
            return cls()
        if "episodes" in entry:
            return cls(entry["episodes"])
        logged = int(entry.get("logged", 0))
        return cls([[0, logged - 1]] if logged else [])

    def add_all(self, episodes: Iterable[int]) -> None:
        """Add ``episodes`` (in any order)."""
        ranges = self._ranges
        for episode in sorted(set(episodes)):
            if ranges and ranges[-1][0] - 1 <= episode <= ranges[-1][1] + 1:
                ranges[-1][0] = min(ranges[-1][0], episode)
                ranges[-1][1] = max(ranges[-1][1], episode)
                continue
            ranges.append([episode, episode])
        ranges.sort()
        merged: list[list[int]] = []
        for first, last in ranges:
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        self._ranges = merged

    def __contains__(self, episode: int) -> bool:
        return any(first <= episode <= last for first, last in self._ranges)

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in self._ranges)

    def ranges(self) -> list[list[int]]:
        """The ranges, as ``trackers.json`` keeps them."""
        return [list(r) for r in self._ranges]

    def end(self) -> int:
        """One past the highest episode held (0 when none)."""
        return self._ranges[-1][1] + 1 if self._ranges else 0

    def missing(self, stop: int) -> list[int]:
        """The episodes below ``stop`` that are not held."""
        return [e for e in range(stop) if e not in self]
