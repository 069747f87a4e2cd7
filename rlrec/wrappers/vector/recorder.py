"""``Recorder`` for Gymnasium vector envs: every sub-environment's episodes, around the user's loop.

Each sub-environment runs an ``Episode`` of the episode core at a time. Where its episodes begin
depends on the env's autoreset mode: at ``reset`` (every mode; with ``reset_mask`` for some), at
the step after one ended (``NEXT_STEP``: that step is the sub-environment's reset), or at the
step that ended one (``SAME_STEP``: the returned observation is already the next episode's; the
last one is in ``info["final_obs"]``). Episodes are numbered as they end (``episode`` 0 is the
first to end; several ending at one step in ``env_index`` order) and written in that order.

With ``seed=s`` and ``AutoresetMode.DISABLED`` the Recorder seeds every reset it is asked for
without a seed: episodes are numbered as they start, episode ``i`` is reset with ``ss(s, i)``,
and rows are written in index order, so that a policy that does not learn gives the rows of
``python run.py seed=s env.num_envs=N``. Under the autoreset modes a seed can reach only the
resets the user calls (the first episode of sub-environment ``j`` gets ``ss(s, j)``); an episode
an autoreset started has a null ``seed``.

Films: per episode of the sub-environments in ``video["envs"]`` (default ``[0]``; ``"all"``),
each streamed to an encoder of its own while it runs and kept, under its episode's name, if the
trigger picks it when it ends (or, numbered as they start, picked before it runs); or
``video["tile"]``: one grid video of all sub-environments.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from rlrec.drivers.vector import sub_info
from rlrec.episode import Episode
from rlrec.errors import ConfigError
from rlrec.records import EpisodeRecord
from rlrec.runner import InOrder
from rlrec.seeding import episode_seed
from rlrec.video import VideoWriter, tile
from rlrec.wrappers.loop import EndsRun, LoopRun, loop_objects, new_run_dir, no_hooks
from rlrec.wrappers.vector.statistics import autoreset_mode, reset_mask


class Recorder(EndsRun, VectorWrapper):
    """Record every episode of every sub-environment of ``env`` that the user's loop runs.

    The arguments are those of ``rlrec.wrappers.Recorder``; ``video`` also takes ``envs``
    (the sub-environments to film: a list of indices, or ``"all"``; default ``[0]``) and
    ``tile`` (one grid video of all of them). Close it (or use ``with``) to write the summary.

    >>> import tempfile
    >>> envs = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    >>> envs = Recorder(envs, tempfile.mkdtemp(), trigger="never", sinks=["parquet"])
    >>> _ = envs.reset(seed=1)
    >>> for _ in range(100):
    ...     _ = envs.step(envs.action_space.sample())
    >>> envs.close()
    >>> envs.summary["n"] >= 4
    True
    """

    def __init__(
        self,
        env: VectorEnv,
        run_dir: str | Path | None = None,
        trigger: Any = "capped_cubic",
        video: dict[str, Any] | None = None,
        sinks: list[Any] | None = None,
        seed: int | None = None,
        *,
        success_threshold: float | None = None,
        success_key: str | None = None,
        memory_every_s: float = 1.0,
    ) -> None:
        if not isinstance(env, VectorEnv):
            raise TypeError(
                "this Recorder wraps a vector env; for a plain env use rlrec.wrappers.Recorder"
            )
        VectorWrapper.__init__(self, env)
        self.run_dir = new_run_dir(run_dir)
        video = dict(video or {})
        film_envs = _film_envs(video.pop("envs", [0]), self.num_envs)
        self.autoreset_mode = autoreset_mode(env)
        #: Whether episodes are numbered as they start (and seeded by the Recorder).
        self.numbered_at_start = seed is not None and self.autoreset_mode == AutoresetMode.DISABLED
        arguments = {
            "trigger": trigger,
            "video": video,
            "sinks": sinks,
            "seed": seed,
            "success_threshold": success_threshold,
            "success_key": success_key,
            "memory_every_s": memory_every_s,
        }
        objects = loop_objects(env, self.run_dir, _env_node(env), arguments, no_hooks(), None)
        objects.cfg.recorder.video_envs = sorted(film_envs)
        objects.cfg.recorder.autoreset_mode = self.autoreset_mode.name
        self._tile = _tile(objects, self.numbered_at_start)
        self._film_envs = set() if self._tile or not objects.trigger.films else film_envs
        objects.filming.finish_in_background = True  # films end every few steps: never wait
        self._seed = seed
        self._run = LoopRun(objects)
        self._finalizer = self._run.finalize_with(self)
        self._started = 0  # episodes begun (their index, when numbered at start)
        self._ended = 0  # episodes ended (their index, when numbered as they end)
        self._in_order = InOrder(0)
        self._autoreset_next: np.ndarray | None = None  # NEXT_STEP: these reset at this step
        self._frames = SubEnvFrames(env)
        self._log = StepLog(copy_obs=getattr(env.unwrapped, "copy", True) is False)
        self._starts = [0] * self.num_envs  # each running episode's first step in the log
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        # the slots of self._run.running as a mask, for the per-step array operations
        self._running = np.zeros(self.num_envs, dtype=bool)
        self._grid = GridFilm(objects.filming) if self._tile else None

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all sub-environments (or those of ``options["reset_mask"]``); each begins an
        episode. An episode reset before it ended is dropped."""
        mask = reset_mask(options, self.num_envs)
        slots = list(range(self.num_envs)) if mask is None else np.flatnonzero(mask).tolist()
        for slot in slots:
            self._run.drop(slot)
            self._running[slot] = False
        # the contract's seeds; under an autoreset mode only the first episodes can have them
        contract = self.numbered_at_start or self._started == 0
        run_seed = self._seed if contract else None
        seeds = _reset_seeds(seed, slots, self.num_envs, run_seed, self._started)
        if self._seed is not None and self._started == 0:
            self.env.action_space.seed(self._seed)  # the loop's samples, reproducible
        given = None if all(s is None for s in seeds) else seeds
        obs, info = self.env.reset(seed=given, options=options)
        if mask is None or self._autoreset_next is None:
            self._autoreset_next = None
        else:  # NEXT_STEP: those that ended and were not reset now still reset at the next step
            self._autoreset_next = self._autoreset_next & ~mask
        self._begin(slots, obs, seeds)
        self._film_grid()
        return obs, info

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every sub-environment and record the step in each running episode: the totals
        as array operations, the actions and observations in the step log (cut per episode when
        it ends), the frames of the filmed ones."""
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        dones = terminations | truncations
        any_done = dones.any()
        restarted = self._autoreset_next
        counted = self._running
        if restarted is not None:  # NEXT_STEP: this step reset the sub-environments that ended
            self._begin(np.flatnonzero(restarted).tolist(), obs, [None] * self.num_envs, 1)
            counted = self._running & ~restarted
        np.add(self._returns, rewards, out=self._returns, where=counted)
        self._lengths += counted
        self._log.add(actions, obs)
        same_step = any_done and self.autoreset_mode == AutoresetMode.SAME_STEP
        if self._film_envs:
            self._film_step(counted, dones if same_step else None)
        if self._grid is not None:
            self._film_grid()
        if any_done:
            ended = np.flatnonzero(dones & self._running).tolist()
            final_obs = infos.get("final_obs") if same_step else None
            self._end_episodes(ended, terminations, truncations, infos, final_obs)
            if same_step:
                self._begin(np.flatnonzero(dones).tolist(), obs, [None] * self.num_envs)
        next_step = any_done and self.autoreset_mode == AutoresetMode.NEXT_STEP
        self._autoreset_next = dones if next_step else None
        return obs, rewards, terminations, truncations, infos

    def _film_step(self, counted: np.ndarray, same_step_dones: np.ndarray | None) -> None:
        """This step's frame for each filmed episode (not under same-step autoreset for one that
        ended: its sub-environment already shows the next episode)."""
        running = self._run.running
        filmed = [s for s, e in running.items() if e.writer is not None and counted[s]]
        if same_step_dones is not None:
            filmed = [s for s in filmed if not same_step_dones[s]]
        for slot, frame in self._frames(filmed).items():
            running[slot].writer.add(frame)

    # -- inside ---------------------------------------------------------------------------------
    def _begin(
        self, slots: Iterable[int], obs: Any, seeds: list[int | None], later: int = 0
    ) -> None:
        """Begin an episode in each of ``slots`` from its reset observation; open the films
        (numbered as they start: those the trigger picks, or all in case it picks them after;
        numbered as they end: all of the filmed sub-environments, named when they end).
        ``later``: the episodes' first step is not the next one logged but the one after (a
        reset inside a step)."""
        run = self._run
        filming, trigger, hooks = run.objects.filming, run.objects.trigger, run.objects.hooks
        started: list[Episode] = []
        for slot in slots:
            index = self._started if self.numbered_at_start else -1
            self._started += 1
            episode = Episode(index, hooks, seed=seeds[slot], policy_seed=None, env_index=slot)
            if self.numbered_at_start:
                episode.live = trigger.films and trigger.before(index)
            elif self._tile:
                episode.live = True  # trigger 'every': checked at the start
            started.append(episode)
        wanted = [
            e.env_index
            for e in started
            if e.env_index in self._film_envs
            and not trigger.exhausted
            and (e.live or trigger.decides_after or not self.numbered_at_start)
        ]
        frames = self._frames(wanted)
        for episode in started:
            slot, writer = episode.env_index, None
            if slot in frames:
                writer = (
                    filming.open(episode.index, slot=slot)
                    if self.numbered_at_start
                    else filming.open_pending(slot)
                )
            episode.begin(obs[slot], writer, frames.get(slot))
            run.running[slot] = episode
            self._starts[slot] = self._log.now + later
            self._returns[slot], self._lengths[slot] = 0.0, 0
            self._running[slot] = True

    def _end_episodes(
        self,
        slots: list[int],
        terminations: np.ndarray,
        truncations: np.ndarray,
        infos: dict,
        final_obs: Any,
    ) -> None:
        """The episodes of ``slots`` ended at this step: records, films, the sinks."""
        run = self._run
        objects = run.objects
        key = objects.success.key
        final_info = (
            infos.get("final_info") if self.autoreset_mode == AutoresetMode.SAME_STEP else None
        )
        for slot in slots:
            episode = run.running.get(slot)
            if episode is None:
                continue
            if not self.numbered_at_start:
                episode.index = self._ended
            self._ended += 1
            last = final_obs[slot] if final_obs is not None else None
            episode.actions, observations = self._log.cut(slot, self._starts[slot], last)
            episode.digest.update(observations)  # one update: the same digest as one per step
            episode.episode_return = float(self._returns[slot])
            episode.length = int(self._lengths[slot])
            self._running[slot] = False
            info = sub_info(final_info if final_info is not None else infos, slot, key)
            live = episode.live or (
                episode.writer is not None and objects.trigger.before(episode.index)
            )
            shares_grid = self._tile and episode.live
            record = run.finish(
                slot, bool(terminations[slot]), bool(truncations[slot]), info, live,
                filmable=slot in self._film_envs,
            )  # fmt: skip
            if shares_grid:
                objects.filming.shared(record, objects.filming.tile_path)
            self._accept(record)
        if self._log.size > 512:  # now and then: the oldest running episode's start moved on
            running = np.flatnonzero(self._running)
            self._log.forget_before(min((self._starts[s] for s in running), default=self._log.now))

    def _accept(self, record: EpisodeRecord) -> None:
        """Hand ``record`` to the sinks in index order."""
        if not self.numbered_at_start:
            self._run.accept(record)
            return
        self._in_order.add(record)
        for ready in self._in_order.due():
            self._run.accept(ready)

    def _film_grid(self) -> None:
        """With ``video.tile``: a grid frame while a filmed episode runs."""
        running = self._run.running
        if self._grid is not None and any(e.live for e in running.values()):
            self._grid.add(self._frames(list(range(self.num_envs))), running)

    def _before_end(self) -> None:
        if self._grid is not None:
            self._grid.close()
        self._run.objects.filming.wait()  # every kept film whole before the sinks close
        for record in self._in_order.rest():  # after an earlier episode that never ended
            self._run.accept(record)

    def _close_env(self, **kwargs: Any) -> None:
        self.env.close(**kwargs)


class StepLog:
    """The action and observation batches of every step since the oldest running episode
    began: an episode's own are cut out when it ends, in a few array operations, instead of a
    Python call per sub-environment per step."""

    def __init__(self, copy_obs: bool) -> None:
        self._actions: list[Any] = []
        self._obs: list[Any] = []
        self._first = 0  # the step number of the first batch kept
        self._copy_obs = copy_obs  # a vector env made with copy=False reuses its array

    @property
    def size(self) -> int:
        """The number of steps kept."""
        return len(self._actions)

    @property
    def now(self) -> int:
        """The number the next logged step will have."""
        return self._first + len(self._actions)

    def add(self, actions: Any, obs: Any) -> None:
        self._actions.append(np.array(actions))  # a copy: the loop may reuse its array
        self._obs.append(np.array(obs) if self._copy_obs else obs)

    def cut(self, slot: int, start: int, last_obs: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Sub-environment ``slot``'s actions and observations from step ``start`` on (the last
        observation replaced by ``last_obs``: the final one that same-step autoreset reports
        apart)."""
        steps = slice(start - self._first, None)
        actions = np.array(self._actions[steps])[:, slot]  # np.array: 3x cheaper than np.stack
        obs = np.array(self._obs[steps])[:, slot]
        if last_obs is not None:
            obs[-1] = last_obs
        return actions, np.ascontiguousarray(obs)

    def forget_before(self, step: int) -> None:
        """Drop the batches older than ``step`` (no running episode needs them)."""
        drop = step - self._first
        if drop > 0:
            del self._actions[:drop], self._obs[:drop]
            self._first = step


class SubEnvFrames:
    """Renders chosen sub-environments of a vector env: each alone where it is synchronous (an
    async one renders all of them in their processes in any case)."""

    def __init__(self, env: VectorEnv) -> None:
        base = env.unwrapped
        self._env = env
        self._sub_envs = base.envs if isinstance(base, gym.vector.SyncVectorEnv) else None

    def __call__(self, slots: list[int]) -> dict[int, np.ndarray]:
        if not slots:
            return {}
        if self._sub_envs is not None:
            return {slot: self._sub_envs[slot].render() for slot in slots}
        frames = self._env.render()
        return {slot: frames[slot] for slot in slots}


class GridFilm:
    """``video.tile``: one grid video of every sub-environment (black where none runs)."""

    def __init__(self, filming: Any) -> None:
        self._filming = filming
        self._writer: VideoWriter | None = None
        self._grid: np.ndarray | None = None

    def add(self, frames: dict[int, np.ndarray], running: dict[int, Episode]) -> None:
        if self._writer is None:
            self._writer = self._filming.open_path(self._filming.tile_path)
        shown = [frames[s] if s in running else None for s in range(len(frames))]
        self._grid = tile(shown, self._grid)
        self._writer.add(self._grid)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _reset_seeds(
    seed: Any, slots: list[int], n: int, run_seed: int | None, started: int
) -> list[int | None]:
    """The seed each sub-environment is reset with (None: none, or not reset now): the user's
    (one seed ``s`` is ``s + j`` for sub-environment ``j``, Gymnasium's rule), else with
    ``run_seed`` the contract's for the episodes that start now, numbered from ``started``."""
    if isinstance(seed, int):
        given = [seed + j for j in range(n)]
    elif seed is not None:
        given = list(seed)
    else:
        given = [None] * n
        if run_seed is not None:
            for k, slot in enumerate(slots):
                given[slot] = episode_seed(run_seed, started + k)
    return [given[j] if j in slots else None for j in range(n)]


def _tile(objects: Any, numbered_at_start: bool) -> bool:
    """Whether ``video.tile`` films a grid; refused where the trigger cannot decide in time."""
    tile = bool(objects.cfg.video.get("tile")) and objects.trigger.films
    if tile and not numbered_at_start and objects.trigger.reason != "every":
        objects.close()
        raise ConfigError(
            "video.tile",
            "the grid is filmed while the episodes run, and episodes numbered as they end "
            "are chosen only then",
            "use trigger='every' with video.tile, or seed=<s> with AutoresetMode.DISABLED",
        )
    return tile


def _film_envs(envs: Any, n: int) -> set[int]:
    """``video["envs"]``: a list of sub-environment indices, or ``"all"``."""
    if envs == "all":
        return set(range(n))
    if isinstance(envs, int) and not isinstance(envs, bool):
        envs = [envs]
    ok = isinstance(envs, list | tuple) and all(
        isinstance(e, int) and not isinstance(e, bool) and 0 <= e < n for e in envs
    )
    if not ok:
        raise ConfigError(
            "video.envs",
            f"must be a list of sub-environment indices below {n}, or 'all'; got {envs!r}",
            "pass e.g. video={'envs': [0]} or video={'envs': 'all'}",
        )
    return set(envs)


def _env_node(env: VectorEnv) -> dict[str, Any]:
    """The ``env`` node of a vector env: its id and keyword arguments from ``env.spec`` (what
    ``rlrec-replay`` rebuilds one sub-environment from), its size and vectorization."""
    spec = env.spec
    vectorization = "async" if isinstance(env.unwrapped, gym.vector.AsyncVectorEnv) else "sync"
    node = {
        "id": type(env.unwrapped).__name__,
        "max_episode_steps": None,
        "kwargs": {},
        "wrappers": [],
        "num_envs": env.num_envs,
        "vectorization": vectorization,
    }
    if spec is not None:
        skip = ("render_mode", "num_envs", "vectorization_mode", "vector_kwargs", "wrappers")
        kwargs = {k: v for k, v in spec.kwargs.items() if k not in skip}
        try:
            json.dumps(kwargs)
        except (TypeError, ValueError):
            kwargs = {}
        node.update(id=spec.id, max_episode_steps=spec.max_episode_steps, kwargs=kwargs)
    return node
