"""The agent contract, checked for every installed algorithm (the registry's, never a hand-kept
list) on small fake problems."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from components import INSTALLED

from drlrun.agent import BuildContext, EnvSpec
from drlrun.algos.offpolicy import due
from drlrun.buffers.replay import UniformConfig
from drlrun.nets import MLPConfig
from drlrun.registry import ALGOS

# Four observation dimensions, as CartPole's: an algorithm whose defaults are made for a task of
# that shape (the example plug-in's binned ranges) is tested on its defaults too.
OBS_DIM = 4
DISCRETE = EnvSpec("fake", 2, (OBS_DIM,), "discrete", 2, ())
BOX = EnvSpec("fake", 2, (OBS_DIM,), "continuous", 0, (2, 2), -np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))
SMALL = {"dqn": {"learning_starts": 4, "batch_size": 4}, "sac": {"learning_starts": 4, "batch_size": 4},
         "td3": {"learning_starts": 4, "batch_size": 4}, "ddpg": {"learning_starts": 4, "batch_size": 4},
         "ppo": {"n_steps": 4, "batch_size": 4, "normalize_obs": True}, "a2c": {"n_steps": 4, "normalize_obs": True},
         "reinforce": {"episodes_per_update": 1, "normalize_obs": True}}


def build(name: str, spec: EnvSpec):
    cls = ALGOS.get(name)
    ctx = BuildContext(spec, MLPConfig(hidden_sizes=[8]), UniformConfig(capacity=64), torch.device("cpu"), 1000, 0)
    return cls(cls.Config(**SMALL.get(name, {})), ctx)  # (an algorithm not in SMALL: its defaults)


def play(agent, spec: EnvSpec, steps: int) -> None:
    rng = np.random.default_rng(0)
    for t in range(steps):
        obs = rng.standard_normal((spec.num_envs, OBS_DIM)).astype(np.float32)
        actions = agent.act(obs, explore=True)
        ended = np.full(spec.num_envs, t % 5 == 4)
        agent.observe(obs, actions, np.ones(spec.num_envs), obs, ended, np.zeros(spec.num_envs, bool),
                      np.ones(spec.num_envs, bool))
        agent.update()


def flat_state(agent) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []

    def walk(x):
        if isinstance(x, torch.Tensor):
            out.append(x.clone())
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(agent.state_dict())
    return out


CASES = [(name, spec) for name in INSTALLED for spec in (DISCRETE, BOX)
         if spec.action_kind in ALGOS.get(name).action_spaces]


@pytest.mark.parametrize(("name", "spec"), CASES, ids=[f"{n}-{s.action_kind}" for n, s in CASES])
def test_actions_fit_the_space_and_evaluation_changes_no_training_state(name, spec):
    torch.manual_seed(0)
    agent = build(name, spec)
    play(agent, spec, 12)
    obs = np.random.default_rng(1).standard_normal((2, OBS_DIM)).astype(np.float32)
    before = flat_state(agent)
    first = agent.act(obs, explore=False)
    second = agent.act(obs, explore=False)
    after = flat_state(agent)
    assert np.array_equal(first, second)  # deterministic evaluation
    assert len(before) == len(after) and all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    if spec.action_kind == "discrete":
        assert first.shape == (2,) and set(first.tolist()) <= {0, 1}
    else:
        assert first.shape == (2, 2, 2) and (np.abs(first) <= 1.0).all()
    explored = agent.act(obs, explore=True)
    assert explored.shape == first.shape


def test_due_keeps_the_schedule_whatever_the_number_of_envs():
    assert due(1000, -1, 256) == (1, 1000)  # the schedule starts with one round
    assert due(1255, 1000, 256) == (0, 1000)
    assert due(1256, 1000, 256) == (1, 1256)
    assert due(12, 0, 4) == (3, 12)  # 3 envs x 4 steps: three rounds of 'every 4 env steps'
    assert due(14, 12, 4) == (0, 12)


def test_dqn_trains_at_the_same_rate_per_env_step_with_more_envs():
    counts = {}
    for n in (1, 4):
        spec = EnvSpec("fake", n, (OBS_DIM,), "discrete", 2, ())
        cls = ALGOS.get("dqn")
        ctx = BuildContext(spec, MLPConfig(hidden_sizes=[8]), UniformConfig(capacity=256), torch.device("cpu"), 1000, 0)
        agent = cls(cls.Config(learning_starts=8, batch_size=4, train_freq=2, gradient_steps=1), ctx)
        play(agent, spec, 64 // n)
        counts[n] = agent.n_updates
    assert counts[1] == counts[4] == (64 - 8) // 2 + 1


def test_clip_grad_norm_matches_torch():
    from drlrun.optim import clip_grad_norm

    torch.manual_seed(0)
    for max_norm in (0.1, 100.0):  # clipped, and left alone
        params = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
        twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for group in (params, twins):
            sum((p ** 3).sum() for p in group).backward()
        ours = clip_grad_norm(params, max_norm)
        theirs = torch.nn.utils.clip_grad_norm_(twins, max_norm)
        assert torch.allclose(ours, theirs)
        for p, q in zip(params, twins, strict=True):
            assert torch.allclose(p.grad, q.grad)


def test_adam_is_torchs_fused_adam_bit_for_bit_and_shares_its_state_dict():
    """drlrun's Adam calls torch's fused kernel without torch.optim's per-step overhead: same
    updates, with a learning rate changed mid-way (schedules write param_groups), a parameter that
    gets no gradient for a while (skipped, its step count and state dict entry left alone), and
    state dicts that load either way."""
    from drlrun.optim import Adam

    torch.manual_seed(0)
    make = lambda: [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3)),  # noqa: E731
                    torch.nn.Parameter(torch.randn(2))]
    ours_params = make()
    theirs_params = [torch.nn.Parameter(p.detach().clone()) for p in ours_params]
    ours = Adam(ours_params, lr=1e-2, eps=1e-5)
    theirs = torch.optim.Adam(theirs_params, lr=1e-2, eps=1e-5, fused=True)
    for step in range(30):
        x = torch.randn(8, 4)
        for params, optimizer in ((ours_params, ours), (theirs_params, theirs)):
            optimizer.zero_grad(set_to_none=True)
            loss = ((x @ params[0] + params[1]) ** 2).mean()
            (loss + params[2].pow(2).sum() if step >= 20 else loss).backward()  # params[2] joins at step 20
            optimizer.step()
            if step == 10:
                optimizer.param_groups[0]["lr"] = 3e-3
        if step == 19:
            assert sorted(ours.state_dict()["state"]) == sorted(theirs.state_dict()["state"]) == [0, 1]
    assert all(torch.equal(a, b) for a, b in zip(ours_params, theirs_params, strict=True))
    assert not torch.equal(ours_params[0], make()[0])  # it did move
    mine, torchs = ours.state_dict(), theirs.state_dict()
    for key in ("lr", "betas", "eps", "weight_decay", "amsgrad", "fused", "params"):
        assert mine["param_groups"][0][key] == torchs["param_groups"][0][key], key
    assert [mine["state"][i]["step"].item() for i in range(3)] == [30.0, 30.0, 10.0]
    for i in range(3):
        assert all(torch.equal(mine["state"][i][k], torchs["state"][i][k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    restored = Adam([torch.nn.Parameter(p.detach().clone()) for p in ours_params], lr=1.0)
    restored.load_state_dict(torchs)
    assert restored.param_groups[0]["lr"] == 3e-3 and torch.equal(restored.exp_avgs[1], ours.exp_avgs[1])
    assert restored.state_dict()["state"][2]["step"].item() == 10.0
    with pytest.raises(ValueError, match="shape"):
        Adam([torch.nn.Parameter(torch.zeros(5, 3)), *ours_params[1:]], lr=1.0).load_state_dict(torchs)
    bad = {"state": {**torchs["state"], 2: {**torchs["state"][2], "exp_avg": torch.zeros(5)}},
           "param_groups": torchs["param_groups"]}
    before = [m.clone() for m in ours.exp_avgs]
    with pytest.raises(ValueError, match="parameter 2"):
        ours.load_state_dict(bad)
    assert all(torch.equal(a, b) for a, b in zip(before, ours.exp_avgs, strict=True))  # nothing half-loaded
    ours.load_state_dict({"state": {0: torchs["state"][0]}, "param_groups": torchs["param_groups"]})
    assert sorted(ours.state_dict()["state"]) == [0] and not ours.exp_avgs[1].any()  # the whole state replaced


def test_an_agents_random_streams_are_independent_children_of_its_seed():
    ctx = BuildContext(DISCRETE, MLPConfig(hidden_sizes=[8]), UniformConfig(capacity=64), torch.device("cpu"), 1000, 7)
    seeds = [ctx.rng_seed(stream) for stream in BuildContext.STREAMS]
    assert len(set(seeds)) == len(seeds) and 7 not in seeds
    spawned = np.random.SeedSequence(7).spawn(len(seeds))  # exactly what SeedSequence.spawn gives
    assert seeds == [int(child.generate_state(1)[0]) for child in spawned]
    dqn = build("dqn", DISCRETE)
    draws = [dqn.rng.random(8), dqn.buffer.rng.random(8), dqn.eval_rng.random(8)]
    assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[0], draws[2])
    ppo = build("ppo", DISCRETE)
    order = torch.randperm(16, generator=ppo.generator)
    assert not torch.equal(order, torch.randperm(16, generator=torch.Generator().manual_seed(0)))


def test_a_noisy_evaluation_does_not_draw_from_the_exploration_stream():
    dqn = build("dqn", DISCRETE)
    before = dqn.rng.bit_generator.state
    dqn.act(np.zeros((2, OBS_DIM), np.float32), explore=False, deterministic=False)
    assert dqn.rng.bit_generator.state == before
