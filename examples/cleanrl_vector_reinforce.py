"""CleanRL-style REINFORCE on a ``SyncVectorEnv``, recorded by the vector ``Recorder``.

Four CartPole sub-environments step together under Gymnasium's default autoreset (``NEXT_STEP``:
the step after an episode ends resets that sub-environment, and its action is ignored). Each
sub-environment's episode updates the shared linear softmax policy when it ends. The Recorder
writes one row per finished episode (with its ``env_index``; numbered in the order they end),
films the episodes 0, 50, 100, ... that sub-environment 0 ran, and the report.

    python examples/cleanrl_vector_reinforce.py   # -> outputs/reinforce-vector/
"""

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq

from rlrec.wrappers.vector import Recorder


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    seed: int = 1
    num_envs: int = 4
    episodes: int = 400
    learning_rate: float = 0.01
    gamma: float = 0.99
    run_dir: str = "outputs/reinforce-vector"


def softmax(logits):
    z = np.exp(logits - logits.max())
    return z / z.sum()


if __name__ == "__main__":
    args = Args()
    rng = np.random.default_rng(args.seed)
    envs = gym.make_vec(
        args.env_id, num_envs=args.num_envs, vectorization_mode="sync", render_mode="rgb_array"
    )
    envs = Recorder(
        envs,
        run_dir=args.run_dir,
        trigger={"_target_": "rlrec.triggers.Periodic", "period": 50},
        video={"envs": [0]},  # film sub-environment 0's episodes that the trigger picks
        sinks=["parquet", "report"],
        seed=args.seed,
    )
    n_obs, n_actions = envs.single_observation_space.shape[0], envs.single_action_space.n
    theta = np.zeros((n_obs, n_actions))
    grads = [[] for _ in range(args.num_envs)]
    rewards = [[] for _ in range(args.num_envs)]
    obs, _ = envs.reset(seed=args.seed)
    resetting = np.zeros(args.num_envs, dtype=bool)  # NEXT_STEP: this step resets them
    finished = 0
    while finished < args.episodes:
        probs = [softmax(o @ theta) for o in obs]
        actions = np.array([rng.choice(n_actions, p=p) for p in probs])
        next_obs, reward, terminated, truncated, _ = envs.step(actions)
        for j in range(args.num_envs):
            if resetting[j]:
                continue  # the autoreset step: not a transition of any episode
            grads[j].append(np.outer(obs[j], np.eye(n_actions)[actions[j]] - probs[j]))
            rewards[j].append(reward[j])
            if terminated[j] or truncated[j]:
                returns, running = np.zeros(len(rewards[j])), 0.0
                for t in reversed(range(len(rewards[j]))):
                    running = rewards[j][t] + args.gamma * running
                    returns[t] = running
                advantages = (returns - returns.mean()) / (returns.std() + 1e-8)
                theta += args.learning_rate * sum(
                    g * a for g, a in zip(grads[j], advantages, strict=True)
                )
                grads[j], rewards[j] = [], []
                finished += 1
        resetting = terminated | truncated
        obs = next_obs
    envs.close()
    table = pq.read_table(f"{args.run_dir}/episodes.parquet")
    returns = table["return"].to_numpy()
    print(
        f"{len(returns)} episodes from {args.num_envs} sub-environments; mean return: "
        f"first 100 {returns[:100].mean():.1f}, last 100 {returns[-100:].mean():.1f}"
    )
