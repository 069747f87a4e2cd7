"""Replay: rebuild any recorded episode from its seed and its actions, and prove it is the same.

An episode is reset with its contract seed and stepped with the actions it took; a running digest
of its observations, stored with every episode, tells whether the replay is the episode that
happened. ``rlrec-replay <run dir> --episode N`` (or ``python scripts/replay.py``) films any past
episode of any run this way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


class ObsDigest:
    """A running BLAKE2b digest of an episode's observations (the reset one, then one a step).

    >>> a, b = ObsDigest(), ObsDigest()
    >>> for d in (a, b):
    ...     d.update(np.zeros(4, np.float32))
    >>> a.hexdigest() == b.hexdigest()
    True
    """

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)

    def update(self, obs: Any) -> None:
        """Take one observation in; arrays are hashed from their memory, without a copy."""
        try:
            self._hash.update(obs)
        except (TypeError, BufferError, ValueError):  # not a contiguous buffer: hash its bytes
            self._hash.update(_canonical_bytes(obs))

    def hexdigest(self) -> str:
        """The digest so far, as 32 hex digits."""
        return self._hash.hexdigest()


def _canonical_bytes(obs: Any) -> bytes:
    if isinstance(obs, np.ndarray):
        return np.ascontiguousarray(obs).tobytes()
    if isinstance(obs, dict):
        return b"".join(repr(k).encode() + _canonical_bytes(obs[k]) for k in sorted(obs))
    if isinstance(obs, (tuple, list)):
        return b"".join(_canonical_bytes(o) for o in obs)
    return repr(obs).encode()


def replay(
    env: gym.Env, seed: int, actions: Sequence[Any], on_frame: Callable[[np.ndarray], None]
) -> str:
    """Reset ``env`` with ``seed``, step it with ``actions``, hand every rendered frame (the reset
    frame, then one a step) to ``on_frame``; return the observations' digest. A replay that ends
    before the actions run out stops there, and its digest then differs from the original's."""
    digest = ObsDigest()
    obs, _ = env.reset(seed=seed)
    digest.update(obs)
    on_frame(env.render())
    for action in actions:
        obs, _, terminated, truncated, _ = env.step(action)
        digest.update(obs)
        on_frame(env.render())
        if terminated or truncated:
            break
    return digest.hexdigest()


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

    from rlrec.codecs import codec_for
    from rlrec.envs import make_env
    from rlrec.video import Encoder

    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.exists():
        raise ReplayError(f"{run_dir} is not an rlrec run directory (no .hydra/config.yaml)")
    cfg = OmegaConf.load(config_file)
    row = _episode_row(run_dir, episode)
    actions = _episode_actions(run_dir, episode)
    chosen = codec_for(codec or cfg.video.codec)
    out = out or run_dir / "videos" / f"replay-episode-{episode}.{chosen.extension}"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = make_env(cfg.env, render=True)
    fps = cfg.video.fps or env.metadata.get("render_fps") or 30
    try:
        with Encoder() as encoder:
            writer = encoder.open(out, chosen, fps)
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


def _episode_row(run_dir: Path, episode: int) -> dict[str, Any]:
    import pyarrow.compute as pc

    from rlrec.sinks.parquet import read_run_table

    table = read_run_table(run_dir / "episodes.parquet", run_dir / "episodes")
    if table is None:
        raise ReplayError(f"{run_dir} has no episodes.parquet (was the parquet sink off?)")
    rows = table.filter(pc.equal(table["episode"], episode)).to_pylist()
    if not rows:
        raise ReplayError(f"episode {episode} is not in {run_dir / 'episodes.parquet'}")
    return rows[0]


def _episode_actions(run_dir: Path, episode: int) -> np.ndarray:
    import pyarrow.compute as pc

    from rlrec.sinks.parquet import ACTIONS_DTYPE_KEY, ACTIONS_SHAPE_KEY, read_run_table

    table = read_run_table(run_dir / "_actions.parquet", run_dir / "_actions")
    if table is None:
        raise ReplayError(
            f"the actions of {run_dir} were not stored (sinks.parquet.actions=false,"
            " or the action space has no fixed array shape), so it cannot be replayed"
        )
    rows = table.filter(pc.equal(table["episode"], episode))
    if rows.num_rows == 0:
        raise ReplayError(f"no stored actions for episode {episode} in {run_dir}")
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
    parser.add_argument("--codec", help="mp4v, vp9, vp8 or mjpg (default: the run's video.codec)")
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
