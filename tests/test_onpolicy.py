"""The policy-gradient family's math against hand-worked values, and its runs end to end."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from drlrun import checkpoint
from drlrun.agent import BuildContext, EnvSpec
from drlrun.algos.ppo import PPO, PPOConfig, clipped_surrogate
from drlrun.algos.reinforce import policy_gradient_loss
from drlrun.buffers.episodes import discounted_returns
from drlrun.buffers.replay import UniformConfig
from drlrun.buffers.rollout import episode_ends, gae
from drlrun.nets import ActorCritic, MLPConfig, gaussian_log_prob
from drlrun.normalize import ObsNormalizer, RewardScaler, RunningMeanStd

F, T = False, True


def column(*values):
    return np.array(values)[:, None]


def test_gae_with_a_termination_and_a_truncation_inside_one_rollout():
    # gamma = lambda = 0.5, one env:
    #   t0 r=1 V=.5          t1 r=1 V=1 terminated     t2 autoreset row (V = V(final obs) = 2)
    #   t3 r=2 V=1 truncated, V(final obs after it) = 4
    rewards, values = column(1.0, 1.0, 0.0, 2.0), column(0.5, 1.0, 2.0, 1.0)
    terminated, ended = column(F, T, F, F), column(F, T, F, T)
    adv, returns = gae(rewards, values, np.array([4.0]), terminated, ended, gamma=0.5, lam=0.5)
    # t3: 2 + .5*4 - 1 = 3 (truncated: bootstrap from its final observation)
    # t1: 1 + 0 - 1 = 0 (terminated: no bootstrap), and nothing flows back from t2
    # t0: delta = 1 + .5*1 - .5 = 1; A0 = 1 + .25*A1 = 1
    assert adv[[0, 1, 3], 0].tolist() == pytest.approx([1.0, 0.0, 3.0])
    assert returns[[0, 1, 3], 0].tolist() == pytest.approx([1.5, 1.0, 4.0])


def test_gae_bootstraps_a_mid_rollout_truncation_from_the_reset_rows_value():
    # t0 truncated (V(final obs) = 3 sits in the autoreset row t1), t2 an ordinary step, last V = 2
    adv, _ = gae(column(1.0, 0.0, 1.0), column(1.0, 3.0, 1.0), np.array([2.0]), column(F, F, F), column(T, F, F),
                 gamma=0.5, lam=0.5)
    assert adv[0, 0] == pytest.approx(1.0 + 0.5 * 3.0 - 1.0)
    assert adv[2, 0] == pytest.approx(1.0 + 0.5 * 2.0 - 1.0)


def test_gae_with_lambda_one_is_the_discounted_n_step_return():
    rewards = column(1.0, 2.0, 3.0)
    values = column(0.0, 0.0, 0.0)
    _, returns = gae(rewards, values, np.array([10.0]), column(F, F, F), column(F, F, F), gamma=0.9, lam=1.0)
    assert returns[0, 0] == pytest.approx(1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 10)


def test_ppo_clipped_objective_on_a_tiny_batch():
    old = torch.zeros(3)
    new = torch.log(torch.tensor([1.5, 0.5, 1.0])).requires_grad_()
    advantages = torch.tensor([1.0, 1.0, -1.0])
    loss, approx_kl, clip_fraction = clipped_surrogate(new, old, advantages, clip_range=0.2)
    # min(1.5*1, 1.2*1) = 1.2; min(.5*1, .8*1) = .5; min(-1, -1) = -1  ->  loss = -(1.2 + .5 - 1) / 3
    assert loss.item() == pytest.approx(-0.7 / 3)
    assert clip_fraction.item() == pytest.approx(2 / 3)
    assert approx_kl.item() == pytest.approx(((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5)) + 0) / 3)
    loss.backward()
    # the clipped sample (ratio 1.5 > 1.2 with A > 0) gets no gradient; the others do: -A * ratio / 3
    assert new.grad.tolist() == pytest.approx([0.0, -0.5 / 3, 1.0 / 3])


def test_discounted_returns_with_and_without_bootstrap():
    assert discounted_returns(np.array([1.0, 1.0, 1.0]), 0.5).tolist() == [1.75, 1.5, 1.0]
    assert discounted_returns(np.array([1.0, 1.0, 1.0]), 0.5, bootstrap=4.0).tolist() == [2.25, 2.5, 3.0]


def test_a_baseline_lowers_the_variance_of_the_reinforce_gradient():
    """Same policy, same sampled batch: subtracting V(s) = E[G|s] leaves the gradient's mean
    and shrinks its variance (returns here carry a large state-dependent offset)."""
    torch.manual_seed(0)
    policy = torch.nn.Linear(1, 2)
    states = torch.rand(4096, 1)
    with torch.no_grad():
        actions = torch.distributions.Categorical(logits=policy(states)).sample()
    baseline = 100.0 + 50.0 * states.squeeze(1)
    returns = baseline + (actions == 1).float() + 0.1 * torch.randn(4096)

    def gradients(weights: torch.Tensor) -> torch.Tensor:
        grads = []
        for mb in torch.arange(4096).split(32):
            log_probs = torch.log_softmax(policy(states[mb]), -1).gather(1, actions[mb, None]).squeeze(1)
            grad = torch.autograd.grad(policy_gradient_loss(log_probs, weights[mb]), list(policy.parameters()))
            grads.append(torch.cat([g.flatten() for g in grad]))
        return torch.stack(grads)

    plain, with_baseline = gradients(returns), gradients(returns - baseline)
    assert with_baseline.var(0).sum() < 0.01 * plain.var(0).sum()
    assert torch.allclose(with_baseline.mean(0), plain.mean(0), atol=3 * plain.std(0).max().item() / 8)


def test_gaussian_log_prob_matches_torch_distributions():
    mean, log_std, actions = torch.randn(5, 3), torch.randn(3), torch.randn(5, 3)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    assert torch.allclose(gaussian_log_prob(actions, mean, log_std), expected, atol=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_actor_critic_evaluates_what_it_sampled(shared):
    net = ActorCritic(MLPConfig(hidden_sizes=[16], shared=shared), 4, discrete=True, action_dim=3)
    obs = torch.randn(7, 4)
    actions, log_probs, values = net.act(obs, deterministic=False)
    again, entropy, values2 = net.log_prob_entropy_value(obs, actions)
    assert torch.allclose(log_probs, again) and torch.allclose(values, values2)
    assert (entropy <= math.log(3) + 1e-6).all()
    assert net.torsos.n == (1 if shared else 2)  # the critic's own torso, stacked beside the actor's
    assert torch.allclose(net.value(obs), values)


def test_gsde_variance_is_the_features_squared_times_the_weights_variance():
    """gSDE's action noise is z(s) . W with W_jk ~ N(0, sigma_jk^2), so its variance is
    sum_j z_j^2 sigma_jk^2. By hand: z = (1, 2), sigma = (1, 0.5) for one action:
    1 * 1 + 4 * 0.25 = 2."""
    net = ActorCritic(MLPConfig(hidden_sizes=[2]), 3, discrete=False, action_dim=1, sde=True)
    assert net.log_std.shape == (2, 1)
    with torch.no_grad():
        net.log_std.copy_(torch.log(torch.tensor([[1.0], [0.5]])))
    log_std = net._sde_log_std(torch.tensor([[1.0, 2.0]]))
    assert log_std.item() == pytest.approx(0.5 * math.log(2.0), abs=1e-5)
    # and the matrices act() samples with have that spread: 20k draws, one state
    torch.manual_seed(0)
    obs = torch.randn(1, 3).expand(20_000, 3)
    actions, _, _ = net.act(obs, deterministic=False, exploration=net.sample_exploration(20_000))
    features = net._features(obs[:1])[0]
    expected_std = net._sde_log_std(features).exp().item()
    assert actions.std().item() == pytest.approx(expected_std, rel=0.03)
    assert actions.mean().item() == pytest.approx(net.act(obs[:1], deterministic=True)[0].item(), abs=0.03 * expected_std)


def test_gsde_evaluates_what_it_sampled_and_one_matrix_gives_one_action_per_state():
    net = ActorCritic(MLPConfig(hidden_sizes=[8, 8]), 4, discrete=False, action_dim=2, sde=True, log_std_init=-1.0)
    obs = torch.randn(5, 4)
    exploration = net.sample_exploration(5)
    actions, log_probs, _ = net.act(obs, deterministic=False, exploration=exploration)
    again, entropy, _ = net.log_prob_entropy_value(obs, actions)
    assert torch.allclose(log_probs, again, atol=1e-6)
    assert entropy.shape == (5,) and not torch.allclose(entropy, entropy[:1].expand(5))  # depends on the state
    assert torch.equal(net.act(obs, deterministic=False, exploration=exploration)[0], actions)  # noise is W, not per call
    assert not torch.equal(net.act(obs, deterministic=False, exploration=net.sample_exploration(5))[0], actions)
    for term in (again, entropy):  # the noise scale learns through the log-prob and through the entropy
        net.zero_grad()
        term.sum().backward(retain_graph=True)
        assert net.log_std.grad.abs().sum() > 0


def gsde_agent(sde_sample_freq: int) -> PPO:
    pendulum = EnvSpec("Pendulum-v1", 2, (3,), "continuous", 0, (1,), np.array([-2.0], np.float32),
                       np.array([2.0], np.float32))
    ctx = BuildContext(pendulum, MLPConfig(hidden_sizes=[8]), UniformConfig(), torch.device("cpu"), 1000, 0)
    return PPO(PPOConfig(use_sde=True, sde_sample_freq=sde_sample_freq, n_steps=8, batch_size=8), ctx)


def matrices_per_step(agent: PPO, steps: int) -> Iterator[int]:
    """Which draw of exploration matrices each training step used (0, 1, ...), over ``steps``
    steps with an update after each (it learns once the 8-step rollout is full)."""
    obs = np.zeros((2, 3), dtype=np.float32)
    drawn: list[torch.Tensor] = []
    for _ in range(steps):
        actions = agent.act(obs, explore=True)
        if not drawn or agent.exploration is not drawn[-1]:
            drawn.append(agent.exploration)
        agent.observe(obs, actions, np.zeros(2), obs, np.zeros(2, bool), np.zeros(2, bool), np.ones(2, bool))
        agent.update()
        yield len(drawn) - 1


@pytest.mark.parametrize(("freq", "expected"), [
    (4, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3]),   # every 4 steps; the rollout (8 steps) starts afresh
    (3, [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4]),   # every 3 steps, and again at the new rollout's start
    (-1, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]),  # once per rollout
])
def test_gsde_keeps_its_matrices_for_sde_sample_freq_steps_and_draws_new_ones_per_rollout(freq, expected):
    agent = gsde_agent(freq)
    assert list(matrices_per_step(agent, 13)) == expected
    assert agent.n_updates == 1


def test_a_sampled_evaluation_with_gsde_leaves_trainings_matrices_alone():
    agent = gsde_agent(4)
    list(matrices_per_step(agent, 2))
    held = agent.exploration
    eval_obs = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)  # 5 evaluation envs, not 2
    first = agent.act(eval_obs, explore=False, deterministic=False)
    assert first.shape == (5, 1) and agent.exploration is held
    assert not np.array_equal(agent.act(eval_obs, explore=False, deterministic=False), first)  # new draws each step


def test_stacked_torsos_are_orthogonal_and_independent():
    net = ActorCritic(MLPConfig(hidden_sizes=[8, 8]), 4, discrete=True, action_dim=2)
    for weight in net.torsos.weights:  # each member's [in, out] matrix: orthonormal columns or rows, x sqrt(2)
        for member in weight:
            gram = member.T @ member if member.shape[0] >= member.shape[1] else member @ member.T
            assert torch.allclose(gram, 2.0 * torch.eye(len(gram)), atol=1e-5)
    assert not torch.equal(net.torsos.weights[1][0], net.torsos.weights[1][1])
    obs = torch.randn(5, 4)
    net.value(obs).sum().backward()  # the value touches the critic's torso only
    assert all(w.grad[0].abs().sum() == 0 and w.grad[1].abs().sum() > 0 for w in net.torsos.weights)


def test_running_statistics_merge_batches_exactly():
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 2))
    rms = RunningMeanStd((2,), epsilon=0.0)
    for chunk in np.split(data, [10, 250, 600]):
        rms.update(chunk)
    assert rms.mean == pytest.approx(data.mean(0)) and rms.var == pytest.approx(data.var(0))


def test_normalisers_freeze_when_not_updating_and_keep_reward_signs():
    norm = ObsNormalizer((1,), enabled=True)
    norm(np.array([[1.0], [3.0]]), update=True)
    before = norm.rms.mean.copy()
    norm(np.array([[100.0]]), update=False)
    assert norm.rms.mean == pytest.approx(before)
    scaler = RewardScaler(2, 0.99, enabled=True)
    scaled = scaler(np.array([5.0, -5.0]), np.array([F, T]), np.array([T, T]))
    assert scaled[0] > 0 > scaled[1]
    assert scaler.returns.tolist() == [5.0, 0.0]  # the ended env's running return restarts


def run_summary(cli, tmp_path, *args):
    result = cli(*args, "log.progress=false", f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    return json.loads((tmp_path / "run" / "summary.json").read_text()), rows


def test_ppo_on_a_continuous_env_logs_its_metrics_and_saves_normalisation(cli, tmp_path):
    summary, rows = run_summary(cli, tmp_path, "algo=ppo", "env=Pendulum-v1", "total_steps=2048", "algo.n_steps=256",
                                "env.num_envs=2", "algo.normalize_obs=true", "algo.normalize_reward=true",
                                "eval.episodes=2", "eval.interval=1024")
    assert summary["status"] == "completed" and summary["algo"] == "ppo"
    tags = set().union(*rows)
    assert {"losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac",
            "losses/explained_variance", "charts/learning_rate"} <= tags
    _, state = checkpoint.load(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert state["agent"]["obs_norm"]["count"] > 2000  # statistics travel with every checkpoint
    assert abs(float(state["agent"]["obs_norm"]["mean"].abs().sum())) > 0


@pytest.mark.parametrize("algo", ["a2c", "reinforce"])
def test_a2c_and_reinforce_run_on_discrete_and_continuous_envs(cli, tmp_path, algo):
    for env in ("CartPole-v1", "Pendulum-v1"):
        summary, _ = run_summary(cli, tmp_path, f"algo={algo}", f"env={env}", "total_steps=1200", "env.num_envs=2",
                                 "eval.episodes=1", "algo.episodes_per_update=1" if algo == "reinforce" else "algo.n_steps=8")
        assert summary["status"] == "completed"


def test_actor_critic_algorithms_refuse_a_q_network(cli, tmp_path):
    result = cli("algo=ppo", "network=dueling", "total_steps=500")
    assert result.returncode == 2 and "network=dueling" in result.stderr and "Traceback" not in result.stderr


def test_gsde_on_discrete_actions_is_refused(cli):
    result = cli("algo=ppo", "env=CartPole-v1", "algo.use_sde=true", "total_steps=500")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "algo.use_sde=true" in result.stderr and "'CartPole-v1'" in result.stderr and "algo.use_sde=false" in result.stderr


def test_gae_stops_at_an_autoreset_row_that_follows_an_unfinished_step():
    # After a resume that could not rebuild an episode, its cut shows only as the autoreset row t1
    # after the (not ended) step t0: t0 bootstraps from V(t1's observation) = 3 and takes nothing
    # from t1's advantage (which here would be 0 + .5 * 1 - 3 = -2.5).
    ended = episode_ends(column(F, F, F), column(T, F, T))
    assert ended[:, 0].tolist() == [T, F, F]
    adv, _ = gae(column(1.0, 0.0, 1.0), column(1.0, 3.0, 1.0), np.array([2.0]), column(F, F, F), ended,
                 gamma=0.5, lam=0.5)
    assert adv[0, 0] == pytest.approx(1.0 + 0.5 * 3.0 - 1.0)


def test_annealing_stops_at_its_floor_when_a_run_has_more_rollouts_than_planned(cli, tmp_path):
    # 64 steps of 8-step rollouts is 8 updates; evaluations every 2 steps used to add rollouts.
    result = cli("algo=ppo", "env=CartPole-v1", "total_steps=64", "algo.n_steps=8", "algo.batch_size=8",
                 "env.num_envs=1", "eval.interval=2", "eval.episodes=1", "algo.anneal_lr=true",
                 "algo.anneal_clip=true", "log.interval=8", "log.progress=false", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rates = [row["charts/learning_rate"] for row in rows if "charts/learning_rate" in row]
    clips = [row["charts/clip_range"] for row in rows if "charts/clip_range" in row]
    assert len(rates) == 8 and min(rates) >= 0.0 and min(clips) >= 0.0
    assert rates == sorted(rates, reverse=True)


def test_more_updates_than_planned_keep_the_annealed_values_at_zero():
    from drlrun.agent import BuildContext, EnvSpec
    from drlrun.algos.ppo import PPO, PPOConfig
    from drlrun.buffers.replay import UniformConfig

    spec = EnvSpec("fake", 1, (3,), "discrete", 2, ())
    ctx = BuildContext(spec, MLPConfig(hidden_sizes=[8]), UniformConfig(), torch.device("cpu"), 8, 0)
    agent = PPO(PPOConfig(n_steps=4, batch_size=4, anneal_lr=True, anneal_clip=True), ctx)
    assert agent.total_updates == 2
    rng = np.random.default_rng(0)
    for _ in range(4 * 4):  # four rollouts: twice the plan
        obs = rng.standard_normal((1, 3)).astype(np.float32)
        agent.observe(obs, agent.act(obs, explore=True), np.ones(1), obs, column(F)[0], column(F)[0], column(T)[0])
        agent.update()
    assert agent.n_updates == 4 and agent.progress == 1.0
    assert agent.metrics()["charts/learning_rate"] == 0.0 and agent.metrics()["charts/clip_range"] == 0.0


def test_reinforce_learns_only_from_real_episodes():
    from drlrun.agent import BuildContext, EnvSpec
    from drlrun.algos.reinforce import Reinforce, ReinforceConfig
    from drlrun.buffers.replay import UniformConfig

    spec = EnvSpec("fake", 2, (3,), "discrete", 2, ())
    ctx = BuildContext(spec, MLPConfig(hidden_sizes=[8]), UniformConfig(), torch.device("cpu"), 100, 0)
    agent = Reinforce(ReinforceConfig(episodes_per_update=100, baseline=False), ctx)
    obs = np.zeros((2, 3), np.float32)

    def step(terminated, truncated, valid):
        agent.observe(obs, agent.act(obs, explore=True), np.ones(2), obs, np.array(terminated), np.array(truncated),
                      np.array(valid))

    step([F, F], [F, F], [T, T])
    step([T, F], [F, F], [T, T])  # env 0: a 2-step episode ends
    step([F, F], [F, T], [F, T])  # env 0's autoreset row says truncated: no episode; env 1 ends (3 steps)
    assert agent.store.batch_episodes == 2 and agent.store.batch_size == 5
    step([F, F], [F, F], [T, F])  # env 0 steps; env 1 only resets
    step([F, F], [F, F], [F, T])  # env 0's autoreset without an end: its 1-step episode was cut there
    assert agent.store.batch_episodes == 3 and agent.store.batch_size == 6
    assert agent.store.batch_returns[5] == pytest.approx(1.0)  # cut, no baseline: no bootstrap


def test_reward_scaling_restarts_the_discounted_return_at_a_reset_row():
    scaler = RewardScaler(1, gamma=0.5, enabled=True)
    scaler(np.array([2.0]), np.array([F]), np.array([T]))
    assert scaler.returns.tolist() == [2.0]
    scaler(np.array([0.0]), np.array([F]), np.array([F]))  # a reset row with no end before it (a cut)
    assert scaler.returns.tolist() == [0.0]
    scaler(np.array([4.0]), np.array([F]), np.array([T]))
    assert scaler.returns.tolist() == [4.0]  # the new episode's return, nothing carried over
