"""Find the Gymnasium id a config names: import the package that registers it, or say which.

Many env packages (ale-py, minigrid, highway-env, gymnasium-robotics, ...) add their ids to
Gymnasium's registry only when imported, so ``gymnasium.make("ALE/Pong-v5")`` fails in a script
that has not imported ``ale_py``. rlrec knows those packages: an id that is not registered yet
imports the one it belongs to (by its prefix), or else every one installed, before it is called
unknown.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import dataclass

import gymnasium as gym

from rlrec.errors import ConfigError


@dataclass(frozen=True)
class EnvPackage:
    """A package that registers Gymnasium ids when imported."""

    module: str
    install: str  # what to pip install
    prefixes: tuple[str, ...]  # how its ids begin


#: The packages rlrec imports for an id it does not find; ``module:Id`` serves the others.
PACKAGES = (
    EnvPackage("ale_py", "rlrec[atari]", ("ALE/",)),
    EnvPackage("minigrid", "rlrec[minigrid]", ("MiniGrid-", "BabyAI-")),
    EnvPackage("miniworld", "miniworld", ("MiniWorld-",)),
    EnvPackage("gymnasium_robotics", "gymnasium-robotics", ("Fetch", "Hand", "Adroit", "AntMaze_")),
    EnvPackage("gymnasium_robotics", "gymnasium-robotics", ("PointMaze_", "FrankaKitchen")),
    EnvPackage("highway_env", "highway-env", ("highway-", "merge-", "roundabout-", "parking-")),
    EnvPackage("highway_env", "highway-env", ("intersection-", "racetrack-", "u-turn-", "exit-")),
    EnvPackage("mo_gymnasium", "mo-gymnasium", ("mo-",)),
    EnvPackage("shimmy", "shimmy[dm-control]", ("dm_control/",)),
    EnvPackage("metaworld", "metaworld", ("Meta-World/",)),
    EnvPackage("minatar", "minatar", ("MinAtar/",)),
    EnvPackage("panda_gym", "panda-gym", ("Panda",)),
)


def ensure_registered(env_id: object) -> str:
    """Make ``env_id`` a registered id, importing what registers it; return the bare id.

    ``module:Id`` imports ``module`` first, as ``gymnasium.make`` does.
    """
    if not isinstance(env_id, str):
        raise ConfigError(
            "env.id", f"must be a string, got {env_id!r}", "pass e.g. env.id=CartPole-v1"
        )
    module, _, name = env_id.rpartition(":")
    if module:
        _import(module, f"module {module!r} does not import", "install it or fix the name")
    if name in gym.registry:
        return name
    owner = next((p for p in PACKAGES if name.startswith(p.prefixes)), None)
    if owner is not None:
        if importlib.util.find_spec(owner.module) is None:
            raise ConfigError(
                "env.id",
                f"{name!r} is registered by the {owner.module} package, which is not installed",
                f'pip install "{owner.install}"',
            )
        _import(owner.module, f"{owner.module}, which registers {name!r}, does not import", "")
        if name in gym.registry:
            return name
        raise ConfigError(
            "env.id", f"{owner.module} does not register {name!r}", id_fix(name, owner)
        )
    for package in PACKAGES:  # an id without a known prefix may still be one of theirs
        if importlib.util.find_spec(package.module) is not None:
            try:
                importlib.import_module(package.module)
            except Exception:  # a broken unrelated package is not this id's fault
                continue
            if name in gym.registry:
                return name
    raise ConfigError("env.id", f"{env_id!r} is not a registered Gymnasium id", id_fix(name))


def id_fix(name: str, owner: EnvPackage | None = None) -> str:
    """Ids that look like ``name`` (a typo, another version), or how to name an unknown one.

    >>> id_fix("acrobot-v2")
    'did you mean env.id=Acrobot-v1?'
    """
    ids = [i for i in gym.registry if owner is None or i.startswith(owner.prefixes)]
    lowered = {i.lower(): i for i in ids}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.75)
    if close:
        return "did you mean " + ", ".join(f"env.id={lowered[c]}" for c in close) + "?"
    return (
        "pass a registered id, e.g. env.id=CartPole-v1 (gymnasium.pprint_registry() lists them); "
        "for an id a package registers on import, name it: env.id=<module>:<id>"
    )


def _import(module: str, problem: str, fix: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ConfigError("env.id", f"{problem} ({err})", fix or "reinstall it") from None
