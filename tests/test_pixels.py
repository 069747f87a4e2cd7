"""Every film equals what the env rendered: decoded with PyAV, frame by frame, against the truth.

The truth is independent of rlrec: ``tests.envs:PixelCartPole-v0`` renders frame ``i`` of an
episode as ``tests.pixels.synthetic_frame(i)``, and a real env's frames come from a plain
Gymnasium loop with the contract's seeds. First every codec at sizes whose width and height are
multiples of 4, 2 mod 4 and odd, on the encoder itself; then the default codec through every other
path that writes a film; then real envs.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import tests.envs  # noqa: F401 - registers PixelCartPole-v0
from rlrec.codecs import CODECS
from rlrec.env_ids import ensure_registered
from rlrec.errors import FrameError
from rlrec.video import Encoder, VideoSettings
from rlrec.wrappers import Recorder, RecordVideo
from rlrec.wrappers.vector import Recorder as VectorRecorder
from rlrec.wrappers.vector import RecordVideo as VectorRecordVideo
from tests.conftest import ROOT, console_script, plain_loop, run_cli
from tests.pixels import (
    FLOORS,
    assert_faithful,
    episode_frames,
    grid,
    psnr,
    synthetic,
)

#: (width, height): multiples of 4, 2 mod 4 (every Atari frame's 210 rows) and odd, each
#: dimension on its own.
SIZES = [(160, 200), (160, 210), (150, 200), (150, 150), (77, 200), (160, 101), (77, 101)]
PIXEL_ENV = "env.id=tests.envs:PixelCartPole-v0"


def _rows(run_dir: Path) -> list[dict]:
    return pq.read_table(run_dir / "episodes.parquet").to_pylist()


def _pixel_env(width: int = 160, height: int = 210) -> list[str]:
    return [PIXEL_ENV, f"+env.kwargs.width={width}", f"+env.kwargs.height={height}"]


def _assert_films_are_their_episodes(run_dir: Path, rows: list[dict], width=160, height=210):
    filmed = [r for r in rows if r["video"]]
    assert filmed
    for row in filmed:
        assert_faithful(run_dir / row["video"], episode_frames(width, height, row["length"]))


# -- the encoder: every codec, every size ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_codec_films_the_frames_it_was_given_at_every_size(name, tmp_path):
    codec = CODECS[name]
    with Encoder() as encoder:
        for width, height in SIZES:
            frames = synthetic(width, height, 12)
            path = tmp_path / f"{width}x{height}.{codec.extension}"
            writer = encoder.open(path, VideoSettings(codec, 30))
            for frame in frames:
                writer.add(frame)
            writer.close()
            result = assert_faithful(path, frames, name)
            if FLOORS[name] is not None:
                assert result.mean >= result.worst >= FLOORS[name], (width, height, result)


def test_the_oracle_tells_misplaced_planes_from_right_ones():
    # what the default codec made of a 210-row frame before: PyAV's from_numpy_buffer took it for
    # a 208-row frame (rows // 6 * 4), read U and V from where that one's start, and the frame was
    # scaled back to 210 rows; the oracle must score that far below the floor, and the right
    # planes above it
    frame = synthetic(160, 210, 1)[0]
    i420 = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
    right = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
    rows, width = 315 // 6 * 4, 160
    flat = i420.reshape(-1)[: rows * width * 3 // 2]
    misread = cv2.cvtColor(flat.reshape(-1, width), cv2.COLOR_YUV2RGB_I420)
    wrong = cv2.resize(misread, (width, 210))
    assert psnr(wrong, frame) < 20 < FLOORS["h264"] <= psnr(right, frame)
    assert psnr(frame, frame) == float("inf")


# -- frames no film can hold ----------------------------------------------------------------------

BAD_FIRST = {
    "none": None,
    "1x1": np.zeros((1, 1, 3), np.uint8),
    "0rows": np.zeros((0, 160, 3), np.uint8),
    "2channels": np.zeros((210, 160, 2), np.uint8),
    "a list": [[0, 0], [0, 0]],
}


def test_a_frame_no_film_can_hold_is_a_value_error_naming_its_shape(tmp_path):
    video = VideoSettings(CODECS["h264"], 30)
    with Encoder() as encoder:
        for kind, frame in BAD_FIRST.items():
            writer = encoder.open(tmp_path / f"{kind}.mp4", video, "env X, episode 4")
            with pytest.raises(FrameError) as err:
                writer.add(frame)
            assert isinstance(err.value, ValueError)
            message = str(err.value)
            assert message.startswith("env X, episode 4: render() returned"), message
            shape = "None" if frame is None else getattr(frame, "shape", "list")
            assert str(shape) in message and "Fix:" in message and "\n" not in message
            writer.abort()
        # later in a film: None, or another size
        for bad in (None, np.zeros((212, 160, 3), np.uint8)):
            writer = encoder.open(tmp_path / "later.mp4", video, "env X, episode 5")
            writer.add(np.zeros((210, 160, 3), np.uint8))
            with pytest.raises(FrameError, match=r"episode 5: render\(\) returned .*frame 1 "):
                writer.add(bad)
            writer.abort()
    assert list(tmp_path.iterdir()) == []  # nothing half-written left anywhere
    # grey and one-channel frames are images: filmed as grey
    with Encoder() as encoder:
        for shape in ((64, 48), (64, 48, 1)):
            frames = [np.full(shape, 40 * i, np.uint8) for i in range(4)]
            path = tmp_path / f"grey{len(shape)}.gif"
            writer = encoder.open(path, VideoSettings(CODECS["gif"], 30))
            for frame in frames:
                writer.add(frame)
            writer.close()
            assert_faithful(path, [f.reshape(64, 48) for f in frames], "gif")


@pytest.mark.parametrize("bad", ["none", "resize"])
def test_the_cli_stops_on_such_a_frame_with_one_line_and_keeps_the_finished_episodes(bad, tmp_path):
    run = tmp_path / "run"
    args = [*_pixel_env(), f"+env.kwargs.bad_frame={bad}", "+env.kwargs.bad_at=60"]
    result = run_cli([*args, "episodes=20", "trigger=every", "sinks=[parquet]"], run)
    assert result.code == 2, result.proc.stderr[-2000:]
    lines = result.proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.proc.stderr, result.proc.stderr
    # episodes 0 and 1 last 46 steps with these seeds; the 60th step is in episode 2
    expected = plain_loop("CartPole-v1", 0, 3)
    assert sum(r["length"] for r in expected[:2]) < 60 <= sum(r["length"] for r in expected)
    assert lines[0].startswith(
        "rlrec: error: env tests.envs:PixelCartPole-v0, episode 2: render() returned"
    )
    assert ("None" if bad == "none" else "(212, 160, 3)") in lines[0] and "Fix:" in lines[0]
    assert "free some space" not in lines[0]
    rows = _rows(run)
    assert [r["length"] for r in rows] == [r["length"] for r in expected[:2]]
    _assert_films_are_their_episodes(run, rows)
    assert sorted(p.name for p in (run / "videos").iterdir()) == [
        "eval-episode-0.mp4",
        "eval-episode-1.mp4",
    ]


def test_the_wrappers_raise_value_error_and_leave_no_file(tmp_path):
    env = gym.make("PixelCartPole-v0", render_mode="rgb_array", bad_frame="1x1")
    env = RecordVideo(env, str(tmp_path), episode_trigger=lambda _: True)
    with pytest.raises(ValueError, match=r"PixelCartPole-v0, rl-video-episode-0: .*\(1, 1, 3\)"):
        env.reset(seed=0)
    env.close()
    assert list(tmp_path.iterdir()) == []


# -- the default codec through every path that writes a film --------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Three episodes filmed live, a timelapse of them, and their TensorBoard GIFs."""
    run = tmp_path_factory.mktemp("pixels") / "live"
    args = [*_pixel_env(), "episodes=3", "trigger=every", "video.timelapse=true"]
    result = run_cli([*args, "sinks=[parquet,tensorboard]"], run)
    assert result.code == 0, result.proc.stderr[-2000:]
    return run


def test_live_films_are_their_episodes(live):
    _assert_films_are_their_episodes(live, _rows(live))


def test_the_timelapse_is_the_episodes_in_order_below_its_captions(live):
    rows = _rows(live)
    truth = [f for r in rows for f in episode_frames(160, 210, r["length"])]
    below = 40  # the caption is drawn in the rows above
    crop = [f[below:] for f in truth]
    path = live / "timelapse.mp4"
    from tests.pixels import decoded

    film = [f[below:210] for f in decoded(path)]
    assert len(film) == len(crop)
    worst = min(psnr(a, b) for a, b in zip(film, crop, strict=True))
    assert worst >= FLOORS["h264"], worst


def test_the_tensorboard_gifs_are_the_films(live):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(live / "tensorboard"), size_guidance={"images": 0}).Reload()
    rows = _rows(live)
    tags = sorted(t for t in events.Tags()["images"] if t.startswith("film/"))
    films = [image for tag in tags for image in events.Images(tag)]  # one tag a film
    assert [f.step for f in films] == [r["episode"] for r in rows]
    for film, row in zip(films, rows, strict=True):
        with Image.open(io.BytesIO(film.encoded_image_string)) as gif:
            frames = []
            for i in range(gif.n_frames):
                gif.seek(i)
                frames.append(np.asarray(gif.convert("RGB")))
        truth = episode_frames(160, 210, row["length"])
        assert len(frames) == len(truth)
        worst = min(psnr(a, b) for a, b in zip(frames, truth, strict=True))
        assert worst >= FLOORS["h264"], worst  # a GIF of the H.264 film: its losses only


@pytest.mark.parametrize("codec", ["h264", "gif"])
def test_rlrec_replay_films_the_episode(live, codec, tmp_path):
    out = tmp_path / f"replayed.{CODECS[codec].extension}"
    cmd = [console_script("rlrec-replay"), str(live), "--episode", "1", "--out", str(out)]
    cmd += ["--codec", codec]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_faithful(out, episode_frames(160, 210, _rows(live)[1]["length"]), codec)


@pytest.mark.parametrize("method", ["replay", "buffer"])
def test_adaptive_films_are_their_episodes(method, tmp_path):
    args = [*_pixel_env(77, 101), "episodes=12", "trigger=adaptive", f"trigger.method={method}"]
    result = run_cli([*args, "sinks=[parquet]"], tmp_path)
    assert result.code == 0, result.proc.stderr[-2000:]
    _assert_films_are_their_episodes(tmp_path, _rows(tmp_path), 77, 101)


@pytest.mark.parametrize(
    "parallel",
    [
        ["env.num_envs=2", "trigger=every"],
        ["workers=2", "trigger=every"],
        # the processes of the sub-environments filmed are asked for their frames alone
        ["env.num_envs=3", "env.vectorization=async", "trigger=periodic", "trigger.period=2"],
    ],
    ids=["vector", "workers", "async-some"],
)
def test_vector_and_worker_runs_film_each_episode(parallel, tmp_path):
    args = [*_pixel_env(150, 150), *parallel, "episodes=6"]
    result = run_cli([*args, "sinks=[parquet]"], tmp_path)
    assert result.code == 0, result.proc.stderr[-2000:]
    rows = _rows(tmp_path)
    if "workers=2" not in parallel:
        assert {r["env_index"] for r in rows} == set(range(int(parallel[0][-1])))
    if "trigger.period=2" in parallel:
        assert [r["episode"] for r in rows if r["video"]] == [0, 2, 4]
    _assert_films_are_their_episodes(tmp_path, rows, 150, 150)


def _pixel_vec(n: int, width: int = 160, height: int = 210) -> gym.vector.VectorEnv:
    return gym.make_vec(
        "PixelCartPole-v0",
        num_envs=n,
        vectorization_mode="sync",
        render_mode="rgb_array",
        max_episode_steps=30,
        width=width,
        height=height,
    )


def _drive(envs, steps: int, seed: int = 3) -> None:
    envs.reset(seed=seed)
    for _ in range(steps):
        envs.step(envs.action_space.sample())
    envs.close()


def test_a_tiled_film_is_the_sub_environments_side_by_side(tmp_path):
    envs = VectorRecorder(
        _pixel_vec(3, 150, 150),
        tmp_path,
        trigger="every",
        video={"tile": True},
        sinks=["parquet"],
    )
    subs = envs.unwrapped.envs
    _drive(envs, 40)
    # each grid frame shows every sub-environment's render of that step, 2 columns for 3 (cells
    # of even sizes: where two cells meet inside a 2x2 block, 4:2:0 mixes their colours)
    renders = [s.unwrapped.frames for s in subs]
    truth = [grid(list(cells), 2) for cells in zip(*renders, strict=True)]
    film = tmp_path / "videos" / "eval-tiled.mp4"
    assert_faithful(film, truth)


def test_the_drop_in_wrappers_and_recorders_film_what_the_env_rendered(tmp_path):
    # rlrec.wrappers.RecordVideo: each episode's film is its frames
    env = RecordVideo(
        gym.make("PixelCartPole-v0", render_mode="rgb_array", width=150, height=150),
        str(tmp_path / "plain"),
        episode_trigger=lambda _: True,
    )
    lengths = []
    for seed in range(3):
        env.reset(seed=seed)
        done, length = False, 0
        while not done:
            *_, terminated, truncated, _ = env.step(env.action_space.sample())
            done, length = terminated or truncated, length + 1
        lengths.append(length)
    env.close()
    for i, length in enumerate(lengths):
        film = tmp_path / "plain" / f"rl-video-episode-{i}.mp4"
        assert_faithful(film, episode_frames(150, 150, length))

    # the vector RecordVideo: a grid of the sub-environments, a frame a step
    envs = VectorRecordVideo(
        _pixel_vec(2), str(tmp_path / "vector"), step_trigger=lambda s: s == 0, video_length=20
    )
    subs = envs.unwrapped.envs
    _drive(envs, 25)
    renders = [s.unwrapped.frames for s in subs]
    truth = [np.concatenate([r[k] for r in renders], axis=1) for k in range(21)]
    assert_faithful(tmp_path / "vector" / "rl-video-step-0.mp4", truth)

    # the Recorder, plain and vector (a film per sub-environment 0's episode)
    with Recorder(
        gym.make("PixelCartPole-v0", render_mode="rgb_array", width=77, height=101),
        tmp_path / "recorder",
        trigger="every",
        sinks=["parquet"],
        seed=0,
    ) as env:
        for _ in range(3):
            env.reset()
            done = False
            while not done:
                *_, terminated, truncated, _ = env.step(env.action_space.sample())
                done = terminated or truncated
    _assert_films_are_their_episodes(tmp_path / "recorder", _rows(tmp_path / "recorder"), 77, 101)
    envs = VectorRecorder(_pixel_vec(2), tmp_path / "vrec", trigger="every", sinks=["parquet"])
    _drive(envs, 60)
    _assert_films_are_their_episodes(tmp_path / "vrec", _rows(tmp_path / "vrec"))


# -- real envs ------------------------------------------------------------------------------------

REAL = {
    "pong": (["env=pong", "env.max_episode_steps=40"], "ALE/Pong-v5", {}),
    "breakout": (["env=breakout", "env.max_episode_steps=40"], "ALE/Breakout-v5", {}),
    "minigrid-150": (
        ["env=minigrid", "env.id=MiniGrid-Empty-5x5-v0", "+env.kwargs.tile_size=30"],
        "MiniGrid-Empty-5x5-v0",
        {"tile_size": 30},
    ),
    "minigrid-odd": (
        ["env=minigrid", "env.id=MiniGrid-Empty-5x5-v0", "+env.kwargs.tile_size=13"],
        "MiniGrid-Empty-5x5-v0",
        {"tile_size": 13},
    ),
    "cartpole": (["env.max_episode_steps=30"], "CartPole-v1", {}),
}


@pytest.mark.parametrize("name", list(REAL))
def test_real_envs_films_are_what_they_rendered(name, tmp_path):
    overrides, env_id, kwargs = REAL[name]
    if env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    else:
        ensure_registered(env_id)
    result = run_cli([*overrides, "episodes=2", "trigger=every", "sinks=[parquet]"], tmp_path)
    assert result.code == 0, result.proc.stderr[-2000:]
    steps = {"cartpole": 30, "pong": 40, "breakout": 40}.get(name)
    renders: list[list[np.ndarray]] = []
    plain_loop(env_id, 0, 2, max_episode_steps=steps, renders=renders, **kwargs)
    rows = _rows(tmp_path)
    for row, truth in zip(rows, renders, strict=True):
        assert row["length"] + 1 == len(truth)
        result = assert_faithful(tmp_path / row["video"], truth)
        assert result.worst >= FLOORS["h264"]
