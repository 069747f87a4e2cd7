"""One env in this process: episodes one after another, in index order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rlrec.build import Objects
from rlrec.episode import Episode
from rlrec.records import EpisodeRecord


def run_sequential(objects: Objects, indices: Iterable[int]) -> Iterator[EpisodeRecord]:
    """Run the episodes ``indices`` on ``objects.env``; yield each record as it ends."""
    for index in indices:
        objects.signals.check()
        yield run_episode(objects, index)


def run_episode(objects: Objects, index: int) -> EpisodeRecord:
    """Run one episode from its contract seeds; film it if the trigger says so."""
    env, filming = objects.env, objects.filming
    episode = Episode.of_run(index, objects.seed, objects.hooks)
    obs, info = env.reset(seed=episode.seed)
    writer, live = filming.begins(index)
    try:
        episode.begin(obs, writer, env.render() if writer is not None else None)
        terminated, truncated, info = episode.run(env, obs, objects.signals)
    except BaseException:
        episode.abort()  # never leave a half-written file under a final name
        raise
    record = episode.finish(terminated, truncated, objects.success(episode.episode_return, info))
    filming.settle(record, writer, live)
    return record
