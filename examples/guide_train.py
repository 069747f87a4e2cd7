"""The guide's second scenario, train and film periodically, with rlrec's drop-in wrappers.

As in the guide, the import line is the only change; ``action_space.sample()`` stands for the
agent being trained (see ``cleanrl_reinforce.py`` for one that learns).

    python examples/guide_train.py        # -> cartpole-training/training-episode-{0,250,...}.mp4
"""

import logging

import gymnasium as gym

from rlrec.wrappers import RecordEpisodeStatistics, RecordVideo

training_period = 250  # film every 250th episode
num_training_episodes = 10_000
env_name = "CartPole-v1"

logging.basicConfig(level=logging.INFO, format="%(message)s")

env = gym.make(env_name, render_mode="rgb_array")
env = RecordVideo(
    env,
    video_folder="cartpole-training",
    name_prefix="training",
    episode_trigger=lambda x: x % training_period == 0,
)
env = RecordEpisodeStatistics(env)

print(f"Starting training for {num_training_episodes} episodes")
for episode_num in range(num_training_episodes):
    obs, info = env.reset()
    episode_over = False
    while not episode_over:
        action = env.action_space.sample()  # your training agent goes here
        obs, reward, terminated, truncated, info = env.step(action)
        episode_over = terminated or truncated
    if "episode" in info and episode_num % 1000 == 0:
        episode_data = info["episode"]
        recent = list(env.return_queue)[-100:]
        logging.info(
            f"Episode {episode_num}: reward={episode_data['r']:.1f}, "
            f"length={episode_data['l']}, time={episode_data['t']:.4f}s, "
            f"average of the last 100: {sum(recent) / len(recent):.1f}"
        )
env.close()
