"""report.html for runs and sweeps: opened from file:// in a real chromium, every video playing."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rlrec
from tests.conftest import ROOT, run_cli

REPORT = "report.html"
BALANCE = ["policy=custom", "policy._target_=tests.policies.BalancePolicy"]


def _open_page(chromium, page_path: Path, shot: Path) -> dict:
    """Load ``page_path`` from file://; wait for every video; return what the page did."""
    page = chromium.new_page(viewport={"width": 1300, "height": 1000})
    errors, failed = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append((r.url, r.failure)))
    try:
        page.goto(page_path.as_uri())
        # films load as they are scrolled into view (preload="none"): scroll to each
        page.evaluate(
            "async () => { for (const v of document.querySelectorAll('video')) {"
            " v.scrollIntoView(); await new Promise(r => setTimeout(r, 30)); } }"
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('video')]"
            ".every(v => v.readyState >= 2 || v.error !== null)",
            timeout=30_000,
        )
        videos = page.evaluate(
            "() => [...document.querySelectorAll('video')].map(v => ({src: v.getAttribute('src'),"
            " ready: v.readyState, error: v.error && v.error.code}))"
        )
        links = page.evaluate(
            "() => [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))"
        )
        images = page.evaluate(
            "() => [...document.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'),"
            " ok: i.complete && i.naturalWidth > 0}))"
        )
        png = page.screenshot(full_page=True)
        shot.write_bytes(png)
        text = page.inner_text("body")
    finally:
        page.close()
    return {"errors": errors, "failed": failed, "videos": videos, "links": links,
            "images": images, "png": png, "text": text}  # fmt: skip


def _check_page(result: dict, folder: Path) -> None:
    assert result["errors"] == []
    for video in result["videos"]:
        assert video["error"] is None and video["ready"] >= 2, video
        assert (folder / video["src"]).is_file()
    # Chromium may abort a film's first request and ask again (scrolled past while it loads);
    # a film that loaded in the end (above) was not lost. Any other failed request is.
    played = {(folder / v["src"]).resolve().as_uri() for v in result["videos"]}
    assert [
        (url, why)
        for url, why in result["failed"]
        if not (why == "net::ERR_ABORTED" and url in played)
    ] == []
    assert all(image["ok"] for image in result["images"]), result["images"]
    for link in result["links"]:
        assert not link.startswith(("http:", "https:", "//")), link  # nothing from the network
        assert (folder / link).exists(), f"{link} does not resolve"
    shown = np.asarray(Image.open(io.BytesIO(result["png"])).convert("L"), float)
    assert shown.std() > 10  # not blank


@pytest.mark.browser
def test_run_report_opens_from_file_and_plays_every_film(tmp_path, chromium):
    run = tmp_path / "run"
    result = rlrec.run(["episodes=12", "trigger=adaptive", "seed=3"], run_dir=run)
    rows = result.episodes.to_pylist()
    filmed = [r for r in rows if r["video"]]
    assert (run / REPORT).is_file() and len(filmed) >= 3
    page = _open_page(chromium, run / REPORT, tmp_path / "run.png")
    _check_page(page, run)
    assert sorted(v["src"] for v in page["videos"]) == sorted(r["video"] for r in filmed)
    best = max(filmed, key=lambda r: r["return"])
    assert page["videos"][0]["src"] == best["video"]  # adaptive: the best first
    text = page["text"]
    assert "episodes.parquet" in page["links"] and "trigger=adaptive" in text
    assert f"{result.summary['mean']:.2f}" in text and "95% CI" in text


@pytest.mark.slow
@pytest.mark.browser
def test_sweep_report_links_every_job_and_lists_failures(tmp_path, chromium):
    sweep = tmp_path / "sweep"
    args = ["trigger=periodic", "trigger.period=0,2", "seed=0,1", "episodes=4"]
    result = run_cli([*args, "env.max_episode_steps=40"], sweep, multirun=True)
    assert result.code == 1  # period 0 fails: listed, the others go on
    page = _open_page(chromium, sweep / REPORT, tmp_path / "sweep.png")
    _check_page(page, sweep)
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert sorted(link.split("/")[0] for link in page["links"]) == jobs
    assert all(link.endswith(REPORT) for link in page["links"])
    assert "2 job(s) did not complete" in page["text"] and "trigger.period" in page["text"]
    assert len(page["videos"]) == 2  # the best film of each seed of the group that ran
    for job in jobs:
        _check_page(
            _open_page(chromium, sweep / job / REPORT, tmp_path / f"{job}.png"), sweep / job
        )


@pytest.mark.slow
def test_rlrec_report_on_a_killed_run_reads_its_parts(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "run.py"), "trigger=never", "episodes=10000000"]
    cmd += ["sinks=[parquet]", "sinks.parquet.flush_seconds=0.2", f"hydra.run.dir={run}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60

    def rows_on_disk() -> int:  # the page counts its episodes when it shows only some (> 220)
        parts = list((run / "episodes").glob("part-*.parquet"))
        return len(parts) >= 2 and sum(pq.ParquetFile(p).metadata.num_rows for p in parts)

    while rows_on_disk() < 500:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "episodes.parquet").exists() and not (run / REPORT).exists()
    done = subprocess.run(
        [sys.executable, "-m", "rlrec.report", str(run)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run / REPORT)
    page = (run / REPORT).read_text()
    parts = pq.ParquetDataset(run / "episodes").read()
    assert f"{parts.num_rows} episodes" in page and 'href="episodes/"' in page


def test_rlrec_report_writes_a_page_for_an_old_run_and_refuses_other_folders(tmp_path):
    from rlrec.report import main

    rlrec.run(["episodes=3", "sinks=[parquet]", "env.max_episode_steps=20"], run_dir=tmp_path / "r")
    assert not (tmp_path / "r" / REPORT).exists()
    assert main([str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / REPORT).read_text()
    assert page.count("<video") == 3 and "eval-episode-2.mp4" in page
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2


def test_a_long_run_page_stays_small(tmp_path):
    run = tmp_path / "run"
    rlrec.run(
        ["episodes=10000", "trigger=periodic", "trigger.period=250", "sinks=[parquet,report]"],
        run_dir=run,
    )
    page = (run / REPORT).read_text()
    assert (run / REPORT).stat().st_size < 2_000_000
    assert page.count("<video") == 40
    assert page.count("<tr><td>") <= 2 * 100 + 2 * 10  # the ends and the extremes
    assert "10000 episodes: the first and last 100" in page
