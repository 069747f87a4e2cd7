"""``sinks=[parquet,mlflow]``: a run as an MLflow run.

Params are the flattened config (keys and values cut to MLflow's limits, 100 to a request); the
per-episode metrics go with ``log_batch`` at ``step`` = the episode, up to 1,000 to a request;
each film is an artifact under ``videos/`` (H.264 by default: it plays in MLflow's UI); memory is
the metric ``system/rss_bytes``; at the end the summary's numbers are metrics and the learning
curve and ``episodes.parquet`` are artifacts. Tags: the env id, the seed, the job and the run
directory. In a sweep every job is a child run (``mlflow.parentRunId``) of one run for the sweep,
which gets ``groups.parquet`` and ``summary.md`` when the sweep ends.

It runs in a process of its own: MLflow's client is slow to import (1-4 s) and its requests are
Python work the loop would otherwise wait for.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from rlrec.errors import ConfigError
from rlrec.memory import MemorySample
from rlrec.records import RunInfo
from rlrec.rundir import RunDir, SweepDir
from rlrec.sinks.sweep_trackers import job_identity, sweep_group
from rlrec.sinks.tracker import EpisodeBatch, Tracker, require, summary_numbers

#: MLflow's limits (``mlflow.utils.validation``): a param's key and value, a request's entities.
KEY_MAX, VALUE_MAX, PARAMS_PER_REQUEST, METRICS_PER_REQUEST = 250, 6000, 100, 1000
#: Retries of a request once the run is going: a server that died fails the tracker in seconds.
RUN_RETRIES = 2


class MlflowSink(Tracker):
    """Log a run to an MLflow tracking server (or a local ``mlruns`` folder)."""

    name = "mlflow"
    runs_in = "process"

    def __init__(self, tracking_uri: str | None = None, experiment_name: str = "rlrec") -> None:
        require("mlflow", "mlflow", "sinks.mlflow")
        if not isinstance(experiment_name, str) or not experiment_name:
            raise ConfigError(
                "sinks.mlflow.experiment_name",
                f"must be a name, got {experiment_name!r}",
                "pass e.g. sinks.mlflow.experiment_name=cartpole",
            )
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name

    def start(self, run: RunInfo, earlier: dict[str, Any] | None) -> dict[str, Any]:
        # at start, one try and a short wait: an unreachable server ends the run in seconds
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
        from mlflow.tracking import MlflowClient

        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        self._client = client = MlflowClient(tracking_uri=uri)
        try:
            if earlier is not None:
                run_id = earlier["id"]
                client.update_run(run_id, status="RUNNING")
            else:
                run_id = self._create_run(run)
        except Exception as err:
            where = client.tracking_uri
            raise ConfigError(
                "sinks.mlflow.tracking_uri",
                f"MLflow at {where} did not answer ({type(err).__name__}: "
                f"{' '.join(str(err).split())[:300]})",
                "start the server, or pass sinks.mlflow.tracking_uri=http://host:port "
                "(or leave mlflow out of sinks)",
            ) from None
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(RUN_RETRIES)
        self._run_id, self._files = run_id, RunDir(run.run_dir)
        return {"id": run_id, "tracking_uri": client.tracking_uri}

    def _create_run(self, run: RunInfo) -> str:
        client = self._client
        experiment = client.get_experiment_by_name(self.experiment_name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(self.experiment_name)
        )
        name, sweep = job_identity(RunDir(run.run_dir))
        tags = {
            "env_id": run.env_id,
            "seed": str(run.run_seed),
            "job": str(run.job),
            "run_dir": str(Path(run.run_dir).resolve()),
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

        now = int(time.time() * 1000)
        metrics = [Metric("system/rss_bytes", s.rss_bytes, now, s.episode) for s in samples]
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
    name = node.get("experiment_name") or "rlrec"
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    tags = {"sweep_dir": str(sweep.path.resolve())}
    parent = client.create_run(experiment_id, tags=tags, run_name=f"sweep {sweep_group(sweep)}")
    sweep.update_tracker("mlflow", {"id": parent.info.run_id, "tracking_uri": client.tracking_uri})


def end_parent(sweep: SweepDir, failed: bool) -> None:
    """The sweep's summary files on its parent run, which then ends."""
    from mlflow.tracking import MlflowClient

    entry = sweep.read_trackers().get("mlflow")
    if entry is None:
        return
    client = MlflowClient(tracking_uri=entry["tracking_uri"])
    for path in (sweep.groups, sweep.summary, sweep.markdown):
        if path.exists():
            client.log_artifact(entry["id"], str(path))
    client.set_terminated(entry["id"], status="FAILED" if failed else "FINISHED")


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
