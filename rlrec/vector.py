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
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import concatenate, create_empty_array
from omegaconf import DictConfig

from rlrec.envs import make_vector_env
from rlrec.policies import PolicyHooks, build_policy
from rlrec.records import EpisodeRecord
from rlrec.replay import ObsDigest
from rlrec.seeding import episode_seed, policy_seed
from rlrec.signals import StopSignals
from rlrec.triggers import Trigger
from rlrec.video import VIDEOS_DIR, Encoder, VideoSettings, VideoWriter


@dataclass(slots=True)
class _Running:
    """One sub-environment's episode in progress."""

    episode: int
    seed: int
    filmed: bool
    writer: VideoWriter | None = None
    digest: ObsDigest = field(default_factory=ObsDigest)
    actions: list[Any] = field(default_factory=list)
    episode_return: float = 0.0
    length: int = 0
    started: float = 0.0


class VectorLoop:
    """Runs episodes ``env.num_envs`` at a time; yields each record as its episode ends.

    Records come out in the order the episodes end, not by index; the runner puts them in order.
    A trigger that decides afterwards is left to the runner (it films by replay); the others film
    live, one video per episode, or with ``tile`` one grid video of every sub-environment at each
    step during which a filmed episode runs.
    """

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        trigger: Trigger,
        video: VideoSettings,
        signals: StopSignals,
        success: Callable[[float, dict[str, Any]], bool | None],
        success_key: str | None,
        tile_name: str,
    ) -> None:
        self.run_dir, self.trigger, self.video, self._signals = run_dir, trigger, video, signals
        self._success, self._success_key = success, success_key
        self._films = trigger.films and not trigger.decides_after
        self._tile = self._films and bool(cfg.video.get("tile"))
        self._tile_path = run_dir / VIDEOS_DIR / f"{tile_name}.{video.codec.extension}"
        self.vec = make_vector_env(cfg.env, render=self._films)
        try:
            self.n = self.vec.num_envs
            self._sync = isinstance(self.vec, gym.vector.SyncVectorEnv)
            space = self.vec.single_action_space
            obs_space = self.vec.single_observation_space
            first = PolicyHooks.of(
                build_policy(cfg.policy, copy.deepcopy(obs_space), copy.deepcopy(space))
            )
            if first.act_batch is not None:  # one instance for the batch
                self.hooks = [first] * self.n
            else:  # an instance per sub-environment: each reseeds its own generator per episode
                self.hooks = [first] + [
                    PolicyHooks.of(
                        build_policy(cfg.policy, copy.deepcopy(obs_space), copy.deepcopy(space))
                    )
                    for _ in range(self.n - 1)
                ]
            self._placeholder = copy.deepcopy(space)  # actions for sub-envs with nothing to run
            self._placeholder.seed(0)
            self._space = space
            self._actions = create_empty_array(space, self.n)
        except BaseException:
            self.vec.close()
            raise
        self._encoders: list[Encoder | None] = [None] * (1 if self._tile else self.n)
        self._grid: np.ndarray | None = None  # the tile's frame, reused from step to step
        self._ended_cleanly = False  # every call to the vector env answered: close() may talk

    def run(self, episodes: Iterable[int], seed: int) -> Iterator[EpisodeRecord]:
        """Run ``episodes`` (indices) of the run seeded ``seed``; yield each as it ends."""
        todo = iter(episodes)
        n, signals, hooks = self.n, self._signals, self.hooks
        running: list[_Running | None] = [None] * n
        tile: VideoWriter | None = None
        finished: list[EpisodeRecord] = []
        try:
            signals.in_episode = True
            obs, _ = self.vec.reset(seed=self._assign(todo, running, range(n), seed))
            tile = self._start(running, range(n), obs, tile)
            step, act_batch = self.vec.step, hooks[0].act_batch
            per_episode_films = self._films and not self._tile
            acts = [h.act for h in hooks]
            updates = [h.update for h in hooks]  # only a policy that says learning = False
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
                if self._tile and any(r is not None and r.filmed for r in running):
                    tile = self._add_tile(running, tile)  # before resets: each final state shows
                frames = (
                    self._frames([i for i, r in enumerate(running) if r and r.writer])
                    if per_episode_films
                    else {}
                )
                for i, r in enumerate(running):
                    if r is None:
                        continue
                    r.actions.append(chosen[i])
                    r.digest.update(obs[i])
                    r.episode_return += float(rewards[i])
                    r.length += 1
                    if updates[i] is not None:
                        updates[i](
                            obs=before[i],
                            action=chosen[i],
                            reward=rewards[i],
                            next_obs=obs[i],
                            terminated=bool(terminated[i]),
                            truncated=bool(truncated[i]),
                        )
                    if r.writer is not None:
                        r.writer.add(frames[i])
                    if done[i]:  # a signal now would split a closed video from its record
                        signals.in_episode = False
                        finished.append(self._finish(i, r, terminated[i], truncated[i], infos))
                        running[i] = None
                        signals.in_episode = True
                        signals.check()
                if done.any():
                    ended = np.flatnonzero(done)
                    seeds = self._assign(todo, running, ended, seed)
                    obs, _ = self.vec.reset(seed=seeds, options={"reset_mask": done})
                    tile = self._start(running, ended, obs, tile)
                if finished:
                    signals.in_episode = False  # yield only between steps
                    yield from finished
                    finished.clear()
                    signals.check()  # a signal that came while the records were taken in
                    signals.in_episode = True
            if tile is not None:
                tile.close()
                tile = None
            self._ended_cleanly = True
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
    def _abort(running: list[_Running | None], tile: VideoWriter | None) -> None:
        """Drop the videos in progress: never a half-written file under a final name."""
        for r in running:
            if r is not None and r.writer is not None:
                r.writer.abort()
        if tile is not None:
            tile.abort()

    def close(self) -> None:
        for encoder in self._encoders:
            if encoder is not None:
                encoder.shutdown()
        if self._sync or self._ended_cleanly:
            self.vec.close()
        else:
            _terminate(self.vec)

    def _assign(
        self, todo: Iterator[int], running: list[_Running | None], slots: Iterable[int], seed: int
    ) -> list[int | None]:
        """Give each of ``slots`` its next episode; the reset seeds for every sub-environment
        (None for those not reset now, or with nothing left to run)."""
        seeds: list[int | None] = [None] * self.n
        for i in slots:
            episode = next(todo, None)
            if episode is None:
                continue
            filmed = self._films and self.trigger(episode)
            r = _Running(episode, episode_seed(seed, episode), filmed)
            running[i] = r
            seeds[i] = r.seed
            reset = self.hooks[i].reset
            if reset is not None:
                reset(policy_seed(seed, episode))
        return seeds

    def _start(
        self,
        running: list[_Running | None],
        slots: Iterable[int],
        obs: Any,
        tile: VideoWriter | None,
    ) -> VideoWriter | None:
        """Begin the episodes just assigned to ``slots``: digest, clock, the reset frame."""
        new = [i for i in slots if running[i] is not None]
        for i in new:
            running[i].digest.update(obs[i])
        if self._tile:
            if tile is None and any(running[i].filmed for i in new):
                tile = self._add_tile(running, tile)  # the first grid: reset frames
        else:
            filmed = [i for i in new if running[i].filmed]
            if filmed:
                frames = self._frames(filmed)
                for i in filmed:
                    path = self.run_dir / VIDEOS_DIR / self.video.file_name(running[i].episode)
                    running[i].writer = self._open(i, path)
                    running[i].writer.add(frames[i])
        started = time.perf_counter()
        for i in new:
            running[i].started = started
        return tile

    def _finish(
        self, i: int, r: _Running, terminated: bool, truncated: bool, infos: dict[str, Any]
    ) -> EpisodeRecord:
        duration = time.perf_counter() - r.started
        end_episode = self.hooks[i].end_episode
        if end_episode is not None:
            end_episode(episode=r.episode, episode_return=r.episode_return, length=r.length)
        video = reason = None
        if r.writer is not None:
            video = r.writer.close().relative_to(self.run_dir).as_posix()
            r.writer = None
        elif self._tile and r.filmed:
            video = self._tile_path.relative_to(self.run_dir).as_posix()
        if video is not None:
            reason = self.trigger.reason
        return EpisodeRecord(
            r.episode,
            r.seed,
            r.episode_return,
            r.length,
            duration,
            bool(terminated),
            bool(truncated),
            video,
            self._success(r.episode_return, _sub_info(infos, i, self._success_key)),
            reason,
            r.digest.hexdigest(),
            env_index=i,
            actions=r.actions,
        )

    def _frames(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """The frames of sub-environments ``wanted``.

        Sync: each sub-environment is asked for its own frame. Async: Gymnasium renders every
        sub-environment in its process and sends all frames back, so that is what it costs.
        """
        if not wanted:
            return {}
        if self._sync:
            envs = self.vec.envs
            return {i: envs[i].render() for i in wanted}
        frames = self.vec.render()
        return {i: frames[i] for i in wanted}

    def _add_tile(self, running: list[_Running | None], tile: VideoWriter | None) -> VideoWriter:
        """A grid frame of every sub-environment (black where nothing is recorded), at each step
        during which a filmed episode runs; the grid video is opened at the first."""
        if tile is None:
            tile = self._open(0, self._tile_path)
        frames = self._frames(list(range(self.n)))
        height, width, channels = frames[0].shape
        cols = math.ceil(math.sqrt(self.n))
        if self._grid is None:
            rows = math.ceil(self.n / cols)
            self._grid = np.zeros((rows * height, cols * width, channels), frames[0].dtype)
        for i, frame in frames.items():
            row, col = divmod(i, cols)
            cell = self._grid[row * height : (row + 1) * height, col * width : (col + 1) * width]
            cell[...] = frame if running[i] is not None else 0
        tile.add(self._grid)
        return tile

    def _open(self, i: int, path: Path) -> VideoWriter:
        if self._encoders[i] is None:  # one encoder per sub-environment: their videos overlap
            self._encoders[i] = Encoder()
        path.parent.mkdir(parents=True, exist_ok=True)
        return self._encoders[i].open(path, self.video.codec, self.video.fps)


def _terminate(vec: gym.vector.AsyncVectorEnv) -> None:
    """End an async vector env stopped in the middle of a call without talking to it.

    A signal can land while an answer is half read from a pipe; ``close()`` would first read the
    rest as if it were a whole message (and fail, or wait for ever on a process blocked writing).
    """
    for process in vec.processes:
        if process.is_alive():
            process.terminate()
    for pipe in vec.parent_pipes:
        if pipe is not None:
            pipe.close()
    for process in vec.processes:
        process.join()
    vec.closed = True


def _sub_info(infos: dict[str, Any], i: int, key: str | None) -> dict[str, Any]:
    """Sub-environment ``i``'s entry for ``key`` of a vector env's batched infos (``_key`` says
    which sub-environments reported one)."""
    if key is None or key not in infos or not infos[f"_{key}"][i]:
        return {}
    return {key: infos[key][i]}
