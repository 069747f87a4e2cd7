"""Shared helpers: the real CLI in a subprocess, an independent Gymnasium loop, a video decoder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

# CI runs the same examples every time (a red build should be reproducible); HYPOTHESIS_PROFILE=deep
# searches far more widely, to be run by hand when the config checks change.
settings.register_profile("ci", max_examples=60, derandomize=True, deadline=None)
settings.register_profile("deep", max_examples=1500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def contract_seed(*keys: int) -> int:
    """The contract's ``ss`` written out here, independently of rlrec.seeding."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def plain_loop(
    env_id: str,
    run_seed: int,
    episodes: int,
    act: Callable[[Any], Any] | None = None,
    max_episode_steps: int | None = None,
) -> list[dict[str, Any]]:
    """What the contract says a run must produce, computed with Gymnasium alone."""
    env = gym.make(env_id, max_episode_steps=max_episode_steps)
    rows = []
    for i in range(episodes):
        seed = contract_seed(run_seed, i)
        env.action_space.seed(contract_seed(run_seed, i, 1))
        obs, _ = env.reset(seed=seed)
        total, length = 0.0, 0
        while True:
            action = env.action_space.sample() if act is None else act(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            length += 1
            if terminated or truncated:
                break
        rows.append(
            {
                "episode": i,
                "seed": seed,
                "return": total,
                "length": length,
                "terminated": bool(terminated),
                "truncated": bool(truncated),
            }
        )
    env.close()
    return rows


@dataclass
class CliResult:
    """A finished ``python run.py`` and where it wrote."""

    proc: subprocess.CompletedProcess[str]
    out_dir: Path

    @property
    def code(self) -> int:
        return self.proc.returncode


def run_cli(
    args: list[str],
    out_dir: Path,
    *,
    multirun: bool = False,
    cwd: Path = ROOT,
    command: list[str] | None = None,
    timeout: float = 300,
) -> CliResult:
    """Run the real CLI in a subprocess with its output folder under ``out_dir``."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    cmd = (command or [sys.executable, str(ROOT / "run.py")]) + (["-m"] if multirun else [])
    cmd += [*args, f"{key}={out_dir}"]
    env = os.environ | {"PYTHONPATH": "", "HYDRA_FULL_ERROR": ""}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    return CliResult(proc, out_dir)


def decode(path: Path) -> tuple[int, float, tuple[int, int]]:
    """Decode a whole video: (frames actually decoded, fps, (width, height))."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    frames, size = 0, (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames += 1
        size = (frame.shape[1], frame.shape[0])
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps, size


def compose_config(overrides: list[str] | None = None):
    """The config the CLI would build from ``overrides`` (without Hydra's own node)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides or [])


@pytest.fixture
def cfg_factory():
    return compose_config
