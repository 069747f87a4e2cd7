"""``report.html``: one static page per run and per sweep, with every film playable.

The page is self-contained but for the videos, which it references by relative path, so the folder
can be zipped or served as it is; it has no script and fetches nothing, so it opens from
``file://``. Curves are inline SVG (no plotting library at the end of every run), and the
episodes table of a long run shows its first and last hundred, its best and worst, and links the
Parquet file, so the page stays small.
"""

from __future__ import annotations

import heapq
import json
import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlrec import charts
from rlrec.rundir import RunDir, SweepDir, numbers, read_yaml, stopped_status, write_text

#: Episodes shown at each end of a long run's table, and best and worst besides.
TABLE_ENDS, TABLE_EXTREMES = 100, 10
#: Films shown in a run's gallery at the most (the rest are in the table).
GALLERY_MAX = 60
_ADAPTIVE = {"best", "worst", "threshold", "outlier"}


class RunReport:
    """What a run's page shows, taken in one episode row at a time (from the sink as the run
    goes, or from the files afterwards): memory stays small whatever the run's length."""

    def __init__(self) -> None:
        self.returns: list[float] = []
        self.first: list[dict[str, Any]] = []
        self.last: deque[dict[str, Any]] = deque(maxlen=TABLE_ENDS)
        self.best: list[tuple[float, int, dict[str, Any]]] = []  # min-heaps of the extremes
        self.worst: list[tuple[float, int, dict[str, Any]]] = []
        self.films: list[dict[str, Any]] = []
        self._shared: set[str] = set()

    def add(self, row: dict[str, Any]) -> None:
        """One episode's columns (``return``, ``length``, ``video``, ...)."""
        slim = {k: row.get(k) for k in ("episode", "return", "length", "terminated", "truncated")}
        slim |= {k: row.get(k) for k in ("video", "video_reason", "success", "duration_s")}
        self.returns.append(float(slim["return"]))
        if len(self.first) < TABLE_ENDS:
            self.first.append(slim)
        self.last.append(slim)
        for heap, key in ((self.best, slim["return"]), (self.worst, -slim["return"])):
            item = (key, -slim["episode"], slim)
            if len(heap) < TABLE_EXTREMES:
                heapq.heappush(heap, item)
            else:
                heapq.heappushpop(heap, item)
        video = slim["video"]
        if video and video not in self._shared:
            if "-tiled" in video:
                self._shared.add(video)  # a grid shared by many episodes: shown once
            self.films.append(slim)

    def gallery(self) -> list[dict[str, Any]]:
        """The films to show: for a trigger that picks by return, the best and the worst first."""
        films = sorted(self.films, key=lambda f: f["episode"])
        if films and any(f["video_reason"] in _ADAPTIVE for f in films):
            best = max(films, key=lambda f: f["return"])
            worst = min(films, key=lambda f: f["return"])
            films = [best] + ([worst] if worst is not best else [])
            films += [f for f in sorted(self.films, key=lambda f: f["episode"]) if f not in films]
        return films[:GALLERY_MAX]

    def table_rows(self) -> tuple[list[dict[str, Any]], bool]:
        """The rows of the episodes table, in episode order, and whether some were left out."""
        rows = {r["episode"]: r for r in [*self.first, *self.last]}
        rows |= {r["episode"]: r for _, _, r in [*self.best, *self.worst]}
        return [rows[e] for e in sorted(rows)], len(rows) < len(self.returns)


def write_run_report(
    run: RunDir,
    report: RunReport | None = None,
    summary: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    window: int = 100,
) -> Path:
    """Write ``<run>/report.html``; without ``report``, from the run's files (its merged
    episodes, or a stopped run's parts)."""
    rows: list[dict[str, Any]] | None = None
    if report is None:
        report = RunReport()
        table = run.read_episodes()
        rows = table.sort_by("episode").to_pylist() if table is not None else []
        for row in rows:
            report.add(row)
    if summary is None:
        summary = run.read_summary()
        if rows is not None and summary.get("n") != len(rows):  # stopped, killed: its rows say
            from rlrec.stats import RunTotals

            summary = summary | RunTotals.of_rows(rows).summary()
            summary.setdefault("status", stopped_status(run))
    overrides = _overrides(run)
    if config is None and run.hydra_config.exists():
        config_text = run.hydra_config.read_text()
    else:  # the sink's, or a Recorder's (in the episodes' metadata)
        config = config if config is not None else run.read_config()
        config_text = json.dumps(config, indent=2) if config is not None else ""
    env_id = summary.get("env_id") or (config or {}).get("env", {}).get("id", "")
    title = f"{env_id} · {run.path.name}"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<p>{_e(str(run.path))} · status <b>{_e(summary.get('status', 'unknown'))}</b>"
        f" · seed {_e(_or(summary.get('seed', ''), 'none'))}</p>",
        "<p>Overrides: "
        + (" ".join(f"<code>{_e(o)}</code>" for o in overrides) or "none")
        + "</p>",
        f"<details><summary>The whole config</summary><pre>{_e(config_text)}</pre></details>",
        _tracker_failures(run, summary.get("tracker_failures") or {}),
        "<h2>Summary</h2>",
        _stats(summary, len(report.returns)),
        "<h2>Returns</h2>",
        _returns_chart(np.asarray(report.returns), window),
        _memory(run),
        _gallery(report.gallery(), len(report.films)),
        _episodes_table(run, report),
    ]
    path = run.path / RunDir.REPORT
    write_text(path, charts.page(title, parts))
    return path


def write_sweep_report(sweep: SweepDir, jobs: Any, groups: Any, window: int = 100) -> Path:
    """Write ``<sweep>/report.html`` from the sweep summary's tables (``summary.parquet`` and
    ``groups.parquet`` as Arrow tables); every job gets a report of its own to link to."""
    from rlrec.sweep import find_jobs

    job_rows = jobs.to_pylist()
    group_rows = groups.to_pylist()
    # each job's folder: a sharded run's is merged/ (its shards' folders are emptied)
    folders = {job.job: RunDir(job.dir) for job in find_jobs(sweep.path)}

    def folder(job: int) -> RunDir:
        return folders.get(job) or RunDir(sweep.path / str(job))

    def href(run: RunDir) -> str:
        return Path(os.path.relpath(run.path, sweep.path)).as_posix()

    stats = {"n_seeds", "n_failed", "seeds", "jobs", "mean", "iqm"}
    overrides = [k for k in groups.column_names if k not in stats and "_ci95_" not in k]
    # the overrides that tell groups apart are columns; the ones every job shares, a line
    keys = [k for k in overrides if len({json.dumps(r[k]) for r in group_rows}) > 1]
    shared = [f"{k}={group_rows[0][k]}" for k in overrides if k not in keys and group_rows]
    parts = [f"<h1>Sweep · {_e(sweep.path.name)}</h1>", f"<p>{_e(str(sweep.path))}</p>"]
    if shared:
        parts.append("<p>Every job: " + " ".join(f"<code>{_e(o)}</code>" for o in shared) + "</p>")
    parts.append("<h2>Groups</h2>" + _groups_table(group_rows, keys))
    curves, galleries = [], []
    for k, group in enumerate(group_rows):
        label = ", ".join(f"{key}={group[key]}" for key in keys) or "all runs"
        members = [folder(j) for j in group["jobs"]]
        seeds = [_returns(m) for m in members]
        seeds = [r for r in seeds if len(r)]
        if seeds:
            mean, low, high = charts.across_seeds(seeds, window)
            idx = charts.sample(len(mean))
            colour = charts.COLOURS[k % len(charts.COLOURS)]
            band = (low[idx], high[idx])
            curves.append(charts.series(label, idx, mean[idx], colour=colour, band=band))
        films = [(m, _best_film(m)) for m in members]
        films = [(m, f) for m, f in films if f is not None]
        if films:
            galleries.append(
                f"<h3>{_e(label)}</h3><div class=gallery>"
                + "".join(_film(f, prefix=f"{href(m)}/", title=f"job {href(m)}") for m, f in films)
                + "</div>"
            )
    parts.append("<h2>Learning curves</h2>")
    parts.append(
        charts.chart(curves, "episode", f"mean of last {window} returns")
        if curves
        else "<p>No episode finished.</p>"
    )
    parts.append(
        f"<p>Per group: the mean over seeds of each run's {window}-episode moving average, "
        "with the band of the seeds' spread (min to max). Drag across to zoom in, double-click "
        "to zoom out.</p>"
    )
    parts.append(
        "<h2>Best filmed episode of each seed</h2>" + ("".join(galleries) or "<p>None.</p>")
    )
    failed = [r for r in job_rows if r["status"] != "complete"]
    if failed:
        items = "".join(
            f"<li>job {r['job']} ({_e(r['status'])}): {_e(r['error'] or 'no error recorded')}</li>"
            for r in failed
        )
        parts.append(f"<h2 class=failed>{len(failed)} job(s) did not complete</h2><ul>{items}</ul>")
    parts.append(_claims(sweep))
    rows = []
    for row in job_rows:
        run = folder(row["job"])
        if run.path.is_dir():
            write_run_report(run, window=window)
            rows.append(_job_row(row, run, href(run)))
    parts.append("<h2>Jobs</h2>" + _jobs_table(rows))
    path = sweep.path / SweepDir.REPORT
    write_text(path, charts.page(f"Sweep {sweep.path.name}", parts))
    return path


# -- pieces ------------------------------------------------------------------------------------


def _claims(sweep: SweepDir) -> str:
    """The sweep's claims across tasks (``aggregates.parquet`` and the profiles), if made."""
    import pyarrow.parquet as pq

    from rlrec import aggregate as agg

    if not (sweep.path / agg.AGGREGATES).exists():
        return ""
    rows = pq.read_table(sweep.path / agg.AGGREGATES).to_pylist()
    profiles = pq.read_table(sweep.path / agg.PROFILES).to_pylist()
    improvement = pq.read_table(sweep.path / agg.IMPROVEMENT).to_pylist()
    if not rows:
        return "<h2>Across tasks</h2><p>No complete run to aggregate.</p>"
    parts = ["<h2>Across tasks</h2>"]
    pooled = [r for r in rows if r["env"] is None]
    envs = sorted({r["env"] for r in rows if r["env"] is not None})
    if pooled:
        n_envs = pooled[0]["n_envs"]
        seeds = pooled[0]["n_runs"] // max(n_envs, 1)
        parts.append(
            f"<p>Normalized scores pooled over {n_envs} env{'s' if n_envs != 1 else ''} with "
            f"reference scores, {seeds} seeds each; 95% stratified bootstrap intervals. Envs "
            "without references are shown per env, raw, below.</p>"
        )
        parts.append(_intervals(pooled))
    else:
        parts.append("<p>No env has reference scores (env.reference_scores): nothing pooled.</p>")
    lines = []
    for k, name in enumerate(sorted({p["algorithm"] for p in profiles})):
        mine = [p for p in profiles if p["algorithm"] == name]
        band = ([p["ci_low"] for p in mine], [p["ci_high"] for p in mine])
        colour = charts.COLOURS[k % len(charts.COLOURS)]
        tau = [p["tau"] for p in mine]
        label = name or "all runs"
        lines.append(charts.series(label, tau, [p["fraction"] for p in mine], colour, band=band))
    if lines:
        parts.append("<h3>Performance profiles</h3>")
        parts.append(charts.chart(lines, "normalized score tau", "fraction of runs above tau"))
    if improvement:
        items = "".join(
            f"<tr><td class=l>{_e(r['algorithm_x'])}</td><td class=l>{_e(r['algorithm_y'])}</td>"
            f"<td>{r['probability']:.3f}</td><td>{_interval(r['ci_low'], r['ci_high'])}</td>"
            f"<td>{r['n_envs']}</td></tr>"
            for r in improvement
        )
        parts.append(
            "<h3>Probability of improvement</h3><table><tr><th class=l>X</th><th class=l>Y</th>"
            f"<th>P(X &gt; Y)</th><th>95% CI</th><th>envs</th></tr>{items}</table>"
        )
    for env in envs:
        mine = [r for r in rows if r["env"] == env]
        parts.append(f"<h3>{_e(env)} (raw scores, {mine[0]['n_runs']} seeds)</h3>")
        parts.append(_intervals(mine))
    return "".join(parts)


def _intervals(rows: list[dict[str, Any]]) -> str:
    """Each metric's estimate and interval per algorithm, drawn as a bar on a shared scale."""
    values = [v for r in rows for v in (r["ci_low"], r["ci_high"], r["estimate"])]
    low, high = min(values), max(values)
    span = (high - low) or 1.0

    def at(value: float) -> float:
        return 100 * (value - low) / span

    cells = []
    for r in rows:
        left, right = at(r["ci_low"]), at(r["ci_high"])
        bar = (
            f'<div class="ci"><span style="left:{left:.1f}%;width:{max(right - left, 0.5):.1f}%">'
            f'</span><i style="left:{at(r["estimate"]):.1f}%"></i></div>'
        )
        cells.append(
            f"<tr><td class=l>{_e(r['algorithm'] or 'all runs')}</td><td class=l>"
            f"{_e(r['metric'])}</td><td>{r['estimate']:.3f}</td>"
            f"<td>{_interval(r['ci_low'], r['ci_high'])}</td><td class=l>{bar}</td></tr>"
        )
    return (
        "<table><tr><th class=l>algorithm</th><th class=l>metric</th><th>estimate</th>"
        f"<th>95% CI</th><th class=l>{low:.2f} ... {high:.2f}</th></tr>{''.join(cells)}</table>"
    )


def _returns_chart(returns: np.ndarray, window: int) -> str:
    if not len(returns):
        return "<p>No episode finished.</p>"
    return charts.chart(charts.returns_series(returns, window), "episode", "return")


def _job_row(row: dict[str, Any], run: RunDir, link: str) -> str:
    """A sweep's job as a row: named by its overrides, with its mean and CI, its status and
    what failed (the job, or a tracker it gave up on)."""
    from rlrec.stats import t_interval

    name = " ".join(_overrides(run)) or f"job {row['job']}"
    n, mean, std = row.get("n_episodes") or 0, row.get("mean"), row.get("std")
    low, high = t_interval(n, mean, std)
    trackers = run.read_summary().get("tracker_failures") or {}
    trouble = row.get("error") or "; ".join(
        f"tracker {k} failed at episode {_or(v.get('episode'), 'the end')}"
        for k, v in sorted(trackers.items())
    )
    cells = [
        (row["job"], row["job"], ""),
        (name, name, "l"),
        (row["status"], row["status"], "l"),
        (n, n, ""),
        (_num(mean), _or(mean, ""), ""),
        (_interval(low, high), _or(low, ""), ""),
        (trouble or "", trouble or "", "l failed" if trouble else "l"),
    ]
    tds = "".join(f'<td class="{c}" data-v="{_e(v)}">{_e(t)}</td>' for t, v, c in cells)
    anchor = f'<a href="{_e(link)}/{RunDir.REPORT}">{_e(name)}</a>'
    tds = tds.replace(f">{_e(name)}</td>", f">{anchor}</td>", 1)
    return f'<tr data-run="{_e(link)}" data-status="{_e(row["status"])}">{tds}</tr>'


def _jobs_table(rows: list[str]) -> str:
    heads = ["job", "overrides", "status", "episodes", "mean return", "95% CI", "failure"]
    left = {"overrides", "status", "failure"}
    ths = "".join(f'<th class="{"l" if h in left else ""}">{_e(h)}</th>' for h in heads)
    return (
        '<p><input class="rlrec-filter" placeholder="filter jobs" data-for="jobs"> '
        '<select class="rlrec-status" data-for="jobs"><option value="">any status</option>'
        + "".join(f"<option>{s}</option>" for s in ("complete", "failed", "interrupted", "killed"))
        + "</select> (click a column to sort)</p>"
        f'<table class="rlrec-table" id="jobs"><thead><tr>{ths}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _tracker_failures(run: RunDir, failures: dict[str, Any]) -> str:
    """The trackers the run gave up on, and how to send them what they lack."""
    if not failures:
        return ""
    items = "".join(
        f"<li><b>{_e(name)}</b>: failed at episode {_e(_or(failure.get('episode'), 'the end'))}"
        f" ({_e(failure.get('error', ''))})</li>"
        for name, failure in sorted(failures.items())
    )
    return (
        f'<div class="tracker-failures"><p>Trackers given up on (they lack episodes; '
        f"<code>rlrec-sync {_e(str(run.path))}</code> sends them what they lack):</p>"
        f"<ul>{items}</ul></div>"
    )


_e = charts.escape


def _num(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _overrides(run: RunDir) -> list[str]:
    if not run.hydra_overrides.exists():
        return []
    return [str(o) for o in read_yaml(run.hydra_overrides) or []]


def _stats(summary: dict[str, Any], n: int) -> str:
    if not summary.get("n") and not n:
        return "<p>No episode finished.</p>"
    ci = (
        f"[{_num(summary.get('ci95_low'))}, {_num(summary.get('ci95_high'))}]"
        if summary.get("ci95_low") is not None
        else "n/a (needs 2 episodes)"
    )
    length = summary.get("length") or {}
    cells = [
        ("episodes", summary.get("n", n)),
        ("mean return", _num(summary.get("mean"))),
        ("95% CI (Student t)", ci),
        ("std", _num(summary.get("std"))),
        ("min / max", f"{_num(summary.get('min'))} / {_num(summary.get('max'))}"),
        ("mean length", _num(length.get("mean"))),
        ("videos", summary.get("videos", 0)),
    ]
    if summary.get("success_rate") is not None:
        cells.append(("success rate", f"{summary['success_rate']:.1%}"))
    if summary.get("peak_rss_bytes"):
        cells.append(("peak memory", _mib(summary["peak_rss_bytes"])))
    return (
        "<div class=stats>"
        + "".join(f"<div class=stat><b>{_e(v)}</b>{_e(k)}</div>" for k, v in cells)
        + "</div>"
    )


def _film(film: dict[str, Any], prefix: str = "", title: str = "") -> str:
    src = _e(prefix + film["video"])
    media = (
        f'<img src="{src}" alt="episode {film["episode"]}">'
        if film["video"].endswith(".gif")
        else f'<video src="{src}" controls muted loop preload="none"></video>'
    )
    head = f"{_e(title)} · " if title else ""
    return (
        f"<div class=film>{media}<p>{head}episode {film['episode']} · return "
        f"{film['return']:.2f} · {film['length']} steps · "
        f"{_e(film['video_reason'] or '')}</p></div>"
    )


def _gallery(films: list[dict[str, Any]], total: int) -> str:
    if not films:
        return "<h2>Films</h2><p>No episode was filmed.</p>"
    more = (
        f" (the first {len(films)} of {total}; all are in the table)" if total > len(films) else ""
    )
    return f"<h2>Films{more}</h2><div class=gallery>" + "".join(map(_film, films)) + "</div>"


def _episodes_table(run: RunDir, report: RunReport) -> str:
    rows, partial = report.table_rows()
    source = RunDir.EPISODES if run.episodes.exists() else f"{RunDir.EPISODE_PARTS}/"
    note = (
        f"<p>{len(report.returns)} episodes: the first and last {TABLE_ENDS}, the best and worst "
        f'{TABLE_EXTREMES}. All of them: <a href="{source}">{source}</a>.</p>'
        if partial
        else f'<p>All of them in <a href="{source}">{source}</a>.</p>'
    )
    if not (run.path / source).exists():
        note = ""
    head = ["episode", "return", "length", "terminated", "truncated", "success", "video"]
    body = []
    previous = None
    for r in rows:
        if previous is not None and r["episode"] != previous + 1:
            body.append(f"<tr><td colspan={len(head)} class=l>…</td></tr>")
        previous = r["episode"]
        video = (
            f'<a href="{_e(r["video"])}">{_e(r["video_reason"] or "film")}</a>'
            if r["video"]
            else ""
        )
        cells = [r["episode"], f"{r['return']:.2f}", r["length"], r["terminated"], r["truncated"]]
        cells.append("" if r["success"] is None else r["success"])
        body.append(
            "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + f"<td class=l>{video}</td></tr>"
        )
    header = "".join(f"<th>{h}</th>" for h in head)
    return f"<h2>Episodes</h2>{note}<table><tr>{header}</tr>{''.join(body)}</table>"


def _groups_table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    head = [*keys, "seeds", "mean return", "95% CI", "IQM", "95% CI"]
    body = []
    for r in rows:
        cells = [r[k] for k in keys] + [
            f"{r['n_seeds']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else ""),
            _num(r["mean"]),
            _interval(r["mean_ci95_low"], r["mean_ci95_high"]),
            _num(r["iqm"]),
            _interval(r["iqm_ci95_low"], r["iqm_ci95_high"]),
        ]
        body.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (
        f"<table><tr>{header}</tr>{''.join(body)}</table><p>Intervals: 95% percentile bootstrap "
        "over the seeds' mean returns; IQM: interquartile mean (rliable).</p>"
    )


def _interval(low: float | None, high: float | None) -> str:
    return "n/a" if low is None else f"[{low:.2f}, {high:.2f}]"


def _returns(run: RunDir) -> np.ndarray:
    table = run.read_episodes()
    if table is None:
        return np.empty(0)
    return numbers(table.sort_by("episode")["return"])


def _best_film(run: RunDir) -> dict[str, Any] | None:
    table = run.read_episodes()
    if table is None:
        return None
    films = [r for r in table.to_pylist() if r["video"]]
    return max(films, key=lambda r: r["return"]) if films else None


def _memory(run: RunDir) -> str:
    """The run's memory over time (``_memory.parquet``) as a chart; nothing without it."""
    table = run.read_memory()
    if table is None or table.num_rows < 2:
        return ""
    episodes = numbers(table["episode"]).astype(float)
    mib = numbers(table["rss_bytes"]) / 2**20
    idx = charts.sample(len(mib))
    line = charts.series("resident memory (MiB)", episodes[idx], mib[idx], colour="#555")
    return (
        "<h2>Memory</h2><p>Resident memory of the run's processes (rlrec, encoders, workers), "
        f"sampled {table.num_rows} times; peak {_mib(int(mib.max() * 2**20))}.</p>"
        + charts.chart([line], "episodes finished", "MiB", height=180)
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def main(argv: Sequence[str] | None = None) -> int:
    """``rlrec-report [DIR]``: a run's or a sweep's ``report.html`` (a stopped or killed run's
    from its parts; a sweep's with its summary files and every job's page), or, on a folder of
    runs and sweeps (``outputs/`` by default), its ``index.html``; print the page's path."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="rlrec-report",
        description="Write report.html for a run or a sweep, or index.html for a folder of them.",
    )
    parser.add_argument(
        "path",
        type=Path,
        nargs="?",
        default=Path("outputs"),
        help="a run directory, a sweep's folder, or a folder of runs and sweeps (outputs/)",
    )
    parser.add_argument("--window", type=int, default=100, help="episodes in the moving average")
    args = parser.parse_args(argv)
    run, sweep = RunDir(args.path), SweepDir(args.path)
    if run.is_run() or run.episodes.exists() or run.episode_parts.is_dir():
        print(write_run_report(run, window=args.window))
        return 0
    if sweep.multirun.exists() or sweep.summary.exists():
        from rlrec.sweep import summarize_sweep

        summary = summarize_sweep(sweep.path, args.window)
        print(write_sweep_report(sweep, summary.jobs, summary.groups, args.window))
        return 0
    from rlrec.index import build_index

    index = build_index(args.path, args.window) if args.path.is_dir() else None
    if index is not None:
        print(index)
        return 0
    print(
        f"rlrec-report: error: {args.path} holds no rlrec run or sweep. Fix: name a run, a "
        "sweep, or a folder of them (outputs/ by default)",
        file=sys.stderr,
    )
    return 2


def _or(value: Any, instead: str) -> Any:
    """``value``, or ``instead`` where it is None (a Recorder without a run seed)."""
    return instead if value is None else value


if __name__ == "__main__":
    raise SystemExit(main())
