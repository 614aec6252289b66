"""Checkpoints: what a run writes loads back safely and restores the agent exactly."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from drlrun import checkpoint
from drlrun.agent import BuildContext, EnvSpec
from drlrun.algos.dqn import DQN, DQNConfig
from drlrun.buffers.replay import UniformConfig
from drlrun.errors import DrlrunError
from drlrun.nets import MLPConfig

SPEC = EnvSpec("CartPole-v1", 2, (4,), "discrete", 2, ())


def make_agent(seed: int) -> DQN:
    torch.manual_seed(seed)
    ctx = BuildContext(SPEC, MLPConfig(hidden_sizes=[8]), UniformConfig(capacity=64), torch.device("cpu"), 1000, seed)
    return DQN(DQNConfig(learning_starts=4, train_freq=4, batch_size=4), ctx)


def feed(agent: DQN, steps: int) -> None:
    rng = np.random.default_rng(1)
    for _ in range(steps):
        obs = rng.standard_normal((2, 4)).astype(np.float32)
        agent.observe(obs, agent.act(obs, explore=True), np.ones(2), obs, np.zeros(2, bool), np.zeros(2, bool), np.ones(2, bool))
        agent.update()


def test_save_and_load_restore_the_agent_exactly(tmp_path):
    agent = make_agent(0)
    feed(agent, 20)
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, {"algo": "dqn", "env": "CartPole-v1"}, {"agent": agent.state_dict()})
    header, state = checkpoint.load(path)
    assert header == {"algo": "dqn", "env": "CartPole-v1"}
    other = make_agent(1)
    other.load_state_dict(state["agent"])
    obs = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        assert torch.equal(agent.q_network(torch.from_numpy(obs)), other.q_network(torch.from_numpy(obs)))
    assert other.steps == agent.steps and other.n_updates == agent.n_updates
    feed(agent, 8)
    feed(other, 8)  # same RNG states, same buffer, same optimizer: same future
    assert all(torch.equal(a, b) for a, b in zip(agent.q_network.parameters(), other.q_network.parameters(), strict=True))
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file


class Boom:
    def __reduce__(self):
        return (open, ("/nonexistent-dir/pwned", "w"))


def test_a_pickled_object_is_refused_and_never_run(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "version": 1, "header": {}, "state": {"x": Boom()}}, path)
    with pytest.raises(DrlrunError, match="pickled Python objects"):
        checkpoint.load(path)


def test_corrupt_foreign_and_missing_files_are_refused(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DrlrunError, match="not a readable checkpoint"):
        checkpoint.load(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(DrlrunError, match="not a drlrun checkpoint"):
        checkpoint.load(foreign)
    with pytest.raises(DrlrunError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DrlrunError):
        checkpoint.load(plain)


def test_header_mismatch_names_both_values():
    with pytest.raises(DrlrunError, match=r"written for algo='ppo', but this run has algo='dqn'"):
        checkpoint.check_header("x.pt", {"algo": "ppo"}, {"algo": "dqn"})
