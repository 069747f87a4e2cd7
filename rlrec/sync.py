"""``rlrec-sync RUN_OR_SWEEP [--sink NAME] [sinks.NAME.KEY=VALUE ...]``: send a tracker what it
lacks, from the run directory alone.

The run's Parquet is the source of truth; ``trackers.json`` says which episodes each tracker holds
(and MLflow's server is asked too). What a tracker lacks (a killed run's last batches, an outage
it was given up on, a deleted TensorBoard folder, a run recorded with no tracker at all) is sent
to the same tracker run, in the order of the episodes, with the films and the memory samples;
then the tracker run is ended: FINISHED, or FAILED for a run that failed. A second sync finds
nothing to send and changes nothing. It takes the run's lock: a run still being written is
refused, and so is a second sync of the same run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlrec.episode_ranges import EpisodeRanges
from rlrec.errors import ConfigError
from rlrec.merge import MERGED
from rlrec.rundir import Busy, RunDir, SweepDir, WriterLock, stopped_status

#: The tracker sinks rlrec ships (a run's config may name others: those are synced too).
TRACKERS = ("tensorboard", "wandb", "mlflow")


def sync_run(run: RunDir, names: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """Send each tracker of ``names`` (default: the run's trackers) what it lacks; return a line
    per tracker saying what was done."""
    try:
        lock = WriterLock.take(run.path)
    except Busy as busy:
        raise ConfigError(
            "RUN_OR_SWEEP",
            f"{run.path} is being written by {busy.who}; one run directory has one writer",
            "wait for that run (or sync) to end, then sync again",
        ) from None
    try:
        config = run.read_config()
        if config is None:
            raise ConfigError("RUN_OR_SWEEP", f"{run.path} holds no rlrec run", "name a run folder")
        table = run.read_episodes()
        rows = table.sort_by("episode").to_pylist() if table is not None else []
        return [_sync(run, config, name, overrides, rows) for name in _trackers(run, config, names)]
    finally:
        lock.release()


def _trackers(run: RunDir, config: dict[str, Any], names: Sequence[str]) -> list[str]:
    if names:
        return list(names)
    sinks = config.get("sinks") or {}
    found = [n for n in sinks if n in TRACKERS or n in run.read_trackers()]
    if not found:
        raise ConfigError(
            "--sink",
            f"{run.path} was recorded with no tracker",
            "name one: rlrec-sync RUN --sink mlflow sinks.mlflow.tracking_uri=http://host:port",
        )
    return found


def _sink(config: dict[str, Any], name: str, overrides: Sequence[str]) -> Any:
    """The tracker sink ``name`` as the run configured it (or as shipped, for a run recorded
    without it), with ``overrides`` on top."""
    from omegaconf import OmegaConf

    from rlrec.config import CONF_DIR, instantiate_node

    node = (config.get("sinks") or {}).get(name)
    if node is None:
        shipped = CONF_DIR / "sinks" / f"{name}.yaml"
        if not shipped.exists():
            raise ConfigError(
                "--sink",
                f"{name!r} is not a tracker rlrec knows",
                f"pass one of {', '.join(TRACKERS)}, or a run's own tracker sink",
            )
        node = OmegaConf.to_container(OmegaConf.load(shipped))[name]
    merged = OmegaConf.create({"sinks": {name: node}})
    prefix = f"sinks.{name}."
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key.startswith(("sinks.", "+sinks.")):
            raise ConfigError(
                override, "is not a sink setting", f"pass {prefix}KEY=VALUE (or leave it out)"
            )
    given = [o.lstrip("+") for o in overrides if o.lstrip("+").startswith(prefix)]
    merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(given))
    return instantiate_node(merged.sinks[name], f"sinks.{name}")


def _sync(
    run: RunDir, config: dict[str, Any], name: str, overrides: Sequence[str], rows: list[dict]
) -> str:
    from rlrec.memory import MemorySample
    from rlrec.records import EpisodeRecord, RunInfo
    from rlrec.sinks.tracker import FILMS_OWED
    from rlrec.stats import RunTotals

    summary = run.read_summary()
    if summary.get("n") != len(rows):  # killed, or counted what the disk lost: its rows say
        summary = summary | RunTotals.of_rows(rows).summary()
        summary.setdefault("status", stopped_status(run))
    # a killed or stopped run's tracker run ends as finished: it then holds all there is
    status = "failed" if summary.get("status") == "failed" else "complete"
    episodes = [row["episode"] for row in rows]
    earlier = run.read_trackers().get(name)
    held = EpisodeRanges.of_entry(earlier)
    sink = _sink(config, name, overrides)
    if earlier is not None and sink.lost(earlier):
        earlier, held = None, EpisodeRanges()
    lacking = [e for e in episodes if e not in held]
    owed = earlier.get(FILMS_OWED) if earlier is not None else None
    if earlier is not None and not lacking and not owed and earlier.get("ended") == status:
        return f"{name}: holds all {len(rows)} episodes already; nothing to send"
    env = config.get("env") or {}
    info = RunInfo(
        run.path,
        env.get("id", ""),
        summary.get("seed", config.get("seed")),
        int(summary.get("job") or 0),
        summary.get("episodes_planned", config.get("episodes")),
        config,
        command=tuple(sys.argv),
    )
    sink.open(info)
    for row in rows:
        sink.write(EpisodeRecord.from_row(row))
    memory = run.read_memory()
    for sample in memory.to_pylist() if memory is not None else []:
        sink.memory(MemorySample(sample["time_s"], sample["episode"], sample["rss_bytes"]))
    sink.close(summary | {"status": status})
    if sink.failure is not None:
        failure = sink.failure
        raise OSError(f"{name} failed at episode {failure['episode']}: {failure['error']}")
    entry = run.read_trackers().get(name, {})
    now = EpisodeRanges.of_entry(entry)
    missing = [e for e in episodes if e not in now]
    if missing:
        raise OSError(f"{name} still lacks {len(missing)} episodes (from {missing[0]} on)")
    if entry.get(FILMS_OWED):
        raise OSError(f"{name} still lacks the films of episodes {entry[FILMS_OWED]}")
    sent = len(lacking) if earlier is not None else len(rows)
    return f"{name}: sent {sent} episodes; it holds all {len(rows)}; ended {entry.get('ended')}"


def _runs(path: Path) -> list[RunDir]:
    """The runs under ``path``: itself, or a sweep's jobs (and its merged run)."""
    run = RunDir(path)
    if run.is_run() or run.episodes.exists() or run.episode_parts.is_dir():
        return [run]
    sweep = SweepDir(path)
    runs = [job for job in sweep.runs() if job.episodes.exists() or job.episode_parts.is_dir()]
    merged = RunDir(path / MERGED)
    if merged.episodes.exists():
        runs.append(merged)
    return sorted(runs, key=lambda r: r.path.name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rlrec-sync",
        description="Send a run's (or every run of a sweep's) trackers the episodes they lack, "
        "from the run directory alone; a second sync sends nothing.",
    )
    parser.add_argument("path", type=Path, metavar="RUN_OR_SWEEP", help="a run or a sweep folder")
    parser.add_argument(
        "--sink",
        action="append",
        default=[],
        metavar="NAME",
        help="a tracker sink to sync (tensorboard, wandb, mlflow); repeat for several. "
        "Default: the trackers the run was recorded with",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="sinks.NAME.KEY=VALUE",
        help="a sink setting (where a tracker recorded without one goes, or goes now)",
    )
    args = parser.parse_intermixed_args(argv)  # RUN --sink NAME sinks.NAME.KEY=VALUE
    if os.getcwd() not in sys.path:  # a custom sink's class imports from here, as in run.py
        sys.path.insert(0, os.getcwd())
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the trackers' own lines
    runs = _runs(args.path)
    if not runs:
        print(f"rlrec-sync: error: {args.path} holds no rlrec run or sweep", file=sys.stderr)
        return 2
    failed = False
    for run in runs:
        try:
            for line in sync_run(run, args.sink, args.overrides):
                print(f"{run.path}: {line}")
        except ConfigError as err:
            print(f"rlrec-sync: error: {err}", file=sys.stderr)
            return err.exit_code
        except OSError as err:
            print(f"rlrec-sync: error: {run.path}: {err}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
