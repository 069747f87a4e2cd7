"""Summaries across runs: one row per job, one row per combination of the non-seed overrides.

The statistics across seeds follow rliable (Agarwal et al., 2021): the interquartile mean of the
runs' mean returns and 95% percentile-bootstrap intervals, here with a fixed bootstrap seed so that
the same sweep always gives the same summary.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

from rlrec.plots import plot_learning_curves
from rlrec.rundir import (
    RunDir,
    SweepDir,
    numbers,
    parse_overrides,
    part_files,
    read_yaml,
    stopped_status,
    write_parquet,
    write_text,
)

log = logging.getLogger(__name__)

BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 10_000
#: The override that names the run seed, and its column in the sweep files (as in
#: ``episodes.parquet``, so that a join on ``job`` and ``run_seed`` just works).
SEED_KEY = "seed"
SEED_COLUMN = "run_seed"

#: Every column the summaries always have, with the one Arrow type it has whatever the data (two
#: sweeps' files then read as one dataset). Override columns take their values' type.
_FLOAT = pa.float64()
COLUMN_TYPES: dict[str, pa.DataType] = {
    "job": pa.int64(),
    SEED_COLUMN: pa.int64(),
    "status": pa.string(),
    "error": pa.string(),
    "n_episodes": pa.int64(),
    "peak_rss_bytes": pa.int64(),
    "window": pa.int64(),
    "n_seeds": pa.int64(),
    "n_failed": pa.int64(),
    "seeds": pa.list_(pa.int64()),
    "jobs": pa.list_(pa.int64()),
    **dict.fromkeys(("mean", "std", "iqm", "min", "max", "mean_last"), _FLOAT),
    **{f"{s}_ci95_{end}": _FLOAT for s in ("mean", "iqm") for end in ("low", "high")},
}


@dataclass
class Job:
    """One run of a sweep: its folder, its overrides (typed) and how it ended."""

    dir: Path
    job: int
    overrides: dict[str, Any]
    status: str
    error: str | None = None
    run_seed: int | None = None
    peak_rss_bytes: int | None = None
    returns: np.ndarray = field(default_factory=lambda: np.empty(0))


@dataclass
class SweepSummary:
    """What ``summarize_sweep`` computed and wrote."""

    dir: Path
    jobs: pa.Table
    groups: pa.Table
    markdown: str

    @property
    def failed(self) -> list[int]:
        """The jobs that did not complete."""
        return [row["job"] for row in self.jobs.to_pylist() if row["status"] != "complete"]


def find_jobs(sweep_dir: Path) -> list[Job]:
    """The runs of the sweep in ``sweep_dir``, in job order."""
    jobs = []
    for run in SweepDir(sweep_dir).runs():
        summary = run.read_summary()
        name = run.path.name
        job = summary.get("job", int(name) if name.isdigit() else len(jobs))
        overrides = parse_overrides(run.hydra_overrides)
        jobs.append(
            Job(
                run.path,
                int(job),
                overrides,
                summary.get("status") or stopped_status(run),
                summary.get("error"),
                overrides.get(SEED_KEY, summary.get("seed", _recorded_seed(run))),
                summary.get("peak_rss_bytes"),
            )
        )
    return sorted(_merged_runs(sweep_dir, jobs), key=lambda j: j.job)


def _merged_runs(sweep_dir: Path, jobs: list[Job]) -> list[Job]:
    """``jobs`` with each sharded run's shards replaced by the one run they merge into (``shard``
    left out of its overrides, as ``seed`` is of the groups); a run whose shards are not all
    there is "incomplete" until ``rlrec-merge`` completes it."""
    from rlrec.merge import merged_dir, sharded_runs

    runs = sharded_runs(sweep_dir)
    if not runs:
        return jobs
    shard_dirs = {shard.run.path for run in runs for shard in run.shards}
    merged = [job for job in jobs if job.dir not in shard_dirs]
    for k, run in enumerate(runs):
        out = RunDir(merged_dir(sweep_dir, k, len(runs)))
        summary = out.read_summary()
        status = summary.get("status", "incomplete")
        error = None if status == "complete" else "shards missing (rlrec-merge names them)"
        seed = run.label.get(SEED_KEY, run.config.get(SEED_KEY))
        peak = summary.get("peak_rss_bytes")
        merged.append(Job(out.path, run.first_job, dict(run.label), status, error, seed, peak))
    return merged


def _recorded_seed(run: RunDir) -> int | None:
    """The run seed in the job's recorded config (a job that failed early has no summary)."""
    config = read_yaml(run.hydra_config) if run.hydra_config.exists() else None
    return config.get("seed") if isinstance(config, dict) else None


def summarize_sweep(sweep_dir: Path | str, window: int = 100, plot: bool = True) -> SweepSummary:
    """Read every job's episodes and write ``summary.parquet``, ``groups.parquet``,
    ``summary.md`` and (with ``plot``) ``learning_curves.png`` at the sweep root."""
    sweep = SweepDir(sweep_dir)
    jobs = find_jobs(sweep.path)
    _attach_returns(jobs)
    keys = sorted({k for job in jobs for k in job.overrides})
    group_keys = [k for k in keys if k != SEED_KEY]
    job_table = _typed_table([_job_row(job, keys, window) for job in jobs], _job_row_names(keys))
    groups = _group(jobs, group_keys)
    group_table = _typed_table(
        [_group_row(key, members, group_keys) for key, members in groups],
        _group_row_names(group_keys),
    )
    varying = [k for k in group_keys if len({_key(j.overrides.get(k)) for j in jobs}) > 1]
    fixed = {k: jobs[0].overrides.get(k) for k in group_keys if k not in varying}
    markdown = _markdown(sweep.path, group_table, varying, fixed, job_table)
    write_parquet(job_table, sweep.summary)
    write_parquet(group_table, sweep.groups)
    write_text(sweep.markdown, markdown)
    if plot:
        curves = [
            (
                _label(dict(zip(group_keys, values, strict=True)), varying),
                [j.returns for j in _complete(members)],
            )
            for values, members in groups
        ]
        plot_learning_curves(curves, window, sweep.curves)
    return SweepSummary(sweep.path, job_table, group_table, markdown)


def _attach_returns(jobs: list[Job]) -> None:
    """Every job's returns in episode order, each read from its own file (merged runs all say
    job 0, as a run done in one go does). ``ParquetFile``, not a dataset: importing
    ``pyarrow.dataset`` alone costs a sweep's end 0.25 s."""
    for job in jobs:
        run = RunDir(job.dir)
        files = [run.episodes] if run.episodes.exists() else part_files(run.episode_parts)
        if files:  # a stopped or killed job's parts count as much as a finished job's file
            tables = [pq.ParquetFile(f).read(columns=["episode", "return"]) for f in files]
            table = pa.concat_tables(tables)
            order = np.argsort(numbers(table["episode"]), kind="stable")
            job.returns = numbers(table["return"])[order]


def _job_row(job: Job, keys: list[str], window: int) -> dict[str, Any]:
    r = job.returns
    n = len(r)
    return {
        "job": job.job,
        SEED_COLUMN: job.run_seed,
        **{k: job.overrides.get(k) for k in keys if k != SEED_KEY},
        "status": job.status,
        "error": job.error,
        "n_episodes": n,
        "mean": float(r.mean()) if n else None,
        "std": float(r.std(ddof=1)) if n >= 2 else None,
        "iqm": iqm(r) if n else None,
        "min": float(r.min()) if n else None,
        "max": float(r.max()) if n else None,
        "mean_last": float(r[-window:].mean()) if n else None,
        "window": window,
        "peak_rss_bytes": job.peak_rss_bytes,
    }


def _job_row_names(keys: list[str]) -> list[str]:
    """The columns of ``summary.parquet``, in order: the job, its run seed (swept or not), the
    other overrides, how it ended, its statistics."""
    overrides = [k for k in keys if k != SEED_KEY]
    names = ["job", SEED_COLUMN, *overrides, "status", "error", "n_episodes"]
    return [*names, "mean", "std", "iqm", "min", "max", "mean_last", "window", "peak_rss_bytes"]


def _group_row_names(group_keys: list[str]) -> list[str]:
    """The columns of ``groups.parquet``, in order."""
    names = [*group_keys, "n_seeds", "n_failed", "seeds", "jobs", "mean", "iqm"]
    return names + [f"{s}_ci95_{end}" for s in ("mean", "iqm") for end in ("low", "high")]


def _group(jobs: list[Job], group_keys: list[str]) -> list[tuple[tuple[Any, ...], list[Job]]]:
    """Jobs by their non-seed override values, in order of first appearance."""
    groups: dict[str, tuple[tuple[Any, ...], list[Job]]] = {}
    for job in jobs:
        values = tuple(job.overrides.get(k) for k in group_keys)
        groups.setdefault(_key(values), (values, []))[1].append(job)
    return list(groups.values())


def _complete(members: list[Job]) -> list[Job]:
    """The jobs that completed and left episodes."""
    return [j for j in members if j.status == "complete" and len(j.returns)]


def _label(overrides: dict[str, Any], shown: list[str]) -> str:
    return ", ".join(f"{k}={overrides[k]}" for k in shown) or "all runs"


def _group_row(
    values: tuple[Any, ...], members: list[Job], group_keys: list[str]
) -> dict[str, Any]:
    complete = _complete(members)
    means = np.array([j.returns.mean() for j in complete])
    row: dict[str, Any] = dict(zip(group_keys, values, strict=True))
    row |= {
        "n_seeds": len(complete),
        "n_failed": len(members) - len(complete),
        "seeds": [j.run_seed for j in complete],
        "jobs": [j.job for j in complete],
        "mean": float(means.mean()) if len(means) else None,
        "iqm": iqm(means) if len(means) else None,
    }
    for name, statistic in (("mean", np.mean), ("iqm", _iqm_along)):
        low, high = bootstrap_ci(means, statistic)
        row[f"{name}_ci95_low"], row[f"{name}_ci95_high"] = low, high
    return row


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (``scipy.stats.trim_mean(x, 0.25)``)."""
    return float(stats.trim_mean(values, 0.25))


def _iqm_along(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.trim_mean(values, 0.25, axis=axis)


def bootstrap_ci(values: np.ndarray, statistic: Any) -> tuple[float | None, float | None]:
    """95% percentile-bootstrap interval of ``statistic`` with a fixed seed; None below 2 values."""
    if len(values) < 2:
        return None, None
    result = stats.bootstrap(
        (values,),
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    low, high = result.confidence_interval
    return float(low), float(high)


def _markdown(
    sweep_dir: Path, groups: pa.Table, varying: list[str], fixed: dict[str, Any], jobs: pa.Table
) -> str:
    """The groups as a Markdown table (the overrides that differ between groups as columns)."""
    header = [*map(_md, varying), "seeds", "mean return", "95% CI", "IQM", "95% CI"]
    lines = [f"# Sweep summary: {_md(sweep_dir)}", ""]
    if fixed:
        # code spans show their text as it is (no markup); a backtick would end one
        spans = ("`" + f"{k}={v}".replace("`", "'") + "`" for k, v in fixed.items())
        lines += ["Every job: " + ", ".join(spans), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in groups.to_pylist():
        cells = [_md(row[k]) for k in varying]
        cells += [
            _seeds_cell(row["n_seeds"], row["n_failed"]),
            _num(row["mean"]),
            _interval(row["mean_ci95_low"], row["mean_ci95_high"], row["n_seeds"]),
            _num(row["iqm"]),
            _interval(row["iqm_ci95_low"], row["iqm_ci95_high"], row["n_seeds"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Intervals: 95% percentile bootstrap over the seeds' mean returns "
        f"({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}); IQM: interquartile mean.",
    ]
    failed = [r for r in jobs.to_pylist() if r["status"] != "complete"]
    if failed:
        lines += ["", f"{len(failed)} job(s) did not complete:"]
        lines += [
            f"- job {r['job']} ({_md(r['status'])}): {_md(r['error'] or 'no error recorded')}"
            for r in failed
        ]
    return "\n".join(lines) + "\n"


def _md(value: Any) -> str:
    """``value`` as Markdown text, never markup: its HTML escaped (a Markdown renderer passes
    HTML through), a ``|`` escaped out of the table, on one line."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    return text.replace("|", "\\|")


def _key(value: Any) -> str:
    return json.dumps(value, default=str)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _seeds_cell(n_seeds: int, n_failed: int) -> str:
    """How many seeds completed, and how many did not (``0 (1 failed)``: nothing to show)."""
    return f"{n_seeds} ({n_failed} failed)" if n_failed else str(n_seeds)


def _interval(low: float | None, high: float | None, n_seeds: int) -> str:
    if low is not None:
        return f"[{low:.2f}, {high:.2f}]"
    return "n/a (1 seed)" if n_seeds == 1 else "n/a (no seed completed)" if not n_seeds else "n/a"


def _typed_table(rows: list[dict[str, Any]], names: list[str]) -> pa.Table:
    """Rows to a table of the columns ``names``, each with one Arrow type whatever the data: the
    fixed columns' types from ``COLUMN_TYPES``; an override column takes its values' type (text
    if they mix types other than int and float, or if every value is null)."""
    columns = {}
    for name in names:
        values = [row[name] for row in rows]
        type_ = COLUMN_TYPES.get(name)
        if type_ is None:
            kinds = {type(v) for v in values if v is not None}
            if not kinds or (len(kinds) > 1 and not kinds <= {int, float}):
                values, type_ = [None if v is None else str(v) for v in values], pa.string()
        columns[name] = pa.array(values, type=type_)
    return pa.table(columns)


def summarize_path(path: Path | str, window: int = 100) -> list[SweepSummary]:
    """Summarize whatever ``path`` holds: a sweep, or a folder of sweeps (searched recursively).

    A single run is summarized as a sweep of one job, printed but not written: the contract keeps
    a run directory's own Parquet files to ``episodes.parquet``.
    """
    path = Path(path)
    if RunDir(path).is_run():  # a job of a sweep, a single run, or a Recorder's run
        return [_summarize_run(path, window)]
    return [summarize_sweep(sweep.path, window) for sweep in SweepDir.under(path)]


def _summarize_run(run_dir: Path, window: int) -> SweepSummary:
    jobs = [job for job in find_jobs(run_dir.parent) if job.dir == run_dir]
    if not jobs:  # a Recorder's run
        summary = RunDir(run_dir).read_summary()
        jobs = [
            Job(
                run_dir,
                summary.get("job", 0),
                {},
                summary.get("status") or stopped_status(RunDir(run_dir)),
                summary.get("error"),
                summary.get("seed"),
                summary.get("peak_rss_bytes"),
            )
        ]
    _attach_returns(jobs)
    keys = sorted(jobs[0].overrides)
    table = _typed_table([_job_row(job, keys, window) for job in jobs], _job_row_names(keys))
    row = table.to_pylist()[0]
    markdown = (
        f"# Run summary: {run_dir}\n\nstatus {row['status']}, {row['n_episodes']} episodes: "
        f"mean return {_num(row['mean'])} (std {_num(row['std'])}), IQM {_num(row['iqm'])}, "
        f"min {_num(row['min'])}, max {_num(row['max'])}, "
        f"mean of the last {window} {_num(row['mean_last'])}\n"
    )
    return SweepSummary(run_dir, table, pa.table({}), markdown)
