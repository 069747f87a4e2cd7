"""``sinks=[parquet,console,wandb]``: a run as a Weights & Biases run.

Files go to ``<run>/wandb/``. ``define_metric`` makes the episode the x-axis of every per-episode
key (``episode/return``, ...) and of each film, and ``system/episode`` that of the memory
(``system/rss_bytes``, as in every tracker), so W&B's own step (one a ``log`` call) never has to be
monotonic in anything of ours. W&B's system charts watch the run's process, and its program
and arguments are the user's command line. Each film is logged as
``wandb.Video(<the file rlrec wrote>, format=...)`` at its episode: H.264 by default, which plays
in W&B's page (an ``mp4v`` file would not). rlrec never moves a video after logging it, so an
offline run's media are still there at ``wandb sync``. The config is W&B's config (dotted keys),
the summary W&B's summary, the learning curve an image at the end. In a sweep the jobs share a
``group`` (the sweep) and are named by their overrides; the sweep's end logs ``groups.parquet`` as
a table and the sweep's curves to a run of its own in that group.

It runs in a process of its own: ``run.log`` costs 140-200 us an episode of Python work (measured),
which a thread would take from the loop.
"""

from __future__ import annotations

import io
import itertools
import os
import sys
from pathlib import Path
from typing import Any

from rlrec.config import check_choice
from rlrec.errors import ConfigError
from rlrec.memory import MemorySample
from rlrec.records import RunInfo
from rlrec.rundir import RunDir, SweepDir
from rlrec.sinks.sweep_trackers import job_identity, sweep_group
from rlrec.sinks.tracker import (
    EpisodeBatch,
    Tracker,
    require,
    retry_delay,
    start_failure,
    summary_numbers,
)

MODES = ("online", "offline", "disabled")
#: Seconds ``wandb.init`` may take before the run gives up (W&B's own default is 90).
INIT_TIMEOUT_S = 30


class WandbSink(Tracker):
    """Log a run to W&B: ``project``, ``entity``, ``mode`` (None: W&B's own, ``WANDB_MODE`` or
    online), ``group`` (None: the sweep, for a sweep's jobs), ``tags``."""

    name = "wandb"
    runs_in = "process"
    shows_console = True  # the Logs tab: what the run printed, not this process's nothing

    def __init__(
        self,
        project: str = "rlrec",
        entity: str | None = None,
        mode: str | None = None,
        group: str | None = None,
        tags: Any = (),
        retry_s: float = Tracker.retry_s,
    ) -> None:
        require("wandb", "wandb", "sinks.wandb")
        self.retry_s = retry_delay(self.name, retry_s)
        if mode is not None:
            check_choice("sinks.wandb.mode", mode, MODES)
        self.project, self.entity, self.mode, self.group = project, entity, mode, group
        self.tags = [str(t) for t in (tags or ())]

    def start(self, run: RunInfo, earlier: dict[str, Any] | None) -> dict[str, Any]:
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        mode = self.mode or os.environ.get("WANDB_MODE") or "online"
        if mode == "online" and not _has_credentials():
            raise ConfigError(
                "sinks.wandb.mode",
                "W&B has no credentials on this machine",
                "run `wandb login` or set WANDB_API_KEY, or pass sinks.wandb.mode=offline "
                "(and `wandb sync` later)",
            )
        name, sweep = job_identity(RunDir(run.run_dir))
        group = self.group or (sweep_group(sweep) if sweep is not None else None)
        # W&B records sys.argv as the run's program and arguments: the user's, not this
        # process's (``-m rlrec.sinks.tracker_process 7``)
        sys.argv = list(run.command) or sys.argv
        program = Path(sys.argv[0]).resolve() if sys.argv[0] not in ("", "-c") else None
        try:
            self._run = wandb.init(
                project=self.project,
                entity=self.entity,
                mode=mode,
                dir=str(run.run_dir),
                id=earlier["id"] if earlier else None,
                resume="allow" if earlier else None,
                group=group,
                job_type="run",
                name=name,
                tags=self.tags,
                settings=wandb.Settings(
                    init_timeout=INIT_TIMEOUT_S,
                    console="off",
                    # its system charts: the run's process (its whole tree would cost the
                    # loop about 80 us an episode on two cores: W&B walks it at every sample)
                    x_stats_pid=run.pid,
                    **(
                        {"program": str(program), "program_abspath": str(program)}
                        if program
                        else {}
                    ),
                ),
            )
        except Exception as err:
            raise ConfigError(
                "sinks.wandb",
                f"W&B could not start: {start_failure(err)}",
                "check your network and `wandb login`, or pass sinks.wandb.mode=offline",
            ) from None
        for key in ("episode/*", "film"):
            self._run.define_metric(key, step_metric="episode")
        # memory on an axis of its own: a sample logged after the last episode must not move
        # the run's ``episode`` (W&B's summary keeps each key's last value)
        self._run.define_metric("system/rss_bytes", step_metric="system/episode")
        url = self._run.url if mode == "online" else None  # an offline run has none yet
        return {"id": self._run.id} | ({"url": url} if url else {})

    def log_config(self, config: dict[str, Any]) -> None:
        self._run.config.update(config, allow_val_change=True)

    def log_episodes(self, batch: EpisodeBatch) -> None:
        log = self._run.log
        for episode, _, metrics in batch.rows():
            log({"episode": episode, **{f"episode/{k}": v for k, v in metrics.items()}})

    def log_video(self, episode: int, path: Path) -> None:
        import wandb

        video = wandb.Video(str(path), format=path.suffix[1:])
        self._run.log({"episode": episode, "film": video})

    def log_memory(self, samples: list[MemorySample]) -> None:
        for sample in samples:
            self._run.log({"system/episode": sample.episode, "system/rss_bytes": sample.rss_bytes})

    def log_console(self, writes: list[tuple[str, str]]) -> None:
        # W&B's own console capture, fed with the run's writes (it would capture this process);
        # a batch's writes to one stream go as one (a line an episode is two writes)
        for stream, group in itertools.groupby(writes, key=lambda write: write[0]):
            self._run._console_raw_callback(stream, "".join(text for _, text in group))

    def log_summary(self, summary: dict[str, Any], curve_png: bytes | None) -> None:
        import wandb

        self._run.summary.update(dict(summary_numbers(summary)) | {"status": summary["status"]})
        if curve_png is not None:
            self._run.log({"learning_curve": wandb.Image(_image(curve_png))})

    def finish(self, status: str) -> None:
        self._run.finish(exit_code=0 if status == "complete" else 1)


def log_sweep(sweep: SweepDir, node: Any) -> None:
    """The sweep's summary to a run of its own in the sweep's group: ``groups.parquet`` as a
    table, the sweep's learning curves as an image."""
    import pyarrow.parquet as pq
    import wandb

    mode = node.get("mode") or os.environ.get("WANDB_MODE") or "online"
    if mode == "online" and not _has_credentials():
        return
    run = wandb.init(
        project=node.get("project") or "rlrec",
        entity=node.get("entity"),
        mode=mode,
        dir=str(sweep.path),
        group=node.get("group") or sweep_group(sweep),
        job_type="sweep",
        name=f"sweep {sweep_group(sweep)}",
        settings=wandb.Settings(init_timeout=INIT_TIMEOUT_S, console="off"),
    )
    try:
        if sweep.groups.exists():
            table = pq.read_table(sweep.groups).to_pandas()
            run.log({"groups": wandb.Table(dataframe=table.astype(str))})
        if sweep.curves.exists():
            run.log({"learning_curves": wandb.Image(str(sweep.curves))})
    finally:
        run.finish()


def _has_credentials() -> bool:
    """An API key in the environment or in ``wandb login``'s netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        hosts = netrc.netrc().hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)


def _image(png: bytes) -> Any:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.copy()
