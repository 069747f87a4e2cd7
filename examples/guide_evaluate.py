"""The guide's first scenario, evaluate and film every episode, with rlrec's drop-in wrappers.

One line differs from the guide: the import. The videos are H.264 (they play in a browser, W&B,
MLflow and notebooks), each frame streams to an encoder process as it is rendered, and nothing
needs moviepy.

    python examples/guide_evaluate.py     # -> cartpole-agent/eval-episode-{0..3}.mp4
"""

import gymnasium as gym
import numpy as np

from rlrec.wrappers import RecordEpisodeStatistics, RecordVideo

num_eval_episodes = 4
env_name = "CartPole-v1"

env = gym.make(env_name, render_mode="rgb_array")  # rgb_array: the frames to film
env = RecordVideo(
    env,
    video_folder="cartpole-agent",
    name_prefix="eval",
    episode_trigger=lambda x: True,  # film every episode
)
env = RecordEpisodeStatistics(env, buffer_length=num_eval_episodes)

print(f"Starting evaluation for {num_eval_episodes} episodes...")
for episode_num in range(num_eval_episodes):
    obs, info = env.reset()
    episode_reward, step_count = 0, 0
    episode_over = False
    while not episode_over:
        action = env.action_space.sample()  # your trained agent's policy goes here
        obs, reward, terminated, truncated, info = env.step(action)
        episode_reward += reward
        step_count += 1
        episode_over = terminated or truncated
    print(f"Episode {episode_num + 1}: {step_count} steps, reward = {episode_reward}")
env.close()

print(f"Episode durations: {list(env.time_queue)}")
print(f"Episode rewards: {list(env.return_queue)}")
print(f"Episode lengths: {list(env.length_queue)}")
print(f"Average reward: {np.mean(env.return_queue):.2f} ± {np.std(env.return_queue):.2f}")
print(f"Average episode length: {np.mean(env.length_queue):.1f} steps")
