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

#: Algorithms a model file can name, by the module its policy class lives in.
_ALGOS_BY_POLICY_MODULE = {"dqn": "DQN", "sac": "SAC", "td3": "TD3"}
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
        name = _detect_algo(Path(path)) if algo == "auto" else algo
        if name not in ALGOS:
            raise ConfigError(
                "policy.algo", f"must be auto or one of {', '.join(ALGOS)}, got {algo!r}",
                "pass e.g. policy.algo=PPO",
            )  # fmt: skip
        self.model = getattr(stable_baselines3, name).load(path, device=device)
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


def _detect_algo(path: Path) -> str:
    """The algorithm that saved ``path``, from the policy class and settings it stored."""
    try:
        data = json.loads(zipfile.ZipFile(path).read("data"))
        module = data["policy_class"]["__module__"]
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError):
        raise ConfigError(
            "policy.path",
            f"{path} is not a Stable-Baselines3 model file",
            "pass the .zip that model.save() wrote",
        ) from None
    for part, name in _ALGOS_BY_POLICY_MODULE.items():
        if f".{part}." in module:
            return name
    if "clip_range" in data:  # PPO and A2C share their policy class
        return "PPO"
    if "common.policies" in module:
        return "A2C"
    raise ConfigError(
        "policy.algo",
        f"cannot tell which algorithm saved {path} (policy {module})",
        "name it, e.g. policy.algo=PPO",
    )
