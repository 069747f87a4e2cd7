"""``sinks=[parquet,tensorboard]``: a run as TensorBoard shows it.

Event files go to ``<run>/tensorboard/`` (``log_dir``: relative to the run directory, or an
absolute path), so a sweep has one TensorBoard run per job and ``tensorboard --logdir <sweep>``
shows them side by side. Per episode, one event holds ``episode/return``, ``episode/length``,
``episode/duration_s`` and ``episode/success`` (where measured) at ``global_step`` = the episode;
the HPARAMS tab holds one session per run: the overrides that tell it apart (a sweep job's swept
keys; a single run's command line; the env and the seed always; integers as integers) against the
summary's headline statistics (``summary/mean``, its CI, the success rate, the peak memory). The
whole config and the whole summary are tables on the TEXT tab. Each film is an animated GIF on
the IMAGES tab under a tag of its own (``film/episode_000012``: TensorBoard keeps 10 images a tag
unless started with ``--samples_per_plugin``), made from the video by an encoder process of the
sink's own; memory is ``system/rss_bytes``; the learning curve comes at the end. A sweep job's
events go to ``<job>/tensorboard/<its swept overrides>/``, so ``tensorboard --logdir <sweep>``
names each run by them.

The events are framed by tensorboardX's ``RecordWriter``, which uses the ``crc32c`` package's C
code when it is installed (the ``[tensorboard]`` extra installs it; the pure-Python CRC would cost
four times as much per episode), on this thread: tensorboardX's own asynchronous writer hands
each event through a ten-slot multiprocessing queue and made the loop wait on it (64 us an
episode, measured). No TensorFlow, no torch.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from rlrec.codecs import CODECS
from rlrec.config import check_number
from rlrec.memory import MemorySample
from rlrec.records import RunInfo
from rlrec.rundir import RunDir, partial_path
from rlrec.sinks.sweep_trackers import telling_overrides
from rlrec.sinks.tracker import EpisodeBatch, Tracker, require, retry_delay, summary_numbers
from rlrec.video import Encoder, VideoSettings

#: The hparams plugin's tags (TensorBoard's own names).
_EXPERIMENT = "_hparams_/experiment"
_SESSION_START, _SESSION_END = "_hparams_/session_start_info", "_hparams_/session_end_info"
# TensorBoard's statuses have no "aborted": an interrupted run is neither a success nor a failure
_STATUS = {"complete": "STATUS_SUCCESS", "interrupted": "STATUS_UNKNOWN"}
#: The summary's numbers that are HPARAMS metrics (and so scalars); the rest is a text table.
HEADLINE = ("mean", "ci95_low", "ci95_high", "success_rate", "peak_rss_bytes")


class TensorBoardSink(Tracker):
    """Log a run to TensorBoard event files; ``films``: also each filmed episode as a GIF at most
    ``film_width`` pixels wide (None: the video's own size); ``own_process``: write from a process
    of the sink's own rather than a thread (7 us of work an episode; see ``Tracker.runs_in``)."""

    name = "tensorboard"

    def __init__(
        self,
        log_dir: str | None = None,
        films: bool = True,
        film_width: int | None = 300,
        own_process: bool = False,
        retry_s: float = Tracker.retry_s,
    ) -> None:
        require("tensorboardX", "tensorboard", "sinks.tensorboard")
        self.retry_s = retry_delay(self.name, retry_s)
        check_number("sinks.tensorboard.film_width", film_width, 16, integer=True, allow_none=True)
        self.log_dir, self.films, self.film_width = log_dir, bool(films), film_width
        self.runs_in = "process" if own_process else "thread"
        self._encoder: Encoder | None = None

    def start(self, run: RunInfo, earlier: dict[str, Any] | None) -> dict[str, Any]:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.record_writer import RecordWriter

        files = RunDir(run.run_dir)
        self._overrides, sweep = telling_overrides(files)
        # resumed: the same TensorBoard run, a new event file in it (if its folder is still
        # there: else it starts again, and is sent every episode)
        fresh = earlier is None or self.lost(earlier)
        if not fresh:
            folder = Path(earlier["id"])
            _cut_to_commit(earlier)
        elif self.log_dir is None:
            folder = files.tensorboard
            if sweep is not None:  # TensorBoard names a run by its folder: by the overrides
                folder /= _folder_name(",".join(self._overrides) or f"job {run.job}")
        else:
            folder = files.path / self.log_dir  # an absolute log_dir stays as it is
        folder.mkdir(parents=True, exist_ok=True)
        self._folder = folder
        self._started = time.time()
        # TensorBoard finds event files by this pattern; the pid keeps a resume's file apart
        self._file = folder / (
            f"events.out.tfevents.{int(self._started)}.{socket.gethostname()}.{os.getpid()}"
        )
        self._records = RecordWriter(str(self._file))
        self._write(Event(wall_time=self._started, file_version="brain.Event:2"))
        return {"id": str(folder), **self.commit(), "fresh": fresh}

    def lost(self, entry: dict[str, Any]) -> bool:
        return not Path(entry["id"]).is_dir()

    def log_config(self, config: dict[str, Any]) -> None:
        from tensorboardX.proto.api_pb2 import Experiment, HParamInfo, MetricInfo, MetricName
        from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionStartInfo

        shown = _shown(config, self._overrides)
        start = SessionStartInfo(start_time_secs=self._started)
        infos = []
        for key, value in shown.items():
            slot = start.hparams[key]
            if isinstance(value, bool):
                slot.bool_value, kind = value, "DATA_TYPE_BOOL"
            elif isinstance(value, float):
                slot.number_value, kind = value, "DATA_TYPE_FLOAT64"
            else:  # an integer too: a number value would show the seed as 0.0000
                slot.string_value, kind = str(value), "DATA_TYPE_STRING"
            infos.append(HParamInfo(name=key, type=kind))
        # the experiment names the metrics; else TensorBoard takes every scalar tag for one
        metrics = [MetricInfo(name=MetricName(tag=f"summary/{k}")) for k in HEADLINE]
        experiment = Experiment(hparam_infos=infos, metric_infos=metrics)
        self._plugin_event(_EXPERIMENT, HParamsPluginData(experiment=experiment), step=0)
        self._plugin_event(_SESSION_START, HParamsPluginData(session_start_info=start), step=0)
        self._text("config", _table(config, ("key", "value")), step=0)

    def log_episodes(self, batch: EpisodeBatch) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        write = self._write
        value = Summary.Value
        for episode, wall_time, metrics in batch.rows():
            values = [value(tag=f"episode/{k}", simple_value=v) for k, v in metrics.items()]
            write(Event(wall_time=wall_time, step=episode, summary=Summary(value=values)))

    def log_video(self, episode: int, path: Path) -> None:
        if not self.films:
            return
        gif = self._gif(path)
        self._image(f"film/episode_{episode:06d}", gif, episode, "film of this episode")

    def log_memory(self, samples: list[MemorySample]) -> None:
        for sample in samples:
            self._scalars(
                {"system/rss_bytes": sample.rss_bytes},
                sample.episode,
                wall_time=self._started + sample.time_s,
            )

    def log_summary(self, summary: dict[str, Any], curve_png: bytes | None) -> None:
        from tensorboardX.proto.api_pb2 import Status
        from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo

        step = int(summary.get("n") or 0)
        numbers = dict(summary_numbers(summary))
        self._scalars({f"summary/{k}": numbers[k] for k in HEADLINE if k in numbers}, step)
        table = {"status": summary.get("status"), **numbers}
        self._text("summary", _table(table, ("statistic", "value")), step)
        if curve_png is not None:
            self._image("learning_curve", curve_png, step, "returns per episode")
        status = Status.Value(_STATUS.get(summary.get("status", ""), "STATUS_FAILURE"))
        end = SessionEndInfo(status=status, end_time_secs=time.time())
        self._plugin_event(_SESSION_END, HParamsPluginData(session_end_info=end), step=step)

    def commit(self) -> dict[str, Any]:
        """Flush; the file's size now ends at a whole event, and a resume cuts anything written
        after it (a kill between two commits), so that no episode is in the files twice."""
        self._records.flush()
        return {"file": self._file.name, "bytes": self._file.stat().st_size}

    def finish(self, status: str) -> None:
        self._records.close()
        if self._encoder is not None:
            self._encoder.shutdown()

    # -- events ---------------------------------------------------------------------------------
    def _write(self, event: Any) -> None:
        self._records.write(event.SerializeToString())

    def _scalars(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        summary = Summary(
            value=[Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()]
        )
        self._write(Event(wall_time=wall_time or time.time(), step=step, summary=summary))

    def _image(self, tag: str, encoded: bytes, step: int, description: str) -> None:
        from PIL import Image
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        with Image.open(io.BytesIO(encoded)) as image:
            width, height = image.size
        picture = Summary.Image(
            height=height, width=width, colorspace=3, encoded_image_string=encoded
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=picture)])
        self._write(Event(wall_time=time.time(), step=step, summary=summary))

    def _text(self, tag: str, markdown: str, step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import text

        self._write(Event(wall_time=time.time(), step=step, summary=text(tag, markdown)))

    def _plugin_event(self, tag: str, content: Any, step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

        metadata = SummaryMetadata(
            plugin_data=SummaryMetadata.PluginData(
                plugin_name="hparams", content=content.SerializeToString()
            )
        )
        summary = Summary(value=[Summary.Value(tag=tag, metadata=metadata)])
        self._write(Event(wall_time=time.time(), step=step, summary=summary))

    def _gif(self, video: Path) -> bytes:
        """The video as an animated GIF at its own frame rate, made by an encoder process (this
        thread only waits for it). A GIF frame costs 5 ms at 600x400 (a palette, then LZW), four
        times an H.264 frame: scaled to 300 pixels wide, a quarter of that."""
        import av

        with av.open(str(video)) as container:
            fps = float(container.streams.video[0].average_rate or 30)
        if self._encoder is None:
            self._encoder = Encoder()
            self._encoder.start(CODECS["gif"])
        target = partial_path(self._folder / f"{video.stem}.gif")
        try:
            gif = VideoSettings(CODECS["gif"], fps)
            self._encoder.join(target, gif, [(video, "")], width=self.film_width)
            return target.read_bytes()
        finally:
            target.unlink(missing_ok=True)


def _shown(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The HPARAMS of a run (``config`` flattened): the env, the seed, and each override's key
    with its resolved value (a config group's choice, ``trigger=periodic``, as given).

    >>> _shown({"env.id": "CartPole-v1", "seed": 1, "trigger.period": 5}, ["trigger.period=5"])
    {'env.id': 'CartPole-v1', 'seed': 1, 'trigger.period': 5}
    """
    shown = {"env.id": config.get("env.id"), "seed": config.get("seed")}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        shown[key] = config.get(key, value)
    return {
        k: v if isinstance(v, str | int | float | bool) else json.dumps(v)
        for k, v in shown.items()
        if v is not None
    }


def _table(values: dict[str, Any], head: tuple[str, str]) -> str:
    """``values`` as a Markdown table (the TEXT tab renders it)."""
    rows = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        rows.append(f"| {key} | {text.replace('|', '&#124;')} |")
    return "\n".join(rows)


def _folder_name(name: str) -> str:
    """``name`` as one folder's name: no separator, within the file system's 255 bytes."""
    return name.replace(os.sep, "_")[:200] or "run"


def _cut_to_commit(entry: dict[str, Any]) -> None:
    """Drop what a killed run wrote to its event file after its last commit (those episodes run
    again and are logged again)."""
    if "file" not in entry:
        return
    path = Path(entry["id"]) / entry["file"]
    if path.exists() and path.stat().st_size > entry["bytes"]:
        os.truncate(path, entry["bytes"])
