"""Stable-Baselines3: record PPO's episodes while ``model.learn`` runs, then evaluate the model.

Needs the extra: ``pip install -e ".[sb3]"``. SB3 builds its vector env with ``make_vec_env``;
``wrapper_class=Recorder`` puts rlrec around the env inside it, so every training episode
becomes a row of ``outputs/sb3-train/episodes.parquet`` and every 25th is filmed while the
agent learns. The trained model is then evaluated by rlrec's own loop (``policy=sb3``), as
``python run.py policy=sb3 policy.path=outputs/ppo-cartpole.zip trigger=every`` would.

    python examples/sb3_ppo.py            # -> outputs/sb3-train/, outputs/sb3-eval/
"""

import pandas as pd
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import rlrec
from rlrec.wrappers import Recorder

vec_env = make_vec_env(
    "CartPole-v1",
    n_envs=1,  # one Recorder, one run directory (see the vector Recorder for more)
    seed=0,
    env_kwargs={"render_mode": "rgb_array"},
    wrapper_class=Recorder,
    wrapper_kwargs={
        "run_dir": "outputs/sb3-train",
        "trigger": {"_target_": "rlrec.triggers.Periodic", "period": 25},
        "video": {"name_prefix": "training"},
        "sinks": ["parquet", "report"],
        "seed": 0,
    },
)
model = PPO("MlpPolicy", vec_env, seed=0, verbose=0)
model.learn(total_timesteps=20_000)  # CartPole is learnt by then (return ~270)
model.save("outputs/ppo-cartpole.zip")
vec_env.close()  # closes the Recorder: summary.json, the merged Parquet, report.html

training = pd.read_parquet("outputs/sb3-train/episodes.parquet")
first, last = training["return"][:20].mean(), training["return"][-20:].mean()
filmed = training["video"].notna().sum()
print(
    f"training: {len(training)} episodes, {filmed} filmed; mean return first 20 {first:.1f}, "
    f"last 20 {last:.1f}"
)

result = rlrec.run(
    ["policy=sb3", "policy.path=outputs/ppo-cartpole.zip", "trigger=every", "episodes=5"],
    run_dir="outputs/sb3-eval",
)
print(f"evaluation: mean return {result.summary['mean']:.1f} over {result.summary['n']} episodes")
