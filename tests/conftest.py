"""Shared helpers: the real CLI in a subprocess, an independent Gymnasium loop, a video decoder."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import gymnasium as gym
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
if "PYTEST_XDIST_WORKER" in os.environ:
    # A worker per core: torch and OpenBLAS, which start a thread per core in every process,
    # would put several threads on each core (SB3's training suffers most).
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# CI runs the same examples every time (a red build should be reproducible); HYPOTHESIS_PROFILE=deep
# searches far more widely, to be run by hand when the config checks change.
settings.register_profile("ci", max_examples=60, derandomize=True, deadline=None)
settings.register_profile("deep", max_examples=1500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(trylast=True)  # after pytest-xdist has named each test's group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The groups first: under pytest-xdist a group (a module sharing a server, a cluster, a
    trained model) runs whole on one worker, and one dealt out last would keep that worker busy
    long after the other had finished. A group that xdist did not name would be dealt out test by
    test, each worker making the module's server or cluster again: that stops the run.

    The tests marked ``alone`` last: each waits for the other worker's test in progress (9 s on
    average, the core idle meanwhile); at the end they wait once, for the last other test. xdist
    deals a group out whole, wherever its other tests fall: an ``alone`` test in a grouped module
    that uses none of the module's fixtures also carries ``xdist_group("alone")``, to leave it."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("alone") is not None,
            item.get_closest_marker("xdist_group") is None,
        )
    )
    grouped = [item for item in items if item.get_closest_marker("xdist_group")]
    if getattr(config.option, "loadgroup", False) and grouped and "@" not in grouped[0].nodeid:
        raise pytest.UsageError(
            "pytest-xdist did not group the tests marked xdist_group (a pytest it does not "
            'support?): pip install -e ".[test]" installs a pair that works'
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Under pytest-xdist, a test marked ``alone`` (it asserts on time or memory, or watches what
    the whole machine does) runs while no other test runs on any worker; the others share the
    machine as usual."""
    with _turn(item, alone=item.get_closest_marker("alone") is not None):
        yield


@contextlib.contextmanager
def _turn(item: pytest.Item, *, alone: bool) -> Iterator[None]:
    """A readers-writer lock over files shared by the session's workers: every test holds the
    lock shared, a test marked ``alone`` holds it alone. The gate keeps a waiting one from being
    overtaken for ever: it is held while that test waits, so new tests queue behind it."""
    if "PYTEST_XDIST_WORKER" not in os.environ or sys.platform == "win32":
        yield  # one process runs every test: nothing to wait for
        return
    import fcntl

    folder = item.config._tmp_path_factory.getbasetemp().parent  # shared by the workers
    with open(folder / "gate.lock", "a") as gate, open(folder / "tests.lock", "a") as tests:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(tests, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(tests, fcntl.LOCK_UN)


def console_script(name: str) -> str:
    """An installed command of rlrec (``rlrec-replay``, ...): the one on PATH, else the one
    beside this Python (a virtual environment that is not activated)."""
    import shutil

    return shutil.which(name) or str(Path(sys.executable).parent / name)


def contract_seed(*keys: int) -> int:
    """The contract's ``ss`` written out here, independently of rlrec.seeding."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def plain_loop(
    env_id: str,
    run_seed: int,
    episodes: int,
    act: Callable[[Any], Any] | None = None,
    max_episode_steps: int | None = None,
    renders: list[list[np.ndarray]] | None = None,
    digests: bool = False,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """What the contract says a run must produce, computed with Gymnasium alone; with
    ``renders``, what ``env.render()`` returned in each episode is appended to it (the reset
    frame, then one a step: what a film of the episode must show); with ``digests``, each row's
    ``obs_digest`` as the contract defines it."""
    render_mode = "rgb_array" if renders is not None else None
    env = gym.make(env_id, max_episode_steps=max_episode_steps, render_mode=render_mode, **kwargs)
    rows = []
    for i in range(episodes):
        seed = contract_seed(run_seed, i)
        env.action_space.seed(contract_seed(run_seed, i, 1))
        obs, _ = env.reset(seed=seed)
        observations = [obs]
        frames = [env.render()] if renders is not None else None
        total, length = 0.0, 0
        while True:
            action = env.action_space.sample() if act is None else act(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            total += float(reward)
            length += 1
            if frames is not None:
                frames.append(env.render())
            if terminated or truncated:
                break
        if renders is not None:
            renders.append(frames)
        rows.append(
            {
                "episode": i,
                "seed": seed,
                "return": total,
                "length": length,
                "terminated": bool(terminated),
                "truncated": bool(truncated),
            }
        )
        if digests:
            rows[-1]["obs_digest"] = contract_digest(observations)
    env.close()
    return rows


def contract_digest(observations: list[np.ndarray]) -> str:
    """The contract's ``obs_digest``, written out here: BLAKE2b (16 bytes) over every
    observation's bytes in order, an array of 4,096 bytes or more entering as its XXH64 hash."""
    import hashlib

    import xxhash

    digest = hashlib.blake2b(digest_size=16)
    for obs in observations:
        data = np.ascontiguousarray(obs).tobytes()
        digest.update(xxhash.xxh64_digest(data) if len(data) >= 4096 else data)
    return digest.hexdigest()


@dataclass
class CliResult:
    """A finished ``python run.py`` and where it wrote."""

    proc: subprocess.CompletedProcess[str]
    out_dir: Path

    @property
    def code(self) -> int:
        return self.proc.returncode


def run_cli(
    args: list[str],
    out_dir: Path,
    *,
    multirun: bool = False,
    cwd: Path = ROOT,
    command: list[str] | None = None,
    timeout: float = 300,
    environ: dict[str, str | None] | None = None,
) -> CliResult:
    """Run the real CLI in a subprocess with its output folder under ``out_dir``; ``environ``
    sets variables for it (None: unset)."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    cmd = (command or [sys.executable, str(ROOT / "run.py")]) + (["-m"] if multirun else [])
    cmd += [*args, f"{key}={out_dir}"]
    env = os.environ | {"PYTHONPATH": "", "HYDRA_FULL_ERROR": ""}
    for name, value in (environ or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    return CliResult(proc, out_dir)


def kill_after_first_commit(run_dir: Path, tracker: str, *overrides: str) -> None:
    """``python run.py`` in the background, SIGKILLed once ``tracker`` has committed episodes
    (``trackers.json`` counts some): a run a tracker was in the middle of."""
    import json
    import signal
    import time

    from tests.test_signals import LiveRun

    live = LiveRun(run_dir, *overrides)
    live.wait_for_episodes(100)
    deadline = time.monotonic() + 120
    while not json.loads((run_dir / "trackers.json").read_text())[tracker].get("logged"):
        assert time.monotonic() < deadline and live.proc.poll() is None, live.proc.stderr.read()
        time.sleep(0.02)
    live.stop(signal.SIGKILL)
    live.wait()


def resume_cli(run_dir: Path) -> subprocess.CompletedProcess[str]:
    """``python run.py resume=<run_dir>``, to completion."""
    cmd = [sys.executable, str(ROOT / "run.py"), f"resume={run_dir}"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def decode(path: Path) -> tuple[int, float, tuple[int, int]]:
    """Decode a whole video with PyAV: (frames actually decoded, fps, (width, height))."""
    info = probe(path)
    return info.frames, info.fps, info.size


@dataclass
class VideoInfo:
    """What decoding a whole video with PyAV tells."""

    frames: int
    fps: float
    size: tuple[int, int]
    codec: str  # FFmpeg's name of the stream's codec: h264, av1, gif, mpeg4, vp9, ...
    pix_fmt: str  # of the decoded frames
    container: str


def probe(path: Path) -> VideoInfo:
    """Decode every frame of ``path`` (counting them, not trusting the header)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = size = pix_fmt = None
        frames = 0
        for frame in container.decode(stream):
            frames += 1
            size, pix_fmt = (frame.width, frame.height), frame.format.name
        return VideoInfo(
            frames,
            float(stream.average_rate or stream.guessed_rate),
            size or (0, 0),
            stream.codec_context.codec.canonical_name,  # av1, not the decoder (libdav1d)
            pix_fmt or "",
            container.format.name,
        )


def all_frames(path: Path) -> list[np.ndarray]:
    """Every frame of ``path`` as RGB, in order."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def frame_at(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` of ``path`` as RGB."""
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise IndexError(f"{path} has no frame {index}")


def compose_config(overrides: list[str] | None = None):
    """The config the CLI would build from ``overrides`` (without Hydra's own node)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides or [])


@pytest.fixture
def cfg_factory():
    return compose_config


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, launched headless by playwright (skips where it is not installed)."""
    from tests.browser import CHROMIUM_ARGS, chromium_path
    from tests.system import require

    path = chromium_path()
    if path is None:
        require("chromium", "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def video_probe(chromium, tmp_path):
    """A ``VideoProbe`` over ``tmp_path``, served on 127.0.0.1 for the test."""
    from tests.browser import VideoProbe, serve

    with serve(tmp_path) as base_url:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        try:
            yield VideoProbe(page, base_url)
        finally:
            page.close()
