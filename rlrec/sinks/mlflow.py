"""``sinks=[parquet,mlflow]``: a run as an MLflow run.

Params are the flattened config (keys and values cut to MLflow's limits, 100 to a request); the
per-episode metrics go with ``log_batch`` at ``step`` = the episode, up to 1,000 to a request;
each film is an artifact under ``videos/`` (H.264 by default: it plays in MLflow's UI); memory is
the metric ``system/rss_bytes``; at the end the summary's numbers are metrics and the learning
curve and ``episodes.parquet`` are artifacts. Tags: the env id, the seed, the job, the run
directory, the command line, and MLflow's own for the source (the user's program), the user and
the git commit. The experiment is tagged as model training (``mlflow.experimentKind``): MLflow 3
opens other experiments in its GenAI view. In a sweep every job is a child run
(``mlflow.parentRunId``) of one run for the sweep, which gets the swept keys as params, each
group's mean, IQM and their CIs as metrics, and ``groups.parquet`` and ``summary.md`` as
artifacts when the sweep ends.

It runs in a process of its own: MLflow's client is slow to import (1-4 s) and its requests are
Python work the loop would otherwise wait for.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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

log = logging.getLogger(__name__)

#: MLflow's limits (``mlflow.utils.validation``): a param's key and value, a request's entities.
KEY_MAX, VALUE_MAX, PARAMS_PER_REQUEST, METRICS_PER_REQUEST = 250, 6000, 100, 1000
#: Retries of a request once the run is going: a server that died fails the tracker in seconds.
RUN_RETRIES = 2
#: The experiment tag MLflow 3's UI reads to choose its view, and the value of model training.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


class MlflowSink(Tracker):
    """Log a run to an MLflow tracking server (or MLflow's local store)."""

    name = "mlflow"
    runs_in = "process"

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str = "rlrec",
        retry_s: float = Tracker.retry_s,
    ) -> None:
        require("mlflow", "mlflow", "sinks.mlflow")
        self.retry_s = retry_delay(self.name, retry_s)
        if not isinstance(experiment_name, str) or not experiment_name:
            raise ConfigError(
                "sinks.mlflow.experiment_name",
                f"must be a name, got {experiment_name!r}",
                "pass e.g. sinks.mlflow.experiment_name=cartpole",
            )
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name

    def start(self, run: RunInfo, earlier: dict[str, Any] | None) -> dict[str, Any]:
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri and re.fullmatch(r"[\w.\-]+:\d+/?", uri):  # host:port, which MLflow takes for a path
            raise ConfigError(
                "sinks.mlflow.tracking_uri",
                f"{uri!r} has no scheme (MLflow would take it for a folder)",
                f"pass sinks.mlflow.tracking_uri=http://{uri}",
            )
        # at start, one try and a short wait: an unreachable server ends the run in seconds
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
        from mlflow.tracking import MlflowClient

        self._client = client = MlflowClient(tracking_uri=uri)
        try:
            if earlier is not None:
                run_id = earlier["id"]
                client.update_run(run_id, status="RUNNING")
            else:
                run_id = self._create_run(run)
        except Exception as err:
            raise ConfigError(
                "sinks.mlflow.tracking_uri",
                f"MLflow at {client.tracking_uri} could not be used: {start_failure(err)}",
                "start the server, or pass sinks.mlflow.tracking_uri=http://host:port "
                "(or leave mlflow out of sinks)",
            ) from None
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(RUN_RETRIES)
        self._run_id, self._files = run_id, RunDir(run.run_dir)
        self._started, self._clock = time.time(), None
        entry = {"id": run_id, "tracking_uri": client.tracking_uri}
        url = _page(client.tracking_uri, client.get_run(run_id).info.experiment_id, run_id)
        return entry | ({"url": url} if url else {})

    def _create_run(self, run: RunInfo) -> str:
        client = self._client
        experiment_id = training_experiment(client, self.experiment_name)
        name, sweep = job_identity(RunDir(run.run_dir))
        tags = {
            "env_id": run.env_id,
            "seed": str(run.run_seed),
            "job": str(run.job),
            "run_dir": str(Path(run.run_dir).resolve()),
            **source_tags(run.command),
        }
        parent = sweep_parent(sweep) if sweep is not None else None
        if parent is not None:
            tags["mlflow.parentRunId"] = parent
        return client.create_run(experiment_id, tags=tags, run_name=name).info.run_id

    def log_config(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(_key(k), _param_value(v)) for k, v in config.items()]
        for i in range(0, len(params), PARAMS_PER_REQUEST):
            self._client.log_batch(self._run_id, params=params[i : i + PARAMS_PER_REQUEST])

    def log_episodes(self, batch: EpisodeBatch) -> None:
        from mlflow.entities import Metric

        metrics = []
        for episode, wall_time, values in batch.rows():
            stamp = int(wall_time * 1000)
            metrics += [Metric(f"episode/{k}", v, stamp, episode) for k, v in values.items()]
            if len(metrics) >= METRICS_PER_REQUEST:
                self._client.log_batch(self._run_id, metrics=metrics)
                metrics = []
        if metrics:
            self._client.log_batch(self._run_id, metrics=metrics)

    def log_video(self, episode: int, path: Path) -> None:
        self._client.log_artifact(self._run_id, str(path), artifact_path="videos")

    def log_memory(self, samples: list[MemorySample]) -> None:
        from mlflow.entities import Metric

        if self._clock is None:  # the run's clock, from the first sample of this session
            self._clock = self._started - samples[0].time_s
        metrics = [
            Metric("system/rss_bytes", s.rss_bytes, int((self._clock + s.time_s) * 1000), s.episode)
            for s in samples
        ]
        for i in range(0, len(metrics), METRICS_PER_REQUEST):
            self._client.log_batch(self._run_id, metrics=metrics[i : i + METRICS_PER_REQUEST])

    def log_summary(self, summary: dict[str, Any], curve_png: bytes | None) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(summary.get("n") or 0)
        numbers = [Metric(f"summary/{k}", v, now, step) for k, v in summary_numbers(summary)]
        self._client.log_batch(self._run_id, metrics=numbers)
        if curve_png is not None:
            self._client.log_image(self._run_id, _png_image(curve_png), RunDir.LEARNING_CURVE)
        if self._files.episodes.exists():
            self._client.log_artifact(self._run_id, str(self._files.episodes))

    def holds(self) -> list[int]:
        """The episodes the MLflow run holds (the steps of ``episode/return``): what a run cut
        off mid-batch sent without counting it is not sent again."""
        history = self._client.get_metric_history(self._run_id, "episode/return")
        return [metric.step for metric in history]

    def finish(self, status: str) -> None:
        state = {"complete": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
        self._client.set_terminated(self._run_id, status=state)


def sweep_parent(sweep: SweepDir) -> str | None:
    """The sweep's own run (made by the sweep's start, recorded in its ``trackers.json``)."""
    entry = sweep.read_trackers().get("mlflow")
    return entry["id"] if entry else None


def start_parent(sweep: SweepDir, node: Any) -> None:
    """The sweep's parent run, made before its jobs start (they may run at once)."""
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(RUN_RETRIES))
    uri = node.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    client = MlflowClient(tracking_uri=uri)
    experiment_id = training_experiment(client, node.get("experiment_name") or "rlrec")
    tags = {"sweep_dir": str(sweep.path.resolve()), **source_tags(tuple(sys.argv))}
    parent = client.create_run(experiment_id, tags=tags, run_name=f"sweep {sweep_group(sweep)}")
    entry = {"id": parent.info.run_id, "tracking_uri": client.tracking_uri}
    url = _page(client.tracking_uri, experiment_id)
    sweep.update_tracker("mlflow", entry | ({"url": url} if url else {}))
    if url:
        log.info("mlflow: %s", url)


def end_parent(sweep: SweepDir, failed: bool) -> None:
    """The sweep's summary files on its parent run, which then ends."""
    from mlflow.tracking import MlflowClient

    entry = sweep.read_trackers().get("mlflow")
    if entry is None:
        return
    client = MlflowClient(tracking_uri=entry["tracking_uri"])
    if sweep.groups.exists():
        _log_groups(client, entry["id"], sweep)
    for path in (sweep.groups, sweep.summary, sweep.markdown):
        if path.exists():
            client.log_artifact(entry["id"], str(path))
    client.set_terminated(entry["id"], status="FAILED" if failed else "FINISHED")


def _page(uri: str, experiment_id: str, run_id: str | None = None) -> str | None:
    """The web page of a run (or of an experiment's runs) on an MLflow server, in its model
    training view: MLflow 3.17 opens its GenAI view unless the address asks (the experiment's
    kind tag only counts where its workflow selector is off). None for a local store."""
    if not uri.startswith(("http://", "https://")):
        return None
    page = f"{uri.rstrip('/')}/#/experiments/{experiment_id}"
    return f"{page}{f'/runs/{run_id}' if run_id else ''}?workflowType=machine_learning"


def training_experiment(client: Any, name: str) -> str:
    """The id of experiment ``name``, made if missing, tagged as model training."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags={KIND_TAG: KIND})
        except Exception:  # another job of the sweep made it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if KIND_TAG not in experiment.tags:  # made by an older rlrec, or by hand
        client.set_experiment_tag(experiment.experiment_id, KIND_TAG, KIND)
    return experiment.experiment_id


def source_tags(command: tuple[str, ...]) -> dict[str, str]:
    """MLflow's own tags for where a run came from (its UI's Source, User and Version), and the
    command line, for the run's process's ``command`` (``sys.argv``)."""
    program = Path(command[0]).resolve() if command and command[0] not in ("", "-c") else None
    tags = {
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": str(program) if program else "python",
        "command": shlex.join(["python", *command]),
    }
    with contextlib.suppress(Exception):  # no user name in some containers
        tags["mlflow.user"] = getpass.getuser()
    folder = program.parent if program else Path.cwd()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        if commit.returncode == 0:
            tags["mlflow.source.git.commit"] = commit.stdout.strip()
    return tags


def _log_groups(client: Any, run_id: str, sweep: SweepDir) -> None:
    """The swept keys as params of the sweep's run, and each group's mean, IQM and their CIs
    as its metrics (``<group>/mean``, ...), so MLflow's compare page reads the sweep."""
    import pyarrow.parquet as pq
    from mlflow.entities import Metric, Param

    table = pq.ParquetFile(sweep.groups).read()
    statistics = [n for n in table.column_names if n.startswith(("mean", "iqm"))]
    rows = table.to_pylist()
    keys = [  # the swept ones: an override all the jobs share tells no group apart
        k
        for k in table.column_names[: table.column_names.index("n_seeds")]
        if len({json.dumps(r[k]) for r in rows}) > 1
    ]
    # each as the sweep's override gives it (``20,30``), values in the order the jobs ran
    swept = {k: dict.fromkeys(str(r[k]) for r in rows) for k in keys}
    swept["seed"] = dict.fromkeys(str(seed) for r in rows for seed in r["seeds"])
    params = [Param(_key(k), _param_value(",".join(v))) for k, v in swept.items()]
    now, metrics = int(time.time() * 1000), []
    for row in rows:
        label = " ".join(f"{k}_{row[k]}" for k in keys) or "all runs"
        label = re.sub(r"[^\w.\- ]", "_", label)[: KEY_MAX - 20]
        metrics += [
            Metric(f"{label}/{name}", row[name], now, 0)
            for name in statistics
            if row[name] is not None
        ]
    client.log_batch(run_id, params=params[:PARAMS_PER_REQUEST])
    for i in range(0, len(metrics), METRICS_PER_REQUEST):
        client.log_batch(run_id, metrics=metrics[i : i + METRICS_PER_REQUEST])


def _key(key: str) -> str:
    """A param's key within MLflow's limit: a long one is cut and told apart by its digest."""
    if len(key) <= KEY_MAX:
        return key
    return key[: KEY_MAX - 9] + "~" + hashlib.blake2b(key.encode(), digest_size=4).hexdigest()


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 3] + "..."


def _png_image(png: bytes) -> Any:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.copy()
