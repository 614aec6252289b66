"""Tabular Q-learning (Watkins, 1989) over a grid of observation bins: a complete drlrun plug-in.

Each observation dimension is cut into ``bins`` equal bins between ``low`` and ``high`` (values
outside land in the end bins); the bins' combination indexes a row of the Q table, and one-step
Q-learning moves ``Q(s, a)`` towards ``r + gamma * max_a' Q(s', a')``. The table lives in numpy:
no gradient, no network. It is the algorithm of a first RL course, and enough to balance
CartPole for a while; it shows every part of the contract in ``drlrun/agent.py``:

- ``Config``: a dataclass whose ``name`` is the registry name; its fields become ``algo.*``
  settings, typed and range-checked (``param``), with no YAML file needed.
- ``act`` / ``observe`` / ``update``: what the runner's loop calls, batched over env copies.
- ``state_dict`` / ``load_state_dict``: tensors and plain values only (checkpoints are loaded with
  ``weights_only=True``), so resume continues exactly where the run stopped.
- optional ``metrics`` (TensorBoard scalars), ``check_config`` and ``export_policy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from drlrun.agent import BuildContext
from drlrun.config import param
from drlrun.errors import DrlrunError

# CartPole-v1's useful range per dimension: cart position and velocity, pole angle and angular
# velocity (the pole falls past 0.21 rad). Give low/high of your own for other environments.
CARTPOLE_LOW = [-2.4, -3.0, -0.21, -3.5]
CARTPOLE_HIGH = [2.4, 3.0, 0.21, 3.5]


@dataclass
class TabularQConfig:
    name: str = "tabular_q"
    bins: int = param(8, ge=2, help="equal-width bins per observation dimension")
    low: list[float] = param(CARTPOLE_LOW, help="lower edge of the binned range, one value per dimension")
    high: list[float] = param(CARTPOLE_HIGH, help="upper edge of the binned range, one value per dimension")
    lr: float = param(0.1, gt=0.0, le=1.0, help="step size alpha of the Q-learning update")
    gamma: float = param(0.99, ge=0.0, le=1.0, help="discount factor")
    epsilon_start: float = param(1.0, ge=0.0, le=1.0, help="exploration rate at the start")
    epsilon_end: float = param(0.05, ge=0.0, le=1.0, help="exploration rate after the decay")
    exploration_fraction: float = param(0.5, gt=0.0, le=1.0, help="fraction of total_steps the decay takes")


class TabularQ:
    """Epsilon-greedy tabular Q-learning over binned observations."""

    Config = TabularQConfig
    action_spaces = ("discrete",)

    def __init__(self, cfg: TabularQConfig, ctx: BuildContext) -> None:
        spec = ctx.spec
        if not (len(cfg.low) == len(cfg.high) == spec.obs_dim):
            raise DrlrunError(f"algo.low and algo.high need one value per observation dimension: "
                              f"env.id={spec.id!r} has {spec.obs_dim}, they have {len(cfg.low)} and {len(cfg.high)}.")
        self.cfg = cfg
        self.low = np.asarray(cfg.low, dtype=np.float64)
        self.width = (np.asarray(cfg.high, dtype=np.float64) - self.low) / cfg.bins
        self.strides = cfg.bins ** np.arange(spec.obs_dim)[::-1]  # bin indices -> one row number
        self.q = np.zeros((cfg.bins ** spec.obs_dim, spec.n_actions))
        self.n_actions = spec.n_actions
        self.decay_steps = cfg.exploration_fraction * ctx.total_steps
        self.rng = np.random.default_rng(ctx.rng_seed("exploration"))
        self.steps = 0
        self.last_td_error = 0.0

    @staticmethod
    def check_config(cfg: TabularQConfig, run: Any) -> None:
        if cfg.epsilon_end > cfg.epsilon_start:
            raise DrlrunError(f"algo.epsilon_end={cfg.epsilon_end} is above algo.epsilon_start={cfg.epsilon_start}: "
                              "exploration would grow during training.")

    def state_index(self, obs: np.ndarray) -> np.ndarray:
        bins = np.clip(((obs - self.low) / self.width).astype(np.int64), 0, self.cfg.bins - 1)
        return bins @ self.strides

    def epsilon(self) -> float:
        fraction = min(self.steps / self.decay_steps, 1.0)
        return self.cfg.epsilon_start + fraction * (self.cfg.epsilon_end - self.cfg.epsilon_start)

    def act(self, obs: np.ndarray, *, explore: bool, deterministic: bool = True) -> np.ndarray:
        greedy = self.q[self.state_index(obs)].argmax(axis=1)
        if not explore:
            return greedy
        random_actions = self.rng.integers(self.n_actions, size=len(obs))
        return np.where(self.rng.random(len(obs)) < self.epsilon(), random_actions, greedy)

    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray) -> None:
        """Q(s, a) += lr * (r + gamma * max_a' Q(s', a') - Q(s, a)) for every real transition.
        A truncated episode bootstraps from its final observation; a terminated one does not."""
        self.steps += len(obs)
        s, s_next = self.state_index(obs[valid]), self.state_index(next_obs[valid])
        a = actions[valid]
        td_target = rewards[valid] + self.cfg.gamma * (1.0 - terminated[valid]) * self.q[s_next].max(axis=1)
        td_error = td_target - self.q[s, a]
        np.add.at(self.q, (s, a), self.cfg.lr * td_error)  # (two envs in one state both count)
        if len(td_error):
            self.last_td_error = float(np.abs(td_error).mean())

    def update(self) -> None:
        """Nothing to do: tabular Q-learning learns in ``observe``, one transition at a time."""

    def metrics(self) -> dict[str, float]:
        return {"losses/td_error": self.last_td_error, "charts/epsilon": self.epsilon(),
                "charts/states_visited": float((self.q != 0).any(axis=1).sum())}

    def state_dict(self) -> dict[str, Any]:
        return {"q": torch.from_numpy(self.q.copy()), "steps": self.steps,
                "rng": self.rng.bit_generator.state, "last_td_error": self.last_td_error}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["q"].shape) != self.q.shape:
            raise ValueError(f"Q table of shape {tuple(state['q'].shape)}, expected {self.q.shape}")
        self.q = state["q"].numpy().copy()
        self.steps = state["steps"]
        self.rng.bit_generator.state = state["rng"]
        self.last_td_error = state["last_td_error"]

    def export_policy(self) -> nn.Module:
        return GreedyTablePolicy(self.q, self.low, self.width, self.strides, self.cfg.bins)


class GreedyTablePolicy(nn.Module):
    """The greedy policy in torch alone: observations -> bins -> table row -> best action."""

    def __init__(self, q: np.ndarray, low: np.ndarray, width: np.ndarray, strides: np.ndarray, bins: int) -> None:
        super().__init__()
        self.register_buffer("best", torch.from_numpy(q.argmax(axis=1)))
        self.register_buffer("low", torch.from_numpy(low))
        self.register_buffer("width", torch.from_numpy(width))
        self.register_buffer("strides", torch.from_numpy(strides.astype(np.int64)))
        self.bins = bins

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        bins = ((obs.double() - self.low) / self.width).to(torch.int64).clamp(0, self.bins - 1)
        return self.best[(bins * self.strides).sum(dim=-1)]
