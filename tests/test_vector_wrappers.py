"""rlrec.wrappers.vector: the drop-ins behave as Gymnasium's vector wrappers (in our own words),
and the vector Recorder records every sub-environment's episodes under each autoreset mode."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest
from gymnasium.vector import AutoresetMode

from rlrec.errors import ConfigError
from rlrec.wrappers.statistics import RecordEpisodeStatistics as PlainStatistics
from rlrec.wrappers.vector import RecordEpisodeStatistics, Recorder, RecordVideo
from tests.conftest import all_frames, decode, frame_at, run_cli
from tests.policies import BalancePolicy

MODES = list(AutoresetMode)
ACT = BalancePolicy(None, None).act


def make_vec(n=4, mode=AutoresetMode.NEXT_STEP, render=False, max_steps=60):
    return gym.make_vec(
        "CartPole-v1",
        num_envs=n,
        vectorization_mode="sync",
        max_episode_steps=max_steps,
        render_mode="rgb_array" if render else None,
        vector_kwargs={"autoreset_mode": mode},
    )


def drive(envs, steps, mode, seed=100, act=True):
    """The user's loop: act on each observation; under DISABLED reset what ended."""
    obs, _ = envs.reset(seed=seed)
    envs.action_space.seed(seed)
    infos = []
    for _ in range(steps):
        actions = np.array([ACT(o) for o in obs]) if act else envs.action_space.sample()
        obs, _, terminated, truncated, info = envs.step(actions)
        infos.append(info)
        done = terminated | truncated
        if mode == AutoresetMode.DISABLED and done.any():
            obs, _ = envs.reset(options={"reset_mask": done})
    return infos


def plain_episodes(n, steps, mode, seed=100, max_steps=60):
    """Each sub-environment as its own Gymnasium env (seeded seed + j, then autoreset without a
    seed), in the order the vector env ends them: (end step, env index)."""
    rows = []
    for j in range(n):
        env = gym.make("CartPole-v1", max_episode_steps=max_steps)
        obs, _ = env.reset(seed=seed + j)
        t, first = 0, True
        while True:
            total, length = 0.0, 0
            while True:
                obs, reward, terminated, truncated, _ = env.step(ACT(obs))
                total, length, t = total + reward, length + 1, t + 1
                if terminated or truncated:
                    break
            if t > steps:
                break
            row = {"env_index": j, "return": total, "length": length, "terminated": terminated}
            rows.append({**row, "truncated": truncated, "seed": seed + j if first else None})
            rows[-1]["end"] = t
            first = False
            t += mode == AutoresetMode.NEXT_STEP  # the reset takes a step of its own
            obs, _ = env.reset()
    return sorted(rows, key=lambda r: (r["end"], r["env_index"]))


# -- the drop-ins ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_vector_statistics_are_each_sub_environments(mode):
    envs = RecordEpisodeStatistics(make_vec(mode=mode), buffer_length=5)
    infos = drive(envs, 200, mode)
    ended = [
        (j, info["episode"]["r"][j], info["episode"]["l"][j])
        for info in infos
        if "episode" in info
        for j in np.flatnonzero(info["_episode"])
    ]
    expected = plain_episodes(4, 200, mode)
    assert [(j, r, n) for j, r, n in ended] == [
        (e["env_index"], e["return"], e["length"]) for e in expected
    ]
    assert envs.episode_count == len(expected)
    assert list(envs.length_queue) == [e["length"] for e in expected][-5:]
    assert list(envs.return_queue) == [e["return"] for e in expected][-5:]
    for info in infos:  # zeros where no episode ended
        if "episode" in info:
            assert (info["episode"]["l"][~info["_episode"]] == 0).all()


def test_vector_statistics_equal_the_plain_wrapper_per_sub_environment():
    vec = RecordEpisodeStatistics(make_vec(n=3))
    per_env = gym.make_vec(
        "CartPole-v1",
        num_envs=3,
        vectorization_mode="sync",
        max_episode_steps=60,
        wrappers=(PlainStatistics,),
    )
    assert vec.single_action_space == per_env.single_action_space
    obs_a, _ = vec.reset(seed=5)
    obs_b, _ = per_env.reset(seed=5)
    for _ in range(150):
        actions = np.array([ACT(o) for o in obs_a])
        obs_a, _, _, _, info_a = vec.step(actions)
        obs_b, _, _, _, info_b = per_env.step(actions)
        assert np.array_equal(obs_a, obs_b)
        if "episode" in info_a:
            assert np.array_equal(info_a["_episode"], info_b["_episode"])
            for key in ("r", "l"):
                done = info_a["_episode"]
                assert np.array_equal(info_a["episode"][key][done], info_b["episode"][key][done])
    with pytest.raises(ValueError, match="reset_mask"):
        vec.reset(options={"reset_mask": np.zeros(3, bool)})


@pytest.mark.parametrize("mode", MODES)
def test_vector_video_names_and_lengths(tmp_path, mode):
    envs = RecordVideo(
        make_vec(n=4, mode=mode, render=True),
        tmp_path / "films",
        episode_trigger=lambda e: e in (1, 3),
        step_trigger=lambda s: s in (0, 125),
        name_prefix="grid",
    )
    drive(envs, 200, mode)
    envs.close()
    names = sorted(os.listdir(tmp_path / "films"))
    assert names == sorted(
        ["grid-episode-1.mp4", "grid-episode-3.mp4", "grid-step-0.mp4", "grid-step-125.mp4"]
    )
    frames, fps, size = decode(tmp_path / "films" / "grid-episode-1.mp4")
    assert fps == 50 and size == (1200, 800)  # 2 x 2 CartPole frames of 600 x 400
    plain = [e for e in plain_episodes(4, 200, mode) if e["env_index"] == 0]
    # sub-environment 0's episode 1 (the first was 0): its reset frame and one a step; under
    # same-step autoreset its last frame is the next episode's (Gymnasium's behaviour too)
    assert frames == plain[1]["length"] + (0 if mode == AutoresetMode.SAME_STEP else 1)


def test_vector_video_grid_is_the_sub_environments_frames(tmp_path):
    envs = RecordVideo(
        make_vec(n=3, render=True),
        tmp_path,
        step_trigger=lambda s: s == 0,
        video_length=20,
        video_aspect_ratio=(16, 9),
        codec="mjpg",
    )
    obs, _ = envs.reset(seed=7)
    renders = []
    for _ in range(25):
        obs, *_ = envs.step(np.array([ACT(o) for o in obs]))
        renders.append([sub.render() for sub in envs.unwrapped.envs])
    envs.close()
    assert (envs.frame_rows, envs.frame_cols) == (1, 3)  # 1800 x 400 is the closest to 16:9
    path = tmp_path / "rl-video-step-0.avi"
    assert decode(path)[0] == 21
    for k in (0, 10, 20):
        grid = np.concatenate(renders[k], axis=1).astype(int)
        assert np.abs(frame_at(path, k).astype(int) - grid).mean() < 4


def test_vector_video_first_only_and_bad_render_mode(tmp_path):
    envs = RecordVideo(make_vec(n=4, render=True), tmp_path, record_first_only=True)
    drive(envs, 30, AutoresetMode.NEXT_STEP)
    envs.close()
    assert decode(tmp_path / "rl-video-episode-0.mp4")[2] == (600, 400)
    with pytest.raises(ValueError, match="such as rgb_array") as err:
        RecordVideo(make_vec(n=2), tmp_path / "none")
    assert len(err.value.args) == 1


# -- the vector Recorder ---------------------------------------------------------------------


def _rows(run_dir):
    return pq.read_table(run_dir / "episodes.parquet").to_pylist()


@pytest.mark.parametrize("mode", MODES)
def test_recorder_rows_under_each_autoreset_mode(tmp_path, mode):
    envs = Recorder(make_vec(mode=mode), tmp_path, trigger="never", sinks=["parquet"])
    drive(envs, 300, mode)
    envs.close()
    rows = _rows(tmp_path)
    expected = plain_episodes(4, 300, mode)
    assert len(rows) == len(expected) >= 12
    assert [r["episode"] for r in rows] == list(range(len(rows)))  # numbered as they end
    for row, plain in zip(rows, expected, strict=True):
        for column in ("env_index", "return", "length", "terminated", "truncated", "seed"):
            assert row[column] == plain[column], (row["episode"], column)
    assert {r["run_seed"] for r in rows} == {None}
    assert envs.summary["n"] == len(rows)


def test_recorder_seeded_disabled_equals_run_py(tmp_path):
    overrides = ["env.num_envs=4", "seed=3", "episodes=12", "env.max_episode_steps=60"]
    overrides += ["policy=custom", "policy._target_=tests.policies.BalancePolicy"]
    overrides += ["trigger=periodic", "trigger.period=5", "sinks=[parquet]"]
    cli = run_cli(overrides, tmp_path / "cli")
    assert cli.code == 0, cli.proc.stderr
    envs = Recorder(
        make_vec(mode=AutoresetMode.DISABLED, render=True),
        tmp_path / "loop",
        trigger={"_target_": "rlrec.triggers.Periodic", "period": 5},
        video={"envs": "all"},
        sinks=["parquet"],
        seed=3,
    )
    obs, _ = envs.reset()
    for _ in range(400):  # more than 12 episodes' worth
        obs, _, terminated, truncated, _ = envs.step(np.array([ACT(o) for o in obs]))
        done = terminated | truncated
        if done.any():
            obs, _ = envs.reset(options={"reset_mask": done})
    envs.close()
    columns = ["episode", "seed", "return", "length", "terminated", "truncated", "obs_digest"]
    columns += ["env_index", "video"]
    theirs = [{c: r[c] for c in columns} for r in _rows(tmp_path / "cli")]
    ours = [{c: r[c] for c in columns} for r in _rows(tmp_path / "loop")][:12]
    assert ours == theirs
    for row in ours:
        if row["video"]:
            frames, fps, _ = decode(tmp_path / "loop" / row["video"])
            assert (frames, fps) == (row["length"] + 1, 50)


@pytest.mark.parametrize("films", [[1], "all"])
def test_recorder_films_the_chosen_sub_environments(tmp_path, films):
    envs = Recorder(
        make_vec(render=True),
        tmp_path,
        trigger="every",
        video={"envs": films, "codec": "mjpg"},
        sinks=["parquet"],
    )
    obs, _ = envs.reset(seed=100)
    renders = {j: [sub.render()] for j, sub in enumerate(envs.unwrapped.envs)}
    per_episode: dict[int, list[list[np.ndarray]]] = {j: [] for j in range(4)}
    for _ in range(150):
        obs, _, terminated, truncated, _ = envs.step(np.array([ACT(o) for o in obs]))
        for j, sub in enumerate(envs.unwrapped.envs):
            if j in renders:
                renders[j].append(sub.render())
        for j in np.flatnonzero(terminated | truncated):
            per_episode[j].append(renders.pop(j))
        for j, sub in enumerate(envs.unwrapped.envs):  # the reset step that follows (NEXT_STEP)
            if j not in renders and not (terminated | truncated)[j]:
                renders[j] = [sub.render()]
    envs.close()
    rows = _rows(tmp_path)
    chosen = {1} if films == [1] else {0, 1, 2, 3}
    assert {r["env_index"] for r in rows if r["video"]} == chosen
    assert all(r["video"] for r in rows if r["env_index"] in chosen)
    for row in rows:
        if not row["video"]:
            continue
        assert row["video"] == f"videos/eval-episode-{row['episode']}.avi"
        path = tmp_path / row["video"]
        assert decode(path)[:2] == (row["length"] + 1, 50)
        k = sum(
            1 for r in rows if r["env_index"] == row["env_index"] and r["episode"] < row["episode"]
        )
        shot = per_episode[row["env_index"]][k]
        decoded = all_frames(path)
        assert len(decoded) == len(shot) == row["length"] + 1
        for got, rendered in zip(decoded, shot, strict=True):  # frame for frame
            assert np.abs(got.astype(int) - rendered.astype(int)).mean() < 4
    assert not [p for p in os.listdir(tmp_path / "videos") if p.startswith(".")]


def test_recorder_tiled_grid(tmp_path):
    envs = Recorder(
        make_vec(n=4, render=True),
        tmp_path,
        trigger="every",
        video={"tile": True, "codec": "mjpg"},
        sinks=["parquet"],
    )

    def grid():
        subs = [s.render() for s in envs.unwrapped.envs]
        return np.concatenate([np.concatenate(subs[:2], 1), np.concatenate(subs[2:], 1)], 0)

    obs, _ = envs.reset(seed=100)
    grids = [grid()]
    for _ in range(130):
        obs, *_ = envs.step(np.array([ACT(o) for o in obs]))
        grids.append(grid())
    envs.close()
    rows = _rows(tmp_path)
    assert len(rows) == 8 and {r["video"] for r in rows} == {"videos/eval-tiled.avi"}
    path = tmp_path / "videos" / "eval-tiled.avi"
    assert decode(path)[1:] == (50, (1200, 800))
    decoded = all_frames(path)
    assert len(decoded) == 131  # the reset, then one a step
    for got, expected in zip(decoded, grids, strict=True):  # frame for frame
        assert np.abs(got.astype(int) - expected.astype(int)).mean() < 4
    with pytest.raises(ConfigError) as err:
        Recorder(
            make_vec(render=True), tmp_path / "x", trigger="capped_cubic", video={"tile": True}
        )
    assert err.value.key == "video.tile"
    with pytest.raises(ConfigError) as err:
        Recorder(make_vec(render=True), tmp_path / "y", video={"envs": [7]})
    assert err.value.key == "video.envs"
    from rlrec.wrappers import Recorder as PlainRecorder

    with pytest.raises(TypeError, match=r"rlrec\.wrappers\.vector\.Recorder"):
        PlainRecorder(make_vec(), tmp_path / "z")
    with pytest.raises(TypeError, match=r"rlrec\.wrappers\.Recorder"):
        Recorder(gym.make("CartPole-v1"), tmp_path / "w")
