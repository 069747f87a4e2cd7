"""``rlrec-report DIR`` on a folder of runs and sweeps: ``DIR/index.html``, every run at a glance.

One row per run and per sweep found under ``DIR`` at any depth (a sweep's jobs in rows under
it): date, status, env, policy, overrides, episodes, mean return with its 95% CI, success rate,
peak memory, duration, a poster frame of the best film and a link to the run's page. The table
sorts by any column and filters by text and status; ticking two or more rows and "Compare"
opens ``DIR/compare.html`` on them (``rlrec/compare.py``).

A run is a folder with ``summary.json``, ``episodes.parquet`` or episode parts (a killed run has
no summary, a ``Recorder`` run no ``.hydra/``); a sweep, one with ``multirun.yaml`` or
``summary.parquet``. What a row needs comes from the run's small files (its summary, its
Parquet footers, its config) and, once, from its ``episode``, ``return`` and ``video`` columns
(for the curve and the films the compare page shows, written as a script beside the index:
Chromium lets a ``file://`` page load scripts, not fetch files). Everything is kept in
``DIR/.rlrec-index/`` by the files' sizes and times, so a second build reads the new runs only.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rlrec import charts
from rlrec.rundir import PART_GLOB, RunDir, SweepDir, read_yaml, stopped_status, write_text

#: The index's own folder under ``DIR``: its cache, the posters and the compare page's data.
INDEX_DIR = ".rlrec-index"
INDEX, COMPARE = "index.html", "compare.html"
#: Bumped when a row's content changes: rows cached by an older rlrec are made again.
ROW_VERSION = 1
POSTER_WIDTH = 160


def build_index(folder: Path, window: int = 100) -> Path | None:
    """Write ``folder/index.html`` (and ``compare.html``); return the index's path, or None
    (and write nothing) if ``folder`` holds no run."""
    from rlrec.compare import write_compare_page

    folder = folder.resolve()
    found = list(_find(folder))
    if not found:
        return None
    own = folder / INDEX_DIR
    (own / "data").mkdir(parents=True, exist_ok=True)
    (own / "posters").mkdir(exist_ok=True)
    cache_file = own / "rows.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    rows, made = [], 0
    for kind, path, sweep in found:
        rel = path.relative_to(folder).as_posix() or "."
        stamp = _stamp(path, kind)
        cached = cache.get(rel)
        if cached and cached["stamp"] == stamp and cached.get("version") == ROW_VERSION:
            row = cached["row"]
        else:
            row = _row(folder, path, rel, kind, window)
            made += 1
        row["sweep"] = sweep
        cache[rel] = {"stamp": stamp, "version": ROW_VERSION, "row": row}
        rows.append(row)
    found = {row["path"] for row in rows}
    cache = {k: v for k, v in cache.items() if k in found}  # runs deleted since
    write_text(cache_file, json.dumps(cache))
    write_compare_page(folder / COMPARE)
    page = folder / INDEX
    write_text(page, _page(folder, rows, made))
    return page


def _find(folder: Path) -> Iterator[tuple[str, Path, str | None]]:
    """(``"run"`` or ``"sweep"``, its folder, the sweep it is a job of) for everything under
    ``folder``, in path order; a run's own subfolders are not searched."""
    for path, dirs, files in os.walk(folder):
        here = Path(path)
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        if SweepDir.MULTIRUN in files or SweepDir.SUMMARY in files:
            yield "sweep", here, None
            for job in _jobs(here):
                yield "run", job.path, here.relative_to(folder).as_posix()
            dirs[:] = []
        elif _is_run(here, files):
            yield "run", here, None
            dirs[:] = []


def _is_run(path: Path, files: list[str]) -> bool:
    run = RunDir(path)
    if RunDir.SUMMARY in files or RunDir.EPISODES in files:
        return True
    return run.episode_parts.is_dir() and any(run.episode_parts.glob(PART_GLOB))


def _jobs(sweep: Path) -> list[RunDir]:
    jobs = [RunDir(p) for p in sorted(sweep.iterdir()) if p.is_dir() and _is_run(p, _names(p))]
    return sorted(jobs, key=lambda r: (not r.path.name.isdigit(), r.path.name.zfill(8)))


def _names(path: Path) -> list[str]:
    return [p.name for p in path.iterdir()]


def _stamp(path: Path, kind: str) -> list[Any]:
    """What says a run or sweep changed: its small files' sizes and times, its parts' count."""
    run = RunDir(path)
    files = [run.summary_file, run.episodes, path / RunDir.REPORT, run.trackers]
    if kind == "sweep":
        files = [path / SweepDir.SUMMARY, path / SweepDir.GROUPS, path / SweepDir.REPORT]
        files += [RunDir(job.path).summary_file for job in _jobs(path)]
    stamp: list[Any] = []
    for file in files:
        try:
            info = file.stat()
            stamp.append([file.name, info.st_size, info.st_mtime_ns])
        except OSError:
            stamp.append([file.name, None])
    if kind == "run" and run.episode_parts.is_dir():
        parts = sorted(run.episode_parts.glob(PART_GLOB))
        stamp.append([len(parts), parts[-1].stat().st_mtime_ns if parts else None])
    return stamp


def key_of(rel: str) -> str:
    """The name of a run's data script: its path, hashed."""
    return hashlib.blake2b(rel.encode(), digest_size=8).hexdigest()


# -- rows ---------------------------------------------------------------------------------------


def _row(folder: Path, path: Path, rel: str, kind: str, window: int) -> dict[str, Any]:
    if kind == "sweep":
        return _sweep_row(folder, path, rel, window)
    run = RunDir(path)
    summary = run.read_summary()
    config = run.read_config() or {}
    episodes = _columns(run)
    returns = np.asarray(episodes["return"], dtype=float)
    if summary.get("n") != len(returns):  # killed (no summary), or a summary that overcounts
        from rlrec.stats import RunningStats

        stats = RunningStats()
        for value in returns.tolist():
            stats.add(value)
        summary = summary | stats.summary()
        summary["status"] = summary.get("status") or stopped_status(run)
    films = {e: v for e, v in zip(episodes["episode"], episodes["video"], strict=True) if v}
    by_episode = dict(zip(episodes["episode"], returns, strict=True))
    best = max(films, key=lambda e: by_episode[e]) if films else None
    poster = _poster(folder, run, films[best], rel) if best is not None else None
    overrides = (
        [str(o) for o in read_yaml(run.hydra_overrides) or []]
        if run.hydra_overrides.exists()
        else []
    )
    policy = (config.get("policy") or {}).get("_target_") or (
        "Recorder" if not overrides and not run.hydra_config.exists() else ""
    )
    report = path / RunDir.REPORT
    _write_data(folder, rel, _run_data(folder, run, episodes, returns, films, window, summary))
    return {
        "kind": "run",
        "path": rel,
        "key": key_of(rel),
        "date": _date(run),
        "status": summary.get("status") or "unknown",
        "env": summary.get("env_id") or (config.get("env") or {}).get("id") or "",
        "policy": str(policy).rsplit(".", 1)[-1],
        "overrides": " ".join(overrides)
        or ("(a Recorder run)" if not run.hydra_config.exists() else ""),
        "episodes": len(returns),
        "mean": summary.get("mean"),
        "ci_low": summary.get("ci95_low"),
        "ci_high": summary.get("ci95_high"),
        "success_rate": summary.get("success_rate"),
        "peak_rss_bytes": summary.get("peak_rss_bytes"),
        "wall_time_s": summary.get("wall_time_s"),
        "poster": poster,
        "best_film": (Path(rel) / films[best]).as_posix() if best is not None else None,
        "report": (Path(rel) / RunDir.REPORT).as_posix() if report.exists() else None,
        "tracker_failures": sorted(summary.get("tracker_failures") or {}),
    }


def _sweep_row(folder: Path, path: Path, rel: str, window: int) -> dict[str, Any]:
    from rlrec.stats import t_interval

    jobs = _jobs(path)
    summaries = [job.read_summary() for job in jobs]
    means = [s["mean"] for s in summaries if s.get("mean") is not None]
    mean = float(np.mean(means)) if means else None
    std = float(np.std(means, ddof=1)) if len(means) >= 2 else None
    low, high = t_interval(len(means), mean, std)
    statuses = {
        s.get("status") or stopped_status(job) for s, job in zip(summaries, jobs, strict=True)
    }
    status = (
        "complete"
        if statuses == {"complete"}
        else ("failed" if "failed" in statuses else next(iter(sorted(statuses)), "unknown"))
    )
    multirun = path / SweepDir.MULTIRUN
    overrides = ""
    if multirun.exists():
        task = ((read_yaml(multirun) or {}).get("hydra") or {}).get("overrides", {}).get(
            "task"
        ) or []
        overrides = " ".join(str(o) for o in task)
    returns = [np.asarray(_columns(job)["return"], dtype=float) for job in jobs]
    returns = [r for r in returns if len(r)]
    data: dict[str, Any] = {"label": rel, "n": len(means), "mean": mean, "std": std, "films": {}}
    if returns:
        avg, lo, hi = charts.across_seeds(returns, window)
        idx = charts.sample(len(avg))
        data["curve"] = charts.series(f"{rel}", idx, avg[idx], band=(lo[idx], hi[idx]))
    _write_data(folder, rel, data)
    report = path / SweepDir.REPORT
    env_ids = sorted({s.get("env_id") for s in summaries if s.get("env_id")})
    return {
        "kind": "sweep",
        "path": rel,
        "key": key_of(rel),
        "date": _date(RunDir(path)),
        "status": status,
        "env": ", ".join(env_ids),
        "policy": "",
        "overrides": overrides,
        "episodes": sum(len(r) for r in returns),
        "jobs": len(jobs),
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
        "success_rate": None,
        "peak_rss_bytes": max((s.get("peak_rss_bytes") or 0 for s in summaries), default=None)
        or None,
        "wall_time_s": sum(s.get("wall_time_s") or 0 for s in summaries) or None,
        "poster": None,
        "best_film": None,
        "report": (Path(rel) / SweepDir.REPORT).as_posix() if report.exists() else None,
        "tracker_failures": [],
    }


def _columns(run: RunDir) -> dict[str, list[Any]]:
    """The run's ``episode``, ``return`` and ``video`` columns, in episode order."""
    table = run.read_episodes(columns=["episode", "return", "video"])
    if table is None:
        return {"episode": [], "return": [], "video": []}
    table = table.sort_by("episode")
    return {name: table[name].to_pylist() for name in ("episode", "return", "video")}


def _run_data(
    folder: Path,
    run: RunDir,
    episodes: dict[str, list[Any]],
    returns: np.ndarray,
    films: dict[int, str],
    window: int,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """What the compare page shows of a run: its curve, its statistics, its films."""
    rel = run.path.relative_to(folder).as_posix()
    data: dict[str, Any] = {
        "label": rel,
        "n": len(returns) - int(np.sum(~np.isfinite(returns))),
        "mean": summary.get("mean"),
        "std": summary.get("std"),
        "films": {str(e): (Path(rel) / v).as_posix() for e, v in films.items()},
    }
    if len(returns):
        idx = charts.sample(len(returns))
        x = np.asarray(episodes["episode"])[idx]
        data["curve"] = charts.series(rel, x, charts.moving(returns, window)[idx])
        data["window"] = min(window, len(returns))
    return data


def _write_data(folder: Path, rel: str, data: dict[str, Any]) -> None:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    key = json.dumps(key_of(rel))
    script = f"window.rlrecData=window.rlrecData||{{}};window.rlrecData[{key}]={text};\n"
    write_text(folder / INDEX_DIR / "data" / f"{key_of(rel)}.js", script)


def _poster(folder: Path, run: RunDir, film: str, rel: str) -> str | None:
    """A small JPEG of the film's first frame, for the index's thumbnail; None if it cannot
    be read (a GIF is its own thumbnail)."""
    if film.endswith(".gif"):
        return (Path(rel) / film).as_posix()
    out = folder / INDEX_DIR / "posters" / f"{key_of(rel)}.jpg"
    try:
        import av
        import cv2

        with av.open(str(run.path / film)) as container:
            frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
        height = max(1, round(frame.shape[0] * POSTER_WIDTH / frame.shape[1]))
        small = cv2.resize(frame, (POSTER_WIDTH, height), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            return None
        out.write_bytes(jpeg.tobytes())
    except Exception:  # a damaged or half-written film: no poster, the row stays
        return None
    return out.relative_to(folder).as_posix()


def _date(run: RunDir) -> str:
    """When the run started, as its folder's oldest small file says."""
    candidates = [run.hydra_config, run.summary_file, run.episodes, run.episode_parts, run.path]
    times = [p.stat().st_mtime for p in candidates if p.exists()]
    started = min(times) if times else 0.0
    return datetime.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M")


# -- the page -----------------------------------------------------------------------------------

_COLUMNS = [  # (heading, row key, left-aligned)
    ("", None, False),
    ("date", "date", True),
    ("run", "path", True),
    ("status", "status", True),
    ("env", "env", True),
    ("policy", "policy", True),
    ("overrides", "overrides", True),
    ("episodes", "episodes", False),
    ("mean return", "mean", False),
    ("95% CI", "ci_low", False),
    ("success", "success_rate", False),
    ("peak memory", "peak_rss_bytes", False),
    ("duration", "wall_time_s", False),
    ("best film", None, False),
]


def _page(folder: Path, rows: list[dict[str, Any]], made: int) -> str:
    statuses = sorted({row["status"] for row in rows})
    heads = "".join(
        f'<th class="{"l" if left else ""}"{" data-nosort=1" if key is None else ""}>'
        f"{_e(name)}</th>"
        for name, key, left in _COLUMNS
    )
    body = "".join(_tr(row) for row in rows)
    runs = sum(row["kind"] == "run" for row in rows)
    sweeps = len(rows) - runs
    parts = [
        f"<h1>Runs · {_e(folder.name)}</h1>",
        f"<p>{_e(str(folder))}: {runs} runs and {sweeps} sweeps ({made} read for this build). "
        "Click a column to sort; tick two or more rows and compare them.</p>",
        '<p><input class="rlrec-filter" data-for="runs" placeholder="filter: env, overrides, '
        'status..." size=40> <select class="rlrec-status" data-for="runs">'
        '<option value="">any status</option>'
        + "".join(f"<option>{_e(s)}</option>" for s in statuses)
        + '</select> <button id="compare" disabled>Compare the ticked runs</button></p>',
        f'<table class="rlrec-table" id="runs"><thead><tr>{heads}</tr></thead>'
        f"<tbody>{body}</tbody></table>",
        f"<script>{_INDEX_JS}</script>",
    ]
    return charts.page(f"Runs · {folder.name}", parts)


def _tr(row: dict[str, Any]) -> str:
    link = row["report"] or row["path"]
    name = row["path"] if row["kind"] == "run" else f"{row['path']} (sweep of {row.get('jobs', 0)})"
    if row.get("sweep"):
        name = "↳ " + name
    failures = row.get("tracker_failures") or []
    note = f" · tracker {', '.join(failures)} failed" if failures else ""
    no_page = (
        "" if row["report"] else f' <small title="rlrec-report {_e(row["path"])}">(no page)</small>'
    )
    poster = ""
    if row.get("poster"):
        poster = (
            f'<a href="{_e(row["best_film"] or row["poster"])}"><img src="{_e(row["poster"])}" '
            f'loading="lazy" width="{POSTER_WIDTH}" alt="best film of {_e(row["path"])}"></a>'
        )
    ci = f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row.get("ci_low") is not None else "n/a"
    cells = [
        ("", f'<input type="checkbox" class="pick" value="{_e(row["key"])}">', False),
        (row["date"], _e(row["date"]), True),
        (row["path"], f'<a href="{_e(link)}">{_e(name)}</a>{no_page}', True),
        (row["status"], _e(row["status"]) + _e(note), True),
        (row["env"], _e(row["env"]), True),
        (row["policy"], _e(row["policy"]), True),
        (
            row["overrides"],
            f"<code>{_e(row['overrides'])}</code>" if row["overrides"] else "",
            True,
        ),
        (row["episodes"], _e(row["episodes"]), False),
        (_v(row["mean"]), _num(row["mean"]), False),
        (_v(row["ci_low"]), ci, False),
        (
            _v(row["success_rate"]),
            f"{row['success_rate']:.1%}" if row["success_rate"] is not None else "",
            False,
        ),
        (
            _v(row["peak_rss_bytes"]),
            f"{row['peak_rss_bytes'] / 2**20:.0f} MiB" if row["peak_rss_bytes"] else "",
            False,
        ),
        (
            _v(row["wall_time_s"]),
            f"{row['wall_time_s']:.1f} s" if row["wall_time_s"] else "",
            False,
        ),
        ("", poster, False),
    ]
    tds = "".join(
        f'<td class="{"l" if left else ""}" data-v="{_e(value)}">{shown}</td>'
        for value, shown, left in cells
    )
    return (
        f'<tr data-run="{_e(row["path"])}" data-status="{_e(row["status"])}" '
        f'data-kind="{row["kind"]}">{tds}</tr>'
    )


def _v(value: Any) -> Any:
    return "" if value is None else value


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


_e = charts.escape


_INDEX_JS = """
(function () {
  var button = document.getElementById("compare");
  function picked() {
    return Array.prototype.map.call(
      document.querySelectorAll("input.pick:checked"), function (c) { return c.value; });
  }
  document.querySelectorAll("input.pick").forEach(function (box) {
    box.addEventListener("change", function () { button.disabled = picked().length < 2; });
  });
  button.addEventListener("click", function () {
    window.location.href = "compare.html#" + picked().join(",");
  });
})();
"""
