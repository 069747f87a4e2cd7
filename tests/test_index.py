"""``rlrec-report DIR``: the index of every run and sweep under a folder, and the compare page,
opened from ``file://`` in a real chromium and checked against the runs' own Parquet."""

from __future__ import annotations

import io
import json
import re
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rlrec
from rlrec.rundir import RunDir
from tests.conftest import run_cli
from tests.test_smoke import _script

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("index")]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """A folder as a user's ``outputs/`` looks after a week: runs at two depths, a sweep, a
    killed run, a Recorder run, an old run without a page; its index built by the CLI."""
    import gymnasium as gym

    from rlrec.wrappers import Recorder
    from tests.test_signals import LiveRun

    root = tmp_path_factory.mktemp("outputs")
    films = ["trigger=periodic", "trigger.period=3", "episodes=9", "env.max_episode_steps=60"]
    for seed in (0, 1):
        rlrec.run([*films, f"seed={seed}"], run_dir=root / "2026-12-01" / f"seed{seed}")
    rlrec.run(["episodes=4", "trigger=never", "sinks=[parquet]"], run_dir=root / "old")
    result = run_cli(["seed=0,1", "episodes=6", "trigger=never"], root / "sweep", multirun=True)
    assert result.code == 0, result.proc.stderr[-2000:]
    killed = LiveRun(root / "killed", "episodes=100000", "trigger=never")
    killed.wait_for_episodes(300)
    time.sleep(1.5)  # a flush of its parts
    killed.stop(signal.SIGKILL)
    killed.wait()
    env = gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=40)
    with Recorder(env, run_dir=root / "recorder", trigger="never", seed=3) as env:
        for _ in range(5):
            env.reset()
            done = False
            while not done:
                *_, terminated, truncated, _ = env.step(env.action_space.sample())
                done = terminated or truncated
    out = _script("rlrec-report", str(root))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(root / "index.html")
    return root


RUNS = ["2026-12-01/seed0", "2026-12-01/seed1", "killed", "old", "recorder", "sweep"]
ROWS = [*RUNS, "sweep/0", "sweep/1"]


def _open(chromium, url: str):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.goto(url)
    return page, problems


def _not_blank(png: bytes) -> None:
    shown = np.asarray(Image.open(io.BytesIO(png)).convert("L"), float)
    assert shown.std() > 10


def _rows(page) -> list[str]:
    return page.evaluate(
        "() => [...document.querySelectorAll('#runs tbody tr')]"
        ".filter(r => !r.hidden).map(r => r.dataset.run)"
    )


@pytest.mark.browser
def test_the_index_lists_every_run_sorts_and_filters(outputs, chromium):
    page, problems = _open(chromium, (outputs / "index.html").as_uri())
    try:
        assert sorted(_rows(page)) == sorted(ROWS)  # every run on disk, each once
        status = dict(
            page.evaluate(
                "() => [...document.querySelectorAll('#runs tbody tr')]"
                ".map(r => [r.dataset.run, r.dataset.status])"
            )
        )
        assert status["killed"] == "killed" and status["recorder"] == "complete"
        # sorted by mean return, as the summaries (or a killed run's parts) say
        page.click("th:has-text('mean return')")
        shown = _rows(page)
        means = {run: _mean(outputs / run) for run in RUNS if run != "sweep"}
        order = [run for run in shown if run in means]
        assert order == sorted(means, key=lambda r: means[r]), (order, means)
        page.click("th:has-text('mean return')")  # again: the other way
        assert [run for run in _rows(page) if run in means] == order[::-1]
        page.fill("input.rlrec-filter", "seed=1")
        assert sorted(_rows(page)) == ["2026-12-01/seed1", "sweep/1"]
        page.fill("input.rlrec-filter", "")
        page.select_option("select.rlrec-status", "killed")
        assert _rows(page) == ["killed"]
        page.select_option("select.rlrec-status", "")
        # the best film's poster, and the run's page a click away
        posters = page.evaluate(
            "() => [...document.querySelectorAll('#runs img')].map(i => i.getAttribute('src'))"
        )
        assert len(posters) == 2 and all((outputs / p).is_file() for p in posters)
        links = page.evaluate(
            "() => [...document.querySelectorAll('#runs a')].map(a => a.getAttribute('href'))"
        )
        assert all((outputs / link).exists() for link in links)
        assert "2026-12-01/seed0/report.html" in links and "old" in links  # no page: its folder
        page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        _not_blank(page.screenshot(full_page=True))
    finally:
        page.close()
    assert problems == []


def _mean(run: Path) -> float:
    return float(np.mean(RunDir(run).read_episodes()["return"].to_numpy()))


@pytest.mark.browser
def test_two_runs_compared_show_both_curves_films_and_welchs_interval(outputs, chromium):
    from scipy import stats

    page, problems = _open(chromium, (outputs / "index.html").as_uri())
    try:
        page.check("tr[data-run='2026-12-01/seed0'] input.pick")
        page.check("tr[data-run='2026-12-01/seed1'] input.pick")
        page.click("#compare")
        page.wait_for_function("() => document.body.dataset.ready === '1'")
        assert page.url.split("#")[0].endswith("/compare.html")
        labels = page.evaluate(
            "() => document.querySelector('.rlrec-chart').uplot.series.slice(1).map(s => s.label)"
        )
        assert labels == [f"2026-12-01/seed{s} (mean of last 9)" for s in (0, 1)]
        # the films of one episode index, side by side, playing together
        srcs = page.evaluate(
            "() => [...document.querySelectorAll('#films video')].map(v => v.getAttribute('src'))"
        )
        assert srcs == [f"2026-12-01/seed{s}/videos/eval-episode-0.mp4" for s in (0, 1)]
        page.locator("#films").scroll_into_view_if_needed()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#films video')].every(v => v.readyState >= 2)"
        )
        page.click("#play")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#films video')]"
            ".every(v => !v.paused && v.currentTime > 0.1)"
        )
        cells = page.evaluate(
            "() => [...document.querySelectorAll('#stats tbody tr')]"
            ".map(r => [...r.cells].map(c => c.textContent))"
        )
        _not_blank(page.screenshot(full_page=True))
        # Welch's interval as scipy makes it, for sizes and spreads the runs do not share
        checks = page.evaluate(
            "() => [rlrecWelch({n: 9, mean: 20, std: 3}, {n: 4, mean: 12, std: 8}),"
            " [2.5, 7.3, 30.5].map(df => rlrecTQuantile(0.975, df))]"
        )
    finally:
        page.close()
    assert problems == []
    a, b = (RunDir(outputs / f"2026-12-01/seed{s}").read_summary() for s in (0, 1))
    va, vb = a["std"] ** 2 / a["n"], b["std"] ** 2 / b["n"]
    df = (va + vb) ** 2 / (va**2 / (a["n"] - 1) + vb**2 / (b["n"] - 1))
    half = stats.t.ppf(0.975, df) * (va + vb) ** 0.5
    diff = b["mean"] - a["mean"]
    assert cells[1][5] == f"{diff:.2f}" and cells[1][6] == f"[{diff - half:.2f}, {diff + half:.2f}]"
    welch, quantiles = checks
    va, vb = 9 / 9, 64 / 4
    df = (va + vb) ** 2 / (va**2 / 8 + vb**2 / 3)
    assert welch["df"] == pytest.approx(df) and welch["diff"] == 8
    assert welch["high"] - 8 == pytest.approx(stats.t.ppf(0.975, df) * (va + vb) ** 0.5, rel=1e-9)
    assert quantiles == pytest.approx([stats.t.ppf(0.975, d) for d in (2.5, 7.3, 30.5)], rel=1e-9)


@pytest.mark.browser
def test_hovering_a_runs_curve_shows_the_episodes_return(outputs, chromium):
    run = outputs / "2026-12-01" / "seed1"
    returns = RunDir(run).read_episodes().sort_by("episode")["return"].to_pylist()
    page, problems = _open(chromium, (run / "report.html").as_uri())
    try:
        plot = page.locator(".rlrec-chart .u-over").first
        box = plot.bounding_box()
        for episode in (2, 7):
            # where the chart's own scale puts the episode
            left = page.evaluate(
                f"() => document.querySelector('.rlrec-chart').uplot.valToPos({episode}, 'x')"
            )
            page.mouse.move(box["x"] + left, box["y"] + box["height"] / 2)
            legend = page.evaluate(
                "() => [...document.querySelectorAll('.rlrec-chart .u-legend .u-value')]"
                ".map(v => v.textContent)"
            )
            assert legend[0] == str(episode) and float(legend[1]) == returns[episode], legend
    finally:
        page.close()
    assert problems == []


def test_a_second_build_reads_only_what_is_new(outputs, tmp_path):
    again = _script("rlrec-report", str(outputs))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "(0 read for this build)" in (outputs / "index.html").read_text()
    rlrec.run(["episodes=2", "trigger=never", "sinks=[parquet]"], run_dir=outputs / "new")
    _script("rlrec-report", str(outputs))
    page = (outputs / "index.html").read_text()
    assert "(1 read for this build)" in page and 'data-run="new"' in page
    import shutil

    shutil.rmtree(outputs / "new")
    _script("rlrec-report", str(outputs))
    assert 'data-run="new"' not in (outputs / "index.html").read_text()


def test_with_no_folder_it_indexes_outputs(tmp_path):
    rlrec.run(["episodes=2", "trigger=never"], run_dir=tmp_path / "outputs" / "a")
    out = _script("rlrec-report", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert 'data-run="a"' in (tmp_path / "outputs" / "index.html").read_text()
    missing = _script("rlrec-report", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "rlrec-report: error:" in missing.stderr


def _synthetic_runs(root: Path, count: int, episodes: int) -> None:
    """``count`` finished runs as rlrec leaves them (a summary and the episodes), made directly."""
    rng = np.random.default_rng(0)
    for i in range(count):
        run = root / f"day{i // 100}" / f"run{i:04d}"
        run.mkdir(parents=True)
        returns = rng.normal(100 + i % 7, 20, episodes)
        table = pa.table(
            {
                "episode": np.arange(episodes),
                "return": returns,
                "video": pa.array([None] * episodes, pa.string()),
            }
        )
        pq.write_table(table, run / "episodes.parquet")
        summary = {"status": "complete", "n": episodes, "mean": float(returns.mean())}
        summary |= {"std": float(returns.std(ddof=1)), "env_id": "CartPole-v1", "seed": i}
        (run / "summary.json").write_text(json.dumps(summary))


@pytest.mark.browser
def test_an_index_of_1000_runs_stays_light(tmp_path, chromium):
    _synthetic_runs(tmp_path, 1000, 200)
    out = _script("rlrec-report", str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    page, problems = _open(chromium, (tmp_path / "index.html").as_uri())
    loaded = []
    page.on("requestfinished", lambda r: loaded.append(r.url))
    try:
        page.reload()
        page.wait_for_load_state("load")
        assert len(_rows(page)) == 1000
    finally:
        page.close()
    assert problems == []
    weight = sum(Path(url.removeprefix("file://")).stat().st_size for url in loaded)
    assert weight < 3_000_000, weight  # the page, its scripts and styles, the chart library


def test_a_100000_episode_runs_page_stays_under_2_mb(tmp_path):
    from rlrec.report import write_run_report

    run = tmp_path / "long"
    run.mkdir()
    rng = np.random.default_rng(1)
    n = 100_000
    videos = [f"videos/eval-episode-{e}.mp4" if e % 1000 == 0 else None for e in range(n)]
    table = pa.table(
        {
            "episode": np.arange(n),
            "return": rng.normal(0, 1, n),
            "length": np.full(n, 50),
            "terminated": np.ones(n, bool),
            "truncated": np.zeros(n, bool),
            "video": pa.array(videos, pa.string()),
            "video_reason": pa.array(["periodic" if v else None for v in videos], pa.string()),
        }
    )
    pq.write_table(table, run / "episodes.parquet")
    returns = table["return"].to_numpy()
    summary = {"status": "complete", "n": n, "mean": float(returns.mean()), "env_id": "X-v0"}
    (run / "summary.json").write_text(json.dumps(summary))
    page = write_run_report(RunDir(run))
    assert page.stat().st_size < 2_000_000
    text = page.read_text()
    assert 'preload="none"' in text and 'preload="auto"' not in text
    spec = json.loads(re.search(r'data-chart="([^"]*)"', text)[1].replace("&quot;", '"'))
    assert spec["series"][1]["label"] == "mean of last 100" and len(spec["series"][0]["x"]) <= 2000
