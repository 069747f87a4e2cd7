"""The streaming encoder: real PyAV and OpenCV files, decoded back with PyAV."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rlrec.codecs import CODECS, codec_for
from rlrec.errors import ConfigError
from rlrec.runner import record
from rlrec.video import SLOTS, Encoder, VideoSettings
from tests.conftest import compose_config, decode, frame_at


@pytest.fixture
def encoder():
    with Encoder() as enc:
        yield enc


def _frames(n, height=120, width=160):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("name", sorted(CODECS))
def test_each_codec_decodes_with_frame_count_fps_and_size(tmp_path, encoder, name):
    codec = CODECS[name]
    path = tmp_path / f"eval-episode-0.{codec.extension}"
    writer = encoder.open(path, VideoSettings(codec, 25))
    for frame in _frames(37):
        writer.add(frame)
    assert writer.close() == path
    assert decode(path) == (37, 25.0, (160, 120))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("name", ["mp4v", "vp9"])
def test_odd_frame_sizes_are_padded_not_cropped(tmp_path, encoder, name):
    codec = CODECS[name]
    path = tmp_path / f"v.{codec.extension}"
    writer = encoder.open(path, VideoSettings(codec, 10))
    for frame in _frames(5, height=121, width=161):
        writer.add(frame)
    writer.close()
    assert decode(path) == (5, 10.0, (162, 122))


def test_grey_rgba_and_float_frames_encode(tmp_path, encoder):
    for name, frame in [
        ("grey", np.zeros((64, 64), np.uint8)),
        ("rgba", np.zeros((64, 64, 4), np.uint8)),
        ("float", np.full((64, 64, 3), 300.0)),
    ]:
        writer = encoder.open(tmp_path / f"{name}.mp4", VideoSettings(CODECS["mp4v"], 10))
        writer.add(frame)
        writer.add(frame)
        writer.close()
        assert decode(tmp_path / f"{name}.mp4") == (2, 10.0, (64, 64))


def test_temporary_name_never_matches_the_final_pattern(tmp_path, encoder):
    writer = encoder.open(tmp_path / "eval-episode-3.mp4", VideoSettings(CODECS["mp4v"], 10))
    for frame in _frames(3):
        writer.add(frame)
    pattern = re.compile(r"^eval-episode-\d+\.mp4$")
    assert not pattern.match(writer.tmp_path.name)
    assert writer.tmp_path.name.startswith(".")
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["eval-episode-3.mp4"]


def test_abort_leaves_nothing_behind_and_the_encoder_goes_on(tmp_path, encoder):
    writer = encoder.open(tmp_path / "eval-episode-0.mp4", VideoSettings(CODECS["mp4v"], 10))
    for frame in _frames(40):
        writer.add(frame)
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    writer = encoder.open(tmp_path / "eval-episode-1.mp4", VideoSettings(CODECS["mp4v"], 10))
    for frame in _frames(3, height=50, width=70):  # another size: a new ring
        writer.add(frame)
    writer.close()
    assert decode(tmp_path / "eval-episode-1.mp4") == (3, 10.0, (70, 50))


def test_encoder_error_reaches_the_caller_and_no_file_remains(tmp_path, encoder):
    writer = encoder.open(tmp_path / "missing-dir" / "v.mp4", VideoSettings(CODECS["mp4v"], 10))
    with pytest.raises(OSError, match="could not open"):
        for frame in _frames(40):
            writer.add(frame)
        writer.close()
    writer.abort()
    assert not (tmp_path / "missing-dir").exists()


@pytest.mark.alone
def test_the_episode_never_runs_more_than_slots_frames_ahead(tmp_path, encoder):
    writer = encoder.open(tmp_path / "v.mp4", VideoSettings(CODECS["mp4v"], 10))
    ahead = []
    for frame in _frames(5 * SLOTS):
        writer.add(frame)
        ahead.append(encoder._in_flight)
    assert max(ahead) == SLOTS  # the encoder is slower than this loop, so the ring fills
    assert encoder._ring.shape == (SLOTS, 120, 160, 3)  # the only frame memory there is
    writer.close()
    assert decode(tmp_path / "v.mp4")[0] == 5 * SLOTS


def test_videos_closed_without_waiting_are_whole_and_keep_their_own_frames(tmp_path, encoder):
    """Closed in the background, renamed to a name known only at the end: each file has its own
    frames (the next video's frames never overwrite ring slots the encoder still reads)."""
    video = VideoSettings(CODECS["mjpg"], 10)
    for k in range(4):
        writer = encoder.open(tmp_path / f".pending-{k}.avi", video)
        for _ in range(SLOTS + 3 * k):
            writer.add(np.full((120, 160, 3), 40 * k, np.uint8))
        assert writer.close(tmp_path / f"v-{k}.avi", wait=False) == tmp_path / f"v-{k}.avi"
    encoder.settle()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"v-{k}.avi" for k in range(4)]
    for k in range(4):
        assert decode(tmp_path / f"v-{k}.avi")[0] == SLOTS + 3 * k
        for i in (0, SLOTS + 3 * k - 1):
            assert abs(int(frame_at(tmp_path / f"v-{k}.avi", i).mean()) - 40 * k) <= 2


def test_a_killed_parent_leaves_no_file_under_a_final_name(tmp_path):
    rings_before = set(Path("/dev/shm").glob("rlrec-frames-*"))
    script = (
        "import os, sys, numpy as np\n"
        "from pathlib import Path\n"
        "from rlrec.codecs import CODECS\n"
        "from rlrec.video import Encoder, VideoSettings\n"
        "w = Encoder().open(Path(sys.argv[1]), VideoSettings(CODECS['mp4v'], 10))\n"
        "for i in range(50):\n"
        "    w.add(np.full((120, 160, 3), i, np.uint8))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "eval-episode-0.mp4")], timeout=60
    )
    assert proc.returncode == -9

    def leftovers():
        rings = set(Path("/dev/shm").glob("rlrec-frames-*")) - rings_before
        return list(tmp_path.iterdir()) + sorted(rings)

    deadline = time.monotonic() + 10
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)  # the orphaned encoder sees its input end and cleans up
    assert leftovers() == []


def test_unknown_codec_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        codec_for("h265")
    assert err.value.key == "video.codec" and "h264" in err.value.fix and "mp4v" in err.value.fix


@pytest.mark.parametrize(("codec", "ext"), [("vp9", "webm"), ("mjpg", "avi")])
def test_run_films_with_the_chosen_codec_and_env_fps(tmp_path, codec, ext):
    cfg = compose_config(
        [
            "policy=custom",
            "policy._target_=tests.policies.BalancePolicy",
            f"video.codec={codec}",
            "video.name_prefix=demo",
            "episodes=2",
            "env.max_episode_steps=25",
            "sinks=[parquet]",
        ]
    )
    record(cfg, tmp_path)
    for episode in range(2):
        assert decode(tmp_path / "videos" / f"demo-episode-{episode}.{ext}") == (
            26,
            50.0,
            (600, 400),
        )


def test_odd_sized_env_frames_film(tmp_path):
    cfg = compose_config(
        [
            "env.id=tests.envs:OddFrameCartPole-v0",
            "episodes=1",
            "video.fps=12",
            "env.max_episode_steps=10",
            "sinks=[parquet]",
        ]
    )
    record(cfg, tmp_path)
    (row,) = pq.read_table(tmp_path / "episodes.parquet").to_pylist()
    assert decode(tmp_path / row["video"]) == (row["length"] + 1, 12.0, (302, 200))
