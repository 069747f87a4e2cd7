"""The documentation site: it builds with ``mkdocs build --strict`` (a broken link or a missing
page fails), its generated reference holds every key and command, and, served on 127.0.0.1, it
opens in a real chromium with no error and its search finds what users look for."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docs")]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def test_the_reference_is_generated_from_the_source(site):
    config = (site / "reference" / "config" / "index.html").read_text()
    for key in ("aggregate.reps", "video.codec", "trigger.period", "sinks.mlflow.retry_s"):
        assert f"<code>{key}</code>" in config, key
    cli = (site / "reference" / "cli" / "index.html").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name in scripts:
        assert f"<code>{name}</code>" in cli, name
    assert "--sink NAME" in cli and "--last-episodes" in cli  # what the parsers say
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "RecordVideo" in api and "Recorder" in api and "episode_trigger" in api


@pytest.mark.browser
def test_the_site_opens_and_its_search_finds(site, chromium):
    from tests.browser import serve

    with serve(site) as base:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        try:
            pages = sorted(p.relative_to(site) for p in site.rglob("index.html"))
            assert len(pages) >= 15
            for relative in pages:
                if relative.parts[0] in ("assets", "search"):
                    continue
                page.goto(f"{base}/{relative.parent.as_posix()}/")
                page.wait_for_load_state("load")
                shown = Image.open(io.BytesIO(page.screenshot())).convert("L")
                assert np.asarray(shown, float).std() > 10, relative  # not blank
            for words, expected in (
                ("MUJOCO_GL", "how-to/envs/"),
                ("resume", "how-to/resume/"),
                ("shards", "tutorials/past-one-machine/"),
            ):
                page.goto(f"{base}/")
                box = page.locator(".md-search__input")
                (box if box.is_visible() else page.locator("label[for=__search]")).click()
                page.keyboard.type(words)
                page.wait_for_function(
                    "() => document.querySelectorAll('.md-search-result__item').length > 0",
                    timeout=20_000,
                )
                hits = page.evaluate(
                    "() => [...document.querySelectorAll('.md-search-result__link')]"
                    ".map(a => a.getAttribute('href'))"
                )
                assert any(expected in hit for hit in hits), (words, hits)
        finally:
            page.close()
    assert problems == []
