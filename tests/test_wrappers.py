"""The drop-in wrappers: rlrec.wrappers.RecordVideo and RecordEpisodeStatistics behave as
Gymnasium's classes of the same names do (checked here in our own words), and stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import RenderCollection

from rlrec.wrappers import RecordEpisodeStatistics, RecordVideo
from tests.conftest import ROOT, contract_seed, decode, frame_at


def _random_steps(env, steps, seed=7):
    """``steps`` random steps, resetting at each episode's end; the episode lengths."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    lengths, length = [], 0
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        length += 1
        if terminated or truncated:
            lengths.append(length)
            length = 0
            env.reset()
    return lengths


def _videos(folder):
    return sorted(p for p in os.listdir(folder) if not p.startswith("."))


# -- RecordEpisodeStatistics ------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("buffer_length", [2, 5])
def test_statistics_are_those_of_a_plain_loop(env_id, buffer_length):
    env = RecordEpisodeStatistics(gym.make(env_id), buffer_length=buffer_length)
    plain = gym.make(env_id)
    returns, lengths = [], []
    for episode in range(6):
        seed = contract_seed(3, episode)
        env.reset(seed=seed)
        plain.reset(seed=seed)
        env.action_space.seed(seed)
        assert (env.episode_returns, env.episode_lengths) == (0.0, 0)
        total, length = 0.0, 0
        while True:
            action = env.action_space.sample()
            _, reward, terminated, truncated, info = env.step(action)
            _, plain_reward, *_ = plain.step(action)
            assert reward == plain_reward
            total += plain_reward
            length += 1
            if terminated or truncated:
                break
            assert "episode" not in info
        assert info["episode"]["r"] == pytest.approx(total)
        assert info["episode"]["l"] == length
        assert info["episode"]["t"] >= 0
        returns.append(total)
        lengths.append(length)
    assert list(env.return_queue) == pytest.approx(returns[-buffer_length:])
    assert list(env.length_queue) == lengths[-buffer_length:]
    assert len(env.time_queue) == buffer_length
    assert env.episode_count == 6


def test_statistics_key_spec_and_a_taken_key():
    env = RecordEpisodeStatistics(gym.make("CartPole-v1"), buffer_length=17, stats_key="stats")
    rebuilt = gym.make(env.spec)  # the wrapper and its arguments come back from the spec
    assert isinstance(rebuilt, RecordEpisodeStatistics)
    assert rebuilt.return_queue.maxlen == 17 and rebuilt._stats_key == "stats"
    rebuilt.reset(seed=0)
    while True:
        *_, terminated, truncated, info = rebuilt.step(0)
        if terminated or truncated:
            break
    assert set(info["stats"]) == {"r", "l", "t"} and "episode" not in info

    class Says(gym.Wrapper):  # an inner env that already fills info["episode"]
        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            return obs, reward, terminated, truncated, {**info, "episode": 1}

    twice = RecordEpisodeStatistics(Says(gym.make("CartPole-v1")))
    twice.reset(seed=0)
    with pytest.raises(AssertionError, match="stats_key"):
        for _ in range(500):
            twice.step(0)


def test_statistics_import_nothing_heavy():
    code = (
        "import sys, gymnasium\nbefore = set(sys.modules)\n"
        "from rlrec.wrappers import RecordEpisodeStatistics\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    added = set(out.stdout.split())
    assert added <= {"rlrec", "rlrec.wrappers", "rlrec.wrappers.statistics"}, added


# -- RecordVideo --------------------------------------------------------------------------------


def test_files_named_by_episode_and_step_triggers_hold_whole_episodes(tmp_path):
    env = RecordVideo(
        gym.make("CartPole-v1", render_mode="rgb_array"),
        tmp_path / "films",
        name_prefix="demo",
        episode_trigger=lambda e: e in (2, 5),
        step_trigger=lambda s: s in (0, 40),
    )
    lengths = _random_steps(env, 150)
    env.close()
    assert _videos(tmp_path / "films") == [
        "demo-episode-2.mp4",
        "demo-episode-5.mp4",
        "demo-step-0.mp4",
        "demo-step-40.mp4",
    ]
    for episode in (2, 5):  # the reset frame and one per step, at CartPole's 50 fps
        frames, fps, _ = decode(tmp_path / "films" / f"demo-episode-{episode}.mp4")
        assert (frames, fps) == (lengths[episode] + 1, 50)
    # a step recording runs to the next reset: from step 0 to the end of episode 0
    assert decode(tmp_path / "films" / "demo-step-0.mp4")[0] == lengths[0]


@pytest.mark.parametrize("trigger", [None, lambda e: e in (0, 2, 3, 7)])
def test_episode_trigger_default_is_the_capped_cubic_schedule(tmp_path, trigger):
    folder = tmp_path / "films"
    env = RecordVideo(gym.make("CartPole-v1", render_mode="rgb_array"), folder, trigger)
    lengths = _random_steps(env, 220)
    env.close()
    started = len(lengths) + 1  # the last reset started an episode too
    expected = [e for e in range(started) if env.episode_trigger(e)]
    if trigger is None:
        assert expected == [e for e in (0, 1, 8) if e < started]
    assert _videos(folder) == sorted(f"rl-video-episode-{e}.mp4" for e in expected)


def test_video_length_cuts_a_recording_across_episodes(tmp_path):
    env = RecordVideo(
        gym.make("CartPole-v1", render_mode="rgb_array"),
        tmp_path / "films",
        step_trigger=lambda s: s % 100 == 0,
        video_length=30,
        fps=12,
    )
    env.reset(seed=1)
    env.action_space.seed(1)
    states = []
    for _ in range(230):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        states.append(env.recording)
        if terminated or truncated:
            env.reset()
    env.close()
    # each recording: its first frame and 30 more (a reset's frame counts), then it stops
    assert sum(states) < 3 * 31
    for step in (0, 100, 200):
        assert states[step]
        frames, fps, _ = decode(tmp_path / "films" / f"rl-video-step-{step}.mp4")
        assert (frames, fps) == (31, 12)
    assert _videos(tmp_path / "films") == [f"rl-video-step-{s}.mp4" for s in (0, 100, 200)]


def test_a_video_is_whole_when_the_reset_that_ends_it_returns(tmp_path):
    env = RecordVideo(gym.make("CartPole-v1", render_mode="rgb_array"), tmp_path, lambda e: e == 0)
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        *_, terminated, truncated, _ = env.step(1)
        if terminated or truncated:
            break
    assert _videos(tmp_path) == [] and env.recording
    env.reset()  # ends the recording: the file is complete now, before close()
    assert not env.recording
    assert decode(tmp_path / "rl-video-episode-0.mp4")[0] == steps + 1
    env.close()


@pytest.mark.parametrize("outside", [False, True])
def test_rgb_array_list_envs_give_their_frames_back(tmp_path, outside):
    base = gym.make("CartPole-v1", render_mode="rgb_array")
    env = (
        RenderCollection(RecordVideo(base, tmp_path))
        if outside
        else RecordVideo(RenderCollection(base), tmp_path)
    )
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(6):
        env.step(env.action_space.sample())
    frames = env.render()
    assert len(frames) == 7 and all(f.ndim == 3 for f in frames)
    assert env.render() == []
    env.close()
    assert decode(tmp_path / "rl-video-episode-0.mp4")[0] == 7


def test_an_env_without_image_frames_is_refused(tmp_path):
    with pytest.raises(ValueError, match="rgb_array") as err:
        RecordVideo(gym.make("CartPole-v1"), tmp_path)
    assert len(err.value.args) == 1
    RecordVideo.__new__(RecordVideo).__del__()  # a half-built wrapper has nothing to warn about


def test_codec_and_spec(tmp_path):
    env = RecordVideo(
        gym.make("CartPole-v1", render_mode="rgb_array"), tmp_path, codec="gif", fps=25
    )
    assert env.spec.additional_wrappers[-1].kwargs["codec"] == "gif"
    env.reset(seed=0)
    for _ in range(5):
        env.step(0)
    env.close()
    assert decode(tmp_path / "rl-video-episode-0.gif")[:2] == (6, 25)


def test_frames_stream_and_nothing_half_written_stays_after_a_crash(tmp_path):
    """A 2,000-step Pendulum episode filmed in a child process: its peak memory is that of a
    300-step one (Gymnasium's would grow by 0.75 MB a frame); then a loop that raises mid-film
    leaves the finished video whole and nothing else. (Peak memory of its own process: other
    tests beside it change nothing it asserts.)"""
    script = textwrap.dedent(
        """
        import json, resource, sys
        import gymnasium as gym
        from rlrec.wrappers import RecordVideo
        steps, folder, crash = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "crash"
        env = gym.make("Pendulum-v1", render_mode="rgb_array", max_episode_steps=steps)
        env = RecordVideo(env, folder, episode_trigger=lambda e: True)
        for episode in range(2 if crash else 1):  # the crash comes in the second film
            env.reset(seed=episode)
            for step in range(steps):
                if crash and episode == 1 and step == steps // 2:
                    raise RuntimeError("the user's loop fails")
                env.step(env.action_space.sample())
        env.close()
        print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
        """
    )

    def run(steps, folder, mode="ok"):
        return subprocess.run(
            [sys.executable, "-c", script, str(steps), str(folder), mode],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
        )

    short, long = run(300, tmp_path / "short"), run(2000, tmp_path / "long")
    grown_kb = json.loads(long.stdout) - json.loads(short.stdout)
    assert grown_kb < 40_000, f"memory grew by {grown_kb} kB with 1,700 more frames"
    assert decode(tmp_path / "long" / "rl-video-episode-0.mp4")[0] == 2001
    crashed = run(200, tmp_path / "crash", "crash")
    assert crashed.returncode == 1 and "the user's loop fails" in crashed.stderr
    assert os.listdir(tmp_path / "crash") == ["rl-video-episode-0.mp4"]  # no partial file
    assert decode(tmp_path / "crash" / "rl-video-episode-0.mp4")[0] == 201


def test_same_files_and_frames_as_gymnasiums_wrapper(tmp_path):
    """Side by side with Gymnasium's RecordVideo (moviepy): the same files, the same frames."""

    def film(cls, folder):
        env = cls(
            gym.make("CartPole-v1", render_mode="rgb_array"),
            folder,
            episode_trigger=lambda e: e % 3 == 0,
            step_trigger=lambda s: s == 50,
            video_length=0,
        )
        _random_steps(env, 120, seed=5)
        env.close()
        return {name: decode(folder / name)[:2] for name in _videos(folder)}

    ours = film(RecordVideo, tmp_path / "ours")
    theirs = film(gym.wrappers.RecordVideo, tmp_path / "gymnasium")
    assert ours == theirs and len(ours) >= 3
    for name in ours:  # the same picture, up to the two encoders' losses
        a, b = (frame_at(tmp_path / side / name, 3).astype(int) for side in ("ours", "gymnasium"))
        assert a.shape == b.shape and np.abs(a - b).mean() < 2


def _encoder_children(parent: int | None = None) -> list[int]:
    """The children of ``parent`` (this process) that are rlrec encoder processes (from /proc)."""
    return _children(parent, b"rlrec._encode_worker")


def _children(parent: int | None = None, command_has: bytes = b"") -> list[int]:
    """The children of ``parent`` (this process) whose command line holds ``command_has``."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except OSError:
            continue
        if ppid == parent and command_has in command:
            found.append(int(entry))
    return found


def test_a_wrapper_dropped_without_close_ends_its_encoder(tmp_path):
    import gc
    import time

    before = set(_encoder_children())
    for i in range(3):
        env = RecordVideo(gym.make("CartPole-v1", render_mode="rgb_array"), str(tmp_path / str(i)))
        env.reset(seed=i)
        env.step(0)  # a recording under way: dropped with Gymnasium's warning
        assert set(_encoder_children()) - before
        with pytest.warns(UserWarning, match="Unable to save last video"):
            del env
            gc.collect()
    deadline = time.monotonic() + 10
    while set(_encoder_children()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(_encoder_children()) - before
    assert all(not list((tmp_path / str(i)).iterdir()) for i in range(3))  # nothing half-written


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` ends (or is a zombie) within ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _rings(pid: int) -> set[str]:
    """The shared-memory frame rings process ``pid`` has mapped, once it has mapped one."""
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/maps") as maps:
            rings = {line.split()[-1] for line in maps if "rlrec-frames-" in line}
        if rings:
            return rings
        time.sleep(0.05)
    return set()


@pytest.mark.parametrize("end", ["sigkill", "exit"])
def test_an_encoder_ends_with_its_process(tmp_path, end):
    """Killed mid-film with a forked child still alive (which holds copies of the parent's
    pipes unless the child lets go of them), or ending without close(): the encoder process
    ends, and leaves no partial film and no shared-memory ring."""
    import signal

    code = f"""
import multiprocessing, sys, time
import gymnasium as gym
from rlrec.wrappers import RecordVideo
env = RecordVideo(gym.make("CartPole-v1", render_mode="rgb_array"), {str(tmp_path)!r})
env.reset(seed=0)
for _ in range(5):
    env.step(0)
if {end!r} == "sigkill":  # a forked child outlives this process
    multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,)).start()
print("filming", flush=True)
sys.stdin.readline()  # then end without close()
"""
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    siblings: set[int] = set()
    try:
        assert child.stdout.readline() == "filming\n"
        (encoder,) = _encoder_children(child.pid)
        rings = _rings(encoder)
        assert len(rings) == 1
        if end == "sigkill":
            siblings = set(_children(child.pid)) - {encoder}
            assert len(siblings) == 1
            child.send_signal(signal.SIGKILL)
        else:
            child.stdin.write("end\n")
            child.stdin.flush()
        child.wait(timeout=30)
        assert _gone(encoder)
        assert not [p for p in rings if os.path.exists(p)]
        assert os.listdir(tmp_path) == []  # the film under way was not finished: nothing kept
    finally:
        child.kill()
        child.wait()
        for pid in siblings:
            os.kill(pid, signal.SIGKILL)
