"""Resume: continue a stopped run in its own folder, with its own config, so that the finished
run equals one that never stopped (every column but timings).

A policy that learns (it has ``update`` or ``end_episode``) is rolled back to its last checkpoint
(``checkpoint_every`` episodes, written only after the episodes before it are on disk) and the
episodes after it are run again; a policy without state resumes at the first unfinished episode.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from rlrec.errors import ConfigError
from rlrec.records import EpisodeRecord
from rlrec.rundir import RunDir

#: Overrides a resume takes beside ``resume`` and ``hydra.*``: they change how the run is shown,
#: not what it records, and apply to the resumed run. Any other must equal the recorded value.
DISPLAY = ("sinks.console", "sinks.progress")


def resumed_config(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The config recorded in ``cfg.resume``, with the display ``overrides`` applied; refuse a run
    that cannot resume and ``overrides`` that would change it (before anything is written)."""
    run = RunDir(cfg.resume)
    check_resumable(run)
    recorded = OmegaConf.load(run.hydra_config)
    changed, shown = [], []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key.startswith("hydra") or key == "resume":
            continue
        given = OmegaConf.select(cfg, key)
        if key.startswith(DISPLAY):
            shown.append((key, given))
            continue
        before = OmegaConf.select(recorded, key)
        if plain(given) != plain(before):
            changed.append(f"{key} (recorded {plain(before)!r}, given {plain(given)!r})")
    if changed:
        raise ConfigError(
            "resume",
            "these overrides would change the run: " + "; ".join(changed),
            "resume with the recorded config (drop them), or start a new run; a resume takes "
            f"only {', '.join(k + '.*' for k in DISPLAY)} and hydra.*",
        )
    with open_dict(recorded):
        recorded.resume = str(run.path)
        for key, value in shown:
            OmegaConf.update(recorded, key, value, force_add=True)
    return recorded


def check_resumable(run: RunDir) -> None:
    """Refuse, naming what it is, a folder that ``resume=`` cannot continue."""
    where = repr(str(run.path))
    if not run.path.is_dir():
        raise ConfigError(
            "resume", f"{where} does not exist", "pass the folder of the run to continue"
        )
    if run.hydra_config.exists():
        return
    if run.read_config() is not None:
        raise ConfigError(
            "resume",
            f"{where} was recorded by a Recorder inside a Python loop (rlrec.wrappers): only "
            "that loop can run its episodes",
            "continue it in your own code (a new Recorder into a new run_dir); resume= continues "
            "runs of run.py and rlrec.run",
        )
    raise ConfigError(
        "resume",
        f"{where} is not an rlrec run directory (no recorded config)",
        "pass the folder of the run to continue",
    )


@dataclass
class ResumePoint:
    """Where a resumed run starts, and what it keeps from before."""

    start: int = 0
    checkpoint: Path | None = None
    kept: list[EpisodeRecord] = field(default_factory=list)


def find_resume_point(run: RunDir, learns: bool, can_load: bool) -> ResumePoint:
    """The first episode to run: the end of the finished prefix, or, for a learning policy, the
    last checkpoint at or before it (the start of the run if it has none, or cannot load one)."""
    table = run.read_episodes()
    episodes = sorted(table["episode"].to_pylist()) if table is not None else []
    finished = next((i for i, e in enumerate(episodes) if e != i), len(episodes))
    point = ResumePoint(start=finished)
    if learns:
        usable = run.checkpoints_up_to(finished) if can_load else []
        point.start, point.checkpoint = usable[-1] if usable else (0, None)
    if table is not None:
        kept = _before(table, point.start).to_pylist()
        point.kept = [EpisodeRecord.from_row(row) for row in kept]
    return point


def _before(table: Any, start: int) -> Any:
    """The rows of episodes before ``start``, in episode order. Sorted and sliced: a filter
    through ``pyarrow.compute`` imports pandas (a third of a second of every resume)."""
    ordered = table.sort_by("episode")  # stable: an episode's actions keep their order
    return ordered.slice(0, bisect.bisect_left(ordered["episode"].to_pylist(), start))


def truncate(run: RunDir, start: int) -> None:
    """Keep only episodes before ``start`` on disk: as the first part of a fresh parts folder
    (the Parquet sink appends after it), and drop the videos of the episodes to run again and
    what the end of the run makes anew (timelapse, learning curve)."""
    for read, final, parts in (
        (run.read_episodes, run.episodes, run.episode_parts),
        (run.read_actions, run.actions, run.action_parts),
    ):
        table = read()
        if table is None:
            continue
        run.replace_parts(parts, _before(table, start))
        final.unlink(missing_ok=True)
    for episode, video in run.episode_videos():
        if episode >= start:
            video.unlink()
    for leftover in (*run.timelapses(), run.learning_curve):
        leftover.unlink(missing_ok=True)


def plain(value: Any) -> Any:
    """A config value as plain Python (containers resolved), for comparing and printing."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
