"""A CleanRL-style single-file agent that records while it learns: REINFORCE in numpy.

The loop is the user's (a linear softmax policy, Monte-Carlo returns normalised per episode), the
env is wrapped in ``Recorder``: every episode lands in ``episodes.parquet``, every 50th is
filmed, and ``report.html`` shows the learning curve beside the films.

    python examples/cleanrl_reinforce.py  # -> outputs/reinforce/
"""

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq

from rlrec.wrappers import Recorder


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    seed: int = 1
    episodes: int = 400
    learning_rate: float = 0.01
    gamma: float = 0.99
    film_every: int = 50
    run_dir: str = "outputs/reinforce"


def softmax(logits):
    z = np.exp(logits - logits.max())
    return z / z.sum()


if __name__ == "__main__":
    args = Args()
    rng = np.random.default_rng(args.seed)
    env = Recorder(
        gym.make(args.env_id, render_mode="rgb_array"),
        run_dir=args.run_dir,
        trigger=lambda episode: episode % args.film_every == 0,
        sinks=["parquet", "console", "report"],
        seed=args.seed,
    )
    n_obs, n_actions = env.observation_space.shape[0], env.action_space.n
    theta = np.zeros((n_obs, n_actions))
    for _ in range(args.episodes):
        obs, _ = env.reset()
        grads, rewards, done = [], [], False
        while not done:
            probs = softmax(obs @ theta)
            action = int(rng.choice(n_actions, p=probs))
            grads.append(np.outer(obs, np.eye(n_actions)[action] - probs))  # d log pi / d theta
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            done = terminated or truncated
        returns = np.zeros(len(rewards))
        running = 0.0
        for t in reversed(range(len(rewards))):
            running = rewards[t] + args.gamma * running
            returns[t] = running
        advantages = (returns - returns.mean()) / (returns.std() + 1e-8)  # the episode's baseline
        theta += args.learning_rate * sum(g * a for g, a in zip(grads, advantages, strict=True))
    env.close()
    returns = pq.read_table(f"{args.run_dir}/episodes.parquet")["return"].to_numpy()
    print(
        f"mean return: first 50 episodes {returns[:50].mean():.1f}, "
        f"last 50 {returns[-50:].mean():.1f}"
    )
