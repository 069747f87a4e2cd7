"""The runner: config -> objects -> one episode loop -> an episode record -> every sink.

``record(cfg, run_dir)`` is the whole product as a plain function; the CLI and ``rlrec.run`` are
thin layers over it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

from rlrec.codecs import codec_for
from rlrec.config import instantiate_node, validate
from rlrec.envs import make_env
from rlrec.errors import ConfigError
from rlrec.policies import PolicyHooks, build_policy
from rlrec.records import EpisodeRecord, RunInfo
from rlrec.replay import ObsDigest, replay
from rlrec.resume import ResumePoint, find_resume_point, save_checkpoint, truncate
from rlrec.seeding import episode_seed, policy_seed, reseed_globals
from rlrec.signals import StopSignals
from rlrec.sinks import Sink
from rlrec.stats import RunTotals
from rlrec.triggers import Trigger
from rlrec.vector import VectorLoop
from rlrec.video import VIDEOS_DIR, Encoder, VideoSettings, VideoWriter
from rlrec.workers import WorkerPool

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "policy.checkpoint"
TIMELAPSE_NAME = "timelapse"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Runner:
    """Runs ``episodes`` episodes of one env and policy, filming what the trigger picks."""

    def __init__(
        self, cfg: DictConfig, run_dir: Path, job: int = 0, worker: int | None = None
    ) -> None:
        validate(cfg)
        self.cfg, self.run_dir, self.job, self.worker = cfg, Path(run_dir), job, worker
        self.seed: int = cfg.seed
        self.episodes: int = cfg.episodes
        self.num_envs: int = cfg.env.get("num_envs", 1)
        self.workers: int = cfg.get("workers", 1)
        #: Episodes run elsewhere (sub-environments, worker processes) and arrive in any order.
        self.parallel = self.num_envs > 1 or self.workers > 1
        self.trigger: Trigger = instantiate_node(cfg.trigger, "trigger")
        codec = codec_for(cfg.video.codec)
        self._encoder: Encoder | None = Encoder() if self.trigger.films else None
        if self._encoder is not None and not self.parallel:
            self._encoder.start()  # a process: it imports OpenCV while the env and policy are built
        try:
            self.env: gym.Env = make_env(cfg.env, render=self.trigger.films)
        except BaseException:
            self._stop_encoder()
            raise
        try:
            spaces = self.env.observation_space, self.env.action_space
            self.policy = build_policy(cfg.policy, *spaces)
            self.hooks = PolicyHooks.of(self.policy)
            self.sinks: list[Sink] = [
                instantiate_node(node, f"sinks.{name}") for name, node in cfg.sinks.items()
            ]
        except BaseException:
            self.env.close()
            self._stop_encoder()
            raise
        fps = cfg.video.fps or self.env.metadata.get("render_fps") or 30
        self.video = VideoSettings(codec, float(fps), cfg.video.name_prefix)
        self._replay_env: gym.Env | None = None
        # A worker process leaves Ctrl-C to the run's process, which stops it with SIGTERM.
        self.signals = StopSignals((signal.SIGTERM,) if worker is not None else _STOP_SIGNALS)
        self._in_order = InOrder(0)  # where a parallel run's records wait for their turn
        self._filmed: list[tuple[str, int, float]] = []  # video, episode, return: for timelapses
        # A trigger that decides afterwards films by replay, or (method=buffer, or auto once an
        # episode did not replay exactly) films every episode to a temporary file.
        self._buffering = (
            self.trigger.decides_after and getattr(self.trigger, "method", "") == "buffer"
        )
        self.success_threshold = cfg.get("success_threshold")
        self.success_key = cfg.get("success_key")
        self._success_measured = self.success_threshold is not None or self.success_key is not None
        if self.parallel:
            self._check_parallel()

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
        stop = self.signals
        with stop.installed():
            try:
                point = self._resume(totals) if self.cfg.get("resume") else ResumePoint()
                for sink in self.sinks:
                    sink.open(run)
                    opened.append(sink)
                    if callable(getattr(sink, "restore", None)):  # e.g. the plot's earlier curve
                        sink.restore(point.kept)
                records = self._records(point.start)
                try:
                    for record in records:
                        self._accept(record, totals, opened)
                finally:
                    records.close()  # stops the workers or the vector env: nothing left running
                    self._accept_rest(totals, opened)
                stop.check()
                status = "complete"
            except KeyboardInterrupt:
                status = "interrupted"
                raise
            finally:
                summary = self._summary(status, totals, time.perf_counter() - started)
                self._close(opened, summary)
        return summary

    def _accept(self, record: EpisodeRecord, totals: RunTotals, sinks: list[Sink]) -> None:
        """Count a finished episode and hand it to every sink."""
        totals.add(record)
        if record.video is not None:
            self._filmed.append((record.video, record.episode, record.episode_return))
        for sink in sinks:
            sink.write(record)
        self._checkpoint(record.episode + 1, sinks)

    def _accept_rest(self, totals: RunTotals, sinks: list[Sink]) -> None:
        """After a stop or a crash, the finished episodes still waiting for an earlier one that
        never came: written too, so that every finished episode is readable (a resume runs the
        missing ones)."""
        rest = self._in_order.rest()
        for record in rest:
            try:
                self._accept(record, totals, sinks)
            except Exception:
                log.exception("could not record episode %d", record.episode)
                return

    def _records(self, start: int) -> Iterator[EpisodeRecord]:
        """The run's finished episodes from ``start`` on, in order."""
        todo = range(start, self.episodes)
        if not self.parallel:
            yield from self.run_episodes(todo)
            return
        if self.workers > 1:
            pool = WorkerPool(self._worker_config(), self.run_dir, self.job, self.workers, todo)
            source = pool.records(self.signals)
        else:
            pool, source = None, self.run_episodes(todo)
        self._in_order = InOrder(start)
        try:
            for record in source:
                self._in_order.add(record)
                for ready in self._in_order.due():
                    if self.trigger.decides_after:  # in episode order, as a sequential run would
                        self._settle_video(ready, None, live=False)
                    yield ready
        finally:
            source.close()
            for record in pool.drained if pool is not None else ():
                self._in_order.add(record)  # finished while the workers stopped: kept

    def run_episodes(self, indices: Iterable[int]) -> Iterator[EpisodeRecord]:
        """Run the episodes ``indices`` in this process: one after another, or with
        ``env.num_envs`` sub-environments ``num_envs`` at a time, yielded as they end."""
        if self.num_envs == 1:
            for episode in indices:
                self.signals.check()
                yield self.run_episode(episode)
            return
        tile = self.video.name_prefix + "-tiled"
        if self.worker is not None:  # one grid video per worker process
            tile += f"-worker-{self.worker}"
        loop = VectorLoop(
            self.cfg,
            self.run_dir,
            self.trigger,
            self.video,
            self.signals,
            self._success,
            self.success_key,
            tile,
        )
        try:
            yield from loop.run(indices, self.seed)
        finally:
            loop.close()

    def _worker_config(self) -> dict[str, Any]:
        """The config a worker process runs: no sinks (the run's process has them), and no
        trigger that decides afterwards (the run's process decides, in order, and replays)."""
        config = OmegaConf.to_container(self.cfg, resolve=True)
        config["workers"] = 1
        config["sinks"] = {}
        config["resume"] = None
        config["video"]["timelapse"] = False
        if self.trigger.decides_after:
            config["trigger"] = {"_target_": "rlrec.triggers.Never"}
        return config

    def _check_parallel(self) -> None:
        """What sub-environments and worker processes cannot do, refused before anything runs."""
        key = "workers" if self.workers > 1 else "env.num_envs"
        if self._learns:
            raise ConfigError(
                key,
                f"{self.cfg.policy._target_} learns (it has update or end_episode), and "
                "episodes run side by side would teach it out of order, or teach separate copies",
                "train with env.num_envs=1 workers=1 and evaluate the result in parallel (a "
                "policy that does not learn can say so with an attribute learning = False)",
            )
        if self.trigger.decides_after and self.trigger.method == "buffer":
            raise ConfigError(
                "trigger.method",
                "buffer films every episode to a temporary file in the process that runs it; "
                "with sub-environments or workers the decision is made elsewhere",
                "use trigger.method=replay (or auto) with env.num_envs or workers",
            )
        if self.trigger.decides_after and self.cfg.video.get("tile"):
            raise ConfigError(
                "video.tile",
                "a grid video is filmed while the episodes run, and this trigger decides after",
                "use video.tile=true with trigger=every or trigger=periodic",
            )

    def run_episode(self, episode: int) -> EpisodeRecord:
        """Run one episode from its contract seed; film it if the trigger says so."""
        seed = episode_seed(self.seed, episode)
        hooks = self.hooks
        if hooks.reset is not None:
            hooks.reset(policy_seed(self.seed, episode))
        env, trigger = self.env, self.trigger
        obs, info = env.reset(seed=seed)
        live = trigger(episode)
        buffered = not live and self._buffering and not trigger.exhausted
        writer = self._start_video(episode) if live or buffered else None
        step, act, update, render = env.step, hooks.act, hooks.update, env.render
        digest = ObsDigest()
        observe, actions = digest.update, []
        remember = actions.append
        observe(obs)
        episode_return, length = 0.0, 0
        started = time.perf_counter()
        self.signals.in_episode = True  # a signal may stop the steps at once: nothing to corrupt
        try:
            if writer is not None:
                writer.add(render())
            while True:
                action = act(obs)
                remember(action)
                next_obs, reward, terminated, truncated, info = step(action)
                observe(next_obs)
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
        except BaseException:
            if writer is not None:
                writer.abort()  # never leave a half-written file under a final name
            raise
        finally:
            self.signals.in_episode = False
        duration = time.perf_counter() - started
        if hooks.end_episode is not None:
            hooks.end_episode(episode=episode, episode_return=episode_return, length=length)
        record = EpisodeRecord(
            episode,
            seed,
            episode_return,
            length,
            duration,
            bool(terminated),
            bool(truncated),
            None,
            self._success(episode_return, info),
            None,
            digest.hexdigest(),
            actions=actions,
        )
        self._settle_video(record, writer, live)
        return record

    def _settle_video(self, record: EpisodeRecord, writer: VideoWriter | None, live: bool) -> None:
        """Keep, drop or (for a trigger that decides afterwards) make the episode's video."""
        trigger = self.trigger
        chosen = live or (
            trigger.decides_after and trigger.after_episode(record.episode, record.episode_return)
        )
        try:
            if writer is not None and chosen:
                record.video, record.video_reason = self._relative(writer.close()), trigger.reason
            elif writer is not None:
                writer.abort()  # filmed in case the trigger chose it; it did not
            elif chosen:
                self._film_by_replay(record)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise

    def _film_by_replay(self, record: EpisodeRecord) -> None:
        """Film a finished episode by replaying it; keep the film only if it is that episode."""
        if self._replay_env is None:  # a second env: replays never disturb the running one
            self._replay_env = make_env(self.cfg.env, render=True)
        writer = self._start_video(record.episode)
        try:
            digest = replay(self._replay_env, record.seed, record.actions, writer.add)
        except BaseException:
            writer.abort()
            raise
        if digest == record.obs_digest:
            record.video, record.video_reason = self._relative(writer.close()), self.trigger.reason
            return
        writer.abort()
        record.video_reason = "replay_mismatch"
        fallback = self.trigger.method == "auto" and not self.parallel
        log.warning(
            "episode %d of %s did not replay exactly, so it has no video%s",
            record.episode,
            self.cfg.env.id,
            "; filming every later episode to a temporary file instead" if fallback else "",
        )
        self._buffering = self._buffering or fallback

    @property
    def _learns(self) -> bool:
        """Whether the policy has state that the episodes change (so a resume must restore it):
        it has ``update`` or ``end_episode``, and does not say ``learning = False``."""
        if getattr(self.policy, "learning", True) is False:  # e.g. evaluating a checkpoint
            return False
        return self.hooks.update is not None or self.hooks.end_episode is not None

    def _checkpoint(self, next_episode: int, sinks: list[Sink]) -> None:
        """Every ``checkpoint_every`` episodes, the learning policy's state, written only after the
        episodes before it are on disk: a resume never finds a checkpoint ahead of the data."""
        every = self.cfg.get("checkpoint_every")
        hooks = self.hooks
        if not every or next_episode % every or next_episode >= self.episodes:
            return
        if not (self._learns and hooks.save is not None and hooks.load is not None):
            return
        for sink in sinks:
            if callable(getattr(sink, "flush", None)):
                sink.flush()
        save_checkpoint(self.run_dir, next_episode, hooks.save)

    def _resume(self, totals: RunTotals) -> ResumePoint:
        """Continue the run in ``run_dir``: restore what it finished and where to start."""
        point = find_resume_point(self.run_dir, self._learns, self.hooks.load is not None)
        if point.checkpoint is not None:
            self.hooks.load(point.checkpoint / "policy.checkpoint")
        truncate(self.run_dir, point.start)
        for record in point.kept:  # the statistics, the trigger's memory, the timelapse's parts
            totals.add(record)
            if self.trigger.decides_after:
                self.trigger.after_episode(record.episode, record.episode_return)
            if record.video_reason == "replay_mismatch" and self.trigger.method == "auto":
                self._buffering = True
            if record.video is not None:
                self._filmed.append((record.video, record.episode, record.episode_return))
        log.info("resuming %s at episode %d of %d", self.run_dir, point.start, self.episodes)
        return point

    def _make_timelapse(self) -> None:
        """``timelapse.<ext>``: the filmed episodes in order, each captioned with its return."""
        parts = [
            (self.run_dir / video, f"episode {episode}   return {episode_return:.1f}")
            for video, episode, episode_return in self._filmed
            if Path(video).name == self.video.file_name(episode)  # not a shared grid video
        ]
        if len(parts) < 2:
            return
        path = self.run_dir / f"{TIMELAPSE_NAME}.{self.video.codec.extension}"
        self._encoder.timelapse(path, self.video.codec, self.video.fps, parts)

    def _stop_encoder(self) -> None:
        if self._encoder is not None:
            self._encoder.shutdown()
            self._encoder = None

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.run_dir).as_posix()

    def _start_video(self, episode: int) -> VideoWriter:
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
        """Close every sink first (finished episodes reach the disk before anything slow), then
        save the policy, make the timelapse, write the summary and release the env."""
        errors = []
        for sink in sinks:
            try:
                sink.close(summary)
            except Exception as err:  # keep closing the others: each holds data of its own
                log.exception("closing sink %s failed", type(sink).__name__)
                errors.append(err)
        if self.hooks.save is not None:  # also when interrupted: what was learnt so far
            try:
                self.hooks.save(self.run_dir / CHECKPOINT_FILE)
            except Exception as err:
                log.exception("saving the policy failed")
                errors.append(err)
        if self.cfg.video.get("timelapse") and self._encoder:
            try:
                self._make_timelapse()
            except Exception as err:
                log.exception("the timelapse failed")
                errors.append(err)
        write_summary(self.run_dir, summary)
        self.release()
        if errors and summary["status"] == "complete":
            raise errors[0]

    def release(self) -> None:
        """Stop the encoder and close the envs."""
        self._stop_encoder()
        if self._replay_env is not None:
            self._replay_env.close()
        self.env.close()


class InOrder:
    """Puts records that arrive in any order back in episode order."""

    def __init__(self, first: int) -> None:
        self._next = first  # the episode whose turn it is
        self._waiting: dict[int, EpisodeRecord] = {}

    def add(self, record: EpisodeRecord) -> None:
        """Take ``record`` in."""
        self._waiting[record.episode] = record

    def due(self) -> Iterator[EpisodeRecord]:
        """The records whose turn it is, in order (each handed out once)."""
        while self._next in self._waiting:
            self._next += 1
            yield self._waiting.pop(self._next - 1)

    def rest(self) -> list[EpisodeRecord]:
        """What is still waiting (an earlier episode never came), in order; then nothing."""
        rest = [self._waiting[e] for e in sorted(self._waiting)]
        self._waiting.clear()
        return rest


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
