"""Image observations end to end: ``network=cnn``, frames kept in their own dtype, MinAtar.

Frames (rank-3 observations, HxWxC or CxHxW) stay uint8 (or bool) in the replay buffer and the
rollout and are scaled to [0, 1] inside the network; a CNN on flat observations or an MLP on
frames is refused before training; a tiny MinAtar run trains, checkpoints, resumes exactly and
exports a policy that takes the frames as the env gives them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TESTS_DIR, run_cli
from test_resume import WALL_CLOCK

from drlrun.agent import BuildContext, EnvSpec
from drlrun.algos.dqn import DQN, DQNConfig
from drlrun.algos.ppo import PPO, PPOConfig
from drlrun.buffers.replay import ReplayBuffer, UniformConfig
from drlrun.errors import DrlrunError
from drlrun.nets import CNN, ActorCritic, CNNConfig, FrameEncoder

MINATAR_NET = ("network=cnn", "network.channels=[16]", "network.kernels=[3]", "network.strides=[1]",
               "network.hidden_sizes=[32]")
SMALL = CNNConfig(channels=[8, 8], kernels=[3, 3], strides=[1, 1], hidden_sizes=[16])


def frames(shape: tuple[int, ...], n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


# ----------------------------------------------------------------------------- the network
def test_nature_cnn_on_stacked_84x84_frames_takes_uint8_and_computes_in_float():
    net = CNN(CNNConfig(), (4, 84, 84), 6, obs_dtype=np.uint8)  # channels first: Atari's frame stack
    seen = []
    net.encoder.convs[0].register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    obs = torch.from_numpy(frames((4, 84, 84)))
    q = net(obs)
    assert q.shape == (5, 6) and q.dtype == torch.float32
    assert seen[0].dtype == torch.float32 and seen[0].shape == (5, 4, 84, 84)
    assert float(seen[0].max()) <= 1.0 and float(seen[0].max()) > 0.9  # scaled by 1/255 inside
    assert net.encoder.out_dim == 64 * 7 * 7  # the Nature torso: 84 -> 20 -> 9 -> 7
    # the same frames as float32 (as a video recorder passes them) act the same: the scale is fixed
    torch.testing.assert_close(net(obs.float()), q)


def test_channels_last_frames_give_what_channels_first_ones_give():
    first = CNN(SMALL, (4, 10, 10), 3, obs_dtype=np.bool_)
    last = CNN(SMALL, (10, 10, 4), 3, obs_dtype=np.bool_)  # MinAtar's HxWxC
    assert not first.encoder.channels_last and last.encoder.channels_last
    last.load_state_dict(first.state_dict())
    obs = torch.from_numpy(np.random.default_rng(1).random((6, 10, 10, 4)) < 0.3)  # booleans, as MinAtar gives
    torch.testing.assert_close(last(obs), first(obs.permute(0, 3, 1, 2)))
    forced = CNN(CNNConfig(channels=[8], kernels=[3], strides=[1], channel_order="first"), (10, 10, 4), 3)
    assert not forced.encoder.channels_last


def test_dueling_head_is_value_plus_centred_advantages():
    net = CNN(CNNConfig(channels=[8], kernels=[3], strides=[1], hidden_sizes=[16], dueling=True), (10, 10, 4), 3)
    obs = torch.from_numpy(frames((10, 10, 4)))
    features = net.torso(net.encoder(obs))
    q = net(obs)
    torch.testing.assert_close(q.mean(dim=1), net.value(features).squeeze(1))
    assert CNN(SMALL, (10, 10, 4), 3).value is None


def test_small_frames_with_the_nature_kernels_are_refused_with_the_fix():
    with pytest.raises(DrlrunError, match=r"network.kernels=\[3\]"):
        FrameEncoder(CNNConfig(), (10, 10, 4), np.bool_)
    with pytest.raises(DrlrunError, match="same length"):
        FrameEncoder(CNNConfig(channels=[16], kernels=[3, 3], strides=[1]), (10, 10, 4), np.bool_)


def test_actor_critic_shares_one_conv_torso_on_frames():
    net = ActorCritic(SMALL, (10, 10, 4), True, 3, obs_dtype=np.uint8)
    assert isinstance(net.encoder, FrameEncoder) and net.shared and net.torsos.n == 1
    obs = torch.from_numpy(frames((10, 10, 4)))
    actions, log_prob, value = net.act(obs, deterministic=True)
    assert actions.shape == log_prob.shape == value.shape == (5,)
    lp, entropy, v = net.log_prob_entropy_value(obs, actions)
    torch.testing.assert_close(lp, log_prob)
    torch.testing.assert_close(v, net.value(obs))
    assert entropy.shape == (5,)


# ----------------------------------------------------------------------------- storage
def spec(dtype: str, shape=(10, 10, 4), n: int = 2) -> EnvSpec:
    return EnvSpec("frames", n, shape, "discrete", 3, (), obs_dtype=dtype)


@pytest.mark.parametrize("dtype", ["uint8", "bool"])
def test_the_replay_buffer_keeps_frames_in_their_dtype(dtype):
    buf = ReplayBuffer(UniformConfig(capacity=40), spec(dtype), gamma=0.9, n_step=1, device=torch.device("cpu"),
                       seed=0, total_steps=100)
    assert buf.obs.dtype == np.dtype(dtype) and buf.newest_next_obs.dtype == np.dtype(dtype)
    stream = frames((10, 10, 4), n=11, seed=3).reshape(11, 1, 10, 10, 4).repeat(2, axis=1)
    stream = stream.astype(dtype) if dtype == "bool" else stream
    ones = np.ones(2, dtype=bool)
    for t in range(10):
        buf.add(stream[t], np.zeros(2, np.int64), np.ones(2, np.float32), stream[t + 1], ~ones, ~ones, ones)
    batch = buf.sample(16)
    assert batch.obs.dtype == batch.next_obs.dtype == torch.from_numpy(stream).dtype
    rows = batch.indices // 2
    np.testing.assert_array_equal(batch.obs.numpy(), stream[rows, 0])
    np.testing.assert_array_equal(batch.next_obs.numpy(), stream[rows + 1, 0])


def ctx(spec_: EnvSpec, network: CNNConfig = SMALL) -> BuildContext:
    return BuildContext(spec_, network, UniformConfig(capacity=64), torch.device("cpu"), 1000, 0)


def test_ppo_keeps_uint8_frames_in_its_rollout_and_learns_from_them():
    agent = PPO(PPOConfig(n_steps=4, batch_size=4, n_epochs=1), ctx(spec("uint8")))
    assert agent.rollout.obs.dtype == np.uint8 and agent.rollout.next_obs.dtype == np.uint8
    stream = frames((10, 10, 4), n=10, seed=5).reshape(5, 2, 10, 10, 4)
    no, yes = np.zeros(2, bool), np.ones(2, bool)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    for t in range(4):
        actions = agent.act(stream[t], explore=True)
        agent.observe(stream[t], actions, np.ones(2, np.float32), stream[t + 1], no, no, yes)
        agent.update()
    np.testing.assert_array_equal(agent.rollout.obs, stream[:4])
    assert agent.n_updates == 1 and any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters(), strict=True))
    float_frames = stream[0].astype(np.float32)  # a video recorder's float copy acts the same
    np.testing.assert_array_equal(agent.act(float_frames, explore=False), agent.act(stream[0], explore=False))


def test_dqn_acts_on_uint8_and_float_copies_of_frames_alike():
    agent = DQN(DQNConfig(learning_starts=0, batch_size=4), ctx(spec("uint8")))
    assert agent.buffer.obs.dtype == np.uint8
    obs = frames((10, 10, 4), n=8)
    np.testing.assert_array_equal(agent.act(obs.astype(np.float32), explore=False), agent.act(obs, explore=False))


def test_normalize_obs_on_frames_is_refused():
    with pytest.raises(DrlrunError, match=r"algo\.normalize_obs=false"):
        PPO(PPOConfig(normalize_obs=True), ctx(spec("uint8")))


# ----------------------------------------------------------------------------- refusals (CLI)
def refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_a_cnn_on_flat_observations_is_refused(tmp_path):
    for algo in ("dqn", "ppo"):
        result = run_cli(f"algo={algo}", "env=CartPole-v1", "network=cnn", "total_steps=1000", "log.progress=false",
                         f"hydra.run.dir={tmp_path / algo}", cwd=tmp_path)
        refused(result, "network=cnn reads frames", "network=mlp")
        assert not (tmp_path / algo / "metrics.jsonl").exists()


def test_an_mlp_on_frames_is_refused(tmp_path):
    pytest.importorskip("minatar")
    for algo, choices in (("dqn", "network=cnn, network=cnn_small."), ("a2c", "network=cnn, network=cnn_small.")):
        result = run_cli(f"algo={algo}", "env.id=MinAtar/Breakout-v1", "network=mlp", "total_steps=10000",
                         "log.progress=false", f"hydra.run.dir={tmp_path / algo}", cwd=tmp_path)
        refused(result, "image observations (frames) of shape (10, 10, 4)", "network=mlp reads flat", choices)


def test_a_minatar_id_without_the_package_names_the_extra(tmp_path):
    script = textwrap.dedent("""
        import sys
        import gymnasium as gym
        for key in [k for k in gym.registry if k.startswith("MinAtar/")]:
            del gym.registry[key]
        sys.modules["minatar"] = None  # as if not installed
        sys.modules["minatar.gym"] = None
        from drlrun.cli import main
        sys.argv = ["drlrun", "algo=dqn", "env=MinAtar-Breakout-v1", "network=cnn", "log.progress=false",
                    "hydra.run.dir=RUN"]
        main()
    """).replace("RUN", str(tmp_path / "run"))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(TESTS_DIR), "PATH": ""})
    # (the console drops '[minatar]' from "pip install 'drlrun[minatar]'": it reads it as rich markup)
    refused(result, "env.id='MinAtar/Breakout-v1' needs the MinAtar package", "Install drlrun's minatar extra")


# ----------------------------------------------------------------------------- MinAtar end to end
def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in rows]


CRASH_AFTER_SECOND_CHECKPOINT = textwrap.dedent("""
    import os, sys
    from drlrun.runner import Run
    real_save = Run.save_checkpoint
    count = {"n": 0}
    def save_then_die(self, name, **kwargs):
        real_save(self, name, **kwargs)
        if name == "latest":
            count["n"] += 1
            if count["n"] == 2:
                os._exit(9)  # killed right after a checkpoint
    Run.save_checkpoint = save_then_die
    from drlrun.cli import main
    sys.argv = ["drlrun", *sys.argv[1:]]
    main()
""")


@pytest.mark.parametrize("algo", [
    ("algo=dqn", "algo.learning_starts=100", "algo.train_freq=2", "algo.target_update_interval=50",
     "algo.batch_size=16", "buffer.capacity=1000"),
    ("algo=ppo", "env.num_envs=2", "algo.n_steps=32", "algo.batch_size=32", "algo.n_epochs=2"),
], ids=["dqn", "ppo"])
def test_a_tiny_minatar_run_completes_resumes_exactly_and_exports(tmp_path, algo):
    pytest.importorskip("minatar")
    args = (*algo, "env=MinAtar-Breakout-v1", *MINATAR_NET, "total_steps=480", "eval.interval=160",
            "eval.episodes=2", "checkpoint.interval=160", "log.interval=80", "log.progress=false", "device=cpu")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    result = run_cli(*args, f"hydra.run.dir={whole}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["total_steps"] == 480
    assert (whole / "checkpoints" / "latest.pt").exists()

    died = subprocess.run([sys.executable, "-c", CRASH_AFTER_SECOND_CHECKPOINT, *args, f"hydra.run.dir={cut}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert died.returncode == 9, died.stderr
    assert metrics(cut) != metrics(whole)  # it stopped part way
    resumed = run_cli(f"resume={cut}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics(cut) == metrics(whole)

    exported = run_cli(str(whole), cwd=tmp_path, exe="drlrun-export")
    assert exported.returncode == 0, exported.stderr
    info = json.loads((whole / "export" / "policy.pt2.json").read_text())
    assert info["input"]["dtype"] == "bool" and info["input"]["shape"] == ["batch", 10, 10, 4]
    assert info["checked_observations"] == 100
    policy = torch.export.load(str(whole / "export" / "policy.pt2")).module()
    obs = np.random.default_rng(0).random((3, 10, 10, 4)) < 0.2
    assert policy(torch.from_numpy(obs)).shape == (3,)


def test_a_frames_environment_chooses_its_network_unless_one_is_given(tmp_path):
    """conf/env/MinAtar-Breakout-v1.yaml names network cnn_small (env.network); env.id=MinAtar/...
    finds that option; an explicit network= wins."""
    for env in ("env=MinAtar-Breakout-v1", "env.id=MinAtar/Breakout-v1"):
        result = run_cli("algo=dqn", env, "--cfg", "job", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        network = yaml.safe_load(result.stdout)["network"]
        assert network["name"] == "cnn" and network["channels"] == [16] and network["hidden_sizes"] == [128]
    result = run_cli("algo=dqn", "env=MinAtar-Breakout-v1", "network=cnn", "--cfg", "job", cwd=tmp_path)
    assert yaml.safe_load(result.stdout)["network"]["channels"] == [32, 64, 64]


def test_a_sweep_over_env_options_gets_the_network_they_share():
    """``-m env=A,B``: both MinAtar options name cnn_small, so the sweep gets it; a list that
    mixes frames and flat observations gets none, and an explicit network= always wins."""
    from drlrun.cli import choose_network

    shared = ["-m", "algo=ppo", "env=MinAtar-Breakout-v1,MinAtar-SpaceInvaders-v1", "seed=0,1"]
    assert choose_network(shared) == ["-m", "network=cnn_small", *shared[1:]]
    mixed = ["-m", "algo=ppo", "env=MinAtar-Breakout-v1,CartPole-v1"]
    assert choose_network(mixed) == mixed
    given = ["-m", "algo=ppo", "env=MinAtar-Breakout-v1,MinAtar-SpaceInvaders-v1", "network=cnn"]
    assert choose_network(given) == given
