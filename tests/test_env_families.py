"""The env families papers report on, filmed headless: MuJoCo, Atari, Box2D, MiniGrid.

Every run goes through the real CLI in a fresh process, as a user's would: ids that register on
import (ALE, MiniGrid) are found by rlrec, and MuJoCo chooses its OpenGL backend with
``MUJOCO_GL`` unset and no display.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import ale_py
import Box2D  # noqa: F401 - the Box2D presets need it (the [test] extra installs it)
import gymnasium as gym
import minigrid  # noqa: F401 - registers MiniGrid ids for the independent loops
import mujoco  # noqa: F401 - the MuJoCo presets need it
import numpy as np
import pyarrow.parquet as pq
import pytest

from rlrec import mujoco_envs
from rlrec.digest import ObsDigest
from rlrec.env_ids import ensure_registered
from rlrec.errors import ConfigError
from rlrec.replay import replay_to_video
from tests.conftest import ROOT, all_frames, plain_loop, probe, run_cli
from tests.policies import ObsDrivenPolicy
from tests.system import require_library

gym.register_envs(ale_py)

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Family:
    env_id: str
    steps: int  # env.max_episode_steps in the tests: short episodes
    fps: float  # the film's real-time rate
    mujoco: bool = False


PRESETS = {
    "halfcheetah": Family("HalfCheetah-v5", 12, 20.0, mujoco=True),  # dt 0.05 s
    "hopper": Family("Hopper-v5", 12, 125.0, mujoco=True),  # dt 0.008 s
    "pong": Family("ALE/Pong-v5", 40, 15.0),  # 60 Hz console, frameskip 4
    "breakout": Family("ALE/Breakout-v5", 40, 15.0),
    "lunarlander": Family("LunarLander-v3", 30, 50.0),
    "carracing": Family("CarRacing-v3", 20, 50.0),
    "minigrid": Family("MiniGrid-Empty-8x8-v0", 30, 10.0),
}
#: A headless machine as users have it: no display, no backend chosen.
HEADLESS = {"DISPLAY": None, "WAYLAND_DISPLAY": None, "MUJOCO_GL": None, "PYOPENGL_PLATFORM": None}
HEADLESS["RLREC_MUJOCO_GL_CHECKED"] = None
COLUMNS = ("episode", "seed", "return", "length", "terminated", "truncated")


def need_gl(family: Family) -> None:
    if family.mujoco:
        require_library("EGL", "EGL for MuJoCo", "apt-get install -y libegl1 libgl1-mesa-dri")


def rows_of(run_dir: Path) -> list[dict]:
    return pq.read_table(run_dir / "episodes.parquet").to_pylist()


def custom_act(env_id: str):
    env = gym.make(env_id)
    policy = ObsDrivenPolicy(env.observation_space, env.action_space)
    env.close()
    return policy.act


def assert_films_play_each_episode(run_dir: Path, rows: list[dict], fps: float) -> None:
    """Every film: the reset frame and one a step, at the real-time rate, frames that change
    (no black or frozen film, also after the first episode)."""
    for row in rows:
        film = probe(run_dir / row["video"])
        assert (film.frames, film.fps) == (row["length"] + 1, fps), row
        frames = np.stack(all_frames(run_dir / row["video"]))
        assert frames.max() > 0 and not (frames == frames[0]).all(), row["video"]


@pytest.mark.parametrize("policy", ["random", "custom"])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_a_preset_films_headless_and_matches_an_independent_loop(preset, policy, tmp_path):
    family = PRESETS[preset]
    need_gl(family)
    overrides = [f"env={preset}", f"env.max_episode_steps={family.steps}", "episodes=2"]
    overrides += ["trigger=every", "seed=5"]
    if policy == "custom":
        overrides += ["policy=custom", "policy._target_=tests.policies.ObsDrivenPolicy"]
    run_dir = tmp_path / "run"
    result = run_cli(overrides, run_dir, environ=HEADLESS)
    assert result.code == 0, result.proc.stderr[-3000:]
    rows = rows_of(run_dir)
    act = custom_act(family.env_id) if policy == "custom" else None
    expected = plain_loop(family.env_id, 5, 2, act=act, max_episode_steps=family.steps)
    assert [{k: r[k] for k in COLUMNS} for r in rows] == expected
    assert_films_play_each_episode(run_dir, rows, family.fps)
    if policy == "random":
        # the actions of an image or dict observation's episode are stored and replay it exactly
        replayed = replay_to_video(run_dir, 1)
        assert np.array_equal(all_frames(replayed), all_frames(run_dir / rows[1]["video"]))


@pytest.mark.parametrize("preset", ["halfcheetah", "pong"])
def test_vector_and_worker_runs_equal_the_sequential_run(preset, tmp_path):
    family = PRESETS[preset]
    need_gl(family)
    common = [f"env={preset}", "env.max_episode_steps=10", "episodes=4", "trigger=every"]
    runs = {
        "sequential": [],
        "vector": ["env.num_envs=2", "env.vectorization=async"],
        "workers": ["workers=2"],
    }
    tables = {}
    for name, extra in runs.items():
        result = run_cli([*common, *extra], tmp_path / name, environ=HEADLESS)
        assert result.code == 0, result.proc.stderr[-3000:]
        rows = sorted(rows_of(tmp_path / name), key=lambda r: r["episode"])
        assert_films_play_each_episode(tmp_path / name, rows, family.fps)
        tables[name] = [{k: r[k] for k in (*COLUMNS, "obs_digest", "video")} for r in rows]
    assert tables["vector"] == tables["sequential"] == tables["workers"]
    for row in tables["sequential"]:  # each film depends on its episode alone
        film = all_frames(tmp_path / "sequential" / row["video"])
        assert np.array_equal(film, all_frames(tmp_path / "vector" / row["video"]))
        assert np.array_equal(film, all_frames(tmp_path / "workers" / row["video"]))


@pytest.mark.parametrize("preset", ["pong", "halfcheetah"])
def test_adaptive_filming_replays_episodes_exactly(preset, tmp_path):
    need_gl(PRESETS[preset])
    common = [f"env={preset}", "env.max_episode_steps=12", "episodes=5", "seed=2"]
    every = run_cli([*common, "trigger=every"], tmp_path / "every", environ=HEADLESS)
    adaptive = run_cli([*common, "trigger=adaptive"], tmp_path / "adaptive", environ=HEADLESS)
    assert every.code == adaptive.code == 0, adaptive.proc.stderr[-3000:]
    filmed = [r for r in rows_of(tmp_path / "adaptive") if r["video"]]
    assert filmed
    for row in filmed:
        assert np.array_equal(
            all_frames(tmp_path / "adaptive" / row["video"]),
            all_frames(tmp_path / "every" / row["video"]),
        )


# -- headless OpenGL for MuJoCo -----------------------------------------------------------------


def test_a_backend_that_cannot_render_here_is_one_line_before_any_episode(tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["env=halfcheetah", "env.max_episode_steps=5", "episodes=1"]
    result = run_cli(overrides, run_dir, environ={**HEADLESS, "MUJOCO_GL": "glfw"})
    assert result.code == 2
    lines = result.proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.proc.stderr, result.proc.stderr
    assert lines[0].startswith("rlrec: error: MUJOCO_GL: is 'glfw', which cannot render here")
    assert "libglfw3" in lines[0] and "unset MUJOCO_GL" in lines[0]
    assert not (run_dir / "episodes.parquet").exists()
    other = run_cli(overrides, tmp_path / "glx", environ={**HEADLESS, "MUJOCO_GL": "glx"})
    assert other.code == 2 and "MUJOCO_GL" in other.proc.stderr
    assert "set MUJOCO_GL=egl" in other.proc.stderr and "Traceback" not in other.proc.stderr


def test_without_a_display_the_first_backend_that_renders_is_chosen(monkeypatch):
    require_library("OSMesa", "OSMesa for MuJoCo", "apt-get install -y libosmesa6")
    for name in HEADLESS:
        monkeypatch.delenv(name, raising=False)
    mujoco_envs.prepare_gl("Hopper-v5", backends=("glfw", "osmesa"))
    assert os.environ["MUJOCO_GL"] == "osmesa"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.delenv("RLREC_MUJOCO_GL_CHECKED")
    with pytest.raises(ConfigError) as err:
        mujoco_envs.prepare_gl("Hopper-v5", backends=("glfw",))
    assert err.value.key == "MUJOCO_GL" and "glfw:" in err.value.problem
    assert "MUJOCO_GL" not in os.environ
    mujoco_envs.prepare_gl("CartPole-v1", backends=())  # not MuJoCo: nothing to choose


def test_osmesa_films_odd_frame_sizes_and_the_log_stays_in_the_run(tmp_path):
    require_library("OSMesa", "OSMesa for MuJoCo", "apt-get install -y libosmesa6")
    run_dir, cwd = tmp_path / "run", tmp_path / "cwd"
    cwd.mkdir()
    overrides = ["env=halfcheetah", "env.max_episode_steps=8", "episodes=2", "trigger=every"]
    overrides += ["+env.kwargs.width=161", "+env.kwargs.height=121"]
    environ = {**HEADLESS, "MUJOCO_GL": "osmesa"}
    result = run_cli(overrides, run_dir, cwd=cwd, environ=environ)
    assert result.code == 0, result.proc.stderr[-3000:]
    rows = rows_of(run_dir)
    assert_films_play_each_episode(run_dir, rows, 20.0)
    assert probe(run_dir / rows[0]["video"]).size == (162, 122)  # padded to even, not cropped
    # NaN actions make MuJoCo warn; its log goes to the run, not the folder the run started in
    nan = ["env=halfcheetah", "env.max_episode_steps=3", "episodes=1", "trigger=never"]
    nan += ["policy=custom", "policy._target_=tests.policies.NanPolicy"]
    result = run_cli(nan, tmp_path / "nan", cwd=cwd, environ=environ)
    assert result.code == 0, result.proc.stderr[-3000:]
    assert "WARNING" in (tmp_path / "nan" / "MUJOCO_LOG.TXT").read_text()
    assert list(cwd.iterdir()) == []


# -- ids, frame rates, digests --------------------------------------------------------------------


def test_ids_that_register_on_import_are_found_in_a_fresh_process():
    code = (
        "import gymnasium as gym\n"
        "from rlrec.env_ids import ensure_registered\n"
        "assert 'ALE/Pong-v5' not in gym.registry and 'MiniGrid-Empty-8x8-v0' not in gym.registry\n"
        "ensure_registered('ALE/Pong-v5'); ensure_registered('MiniGrid-Empty-8x8-v0')\n"
        "assert 'ALE/Breakout-v5' in gym.registry\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("env_id", "fix"),
    [
        ("ALE/Pongg-v5", "did you mean env.id=ALE/Pong-v5"),
        ("pong-v4", "did you mean env.id=Pong-v4"),
        ("highway-v0", 'pip install "highway-env"'),
        ("Zebra-v0", "env.id=<module>:<id>"),
    ],
)
def test_an_unknown_id_names_a_look_alike_or_the_package(env_id, fix):
    with pytest.raises(ConfigError) as err:
        ensure_registered(env_id)
    assert err.value.key == "env.id" and fix in err.value.fix
    if env_id == "Zebra-v0":  # nothing alike: no unrelated suggestion
        assert "did you mean" not in err.value.fix


def test_an_env_without_render_fps_says_which_rate_it_films_at(tmp_path):
    overrides = ["env.id=tests.envs:NoFpsCartPole-v0", "episodes=1", "trigger=every"]
    result = run_cli([*overrides, "env.max_episode_steps=20"], tmp_path / "run")
    assert result.code == 0, result.proc.stderr[-3000:]
    output = result.proc.stdout + result.proc.stderr
    assert "declares no render_fps: its films play at 30 fps; set video.fps" in output
    (row,) = rows_of(tmp_path / "run")
    assert probe(tmp_path / "run" / row["video"]).fps == 30.0
    faster = run_cli(["env=pong", "env.max_episode_steps=10", "episodes=1", "trigger=every",
                      "video.fps=60"], tmp_path / "pong")  # fmt: skip
    assert faster.code == 0, faster.proc.stderr[-3000:]
    (row,) = rows_of(tmp_path / "pong")
    assert probe(tmp_path / "pong" / row["video"]).fps == 60.0  # video.fps still overrides


def test_large_observations_digest_by_content():
    frame = np.random.default_rng(0).integers(0, 256, (210, 160, 3), dtype=np.uint8)
    changed = frame.copy()
    changed[100, 80, 1] ^= 1

    def digest(*observations):
        d = ObsDigest()
        for obs in observations:
            d.update(obs)
        return d.hexdigest()

    assert digest(frame, frame) == digest(frame.copy(), frame.copy())
    assert digest(frame, frame) != digest(frame, changed)
    view = frame[:, ::2]  # not contiguous: hashed from a copy, the same content
    assert digest(view) == digest(np.ascontiguousarray(view))
    small = np.arange(4, dtype=np.float32)  # a joint vector: BLAKE2b of its bytes, as before
    import hashlib

    assert digest(small) == hashlib.blake2b(small.tobytes(), digest_size=16).hexdigest()


def test_a_recorder_films_a_mujoco_episode_as_its_replay_does(tmp_path, monkeypatch):
    need_gl(PRESETS["halfcheetah"])
    from rlrec.wrappers import Recorder

    monkeypatch.setenv("MUJOCO_GL", "egl")
    env = gym.make("HalfCheetah-v5", render_mode="rgb_array", max_episode_steps=8)
    with Recorder(env, tmp_path / "run", trigger="every", sinks=["parquet"], seed=3) as recorded:
        for _ in range(2):
            recorded.reset()
            done = False
            while not done:
                _, _, terminated, truncated, _ = recorded.step(recorded.action_space.sample())
                done = terminated or truncated
    rows = rows_of(tmp_path / "run")
    assert_films_play_each_episode(tmp_path / "run", rows, 20.0)
    replayed = replay_to_video(tmp_path / "run", 1)
    assert np.array_equal(all_frames(replayed), all_frames(tmp_path / "run" / rows[1]["video"]))


def test_a_mujoco_preset_without_mujoco_names_the_extra(tmp_path):
    # MuJoCo is installed here ([test]): a child process that cannot import it stands for a
    # machine without it
    code = (
        "import sys; sys.modules['mujoco'] = None\n"
        "from rlrec.build import build\n"
        "from rlrec.errors import ConfigError\n"
        "from tests.conftest import compose_config\n"
        "try:\n"
        f"    build(compose_config(['env=halfcheetah', 'trigger=every']), {str(tmp_path)!r})\n"
        "except ConfigError as err:\n"
        "    print(err.key, '|', err.fix)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    expected = 'env.id | install it with pip install "rlrec[mujoco]"'
    assert done.stdout.strip() == expected, done.stderr
