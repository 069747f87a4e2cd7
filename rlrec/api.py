"""Run rlrec from Python: ``rlrec.run(["trigger=never", "episodes=20"])``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import setup_globals
from omegaconf import OmegaConf, open_dict

from rlrec.cli import CONF_DIR
from rlrec.hydra_callbacks import check_writable, register_resolvers
from rlrec.resume import resumed_config
from rlrec.rundir import RunDir, write_hydra_record
from rlrec.runner import record


@dataclass(frozen=True)
class RunResult:
    """A finished run: its folder, its ``summary.json`` and its episodes table."""

    run_dir: Path
    summary: dict[str, Any]

    @property
    def episodes(self) -> pa.Table:
        """``episodes.parquet`` as an Arrow table (``.to_pandas()`` for a DataFrame)."""
        return RunDir(self.run_dir).read_episodes()


def run(
    overrides: Sequence[str] = (), *, run_dir: str | Path | None = None, config_name: str = "config"
) -> RunResult:
    """Compose rlrec's config with command-line style ``overrides`` and run it.

    The run directory is laid out as the CLI lays it out (``.hydra/`` included); by default it is
    the CLI's ``outputs/YYYY-MM-DD/HH-MM-SS`` under the current folder.
    """
    setup_globals()  # Hydra's ${now:...} resolver
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # so that ${hydra:...} interpolations resolve
    if run_dir is None:
        run_dir = cfg.hydra.run.dir
    resumed = resumed_config(cfg, overrides) if cfg.get("resume") else None  # before any write
    check_writable(str(run_dir), "run_dir")
    run_dir = Path(run_dir)
    _save_hydra_record(cfg, run_dir / cfg.hydra.output_subdir)
    with open_dict(cfg):
        del cfg["hydra"]
    summary = record(resumed or cfg, run_dir)
    return RunResult(run_dir.absolute(), summary)


def _save_hydra_record(cfg: Any, record_dir: Path) -> None:
    """Hydra's record as the CLI would leave it: the config, the overrides, Hydra's own node."""
    task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    write_hydra_record(record_dir, task_cfg, cfg.hydra.overrides.task, cfg.hydra)
