"""``Recorder``: the whole of rlrec around a loop the user owns.

A driver decides where episodes run; this one is the driver in which the user's code runs them.
Each ``reset`` starts an ``Episode`` of the episode core (its seeds, its film), each ``step``
feeds it, and the step that ends it hands its record to the ``Runner``'s bookkeeping: the totals,
the sinks (Parquet, report, trackers, ...), memory samples; ``close`` writes ``summary.json``.
So the run directory is the one ``python run.py`` writes, without Hydra's ``.hydra/`` record: its
config (with the Recorder's arguments under ``recorder``) is in ``episodes.parquet``'s metadata.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
from omegaconf import OmegaConf

from rlrec.envs import make_env
from rlrec.episode import Episode
from rlrec.mujoco_envs import aim_camera
from rlrec.seeding import episode_seed, policy_seed
from rlrec.wrappers.loop import EndsRun, LoopRun, loop_objects, new_run_dir, no_hooks


class Recorder(EndsRun, gym.Wrapper):
    """Record every episode of ``env`` that the user's loop runs, as ``python run.py`` would.

    - ``run_dir``: the run directory (default ``outputs/YYYY-MM-DD/HH-MM-SS`` under the current
      folder, as the CLI's);
    - ``trigger``: which episodes are filmed: a trigger object (``rlrec.triggers``), a callable
      ``episode -> bool`` (Gymnasium's ``episode_trigger``), a config dict as in
      ``conf/trigger/*.yaml`` (with ``_target_``) or the name of one (``"every"``); default
      ``"capped_cubic"``, Gymnasium's schedule;
    - ``video``: keys of the ``video`` node (``codec``, ``fps``, ``name_prefix``, ``preset``,
      ``crf``, ``timelapse``);
    - ``sinks``: sink objects, config dicts (with ``_target_``) or names of ``conf/sinks``
      presets; default ``["parquet", "console", "report"]``;
    - ``seed``: the run seed. A ``reset()`` without a seed then resets episode ``i`` with
      ``ss(seed, i)`` and seeds ``action_space`` with ``ss(seed, i, 1)``, as ``python run.py``
      does; an explicit ``reset(seed=x)`` is honoured and recorded.

    Close it (or use ``with``) to write ``summary.json`` and the report; an episode the loop
    resets before it ends is not recorded. ``summary`` holds the summary once closed.

    >>> import tempfile
    >>> env = Recorder(gym.make("CartPole-v1"), tempfile.mkdtemp(), trigger="never",
    ...                sinks=["parquet"], seed=0)
    >>> for _ in range(3):
    ...     obs, info = env.reset()
    ...     done = False
    ...     while not done:
    ...         obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    ...         done = terminated or truncated
    >>> env.close()
    >>> env.summary["n"], env.summary["status"]
    (3, 'complete')
    """

    def __init__(
        self,
        env: gym.Env,
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
        if isinstance(env, gym.vector.VectorEnv):
            raise TypeError(
                "Recorder wraps a plain env; for a vector env use rlrec.wrappers.vector.Recorder"
            )
        gym.Wrapper.__init__(self, env)
        self.run_dir = new_run_dir(run_dir)
        env_node, rebuild_error = _env_node(env)
        replay_env = (
            None
            if rebuild_error
            else functools.partial(
                make_env,
                OmegaConf.create(env_node),
                render=True,
                log_dir=self.run_dir,
                follow_agent=False,  # the user's env, filmed through the camera they gave it
            )
        )
        arguments = {
            "trigger": trigger,
            "video": video,
            "sinks": sinks,
            "seed": seed,
            "success_threshold": success_threshold,
            "success_key": success_key,
            "memory_every_s": memory_every_s,
        }
        hooks = no_hooks(reset=self._seed_actions)
        objects = loop_objects(env, self.run_dir, env_node, arguments, hooks, replay_env)
        objects.cfg.recorder.rebuild_error = rebuild_error  # what rlrec-replay will say
        self._run_seed = seed
        self._run = LoopRun(objects)
        self._next = 0  # the index of the next episode to start
        self._finalizer = self._run.finalize_with(self)

    @property
    def episode_index(self) -> int:
        """The index of the episode under way (or of the next one, between episodes)."""
        return self._next

    @property
    def recording(self) -> bool:
        """Whether the episode under way is being filmed (live, or kept in case it is chosen)."""
        episode = self._run.running.get(0)
        return episode is not None and episode.writer is not None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start the next episode: reset with ``seed``, else with the run's seed for it."""
        run = self._run
        run.drop(0)  # an episode reset before its end: not recorded, its index runs again
        index, reset_seed, actions_seed = self._next, seed, None
        if seed is None and self._run_seed is not None:
            reset_seed = episode_seed(self._run_seed, index)
            actions_seed = policy_seed(self._run_seed, index)
        episode = Episode(index, run.objects.hooks, seed=reset_seed, policy_seed=actions_seed)
        obs, info = self.env.reset(seed=reset_seed, options=options)
        aim_camera(self.env)  # a MuJoCo film then shows its episode as a replay of it would
        writer, episode.live = run.objects.filming.begins(index, replayable=reset_seed is not None)
        try:
            episode.begin(obs, writer, self.env.render() if writer is not None else None)
        except BaseException:
            episode.abort()
            raise
        run.running[0] = episode
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env, and record the step in the episode under way."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        run = self._run
        episode = run.running.get(0)
        if episode is None:
            return obs, reward, terminated, truncated, info  # stepped past an episode's end
        try:
            frame = self.env.render() if episode.writer is not None else None
            episode.step(None, action, reward, obs, terminated, truncated, frame)
            if terminated or truncated:
                record = run.finish(0, terminated, truncated, info, episode.live)
                self._next += 1
                run.accept(record)
        except BaseException:
            run.drop(0)
            raise
        return obs, reward, terminated, truncated, info

    def _seed_actions(self, seed: int) -> None:
        self.env.action_space.seed(seed)

    def _close_env(self, **kwargs: Any) -> None:
        gym.Wrapper.close(self)


def _env_node(env: gym.Env) -> tuple[dict[str, Any], str | None]:
    """The ``env`` node that rebuilds ``env`` (from ``env.spec``: id, kwargs, step limit, the
    wrappers that record their arguments), and why it cannot be rebuilt (None if it can)."""
    spec = env.spec
    if spec is None:
        name = type(env.unwrapped).__name__
        node = {"id": name, "max_episode_steps": None, "kwargs": {}, "wrappers": []}
        return node, f"the env ({name}) was not made by gymnasium.make, so it has no env.spec"
    kwargs = {k: v for k, v in spec.kwargs.items() if k != "render_mode"}
    wrappers, problem = [], None
    for wrapper in spec.additional_wrappers:
        if wrapper.kwargs is None:
            problem = f"its wrapper {wrapper.name} does not record its arguments in env.spec"
            continue
        wrappers.append({"_target_": wrapper.entry_point.replace(":", "."), **wrapper.kwargs})
    node = {
        "id": spec.id,
        "max_episode_steps": spec.max_episode_steps,
        "kwargs": kwargs,
        "wrappers": wrappers,
    }
    try:
        json.dumps(node)
        OmegaConf.create(node)
    except (TypeError, ValueError) as err:
        node = {"id": spec.id, "max_episode_steps": spec.max_episode_steps, "kwargs": {}}
        node["wrappers"] = []
        problem = problem or f"its arguments in env.spec are not plain values ({err})"
    return node, problem
