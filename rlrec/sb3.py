"""``policy=sb3``: evaluate a trained Stable-Baselines3 model (``model.zip``) with ``run.py``.

Stable-Baselines3 is an optional extra (``pip install -e ".[sb3]"``). The model's algorithm is
read from the file (``policy.algo=auto``) or named (``policy.algo=PPO``). Each episode seeds
torch with the episode's policy seed, so a stochastic policy (``policy.deterministic=false``) is
reproducible too; the model does not learn here, so episodes may run in parallel.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym

from rlrec.errors import ConfigError

ALGOS = ("PPO", "A2C", "DQN", "SAC", "TD3", "DDPG")


class SB3Policy:
    """Acts with ``model.predict``; ``act_batch`` for vector envs."""

    #: A trained model is evaluated, not trained: nothing to save or restore on resume.
    learning = False

    def __init__(
        self,
        *,
        observation_space: gym.Space,
        action_space: gym.Space,
        path: str | None = None,
        algo: str = "auto",
        deterministic: bool = True,
        device: str = "cpu",
    ) -> None:
        try:
            import stable_baselines3
        except ImportError:
            raise ConfigError(
                "policy",
                "policy=sb3 needs Stable-Baselines3, which is not installed",
                'pip install -e ".[sb3]"',
            ) from None
        if not path or not Path(path).is_file():
            raise ConfigError(
                "policy.path",
                f"must be a Stable-Baselines3 model file, got {path!r}",
                "pass policy.path=<model.zip> (what model.save() wrote)",
            )
        if algo != "auto" and algo not in ALGOS:
            raise ConfigError(
                "policy.algo", f"must be auto or one of {', '.join(ALGOS)}, got {algo!r}",
                "pass e.g. policy.algo=PPO",
            )  # fmt: skip
        policy, matching, family = _saved_policy(Path(path))
        if algo == "auto" and not matching:
            raise ConfigError(
                "policy.algo",
                f"cannot tell which algorithm saved {path} (policy {policy})",
                "name it, e.g. policy.algo=PPO",
            )
        name = matching[0] if algo == "auto" else algo
        if matching and name not in family:
            raise ConfigError(
                "policy.algo",
                f"{path} holds a policy of class {policy}, saved with the settings of "
                f"{' or '.join(matching)}; {name} cannot load it",
                f"pass policy.algo={matching[0]} (or policy.algo=auto)",
            )
        try:
            self.model = getattr(stable_baselines3, name).load(path, device=device)
        except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(
                "policy.path",
                f"{name} cannot load {path} (a policy of class {policy}): "
                f"{type(err).__name__}: {' '.join(str(err).split())}",
                "pass the model file this algorithm saved, or the algorithm that saved it "
                "(policy.algo)",
            ) from None
        if self.model.observation_space.shape != observation_space.shape:
            raise ConfigError(
                "policy.path",
                f"the model observes {self.model.observation_space}, the env gives "
                f"{observation_space}",
                "evaluate the model on the env it was trained on (env.id)",
            )
        self.deterministic = bool(deterministic)

    def reset(self, seed: int) -> None:
        """Seed torch with the episode's policy seed (a stochastic policy samples with it)."""
        import torch

        torch.manual_seed(seed)

    def act(self, obs: Any) -> Any:
        return self.model.predict(obs, deterministic=self.deterministic)[0]

    def act_batch(self, obs_batch: Any) -> Any:
        return self.model.predict(obs_batch, deterministic=self.deterministic)[0]


def _saved_policy(path: Path) -> tuple[str, list[str], list[str]]:
    """The policy class ``path`` holds (``module.Class``), the algorithms whose settings the
    file has (likeliest first) and all that can load its policy class. SB3's zip names no
    algorithm: PPO and A2C both save an ``ActorCriticPolicy``, TD3 and DDPG a ``TD3Policy``."""
    try:
        data = json.loads(zipfile.ZipFile(path).read("data"))
        saved = data["policy_class"]
        module, qualname = saved["__module__"], _class_name(saved.get(":serialized:", ""))
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError):
        raise ConfigError(
            "policy.path",
            f"{path} is not a Stable-Baselines3 model file",
            "pass the .zip that model.save() wrote",
        ) from None
    policy = f"{module}.{qualname}" if qualname else module
    if ".dqn." in module:
        return policy, ["DQN"], ["DQN"]
    if ".sac." in module:
        return policy, ["SAC"], ["SAC"]
    if ".td3." in module:  # DDPG is TD3 with a delay of 1 and no target smoothing
        ddpg = data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0.0
        return policy, ["DDPG"] if ddpg else ["TD3"], ["TD3", "DDPG"]
    if "common.policies" in module:  # an actor-critic: only PPO keeps a clip range
        return policy, ["PPO"] if "clip_range" in data else ["A2C"], ["PPO", "A2C"]
    return policy, [], list(ALGOS)


def _class_name(serialized: str) -> str:
    """The class name in SB3's base64 pickle of a class reference, read without unpickling
    (the module, then the name, are its only strings)."""
    import base64
    import pickletools

    strings = [
        arg for _, arg, _ in pickletools.genops(base64.b64decode(serialized))
        if isinstance(arg, str)
    ]  # fmt: skip
    return strings[1] if len(strings) >= 2 else ""
