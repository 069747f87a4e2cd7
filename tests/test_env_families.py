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
import av
import Box2D  # noqa: F401 - the Box2D presets need it (the [test] extra installs it)
import gymnasium as gym
import minigrid  # noqa: F401 - registers MiniGrid ids for the independent loops
import mujoco
import numpy as np
import pyarrow.parquet as pq
import pytest

from rlrec import mujoco_envs
from rlrec.digest import ObsDigest
from rlrec.env_ids import ensure_registered
from rlrec.errors import ConfigError
from rlrec.replay import replay_to_video
from tests.conftest import ROOT, all_frames, contract_seed, plain_loop, probe, run_cli
from tests.pixels import assert_faithful
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


def assert_films_play_each_episode(
    run_dir: Path, rows: list[dict], fps: float, renders: list[list[np.ndarray]] | None = None
) -> None:
    """Every film: the reset frame and one a step, at the real-time rate; the frames the
    independent loop rendered (``renders``), or else frames that change (no black or frozen
    film, also after the first episode)."""
    for i, row in enumerate(rows):
        film = probe(run_dir / row["video"])
        assert (film.frames, film.fps) == (row["length"] + 1, fps), row
        if renders is not None:
            assert_faithful(run_dir / row["video"], renders[i])
            continue
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
    # the truth for the films: what Gymnasium renders, where rendering is cheap (MuJoCo's
    # software renderer is not: its films must show motion instead)
    renders: list[list[np.ndarray]] | None = None if family.mujoco else []
    expected = plain_loop(
        family.env_id, 5, 2, act=act, max_episode_steps=family.steps, renders=renders
    )
    assert [{k: r[k] for k in COLUMNS} for r in rows] == expected
    assert_films_play_each_episode(run_dir, rows, family.fps, renders)
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


def test_an_observation_unlike_the_reset_one_is_digested_by_content():
    """The episode takes observations like its reset one through the hash's own update; one
    that is not a contiguous buffer (a view, a list) still enters by its content."""
    from rlrec.episode import Episode
    from rlrec.wrappers.loop import no_hooks
    from tests.conftest import contract_digest

    reset = np.arange(4, dtype=np.float32)
    later = [np.arange(8, dtype=np.float32)[::2], np.ones(4, np.float32)]
    episode = Episode(0, no_hooks(), seed=None, policy_seed=None)
    episode.begin(reset)
    for obs in later:
        episode.step(None, 0, 1.0, obs, False, False)
    assert episode.digest.hexdigest() == contract_digest([reset, *later])


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


# -- the agent in the picture, at its real speed, in any loop -------------------------------------


def _projected_inside(env: gym.Env, camera: int, aspect: float) -> bool:
    """Whether the agent's root body projects inside the frame of MuJoCo camera ``camera``
    (pinhole projection from the camera's pose and field of view, computed by MuJoCo alone)."""
    model, data = env.unwrapped.model, env.unwrapped.data
    mujoco.mj_forward(model, data)  # the poses of the state reached, not the one before it
    rotation = data.cam_xmat[camera].reshape(3, 3)
    local = rotation.T @ (data.xpos[1] - data.cam_xpos[camera])  # the camera looks along -z
    if local[2] >= 0:
        return False
    half_height = np.tan(np.radians(model.cam_fovy[camera]) / 2) * -local[2]
    return abs(local[1]) < half_height and abs(local[0]) < half_height * aspect


@pytest.mark.parametrize(("env_id", "steps"), [("HalfCheetah-v5", 90), ("Ant-v5", 60)])
def test_mujoco_films_follow_the_agent(env_id, steps, tmp_path, monkeypatch):
    # the agent leaves Gymnasium's default (free, still) camera by step ~80-90 (HalfCheetah) or
    # ~50 (Ant) of this episode; the model's track camera keeps it in every frame
    need_gl(PRESETS["halfcheetah"])
    width, height = 160, 120
    overrides = ["env=halfcheetah", f"env.id={env_id}", f"env.max_episode_steps={steps}"]
    overrides += [f"+env.kwargs.width={width}", f"+env.kwargs.height={height}"]
    result = run_cli([*overrides, "episodes=1", "trigger=every"], tmp_path, environ=HEADLESS)
    assert result.code == 0, result.proc.stderr[-3000:]
    (row,) = rows_of(tmp_path)
    for name in ("MUJOCO_GL", "RLREC_MUJOCO_GL_CHECKED"):
        monkeypatch.delenv(name, raising=False)  # restored afterwards, with what is set now
    mujoco_envs.prepare_gl(env_id)
    # the truth: Gymnasium alone, the same episode rendered through the model's track camera
    renders: list[list[np.ndarray]] = []
    kwargs = {"camera_name": "track", "width": width, "height": height}
    plain_loop(env_id, 0, 1, max_episode_steps=steps, renders=renders, **kwargs)
    assert len(renders[0]) == row["length"] + 1
    assert_faithful(tmp_path / row["video"], renders[0])
    # ... and that camera has the agent in view at every step
    env = gym.make(env_id, max_episode_steps=steps)
    camera = mujoco.mj_name2id(env.unwrapped.model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    env.action_space.seed(contract_seed(0, 0, 1))
    env.reset(seed=contract_seed(0, 0))
    seen = [_projected_inside(env, camera, width / height)]
    for _ in range(row["length"]):
        env.step(env.action_space.sample())
        seen.append(_projected_inside(env, camera, width / height))
    env.close()
    assert all(seen), seen.index(False)


def test_a_named_camera_stands(tmp_path, monkeypatch):
    need_gl(PRESETS["halfcheetah"])
    overrides = ["env=halfcheetah", "env.max_episode_steps=3", "episodes=1", "trigger=every"]
    overrides += ["+env.kwargs.width=64", "+env.kwargs.height=48", "+env.kwargs.camera_id=-1"]
    result = run_cli(overrides, tmp_path, environ=HEADLESS)
    assert result.code == 0, result.proc.stderr[-3000:]
    for name in ("MUJOCO_GL", "RLREC_MUJOCO_GL_CHECKED"):
        monkeypatch.delenv(name, raising=False)
    mujoco_envs.prepare_gl("HalfCheetah-v5")
    renders: list[list[np.ndarray]] = []
    kwargs = {"camera_id": -1, "width": 64, "height": 48}  # the free camera, as asked
    plain_loop("HalfCheetah-v5", 0, 1, max_episode_steps=3, renders=renders, **kwargs)
    assert_faithful(tmp_path / rows_of(tmp_path)[0]["video"], renders[0])


ATARI_SKIP = "{_target_: gymnasium.wrappers.AtariPreprocessing, frame_skip: 4, noop_max: 0}"


def test_a_frame_skipping_wrapper_films_at_the_real_speed(tmp_path):
    # the SB3 and CleanRL set-up: no frame skip in the env, 4 in the wrapper
    overrides = ["env=pong", "env.id=PongNoFrameskip-v4", f"env.wrappers=[{ATARI_SKIP}]"]
    overrides.append("trigger=every")
    result = run_cli([*overrides, "env.max_episode_steps=30", "episodes=1"], tmp_path)
    assert result.code == 0, result.proc.stderr[-3000:]
    (row,) = rows_of(tmp_path)
    assert row["length"] == 30  # env.max_episode_steps counts the wrapper's steps
    film = probe(tmp_path / row["video"])
    assert film.fps == 15.0 and film.frames == 31
    # a film lasts as long as its episode: 30 steps x 4 console frames at 60 Hz, and the reset
    with av.open(str(tmp_path / row["video"])) as container:
        stream = container.streams.video[0]
        assert float(stream.duration * stream.time_base) == pytest.approx((30 * 4 + 4) / 60)
    # sub-environments in other processes: the skip is read off an env built to be read
    vector = ["env.num_envs=2", "env.vectorization=async", "env.max_episode_steps=5"]
    result = run_cli([*overrides, *vector, "episodes=2"], tmp_path / "async")
    assert result.code == 0, result.proc.stderr[-3000:]
    assert {probe(tmp_path / "async" / r["video"]).fps for r in rows_of(tmp_path / "async")} == {
        15.0
    }


def test_the_drop_ins_film_frame_skipping_wrappers_at_the_real_speed(tmp_path):
    from rlrec.wrappers import RecordVideo

    base = gym.make("PongNoFrameskip-v4", render_mode="rgb_array")
    stacks = {
        "atari": gym.wrappers.AtariPreprocessing(base, frame_skip=4, noop_max=0),
        "max-and-skip": gym.wrappers.MaxAndSkipObservation(base, skip=4),
    }
    try:
        from stable_baselines3.common.atari_wrappers import MaxAndSkipEnv

        stacks["sb3"] = MaxAndSkipEnv(base, skip=4)
    except ImportError:
        if os.environ.get("RLREC_REQUIRE_ALL") == "1":
            raise
    for name, env in stacks.items():
        env = RecordVideo(env, str(tmp_path / name), episode_trigger=lambda _: True)
        assert env.frames_per_sec == 15.0, name  # Gymnasium's RecordVideo says 30
        env.reset(seed=0)
        for _ in range(5):
            env.step(0)
        env.close()
        assert probe(tmp_path / name / "rl-video-episode-0.mp4").fps == 15.0


def test_a_skip_rlrec_cannot_read_is_said(tmp_path):
    overrides = ["env.wrappers=[{_target_: tests.envs.OpaqueSkip}]", "env.max_episode_steps=5"]
    result = run_cli([*overrides, "episodes=1", "trigger=every"], tmp_path)
    assert result.code == 0, result.proc.stderr[-3000:]
    output = result.proc.stdout + result.proc.stderr
    assert "OpaqueSkip, whose frame skip rlrec cannot read" in output and "video.fps" in output


def test_the_drop_ins_choose_a_headless_backend_before_the_first_frame(tmp_path):
    # a user's script: MUJOCO_GL unset, no display, rlrec's wrappers around a MuJoCo env made
    # before anything chose a backend; the films against the env's own renders of the episode
    need_gl(PRESETS["halfcheetah"])
    code = f"""
import gymnasium as gym, numpy as np
from rlrec.wrappers import RecordVideo, Recorder
from rlrec.wrappers.vector import RecordVideo as VectorRecordVideo
make = lambda: gym.make("HalfCheetah-v5", render_mode="rgb_array", width=64, height=48)
env = RecordVideo(make(), {str(tmp_path / "plain")!r}, episode_trigger=lambda _: True)
env.reset(seed=1)
env.action_space.seed(1)
actions = [env.action_space.sample() for _ in range(6)]
for a in actions:
    env.step(a)
env.close()
truth = make()
truth.reset(seed=1)
frames = [truth.render()]
for a in actions:
    truth.step(a)
    frames.append(truth.render())
np.save({str(tmp_path / "truth.npy")!r}, np.stack(frames))
limited = gym.wrappers.TimeLimit(make(), max_episode_steps=6)
with Recorder(limited, {str(tmp_path / "recorder")!r}, trigger="every", sinks=["parquet"]) as rec:
    rec.reset(seed=1)
    for a in actions:
        rec.step(a)
vec = gym.make_vec("HalfCheetah-v5", num_envs=2, vectorization_mode="sync",
                   render_mode="rgb_array", width=64, height=48)
vec = VectorRecordVideo(vec, {str(tmp_path / "vector")!r}, step_trigger=lambda s: s == 0,
                        video_length=4)
vec.reset(seed=1)
for _ in range(5):
    vec.step(vec.action_space.sample())
vec.close()
"""
    environ = {k: v for k, v in os.environ.items() if k not in HEADLESS}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=environ
    )
    assert done.returncode == 0, done.stderr[-3000:]
    truth = list(np.load(tmp_path / "truth.npy"))
    assert_faithful(tmp_path / "plain" / "rl-video-episode-0.mp4", truth)
    assert_faithful(tmp_path / "recorder" / "videos" / "eval-episode-0.mp4", truth)
    assert probe(tmp_path / "vector" / "rl-video-step-0.mp4").frames == 5


def test_removed_env_versions_name_the_one_that_exists(tmp_path):
    for old, new in (("HalfCheetah-v2", "HalfCheetah-v5"), ("Ant-v3", "Ant-v5")):
        result = run_cli([f"env.id={old}", "episodes=1", "trigger=never"], tmp_path / old)
        assert result.code == 2, result.proc.stderr[-3000:]
        lines = result.proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.proc.stderr, result.proc.stderr
        assert lines[0].startswith(f"rlrec: error: env.id: {old} cannot be made here")
        assert f"env.id={new}" in lines[0] and "gymnasium-robotics" in lines[0]
