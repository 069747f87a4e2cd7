"""Build the Gymnasium environment a config names, with errors that say what to change."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode
from gymnasium.vector.async_vector_env import AsyncState
from omegaconf import DictConfig, OmegaConf

from rlrec import mujoco_envs
from rlrec.config import instantiate_node
from rlrec.env_ids import ensure_registered
from rlrec.errors import ConfigError


def make_env(
    env_cfg: DictConfig,
    *,
    render: bool,
    log_dir: Path | None = None,
    checked: bool = True,
    follow_agent: bool = True,
) -> gym.Env:
    """``gymnasium.make`` from the ``env`` node, wrapped as ``env.wrappers`` says; ``render``
    asks for ``rgb_array`` frames; a simulator's log file goes to ``log_dir`` (the run's).
    ``checked=False``: without Gymnasium's passive env checker, for a second env of a run whose
    first was checked (the checker's first render costs a CartPole replay 70 ms).
    ``follow_agent=False``: a MuJoCo env keeps Gymnasium's camera (a ``Recorder``'s env, which
    the user built, is replayed as it was filmed)."""
    env_id, kwargs = _make_kwargs(env_cfg, render, log_dir)
    if not checked:
        kwargs.setdefault("disable_env_checker", True)
    wrappers = wrapper_specs(env_cfg)
    limit = _outer_limit(kwargs, wrappers)
    follow = follow_agent and _follows_agent(kwargs)
    with _config_errors(env_id):
        env = gym.make(env_id, **kwargs)
    if render and not _renders_rgb(env.metadata):
        env.close()
        raise _cannot_film(env_id)
    try:
        env = apply_wrappers(wrappers, _film_camera(env, follow) if render else env)
        return gym.wrappers.TimeLimit(env, limit) if limit else env
    except BaseException:
        env.close()
        raise


def wrapper_specs(env_cfg: DictConfig) -> list[dict[str, Any]]:
    """``env.wrappers`` as plain dicts (they travel to async sub-environments' processes)."""
    wrappers = env_cfg.get("wrappers") or []
    if not OmegaConf.is_list(wrappers) and not isinstance(wrappers, list):
        raise ConfigError(
            "env.wrappers",
            f"must be a list of wrappers, got {wrappers!r}",
            "pass e.g. 'env.wrappers=[{_target_: gymnasium.wrappers.TimeAwareObservation}]'",
        )
    specs = OmegaConf.to_container(OmegaConf.create(list(wrappers)), resolve=True)
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or "_target_" not in spec:
            raise ConfigError(
                f"env.wrappers[{i}]",
                f"must be a node with a _target_, got {spec!r}",
                "name the wrapper class, e.g. {_target_: gymnasium.wrappers.TimeAwareObservation}",
            )
    return specs


def apply_wrappers(specs: list[dict[str, Any]], env: gym.Env) -> gym.Env:
    """Wrap ``env`` in each of ``specs`` in order (the first is innermost); each is called with
    ``env`` and its other keys. The same function wraps a plain env and every sub-environment of
    a vector env, so a replay rebuilds exactly the stack the episode ran in."""
    for i, spec in enumerate(specs):
        env = instantiate_node(OmegaConf.create(spec), f"env.wrappers[{i}]", env=env)
        if not isinstance(env, gym.Env):
            raise ConfigError(
                f"env.wrappers[{i}]._target_",
                f"{spec['_target_']} did not return a Gymnasium env",
                "name a gymnasium.Wrapper subclass (or a function env -> env)",
            )
    return env


def make_vector_env(
    env_cfg: DictConfig, *, render: bool, log_dir: Path | None = None
) -> gym.vector.VectorEnv:
    """``gymnasium.make_vec`` with ``env.num_envs`` sub-environments, vectorised as
    ``env.vectorization`` says, and without autoreset: the runner resets each sub-environment
    itself, with the seed of the episode it runs next."""
    env_id, kwargs = _make_kwargs(env_cfg, render, log_dir)
    mode = env_cfg.get("vectorization", "sync")
    vector_kwargs: dict[str, Any] = {"autoreset_mode": AutoresetMode.DISABLED}
    specs = wrapper_specs(env_cfg)
    limit = _outer_limit(kwargs, specs)
    wrappers: list[Any] = []
    if render:
        wrappers.append(functools.partial(_film_camera, follow=_follows_agent(kwargs)))
    if specs:
        wrappers.append(functools.partial(apply_wrappers, specs))
    if limit:
        wrappers.append(functools.partial(gym.wrappers.TimeLimit, max_episode_steps=limit))
    if mode == "async":
        # Ctrl-C reaches every process of the terminal's group: the sub-environments' processes
        # leave it to the runner, which stops them in order. (Gymnasium also builds one env in
        # this process, for its spaces: that one must leave our handler alone.)
        wrappers.append(functools.partial(_ignore_sigint_outside, os.getpid()))
    with _config_errors(env_id):
        return gym.make_vec(
            env_id,
            num_envs=env_cfg.num_envs,
            vectorization_mode=mode,
            vector_kwargs=vector_kwargs,
            wrappers=wrappers,
            **kwargs,
        )


def close_vector_env(vec: gym.vector.VectorEnv) -> None:
    """Close a vector env, also one stopped in the middle of a call.

    An async vector env waiting for its processes' answers (a signal landed during a step) would
    first read the rest as if it were a whole message, and fail or wait for ever on a process
    blocked writing: its processes are terminated instead, without a word to them.
    """
    state = getattr(vec, "_state", None)
    if not isinstance(vec, gym.vector.AsyncVectorEnv) or state == AsyncState.DEFAULT:
        vec.close()
        return
    for process in vec.processes:
        if process.is_alive():
            process.terminate()
    for pipe in vec.parent_pipes:
        if pipe is not None:
            pipe.close()
    for process in vec.processes:
        process.join()
    vec.closed = True


def _film_camera(env: gym.Env, follow: bool) -> gym.Env:
    """A MuJoCo env filmed through the camera that follows its agent where its model has one
    and the user named none (``follow``), its free camera aimed anew at every reset
    (``mujoco_envs.FreshCamera``)."""
    if not hasattr(env.unwrapped, "mujoco_renderer"):
        return env
    if follow:
        mujoco_envs.follow_agent(env)
    return mujoco_envs.FreshCamera(env)


def _follows_agent(kwargs: dict[str, Any]) -> bool:
    """Whether rlrec picks the camera: the user's ``env.kwargs`` name none."""
    return not any(key in kwargs for key in mujoco_envs.CAMERA_KWARGS)


def _outer_limit(kwargs: dict[str, Any], wrappers: list[dict[str, Any]]) -> int | None:
    """``env.max_episode_steps`` counts the steps the policy takes: with ``env.wrappers`` (a
    frame-skipping one makes a step several of the env's), it is a ``TimeLimit`` around them,
    taken out of ``kwargs`` (the env's own limit stays inside); without, ``gymnasium.make``'s."""
    if not wrappers or kwargs.get("max_episode_steps") is None:
        return None
    return kwargs.pop("max_episode_steps")


def _ignore_sigint_outside(runner_pid: int, env: gym.Env) -> gym.Env:
    if os.getpid() != runner_pid:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return env


def _make_kwargs(
    env_cfg: DictConfig, render: bool, log_dir: Path | None
) -> tuple[str, dict[str, Any]]:
    """The checked id and the keyword arguments ``gymnasium.make`` takes for the ``env`` node."""
    env_id = env_cfg.id
    name = ensure_registered(env_id)
    max_steps = env_cfg.get("max_episode_steps")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ConfigError(
            "env.max_episode_steps",
            f"must be an integer >= 1 or null, got {max_steps!r}",
            "pass e.g. env.max_episode_steps=500, or null for the env's own limit",
        )
    kwargs_cfg = env_cfg.get("kwargs")
    kwargs: dict[str, Any] = (
        {} if kwargs_cfg is None else OmegaConf.to_container(kwargs_cfg, resolve=True)
    )
    kwargs["max_episode_steps"] = max_steps
    if render:
        kwargs["render_mode"] = "rgb_array"
        # pygame-based envs draw off-screen for rgb_array; without a display, SDL's default driver
        # only complains (XDG_RUNTIME_DIR). The user's own setting wins.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        mujoco_envs.prepare_gl(name)  # before anything imports mujoco, which reads MUJOCO_GL once
        with _config_errors(env_id):
            _check_can_film(env_id)
    if log_dir is not None and mujoco_envs.uses_mujoco(name):
        with _config_errors(env_id):
            mujoco_envs.log_to(log_dir)  # MuJoCo would write MUJOCO_LOG.TXT in the working folder
    return env_id, kwargs


@contextlib.contextmanager
def _config_errors(env_id: str) -> Iterator[None]:
    """Building the env: a missing package or a rejected keyword is the user's to fix. The
    warnings Gymnasium gives on the way (an old version's "out of date") are shown only if the
    env is built: a refused one is said in one line."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            yield
        for warning in caught:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError(
            "env.id", f"{env_id} needs a package that is not installed ({err})", _extra_fix(env_id)
        ) from None
    except (ImportError, gym.error.DeprecatedEnv) as err:  # e.g. a version Gymnasium removed
        raise ConfigError(
            "env.id", f"{env_id} cannot be made here ({_one_line(err)})", _newest_fix(env_id)
        ) from None
    except TypeError as err:
        raise ConfigError(
            "env.kwargs",
            f"{env_id} rejected its keyword arguments ({err})",
            "remove or rename them",
        ) from None


def _check_can_film(env_id: str) -> None:
    """Refuse an env class that cannot render ``rgb_array`` before building it (that only warns)."""
    creator = gym.spec(env_id.rpartition(":")[2]).entry_point
    if isinstance(creator, str):
        creator = load_env_creator(creator)  # the import gymnasium.make would do anyway
    metadata = getattr(creator, "metadata", None)
    if isinstance(metadata, dict) and not _renders_rgb(metadata):
        raise _cannot_film(env_id)


def _renders_rgb(metadata: dict[str, Any]) -> bool:
    return "rgb_array" in metadata.get("render_modes", ())


def _cannot_film(env_id: str) -> ConfigError:
    return ConfigError(
        "trigger",
        f"{env_id} cannot render rgb_array frames, so its episodes cannot be filmed",
        "record statistics only with trigger=never",
    )


def _extra_fix(env_id: str) -> str:
    entry = str(gym.spec(env_id.rpartition(":")[2]).entry_point)
    for module, extra in (
        ("box2d", "rlrec[box2d]"), ("mujoco", "rlrec[mujoco]"), ("toy_text", "gymnasium[toy-text]")
    ):  # fmt: skip
        if module in entry:
            return f'install it with pip install "{extra}"'
    return "install the package the message names"


def _newest_fix(env_id: str) -> str:
    """Name the newest version of ``env_id`` that Gymnasium has, and where older ones live."""
    namespace, name, _ = gym.envs.registration.parse_env_id(env_id.rpartition(":")[2])
    newest = gym.envs.registration.find_highest_version(namespace, name)
    if newest is None:
        return "install the package the message names, or pick another env.id"
    newest_id = gym.envs.registration.get_env_id(namespace, name, newest)
    where = "the package the message names"
    if mujoco_envs.uses_mujoco(newest_id):
        where = "gymnasium-robotics, which has Gymnasium's MuJoCo v2 and v3 envs"
    return f"use env.id={newest_id} (the newest version Gymnasium has), or install {where}"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()).rstrip(".")
