"""Every autoreset mode, checked by property: Hypothesis draws the vector env (sync or async, its
mode, 1-4 sub-environments), the actions, the episode lengths (through the seed) and the resets
the loop asks for (full resets, reset masks of running episodes, and under DISABLED the masks of
those that ended), and every recorder's rows are compared with the env's own books (``TallyEnv``
counts each episode inside the env, apart from any wrapper)."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import tests.envs  # noqa: F401  (registers Tally-v0)
from rlrec.wrappers.statistics import RecordEpisodeStatistics as PlainStatistics
from rlrec.wrappers.vector import RecordEpisodeStatistics, Recorder, RecordVideo
from rlrec.wrappers.video import RecordVideo as PlainVideo
from tests.conftest import decode

SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@dataclass
class Loop:
    """One drawn loop: the env's set-up and what the user does at each step."""

    mode: AutoresetMode
    vectorization: str
    num_envs: int
    seed: int
    actions: list[list[int]]
    drops: list[list[bool]]  # reset these running episodes after the step (a reset_mask)
    full_resets: list[bool]  # reset every sub-environment after the step (no mask)

    def make(self, wrappers=(), render=False) -> gym.vector.VectorEnv:
        return gym.make_vec(
            "Tally-v0",
            num_envs=self.num_envs,
            vectorization_mode=self.vectorization,
            vector_kwargs={"autoreset_mode": self.mode},
            wrappers=wrappers,
            render_mode="rgb_array" if render else None,
        )

    def drive(self, envs: gym.vector.VectorEnv) -> list[dict]:
        """The user's loop; returns each step's info."""
        event(f"{self.vectorization} {self.mode.name}")
        envs.reset(seed=self.seed)
        infos = []
        for actions, drops, full in zip(self.actions, self.drops, self.full_resets, strict=True):
            _, _, terminated, truncated, info = envs.step(np.array(actions))
            infos.append(info)
            if full:
                envs.reset()
                continue
            mask = np.array(drops)
            if self.mode == AutoresetMode.DISABLED:
                mask |= terminated | truncated  # nothing else starts their next episode
            if mask.any():
                envs.reset(options={"reset_mask": mask})
        return infos


@st.composite
def loops(draw, vectorizations=("sync", "async")) -> Loop:
    n = draw(st.integers(1, 4))
    steps = draw(st.integers(1, 40))

    def per_step(element):  # one value per sub-environment at each step
        return st.lists(st.lists(element, min_size=n, max_size=n), min_size=steps, max_size=steps)

    rare = st.integers(0, 11).map(lambda k: k == 0)  # about one step in twelve
    return Loop(
        mode=draw(st.sampled_from(list(AutoresetMode))),
        vectorization=draw(st.sampled_from(vectorizations)),
        num_envs=n,
        seed=draw(st.integers(0, 2**31)),
        actions=draw(per_step(st.integers(0, 2))),
        drops=draw(per_step(rare)),
        full_resets=draw(st.lists(rare, min_size=steps, max_size=steps)),
    )


def books(envs: gym.vector.VectorEnv) -> list[list[list]]:
    """Each sub-environment's ``[return, length, ended]`` per episode begun, from the env."""
    return list(envs.unwrapped.get_attr("episodes"))


def ended(books_of_env: list[list]) -> list[tuple[float, int]]:
    return [(r, n) for r, n, done in books_of_env if done]


def reported(infos: list[dict], num_envs: int) -> list[list[tuple[float, int]]]:
    """``info["episode"]`` per sub-environment, in the order reported (under same-step
    autoreset a sub-environment's own wrapper reports in ``info["final_info"]``)."""
    per_env: list[list[tuple[float, int]]] = [[] for _ in range(num_envs)]
    for info in infos:
        info = info.get("final_info", info) if "episode" not in info else info
        if "episode" not in info:
            continue
        for j in np.flatnonzero(info["_episode"]):
            per_env[j].append((float(info["episode"]["r"][j]), int(info["episode"]["l"][j])))
    return per_env


@SETTINGS
@given(loop=loops())
def test_vector_statistics(loop):
    envs = RecordEpisodeStatistics(loop.make(), buffer_length=1000)
    infos = loop.drive(envs)
    truth = [ended(b) for b in books(envs)]
    envs.close()
    assert reported(infos, loop.num_envs) == truth
    assert envs.episode_count == sum(map(len, truth))
    assert sorted(envs.length_queue) == sorted(n for t in truth for _, n in t)


@SETTINGS
@given(loop=loops())
def test_plain_statistics_inside_the_thunks(loop):
    envs = loop.make(wrappers=(PlainStatistics,))
    infos = loop.drive(envs)
    truth = [ended(b) for b in books(envs)]
    envs.close()
    assert reported(infos, loop.num_envs) == truth


@settings(SETTINGS, max_examples=12)
@given(loop=loops(vectorizations=("sync",)))
def test_vector_video_films_each_episode_of_the_first(loop, tmp_path_factory):
    folder = tmp_path_factory.mktemp("films")
    envs = RecordVideo(loop.make(render=True), folder, episode_trigger=lambda e: True, codec="mjpg")
    loop.drive(envs)
    first = books(envs)[0]
    envs.close()
    same_step = loop.mode == AutoresetMode.SAME_STEP
    for k, (_, length, done) in enumerate(first):
        # the reset's frame and one a step; under same-step autoreset the ending step shows the
        # next episode, so its frame opens the next film
        expected = length + (0 if same_step and done else 1)
        assert decode(folder / f"rl-video-episode-{k}.avi")[0] == expected, k
    assert len(list(folder.iterdir())) == len(first)


@settings(SETTINGS, max_examples=12)
@given(loop=loops(vectorizations=("sync",)))  # sync: each thunk is told its folder in order
def test_plain_video_inside_the_thunks_films_each_episode(loop, tmp_path_factory):
    root = tmp_path_factory.mktemp("films")
    folders = iter(root / str(j) for j in range(loop.num_envs))

    def film(env):
        return PlainVideo(env, next(folders), episode_trigger=lambda e: True, codec="mjpg")

    envs = loop.make(wrappers=(film,), render=True)
    loop.drive(envs)
    truth = books(envs)
    envs.close()
    for j, episodes in enumerate(truth):
        # each sub-environment's own wrapper sees its reset, then one frame a step
        assert [
            decode(root / str(j) / f"rl-video-episode-{k}.avi")[0] for k in range(len(episodes))
        ] == [length + 1 for _, length, _ in episodes]
        assert len(list((root / str(j)).iterdir())) == len(episodes)


@settings(SETTINGS, max_examples=20)
@given(loop=loops())
def test_vector_recorder_rows(loop, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    video = {"envs": "all", "codec": "mjpg"}
    envs = Recorder(loop.make(render=True), run_dir, "every", video, sinks=["parquet"])
    loop.drive(envs)
    truth = [ended(b) for b in books(envs)]
    envs.close()
    rows = pq.read_table(run_dir / "episodes.parquet").to_pylist()
    assert [r["episode"] for r in rows] == list(range(len(rows)))
    per_env: list[list[tuple[float, int]]] = [[] for _ in range(loop.num_envs)]
    for row in rows:
        per_env[row["env_index"]].append((row["return"], row["length"]))
        assert row["terminated"] == (row["length"] % 2 == 1) != row["truncated"]
        # the reset's frame and one a step (but the last under same-step autoreset: the env
        # shows the next episode by then)
        frames = row["length"] + (loop.mode != AutoresetMode.SAME_STEP)
        assert decode(run_dir / row["video"])[0] == frames
    assert per_env == truth
