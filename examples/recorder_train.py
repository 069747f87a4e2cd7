"""Train in your own loop, film every 100th episode, log to TensorBoard: ``Recorder``.

The agent is tabular Q-learning on a grid over CartPole's pole angle and angular velocity,
written out here as a user would. TensorBoard is an extra: ``pip install -e ".[tensorboard]"``
(``"wandb"`` or ``"mlflow"`` in ``sinks`` work the same way, with their extras).

    python examples/recorder_train.py     # -> outputs/train/ (tensorboard --logdir outputs/train)
"""

from bisect import bisect_right

import gymnasium as gym
import numpy as np

from rlrec.wrappers import Recorder

episodes, lr, gamma = 600, 0.1, 0.99
# the bin edges of the pole's angle and angular velocity (plain lists: bisect on a float is
# np.digitize's answer in a fraction of its time, which matters once a step)
edges = [np.linspace(-0.21, 0.21, 5).tolist(), np.linspace(-2.0, 2.0, 11).tolist()]
q = np.zeros((6, 12, 2))
rng = np.random.default_rng(0)


def cell(obs):
    return bisect_right(edges[0], obs[2]), bisect_right(edges[1], obs[3])


env = Recorder(
    gym.make("CartPole-v1", render_mode="rgb_array"),
    run_dir="outputs/train",
    trigger={"_target_": "rlrec.triggers.Periodic", "period": 100},
    video={"name_prefix": "training"},
    sinks=["parquet", "console", "plot", "report", "tensorboard"],
    seed=0,
)
for episode in range(episodes):
    epsilon = max(0.05, 0.99**episode)
    obs, _ = env.reset()
    done = False
    while not done:
        s = cell(obs)
        action = int(rng.integers(2)) if rng.random() < epsilon else int(q[s].argmax())
        obs, reward, terminated, truncated, _ = env.step(action)
        target = reward + (0.0 if terminated else gamma * q[cell(obs)].max())
        q[(*s, action)] += lr * (target - q[(*s, action)])
        done = terminated or truncated
env.close()  # summary.json, the learning curve, report.html, the TensorBoard run's end
