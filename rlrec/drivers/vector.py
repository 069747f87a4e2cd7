"""Vector environments: N sub-environments step together, each running episodes of its own.

Every episode keeps its contract seeds, whichever sub-environment runs it and whatever runs beside
it, so a policy that does not learn gives the rows of the sequential run. Three Gymnasium details
make that so: the vector env is built with autoreset off and each sub-environment is reset by
hand, with the seed of the episode it starts (``reset_mask``); a sub-environment whose episode has
ended is reset before the next step, never stepped; and each sub-environment has its own policy
instance (its own action-space generator, reseeded per episode) unless the policy acts on the
whole batch with ``act_batch``. When no episode is left for a sub-environment it runs unrecorded
placeholder steps until the others finish: the vector env steps all or none.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.async_vector_env import AsyncState
from gymnasium.vector.utils import concatenate, create_empty_array

from rlrec.build import Objects
from rlrec.episode import Episode
from rlrec.records import EpisodeRecord
from rlrec.video import VideoWriter
from rlrec.video import tile as tile_frames

_NO_FRAMES: dict[int, np.ndarray] = {}


class VectorDriver:
    """Runs episodes ``env.num_envs`` at a time on ``objects.vec``; yields each record as its
    episode ends (not in index order: the runner puts them in order).

    Films are per episode (an encoder per sub-environment: their videos overlap in time), or with
    ``video.tile`` one grid video of every sub-environment at each step during which a filmed
    episode runs. A trigger that decides afterwards is left to the runner (it films by replay).
    """

    def __init__(self, objects: Objects) -> None:
        self.o = objects
        self.vec: gym.vector.VectorEnv = objects.vec
        self.n = self.vec.num_envs
        self._sync = isinstance(self.vec, gym.vector.SyncVectorEnv)
        self._films = objects.trigger.films and not objects.trigger.decides_after
        self._tile = self._films and bool(objects.cfg.video.get("tile"))
        space = self.vec.single_action_space
        self._space = space
        self._placeholder = copy.deepcopy(space)  # actions for sub-envs with nothing to run
        self._placeholder.seed(0)
        self._actions = create_empty_array(space, self.n)
        self._grid: np.ndarray | None = None  # the tile's frame, reused from step to step

    def run(self, indices: Iterable[int]) -> Iterator[EpisodeRecord]:
        """Run the episodes ``indices``; yield each as it ends."""
        todo = iter(indices)
        n, signals, hooks = self.n, self.o.signals, self.o.vec_hooks
        running: list[Episode | None] = [None] * n
        tile: VideoWriter | None = None
        finished: list[EpisodeRecord] = []
        try:
            signals.in_episode = True
            obs, _ = self.vec.reset(seed=self._assign(todo, running, range(n)))
            tile = self._begin(running, range(n), obs, tile)
            step, act_batch = self.vec.step, hooks[0].act_batch
            per_episode = self._films and not self._tile
            acts = [h.act for h in hooks]
            placeholder = self._placeholder.sample
            while any(r is not None for r in running):
                if act_batch is not None:
                    actions = act_batch(obs)
                    chosen = list(actions)
                else:
                    chosen = [
                        acts[i](obs[i]) if r is not None else placeholder()
                        for i, r in enumerate(running)
                    ]
                    actions = concatenate(self._space, chosen, self._actions)
                before = obs
                obs, rewards, terminated, truncated, infos = step(actions)
                done = terminated | truncated
                if self._tile and any(r is not None and r.live for r in running):
                    tile = self._add_tile(running, tile)  # before resets: each final state shows
                frames = (
                    self._frames([i for i, r in enumerate(running) if r and r.writer])
                    if per_episode
                    else _NO_FRAMES
                )
                for i, r in enumerate(running):
                    if r is None:
                        continue
                    r.step(
                        before[i], chosen[i], rewards[i], obs[i], terminated[i], truncated[i],
                        frames.get(i),
                    )  # fmt: skip
                    if done[i]:  # a signal now would split a closed video from its record
                        signals.in_episode = False
                        end = bool(terminated[i]), bool(truncated[i])
                        finished.append(self._finish(i, r, *end, infos, tile))
                        running[i] = None
                        signals.in_episode = True
                        signals.check()
                if done.any():
                    ended = np.flatnonzero(done)
                    seeds = self._assign(todo, running, ended)
                    obs, _ = self.vec.reset(seed=seeds, options={"reset_mask": done})
                    tile = self._begin(running, ended, obs, tile)
                if finished:
                    signals.in_episode = False  # yield only between steps
                    yield from finished
                    finished.clear()
                    signals.check()  # a signal that came while the records were taken in
                    signals.in_episode = True
            if tile is not None:
                tile.close()
                tile = None
        except GeneratorExit:  # the caller stopped taking episodes
            self._abort(running, tile)
            raise
        except BaseException:
            signals.in_episode = False
            self._abort(running, tile)
            yield from finished  # ended (their videos complete) before the stop: not lost
            raise
        finally:
            signals.in_episode = False

    @staticmethod
    def _abort(running: list[Episode | None], tile: VideoWriter | None) -> None:
        """Drop the videos in progress: never a half-written file under a final name."""
        for r in running:
            if r is not None:
                r.abort()
        if tile is not None:
            tile.abort()

    def _assign(
        self, todo: Iterator[int], running: list[Episode | None], slots: Iterable[int]
    ) -> list[int | None]:
        """Give each of ``slots`` its next episode; the reset seeds for every sub-environment
        (None for those not reset now, or with nothing left to run)."""
        seeds: list[int | None] = [None] * self.n
        for i in slots:
            index = next(todo, None)
            if index is None:
                continue
            r = Episode.of_run(index, self.o.seed, self.o.vec_hooks[i], env_index=i)
            r.live = self._films and self.o.trigger.before(index)
            running[i], seeds[i] = r, r.seed
        return seeds

    def _begin(
        self,
        running: list[Episode | None],
        slots: Iterable[int],
        obs: Any,
        tile: VideoWriter | None,
    ) -> VideoWriter | None:
        """Begin the episodes just assigned to ``slots``: digest, clock, the reset frame."""
        new = [i for i in slots if running[i] is not None]
        filmed = [i for i in new if running[i].live]
        if self._tile:
            if tile is None and filmed:
                tile = self._add_tile(running, tile)  # the first grid: reset frames
            filmed = []
        frames = self._frames(filmed)
        for i in new:
            writer = self.o.filming.open(running[i].index, slot=i) if i in frames else None
            running[i].begin(obs[i], writer, frames.get(i))
        return tile

    def _finish(
        self,
        i: int,
        r: Episode,
        terminated: bool,
        truncated: bool,
        infos: dict[str, Any],
        tile: VideoWriter | None,
    ) -> EpisodeRecord:
        o = self.o
        info = sub_info(infos, i, o.success.key)
        record = r.finish(terminated, truncated, o.success(r.episode_return, info))
        if r.writer is not None:
            o.filming.settle(record, r.writer, live=True)
            r.writer = None
        elif self._tile and r.live:
            o.filming.shared(record, o.filming.tile_path)
        return record

    def _frames(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """The frames of sub-environments ``wanted``.

        Sync: each sub-environment is asked for its own frame. Async: only the processes of the
        sub-environments wanted (Gymnasium's ``render`` asks every one, and each frame crosses
        a pipe: three CartPole sub-environments filming one took 4x as long).
        """
        if not wanted:
            return {}
        if self._sync:
            envs = self.vec.envs
            return {i: envs[i].render() for i in wanted}
        if isinstance(self.vec, gym.vector.AsyncVectorEnv) and len(wanted) < self.n:
            return _render_some(self.vec, wanted)
        frames = self.vec.render()
        return {i: frames[i] for i in wanted}

    def _add_tile(self, running: list[Episode | None], tile: VideoWriter | None) -> VideoWriter:
        """A grid frame of every sub-environment (black where nothing is recorded), at each step
        during which a filmed episode runs; the grid video is opened at the first."""
        if tile is None:
            tile = self.o.filming.open_path(self.o.filming.tile_path)
        frames = self._frames(list(range(self.n)))
        shown = [frames[i] if running[i] is not None else None for i in range(self.n)]
        self._grid = tile_frames(shown, self._grid)
        tile.add(self._grid)
        return tile


def sub_info(infos: dict[str, Any], i: int, key: str | None) -> dict[str, Any]:
    """Sub-environment ``i``'s entry for ``key`` of a vector env's batched infos (``_key`` says
    which sub-environments reported one)."""
    if key is None or key not in infos or not infos[f"_{key}"][i]:
        return {}
    return {key: infos[key][i]}


def _render_some(vec: gym.vector.AsyncVectorEnv, wanted: list[int]) -> dict[int, np.ndarray]:
    """The frames of the sub-environments ``wanted`` of an async vector env, asked of their
    processes alone, in the words ``AsyncVectorEnv.call_async`` uses (between two steps: no
    call of its own is pending then); an env that raises is reported as Gymnasium reports it.

    While the answers are owed the env says it waits for a call, as ``call_async`` would: a
    signal that lands meanwhile leaves it so, and ``close_vector_env`` then ends its processes
    instead of asking them to close through pipes that still hold a frame.
    """
    pipes = [vec.parent_pipes[i] for i in wanted]
    vec._state = AsyncState.WAITING_CALL
    for pipe in pipes:
        pipe.send(("_call", ("render", (), {})))
    replies = [pipe.recv() for pipe in pipes]
    vec._state = AsyncState.DEFAULT
    if not all(ok for _, ok in replies):
        successes = [True] * vec.num_envs
        for i, (_, ok) in zip(wanted, replies, strict=True):
            successes[i] = ok
        vec._raise_if_errors(successes)
    return {i: frame for i, (frame, _) in zip(wanted, replies, strict=True)}
