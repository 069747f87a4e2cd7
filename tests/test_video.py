"""The streaming encoder: real OpenCV files, decoded back."""

from __future__ import annotations

import re
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest

from rlrec.codecs import CODECS, codec_for
from rlrec.errors import ConfigError
from rlrec.runner import record
from rlrec.video import VideoWriter
from tests.conftest import compose_config, decode


def _frames(n, height=120, width=160):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("name", sorted(CODECS))
def test_each_codec_decodes_with_frame_count_fps_and_size(tmp_path, name):
    codec = CODECS[name]
    path = tmp_path / f"eval-episode-0.{codec.extension}"
    writer = VideoWriter(path, codec, fps=25)
    for frame in _frames(37):
        writer.add(frame)
    assert writer.close() == path
    assert decode(path) == (37, 25.0, (160, 120))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("name", ["mp4v", "vp9"])
def test_odd_frame_sizes_are_padded_not_cropped(tmp_path, name):
    codec = CODECS[name]
    path = tmp_path / f"v.{codec.extension}"
    writer = VideoWriter(path, codec, fps=10)
    for frame in _frames(5, height=121, width=161):
        writer.add(frame)
    writer.close()
    assert decode(path) == (5, 10.0, (162, 122))


def test_grey_and_rgba_frames_encode(tmp_path):
    writer = VideoWriter(tmp_path / "v.mp4", CODECS["mp4v"], fps=10)
    writer.add(np.zeros((64, 64), np.uint8))
    writer.add(np.zeros((64, 64, 4), np.uint8))
    writer.close()
    assert decode(tmp_path / "v.mp4")[0] == 2


def test_temporary_name_never_matches_the_final_pattern(tmp_path):
    writer = VideoWriter(tmp_path / "eval-episode-3.mp4", CODECS["mp4v"], fps=10)
    for frame in _frames(3):
        writer.add(frame)
    pattern = re.compile(r"^eval-episode-\d+\.mp4$")
    assert not pattern.match(writer.tmp_path.name)
    assert writer.tmp_path.name.startswith(".")
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["eval-episode-3.mp4"]


def test_abort_leaves_nothing_behind(tmp_path):
    writer = VideoWriter(tmp_path / "eval-episode-0.mp4", CODECS["mp4v"], fps=10)
    for frame in _frames(40):
        writer.add(frame)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_encoder_error_reaches_the_caller_and_no_file_remains(tmp_path):
    writer = VideoWriter(tmp_path / "missing-dir" / "v.mp4", CODECS["mp4v"], fps=10)
    with pytest.raises(OSError, match="could not open"):
        for frame in _frames(40):
            writer.add(frame)
        writer.close()
    assert not (tmp_path / "missing-dir").exists()


def test_memory_is_bounded_by_the_queue_not_the_episode(tmp_path):
    """The producer may run at most QUEUE_FRAMES ahead of the encoder: frames are not kept."""
    from rlrec import video

    gate = threading.Event()
    writer = VideoWriter(tmp_path / "v.mp4", CODECS["mp4v"], fps=10)
    original = writer._queue.get

    def slow_get(*args, **kwargs):
        gate.wait()
        return original(*args, **kwargs)

    writer._queue.get = slow_get
    added = []
    producer = threading.Thread(target=lambda: [added.append(writer.add(f)) for f in _frames(60)])
    producer.start()
    producer.join(timeout=1.0)
    assert producer.is_alive() and len(added) <= video.QUEUE_FRAMES + 1
    gate.set()
    producer.join()
    writer.close()
    assert decode(tmp_path / "v.mp4")[0] == 60


def test_unknown_codec_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        codec_for("h264")
    assert err.value.key == "video.codec" and "mp4v" in err.value.fix


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
