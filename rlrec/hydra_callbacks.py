"""Hydra's side of rlrec: unique output folders, checks before Hydra writes anything."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rlrec.errors import ConfigError
from rlrec.rundir import hold_run_dir, hold_sweep_dir, hydra_record_dir

_claimed: dict[str, str] = {}  # base folder -> the folder this process created for it
_resume_records: dict[str, str] = {}  # resumed run -> its record folder in this process


def unique_dir(base: str) -> str:
    """``base``, or ``base-1``, ``base-2``, …: the first that this process could create.

    Two runs started in the same second (Hydra's folder names have one-second resolution) would
    otherwise write into one folder. ``os.mkdir`` is atomic: concurrent processes never share one.
    """
    if base not in _claimed:  # Hydra resolves the same name several times in one run
        _claimed[base] = claim_new_dir(base)
    return _claimed[base]


def claim_new_dir(base: str) -> str:
    """Create ``base``, or ``base-1``, ``base-2``, …, the first that does not exist, and return
    it: a new folder at every call (a ``Recorder`` with ``run_dir=None``)."""
    path = base
    for k in itertools.count(1):
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(path)
        except FileExistsError:
            path = f"{base}-{k}"
            continue
        except OSError:
            pass  # not writable: the caller's check reports it with the fix
        return path
    raise AssertionError("unreachable")


def job_subdir(sweep_dir: str, num: int) -> str:
    """A sweep job's folder name: its number, or ``<number>-<k>`` when a job of an earlier
    launch into the same sweep folder has it (a shard run again must not overwrite another)."""
    return Path(unique_dir(f"{sweep_dir}/{num}")).name


def run_dir(resume: str | None, base: str) -> str:
    """The run's folder: the one being resumed, else a new unique one."""
    return str(resume) if resume else unique_dir(base)


def record_dir(resume: str | None) -> str:
    """Hydra's record folder: ``.hydra``; a resume keeps it and writes ``.hydra-resume-N``."""
    if not resume:
        return hydra_record_dir()
    if resume not in _resume_records:
        taken = {p.name for p in Path(resume).iterdir()} if Path(resume).is_dir() else set()
        _resume_records[resume] = next(
            hydra_record_dir(k) for k in itertools.count(1) if hydra_record_dir(k) not in taken
        )
    return _resume_records[resume]


def register_resolvers() -> None:
    """Make rlrec's folder resolvers available to configs (idempotent)."""
    # use_cache: Hydra copies resolver caches into each sweep job's config, so a job (even in a
    # joblib worker process) sees the folder its sweep claimed instead of claiming another.
    for name, resolver in (
        ("rlrec_unique_dir", unique_dir),
        ("rlrec_job_subdir", job_subdir),
        ("rlrec_run_dir", run_dir),
        ("rlrec_record_dir", record_dir),
    ):
        OmegaConf.register_new_resolver(name, resolver, use_cache=True, replace=True)


def register_plugins() -> None:
    """Register rlrec's Hydra plugins (its sweeper, the Ray and SLURM launchers) by name: Hydra's
    own scan finds them in an installed package, not through an editable install's import hook."""
    from hydra.core.plugins import Plugins

    # Scan first: the scan runs Hydra's plugin modules again, giving their classes new identities,
    # and ours subclass two of them.
    plugins = Plugins.instance()
    from hydra_plugins.rlrec_launchers import ray_launcher, slurm_launcher, sweeper

    for plugin in (sweeper.RlrecSweeper, ray_launcher.RayLauncher, slurm_launcher.SlurmLauncher):
        plugins.register(plugin)


#: Command-line options and overrides that bring configs other than rlrec's own into play.
_OTHER_CONFIGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
_OTHER_OVERRIDES = ("hydra.mode=", "hydra.searchpath=")


def compose_once(argv: list[str]) -> None:
    """Let Hydra compose the config once at start, not twice (0.1 s of a 0.6 s start).

    Hydra 1.3 composes the whole config only to read ``hydra.mode``, then composes it again to
    run. rlrec's configs never set ``hydra.mode`` (tests/test_structure.py checks), so with only
    them in play the mode is unset and Hydra's rule decides (``-m`` or not): no need to compose.
    Any option or override that could set it sends Hydra down its own path.
    """
    from hydra._internal.hydra import Hydra

    if any(a.split("=")[0] in _OTHER_CONFIGS for a in argv):
        return
    compose_for_mode = Hydra.get_mode

    def get_mode(self: Hydra, config_name: str | None, overrides: list[str]) -> Any:
        if any(o.lstrip("+~").startswith(_OTHER_OVERRIDES) for o in overrides):
            return compose_for_mode(self, config_name, overrides)
        return None

    Hydra.get_mode = get_mode  # type: ignore[method-assign]


def check_writable(folder: str, key: str) -> None:
    """Raise a ``ConfigError`` naming ``key`` unless ``folder`` can be created and written."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(
            key,
            f"cannot write to {os.path.abspath(folder)!r} ({err.strerror or err})",
            f"run from a folder you can write to, or pass {key}=<a writable folder>",
        ) from None


class CheckOutputDir(Callback):
    """Exit with code 2 and a clear message before Hydra writes anything into a folder it cannot
    write, that another process writes, or that holds another run (or sweep)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        resume = config.get("resume")
        if resume:  # before anything is written: a refused resume changes nothing on disk
            from rlrec.resume import resumed_config

            try:
                resumed_config(config, list(config.hydra.overrides.task))
                _same_folder(config)
            except ConfigError as err:
                print(f"rlrec: error: {err}", file=sys.stderr)
                sys.exit(err.exit_code)
        self._check(config, "hydra.run.dir")
        folder = Path(str(OmegaConf.select(config, "hydra.run.dir"))).absolute()
        try:
            lock = hold_run_dir(folder, "resume" if resume else "hydra.run.dir", new=not resume)
        except ConfigError as err:
            print(f"rlrec: error: {err}", file=sys.stderr)
            sys.exit(err.exit_code)
        atexit.register(lock.release)  # held to the end (a killed run's, by the OS)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")
        folder = Path(str(OmegaConf.select(config, "hydra.sweep.dir"))).absolute()
        try:
            lock = hold_sweep_dir(folder, "hydra.sweep.dir", list(config.hydra.overrides.task))
        except ConfigError as err:
            print(f"rlrec: error: {err}", file=sys.stderr)
            sys.exit(err.exit_code)
        atexit.register(lock.release)  # to the end of the sweep, its summary and merge included

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        try:
            check_writable(str(OmegaConf.select(config, key)), key)
        except ConfigError as err:
            print(f"rlrec: error: {err}", file=sys.stderr)
            sys.exit(err.exit_code)


class SummarizeSweep(Callback):
    """At the end of a sweep: ``summary.parquet``, ``groups.parquet``, ``summary.md`` and
    ``learning_curves.png`` at its root, the groups on the console, and a non-zero exit if any
    job failed (each job records its own failure, so the others and this summary still run)."""

    def __init__(self, window: int = 100, plot: bool = True) -> None:
        self.window, self.plot = window, plot

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """The trackers' side of the sweep (an MLflow parent run), before its jobs start; and,
        where the jobs run in other processes, loading what the summary needs meanwhile."""
        if not str(OmegaConf.select(config, "hydra.launcher._target_")).endswith("BasicLauncher"):
            # scipy.stats, matplotlib: a second of imports that would otherwise follow the last
            # job, while this process now only waits for the jobs
            threading.Thread(
                target=_load_summary_modules, name="rlrec-summary", daemon=True
            ).start()
        sinks = config.get("sinks")
        if sinks is None or "mlflow" not in sinks:
            return
        from rlrec.rundir import SweepDir
        from rlrec.sinks.mlflow import start_parent

        try:
            start_parent(SweepDir(config.hydra.sweep.dir), sinks["mlflow"])
        except Exception as err:  # each job then reports its tracker's problem itself
            print(f"rlrec: warning: the sweep's MLflow run could not start: {err}", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rlrec.merge import describe, merge_sweep, sharded_runs
        from rlrec.report import write_sweep_report  # only when a sweep ends
        from rlrec.rundir import SweepDir
        from rlrec.sweep import summarize_sweep  # scipy, matplotlib: only when a sweep ends

        sweep_dir = Path(config.hydra.sweep.dir)
        incomplete = 0
        if sharded_runs(sweep_dir):  # first the shards become their runs: those are summarized
            for merged in merge_sweep(sweep_dir):
                print(f"rlrec: {describe(merged, sweep_dir)}", file=sys.stderr)
                incomplete += not merged.complete
        summary = summarize_sweep(sweep_dir, self.window, self.plot)
        claims = _claims(sweep_dir, config)
        write_sweep_report(SweepDir(summary.dir), summary.jobs, summary.groups, self.window)
        _log_sweep_to_trackers(SweepDir(summary.dir), config.get("sinks"), bool(summary.failed))
        print(summary.markdown)
        if claims:
            print("Across tasks (aggregates.parquet, profiles.parquet, improvement.parquet):")
            print("\n".join(f"  {line}" for line in claims))
        if summary.failed:
            print(
                f"rlrec: {len(summary.failed)} job(s) did not complete: "
                f"{', '.join(map(str, summary.failed))}",
                file=sys.stderr,
            )
        if summary.failed or incomplete:
            sys.exit(1)


def _claims(sweep_dir: Path, config: DictConfig) -> list[str]:
    """The sweep's claims across tasks (``rlrec/aggregate.py``); a warning if they fail: the
    sweep's other files are written."""
    from rlrec.aggregate import aggregate_sweeps

    try:
        aggregate = OmegaConf.to_container(config.get("aggregate") or {}, resolve=True)
        return aggregate_sweeps([sweep_dir], sweep_dir, {"aggregate": aggregate})
    except Exception as err:
        print(f"rlrec: warning: the aggregates across tasks failed: {err}", file=sys.stderr)
        return []


def _same_folder(config: DictConfig) -> None:
    """A resume continues the run in its own folder, not in ``hydra.run.dir``."""
    folder = Path(str(OmegaConf.select(config, "hydra.run.dir")))
    if folder.absolute() != Path(str(config.resume)).absolute():
        raise ConfigError(
            "hydra.run.dir",
            f"a resume continues the run in its own folder ({config.resume}), not in {folder}",
            "drop hydra.run.dir (or set it to the resumed folder)",
        )


def _load_summary_modules() -> None:
    """Import what the sweep's summary needs while this process waits for the jobs; only a
    head start: a sweep that ends meanwhile (Ctrl-C) cuts it short without a word."""
    with contextlib.suppress(BaseException):
        import pyarrow as pa

        import rlrec.plots
        import rlrec.report
        import rlrec.sweep

        rlrec.plots.load_matplotlib()
        pa.array([0])  # pyarrow imports pandas, if installed, at its first array from Python values


def _log_sweep_to_trackers(sweep: Any, sinks: Any, failed: bool) -> None:
    """The sweep's summary to each tracker its jobs logged to (MLflow's parent run, a W&B run in
    the sweep's group). A tracker that fails here costs a warning: the sweep's files are written."""
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
            print(f"rlrec: warning: logging the sweep to {name} failed: {err}", file=sys.stderr)
