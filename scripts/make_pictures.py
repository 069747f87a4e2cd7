"""Remake the README's and the site's pictures with rlrec itself: a filmed CartPole episode as an
animated GIF (rlrec's gif codec) and a screenshot of that run's report page (Debian's chromium).

    python scripts/make_pictures.py   # docs/assets/episode.gif, outputs/pictures/report-page.png

The screenshot is of a run's output, so it stays under outputs/ (not in git).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "assets"
SHOTS = ROOT / "outputs" / "pictures"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from rlrec.rundir import RunDir
    from tests.browser import CHROMIUM_ARGS, chromium_path

    OUT.mkdir(parents=True, exist_ok=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        gif_run, page_run = Path(tmp) / "gif", Path(tmp) / "page"
        balance = ["policy=custom", "policy._target_=tests.policies.BalancePolicy"]
        subprocess.run(
            [sys.executable, str(ROOT / "run.py"), *balance, "episodes=1", "seed=2",
             "env.max_episode_steps=120", "video.codec=gif", "video.fps=30",
             "sinks=[parquet]", f"hydra.run.dir={gif_run}"],
            check=True, cwd=ROOT, capture_output=True,
        )  # fmt: skip
        shutil.copy(next((gif_run / "videos").glob("*.gif")), OUT / "episode.gif")
        subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "episodes=30", "trigger=periodic",
             "trigger.period=10", f"hydra.run.dir={page_run}"],
            check=True, cwd=ROOT, capture_output=True,
        )  # fmt: skip
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto((page_run / RunDir.REPORT).as_uri())
            page.wait_for_function("() => document.querySelector('.u-over')")
            page.screenshot(path=str(SHOTS / "report-page.png"))
            browser.close()
    print(OUT / "episode.gif", SHOTS / "report-page.png")


if __name__ == "__main__":
    main()
