"""Resume: continue a stopped run in its own folder, with its own config, so that the finished
run equals one that never stopped (every column but timings).

A policy that learns (it has ``update`` or ``end_episode``) is rolled back to its last checkpoint
(``checkpoint_every`` episodes, written only after the episodes before it are on disk) and the
episodes after it are run again; a policy without state resumes at the first unfinished episode.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from rlrec.errors import ConfigError
from rlrec.records import EpisodeRecord
from rlrec.sinks.parquet import read_run_table

CHECKPOINTS_DIR = "_checkpoints"
#: Overrides that change how a run is shown, not what it records: allowed when resuming.
HARMLESS = ("sinks.console", "sinks.progress", "resume")


def resumed_config(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The config recorded in ``cfg.resume``; refuse ``overrides`` that would change it."""
    run_dir = Path(cfg.resume)
    recorded_file = run_dir / ".hydra" / "config.yaml"
    if not recorded_file.exists():
        raise ConfigError(
            "resume",
            f"{str(run_dir)!r} is not an rlrec run directory (no .hydra/config.yaml)",
            "pass the folder of the run to continue",
        )
    recorded = OmegaConf.load(recorded_file)
    changed = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key.startswith("hydra") or key.startswith(HARMLESS):
            continue
        given, before = OmegaConf.select(cfg, key), OmegaConf.select(recorded, key)
        if _plain(given) != _plain(before):
            changed.append(f"{key} (recorded {_plain(before)!r}, given {_plain(given)!r})")
    if changed:
        raise ConfigError(
            "resume",
            "these overrides would change the run: " + "; ".join(changed),
            "resume with the recorded config (drop them), or start a new run",
        )
    with open_dict(recorded):
        recorded.resume = str(run_dir)
    return recorded


@dataclass
class ResumePoint:
    """Where a resumed run starts, and what it keeps from before."""

    start: int = 0
    checkpoint: Path | None = None
    kept: list[EpisodeRecord] = field(default_factory=list)


def find_resume_point(run_dir: Path, learns: bool, can_load: bool) -> ResumePoint:
    """The first episode to run: the end of the finished prefix, or, for a learning policy, the
    last checkpoint at or before it (the start of the run if it has none, or cannot load one)."""
    table = read_run_table(run_dir / "episodes.parquet", run_dir / "episodes")
    episodes = sorted(table["episode"].to_pylist()) if table is not None else []
    finished = next((i for i, e in enumerate(episodes) if e != i), len(episodes))
    point = ResumePoint(start=finished)
    if learns:
        usable = _checkpoints(run_dir, up_to=finished) if can_load else []
        point.start, point.checkpoint = usable[-1] if usable else (0, None)
    if table is not None:
        kept = table.filter(pc.less(table["episode"], point.start)).sort_by("episode")
        point.kept = [_record(row) for row in kept.to_pylist()]
    return point


def truncate(run_dir: Path, start: int) -> None:
    """Keep only episodes before ``start`` on disk: as the first part of a fresh parts folder
    (the Parquet sink appends after it), and drop the videos of the episodes to run again."""
    for final, parts in (("episodes.parquet", "episodes"), ("_actions.parquet", "_actions")):
        table = read_run_table(run_dir / final, run_dir / parts)
        if table is None:
            continue
        kept = table.filter(pc.less(table["episode"], start))
        staging = run_dir / f".{parts}.resume"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        pq.write_table(kept, staging / "part-00000.parquet")
        shutil.rmtree(run_dir / parts, ignore_errors=True)
        (run_dir / final).unlink(missing_ok=True)
        os.replace(staging, run_dir / parts)
    videos = run_dir / "videos"
    for video in videos.glob("*-episode-*.*") if videos.exists() else ():
        index = video.stem.rsplit("-", 1)[-1]
        if index.isdigit() and int(index) >= start and not video.name.startswith("replay-"):
            video.unlink()
    for leftover in (run_dir / "timelapse.mp4", run_dir / "learning_curve.png"):
        leftover.unlink(missing_ok=True)


def save_checkpoint(run_dir: Path, next_episode: int, save: Any) -> None:
    """``_checkpoints/episode-<N>/policy.checkpoint``: the policy before episode N, written whole;
    older checkpoints are removed once it is in place."""
    folder = run_dir / CHECKPOINTS_DIR
    staging = folder / f".episode-{next_episode}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save(staging / "policy.checkpoint")
    final = folder / f"episode-{next_episode}"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    for older in folder.glob("episode-*"):
        if older != final:
            shutil.rmtree(older, ignore_errors=True)


def _checkpoints(run_dir: Path, up_to: int) -> list[tuple[int, Path]]:
    """The whole checkpoints at or before episode ``up_to``, oldest first."""
    found = []
    for folder in (run_dir / CHECKPOINTS_DIR).glob("episode-*"):
        episode = folder.name.removeprefix("episode-")
        if episode.isdigit() and int(episode) <= up_to:
            found.append((int(episode), folder))
    return sorted(found)


def _record(row: dict[str, Any]) -> EpisodeRecord:
    return EpisodeRecord(
        row["episode"],
        row["seed"],
        row["return"],
        row["length"],
        row["duration_s"],
        row["terminated"],
        row["truncated"],
        row["video"],
        row["success"],
        row["video_reason"],
        row["obs_digest"],
        row.get("env_index", 0),
        row.get("worker", 0),
    )


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
