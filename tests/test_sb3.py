"""Stable-Baselines3: PPO recorded by the Recorder while ``model.learn`` runs, and the trained
model evaluated with ``python run.py policy=sb3``. SB3 is the ``[sb3]`` extra, not in
``[test]``: these tests skip where it does not import (CI installs it: RLREC_REQUIRE_ALL=1 turns
the skip into a failure)."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT, decode, plain_loop, run_cli

# one worker trains the module's model once
pytestmark = pytest.mark.xdist_group("sb3")


def _require_sb3():
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        message = 'Stable-Baselines3 is not installed: pip install -e ".[sb3]"'
        if os.environ.get("RLREC_REQUIRE_ALL") == "1":
            pytest.fail(f"RLREC_REQUIRE_ALL=1 and {message}")
        pytest.skip(message)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``examples/sb3_ppo.py`` run as written, in a fresh folder."""
    _require_sb3()
    folder = tmp_path_factory.mktemp("sb3")
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sb3_ppo.py")],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return folder, out


def test_ppo_training_is_recorded_while_it_learns(trained):
    folder, out = trained
    run = folder / "outputs" / "sb3-train"
    episodes = pd.read_parquet(run / "episodes.parquet")
    assert episodes["episode"].tolist() == list(range(len(episodes))) and len(episodes) > 100
    assert episodes["length"].sum() <= 20_000 + 2048  # learn() ends at a rollout's end
    first, last = episodes["return"][:20].mean(), episodes["return"][-20:].mean()
    assert last > first + 100, (first, last)
    assert f"first 20 {first:.1f}, last 20 {last:.1f}" in out.stdout
    filmed = episodes.dropna(subset=["video"])
    assert filmed["episode"].tolist() == [e for e in range(len(episodes)) if e % 25 == 0]
    for row in filmed.iloc[[0, -1]].itertuples():
        assert decode(run / row.video)[:2] == (row.length + 1, 50)
    # SB3 seeds the first reset (seed=0); the Recorder's seed gives the others ss(0, i)
    from rlrec.seeding import ss

    assert episodes["seed"].tolist()[:3] == [0, ss(0, 1), ss(0, 2)]
    assert (run / "report.html").exists() and (run / "summary.json").exists()
    evaluation = pd.read_parquet(folder / "outputs" / "sb3-eval" / "episodes.parquet")
    assert len(evaluation) == 5 and evaluation["video"].notna().all()


def test_the_trained_model_evaluated_by_run_py_equals_its_own_predictions(trained, tmp_path):
    folder, _ = trained
    model_path = folder / "outputs" / "ppo-cartpole.zip"
    result = run_cli(
        ["policy=sb3", f"policy.path={model_path}", "episodes=4", "trigger=never"],
        tmp_path / "run",
    )
    assert result.code == 0, result.proc.stderr
    from stable_baselines3 import PPO

    model = PPO.load(model_path, device="cpu")
    expected = plain_loop(
        "CartPole-v1", 0, 4, act=lambda o: model.predict(o, deterministic=True)[0]
    )
    rows = pd.read_parquet(tmp_path / "run" / "episodes.parquet")
    for column in ("seed", "return", "length", "terminated", "truncated"):
        assert rows[column].tolist() == [r[column] for r in expected], column


def test_sb3_mistakes_name_the_key_and_the_fix(trained, tmp_path):
    cases = [
        (["policy=sb3"], "policy.path"),
        (["policy=sb3", f"policy.path={ROOT / 'README.md'}"], "policy.path"),
        (["policy=sb3", f"policy.path={trained[0] / 'outputs/ppo-cartpole.zip'}",
          "policy.algo=PPO2"], "policy.algo"),
        (["policy=sb3", f"policy.path={trained[0] / 'outputs/ppo-cartpole.zip'}",
          "env=mountaincar"], "policy.path"),
    ]  # fmt: skip
    for i, (args, key) in enumerate(cases):
        result = run_cli([*args, "episodes=1"], tmp_path / str(i))
        assert result.code == 2, (args, result.proc.stderr)
        assert f"rlrec: error: {key}:" in result.proc.stderr
        assert "Traceback" not in result.proc.stderr


def test_a_model_loaded_as_the_wrong_algorithm_names_what_the_file_holds(trained, tmp_path):
    path = trained[0] / "outputs" / "ppo-cartpole.zip"
    result = run_cli(["policy=sb3", f"policy.path={path}", "policy.algo=DQN"], tmp_path)
    assert result.code == 2 and "Traceback" not in result.proc.stderr
    (line,) = result.proc.stderr.strip().splitlines()
    assert line.startswith("rlrec: error: policy.algo: ")
    assert "ActorCriticPolicy" in line and "settings of PPO" in line
    assert "Fix: pass policy.algo=PPO" in line


def test_the_algorithm_is_read_from_every_kind_of_model_file(tmp_path):
    """Each algorithm saves a model; the file alone says which (SB3's zip names none)."""
    _require_sb3()
    import stable_baselines3

    from rlrec.sb3 import _saved_policy

    for name, env_id in [
        ("PPO", "CartPole-v1"), ("A2C", "CartPole-v1"), ("DQN", "CartPole-v1"),
        ("SAC", "Pendulum-v1"), ("TD3", "Pendulum-v1"), ("DDPG", "Pendulum-v1"),
    ]:  # fmt: skip
        algo = getattr(stable_baselines3, name)
        algo("MlpPolicy", env_id, device="cpu").save(tmp_path / name)
        policy, matching, family = _saved_policy(tmp_path / f"{name}.zip")
        assert matching == [name] and name in family, (name, matching)
        saved_class = algo.policy_aliases["MlpPolicy"]
        assert policy == f"{saved_class.__module__}.{saved_class.__qualname__}"


@pytest.mark.parametrize(
    ("overrides", "omp", "threads"),
    [
        (["env.num_envs=2"], None, 1),
        (["workers=2"], None, 1),
        (["env.num_envs=2"], "2", 2),  # the user's setting wins
        ([], None, None),  # one env in one process: torch's default
    ],
)
def test_torch_uses_one_thread_where_envs_share_the_cores(tmp_path, overrides, omp, threads):
    _require_sb3()  # torch comes with it
    environ = {"OMP_NUM_THREADS": omp, "MKL_NUM_THREADS": None}
    if threads is None:  # torch's default in a process of its own
        code = "import torch; print(torch.get_num_threads())"
        default = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={k: v for k, v in os.environ.items() if k not in environ},
        )  # fmt: skip
        threads = int(default.stdout)
    (tmp_path / "threads").mkdir()
    args = ["policy=custom", "policy._target_=tests.policies.TorchThreadsPolicy"]
    args += [f"+policy.folder={tmp_path / 'threads'}", "episodes=4", "trigger=never"]
    result = run_cli([*args, *overrides], tmp_path / "run", environ=environ)
    assert result.code == 0, result.proc.stderr
    seen = [int(n) for f in (tmp_path / "threads").iterdir() for n in f.read_text().split()]
    assert len(seen) == 4 and set(seen) == {threads}


def test_without_the_extra_policy_sb3_says_what_to_install(tmp_path):
    shadow = tmp_path / "shadow" / "stable_baselines3"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named stable_baselines3')\n")
    cmd = [sys.executable, str(ROOT / "run.py"), "policy=sb3", "policy.path=model.zip"]
    cmd.append(f"hydra.run.dir={tmp_path / 'run'}")
    env = {"PYTHONPATH": str(tmp_path / "shadow"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert 'pip install -e ".[sb3]"' in proc.stderr and "policy" in proc.stderr


@pytest.mark.parametrize("vec_env", ["DummyVecEnv", "SubprocVecEnv"])
def test_sub_environments_filming_into_one_folder_train_on(vec_env, tmp_path):
    # the usual SB3 line: every sub-environment's RecordVideo on one folder, numbering its
    # episodes alike; each writer has its own partial file, and a final name is only ever
    # replaced by a whole film
    _require_sb3()
    code = f"""
import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import {vec_env}
from rlrec.wrappers import RecordVideo
folder = {str(tmp_path / "videos")!r}
envs = make_vec_env(
    "CartPole-v1", n_envs=4, seed=0, vec_env_cls={vec_env},
    env_kwargs={{"render_mode": "rgb_array"}},
    wrapper_class=lambda e: RecordVideo(e, folder, name_prefix="ppo",
                                        episode_trigger=lambda i: i % 3 == 0),
)
PPO("MlpPolicy", envs, n_steps=128, batch_size=64, n_epochs=1, device="cpu", seed=0).learn(1024)
envs.close()
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert files and all(not name.startswith(".") for name in files), files  # no partial file
    for name in files:
        frames, _, size = decode(tmp_path / "videos" / name)
        assert frames > 1 and size == (600, 400), name
    assert "Overwriting" in done.stderr  # four sub-environments filmed ppo-episode-0.mp4
