"""A sweep's jobs where a cluster runs them: composed there, and recorded as failed when the
cluster loses one (a killed process, a lost node, a job past its time limit).

Hydra's launchers hand each job its overrides; the job composes its config in its own process
(in parallel, where the launcher runs several) and runs as any sweep job does. A job that dies
without a word leaves its folder saying "running", or no folder at all: ``record_lost_job`` writes
what happened into it, so that the sweep's summary counts it failed and the others still count.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: ``summary.json`` statuses a job writes itself when it ends.
FINISHED = ("complete", "failed")


def run_sweep_job(shared: tuple[Any, ...], num: int, overrides: list[str]) -> Any:
    """Compose sweep job ``num`` from ``overrides`` and run it, in the process it runs in.

    ``shared`` is what every job of the sweep needs: Hydra's context, the sweep's config, the task,
    Hydra's global state and the folder the sweep was started from. Jobs run there, as on the
    machine that started them (relative paths, a policy module beside ``run.py``); a cluster's nodes
    see it through a shared file system, as they see the sweep's folder.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    hydra_context, config, task_function, singleton_state, cwd = shared
    if not os.path.isdir(cwd):
        raise FileNotFoundError(
            f"this node does not see {cwd}, the folder the sweep started in: run the sweep from "
            "a folder on the file system the cluster's nodes share"
        )
    os.chdir(cwd)
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{num}"
        sweep_config.hydra.job.num = num
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def record_lost_job(sweep_dir: Path | str, num: int, overrides: list[str], error: str) -> Any:
    """Record job ``num`` as failed with ``error`` and return Hydra's record of it.

    The job's folder is the latest ``<num>`` or ``<num>-<k>`` that did not finish (the job claimed
    it before it died); if it never got one, ``<num>`` (or the next free name) is made with its
    overrides, so that the sweep's summary lists it. The returned ``JobReturn`` says "completed",
    as for a job that records its own failure: the sweep goes on to its summary, which exits 1.
    """
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from rlrec.hydra_callbacks import unique_dir
    from rlrec.rundir import RunDir

    sweep = Path(sweep_dir)
    claimed = sorted(
        (p for p in sweep.glob(f"{num}*") if p.name == str(num) or p.name.startswith(f"{num}-")),
        key=lambda p: p.stat().st_mtime,
    )
    unfinished = [p for p in claimed if RunDir(p).read_summary().get("status") not in FINISHED]
    if unfinished:
        run = RunDir(unfinished[-1])
    else:
        run = RunDir(unique_dir(str(sweep / str(num))))
        run.hydra_overrides.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(list(overrides)), run.hydra_overrides)
    run.update_summary(status="failed", job=num, error=error)
    log.error("job %s was lost: %s (recorded in %s)", num, error, run.path)
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None)
    ret.working_dir = str(run.path)
    return ret
