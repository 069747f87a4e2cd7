"""Checks on the config's own keys; building ``_target_`` nodes with errors that name the key."""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from numbers import Real
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from rlrec.errors import ConfigError

#: The package's config folder (``conf/`` in the repository links to it).
CONF_DIR = Path(__file__).resolve().parent / "conf"

#: The frame rates a video may have: encoders refuse time bases near 0 or of 2**16 and more,
#: and no player needs anything outside this range.
MIN_FPS, MAX_FPS = 0.1, 1000
#: The largest run seed: Parquet's ``run_seed`` column is an int64.
SEED_MAX = 2**63 - 1


def validate(cfg: DictConfig, own_loop: bool = False) -> None:
    """Check the top-level keys before anything is built; groups check their own in constructors.

    ``own_loop``: the config of a ``Recorder``, whose loop is the user's: no episode count, and
    no run seed unless the user gave one.
    """
    check_keys(cfg)
    if not (own_loop and cfg.get("seed") is None):
        _int_at_least(cfg, "seed", 0, "pass e.g. seed=0")
        if cfg.seed > SEED_MAX:
            raise ConfigError(
                "seed",
                f"must be at most 2**63-1 = {SEED_MAX} (the run_seed column is int64), got "
                f"{cfg.seed}",
                "pass e.g. seed=0",
            )
    if not own_loop:
        _int_at_least(cfg, "episodes", 1, "pass e.g. episodes=100")
    fps = cfg.video.fps
    if fps is not None and (not is_number(fps) or not MIN_FPS <= fps <= MAX_FPS):
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
    if threshold is not None and not is_number(threshold):
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
    check_number("memory_every_s", cfg.get("memory_every_s", 1.0), 0, example=1.0)
    _check_parallelism(cfg)
    if not isinstance(cfg.get("sinks"), DictConfig):
        raise ConfigError(
            "sinks", "must name sinks from the sinks group", "pass e.g. 'sinks=[parquet,console]'"
        )


#: ``env.vectorization`` values: Gymnasium's own vector classes, named explicitly (left to itself,
#: ``make_vec`` picks an env's custom vectorised class, which autoresets without our seeds).
VECTORIZATION = ("sync", "async")


def _check_parallelism(cfg: DictConfig) -> None:
    """``env.num_envs``, ``env.vectorization``, ``workers``, ``shards``, ``shard`` and
    ``video.tile``."""
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
    shards, shard = cfg.get("shards", 1), cfg.get("shard", 0)
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ConfigError(
            "shards", f"must be an integer >= 1, got {shards!r}", "pass e.g. shards=8"
        )
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shards:
        raise ConfigError(
            "shard",
            f"must be an integer from 0 to shards - 1 = {shards - 1}, got {shard!r}",
            f"sweep it with shards: python run.py -m 'shard=range(0,{max(shards, 2)})' "
            f"shards={max(shards, 2)}",
        )
    tile = cfg.video.get("tile", False)
    if not isinstance(tile, bool):
        raise ConfigError(
            "video.tile", f"must be true or false, got {tile!r}", "pass video.tile=true"
        )
    if tile and shards > 1:
        raise ConfigError(
            "video.tile",
            "each shard would film a grid of its own, and the merged run has one per episode",
            "film a file per episode (video.tile=false) when shards > 1",
        )
    if tile and num_envs == 1:
        raise ConfigError(
            "video.tile",
            "films the sub-environments of a vector env side by side, and env.num_envs is 1",
            "pass env.num_envs=4 (or more) with video.tile=true",
        )


#: Keys every ``_target_`` node may hold besides its class's arguments (Hydra's own).
_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def check_keys(cfg: DictConfig) -> None:
    """Refuse every key that no part of rlrec reads (a misspelt ``+env.max_episode_step=100``
    would otherwise be ignored while the user believes it applies), naming the closest valid one.

    rlrec's own nodes have the keys of the shipped config (``conf/config.yaml``, ``conf/env/``);
    a node built by ``_target_`` (policy, trigger, each sink, each env wrapper) has the arguments
    its class takes, so a user's own class keeps every key it declares.
    """
    top, env_keys, video_keys = _shipped_keys()
    _known_only(cfg, "", top)
    if isinstance(cfg.get("env"), DictConfig):
        _known_only(cfg.env, "env.", env_keys)
        for i, wrapper in enumerate(cfg.env.get("wrappers") or []):
            if isinstance(wrapper, DictConfig):
                _target_keys_only(wrapper, f"env.wrappers[{i}].", skip={"env"})
    if isinstance(cfg.get("video"), DictConfig):
        _known_only(cfg.video, "video.", video_keys)
    spaces = {"observation_space", "action_space"}
    for name in ("policy", "trigger"):
        if isinstance(cfg.get(name), DictConfig):
            _target_keys_only(cfg[name], f"{name}.", skip=spaces if name == "policy" else set())
    if isinstance(cfg.get("sinks"), DictConfig):
        for name, node in cfg.sinks.items():
            if isinstance(node, DictConfig):
                _target_keys_only(node, f"sinks.{name}.", skip=set())


def _shipped_keys() -> tuple[set[str], set[str], set[str]]:
    """The keys of the shipped config's own nodes: top level, ``env`` and ``video``."""
    if not _SHIPPED:
        import yaml  # only the key names are needed: plain YAML, 20x faster than OmegaConf's

        load = functools.partial(yaml.load, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        base = load((CONF_DIR / "config.yaml").read_text())
        top = {k for k in base if k not in ("defaults", "hydra")}
        top |= {"env", "policy", "trigger", "sinks"}  # the groups
        env = set()
        for preset in sorted((CONF_DIR / "env").glob("*.yaml")):
            env |= set(load(preset.read_text()))
        _SHIPPED.extend([top, env, set(base["video"])])
    return _SHIPPED[0], _SHIPPED[1], _SHIPPED[2]


_SHIPPED: list[set[str]] = []


def _known_only(node: DictConfig, prefix: str, known: set[str]) -> None:
    for key in node:
        if key not in known:
            _unknown(prefix, str(key), known, f"not a key of {prefix[:-1] or 'the config'}")


def _target_keys_only(node: DictConfig, prefix: str, skip: set[str]) -> None:
    """The keys of a ``_target_`` node against the arguments its class (or factory) takes."""
    target = (
        node.get("_target_")
        if "_target_" in node and not OmegaConf.is_missing(node, "_target_")
        else None
    )
    if not isinstance(target, str):
        return  # instantiate_node says what is wrong with a missing or odd _target_
    try:
        params = inspect.signature(get_object(target)).parameters.values()
    except Exception:  # does not import (reported when built), or has no signature to read
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    accepted -= skip
    for key in node:
        if key not in accepted and key not in _HYDRA_KEYS:
            takes = ", ".join(sorted(accepted)) or "no keys"
            _unknown(prefix, str(key), accepted, f"not a key of {target} (it takes {takes})")


def _unknown(prefix: str, key: str, known: set[str], problem: str) -> None:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    fix = (
        f"did you mean {prefix}{close[0]}?"
        if close
        else f"remove it; the keys here are {', '.join(prefix + k for k in sorted(known))}"
    )
    raise ConfigError(f"{prefix}{key}", problem, fix)


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
        raised = cause or err
        raise ConfigError(
            key,
            f"{target} could not be built from keys {keys}: it raised "
            f"{type(raised).__name__}: {_first_line(raised)}",
            f"match the keys under {key} to the arguments {target} takes, or mend what it raised",
        ) from None


def check_number(
    key: str,
    value: object,
    low: float,
    *,
    integer: bool = False,
    allow_none: bool = False,
    example: object = None,
) -> None:
    """Raise a ``ConfigError`` naming ``key`` unless ``value`` is a number >= ``low``."""
    if value is None and allow_none:
        return
    kind = "an integer" if integer else "a number"
    ok = (isinstance(value, int) if integer else is_number(value)) and not isinstance(value, bool)
    if not ok or value < low:
        null = " or null" if allow_none else ""
        example = max(low, 10) if example is None else example
        raise ConfigError(
            key, f"must be {kind} >= {low}{null}, got {value!r}", f"pass e.g. {key}={example}"
        )


def check_choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise a ``ConfigError`` naming ``key`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(
            key,
            f"must be one of {', '.join(allowed)}, got {value!r}",
            f"pass e.g. {key}={allowed[0]}",
        )


def _int_at_least(cfg: DictConfig, key: str, low: int, fix: str) -> None:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(key, f"must be an integer >= {low}, got {value!r}", fix)


def is_number(value: object) -> bool:
    """A real number, not a bool and not NaN (NaN passes every comparison check unnoticed)."""
    return isinstance(value, Real) and not isinstance(value, bool) and value == value


def _root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {_first_line(err)}"


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
