"""Each tracker's own page, as its users open it: TensorBoard and MLflow served on 127.0.0.1 and
looked at in Chromium, where a user looks first."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import run_cli
from tests.system import LoopbackOnly
from tests.test_mlflow import Server, _free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_tensorboard_shows_every_film_and_the_runs_hparams(chromium, tmp_path):
    # 12 films: more than the 10 images a tag TensorBoard keeps by default
    args = ["sinks=[parquet,tensorboard]", "episodes=12", "trigger=periodic", "trigger.period=1"]
    assert run_cli(args, tmp_path / "run").code == 0
    port = _free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path)]
    watch = LoopbackOnly()
    board = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base, timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and board.poll() is None
                time.sleep(0.2)
        page.goto(f"{base}/#images")
        titles = page.locator(".heading-label.name", has_text="film/episode_")  # a card a film
        titles.nth(11).wait_for(timeout=60_000)
        names = sorted(t.strip() for t in titles.all_inner_texts())
        assert names == [f"film/episode_{e:06d}" for e in range(12)], names
        films = page.wait_for_function(  # every card's GIF loaded, at film_width (300)
            """() => { const sizes = []; const walk = root => root.querySelectorAll('*')
                .forEach(el => { if (el.tagName === 'IMG' && el.naturalWidth === 300)
                sizes.push(el.naturalHeight); if (el.shadowRoot) walk(el.shadowRoot); });
                walk(document); return sizes.length >= 12 && sizes; }""",
            timeout=60_000,
        ).json_value()
        assert films == [200] * 12
        page.goto(f"{base}/#hparams")
        page.get_by_text("summary/mean").first.wait_for(timeout=60_000)
        # the session's row: the env, the overrides as given, the seed as an integer
        for cell in ("CartPole-v1", "periodic"):
            page.get_by_text(cell, exact=True).first.wait_for(timeout=30_000)
        assert page.get_by_text("0.0000", exact=True).count() == 0
    finally:
        page.close()
        board.terminate()
        board.wait(30)
        watch.stop()
    watch.check()


def test_mlflow_opens_on_the_runs_and_the_run_on_its_films(chromium, tmp_path):
    watch = LoopbackOnly()
    server = Server(tmp_path / "mlflow")
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    try:
        run = tmp_path / "run"
        args = ["sinks=[parquet,mlflow]", f"sinks.mlflow.tracking_uri={server.uri}"]
        result = run_cli([*args, "episodes=6", "trigger=periodic", "trigger.period=2"], run)
        assert result.code == 0, result.proc.stderr[-2000:]
        entry = json.loads((run / "trackers.json").read_text())["mlflow"]
        assert entry["url"] in result.proc.stdout  # the run says where to look
        mlflow_run = server.client.get_run(entry["id"])
        # the experiment's page lists the run without a click (not MLflow's GenAI view)
        experiment = entry["url"].replace(f"/runs/{entry['id']}", "")
        page.goto(experiment)
        page.get_by_text(mlflow_run.info.run_name).first.wait_for(timeout=60_000)
        assert page.get_by_text("Model training").count() > 0
        # the run's page, and its films among its artifacts
        page.goto(entry["url"])
        page.get_by_text("episode/return").first.wait_for(timeout=60_000)
        page.goto(entry["url"].replace("?", "/artifacts?"))
        page.get_by_text("videos").first.wait_for(timeout=60_000)
    finally:
        page.close()
        server.stop()
        watch.stop()
    watch.check()
