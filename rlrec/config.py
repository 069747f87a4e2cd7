"""Checks on the config's own keys; building ``_target_`` nodes with errors that name the key."""

from __future__ import annotations

import re
from numbers import Real
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from rlrec.errors import ConfigError

#: The frame rates a video may have: encoders refuse time bases near 0 or of 2**16 and more,
#: and no player needs anything outside this range.
MIN_FPS, MAX_FPS = 0.1, 1000


def validate(cfg: DictConfig) -> None:
    """Check the top-level keys before anything is built; groups check their own in constructors."""
    _int_at_least(cfg, "seed", 0, "pass e.g. seed=0")
    _int_at_least(cfg, "episodes", 1, "pass e.g. episodes=100")
    fps = cfg.video.fps
    if fps is not None and (not _is_number(fps) or not MIN_FPS <= fps <= MAX_FPS):
        raise ConfigError(
            "video.fps",
            f"must be a number from {MIN_FPS} to {MAX_FPS} or null, got {fps!r}",
            "pass e.g. video.fps=30, or null for the env's render_fps",
        )
    prefix = cfg.video.name_prefix
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", prefix):
        raise ConfigError(
            "video.name_prefix",
            f"must be letters, digits, _ . or - (not starting with . or -), got {prefix!r}",
            "pass e.g. video.name_prefix=eval",
        )
    threshold, key = cfg.get("success_threshold"), cfg.get("success_key")
    if threshold is not None and not _is_number(threshold):
        raise ConfigError(
            "success_threshold",
            f"must be a number or null, got {threshold!r}",
            "pass e.g. success_threshold=195",
        )
    if key is not None and not isinstance(key, str):
        raise ConfigError(
            "success_key",
            f"must be an info key or null, got {key!r}",
            "pass e.g. success_key=is_success",
        )
    if threshold is not None and key is not None:
        raise ConfigError(
            "success_key",
            "success_threshold and success_key are both set",
            "keep one of them and set the other to null",
        )
    every = cfg.get("checkpoint_every")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ConfigError(
            "checkpoint_every",
            f"must be an integer >= 1 or null, got {every!r}",
            "pass e.g. checkpoint_every=100",
        )
    _check_parallelism(cfg)
    if not isinstance(cfg.get("sinks"), DictConfig):
        raise ConfigError(
            "sinks", "must name sinks from the sinks group", "pass e.g. 'sinks=[parquet,console]'"
        )


#: ``env.vectorization`` values: Gymnasium's own vector classes, named explicitly (left to itself,
#: ``make_vec`` picks an env's custom vectorised class, which autoresets without our seeds).
VECTORIZATION = ("sync", "async")


def _check_parallelism(cfg: DictConfig) -> None:
    """``env.num_envs``, ``env.vectorization``, ``workers`` and ``video.tile``."""
    num_envs = cfg.env.get("num_envs", 1)
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ConfigError(
            "env.num_envs", f"must be an integer >= 1, got {num_envs!r}", "pass e.g. env.num_envs=8"
        )
    mode = cfg.env.get("vectorization", "sync")
    if mode not in VECTORIZATION:
        raise ConfigError(
            "env.vectorization",
            f"must be sync or async, got {mode!r}",
            "pass env.vectorization=sync (cheap envs) or env.vectorization=async (slow envs)",
        )
    workers = cfg.get("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(
            "workers", f"must be an integer >= 1, got {workers!r}", "pass e.g. workers=2"
        )
    tile = cfg.video.get("tile", False)
    if not isinstance(tile, bool):
        raise ConfigError(
            "video.tile", f"must be true or false, got {tile!r}", "pass video.tile=true"
        )
    if tile and num_envs == 1:
        raise ConfigError(
            "video.tile",
            "films the sub-environments of a vector env side by side, and env.num_envs is 1",
            "pass env.num_envs=4 (or more) with video.tile=true",
        )


def instantiate_node(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that reports a bad ``_target_`` or argument under ``key``."""
    try:
        target = node._target_
    except MissingMandatoryValue:
        raise ConfigError(
            f"{key}._target_",
            "is not set",
            f"name a class, e.g. {key}._target_=mypackage.agents.MyPolicy",
        ) from None
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):  # the constructor's own check: already names its key
            raise cause from None
        if "Error locating target" in str(err):
            raise ConfigError(
                f"{key}._target_",
                f"{target!r} does not import ({_root_cause(err)})",
                "give the dotted path of a class importable from the folder you run in",
            ) from None
        keys = sorted(k for k in OmegaConf.to_container(node) if k != "_target_")
        raise ConfigError(
            key,
            f"{target} could not be built from keys {keys}: {_first_line(cause or err)}",
            f"match the keys under {key} to the arguments {target} takes",
        ) from None


def check_number(
    key: str, value: object, low: float, *, integer: bool = False, allow_none: bool = False
) -> None:
    """Raise a ``ConfigError`` naming ``key`` unless ``value`` is a number >= ``low``."""
    if value is None and allow_none:
        return
    kind = "an integer" if integer else "a number"
    ok = (isinstance(value, int) if integer else _is_number(value)) and not isinstance(value, bool)
    if not ok or value < low:
        null = " or null" if allow_none else ""
        raise ConfigError(
            key, f"must be {kind} >= {low}{null}, got {value!r}", f"pass e.g. {key}={max(low, 1)}"
        )


def _int_at_least(cfg: DictConfig, key: str, low: int, fix: str) -> None:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(key, f"must be an integer >= {low}, got {value!r}", fix)


def _is_number(value: object) -> bool:
    """A real number, not a bool and not NaN (NaN passes every comparison check unnoticed)."""
    return isinstance(value, Real) and not isinstance(value, bool) and value == value


def _root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {_first_line(err)}"


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
