"""Policies the tests plug in by ``_target_``, as a user would."""

from __future__ import annotations

from typing import Any

import numpy as np


class BalancePolicy:
    """Deterministic CartPole controller: ``int(theta + 0.5 * theta_dot > 0)``."""

    def __init__(self, observation_space: Any, action_space: Any) -> None:
        pass

    def act(self, obs: np.ndarray) -> int:
        return int(obs[2] + 0.5 * obs[3] > 0)


class HookRecorder(BalancePolicy):
    """Remembers every optional call the runner makes, to check them against the episodes."""

    def __init__(self, observation_space: Any, action_space: Any, tag: str = "") -> None:
        self.tag = tag
        self.resets: list[int] = []
        self.updates: list[dict[str, Any]] = []
        self.ends: list[dict[str, Any]] = []

    def reset(self, seed: int) -> None:
        self.resets.append(seed)

    def update(self, **step: Any) -> None:
        self.updates.append(step)

    def end_episode(self, **episode: Any) -> None:
        self.ends.append(episode)


class LateBalancer(BalancePolicy):
    """Falls over fast for five episodes, then balances: short videos first, then a long one."""

    def __init__(self, observation_space: Any, action_space: Any) -> None:
        self.episodes = 0

    def reset(self, seed: int) -> None:
        self.episodes += 1

    def act(self, obs: np.ndarray) -> int:
        return 0 if self.episodes <= 5 else super().act(obs)


class BatchBalancePolicy(BalancePolicy):
    """``BalancePolicy`` on a vector env's whole batch at once; its ``act`` must not be called."""

    def act(self, obs: np.ndarray) -> int:
        raise AssertionError("act called on a policy whose act_batch should have been used")

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)


class FailsInWorker(BalancePolicy):
    """Balances, but in worker process ``worker`` fails at its ``after``-th episode: by raising,
    or by killing its own process (``how=kill``), as an out-of-memory kill would. With ``mark``
    (a file), it fails only once another worker has finished an episode (it makes the file): on
    a busy machine that worker may start late."""

    def __init__(
        self,
        observation_space: Any,
        action_space: Any,
        worker: int = 1,
        after: int = 3,
        how="raise",
        mark: str | None = None,
    ) -> None:
        import multiprocessing

        self.armed = multiprocessing.current_process().name == f"rlrec-worker-{worker}"
        self.after, self.how, self.mark, self.episodes = after, how, mark, 0

    def reset(self, seed: int) -> None:
        import time
        from pathlib import Path

        self.episodes += 1
        if self.mark and not self.armed and self.episodes == 2:
            Path(self.mark).touch()
        if self.armed and self.episodes > self.after:
            deadline = time.monotonic() + 120
            while self.mark and not Path(self.mark).exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            if self.how == "kill":
                import os
                import signal

                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("the policy broke")


class OnlyBatchPolicy:
    """``BalancePolicy`` with ``act_batch`` and no ``act``: rlrec hands it batches of one."""

    def __init__(self, observation_space: Any, action_space: Any) -> None:
        pass

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)


class ObsDrivenPolicy:
    """A deterministic policy for any env family: its action is a fixed function of the
    observation (a joint vector, an image, or MiniGrid's dict), so a run and an independent loop
    that see the same observations take the same actions."""

    def __init__(self, observation_space: Any, action_space: Any) -> None:
        self.action_space = action_space

    def act(self, obs: Any) -> Any:
        if isinstance(obs, dict):  # MiniGrid: what it sees, and where it faces
            obs = np.append(np.asarray(obs["image"], np.float64).ravel(), obs["direction"])
        x = np.asarray(obs, np.float64).ravel()
        signal = float(np.dot(x, np.cos(np.arange(x.size))))
        space = self.action_space
        if hasattr(space, "n"):
            return int(abs(signal) * 7) % int(space.n)
        phases = signal + np.arange(space.shape[0], dtype=np.float64)
        return (space.low + (space.high - space.low) * (0.5 + 0.5 * np.sin(phases))).astype(
            space.dtype
        )


class NanPolicy:
    """Sends NaN actions: MuJoCo warns that the simulation is unstable (and resets it)."""

    def __init__(self, observation_space: Any, action_space: Any) -> None:
        self.action = np.full(action_space.shape, np.nan, action_space.dtype)

    def act(self, obs: Any) -> Any:
        return self.action


class DiesOnSeed(BalancePolicy):
    """Kills its own process (SIGKILL: no exception, no last word) at its first action in the run
    whose seed is ``doomed``: a job its cluster loses. Pass ``run_seed=${seed}``."""

    def __init__(self, observation_space: Any, action_space: Any, run_seed: int, doomed: int):
        self.doomed = run_seed == doomed

    def act(self, obs: np.ndarray) -> int:
        if self.doomed:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return super().act(obs)


class TorchThreadsPolicy(BalancePolicy):
    """A policy that uses torch (as SB3's do) and writes, at each episode's start, how many
    threads torch may use in its process to a file of its own under ``folder``."""

    def __init__(self, observation_space: Any, action_space: Any, folder: str) -> None:
        import os

        import torch

        self.torch, self.path = torch, f"{folder}/{os.getpid()}"

    def reset(self, seed: int) -> None:
        with open(self.path, "a") as out:
            out.write(f"{self.torch.get_num_threads()}\n")
