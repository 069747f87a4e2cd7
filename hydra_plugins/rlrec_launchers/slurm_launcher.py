"""``hydra/launcher=slurm``: Hydra's submitit launcher, with a job SLURM loses recorded as failed.

Submitit raises when it fetches the result of a job that SLURM ended (killed, out of memory, past
its time limit, its node lost); Hydra's launcher lets that end the sweep there, while later jobs
still run and before the sweep's summary (and where SLURM keeps no accounting, submitit cannot
tell that such a job ended and waits forever). This one waits for every job, asking ``squeue`` how
it ended, records a job that left no result as failed in its run directory, and lets the sweep end
as when a job records its own failure.
"""

import contextlib
import logging
import subprocess
import time
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


#: SLURM's states of a job that has not ended (``squeue --states=all`` shows the others for a while
#: after the end, MinJobAge; a job it no longer lists has ended too).
UNFINISHED = {
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
    "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT",
}  # fmt: skip
#: How long a job that ended may take to show its result on a shared file system.
RESULT_GRACE_S = 15.0


class SlurmLauncher(SubmititSlurmLauncher):
    """Submits the sweep as one SLURM job array; each job composes its config on its node."""

    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        import submitit  # here, not at the top: Hydra imports this module whenever it starts

        from rlrec.jobs import record_lost_job

        assert self.config is not None
        sweep_dir = str(self.config.hydra.sweep.dir)
        executor = self._executor(submitit)
        log.info("Submitit 'slurm' sweep output dir : %s", sweep_dir)
        nums = list(range(initial_job_idx, initial_job_idx + len(job_overrides)))
        for num, overrides in zip(nums, job_overrides, strict=True):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
        state = Singleton.get_state()
        jobs = executor.map_array(
            self,
            [list(o) for o in job_overrides],
            ["hydra.sweep.dir"] * len(nums),
            nums,
            [f"job_id_for_{num}" for num in nums],
            [state] * len(nums),
        )
        _release(jobs)
        try:
            ended = _wait(jobs)
        except KeyboardInterrupt:  # Ctrl-C: SLURM signals the jobs (SIGTERM), which end as
            _cancel(jobs)  # interrupted, their episodes and summaries written
            raise
        returns = []
        for num, overrides, job in zip(nums, job_overrides, jobs, strict=True):
            state = ended.get(job.job_id, "gone")
            error = f"SLURM job {job.job_id} ended ({state}) without a result"
            if job.paths.result_pickle.exists():
                try:
                    returns.append(job.results()[0])
                    continue
                except Exception as err:  # rlrec's task records its own errors: this escaped it
                    error = f"SLURM job {job.job_id} failed: {str(err).strip().splitlines()[0]}"
            error += f"; its log: {job.paths.stderr}"
            returns.append(record_lost_job(sweep_dir, num, list(overrides), error))
        return returns

    def _executor(self, submitit: Any) -> Any:
        """Submitit's executor for the launcher's config (keys shared by every cluster as they
        are, SLURM's own prefixed ``slurm_``, as Hydra's launcher passes them)."""
        params = dict(self.params)
        # Submitted held, released once submitit has made each job's folder and put its pickle
        # there (``_release``): a job that an idle cluster starts at once would find neither,
        # and fail without a log (SLURM before 23.02 does not make a log's folder).
        params["additional_parameters"] = {
            **(params.get("additional_parameters") or {}),
            "hold": True,
        }
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{key if key in shared else f"slurm_{key}": value for key, value in params.items()}
        )
        return executor


def _release(jobs: list[Any]) -> None:
    """Let SLURM start the sweep's jobs, submitted held (see ``SlurmLauncher._executor``)."""
    arrays = sorted({job.job_id.split("_")[0] for job in jobs})
    released = subprocess.run(["scontrol", "release", *arrays], capture_output=True, text=True)
    if released.returncode != 0:
        _cancel(jobs)
        raise RuntimeError(f"scontrol release {' '.join(arrays)} failed: {released.stderr.strip()}")


def _cancel(jobs: list[Any], grace_s: float = 30.0) -> None:
    """``scancel`` the sweep's jobs and wait (``grace_s`` at most) until SLURM is done with them:
    a running one gets SIGTERM first, as when SLURM pre-empts it."""
    for job in jobs:
        with contextlib.suppress(Exception):
            job.cancel(check=False)
    deadline = time.monotonic() + grace_s
    with contextlib.suppress(Exception):
        while time.monotonic() < deadline:
            queue = _queue({job.job_id.split("_")[0] for job in jobs})
            if queue is not None and not any(queue.get(j.job_id) in UNFINISHED for j in jobs):
                return
            time.sleep(0.5)


def _wait(jobs: list[Any], poll_s: float = 1.0) -> dict[str, str]:
    """Wait until SLURM is done with every job; return how each ended, as ``squeue`` last said.

    Submitit learns a job's state from ``sacct``, which a cluster without accounting does not
    have: it would wait forever for a job killed before it wrote its result. ``squeue`` knows.
    """
    states: dict[str, str] = {}
    running = list(jobs)
    while running:
        queue = _queue({job.job_id.split("_")[0] for job in running})
        if queue is not None:  # else squeue failed: ask again
            states |= queue
            running = [
                job
                for job in running
                if not job.paths.result_pickle.exists() and queue.get(job.job_id) in UNFINISHED
            ]
        if running:
            time.sleep(poll_s)
    # a job that ended well may take a moment to show its result on a shared file system
    deadline = time.monotonic() + RESULT_GRACE_S
    for job in jobs:
        while states.get(job.job_id, "COMPLETED") == "COMPLETED" and time.monotonic() < deadline:
            if job.paths.result_pickle.exists():
                break
            time.sleep(poll_s)
    return states


def _queue(arrays: set[str]) -> dict[str, str] | None:
    """``{job id: state}`` of the tasks of the job arrays ``arrays`` that SLURM still lists."""
    command = ["squeue", "--noheader", "--states=all", "--array", "--format=%i %T"]
    found = subprocess.run(
        [*command, f"--jobs={','.join(sorted(arrays))}"], capture_output=True, text=True
    )
    if found.returncode != 0:
        # squeue says "Invalid job id" once SLURM has forgotten every job asked about
        return {} if "Invalid job id" in found.stderr else None
    return dict(line.split() for line in found.stdout.splitlines() if line.strip())
