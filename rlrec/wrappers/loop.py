"""What the plain and the vector ``Recorder`` share: their config from the arguments given, and the
run in progress around the user's loop (``LoopRun``).

A ``LoopRun`` holds the runner's bookkeeping and the episodes under way, one per sub-environment
(slot 0 for a plain env). It lives apart from the wrapper, so that a Recorder dropped without
``close()`` (a forgotten call, an exception that ends the script) is still ended by a finalizer:
``summary.json`` written, the parts merged.
"""

from __future__ import annotations

import json
import logging
import sys
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlrec.build import Objects, build_for_loop
from rlrec.config import CONF_DIR, instantiate_node
from rlrec.episode import Episode
from rlrec.errors import ConfigError
from rlrec.hydra_callbacks import check_writable, claim_new_dir
from rlrec.policies import PolicyHooks
from rlrec.records import EpisodeRecord
from rlrec.rundir import Busy, RunDir, WriterLock
from rlrec.runner import Runner

log = logging.getLogger(__name__)

#: The sinks of a Recorder that is given none: no progress bar (the loop has its own output).
DEFAULT_SINKS = ("parquet", "console", "report")


def new_run_dir(run_dir: str | Path | None) -> Path:
    """The run directory a Recorder writes: ``run_dir``, or the CLI's
    ``outputs/YYYY-MM-DD/HH-MM-SS``; writable and holding no recorded run."""
    if run_dir is None:
        run_dir = claim_new_dir(datetime.now().strftime("outputs/%Y-%m-%d/%H-%M-%S"))
    check_writable(str(run_dir), "run_dir")
    path = Path(run_dir).absolute()
    claim(path).release()  # refused now if another writer holds it; held from LoopRun on
    run = RunDir(path)
    if run.is_run() or run.holds_records():  # its rows would mix with this run's
        raise ConfigError(
            "run_dir",
            f"{path} holds a recorded run already",
            "pass a new folder, or run_dir=None for outputs/<date>/<time>",
        )
    return path


def claim(path: Path) -> WriterLock:
    """Hold ``path`` as its one writer, or say who holds it."""
    try:
        return WriterLock.take(path)
    except Busy as busy:
        raise ConfigError(
            "run_dir",
            f"{busy.who} writes to {path} (one run directory has one writer: e.g. SB3's "
            "make_vec_env(n_envs=4) with one run_dir)",
            "give each Recorder its own run_dir, or run_dir=None",
        ) from None


def loop_objects(
    env: Any,
    run_dir: Path,
    env_node: dict[str, Any],
    arguments: dict[str, Any],
    hooks: PolicyHooks,
    replay_env: Any,
) -> Objects:
    """The run's objects from a Recorder's ``arguments`` (trigger, video, sinks, seed, and the
    keyword settings); the config, with the arguments under ``recorder``, goes into the
    episodes' metadata."""
    video = arguments["video"]
    cfg = _config(env_node, video, arguments["seed"])
    for key in ("success_threshold", "success_key", "memory_every_s"):
        cfg[key] = arguments[key]
    trigger = _trigger(arguments["trigger"], cfg)
    sinks = _sinks(arguments["sinks"], cfg)
    objects = build_for_loop(cfg, run_dir, env, trigger, sinks, hooks, replay_env)
    given = {k: v for k, v in arguments.items() if k not in ("sinks", "trigger")}
    cfg.recorder = {
        **{k: _describe(v) for k, v in given.items()},
        "env": repr(env),
        "run_dir": str(run_dir),
        "trigger": _describe(arguments["trigger"]),
        "sinks": [_describe(s) for s in _or_default(arguments["sinks"])],
    }
    return objects


class LoopRun:
    """A Recorder's run in progress: the runner, and the episode under way in each slot."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.runner = Runner(objects)
        self.running: dict[int, Episode] = {}
        self.summary: dict[str, Any] | None = None
        try:
            self._lock = claim(objects.run.path)
        except ConfigError:
            objects.close()
            raise
        try:
            self.runner.start()
        except BaseException:
            objects.close()
            self._lock.release()
            raise

    def finish(
        self,
        slot: int,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
        live: bool,
        filmable: bool = True,
    ) -> EpisodeRecord:
        """The episode in ``slot`` has ended: its record (the film kept if ``live`` or chosen
        now, else dropped; ``filmable``: see ``Filming.settle``); the caller hands it to
        ``accept`` in episode order."""
        episode, objects = self.running.pop(slot), self.objects
        writer, episode.writer = episode.writer, None
        success = objects.success(episode.episode_return, info)
        record = episode.finish(terminated, truncated, success)
        objects.filming.settle(record, writer, live, filmable)
        return record

    def accept(self, record: EpisodeRecord) -> None:
        self.runner.accept(record)

    def drop(self, slot: int) -> None:
        """The episode in ``slot`` will not finish (a reset before its end, an error): no row,
        no film."""
        episode = self.running.pop(slot, None)
        if episode is not None:
            episode.abort()

    def end(self, status: str) -> None:
        if self.summary is None:
            for slot in list(self.running):
                self.drop(slot)
            try:
                self.summary = self.runner.finish(status)
            finally:
                self._lock.release()

    def end_at_exit(self) -> None:
        if self.summary is not None:
            return
        failed = getattr(sys, "last_value", None) is not None  # the script ended in an exception
        log.warning("a Recorder was not closed; closing it now (%s)", self.objects.run.path)
        self.end("failed" if failed else "complete")

    def finalize_with(self, wrapper: Any) -> weakref.finalize:
        """End the run when ``wrapper`` is dropped or the interpreter exits, unless closed."""
        return weakref.finalize(wrapper, self.end_at_exit)


class EndsRun:
    """How both Recorders end: ``close()``, or ``with`` (the status from how the block ended);
    ``summary`` then holds ``summary.json``. A Recorder sets ``_run`` and ``_finalizer`` and
    says in ``_before_end`` what it finishes first and in ``_close_env`` how its env closes."""

    _run: LoopRun
    _finalizer: weakref.finalize

    @property
    def summary(self) -> dict[str, Any] | None:
        """The run's summary (``summary.json``) once closed; None before."""
        return self._run.summary

    def close(self, **kwargs: Any) -> None:
        """Write the summary (and the report, the trackers' ends), then close the env."""
        self._end("complete", **kwargs)

    def __exit__(self, exc_type: Any, *rest: Any) -> bool:
        status = "complete"
        if exc_type is not None:
            status = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
        self._end(status)
        return False

    def _end(self, status: str, **kwargs: Any) -> None:
        self._finalizer.detach()
        try:
            self._before_end()
            self._run.end(status)
        finally:
            self._close_env(**kwargs)

    def _before_end(self) -> None:
        """What to finish before the sinks close."""

    def _close_env(self, **kwargs: Any) -> None:
        raise NotImplementedError


def no_hooks(reset: Any = None) -> PolicyHooks:
    """The policy hooks of a loop that is the user's: rlrec calls only ``reset`` (seeding)."""
    return PolicyHooks(
        policy=None,
        act=_no_act,
        act_batch=None,
        reset=reset,
        update=None,
        end_episode=None,
        save=None,
        load=None,
    )


def _no_act(obs: Any) -> Any:
    raise RuntimeError("a Recorder's actions come from the user's loop")


def _config(env_node: dict[str, Any], video: Any, seed: Any) -> DictConfig:
    """The run's config, as ``conf/config.yaml`` would compose it, from the Recorder's
    arguments (the ``trigger`` and ``sinks`` nodes are filled in by ``_trigger`` and
    ``_sinks``)."""
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
    sinks = _or_default(sinks)
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


def _or_default(sinks: Any) -> Any:
    return list(DEFAULT_SINKS) if sinks is None else sinks


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
