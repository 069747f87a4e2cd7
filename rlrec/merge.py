"""A sharded run's shards merged into that run: ``<sweep>/merged/`` (``rlrec-merge <sweep>``).

``shards=N`` splits a run's episodes among N jobs of a sweep: the job ``shard=s`` runs the episodes
``i`` with ``i % N == s``, under their global indices, seeds and video names. Every episode is a
function of (run seed, index) alone, so the shards' rows put back in episode order are the rows
of the run done in one go. The merge writes them through the runner, as that run would have (the
same Parquet files, summary and report), links the shards' films beside them, and films by replay
what a trigger that decides after the episodes chooses, in episode order, as the sequential run
chose. Only once the merged run is complete are the shards' episodes and films removed, so that
``<sweep>/*/episodes.parquet`` reads every episode exactly once; a merge stopped at any moment is
finished by the next (``merge_run``). A shard that failed or never ran leaves everything as it was,
with the episodes missing and the command that runs them. ``rlrec-merge`` holds the sweep's folder
as its one writer, as a running sweep does.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlrec.rundir import Busy, RunDir, SweepDir, WriterLock, parse_overrides, write_parquet

#: Where a sweep's merged runs go: ``merged/``, or ``merged/<k>/`` for its k-th run when other
#: keys are swept beside ``shard`` (in the order of ``groups.parquet``).
MERGED = "merged"
#: The sinks a merge writes through: the run's files. The shards already reported each episode to
#: the console and the trackers as it ran.
MERGE_SINKS = ("parquet", "report", "plot")


@dataclass
class Shard:
    """One job of a sharded run."""

    run: RunDir
    shard: int
    job: int
    complete: bool


@dataclass
class ShardedRun:
    """The shards of one run, and what tells it from the sweep's other runs."""

    config: dict[str, Any]
    label: dict[str, Any]  # its overrides besides shard (seed=1, ...)
    shards: list[Shard] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.config["shards"])

    @property
    def first_job(self) -> int:
        return min(s.job for s in self.shards)


@dataclass
class Merged:
    """How one run's merge went."""

    out: Path
    run: ShardedRun
    missing: list[int]  # shards without a complete run
    missing_episodes: int = 0
    already: bool = False
    label: str = ""  # the keys that tell it from the sweep's other runs ("seed=1")

    @property
    def complete(self) -> bool:
        return not self.missing


def sharded_runs(sweep_dir: Path | str) -> list[ShardedRun]:
    """The sweep's sharded runs (its jobs with ``shards`` > 1, grouped by every other key), in
    the order of their first job."""
    runs: dict[str, ShardedRun] = {}
    for run in SweepDir(sweep_dir).runs():
        config = run.read_config() or {}
        if int(config.get("shards", 1) or 1) <= 1:
            continue
        key = json.dumps({k: v for k, v in config.items() if k != "shard"}, sort_keys=True)
        overrides = parse_overrides(run.hydra_overrides)
        label = {k: v for k, v in overrides.items() if k not in ("shard", "shards")}
        summary = run.read_summary()
        job = summary.get("job", int(run.path.name) if run.path.name.isdigit() else 0)
        complete = summary.get("status") == "complete" and run.episodes.exists()
        runs.setdefault(key, ShardedRun(config, label)).shards.append(
            Shard(run, int(config.get("shard", 0)), int(job), complete)
        )
    return sorted(runs.values(), key=lambda r: r.first_job)


def merged_dir(sweep_dir: Path | str, k: int, n: int) -> Path:
    """Where the k-th of a sweep's ``n`` sharded runs is merged."""
    root = Path(sweep_dir) / MERGED
    return root if n == 1 else root / str(k)


def merge_sweep(sweep_dir: Path | str) -> list[Merged]:
    """Merge every sharded run of the sweep that has all its shards (and is not merged yet)."""
    runs = sharded_runs(sweep_dir)
    keys = sorted({k for run in runs for k in run.label})
    varying = [k for k in keys if len({repr(run.label.get(k)) for run in runs}) > 1]
    merges = []
    for k, run in enumerate(runs):
        merged = merge_run(run, merged_dir(sweep_dir, k, len(runs)))
        merged.label = " ".join(f"{key}={run.label.get(key)}" for key in varying)
        merges.append(merged)
    return merges


def merge_run(run: ShardedRun, out: Path) -> Merged:
    """Merge ``run``'s shards into ``out``; with shards missing, only say which.

    A transaction: the merged run is written whole in a hidden folder beside ``out``, then the
    shards' episodes go and the folder takes its name, then the shards' films and actions go. A
    merge stopped at any moment (a kill, a full disk) is finished by the next one: a folder not
    written whole is written again from the shards, which hold everything until it is.
    """
    target, staged = RunDir(out), RunDir(staging_dir(out))
    if _complete(target):  # committed; a merge stopped while it emptied the shards ends here
        _empty_shards(run, out)
        return Merged(out, run, [], already=True)
    if _complete(staged):  # written whole, stopped before it took its name
        _commit(run, staged, out)
        return Merged(out, run, [])
    chosen = _complete_shards(run)
    missing = [s for s in range(run.count) if s not in chosen]
    episodes = int(run.config["episodes"])
    if missing:
        lost = sum(len(range(s, episodes, run.count)) for s in missing)
        return Merged(out, run, missing, lost)
    for stopped in (staged.path, out):  # half-written (out: by an rlrec that merged in place)
        if stopped.exists():
            shutil.rmtree(stopped)
    staged.path.mkdir(parents=True)
    _write(run, chosen, staged)
    _commit(run, staged, out)
    return Merged(out, run, [])


def staging_dir(out: Path) -> Path:
    """Where the merged run is written before it takes its name: hidden, so that no reader of
    ``<sweep>/*/episodes.parquet`` sees its rows beside the shards'."""
    return out.parent / f".{out.name}.partial"


def _complete(run: RunDir) -> bool:
    # summary.json is the last file a run writes: complete, everything before it is on disk
    return run.read_summary().get("status") == "complete"


def _commit(run: ShardedRun, staged: RunDir, out: Path) -> None:
    """Put the merged run written whole in ``staged`` in place of the shards' episodes.

    The shards' ``episodes.parquet`` go first, then a rename gives the merged run its name: at no
    moment does ``<sweep>/*/episodes.parquet`` read an episode twice (between the two, for as
    long as a few unlinks take, it reads none of them; a merge stopped there is finished by the
    next).
    """
    for shard in run.shards:
        shard.run.episodes.unlink(missing_ok=True)
    os.rename(staged.path, out)
    _empty_shards(run, out)


def _empty_shards(run: ShardedRun, out: Path) -> None:
    for shard in run.shards:  # every episode is in the merged run now, and only there
        _empty(shard.run, out)


def _complete_shards(run: ShardedRun) -> dict[int, Shard]:
    """A complete job for each shard that has one (the last, where a shard was run again)."""
    chosen = {}
    for shard in sorted(run.shards, key=_finished_at):
        if shard.complete:
            chosen[shard.shard] = shard
    return chosen


def _finished_at(shard: Shard) -> int:
    summary = shard.run.summary_file
    return summary.stat().st_mtime_ns if summary.exists() else 0


def _write(run: ShardedRun, chosen: dict[int, Shard], target: RunDir) -> None:
    """The merged run, written by the runner from the shards' records in episode order."""
    import pyarrow as pa
    from omegaconf import OmegaConf

    from rlrec.build import build
    from rlrec.config import instantiate_node
    from rlrec.records import EpisodeRecord
    from rlrec.runner import Runner
    from rlrec.triggers import TriggerView

    cfg = OmegaConf.create(run.config)
    cfg.shard, cfg.shards = 0, 1  # the run done in one go
    shards = [chosen[s] for s in sorted(chosen)]
    rows = pa.concat_tables([s.run.read_episodes() for s in shards], promote_options="default")
    rows = rows.sort_by("episode")
    decides_after = TriggerView(instantiate_node(cfg.trigger, "trigger")).decides_after
    whole = not decides_after and "parquet" in cfg.sinks
    if whole:  # nothing to decide per episode: the Parquet files are the shards' tables, sorted
        _write_tables(cfg, rows, shards, target)
    sinks = [k for k in MERGE_SINKS if k in cfg.sinks and not (whole and k == "parquet")]
    cfg.sinks = {k: cfg.sinks[k] for k in sinks}
    actions = {} if whole else _actions(shards)
    by_shard = {shard.shard: shard.run for shard in shards}
    objects = build(cfg, target.path, runs_episodes=False)  # films are linked, or replayed
    runner = Runner(objects)
    status = "failed"
    try:
        runner.start()
        for row in rows.to_pylist():
            record = EpisodeRecord.from_row(row)
            record.actions = actions.get(record.episode, [])
            if decides_after:  # chosen now, in episode order, and filmed by replay
                record.video = record.video_reason = None
                objects.filming.settle(record, None, live=False)
            elif record.video is not None:
                shard = by_shard[record.episode % run.count]
                _link(shard.path / record.video, target.path / record.video)
            runner.accept(record)
        status = "complete"
    finally:
        runner.finish(status)


def _write_tables(cfg: Any, rows: Any, shards: list[Shard], target: RunDir) -> None:
    """``episodes.parquet`` and ``_actions.parquet`` of the merged run as whole tables: the
    shards' rows in episode order, ``job`` 0, the run's config in the metadata (what the
    Parquet sink writes record by record, 20x faster)."""
    import pyarrow as pa
    from omegaconf import OmegaConf

    from rlrec.records import CONFIG_METADATA_KEY

    config = json.dumps(OmegaConf.to_container(cfg, resolve=True))
    job = rows.schema.get_field_index("job")
    rows = rows.set_column(job, rows.schema.field(job), pa.array([0] * rows.num_rows, pa.int64()))
    meta = (rows.schema.metadata or {}) | {CONFIG_METADATA_KEY.encode(): config.encode()}
    write_parquet(rows.replace_schema_metadata(meta), target.episodes)
    tables = [t for t in (s.run.read_actions() for s in shards) if t is not None]
    if len(tables) == len(shards):
        actions = pa.concat_tables(tables).sort_by("episode")
        meta = (tables[0].schema.metadata or {}) | {CONFIG_METADATA_KEY.encode(): config.encode()}
        write_parquet(actions.replace_schema_metadata(meta), target.actions)


def _actions(shards: list[Shard]) -> dict[int, Any]:
    """Every episode's actions from the shards' ``_actions.parquet`` (as the sink wrote them)."""
    from rlrec.sinks.parquet import ACTIONS_DTYPE_KEY, ACTIONS_SHAPE_KEY

    found: dict[int, Any] = {}
    for shard in shards:
        table = shard.run.read_actions()
        if table is None:
            continue
        meta = table.schema.metadata
        shape = json.loads(meta[ACTIONS_SHAPE_KEY.encode()])
        dtype = np.dtype(meta[ACTIONS_DTYPE_KEY.encode()].decode())
        lists = table["actions"].combine_chunks()
        values = lists.values.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        offsets = lists.offsets.to_numpy()
        for i, episode in enumerate(table["episode"].to_pylist()):
            found[episode] = values[offsets[i] : offsets[i + 1]].reshape(-1, *shape)
    return found


def _link(source: Path, target: Path) -> None:
    """``target`` as a second name of ``source`` (a copy across file systems)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _empty(run: RunDir, out: Path) -> None:
    """Remove what a shard's merged run now holds: its episodes, actions and films."""
    for path in (run.episodes, run.actions):
        path.unlink(missing_ok=True)
    for folder in (run.episode_parts, run.action_parts, run.videos):
        shutil.rmtree(folder, ignore_errors=True)
    run.update_summary(merged_into=os.path.relpath(out, run.path))


def describe(merged: Merged, sweep_dir: Path) -> str:
    """One line on a merge: where it went, or which episodes are missing and how to run them."""
    name = f"{merged.label}: " if merged.label else ""
    if merged.complete:
        verb = "already merged in" if merged.already else "merged into"
        return f"{name}{merged.run.count} shards {verb} {merged.out}"
    shards = ",".join(map(str, merged.missing))
    total = int(merged.run.config["episodes"])
    overrides = [f"{k}={v}" for k, v in merged.run.label.items()]
    command = ["python", "run.py", "-m", f"shard={shards}", f"shards={merged.run.count}"]
    command += [*overrides, f"hydra.sweep.dir={sweep_dir}"]
    return (
        f"{name}shard(s) {shards} of {merged.run.count} failed or did not run: "
        f"{merged.missing_episodes:,} of {total:,} episodes are missing; run them with: "
        f"{shlex.join(command)} (then rlrec-merge {sweep_dir})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``rlrec-merge <sweep dir>``: merge its sharded runs; exit 0 when every one is complete,
    1 when shards are missing, 2 on a usage error."""
    parser = argparse.ArgumentParser(
        prog="rlrec-merge", description="Merge the shards of a sweep's runs into merged/."
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep's folder (outputs/multirun/...)")
    args = parser.parse_args(argv)
    sweep = args.sweep_dir
    if not sweep.is_dir() or not SweepDir(sweep).runs():
        print(f"rlrec-merge: error: {sweep} is not a sweep folder (no jobs in it)", file=sys.stderr)
        return 2
    if not sharded_runs(sweep):
        print(f"rlrec-merge: error: the jobs of {sweep} are not shards (shards=1)", file=sys.stderr)
        return 2
    try:
        lock = WriterLock.take(sweep)
    except Busy as busy:
        print(
            f"rlrec-merge: error: {sweep} is being written by {busy.who}; wait for it to end, "
            "then run rlrec-merge again",
            file=sys.stderr,
        )
        return 2
    try:
        merges = merge_sweep(sweep)
    finally:
        lock.release()
    for merged in merges:
        print(describe(merged, sweep), file=sys.stdout if merged.complete else sys.stderr)
    return 0 if all(m.complete for m in merges) else 1


if __name__ == "__main__":
    sys.exit(main())
