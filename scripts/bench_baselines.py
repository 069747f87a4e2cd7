"""The baselines ``scripts/bench.py`` measures rlrec against, each run as a whole process.

    python scripts/bench_baselines.py recordvideo --episodes 5 --max-steps 500 --out DIR
    python scripts/bench_baselines.py render --episodes 5 --max-steps 500
    python scripts/bench_baselines.py guide --episodes 10000

``recordvideo``: Gymnasium's RecordVideo + RecordEpisodeStatistics filming every episode (moviepy);
with ``--wrappers rlrec``, rlrec's drop-ins of the two instead (the same loop, another import).
``render``: the same loop calling ``env.render()`` and dropping the frame: the floor for a recorder.
Both take ``--env`` (an ALE id imports ale-py) and ``--policy random``.
``guide``: the "Recording Agents" guide's training loop with RecordEpisodeStatistics (random
policy, each episode logged), without RecordVideo: what ``trigger=never`` replaces; with
``--wrappers rlrec``, rlrec's drop-in RecordEpisodeStatistics.
``recorder``: the guide's loop inside ``rlrec.wrappers.Recorder`` (``--trigger never``: random
actions, statistics to Parquet only; ``--trigger every``: ``--policy``'s actions, every episode
filmed), the contract's seeds (``seed=0``).
``vector-loop``: a CleanRL-style loop on 8 CartPole sub-environments with vector wrappers.
``vector``: Gymnasium's own vector env (``--num-envs``, ``--vectorization``) stepping random
actions with its default autoreset until ``--episodes`` episodes have ended: what vectorising
alone buys, without per-episode seeds or anything recorded.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gymnasium as gym
import numpy as np
from bench_policies import balance, balance_long

POLICIES = {"balance": balance, "balance_long": balance_long}


def _wrapper(args: argparse.Namespace, name: str) -> type:
    """The wrapper ``name``, Gymnasium's or rlrec's (imported here: the import is part of what
    a loop pays)."""
    import importlib

    module = "rlrec.wrappers" if args.wrappers == "rlrec" else "gymnasium.wrappers"
    return getattr(importlib.import_module(module), name)


def _make(args: argparse.Namespace, **kwargs) -> gym.Env:
    """``gymnasium.make(args.env)``, with the package that registers ALE ids imported first."""
    if args.env.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    return gym.make(args.env, max_episode_steps=args.max_steps, **kwargs)


def _policy(args: argparse.Namespace, env: gym.Env):
    """``--policy``: a CartPole controller, or ``random`` (the action space's own sampler)."""
    if args.policy == "random":
        return lambda obs: env.action_space.sample()
    return POLICIES[args.policy]


def recordvideo(args: argparse.Namespace) -> None:
    RecordEpisodeStatistics = _wrapper(args, "RecordEpisodeStatistics")
    RecordVideo = _wrapper(args, "RecordVideo")
    env = _make(args, render_mode="rgb_array")
    extra = {"preset": args.preset} if args.preset else {}  # rlrec's drop-in only
    env = RecordVideo(
        env, video_folder=args.out, name_prefix="eval", episode_trigger=lambda _: True, **extra
    )
    env = RecordEpisodeStatistics(env, buffer_length=args.episodes)
    act = _policy(args, env)
    for seed in range(args.episodes):
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(act(obs))
            done = terminated or truncated
    env.close()
    print("lengths", list(env.length_queue))


def render(args: argparse.Namespace) -> None:
    env = _make(args, render_mode="rgb_array")
    act = _policy(args, env)
    lengths = []
    for seed in range(args.episodes):
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        env.render()
        done, length = False, 0
        while not done:
            obs, _, terminated, truncated, _ = env.step(act(obs))
            env.render()
            length += 1
            done = terminated or truncated
        lengths.append(length)
    env.close()
    print("lengths", lengths)


def guide(args: argparse.Namespace) -> None:
    """The guide's training loop (10,000 episodes, statistics logged per episode) without video."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    RecordEpisodeStatistics = _wrapper(args, "RecordEpisodeStatistics")
    env = RecordEpisodeStatistics(gym.make("CartPole-v1"))
    for episode_num in range(args.episodes):
        if args.contract_seeds:  # what rlrec must do per episode: ss(0, i) and ss(0, i, 1)
            env.action_space.seed(_ss(0, episode_num, 1))
            env.reset(seed=_ss(0, episode_num))
        else:
            env.reset()
        episode_over = False
        while not episode_over:
            action = env.action_space.sample()
            _, _, terminated, truncated, info = env.step(action)
            episode_over = terminated or truncated
        if "episode" in info:
            episode_data = info["episode"]
            logging.info(
                f"Episode {episode_num}: reward={episode_data['r']:.1f}, "
                f"length={episode_data['l']}, time={episode_data['t']:.2f}s"
            )
            if episode_num % 1000 == 0:
                recent_rewards = list(env.return_queue)[-100:]
                print(f"  -> Average over last 100 episodes: {np.mean(recent_rewards):.1f}")
    env.close()


def recorder(args: argparse.Namespace) -> None:
    """The guide's loop (random actions) inside a Recorder: Parquet rows, and films if asked."""
    from rlrec.wrappers import Recorder

    render_mode = None if args.trigger == "never" else "rgb_array"
    env = gym.make("CartPole-v1", render_mode=render_mode, max_episode_steps=args.max_steps)
    env = Recorder(env, args.out, trigger=args.trigger, sinks=["parquet"], seed=0)
    act = POLICIES[args.policy]
    if args.trigger == "never":  # the guide's random actions

        def act(obs):
            return env.action_space.sample()

    for _ in range(args.episodes):
        obs, _ = env.reset()
        episode_over = False
        while not episode_over:
            obs, _, terminated, truncated, _ = env.step(act(obs))
            episode_over = terminated or truncated
    env.close()


def vector_loop(args: argparse.Namespace) -> None:
    """A CleanRL-style loop on a SyncVectorEnv (``--num-envs``, ``--steps`` vector steps, random
    actions) wrapped as ``--wrappers`` says: ``gymnasium`` or ``rlrec`` (their vector
    RecordEpisodeStatistics), ``recorder`` (rlrec's vector Recorder: Parquet rows; with
    ``--trigger every`` it films sub-environment 0's episodes), or ``none``; ``--render-first``
    renders sub-environment 0 at every step (the floor for filming it)."""
    render = args.render_first or args.trigger != "never"
    envs = gym.make_vec(
        "CartPole-v1",
        num_envs=args.num_envs,
        vectorization_mode="sync",
        render_mode="rgb_array" if render else None,
    )
    if args.wrappers == "recorder":
        from rlrec.wrappers.vector import Recorder

        envs = Recorder(envs, args.out, trigger=args.trigger, sinks=["parquet"], seed=0)
    elif args.wrappers != "none":
        import importlib

        module = (
            "rlrec.wrappers.vector" if args.wrappers == "rlrec" else "gymnasium.wrappers.vector"
        )
        envs = importlib.import_module(module).RecordEpisodeStatistics(envs)
    first = envs.unwrapped.envs[0]
    envs.action_space.seed(0)
    envs.reset(seed=0)
    for _ in range(args.steps):
        envs.step(envs.action_space.sample())
        if args.render_first:
            first.render()
    envs.close()


def vector(args: argparse.Namespace) -> None:
    import bench_envs  # noqa: F401  registers SlowCartPole-v1

    if args.num_envs == 1:
        env = gym.make(args.env)
        env.action_space.seed(0)
        for episode in range(args.episodes):
            env.reset(seed=episode)
            done = False
            while not done:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                done = terminated or truncated
        env.close()
        return
    envs = gym.make_vec(args.env, num_envs=args.num_envs, vectorization_mode=args.vectorization)
    envs.action_space.seed(0)
    envs.reset(seed=0)
    ended = 0
    while ended < args.episodes:
        _, _, terminated, truncated, _ = envs.step(envs.action_space.sample())
        ended += int((terminated | truncated).sum())
    envs.close()


def _ss(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "baseline",
        choices=["recordvideo", "render", "guide", "recorder", "vector", "vector-loop"],
    )
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=500, help="0: the env's own limit")
    parser.add_argument("--policy", choices=[*sorted(POLICIES), "random"], default="balance")
    parser.add_argument("--out", default="bench-videos")
    parser.add_argument(
        "--contract-seeds",
        action="store_true",
        help="guide: reseed each episode as the rlrec contract does",
    )
    parser.add_argument(
        "--wrappers",
        choices=["gymnasium", "rlrec", "recorder", "none"],
        default="gymnasium",
        help="whose wrappers",
    )
    parser.add_argument("--steps", type=int, default=100_000, help="vector-loop: vector steps")
    parser.add_argument(
        "--render-first", action="store_true", help="vector-loop: render sub-env 0 each step"
    )
    parser.add_argument("--trigger", default="never", help="recorder: its trigger")
    parser.add_argument(
        "--env", default="CartPole-v1", help="recordvideo, render, vector: the env id"
    )
    parser.add_argument("--preset", help="recordvideo --wrappers rlrec: video.preset")
    parser.add_argument("--num-envs", type=int, default=2, help="vector: sub-environments")
    parser.add_argument("--vectorization", default="async", help="vector: sync or async")
    args = parser.parse_args()
    args.max_steps = args.max_steps or None
    baselines = {
        "recordvideo": recordvideo,
        "render": render,
        "guide": guide,
        "recorder": recorder,
        "vector": vector,
        "vector-loop": vector_loop,
    }
    baselines[args.baseline](args)


if __name__ == "__main__":
    main()
