"""The runner: config -> objects -> one episode loop -> an episode record -> every sink.

``record(cfg, run_dir)`` is the whole product as a plain function; the CLI and ``rlrec.run`` are
thin layers over it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

from rlrec.codecs import Codec, codec_for
from rlrec.config import instantiate_node, validate
from rlrec.envs import make_env
from rlrec.policies import PolicyHooks, build_policy
from rlrec.records import EpisodeRecord, RunInfo
from rlrec.seeding import episode_seed, policy_seed, reseed_globals
from rlrec.sinks import Sink
from rlrec.stats import RunTotals
from rlrec.triggers import Trigger
from rlrec.video import Encoder, VideoWriter

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
VIDEOS_DIR = "videos"


@dataclass(frozen=True)
class VideoSettings:
    """How filmed episodes are encoded (the top-level ``video`` node, resolved)."""

    codec: Codec
    fps: float
    name_prefix: str

    def file_name(self, episode: int) -> str:
        """``<prefix>-episode-<N>.<ext>``: the contract's name of a filmed episode's video."""
        return f"{self.name_prefix}-episode-{episode}.{self.codec.extension}"


class Runner:
    """Runs ``episodes`` episodes of one env and policy, filming what the trigger picks."""

    def __init__(self, cfg: DictConfig, run_dir: Path, job: int = 0) -> None:
        validate(cfg)
        self.cfg, self.run_dir, self.job = cfg, Path(run_dir), job
        self.seed: int = cfg.seed
        self.episodes: int = cfg.episodes
        self.trigger: Trigger = instantiate_node(cfg.trigger, "trigger")
        codec = codec_for(cfg.video.codec)
        self.env: gym.Env = make_env(cfg.env, render=self.trigger.films)
        try:
            self.policy = build_policy(cfg.policy, self.env)
            self.hooks = PolicyHooks.of(self.policy)
            self.sinks: list[Sink] = [
                instantiate_node(node, f"sinks.{name}") for name, node in cfg.sinks.items()
            ]
        except BaseException:
            self.env.close()
            raise
        fps = cfg.video.fps or self.env.metadata.get("render_fps") or 30
        self.video = VideoSettings(codec, float(fps), cfg.video.name_prefix)
        self._encoder: Encoder | None = None
        self.success_threshold = cfg.get("success_threshold")
        self.success_key = cfg.get("success_key")
        self._success_measured = self.success_threshold is not None or self.success_key is not None

    def run(self) -> dict[str, Any]:
        """Run every episode, feed every sink, write ``summary.json``; return the summary."""
        reseed_globals(self.seed)
        run = RunInfo(
            self.run_dir,
            self.cfg.env.id,
            self.seed,
            self.job,
            self.episodes,
            OmegaConf.to_container(self.cfg, resolve=True),
        )
        totals = RunTotals(success_measured=self._success_measured)
        opened: list[Sink] = []
        status = "failed"
        started = time.perf_counter()
        try:
            for sink in self.sinks:
                sink.open(run)
                opened.append(sink)
            for episode in range(self.episodes):
                record = self.run_episode(episode)
                totals.add(record)
                for sink in opened:
                    sink.write(record)
            status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            summary = self._summary(status, totals, time.perf_counter() - started)
            self._close(opened, summary)
        return summary

    def run_episode(self, episode: int) -> EpisodeRecord:
        """Run one episode from its contract seed; film it if the trigger says so."""
        seed = episode_seed(self.seed, episode)
        hooks = self.hooks
        if hooks.reset is not None:
            hooks.reset(policy_seed(self.seed, episode))
        env = self.env
        obs, info = env.reset(seed=seed)
        writer = self._start_video(episode) if self.trigger(episode) else None
        step, act, update, render = env.step, hooks.act, hooks.update, env.render
        episode_return, length = 0.0, 0
        started = time.perf_counter()
        try:
            if writer is not None:
                writer.add(render())
            while True:
                action = act(obs)
                next_obs, reward, terminated, truncated, info = step(action)
                episode_return += float(reward)
                length += 1
                if update is not None:
                    update(
                        obs=obs,
                        action=action,
                        reward=reward,
                        next_obs=next_obs,
                        terminated=terminated,
                        truncated=truncated,
                    )
                if writer is not None:
                    writer.add(render())
                if terminated or truncated:
                    break
                obs = next_obs
            duration = time.perf_counter() - started
            video = None
            if writer is not None:
                video = writer.close().relative_to(self.run_dir).as_posix()
        except BaseException:
            if writer is not None:
                writer.abort()  # never leave a half-written file under a final name
            raise
        if hooks.end_episode is not None:
            hooks.end_episode(episode=episode, episode_return=episode_return, length=length)
        return EpisodeRecord(
            episode,
            seed,
            episode_return,
            length,
            duration,
            bool(terminated),
            bool(truncated),
            video,
            self._success(episode_return, info),
        )

    def _start_video(self, episode: int) -> VideoWriter:
        if self._encoder is None:
            self._encoder = Encoder()  # a process: started only if an episode is filmed
        videos = self.run_dir / VIDEOS_DIR
        videos.mkdir(parents=True, exist_ok=True)
        return self._encoder.open(
            videos / self.video.file_name(episode), self.video.codec, self.video.fps
        )

    def _success(self, episode_return: float, info: dict[str, Any]) -> bool | None:
        if self.success_threshold is not None:
            return episode_return >= self.success_threshold
        if self.success_key is not None:
            return bool(info.get(self.success_key, False))
        return None

    def _summary(self, status: str, totals: RunTotals, wall_time: float) -> dict[str, Any]:
        return {
            "status": status,
            **totals.summary(),
            "episodes_planned": self.episodes,
            "env_id": self.cfg.env.id,
            "seed": self.seed,
            "job": self.job,
            "wall_time_s": wall_time,
        }

    def _close(self, sinks: list[Sink], summary: dict[str, Any]) -> None:
        """Close every sink even if one fails, then write the summary and release the env."""
        errors = []
        for sink in sinks:
            try:
                sink.close(summary)
            except Exception as err:  # keep closing the others: each holds data of its own
                log.exception("closing sink %s failed", type(sink).__name__)
                errors.append(err)
        write_summary(self.run_dir, summary)
        if self._encoder is not None:
            self._encoder.shutdown()
        self.env.close()
        if errors and summary["status"] == "complete":
            raise errors[0]


def record(cfg: DictConfig, run_dir: Path | str, job: int = 0) -> dict[str, Any]:
    """Build everything ``cfg`` describes and run it into ``run_dir``; return the run's summary."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return Runner(cfg, run_dir, job).run()


def update_summary(run_dir: Path, **fields: Any) -> None:
    """Set ``fields`` in ``summary.json``, creating it if the run failed before it had one."""
    path = run_dir / SUMMARY_FILE
    summary = json.loads(path.read_text()) if path.exists() else {}
    write_summary(run_dir, summary | fields)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``summary.json`` whole (temporary name, then rename)."""
    path = run_dir / SUMMARY_FILE
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, path)
