"""Prioritized experience replay (Schaul et al., 2016), proportional variant.

Transition i is sampled with probability P(i) = p_i / sum_k p_k, where p_i = (|delta_i| + eps)^alpha
and new transitions get the largest priority seen so far. The bias this introduces is corrected
by importance-sampling weights w_i = (N * P(i))^-beta / max_j w_j, with beta annealed from
``beta_start`` to ``beta_end`` over training. Priorities live in a sum tree, so sampling and
updating a batch costs O(batch * log capacity), vectorised over the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from drlrun.agent import EnvSpec
from drlrun.buffers.replay import ReplayBatch, ReplayBuffer
from drlrun.config import param
from drlrun.errors import DrlrunError


class SumTree:
    """A complete binary tree whose every node holds the sum of its two children.

    Leaves are ``tree[size:size + capacity]``; ``tree[1]`` is the total.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 1 << max(0, math.ceil(math.log2(capacity)))
        self.depth = int(math.log2(self.size))
        self.tree = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def leaves(self, indices: np.ndarray) -> np.ndarray:
        return self.tree[indices + self.size]

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        nodes = np.asarray(indices) + self.size
        self.tree[nodes] = priorities
        for _ in range(self.depth):
            nodes = np.unique(nodes >> 1)
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]

    def find(self, prefix_sums: np.ndarray) -> np.ndarray:
        """Leaf index i for each value v such that sum(p[:i]) <= v < sum(p[:i + 1])."""
        values = np.array(prefix_sums, dtype=np.float64)
        nodes = np.ones(len(values), dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * nodes
            left_sum = self.tree[left]
            # Never descend into an empty subtree, even when rounding pushes v past the total.
            go_right = (values >= left_sum) & (self.tree[left + 1] > 0)
            values = np.where(go_right, values - left_sum, values)
            nodes = np.where(go_right, left + 1, left)
        return nodes - self.size


@dataclass
class PrioritizedConfig:
    name: str = "prioritized"
    capacity: int = param(100_000, ge=1, help="transitions kept, over all environments")
    alpha: float = param(0.6, ge=0.0, help="how strongly priorities skew sampling (0: uniform)")
    beta_start: float = param(0.4, ge=0.0, le=1.0, help="initial importance-sampling exponent")
    beta_end: float = param(1.0, ge=0.0, le=1.0, help="exponent reached at the end of training")
    eps: float = param(1e-6, gt=0.0, help="added to |TD error| so no transition has zero priority")


class PrioritizedReplayBuffer(ReplayBuffer):
    """Replay buffer that samples transitions in proportion to their last TD error."""

    Config = PrioritizedConfig
    independent_samples = False  # each minibatch depends on the priorities the previous one set

    def __init__(self, cfg: Any, spec: EnvSpec, *, gamma: float, n_step: int,
                 device: torch.device, seed: int, total_steps: int) -> None:
        super().__init__(cfg, spec, gamma=gamma, n_step=n_step, device=device, seed=seed,
                         total_steps=total_steps)
        self.tree = SumTree(self.rows * self.num_envs)
        self.max_priority = 1.0

    @property
    def beta(self) -> float:
        progress = min(1.0, self.steps_added / max(1, self.total_steps))
        return self.cfg.beta_start + progress * (self.cfg.beta_end - self.cfg.beta_start)

    def _on_write(self, row: int, valid: np.ndarray) -> None:
        leaves = row * self.num_envs + np.arange(self.num_envs)
        self.tree.update(leaves, np.where(valid, self.max_priority, 0.0))

    def sample(self, batch_size: int) -> ReplayBatch:
        total = self.tree.total
        if self.num_valid == 0 or total <= 0:
            raise DrlrunError("Cannot sample from an empty replay buffer.")
        # Stratified: one draw from each of batch_size equal slices of the total priority mass.
        bounds = np.arange(batch_size, dtype=np.float64) * (total / batch_size)
        values = bounds + self.rng.random(batch_size) * (total / batch_size)
        flat = self.tree.find(np.minimum(values, np.nextafter(total, 0)))
        probabilities = self.tree.leaves(flat) / total
        weights = (self.num_valid * probabilities) ** (-self.beta)
        weights /= weights.max()
        return self._gather(flat, weights.astype(np.float32))

    def update_priorities(self, indices: np.ndarray, td_errors: torch.Tensor) -> None:
        errors = td_errors.detach().abs().double().cpu().numpy()
        priorities = (errors + self.cfg.eps) ** self.cfg.alpha
        self.tree.update(indices, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(tree=torch.from_numpy(self.tree.tree), max_priority=self.max_priority)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.tree.tree[...] = state["tree"].numpy()
        self.max_priority = float(state["max_priority"])
