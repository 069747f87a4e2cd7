"""A sweep as the trackers show it: its jobs grouped, each named by its swept overrides.

W&B groups the jobs by the sweep (``sweep_group``); MLflow makes them children of the sweep's
parent run. What each tracker logs when the sweep starts and ends is in its own module
(``mlflow.start_parent``, ``mlflow.end_parent``, ``wandb.log_sweep``), called by the sweep's
Hydra callback.
"""

from __future__ import annotations

from typing import Any

import yaml

from rlrec.rundir import RunDir, SweepDir


def job_identity(run: RunDir) -> tuple[str, SweepDir | None]:
    """A run's name for a tracker and the sweep it belongs to: a job is named by its swept
    overrides (``seed=1,trigger.period=50``), a single run by its folder
    (``2026-11-28/10-00-00``)."""
    overrides, sweep = telling_overrides(run)
    if sweep is None:
        return "/".join(run.path.resolve().parts[-2:]), None
    return (",".join(overrides) if overrides else f"job {run.path.name}"), sweep


def telling_overrides(run: RunDir) -> tuple[list[str], SweepDir | None]:
    """The overrides that tell a run apart, and its sweep: a job's swept ones (``seed=1``),
    a single run's whole command line; none for a run without ``.hydra/`` (a Recorder's)."""
    overrides = _yaml(run.hydra_overrides) or []
    sweep = SweepDir.of(run)
    if sweep is None:
        return overrides, None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    # the sweep's overrides as given: a job's override is swept if the sweep's was a sweep
    # (``seed=0,1``, ``range(0,4)``)
    hydra = (_yaml(sweep.multirun) or {}).get("hydra") or {}
    parser = OverridesParser.create()
    given = parser.parse_overrides(hydra.get("overrides", {}).get("task", []))
    swept = {o.key_or_group for o in given if o.is_sweep_override()}
    mine = [o for o in overrides if parser.parse_override(o).key_or_group in swept] or overrides
    return mine, sweep


def _yaml(path: Any) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else None


def sweep_group(sweep: SweepDir) -> str:
    """The sweep's name for a tracker: its folder's last two parts (``2026-11-28/10-00-00``)."""
    return "/".join(sweep.path.resolve().parts[-2:])
