"""Drivers decide where episodes run; each yields finished ``EpisodeRecord``s.

- ``sequential``: one env in this process, one episode after another;
- ``vector``: the sub-environments of a Gymnasium vector env, in lock step;
- ``workers``: worker processes, each running one of the drivers above.

Every driver runs its episodes through the one episode core (``rlrec.episode``); the runner puts
what they yield in episode order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rlrec.build import Objects
from rlrec.drivers.sequential import run_sequential
from rlrec.drivers.vector import VectorDriver
from rlrec.records import EpisodeRecord


def run_here(objects: Objects, indices: Iterable[int]) -> Iterator[EpisodeRecord]:
    """Run ``indices`` in this process: on the vector env if there is one, else one by one."""
    if objects.vec is not None:
        yield from VectorDriver(objects).run(indices)
    else:
        yield from run_sequential(objects, indices)
