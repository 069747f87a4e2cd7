"""The command line: ``python run.py [OVERRIDES]`` and ``rlrec-run [OVERRIDES]``."""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rlrec.config import CONF_DIR
from rlrec.errors import ConfigError
from rlrec.hydra_callbacks import compose_once, register_plugins, register_resolvers
from rlrec.resume import resumed_config
from rlrec.rundir import DamagedFile, RunDir
from rlrec.runner import record

log = logging.getLogger(__name__)
register_resolvers()  # at import: joblib and submitit workers import this module to run a job


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def task(cfg: DictConfig) -> dict[str, Any] | None:
    """One Hydra job: record ``cfg`` into the job's output folder.

    A user's mistake ends a single run with its message and exit code 2; in a sweep the job records
    its failure in ``summary.json`` and returns, so that the other jobs go on.
    """
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        if cfg.get("resume"):
            cfg = resumed_config(cfg, list(hydra_cfg.overrides.task))
        return record(cfg, run_dir, job=hydra_cfg.job.num if multirun else 0)
    except ConfigError as err:
        print(f"rlrec: error: {err}", file=sys.stderr)
        if not cfg.get("resume"):  # a resumed run stays as it was
            RunDir(run_dir).update_summary(status="failed", error=str(err))
        if not multirun:
            sys.exit(err.exit_code)
    except KeyboardInterrupt as err:
        print(f"rlrec: interrupted; the finished episodes are in {run_dir}", file=sys.stderr)
        sys.exit(getattr(err, "exit_code", 130))
    except OSError as err:  # a full disk, a damaged file, a failing device: not a bug
        log.error("the run stopped on an I/O error: %s", err)
        print(
            f"rlrec: error: {err}. The episodes finished so far are in {run_dir}; {_io_fix(err)}",
            file=sys.stderr,
        )
        _failed_summary(run_dir, f"{type(err).__name__}: {err}")
        if not multirun:
            sys.exit(1)
    except Exception as err:
        if not multirun:
            raise  # a bug or an env crash: the traceback is what its author needs
        log.exception("job %s failed", hydra_cfg.job.num)
        _failed_summary(run_dir, f"{type(err).__name__}: {err}")
    return None


def _failed_summary(run_dir: Path, error: str) -> None:
    """Mark the run failed with ``error``; if the run could not write its summary itself (the
    disk was full even for that), count what its parts on disk hold."""
    run = RunDir(run_dir)
    fields: dict[str, Any] = {"status": "failed", "error": error}
    if "n" not in run.read_summary():
        from rlrec.stats import RunTotals

        with contextlib.suppress(OSError):
            table = run.read_episodes()
            fields |= RunTotals.of_rows(table.to_pylist() if table is not None else []).summary()
    run.update_summary(**fields)


#: What an OSError's errno says about the disk.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _io_fix(err: OSError) -> str:
    """The fix for the I/O error a run stopped on, from its cause."""
    # the encoder's errors come as text: their errno is in the words
    words = ("disk full", *(os.strerror(code) for code in _DISK_FULL))
    if err.errno in _DISK_FULL or any(word in str(err) for word in words):
        return "free some space (or raise the file-size limit) and run again"
    if isinstance(err, DamagedFile):
        return "move that file away and resume (resume=<run>): its episodes run again"
    if err.filename:
        return f"check {err.filename} (it is named above), then run again"
    return "check the file or device named above, then run again"


def main() -> None:
    """Entry point; the folder you run in becomes importable for ``policy._target_``."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    # a log file on a full disk: its lines are lost, not turned into a traceback each
    logging.raiseExceptions = False
    register_plugins()
    compose_once(sys.argv[1:])
    try:
        task()
    except SystemExit as stop:
        _exit(stop.code)
    _exit(0)


def _exit(code: int | str | None) -> NoReturn:
    """End the process as Python's exit does, but without its teardown of every module and object
    (0.1 s once Hydra, pyarrow and Gymnasium are loaded: a sixth of a short run's time). The exit
    handlers run first (trackers, child processes, logging), then the standard streams are
    flushed. Only with no other thread left: Python's own exit would wait for it."""
    if threading.active_count() > 1:
        sys.exit(code)
    if isinstance(code, str):  # sys.exit("message"): the message, and 1
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
