"""Replay: rebuild any recorded episode from its seed and its actions, and prove it is the same.

An episode is reset with its contract seed and stepped with the actions it took; a running digest
of its observations, stored with every episode, tells whether the replay is the episode that
happened. ``rlrec-replay <run dir> --episode N`` (or ``python scripts/replay.py``) films any past
episode of any run this way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlrec.rundir import RunDir


class ReplayError(Exception):
    """An episode that cannot be replayed: the run, the episode or its actions are missing."""

    exit_code = 2


class NotReproducible(ReplayError):
    """The replay is not the episode that happened: its observations differ."""

    exit_code = 1


def replay_to_video(
    run_dir: Path, episode: int, out: Path | None = None, codec: str | None = None
) -> Path:
    """Film ``episode`` of the run in ``run_dir`` by replay; return the video's path.

    Raises ``ReplayError`` if the run, the episode or its actions are missing, or if the replay is
    not the episode that happened (its observation digest differs); no video is left then.
    """
    from omegaconf import OmegaConf

    from rlrec.codecs import DEFAULT_PRESET, codec_for
    from rlrec.envs import make_env
    from rlrec.episode import replay
    from rlrec.video import Encoder, VideoSettings, frame_skip, video_fps

    run = RunDir(run_dir)
    config = run.read_config()
    if config is None:
        raise ReplayError(f"{run_dir} is not an rlrec run directory (no recorded config)")
    rebuild_error = (config.get("recorder") or {}).get("rebuild_error")
    if rebuild_error:  # a Recorder's env that gymnasium.make cannot build again
        raise ReplayError(f"the env of {run_dir} cannot be rebuilt to replay it: {rebuild_error}")
    cfg = OmegaConf.create(config)
    row = _episode_row(run, episode)
    actions = _episode_actions(run, episode)
    chosen = codec_for(codec or cfg.video.codec)
    out = out or run.replay_video(episode, chosen.extension)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a Recorder's env was the user's: replayed through the camera it was filmed with
    recorder = config.get("recorder") is not None
    env = make_env(cfg.env, render=True, log_dir=run.path, follow_agent=not recorder)
    video = VideoSettings(
        chosen,
        video_fps(cfg.video.fps, env.metadata, env.spec, frame_skip(env).factor),
        preset=cfg.video.get("preset", DEFAULT_PRESET),
        crf=cfg.video.get("crf") if chosen.name == cfg.video.codec else None,
    )
    try:
        with Encoder() as encoder:
            writer = encoder.open(out, video, f"env {cfg.env.id}, episode {episode}")
            try:
                digest = replay(env, int(row["seed"]), actions, writer.add)
            except BaseException:
                writer.abort()
                raise
            if digest != row["obs_digest"]:
                writer.abort()
                raise NotReproducible(
                    f"episode {episode} did not replay exactly (its observations differ from the "
                    f"recorded ones): {cfg.env.id} has randomness that its seed does not govern"
                )
            writer.close()
    finally:
        env.close()
    return out


def _episode_row(run: RunDir, episode: int) -> dict[str, Any]:
    import pyarrow.compute as pc

    table = run.read_episodes()
    if table is None:
        raise ReplayError(f"{run.path} has no episodes (was the parquet sink off?)")
    rows = table.filter(pc.equal(table["episode"], episode)).to_pylist()
    if not rows:
        raise ReplayError(f"episode {episode} is not in {run.episodes}")
    return rows[0]


def _episode_actions(run: RunDir, episode: int) -> np.ndarray:
    import pyarrow.compute as pc

    from rlrec.sinks.parquet import ACTIONS_DTYPE_KEY, ACTIONS_SHAPE_KEY

    table = run.read_actions()
    if table is None:
        raise ReplayError(
            f"the actions of {run.path} were not stored (sinks.parquet.actions=false,"
            " or the action space has no fixed array shape), so it cannot be replayed"
        )
    rows = table.filter(pc.equal(table["episode"], episode))
    if rows.num_rows == 0:
        raise ReplayError(f"no stored actions for episode {episode} in {run.path}")
    meta = table.schema.metadata
    shape = json.loads(meta[ACTIONS_SHAPE_KEY.encode()])
    dtype = np.dtype(meta[ACTIONS_DTYPE_KEY.encode()].decode())
    flat = rows["actions"][0].values.to_numpy(zero_copy_only=False)
    return flat.astype(dtype, copy=False).reshape(-1, *shape)


def main(argv: Sequence[str] | None = None) -> int:
    """``rlrec-replay <run dir> --episode N``: film a past episode; print the video's path."""
    parser = argparse.ArgumentParser(
        prog="rlrec-replay", description="Film any recorded episode again, by replaying it."
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (or a job of a sweep)")
    parser.add_argument("--episode", type=int, required=True, help="the 0-based episode index")
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the video (default: <run dir>/videos/replay-episode-<N>.<ext>)",
    )
    parser.add_argument(
        "--codec", help="h264, av1, gif, mp4v, vp9, vp8 or mjpg (default: the run's video.codec)"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, os.getcwd())  # an env registered by the user's own module, as in the run
    from rlrec.errors import ConfigError

    try:
        path = replay_to_video(args.run_dir, args.episode, args.out, args.codec)
    except (ReplayError, ConfigError) as err:
        print(f"rlrec-replay: error: {err}", file=sys.stderr)
        return err.exit_code
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
