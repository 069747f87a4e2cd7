"""A sweep as the trackers show it: its jobs grouped, each named by its overrides, and the sweep's
summary logged when it ends.

W&B: the jobs share a ``group`` (the sweep's folder), and the sweep's end logs ``groups.parquet``
as a table and ``learning_curves.png`` to a run of its own in that group. MLflow: the sweep's
start makes a parent run (its id in ``<sweep>/trackers.json``), every job is its child, and the
sweep's end logs ``groups.parquet`` and ``summary.md`` to it and ends it.
"""

from __future__ import annotations

import logging
from typing import Any

import yaml

from rlrec.rundir import RunDir, SweepDir

log = logging.getLogger(__name__)


def job_identity(run: RunDir) -> tuple[str, SweepDir | None]:
    """A run's name for a tracker and the sweep it belongs to: a job is named by its swept
    overrides (``seed=1,trigger.period=50``), a single run by its folder
    (``2026-11-28/10-00-00``)."""
    sweep = SweepDir.of(run)
    if sweep is None:
        return "/".join(run.path.resolve().parts[-2:]), None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = _yaml(run.hydra_overrides) or []
    # the sweep's overrides as given: a job's override is swept if the sweep's was a sweep
    # (``seed=0,1``, ``range(0,4)``)
    hydra = (_yaml(sweep.multirun) or {}).get("hydra") or {}
    parser = OverridesParser.create()
    given = parser.parse_overrides(hydra.get("overrides", {}).get("task", []))
    swept = {o.key_or_group for o in given if o.is_sweep_override()}
    mine = [o for o in overrides if parser.parse_override(o).key_or_group in swept] or overrides
    return (",".join(mine) if mine else f"job {run.path.name}"), sweep


def _yaml(path: Any) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else None


def sweep_group(sweep: SweepDir) -> str:
    """The sweep's name for a tracker: its folder's last two parts (``2026-11-28/10-00-00``)."""
    return "/".join(sweep.path.resolve().parts[-2:])


def start_sweep(sweep: SweepDir, sinks: Any) -> None:
    """Before the jobs: the MLflow parent run, if the jobs log to MLflow."""
    if sinks is not None and "mlflow" in sinks:
        from rlrec.sinks.mlflow import start_parent

        start_parent(sweep, sinks["mlflow"])


def end_sweep(sweep: SweepDir, sinks: Any, failed: bool) -> None:
    """After the sweep's summary is written: log it to each tracker the jobs logged to. A tracker
    that fails here costs a warning: the sweep's own files are written already."""
    for name in ("mlflow", "wandb"):
        if sinks is None or name not in sinks:
            continue
        try:
            if name == "mlflow":
                from rlrec.sinks.mlflow import end_parent

                end_parent(sweep, failed)
            else:
                from rlrec.sinks.wandb import log_sweep

                log_sweep(sweep, sinks["wandb"])
        except Exception as err:
            log.warning("logging the sweep's summary to %s failed: %s", name, err)
