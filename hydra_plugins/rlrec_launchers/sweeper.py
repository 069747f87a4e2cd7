"""The sweeper of rlrec's sweeps: Hydra's basic sweeper, checking one job of each kind.

Before launching a batch, Hydra's basic sweeper composes every job's config in the launching
process to catch composition errors early: 70 ms a job, serial, whatever the launcher (20 jobs of
200 short episodes spent a third of a two-worker sweep there). Jobs that differ only in the values
of plain keys (``seed=0..99``) compose alike, so this one composes a job for each distinct set of
keys, config-group choices and ``hydra.*`` values, and leaves the rest to the jobs, which compose
their own config where they run (in parallel with joblib, Ray and SLURM).
"""
# Its config is conf/hydra/sweeper/rlrec.yaml, the default in conf/config.yaml.

import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from rlrec.interrupted import jobs_end_first, record_interrupted_jobs
from rlrec.rundir import SweepDir


class RlrecSweeper(BasicSweeper):
    """Hydra's basic sweeper (the same sweep values, batches and job numbers, but after those of
    the jobs already in its folder)."""

    def sweep(self, arguments: list[str]) -> Any:
        # a sharded run's missing shards run again into their sweep (the only relaunch rlrec
        # lets in): their jobs are numbered after the sweep's, so no number names two jobs
        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        # Ctrl-C: a job in this process (basic launcher) ends itself; jobs in joblib's workers
        # are given time to; Ray and SLURM stop theirs as the cluster does (cancelled, signalled)
        workers = type(self.launcher).__name__ == "JoblibLauncher"
        taken = SweepDir(sweep_dir).job_numbers()
        first = max(taken) + 1 if taken else 0
        if first:
            self.launcher = _NumberedAfter(self.launcher, first)
        try:
            with jobs_end_first(sweep_dir, first) if workers else nullcontext():
                return super().sweep(arguments)
        except KeyboardInterrupt as stop:
            record_interrupted_jobs(sweep_dir, first)
            print(
                f"rlrec: interrupted; each job's finished episodes are in {sweep_dir} "
                f"(rlrec-report {sweep_dir} summarizes them)",
                file=sys.stderr,
            )
            raise SystemExit(getattr(stop, "exit_code", 130)) from None
        finally:
            _release_joblib_workers()

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        assert self.hydra_context is not None and self.config is not None
        loader = self.hydra_context.config_loader
        groups: dict[str, bool] = {}
        checked: set[tuple[Any, ...]] = set()
        for overrides in batch:
            kind = tuple(_kind(override, loader, groups) for override in overrides)
            if kind not in checked:
                checked.add(kind)
                loader.load_sweep_config(master_config=self.config, sweep_overrides=list(overrides))


class _NumberedAfter:
    """A launcher whose jobs are numbered from ``first`` on."""

    def __init__(self, launcher: Any, first: int) -> None:
        self.launcher, self.first = launcher, first

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        return self.launcher.launch(job_overrides, initial_job_idx=self.first + initial_job_idx)


def _release_joblib_workers() -> None:
    """Stop the worker processes of Hydra's joblib launcher once the sweep's jobs are done.

    joblib (its loky backend) keeps them for a next call that a sweep does not make; at exit,
    joining them and tearing down around their threads cost the sweep 0.4 s after its summary.
    """
    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(loky, "_executor", None)  # loky's handle on the pool it keeps
    if executor is not None:
        executor.shutdown(wait=True)


def _kind(override: str, loader: Any, groups: dict[str, bool]) -> tuple[str, str | None]:
    """What of ``override`` can decide whether it composes: its key, and its value where that
    picks a config (a group), is checked against a schema (``hydra.*``) or interpolates."""
    key, _, value = override.partition("=")
    name = key.lstrip("+~").partition("@")[0]
    if name not in groups:
        groups[name] = bool(loader.get_group_options(name))
    plain = not groups[name] and not name.startswith("hydra.") and "${" not in value
    return key, None if plain else value
