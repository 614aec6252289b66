"""Configuration: composition with presets, typed validation, the registry's errors."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module

from drlrun.compose import to_settings
from drlrun.errors import DrlrunError
from drlrun.registry import ALGOS, Registry


def settings(*overrides: str):
    with initialize_config_module(config_module="drlrun.conf", version_base="1.3"):
        return to_settings(compose(config_name="config", overrides=list(overrides)))


def test_default_is_dqn_on_cartpole_with_its_preset():
    s = settings()
    assert (s.algo.name, s.env.id, s.network.name, s.buffer.name) == ("dqn", "CartPole-v1", "mlp", "uniform")
    assert s.total_steps == 60_000 and s.algo.lr == pytest.approx(2.3e-3)  # from preset/dqn_CartPole-v1
    assert s.algo.double and s.algo.anneal_lr and s.algo.n_step == 3
    assert s.network.hidden_sizes == [256, 256]


def test_command_line_overrides_beat_the_preset():
    s = settings("algo.lr=0.01", "total_steps=1234", "network=dueling")
    assert s.algo.lr == 0.01 and s.total_steps == 1234
    assert s.network.name == "dueling" and s.network.hidden_sizes == [256, 256]


def test_each_dqn_preset_applies_to_its_environment():
    for env, steps in (("Acrobot-v1", 100_000), ("LunarLander-v3", 200_000), ("MountainCar-v0", 120_000)):
        s = settings(f"env={env}")
        assert s.env.id == env and s.total_steps == steps


def test_no_preset_for_an_environment_without_one():
    s = settings("env=gym", "env.id=MountainCarContinuous-v0")
    assert s.env.id == "MountainCarContinuous-v0" and s.total_steps == 100_000


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("algo.gamma=1.5", "algo.gamma=1.5 is out of range"),
        ("algo.batch_size=-4", "algo.batch_size=-4 is out of range"),
        ("env.num_envs=0", "env.num_envs=0 is out of range"),
        ("network.activation=swish", "Valid choices: relu, tanh"),
        ("network.hidden_sizes=[64,-1]", "network.hidden_sizes"),
        ("device=tpu", "Valid choices: auto, cpu, cuda"),
        ("+algo.lrr=0.1", "Unknown key 'algo.lrr'. Did you mean 'lr'?"),
        ("total_steps=0", "total_steps=0 is out of range"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(DrlrunError, match=None) as info:
        settings(override)
    assert message in str(info.value)


def test_registry_error_lists_what_exists():
    registry: Registry[type] = Registry("widget", "drlrun.test-widgets", lambda kind, name, obj: None)
    registry.register("alpha")(int)
    registry.register("beta")(float)
    with pytest.raises(DrlrunError) as info:
        registry.get("alpah")
    assert "Unknown widget 'alpah'" in str(info.value)
    assert "Did you mean 'alpha'?" in str(info.value) and "alpha, beta" in str(info.value)
    with pytest.raises(DrlrunError, match="registered twice"):
        registry.register("alpha")(str)


def test_builtin_algorithms_are_registered():
    assert "dqn" in ALGOS.names()
