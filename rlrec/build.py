"""Build: the one place where the config becomes objects.

``build(cfg, run_dir)`` checks every key, then makes the trigger, the env (or vector env), the
policy, the filming and the sinks, and returns them as one closeable ``Objects``. The run's process
and each worker process call it alike; a worker differs only in what it is asked to be
(``worker=w``): it runs episodes, films what the trigger picks before they run, and has no sinks.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
from omegaconf import DictConfig

from rlrec import mujoco_envs
from rlrec.codecs import DEFAULT_PRESET, check_quality, codec_for
from rlrec.config import instantiate_node, validate
from rlrec.envs import close_vector_env, make_env, make_vector_env, wrapper_specs
from rlrec.episode import SuccessRule
from rlrec.errors import ConfigError
from rlrec.filming import Filming
from rlrec.policies import PolicyHooks, build_policy, one_torch_thread
from rlrec.rundir import RunDir
from rlrec.signals import StopSignals
from rlrec.sinks import Sink, as_sink
from rlrec.triggers import Never, TriggerView
from rlrec.video import Encoder, FrameSkip, VideoSettings, declares_fps, frame_skip, video_fps

log = logging.getLogger(__name__)


@dataclass
class Objects:
    """Everything one process of a run works with; ``close()`` releases the envs and encoders."""

    cfg: DictConfig
    run: RunDir
    job: int
    #: The worker process this is (None: the run's own process).
    worker: int | None
    trigger: TriggerView
    filming: Filming
    policy: Any
    hooks: PolicyHooks
    success: SuccessRule
    signals: StopSignals
    #: The env episodes run on in this process: a plain env, a vector env, or neither (the run's
    #: process of a run with worker processes).
    env: gym.Env | None = None
    vec: gym.vector.VectorEnv | None = None
    #: A vector env's policy hooks, one per sub-environment (the same one for ``act_batch``).
    vec_hooks: list[PolicyHooks] = field(default_factory=list)
    sinks: list[Sink] = field(default_factory=list)

    @functools.cached_property
    def seed(self) -> int | None:
        # read once: an OmegaConf lookup costs microseconds, and every episode needs it
        return self.cfg.seed

    @property
    def episodes(self) -> int:
        return self.cfg.episodes

    @property
    def workers(self) -> int:
        return self.cfg.get("workers", 1) if self.worker is None else 1

    @property
    def indices(self) -> range:
        """The episodes this run (or this shard of it) runs, in order."""
        shards = self.cfg.get("shards", 1)
        return range(self.cfg.get("shard", 0), self.episodes, shards)

    @property
    def planned(self) -> int | None:
        """How many episodes this run (or shard) runs; None: a loop that is the user's."""
        return None if self.episodes is None else len(self.indices)

    @property
    def parallel(self) -> bool:
        """Whether episodes run side by side (sub-environments, worker processes) and so arrive
        out of order."""
        return self.cfg.env.get("num_envs", 1) > 1 or self.cfg.get("workers", 1) > 1

    @property
    def learns(self) -> bool:
        """Whether the policy has state that the episodes change (a resume must restore it): it
        has ``update`` or ``end_episode``, and does not say ``learning = False``."""
        if getattr(self.policy, "learning", True) is False:  # e.g. evaluating a checkpoint
            return False
        return self.hooks.update is not None or self.hooks.end_episode is not None

    def close(self) -> None:
        """Stop the encoders and close the envs."""
        self.filming.close()
        if self.env is not None:
            self.env.close()
            self.env = None
        if self.vec is not None:
            close_vector_env(self.vec)
            self.vec = None


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def build(
    cfg: DictConfig,
    run_dir: Path | str,
    job: int = 0,
    worker: int | None = None,
    *,
    runs_episodes: bool = True,
) -> Objects:
    """Check ``cfg`` and build what it describes, for the run's process or for ``worker``.
    ``runs_episodes=False`` (a merge, whose episodes are rows already): its env renders nothing
    and no encoder starts before a film is made (by replay)."""
    validate(cfg)
    run = RunDir(run_dir)
    in_charge = worker is None
    trigger = TriggerView(instantiate_node(cfg.trigger, "trigger"))
    if cfg.get("shards", 1) > 1 and trigger.decides_after:
        _check_sharded_decision(cfg, trigger)
        trigger = TriggerView(Never())  # decided, and filmed by replay, when the shards merge
    codec = codec_for(cfg.video.codec)
    preset, crf = cfg.video.get("preset", DEFAULT_PRESET), cfg.video.get("crf")
    check_quality(codec, preset, crf)
    num_envs, workers = cfg.env.get("num_envs", 1), cfg.get("workers", 1)
    parallel = num_envs > 1 or workers > 1
    renders = Filming.renders(trigger, in_charge, parallel)
    runs_here = not (in_charge and workers > 1)  # else the worker processes run the episodes
    sinks = (
        [as_sink(instantiate_node(n, f"sinks.{k}")) for k, n in cfg.sinks.items()]
        if in_charge
        else []
    )
    renders_here = renders and runs_episodes  # a merge films by replay only, on its own env
    encoder = env = vec = None
    vec_hooks: list[PolicyHooks] = []
    try:
        if renders_here and runs_here and not parallel:
            encoder = Encoder()  # a process: it imports its codecs while the env is built
            encoder.start(codec)
        if runs_here and num_envs > 1:
            vec = make_vector_env(cfg.env, render=renders_here, log_dir=run.path)
            vec_hooks = _vector_hooks(
                cfg.policy, vec.single_observation_space, vec.single_action_space, vec.num_envs
            )
            hooks, metadata, spec = vec_hooks[0], vec.metadata, vec.spec
            skip = _vector_frame_skip(cfg.env, vec)
        else:
            env = make_env(cfg.env, render=renders_here, log_dir=run.path)
            hooks = PolicyHooks.of(
                build_policy(cfg.policy, env.observation_space, env.action_space)
            )
            metadata, spec, skip = env.metadata, env.spec, frame_skip(env)
            if not runs_here:  # only its spaces were needed: the workers build their own
                env.close()
                env = None
        if parallel:  # several processes or sub-environments share the cores
            one_torch_thread()
        fps = video_fps(cfg.video.fps, metadata, spec, skip.factor)
        video = VideoSettings(codec, fps, cfg.video.name_prefix, preset, crf)
        if renders and in_charge and not cfg.video.fps:
            _say_fps(cfg.env.id, video.fps, metadata, spec, skip)
        filming = Filming(
            trigger,
            video,
            run,
            cfg.env.id,
            functools.partial(make_env, cfg.env, render=True, log_dir=run.path, checked=False),
            in_charge=in_charge,
            parallel=parallel,
            worker=worker,
            encoder=encoder,
        )
    except BaseException:
        if encoder is not None:
            encoder.shutdown()
        for opened in (env, vec):
            if opened is not None:
                opened.close()
        raise
    # A worker process leaves Ctrl-C to the run's process, which stops it with SIGTERM.
    signals = StopSignals(_STOP_SIGNALS if in_charge else (signal.SIGTERM,))
    success = SuccessRule(cfg.get("success_threshold"), cfg.get("success_key"))
    objects = Objects(
        cfg, run, job, worker, trigger, filming, hooks.policy, hooks, success, signals,
        env=env, vec=vec, vec_hooks=vec_hooks, sinks=sinks,
    )  # fmt: skip
    if in_charge and (parallel or cfg.get("shards", 1) > 1):
        try:
            _check_parallel(objects)
        except BaseException:
            objects.close()
            raise
    return objects


def build_for_loop(
    cfg: DictConfig,
    run_dir: Path | str,
    env: gym.Env,
    trigger: Any,
    sinks: list[Any],
    hooks: PolicyHooks,
    replay_env: Callable[[], gym.Env] | None,
) -> Objects:
    """The objects of a run whose loop is the user's (``rlrec.wrappers.Recorder``): ``env`` is
    theirs and stays out of ``Objects`` (they close it), ``hooks`` are what rlrec does at an
    episode's start in their place, ``trigger`` and ``sinks`` are built already, and
    ``replay_env`` rebuilds ``env`` (None where it cannot be rebuilt)."""
    validate(cfg, own_loop=True)
    view = TriggerView(trigger)
    codec = codec_for(cfg.video.codec)
    preset, crf = cfg.video.get("preset", DEFAULT_PRESET), cfg.video.get("crf")
    check_quality(codec, preset, crf)
    renders = Filming.renders(view, in_charge=True, parallel=False)
    if renders and env.render_mode != "rgb_array":
        raise ConfigError(
            "trigger",
            f"films episodes, and the env renders {env.render_mode!r}, not rgb_array frames",
            "make the env with gymnasium.make(..., render_mode='rgb_array'), or pass "
            "trigger='never' for statistics only",
        )
    encoder = None
    if renders:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # as make_env does for rlrec's envs
        mujoco_envs.prepare_gl_for(env)  # a headless OpenGL backend, before the first frame
        encoder = Encoder()  # a process: it imports its codecs while the user's loop starts
        encoder.start(codec)
    skip = frame_skip(env)
    fps = video_fps(cfg.video.fps, env.metadata, env.spec, skip.factor)
    video = VideoSettings(codec, fps, cfg.video.name_prefix, preset, crf)
    if renders and not cfg.video.fps:
        _say_fps(cfg.env.id, video.fps, env.metadata, env.spec, skip)
    filming = Filming(view, video, RunDir(run_dir), cfg.env.id, replay_env, encoder=encoder)
    success = SuccessRule(cfg.get("success_threshold"), cfg.get("success_key"))
    return Objects(
        cfg, RunDir(run_dir), 0, None, view, filming, None, hooks, success, StopSignals(()),
        sinks=[as_sink(sink) for sink in sinks],
    )  # fmt: skip


def _say_fps(env_id: str, fps: float, metadata: dict[str, Any], spec: Any, skip: FrameSkip) -> None:
    """Where rlrec cannot tell how fast an env's frames come, say which rate films play at."""
    if skip.unread:
        log.warning(
            "%s is wrapped in %s, whose frame skip rlrec cannot read (no frame_skip or _skip "
            "attribute): its films play at %g fps; set video.fps to its real-time rate",
            env_id,
            ", ".join(skip.unread),
            fps,
        )
    elif not declares_fps(metadata, spec):
        log.warning(
            "%s declares no render_fps: its films play at %g fps; set video.fps to its "
            "real-time rate (video.fps=... or video={'fps': ...})",
            env_id,
            fps,
        )


def _vector_frame_skip(env_cfg: DictConfig, vec: gym.vector.VectorEnv) -> FrameSkip:
    """The frame skip of a vector env's sub-environments: read off the first where this process
    holds it, else (async: they live in other processes) off one built here to be read."""
    if getattr(vec.unwrapped, "envs", None) or not wrapper_specs(env_cfg):
        return frame_skip(vec)
    probe = make_env(env_cfg, render=False)
    try:
        return frame_skip(probe)
    finally:
        probe.close()


def _vector_hooks(
    policy_cfg: DictConfig, obs_space: gym.Space, action_space: gym.Space, n: int
) -> list[PolicyHooks]:
    """One policy for the whole batch if it has ``act_batch``; else an instance per
    sub-environment, each with its own copy of the spaces (so ``random`` reseeds its own
    generator per episode)."""
    first = PolicyHooks.of(
        build_policy(policy_cfg, copy.deepcopy(obs_space), copy.deepcopy(action_space))
    )
    if first.act_batch is not None:
        return [first] * n
    rest = [
        PolicyHooks.of(
            build_policy(policy_cfg, copy.deepcopy(obs_space), copy.deepcopy(action_space))
        )
        for _ in range(n - 1)
    ]
    return [first, *rest]


def _check_sharded_decision(cfg: DictConfig, trigger: TriggerView) -> None:
    """A trigger that decides after the episodes, in a shard: the merge films its choices by
    replaying them, from the shards' actions."""
    if trigger.method == "buffer":
        raise ConfigError(
            "trigger.method",
            "buffer films every episode to a temporary file in the process that runs it; "
            "with shards the decision is made when they merge",
            "use trigger.method=replay (or auto) with shards",
        )
    parquet = cfg.sinks.get("parquet")
    if parquet is None or not parquet.get("actions", True):
        raise ConfigError(
            "sinks.parquet.actions",
            "the shards' merge films the trigger's choices by replaying their actions, which "
            "are not stored",
            "keep the parquet sink with sinks.parquet.actions=true",
        )


def _check_parallel(objects: Objects) -> None:
    """What sub-environments, worker processes and shards cannot do, refused before anything
    runs."""
    cfg, trigger = objects.cfg, objects.trigger
    key = "workers" if cfg.get("workers", 1) > 1 else "env.num_envs"
    if cfg.get("shards", 1) > 1 and cfg.get("workers", 1) == 1 and cfg.env.get("num_envs", 1) == 1:
        key = "shards"
    if objects.learns:
        raise ConfigError(
            key,
            f"{cfg.policy._target_} learns (it has update or end_episode), and "
            "episodes run side by side would teach it out of order, or teach separate copies",
            "train with env.num_envs=1 workers=1 shards=1 and evaluate the result in parallel (a "
            "policy that does not learn can say so with an attribute learning = False)",
        )
    if trigger.decides_after and trigger.method == "buffer":
        raise ConfigError(
            "trigger.method",
            "buffer films every episode to a temporary file in the process that runs it; "
            "with sub-environments or workers the decision is made elsewhere",
            "use trigger.method=replay (or auto) with env.num_envs or workers",
        )
    if trigger.decides_after and cfg.video.get("tile"):
        raise ConfigError(
            "video.tile",
            "a grid video is filmed while the episodes run, and this trigger decides after",
            "use video.tile=true with trigger=every or trigger=periodic",
        )
