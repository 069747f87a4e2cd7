"""Filming: the trigger's decisions turned into videos under the run directory.

An episode the trigger picks before it runs is filmed live: its frames stream to an encoder process
while it steps. A trigger that decides after the episode films by replay: the episode's actions are
kept, and a chosen episode is replayed on a second env (reset with its seed, the same actions,
rendering on) straight into the encoder; the film is kept only if the replay's observation digest
equals the episode's. An env that does not replay exactly makes ``method=auto`` film every later
episode to a temporary file instead (``buffer``), kept or dropped when the trigger decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym

from rlrec.episode import replay
from rlrec.records import EpisodeRecord
from rlrec.rundir import RunDir
from rlrec.triggers import TriggerView
from rlrec.video import Encoder, VideoSettings, VideoWriter

log = logging.getLogger(__name__)

#: ``video_reason`` of an episode the trigger chose that did not replay exactly.
REPLAY_MISMATCH = "replay_mismatch"


class Filming:
    """Which episode is filmed, how, and under which name.

    ``in_charge`` is false in a worker process: the run's process decides after the episodes (in
    episode order, as a sequential run would) and films by replay, so a worker films only what
    the trigger picks before an episode runs. ``replay_env`` builds the env a replay runs on
    (rendering ``rgb_array``); None where the env cannot be rebuilt, so that a trigger that
    decides afterwards buffers.
    """

    def __init__(
        self,
        trigger: TriggerView,
        video: VideoSettings,
        run: RunDir,
        env_id: str,
        replay_env: Callable[[], gym.Env] | None,
        *,
        in_charge: bool = True,
        parallel: bool = False,
        worker: int | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        """``encoder``: one already started (``Encoder().start()`` before the env is built, so
        that the encoder process imports its codecs meanwhile), used for slot 0."""
        self.trigger, self.video, self.run = trigger, video, run
        self._env_id, self._make_replay_env = env_id, replay_env
        self.in_charge, self.parallel = in_charge, parallel
        self._encoders: dict[int, Encoder] = {0: encoder} if encoder is not None else {}
        self._replay_env: gym.Env | None = None
        # buffer from the start, or (auto) from the first episode that does not replay exactly
        decides_after = in_charge and trigger.decides_after
        self.buffering = decides_after and (trigger.method == "buffer" or replay_env is None)
        #: Whether a kept film is finished by its encoder while the episodes go on (its row may
        #: reach the sinks a few milliseconds before the file its name): a vector Recorder's
        #: films end every few steps, and waiting for each costs the loop.
        self.finish_in_background = False
        #: (video, episode, return) of every filmed episode, in order: the timelapse's parts.
        self.filmed: list[tuple[str, int, float]] = []
        tile = f"{video.name_prefix}-tiled" + (f"-worker-{worker}" if worker is not None else "")
        self.tile_path = run.video(f"{tile}.{video.codec.extension}")

    @staticmethod
    def renders(trigger: TriggerView, in_charge: bool, parallel: bool) -> bool:
        """Whether the env that runs the episodes must render: a trigger that decides afterwards
        films by replay on another env, except that a sequential run may fall back to buffering."""
        if trigger.decides_after:
            return trigger.films and in_charge and not parallel
        return trigger.films

    # -- live films -----------------------------------------------------------------------------
    def begins(self, episode: int, replayable: bool = True) -> tuple[VideoWriter | None, bool]:
        """At an episode's start: the writer its frames go to (None if none), and whether the
        trigger chose it already (else it is buffered, in case the trigger chooses it after;
        always so for an episode that cannot be replayed, reset without a seed)."""
        live = self.trigger.before(episode)
        buffering = self.buffering or (
            not replayable and self.in_charge and self.trigger.decides_after
        )
        buffered = not live and buffering and not self.trigger.exhausted
        return (self.open(episode) if live or buffered else None), live

    def open(self, episode: int, slot: int = 0) -> VideoWriter:
        """A writer for ``episode``'s video; ``slot`` picks an encoder (films that overlap in time,
        on the sub-environments of a vector env, each need their own)."""
        path = self.run.video(self.video.file_name(episode))
        return self.open_path(path, slot, f"env {self._env_id}, episode {episode}")

    def open_path(self, path: Path, slot: int = 0, source: str | None = None) -> VideoWriter:
        """A writer for the video at ``path``; ``source`` names the env (and the episode) in
        errors."""
        path.parent.mkdir(parents=True, exist_ok=True)
        source = source or f"env {self._env_id}, {path.name}"
        return self._encoder(slot).open(path, self.video, source)

    def open_pending(self, slot: int) -> VideoWriter:
        """A writer for an episode whose index is not known yet (a vector ``Recorder`` numbers
        episodes as they end): a dot-prefixed name until ``settle`` gives it the episode's."""
        path = self.run.pending_video(slot, self.video.codec.extension)
        return self.open_path(path, slot, f"env {self._env_id}, sub-environment {slot}")

    def settle(
        self,
        record: EpisodeRecord,
        writer: VideoWriter | None,
        live: bool,
        filmable: bool = True,
    ) -> None:
        """An episode has ended: keep, drop or (for a trigger that decides afterwards, when this
        process is in charge) make its video; set the record's ``video`` and ``video_reason``.
        An episode that is not ``filmable`` (a sub-environment the user films none of) only
        tells the trigger its return."""
        try:
            chosen = live or (
                self.in_charge and self.trigger.after(record.episode, record.episode_return)
            )
            if writer is not None and chosen:
                final = self.run.video(self.video.file_name(record.episode))
                # (a film opened before its episode's index was known is renamed now)
                writer.close(final, wait=not self.finish_in_background)
                record.video = self.run.relative(final)
                record.video_reason = self.trigger.reason
            elif writer is not None:
                writer.abort()  # filmed in case the trigger chose it; it did not
            elif chosen and filmable:
                self._film_by_replay(record)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise

    def shared(self, record: EpisodeRecord, path: Path) -> None:
        """``record`` is filmed in a video it shares with others (a tiled grid)."""
        record.video, record.video_reason = self.run.relative(path), self.trigger.reason

    def _film_by_replay(self, record: EpisodeRecord) -> None:
        """Film a finished episode by replaying it; keep the film only if it is that episode."""
        if self._replay_env is None:  # a second env: replays never disturb the running one
            self._replay_env = self._make_replay_env()
        writer = self.open(record.episode)
        try:
            digest = replay(self._replay_env, record.seed, record.actions, writer.add)
        except BaseException:
            writer.abort()
            raise
        if digest == record.obs_digest:
            record.video = self.run.relative(writer.close())
            record.video_reason = self.trigger.reason
            return
        writer.abort()
        record.video_reason = REPLAY_MISMATCH
        fallback = self.trigger.method == "auto" and not self.parallel
        log.warning(
            "episode %d of %s did not replay exactly, so it has no video%s",
            record.episode,
            self._env_id,
            "; filming every later episode to a temporary file instead" if fallback else "",
        )
        self.buffering = self.buffering or fallback

    # -- the run's films --------------------------------------------------------------------------
    def accepted(self, record: EpisodeRecord) -> None:
        """A finished episode reached the sinks (in order): remember its film for the timelapse."""
        if record.video is not None:
            self.filmed.append((record.video, record.episode, record.episode_return))

    def restore(self, records: list[EpisodeRecord]) -> None:
        """A resumed run's earlier episodes: the trigger's memory, the fallback, the films."""
        for record in records:
            if self.trigger.decides_after:
                self.trigger.after(record.episode, record.episode_return)
            if record.video_reason == REPLAY_MISMATCH and self.trigger.method == "auto":
                self.buffering = True
            self.accepted(record)

    def timelapse(self) -> Path | None:
        """``timelapse.<ext>``: the filmed episodes in order, each captioned with its return;
        None with fewer than two films of their own (a shared grid video does not count)."""
        parts = [
            (self.run.path / video, f"episode {episode}   return {episode_return:.1f}")
            for video, episode, episode_return in self.filmed
            if Path(video).name == self.video.file_name(episode)
        ]
        if len(parts) < 2:
            return None
        path = self.run.timelapse(self.video.codec.extension)
        return self._encoder(0).join(path, self.video, parts)

    def wait(self) -> None:
        """Wait for the films the encoders finish in the background (``finish_in_background``)."""
        for encoder in self._encoders.values():
            encoder.settle()

    def close(self) -> None:
        """Stop the encoder processes and close the replay env."""
        encoders, self._encoders = self._encoders, {}
        for encoder in encoders.values():
            encoder.shutdown()
        if self._replay_env is not None:
            self._replay_env.close()
            self._replay_env = None

    def _encoder(self, slot: int) -> Encoder:
        if slot not in self._encoders:
            self._encoders[slot] = Encoder()
        return self._encoders[slot]
