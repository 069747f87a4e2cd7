"""Every option of every config group composes and builds; every user mistake names its key."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from rlrec.build import build
from rlrec.config import validate
from rlrec.envs import make_env
from rlrec.errors import ConfigError
from rlrec.sinks import Sink
from rlrec.triggers import Trigger
from tests.conftest import CONF_DIR, compose_config


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_groups_have_the_contract_options():
    assert {"cartpole", "mountaincar", "acrobot", "pendulum"} <= set(_options("env"))
    assert {"random", "custom"} <= set(_options("policy"))
    assert {"every", "periodic", "never"} <= set(_options("trigger"))
    assert {"parquet", "console", "progress"} <= set(_options("sinks"))


def test_defaults_are_the_evaluation_scenario():
    cfg = compose_config()
    validate(cfg)
    assert cfg.env.id == "CartPole-v1" and cfg.episodes == 4 and cfg.seed == 0
    assert cfg.trigger._target_.endswith("Every")
    assert cfg.video.codec == "h264" and cfg.video.name_prefix == "eval" and cfg.video.fps is None
    assert "parquet" in cfg.sinks


@pytest.mark.parametrize("option", _options("env"))
def test_every_env_builds_and_renders(option):
    cfg = compose_config([f"env={option}"])
    env = make_env(cfg.env, render=True)
    env.reset(seed=0)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3
    env.close()


@pytest.mark.parametrize("option", _options("trigger"))
def test_every_trigger_instantiates(option):
    extra = ["trigger._target_=mypackage.triggers.EveryThird"] if option == "custom" else []
    trigger = instantiate(compose_config([f"trigger={option}", *extra]).trigger)
    assert isinstance(trigger, Trigger) or option == "custom"
    assert isinstance(trigger(0), bool)


@pytest.mark.parametrize("option", _options("sinks"))
def test_every_sink_instantiates(option):
    cfg = compose_config([f"sinks=[{option}]"])
    (node,) = cfg.sinks.values()
    sink = instantiate(node)
    assert isinstance(sink, Sink)


@pytest.mark.parametrize("option", _options("policy"))
def test_every_policy_builds_in_a_runner(tmp_path, option):
    extra = ["policy._target_=mypackage.agents.MyPolicy"] if option == "custom" else []
    if option == "sb3":  # needs a model file (tests/test_sb3.py trains one): says so
        with pytest.raises(ConfigError) as err:
            build(compose_config(["policy=sb3", "trigger=never"]), tmp_path)
        assert err.value.key in ("policy.path", "policy")  # without the extra: what to install
        return
    objects = build(compose_config([f"policy={option}", "trigger=never", *extra]), tmp_path)
    assert callable(objects.hooks.act)
    objects.close()


def test_all_sinks_at_once():
    cfg = compose_config(["sinks=[parquet,console,progress]"])
    assert list(cfg.sinks) == ["parquet", "console", "progress"]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["env.id=CartPol-v1"], "env.id"),
        (["env.id=nosuchmodule:Foo-v0"], "env.id"),
        (["env.max_episode_steps=0"], "env.max_episode_steps"),
        (["env.id=tests.envs:NoRgbCartPole-v0"], "trigger"),
        (["trigger=periodic", "trigger.period=0"], "trigger.period"),
        (["trigger=periodic", "trigger.period=-5"], "trigger.period"),
        (["video.codec=h265"], "video.codec"),
        (["video.fps=0"], "video.fps"),
        (["video.fps=65536"], "video.fps"),
        (["video.fps=1e-77"], "video.fps"),
        (["video.name_prefix=a/b"], "video.name_prefix"),
        (["video.name_prefix='my run'"], "video.name_prefix"),
        (["trigger=adaptive", "trigger.criterion=outlier", "trigger.z=nan"], "trigger.z"),
        (["sinks.parquet.flush_seconds=nan"], "sinks.parquet.flush_seconds"),
        (["policy=custom"], "policy._target_"),
        (["policy=custom", "policy._target_=nowhere.Policy"], "policy._target_"),
        (["policy=custom", "policy._target_=mypackage.agents.Missing"], "policy._target_"),
        (["+policy.nonsense=1"], "policy.nonsense"),
        (["episodes=0"], "episodes"),
        (["seed=-1"], "seed"),
        (["success_threshold=high"], "success_threshold"),
        (["success_threshold=1", "success_key=is_success"], "success_key"),
        (["sinks.parquet.batch_rows=0"], "sinks.parquet.batch_rows"),
        (["sinks.parquet.flush_seconds=-1"], "sinks.parquet.flush_seconds"),
        (["sinks.console.every=0"], "sinks.console.every"),
        (["sinks=[plot]", "sinks.plot.window=x"], "sinks.plot.window"),
        (["checkpoint_every=0"], "checkpoint_every"),
        (["policy=qlearning", "policy.lr=2"], "policy.lr"),
        (["policy=qlearning", "policy.bins=[1,2]"], "policy.bins"),
    ],
)
def test_user_mistakes_name_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as err:
        build(compose_config(overrides), tmp_path)
    assert err.value.key == key
    assert err.value.fix


def test_env_that_cannot_render_is_fine_when_nothing_is_filmed(tmp_path):
    cfg = compose_config(["env.id=tests.envs:NoRgbCartPole-v0", "trigger=never", "episodes=2"])
    build(cfg, tmp_path).close()
