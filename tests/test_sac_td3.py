"""SAC, TD3 and DDPG: their math against hand-worked values, then the real command end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from drlrun import checkpoint
from drlrun.agent import BuildContext, EnvSpec
from drlrun.algos import sac, td3
from drlrun.algos.offpolicy import clipped_double_q, qf_loss, soft_update, td_target
from drlrun.buffers.replay import UniformConfig
from drlrun.config import RunConfig
from drlrun.errors import DrlrunError
from drlrun.nets import MLPConfig
from drlrun.policy import ActionScaler

PENDULUM = EnvSpec("Pendulum-v1", 2, (3,), "continuous", 0, (1,),
                   np.array([-2.0], np.float32), np.array([2.0], np.float32))


# --------------------------------------------------------------------------- SAC's math
def test_temperature_loss_by_hand_and_the_direction_it_moves_alpha():
    # log pi = [-1, 0, 1]: the entropy estimate -E[log pi] is 0, above the target -1.
    # J = -log_alpha * mean(log pi + target) = -0.5 * mean([-2, -1, 0]) = -0.5 * -1 = 0.5
    log_alpha = torch.tensor(0.5, requires_grad=True)
    loss = sac.temperature_loss(log_alpha, torch.tensor([-1.0, 0.0, 1.0]), target_entropy=-1.0)
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    # dJ/dlog_alpha = -mean(log pi + target) = +1: gradient descent lowers alpha, since the
    # policy is more random than asked for.
    assert log_alpha.grad.item() == pytest.approx(1.0)
    # Too little entropy (log pi = 2, entropy -2 < -1): the gradient is negative, alpha rises.
    log_alpha.grad = None
    sac.temperature_loss(log_alpha, torch.tensor([2.0]), target_entropy=-1.0).backward()
    assert log_alpha.grad.item() == pytest.approx(-1.0)


def test_temperature_loss_does_not_push_gradients_into_the_policy():
    log_probs = torch.tensor([0.3, -0.2], requires_grad=True)
    sac.temperature_loss(torch.tensor(0.0, requires_grad=True), log_probs, -1.0).backward()
    assert log_probs.grad is None


def test_squashed_gaussian_log_prob_at_zero_by_hand():
    # u = 0 with mean 0, std 1: log N(0; 0, 1) = -log(2 pi) / 2, and tanh'(0) = 1 adds nothing.
    zero = torch.zeros(1, 1)
    assert sac.squashed_gaussian_log_prob(zero, zero, zero).item() == pytest.approx(-0.5 * math.log(2 * math.pi))


def test_squashed_gaussian_log_prob_matches_the_change_of_variables_computed_directly():
    torch.manual_seed(0)
    mean = torch.randn(5, 3, dtype=torch.float64)
    log_std = torch.randn(5, 3, dtype=torch.float64) * 0.5
    u = mean + log_std.exp() * torch.randn(5, 3, dtype=torch.float64)
    # log pi(tanh(u)) = log N(u; mean, std) - sum_j log(1 - tanh(u_j)^2)
    direct = (torch.distributions.Normal(mean, log_std.exp()).log_prob(u)
              - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    ours = sac.squashed_gaussian_log_prob(u, mean, log_std)
    torch.testing.assert_close(ours, direct)
    # ... which is also what torch's own tanh-transformed Normal says
    squashed = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.transforms.TanhTransform()])
    torch.testing.assert_close(ours, squashed.log_prob(torch.tanh(u)).sum(-1))


def test_squashed_gaussian_log_prob_stays_finite_where_tanh_saturates():
    # In float32 tanh(20) == 1 exactly, so log(1 - tanh^2) would be -inf; the stable form gives
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) ~= 2 (0.693 - 20) = -38.6.
    u = torch.tensor([[20.0]])
    log_prob = sac.squashed_gaussian_log_prob(u, torch.tensor([[20.0]]), torch.zeros(1, 1))
    assert torch.isfinite(log_prob).all()
    assert log_prob.item() == pytest.approx(-0.5 * math.log(2 * math.pi) - 2 * (math.log(2) - 20), rel=1e-5)


def test_soft_td_target_by_hand():
    # min(Q1', Q2') = [2, 4]; minus alpha log pi = 0.2 * 0.5 = 0.1 -> soft values [1.9, 3.9]
    next_q = torch.tensor([[2.0, 5.0], [3.0, 4.0]])
    y = td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.99, 0.0]),
                  sac.soft_value(next_q, torch.tensor([0.5, 0.5]), alpha=0.2))
    assert y.tolist() == pytest.approx([1.0 + 0.99 * 1.9, 1.0])  # no bootstrap after termination


def test_critic_and_actor_losses_by_hand():
    q = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # [critics, batch]
    # sample 0: (1/2)(0^2 + 2^2) = 2, sample 1: (1/2)(1^2 + 3^2) = 5 -> mean 3.5
    assert qf_loss(q, torch.tensor([1.0, 1.0])).item() == pytest.approx(3.5)
    # importance weights [1, 0] keep sample 0 only: (2 * 1 + 5 * 0) / 2 = 1
    assert qf_loss(q, torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])).item() == pytest.approx(1.0)
    # alpha log pi - min Q = [0.5 * 1 - 1, 0.5 * -1 - 2] = [-0.5, -2.5] -> mean -1.5
    assert sac.actor_loss(torch.tensor([1.0, -1.0]), q, alpha=0.5).item() == pytest.approx(-1.5)


def test_polyak_update_on_a_tiny_module():
    online, target = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        online.weight.fill_(1.0)
        online.bias.fill_(10.0)
        target.weight.fill_(0.0)
        target.bias.fill_(2.0)
    soft_update(target, online, tau=0.1)  # theta' <- 0.9 theta' + 0.1 theta
    assert (target.weight.item(), target.bias.item()) == pytest.approx((0.1, 2.8))
    soft_update(target, online, tau=0.1)
    assert (target.weight.item(), target.bias.item()) == pytest.approx((0.19, 3.52))
    assert online.weight.item() == 1.0  # the online module is untouched


def test_action_scaler_maps_the_unit_box_onto_asymmetric_bounds_and_back():
    spec = EnvSpec("box", 1, (2,), "continuous", 0, (2,), np.array([0.0, -3.0], np.float32),
                   np.array([1.0, 5.0], np.float32))
    scaler = ActionScaler(spec, "sac", torch.device("cpu"))
    env = scaler.to_env(np.array([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]], np.float32))
    assert env.tolist() == [[0.0, -3.0], [1.0, 5.0], [0.5, 1.0]]
    assert scaler.to_unit(torch.from_numpy(env)).tolist() == [[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]
    warmup = scaler.uniform(np.random.default_rng(0), 1000)
    assert warmup.shape == (1000, 2) and (warmup >= spec.action_low).all() and (warmup <= spec.action_high).all()


def test_unbounded_action_spaces_are_refused():
    spec = EnvSpec("box", 1, (2,), "continuous", 0, (1,), np.array([-np.inf], np.float32),
                   np.array([np.inf], np.float32))
    with pytest.raises(DrlrunError, match="unbounded"):
        ActionScaler(spec, "td3", torch.device("cpu"))


# --------------------------------------------------------------------------- TD3's math
def test_target_smoothing_by_hand():
    # noise clipped to +-0.5 first, then the action to [-1, 1]
    target = torch.tensor([[-1.0, 0.9, 0.0, 0.3]])
    noise = torch.tensor([[-3.0, 3.0, 0.2, -0.6]])
    smoothed = td3.smoothed_target_actions(target, noise, noise_clip=0.5)
    assert smoothed[0].tolist() == pytest.approx([-1.0, 1.0, 0.2, -0.2])


def test_target_smoothing_stays_within_noise_clip_and_the_action_bounds():
    torch.manual_seed(0)
    target = torch.rand(10_000, 2) * 2 - 1  # a deterministic tanh policy's actions
    noise = torch.randn(10_000, 2) * 0.2 * 5  # far wider than the clip
    smoothed = td3.smoothed_target_actions(target, noise, noise_clip=0.5)
    assert smoothed.min() >= -1.0 and smoothed.max() <= 1.0
    assert (smoothed - target).abs().max() <= 0.5 + 1e-6
    assert (smoothed - target).abs().max() > 0.49  # the clip was reached


def test_td3_target_takes_the_smaller_critic_and_ddpg_the_only_one():
    y = td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.0]), clipped_double_q(torch.tensor([[4.0, 9.0], [2.0, 3.0]])))
    assert y.tolist() == pytest.approx([1.0 + 0.5 * 2.0, 1.0])
    y = td_target(torch.tensor([1.0]), torch.tensor([0.5]), clipped_double_q(torch.tensor([[4.0]])))
    assert y.tolist() == pytest.approx([3.0])


def test_ddpg_is_td3_without_its_three_additions():
    c = td3.DDPGConfig()
    assert (c.name, c.policy_delay, c.policy_noise, c.twin) == ("ddpg", 1, 0.0, False)
    assert issubclass(td3.DDPG, td3.TD3) and td3.DDPG.Config is td3.DDPGConfig


# --------------------------------------------------------------------------- agents
def make_agent(algo: str, seed: int):
    torch.manual_seed(seed)
    ctx = BuildContext(PENDULUM, MLPConfig(hidden_sizes=[16]), UniformConfig(capacity=256),
                       torch.device("cpu"), 1000, seed)
    if algo == "sac":
        return sac.SAC(sac.SACConfig(learning_starts=8, batch_size=8), ctx)
    return td3.TD3(td3.TD3Config(learning_starts=8, batch_size=8), ctx)


def feed(agent, steps: int) -> None:
    rng = np.random.default_rng(1)
    for _ in range(steps):
        obs = rng.standard_normal((2, 3)).astype(np.float32)
        actions = agent.act(obs, explore=True)
        assert actions.shape == (2, 1) and actions.dtype == np.float32
        assert (np.abs(actions) <= 2.0).all()  # Pendulum's bounds
        agent.observe(obs, actions, -np.ones(2), obs, np.zeros(2, bool), np.zeros(2, bool), np.ones(2, bool))
        agent.update()


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_checkpoint_round_trip_restores_the_agent_exactly(algo, tmp_path):
    agent = make_agent(algo, 0)
    feed(agent, 20)
    assert agent.n_updates > 0
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, {"algo": algo}, {"agent": agent.state_dict()})  # loads with weights_only=True
    _, state = checkpoint.load(path)
    other = make_agent(algo, 1)
    other.load_state_dict(state["agent"])
    obs = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    assert np.array_equal(agent.act(obs, explore=False), other.act(obs, explore=False))
    assert (other.steps, other.n_updates) == (agent.steps, agent.n_updates)
    for each in (agent, other):  # same RNG states, buffer and optimizers: the same future
        torch.manual_seed(3)
        feed(each, 5)
    assert all(torch.equal(a, b) for a, b in zip(agent.critic.parameters(), other.critic.parameters(), strict=True))


def test_check_config_catches_cross_field_mistakes():
    run = RunConfig(total_steps=1000, buffer=UniformConfig(capacity=100), network=MLPConfig())
    with pytest.raises(DrlrunError, match="learning_starts"):
        sac.SAC.check_config(sac.SACConfig(learning_starts=5000, batch_size=64), run)
    with pytest.raises(DrlrunError, match="batch_size"):
        td3.TD3.check_config(td3.TD3Config(batch_size=256), run)


# --------------------------------------------------------------------------- end to end
SMALL = ("env=Pendulum-v1", "total_steps=600", "algo.learning_starts=200", "eval.episodes=1",
         "eval.interval=300", "log.interval=200", "log.progress=false", "network.hidden_sizes=[32,32]")
TAGS = {
    "sac": {"losses/qf1_values", "losses/qf2_values", "losses/qf_loss", "losses/actor_loss",
            "losses/alpha", "losses/alpha_loss"},
    "td3": {"losses/qf1_values", "losses/qf2_values", "losses/qf_loss", "losses/actor_loss"},
    "ddpg": {"losses/qf1_values", "losses/qf_loss", "losses/actor_loss"},
}


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_a_short_run_trains_and_logs_the_losses(algo, cli, tmp_path):
    run_dir = tmp_path / "run"
    result = cli(f"algo={algo}", *SMALL, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["algo"], summary["status"], summary["total_steps"]) == (algo, "completed", 600)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*rows)
    assert TAGS[algo] <= logged
    assert ("losses/qf2_values" in logged) == (algo != "ddpg")
    assert [r["step"] for r in rows if "eval/return_mean" in r] == [300, 600]


def test_sac_on_a_discrete_env_fails_naming_both_kinds_of_action_space(cli, tmp_path):
    result = cli("algo=sac", "env=CartPole-v1", "total_steps=600", f"hydra.run.dir={tmp_path / 'r'}")
    assert result.returncode != 0
    assert "continuous" in result.stderr and "discrete" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the critics
def test_q_ensemble_critics_are_independent_and_initialised_like_linear_layers():
    from drlrun.nets import QEnsemble

    torch.manual_seed(0)
    critics = QEnsemble(MLPConfig(hidden_sizes=[16, 8]), obs_dim=3, action_dim=2, n=2)
    for weight, fan_in in zip(critics.net.weights, (5, 16, 8), strict=True):
        assert weight.shape[:2] == (2, fan_in) and weight.abs().max() <= 1 / math.sqrt(fan_in)
    assert not torch.equal(critics.net.weights[0][0], critics.net.weights[0][1])  # two different draws
    obs, actions = torch.randn(4, 3), torch.randn(4, 2)
    q = critics(obs, actions)
    assert q.shape == (2, 4)
    # Each row is its own MLP: the batched form equals computing critic i alone ...
    for i in range(2):
        assert torch.allclose(critics.q(i, obs, actions), q[i], atol=1e-6)
        h = torch.cat([obs, actions], 1)
        for layer, (w, b) in enumerate(zip(critics.net.weights, critics.net.biases, strict=True)):
            h = h @ w[i] + b[i]
            h = torch.relu(h) if layer < 2 else h
        assert torch.allclose(h.squeeze(-1), q[i], atol=1e-6)
    # ... and a loss on critic 0 leaves critic 1's parameters without gradient.
    q[0].sum().backward()
    assert all(w.grad[1].abs().sum() == 0 and w.grad[0].abs().sum() > 0 for w in critics.net.weights)
