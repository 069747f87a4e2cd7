"""Videos that play where people look: H.264 by default, every codec decoded, a real browser."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rlrec
from rlrec.build import build
from rlrec.codecs import CODECS
from rlrec.errors import ConfigError
from tests.conftest import ROOT, compose_config, frame_at, probe, run_cli

#: What PyAV reports of each codec's files: FFmpeg's codec, the container, the decoded pixels.
EXPECTED = {
    "h264": ("h264", "mov,mp4,m4a,3gp,3g2,mj2", "yuv420p"),
    "av1": ("av1", "mov,mp4,m4a,3gp,3g2,mj2", "yuv420p"),
    "gif": ("gif", "gif", "bgra"),
    "mp4v": ("mpeg4", "mov,mp4,m4a,3gp,3g2,mj2", "yuv420p"),
    "vp9": ("vp9", "matroska,webm", "yuv420p"),
    "vp8": ("vp8", "matroska,webm", "yuv420p"),
    "mjpg": ("mjpeg", "avi", "yuvj420p"),
}


def _film(run_dir, *overrides: str):
    """A run of the balancing policy (episodes that last) into ``run_dir``; its rows."""
    policy = ["policy=custom", "policy._target_=tests.policies.BalancePolicy"]
    result = rlrec.run([*policy, "sinks=[parquet]", *overrides], run_dir=run_dir)
    return result.episodes.to_pylist()


def test_the_default_codec_is_h264_in_mp4_with_the_index_first(tmp_path):
    assert compose_config().video.codec == "h264"
    (row,) = _film(tmp_path, "episodes=1", "env.max_episode_steps=40")
    path = tmp_path / row["video"]
    info = probe(path)
    assert path.suffix == ".mp4" and (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert (info.frames, info.fps, info.size) == (41, 50.0, (600, 400))
    data = path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # +faststart: playable while arriving


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_codec_films_each_frame_at_the_envs_rate(tmp_path, name):
    rows = _film(tmp_path, f"video.codec={name}", "episodes=2", "env.max_episode_steps=25")
    codec, container, pix_fmt = EXPECTED[name]
    for row in rows:
        path = tmp_path / row["video"]
        assert path.suffix == f".{CODECS[name].extension}"
        info = probe(path)
        assert (info.codec, info.container, info.pix_fmt) == (codec, container, pix_fmt)
        assert (info.frames, info.size) == (row["length"] + 1, (600, 400))
        assert info.fps == pytest.approx(50.0)
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == sorted(
        r["video"].removeprefix("videos/") for r in rows
    )


@pytest.mark.parametrize(("fps", "stored"), [(30, 100 / 3), (60, 50.0), (7, 100 / 14)])
def test_gif_keeps_every_frame_at_a_rate_it_can_store(tmp_path, fps, stored):
    (row,) = _film(tmp_path, "video.codec=gif", f"video.fps={fps}", "episodes=1")
    info = probe(tmp_path / row["video"])
    assert info.frames == row["length"] + 1 and info.fps == pytest.approx(stored)


@pytest.mark.parametrize("name", ["h264", "av1"])
def test_odd_frames_are_padded_to_even_for_4_2_0(tmp_path, name):
    rows = _film(
        tmp_path,
        "env.id=tests.envs:OddFrameCartPole-v0",
        f"video.codec={name}",
        "episodes=1",
        "env.max_episode_steps=10",
    )
    info = probe(tmp_path / rows[0]["video"])
    assert (info.frames, info.size, info.pix_fmt) == (11, (302, 200), "yuv420p")


def test_preset_and_crf_change_the_file_not_the_frames(tmp_path):
    sizes = {}
    for preset, crf in (("ultrafast", 23), ("medium", 23), ("medium", 40)):
        out = tmp_path / f"{preset}-{crf}"
        (row,) = _film(out, f"video.preset={preset}", f"video.crf={crf}", "episodes=1")
        assert probe(out / row["video"]).frames == row["length"] + 1
        sizes[preset, crf] = (out / row["video"]).stat().st_size
    assert sizes["medium", 23] < sizes["ultrafast", 23]  # slower preset: smaller file
    assert sizes["medium", 40] < sizes["medium", 23]  # higher crf: lower quality, smaller


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["video.preset=fastest"], "video.preset"),
        (["video.crf=52"], "video.crf"),
        (["video.codec=av1", "video.crf=64"], "video.crf"),
        (["video.crf=high"], "video.crf"),
    ],
)
def test_bad_quality_settings_name_their_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as err:
        build(compose_config(overrides), tmp_path)
    assert err.value.key == key and "video." in err.value.fix


def test_every_path_honours_the_codec(tmp_path):
    """Per-episode films, the timelapse, the tiled grid and a replay are all GIFs with gif."""
    short = "env.max_episode_steps=12"  # GIF's palettes are slow to make: few frames suffice
    rows = _film(tmp_path / "a", "video.codec=gif", "episodes=3", "video.timelapse=true", short)
    assert all(r["video"].endswith(".gif") for r in rows)
    timelapse = probe(tmp_path / "a" / "timelapse.gif")
    assert timelapse.codec == "gif" and timelapse.frames == sum(r["length"] + 1 for r in rows)
    tiled = _film(
        tmp_path / "b", "video.codec=gif", "episodes=2", "env.num_envs=2", "video.tile=true", short
    )
    assert {r["video"] for r in tiled} == {"videos/eval-tiled.gif"}
    assert probe(tmp_path / "b" / "videos" / "eval-tiled.gif").size == (1200, 400)
    from rlrec.replay import replay_to_video

    path = replay_to_video(tmp_path / "a", 1, codec="gif")
    assert path.suffix == ".gif" and probe(path).frames == rows[1]["length"] + 1


@pytest.mark.slow
def test_gif_from_the_command_line(tmp_path):
    result = run_cli(["video.codec=gif", "episodes=1"], tmp_path / "run")
    assert result.code == 0, result.proc.stderr[-2000:]
    (row,) = pq.read_table(tmp_path / "run" / "episodes.parquet").to_pylist()
    assert row["video"] == "videos/eval-episode-0.gif"
    assert probe(tmp_path / "run" / row["video"]).frames == row["length"] + 1


# -- a real browser ---------------------------------------------------------------------------


@pytest.fixture
def browser_videos(tmp_path):
    """Everything rlrec films, in one served folder: per-episode H.264 films with a timelapse,
    a replayed episode, a tiled grid, and a VP9 film."""
    rows = _film(tmp_path / "run", "episodes=3", "env.max_episode_steps=60", "video.timelapse=true")
    replay = subprocess.run(
        [sys.executable, "-m", "rlrec.replay", str(tmp_path / "run"), "--episode", "2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert replay.returncode == 0, replay.stderr
    _film(tmp_path / "tile", "episodes=4", "env.num_envs=2", "video.tile=true")
    _film(tmp_path / "vp9", "episodes=1", "video.codec=vp9", "env.max_episode_steps=30")
    return rows


def _played(video_probe, folder, relative: str) -> None:
    """``relative`` loads, lasts its frames / fps within one frame, plays, and shows the frame
    the file holds."""
    path = folder / relative
    info = probe(path)
    state = video_probe.load(relative)
    assert state["error"] is None and state["readyState"] >= 2, state
    assert (state["width"], state["height"]) == info.size
    assert state["duration"] == pytest.approx(info.frames / info.fps, abs=1 / info.fps)
    assert video_probe.play_for(0.4) > 0.1  # currentTime advances while playing
    shown = np.asarray(Image.open(io.BytesIO(video_probe.screenshot_at(0.5 / info.fps))))[..., :3]
    decoded = frame_at(path, 0)
    assert shown.shape == decoded.shape
    assert np.abs(shown.astype(int) - decoded).mean() < 8  # the frame, not black, not another
    dark = (shown.mean(axis=2) < 80).mean()  # CartPole: a black cart on white
    assert 0.002 < dark < 0.5 and shown.mean() > 150


@pytest.mark.browser
def test_every_video_rlrec_writes_by_default_plays_in_chromium(
    tmp_path, video_probe, browser_videos
):
    for row in browser_videos:
        _played(video_probe, tmp_path, f"run/{row['video']}")
        assert probe(tmp_path / "run" / row["video"]).frames == row["length"] + 1
    _played(video_probe, tmp_path, "run/timelapse.mp4")
    _played(video_probe, tmp_path, "run/videos/replay-episode-2.mp4")
    _played(video_probe, tmp_path, "tile/videos/eval-tiled.mp4")
    _played(video_probe, tmp_path, "vp9/videos/eval-episode-0.webm")


@pytest.mark.browser
def test_mp4v_does_not_play_in_chromium_which_is_why_h264_is_the_default(tmp_path, video_probe):
    (row,) = _film(tmp_path, "video.codec=mp4v", "episodes=1")
    state = video_probe.load(row["video"])
    assert state["error"] == 4 and state["readyState"] == 0  # MEDIA_ERR_SRC_NOT_SUPPORTED
