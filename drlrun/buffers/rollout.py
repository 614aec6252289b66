"""On-policy rollout storage and generalised advantage estimation (GAE).

A rollout is ``n_steps`` vector steps of ``num_envs`` environments, kept as ``[n_steps, num_envs]``
arrays. Rows where an environment only reset (Gymnasium's next-step autoreset) are stored with
``valid=False`` and left out of the loss. Because the reset row's observation *is* the final
observation of the episode before it, ``values[t + 1]`` is V(final observation) where an episode
ended at ``t``: truncated episodes bootstrap from it, terminated ones do not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def gae(rewards: np.ndarray, values: np.ndarray, last_values: np.ndarray, terminated: np.ndarray,
        ended: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns (Schulman et al., 2016) for ``[T, N]`` arrays.

    delta_t = r_t + gamma * V(s_{t+1}) * (1 - terminated_t) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - ended_t) * A_{t+1}
    returns = A + V

    ``ended`` = terminated or truncated: no advantage flows back across an episode boundary,
    while a truncated step still bootstraps from V of its final observation. ``last_values`` is
    V of the observation after the last row. ``lam=1`` gives plain n-step returns.
    """
    steps = len(rewards)
    advantages = np.zeros(rewards.shape, dtype=np.float32)
    running = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in reversed(range(steps)):
        next_values = values[t + 1] if t + 1 < steps else last_values
        delta = rewards[t] + gamma * next_values * ~terminated[t] - values[t]
        running = delta + gamma * lam * ~ended[t] * running
        advantages[t] = running
    return advantages, advantages + values


def episode_ends(ended: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``ended`` with every row before an invalid (autoreset) row marked as an end too.

    Normally an autoreset follows an episode's end anyway; after a resume that could not rebuild
    an episode in flight, the autoreset row is the only mark of the cut, and GAE must neither
    carry advantages across it nor stop bootstrapping from the cut step's next observation."""
    out = ended.copy()
    out[:-1] |= ~valid[1:]
    return out


class RolloutBuffer:
    """Preallocated ``[n_steps, num_envs]`` arrays, written once per vector step."""

    def __init__(self, n_steps: int, num_envs: int, obs_shape: tuple[int, ...],
                 action_shape: tuple[int, ...], discrete: bool, obs_dtype: Any = np.float32) -> None:
        """``obs_dtype``: what observations are kept in (frames: uint8 or bool, as the env gives them)."""
        self.n_steps, self.num_envs = n_steps, num_envs
        shape = (n_steps, num_envs)
        self.obs = np.zeros((*shape, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros(shape if discrete else (*shape, *action_shape),
                                dtype=np.int64 if discrete else np.float32)
        self.log_probs = np.zeros(shape, dtype=np.float32)
        self.values = np.zeros(shape, dtype=np.float32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.ended = np.zeros(shape, dtype=bool)
        self.valid = np.zeros(shape, dtype=bool)
        self.next_obs = np.zeros((num_envs, *obs_shape), dtype=obs_dtype)  # after the last row
        self.pos = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, log_probs: np.ndarray, values: np.ndarray,
            rewards: np.ndarray, terminated: np.ndarray, ended: np.ndarray, valid: np.ndarray,
            next_obs: np.ndarray) -> None:
        p = self.pos
        self.obs[p] = obs
        self.actions[p] = actions
        self.log_probs[p] = log_probs
        self.values[p] = values
        self.rewards[p] = rewards
        self.terminated[p] = terminated
        self.ended[p] = ended
        self.valid[p] = valid
        self.next_obs[:] = next_obs
        self.pos = p + 1

    @property
    def full(self) -> bool:
        return self.pos == self.n_steps

    _ARRAYS = ("obs", "actions", "log_probs", "values", "rewards", "terminated", "ended", "valid", "next_obs")

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {k: torch.from_numpy(getattr(self, k).copy()) for k in self._ARRAYS}
        state["pos"] = self.pos
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in self._ARRAYS:
            getattr(self, key)[...] = state[key].numpy()
        self.pos = int(state["pos"])
