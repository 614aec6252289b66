"""Replay buffers against hand-worked values: n-step windows, autoreset rows, the sum tree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drlrun.agent import EnvSpec
from drlrun.buffers.prioritized import PrioritizedConfig, PrioritizedReplayBuffer, SumTree
from drlrun.buffers.replay import ReplayBuffer, UniformConfig

SPEC = EnvSpec("test", 1, (1,), "discrete", 2, ())

# One env, written the way the runner writes next-step-autoreset steps:
#   (obs, reward, next_obs, terminated, truncated, valid)
ROWS = [
    (0.0, 1.0, 1.0, False, False, True),
    (1.0, 2.0, 2.0, False, False, True),
    (2.0, 3.0, 3.0, True, False, True),  # episode terminates; 3.0 is the final observation
    (3.0, 0.0, 10.0, False, False, False),  # autoreset row: no transition
    (10.0, 4.0, 11.0, False, False, True),
    (11.0, 5.0, 12.0, False, True, True),  # episode truncated (time limit)
    (12.0, 0.0, 20.0, False, False, False),  # autoreset row
    (20.0, 6.0, 21.0, False, False, True),  # newest row
]


def filled(n_step: int, gamma: float = 0.5, capacity: int = 100, cls=ReplayBuffer, cfg=None) -> ReplayBuffer:
    buf = cls(cfg or UniformConfig(capacity=capacity), SPEC, gamma=gamma, n_step=n_step,
              device=torch.device("cpu"), seed=0, total_steps=1000)
    for obs, rew, nxt, term, trunc, valid in ROWS:
        buf.add(np.array([[obs]], np.float32), np.array([1]), np.array([rew]), np.array([[nxt]], np.float32),
                np.array([term]), np.array([trunc]), np.array([valid]))
    return buf


def gather(buf: ReplayBuffer, rows: list[int]):
    return buf._gather(np.array(rows), None)


def test_one_step_targets_use_next_row_as_next_observation():
    b = gather(filled(n_step=1), [0, 2, 5, 7])
    assert b.returns.tolist() == [1.0, 3.0, 5.0, 6.0]
    assert b.next_obs.squeeze(1).tolist() == [1.0, 3.0, 12.0, 21.0]
    # bootstrap on truncation (row 5) and ordinary steps, never after a termination (row 2)
    assert b.discounts.tolist() == [0.5, 0.0, 0.5, 0.5]


def test_n_step_windows_stop_at_episode_ends_and_at_the_newest_row():
    b = gather(filled(n_step=3), [0, 1, 4, 5, 7])
    # row 0: 1 + .5*2 + .25*3 = 2.75, terminated inside the window -> no bootstrap
    # row 1: 2 + .5*3 = 3.5, terminated -> no bootstrap
    # row 4: 4 + .5*5 = 6.5, truncated after 2 steps -> bootstrap with .5^2 from obs 12
    # row 5: 5, truncated -> .5 from obs 12
    # row 7: newest row, window of 1 -> .5 from obs 21
    assert b.returns.tolist() == pytest.approx([2.75, 3.5, 6.5, 5.0, 6.0])
    assert b.discounts.tolist() == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.5])
    assert b.next_obs.squeeze(1).tolist() == [3.0, 3.0, 12.0, 12.0, 21.0]


def test_autoreset_rows_are_never_sampled():
    buf = filled(n_step=1)
    assert len(buf) == 6
    seen = set()
    for _ in range(200):
        seen.update(buf.sample(16).indices.tolist())
    assert seen == {0, 1, 2, 4, 5, 7}


def test_ring_wraps_and_windows_do_not_cross_into_overwritten_rows():
    buf = filled(n_step=3, capacity=4)  # keeps rows 4..7 of ROWS, in slots 0..3
    assert buf.full and buf.pos == 0 and len(buf) == 3
    b = gather(buf, [0, 3])  # slot 0 holds ROWS[4]; slot 3 is the newest (ROWS[7])
    assert b.returns.tolist() == pytest.approx([6.5, 6.0])
    assert b.next_obs.squeeze(1).tolist() == [12.0, 21.0]


def test_memory_is_the_arrays_and_next_observations_are_not_stored_twice():
    spec = EnvSpec("lunar", 1, (8,), "discrete", 4, ())
    buf = ReplayBuffer(UniformConfig(capacity=1_000_000), spec, gamma=0.99, n_step=1,
                       device=torch.device("cpu"), seed=0, total_steps=1)
    per_transition = buf.nbytes / 1_000_000
    assert per_transition < 8 * 4 + 8 + 4 + 3 + 1  # obs once, action, reward, three flags
    assert buf.nbytes < 200 * 2**20


def test_sum_tree_finds_the_leaf_whose_interval_holds_the_value():
    tree = SumTree(5)
    tree.update(np.arange(5), np.array([1.0, 2.0, 3.0, 4.0, 0.0]))
    assert tree.total == 10.0
    values = np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.99, 10.0, 11.0])
    assert tree.find(values).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3]  # never the empty leaf 4


def test_sum_tree_sampling_matches_priority_proportions():
    tree = SumTree(4)
    tree.update(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    tree.update(np.array([0, 0]), np.array([4.0, 4.0]))  # repeated index: last write wins
    tree.update(np.array([0]), np.array([1.0]))
    rng = np.random.default_rng(0)
    counts = np.bincount(tree.find(rng.random(200_000) * tree.total), minlength=4)
    assert counts / counts.sum() == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.005)


def test_prioritized_weights_and_priority_updates():
    cfg = PrioritizedConfig(capacity=100, alpha=1.0, beta_start=1.0, beta_end=1.0, eps=1e-6)
    buf = filled(n_step=1, cls=PrioritizedReplayBuffer, cfg=cfg)
    # new transitions get the max priority (1); autoreset rows get 0
    assert buf.tree.leaves(np.arange(8)).tolist() == [1, 1, 1, 0, 1, 1, 0, 1]
    buf.update_priorities(np.array([0, 1]), torch.tensor([3.0, -1.0]))
    assert buf.tree.leaves(np.array([0, 1])) == pytest.approx([3.0, 1.0])
    assert buf.max_priority == pytest.approx(3.0)
    b = buf.sample(64)
    assert set(b.indices.tolist()) <= {0, 1, 2, 4, 5, 7}
    # w_i = (N P_i)^-beta / max w, with N = 6 valid transitions, total priority 8
    p = buf.tree.leaves(b.indices) / 8.0
    w = (6 * p) ** -1.0
    assert b.weights.numpy() == pytest.approx(w / w.max(), rel=1e-5)
    # the highest-priority transition is sampled most
    counts = np.bincount(np.concatenate([buf.sample(64).indices for _ in range(100)]), minlength=8)
    assert counts.argmax() == 0


def test_prioritized_beta_anneals_with_steps_added():
    cfg = PrioritizedConfig(capacity=10, beta_start=0.4, beta_end=1.0)
    buf = PrioritizedReplayBuffer(cfg, SPEC, gamma=0.9, n_step=1, device=torch.device("cpu"), seed=0, total_steps=8)
    assert buf.beta == pytest.approx(0.4)
    for _ in range(4):
        buf.add(np.zeros((1, 1), np.float32), np.array([0]), np.array([0.0]), np.zeros((1, 1), np.float32),
                np.array([False]), np.array([False]), np.array([True]))
    assert buf.beta == pytest.approx(0.7)


def test_state_dict_round_trip_restores_sampling():
    buf = filled(n_step=2)
    state = buf.state_dict()
    copy = filled(n_step=2)
    copy.sample(8)  # move its RNG
    copy.load_state_dict(state)
    assert buf.sample(8).indices.tolist() == copy.sample(8).indices.tolist()


def test_split_gives_equal_views_of_one_batch():
    b = gather(filled(n_step=1), [0, 2, 5, 7])
    first, second = b.split(2)
    assert first.returns.tolist() == [1.0, 3.0] and second.returns.tolist() == [5.0, 6.0]
    assert second.next_obs.squeeze(1).tolist() == [12.0, 21.0] and second.indices.tolist() == [5, 7]
    assert first.weights is None


def test_a_training_round_draws_its_minibatches_at_once_only_from_uniform_replay():
    from drlrun.algos.offpolicy import OffPolicyAgent

    class Recorder(OffPolicyAgent):
        def __init__(self, buffer):
            self.cfg = type("Cfg", (), {"learning_starts": 0, "train_freq": 4, "gradient_steps": 3, "batch_size": 5})
            self.buffer, self.steps, self.last_train_step, self.batches = buffer, 8, -1, []

        def gradient_step(self, batch):
            self.batches.append(batch)

    draws = []
    for buffer in (filled(n_step=1), filled(n_step=1, cls=PrioritizedReplayBuffer, cfg=PrioritizedConfig())):
        original = buffer.sample
        buffer.sample = lambda size, original=original: draws.append(size) or original(size)
        agent = Recorder(buffer)
        agent.update()
        assert [len(b.indices) for b in agent.batches] == [5, 5, 5]
    assert draws == [15, 5, 5, 5]  # uniform: one draw of 3 x 5; prioritized: three, one per step


def test_an_n_step_window_stops_before_an_autoreset_row_that_follows_no_episode_end():
    # After a resume that could not rebuild an episode, the autoreset row (4) follows an unfinished
    # step (3): the window from row 2 takes rows 2 and 3 only and bootstraps from row 4's
    # observation (the cut step's true next observation), never from the next episode's rows.
    rows = [(0.0, 1.0, 1.0, False, False, True), (1.0, 1.0, 2.0, False, False, True),
            (2.0, 1.0, 3.0, False, False, True), (3.0, 2.0, 4.0, False, False, True),
            (4.0, 0.0, 30.0, False, False, False), (30.0, 7.0, 31.0, False, False, True),
            (31.0, 7.0, 32.0, False, False, True)]
    buf = ReplayBuffer(UniformConfig(capacity=100), SPEC, gamma=0.5, n_step=3, device=torch.device("cpu"), seed=0,
                       total_steps=1000)
    for obs, rew, nxt, term, trunc, valid in rows:
        buf.add(np.array([[obs]], np.float32), np.array([1]), np.array([rew]), np.array([[nxt]], np.float32),
                np.array([term]), np.array([trunc]), np.array([valid]))
    b = gather(buf, [1, 2, 3])
    assert b.returns.tolist() == pytest.approx([1 + 0.5 * 1 + 0.25 * 2, 1 + 0.5 * 2, 2.0])
    assert b.next_obs[:, 0].tolist() == [4.0, 4.0, 4.0]
    assert b.discounts.tolist() == pytest.approx([0.125, 0.25, 0.5])
