"""The DQN family's math against hand-worked values."""

from __future__ import annotations

import pytest
import torch

from drlrun.algos.dqn import greedy_value, linear_schedule
from drlrun.algos.offpolicy import td_target
from drlrun.nets import DuelingConfig, DuelingQNetwork


def test_dqn_target_takes_the_max_of_the_target_network():
    next_q_target = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
    y = td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.9, 0.0]), greedy_value(next_q_target))
    assert y.tolist() == pytest.approx([1.0 + 0.9 * 5.0, 1.0])  # no bootstrap after termination


def test_double_dqn_target_scores_the_online_networks_choice_with_the_target_network():
    next_q_target = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
    next_q_online = torch.tensor([[2.0, 1.0], [0.0, 4.0]])  # online picks actions 0 and 1
    y = td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.9, 0.5]), greedy_value(next_q_target, next_q_online))
    assert y.tolist() == pytest.approx([1.0 + 0.9 * 1.0, 1.0 + 0.5 * 2.0])


def test_dueling_aggregation_subtracts_the_mean_advantage():
    net = DuelingQNetwork(DuelingConfig(hidden_sizes=[3]), in_dim=2, out_dim=2)
    with torch.no_grad():
        net.value.weight.zero_()
        net.value.bias.fill_(2.0)  # V = 2
        net.advantage.weight.zero_()
        net.advantage.bias.copy_(torch.tensor([1.0, 3.0]))  # A = [1, 3], mean 2
    assert net(torch.zeros(1, 2)).tolist() == [[1.0, 3.0]]


def test_epsilon_schedule_is_linear_then_flat():
    assert linear_schedule(1.0, 0.04, 8000, 0) == 1.0
    assert linear_schedule(1.0, 0.04, 8000, 4000) == pytest.approx(0.52)
    assert linear_schedule(1.0, 0.04, 8000, 8000) == pytest.approx(0.04)
    assert linear_schedule(1.0, 0.04, 8000, 50_000) == pytest.approx(0.04)
    assert linear_schedule(1.0, 0.04, 0, 0) == 0.04
