"""Evaluate with the whole of rlrec around your own loop: ``Recorder``.

The run directory is the one ``python run.py`` writes (episodes.parquet, videos, summary.json,
report.html); with ``seed=0`` and a loop that samples actions, its rows equal those of
``python run.py seed=0 episodes=4``.

    python examples/recorder_evaluate.py  # -> outputs/evaluate/
"""

import gymnasium as gym
import pandas as pd

from rlrec.wrappers import Recorder

env = gym.make("CartPole-v1", render_mode="rgb_array")
with Recorder(env, run_dir="outputs/evaluate", trigger="every", seed=0) as env:
    for _ in range(4):
        obs, info = env.reset()  # episode i is reset with ss(0, i)
        done = False
        while not done:
            action = env.action_space.sample()  # your trained agent's policy goes here
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated

episodes = pd.read_parquet("outputs/evaluate/episodes.parquet")
print(episodes[["episode", "seed", "return", "length", "video"]])
print(
    f"mean return {env.summary['mean']:.2f}, 95% CI "
    f"[{env.summary['ci95_low']:.2f}, {env.summary['ci95_high']:.2f}]"
)
