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
import logging
import sys
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

from rlrec.build import Objects, build_for_loop
from rlrec.config import CONF_DIR, instantiate_node
from rlrec.envs import make_env
from rlrec.episode import Episode
from rlrec.errors import ConfigError
from rlrec.hydra_callbacks import check_writable, unique_dir
from rlrec.policies import PolicyHooks
from rlrec.rundir import RunDir
from rlrec.runner import Runner
from rlrec.seeding import episode_seed, policy_seed

log = logging.getLogger(__name__)

#: The sinks of a Recorder that is given none: no progress bar (the loop has its own output).
DEFAULT_SINKS = ("parquet", "console", "report")


class Recorder(gym.Wrapper):
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
        gym.Wrapper.__init__(self, env)
        if run_dir is None:
            run_dir = unique_dir(datetime.now().strftime("outputs/%Y-%m-%d/%H-%M-%S"))
        check_writable(str(run_dir), "run_dir")
        self.run_dir = Path(run_dir).absolute()
        if RunDir(self.run_dir).is_run():  # its rows would mix with this run's
            raise ConfigError(
                "run_dir",
                f"{self.run_dir} holds a recorded run already",
                "pass a new folder, or run_dir=None for outputs/<date>/<time>",
            )
        env_node, rebuild_error = _env_node(env)
        cfg = _config(env_node, trigger, video, sinks, seed)
        cfg.success_threshold, cfg.success_key = success_threshold, success_key
        cfg.memory_every_s = memory_every_s
        trigger_obj = _trigger(trigger, cfg)
        sink_objs = _sinks(sinks, cfg)
        replay_env = (
            None
            if rebuild_error
            else functools.partial(make_env, OmegaConf.create(env_node), render=True)
        )
        hooks = PolicyHooks(
            policy=None,
            act=_no_act,
            act_batch=None,
            reset=self._seed_actions,
            update=None,
            end_episode=None,
            save=None,
            load=None,
        )
        objects = build_for_loop(cfg, self.run_dir, env, trigger_obj, sink_objs, hooks, replay_env)
        cfg.recorder = {  # the arguments, as given, for the config in episodes.parquet
            "env": repr(env),
            "run_dir": str(self.run_dir),
            "trigger": _describe(trigger),
            "video": _describe(video),
            "sinks": [_describe(s) for s in (DEFAULT_SINKS if sinks is None else sinks)],
            "seed": seed,
            "rebuild_error": rebuild_error,
        }
        self._run_seed = seed
        self._session = _Session(objects)
        # a loop that ends without close() (an exception, a forgotten call) still gets its
        # summary: at exit, or when the Recorder is dropped
        self._finalizer = weakref.finalize(self, self._session.end_at_exit)

    @property
    def summary(self) -> dict[str, Any] | None:
        """The run's summary (``summary.json``) once closed; None before."""
        return self._session.summary

    @property
    def episode_index(self) -> int:
        """The index of the episode under way (or of the next one, between episodes)."""
        return self._session.next

    @property
    def recording(self) -> bool:
        """Whether the episode under way is being filmed (live, or kept in case it is chosen)."""
        return self._session.writer is not None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start the next episode: reset with ``seed``, else with the run's seed for it."""
        session = self._session
        session.drop_unfinished()
        index, reset_seed, actions_seed = session.next, seed, None
        if seed is None and self._run_seed is not None:
            reset_seed = episode_seed(self._run_seed, index)
            actions_seed = policy_seed(self._run_seed, index)
        episode = Episode(index, session.objects.hooks, seed=reset_seed, policy_seed=actions_seed)
        obs, info = self.env.reset(seed=reset_seed, options=options)
        writer, live = session.objects.filming.begins(index, replayable=reset_seed is not None)
        try:
            episode.begin(obs, writer, self.env.render() if writer is not None else None)
        except BaseException:
            episode.abort()
            raise
        session.episode, session.writer, session.live = episode, writer, live
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env, and record the step in the episode under way."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        session = self._session
        episode = session.episode
        if episode is None:
            return obs, reward, terminated, truncated, info  # stepped past an episode's end
        try:
            frame = self.env.render() if session.writer is not None else None
            episode.step(None, action, reward, obs, terminated, truncated, frame)
            if terminated or truncated:
                session.finish(terminated, truncated, info)
        except BaseException:
            session.drop_unfinished()
            raise
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Write the summary (and the report, the trackers' ends), then close the env."""
        self._end("complete")

    def __exit__(self, exc_type: Any, *rest: Any) -> bool:
        status = "complete"
        if exc_type is not None:
            status = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
        self._end(status)
        return False

    def _seed_actions(self, seed: int) -> None:
        self.env.action_space.seed(seed)

    def _end(self, status: str) -> None:
        self._finalizer.detach()
        try:
            self._session.end(status)
        finally:
            super().close()


class _Session:
    """A Recorder's run in progress: the runner's bookkeeping and the episode under way (apart
    from the wrapper, so that a Recorder dropped without ``close()`` can still be ended)."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.runner = Runner(objects)
        self.episode: Episode | None = None
        self.writer: Any = None
        self.live = False
        self.next = 0  # the index of the next episode to start
        self.summary: dict[str, Any] | None = None
        try:
            self.runner.start()
        except BaseException:
            objects.close()
            raise

    def finish(self, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        """The episode under way has ended: its record, its film, the sinks."""
        episode, writer, objects = self.episode, self.writer, self.objects
        self.episode, self.writer = None, None
        success = objects.success(episode.episode_return, info)
        record = episode.finish(terminated, truncated, success)
        objects.filming.settle(record, writer, self.live)
        self.next += 1
        self.runner.accept(record)

    def drop_unfinished(self) -> None:
        """The episode under way will not finish (a reset before its end, an error): it leaves
        no row and no film, and its index is run again."""
        if self.episode is not None:
            self.episode.abort()
            self.episode, self.writer = None, None

    def end(self, status: str) -> None:
        if self.summary is None:
            self.drop_unfinished()
            self.summary = self.runner.finish(status)

    def end_at_exit(self) -> None:
        if self.summary is not None:
            return
        failed = getattr(sys, "last_value", None) is not None  # the script ended in an exception
        log.warning("a Recorder was not closed; closing it now (%s)", self.objects.run.path)
        self.end("failed" if failed else "complete")


def _no_act(obs: Any) -> Any:
    raise RuntimeError("a Recorder's actions come from the user's loop")


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


def _config(
    env_node: dict[str, Any], trigger: Any, video: Any, sinks: Any, seed: Any
) -> DictConfig:
    """The run's config, as ``conf/config.yaml`` would compose it, from the Recorder's
    arguments (``trigger`` and ``sinks`` nodes are filled in by ``_trigger`` and ``_sinks``)."""
    base = OmegaConf.load(CONF_DIR / "config.yaml")
    cfg = OmegaConf.create(
        {k: v for k, v in OmegaConf.to_container(base).items() if k not in ("defaults", "hydra")}
    )
    cfg.seed, cfg.episodes = seed, None
    cfg.env = env_node
    cfg.policy = None  # the user's loop
    cfg.trigger, cfg.sinks = {}, {}
    if video is not None:
        if not isinstance(video, dict):
            raise ConfigError(
                "video", f"must be a dict of video keys, got {video!r}", "pass e.g. {'fps': 30}"
            )
        for key, value in video.items():
            if key not in cfg.video:
                known = ", ".join(cfg.video)
                raise ConfigError(f"video.{key}", "is not a video key", f"use one of {known}")
            cfg.video[key] = value
    return cfg


def _trigger(trigger: Any, cfg: DictConfig) -> Any:
    """The trigger object the argument names; its config node into ``cfg.trigger``."""
    if isinstance(trigger, str):
        trigger = _preset("trigger", trigger)
    if isinstance(trigger, dict):
        cfg.trigger = trigger
        return instantiate_node(cfg.trigger, "trigger")
    if not callable(trigger):
        raise ConfigError(
            "trigger",
            f"must be a trigger, a callable, a config dict or a name, got {trigger!r}",
            "pass e.g. trigger='every', or trigger=lambda episode: episode % 100 == 0",
        )
    cfg.trigger = {"object": _describe(trigger)}
    return trigger


def _sinks(sinks: Any, cfg: DictConfig) -> list[Any]:
    """The sink objects the argument names; their config nodes into ``cfg.sinks``."""
    if sinks is None:
        sinks = list(DEFAULT_SINKS)
    if not isinstance(sinks, list | tuple):
        raise ConfigError(
            "sinks",
            f"must be a list of sinks, config dicts or names, got {sinks!r}",
            "pass e.g. sinks=['parquet', 'report']",
        )
    built = []
    for i, sink in enumerate(sinks):
        name = sink if isinstance(sink, str) else None
        if isinstance(sink, str):
            sink = _preset("sinks", sink)
        if isinstance(sink, dict):
            name = name or str(sink.get("_target_", i)).rsplit(".", 1)[-1].lower()
            cfg.sinks[name] = sink
            built.append(instantiate_node(cfg.sinks[name], f"sinks.{name}"))
        else:
            cfg.sinks[type(sink).__name__.lower()] = {"object": _describe(sink)}
            built.append(sink)
    return built


def _preset(group: str, name: str) -> dict[str, Any]:
    """The config dict of ``conf/<group>/<name>.yaml``."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise ConfigError(group, f"{name!r} is not a {group} preset", f"use one of {names}")
    node = OmegaConf.to_container(OmegaConf.load(path))
    return node[name] if group == "sinks" else node


def _describe(obj: Any) -> Any:
    """A JSON-able account of an argument: itself if plain, else its type and repr."""
    try:
        json.dumps(obj)
        return obj
    except (TypeError, ValueError):
        kind = type(obj)
        return {"type": f"{kind.__module__}.{kind.__qualname__}", "repr": repr(obj)}
