"""Whole-episode storage for Monte Carlo methods (REINFORCE), and the discounted returns.

Each environment of the vector env plays its own episodes, of unknown length, into preallocated
``[steps, num_envs]`` arrays that double when an episode outgrows them. When an episode ends, its
steps and their returns G_t move to a flat batch of (obs, action, G_t) that the algorithm learns
from once enough episodes are in it. No per-transition Python objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def discounted_returns(rewards: np.ndarray, gamma: float, bootstrap: float = 0.0) -> np.ndarray:
    """G_t = r_t + gamma * G_{t+1} with G_T = ``bootstrap``, computed backwards over one episode."""
    returns = np.empty(len(rewards), dtype=np.float64)
    running = bootstrap
    for t, reward in zip(range(len(rewards) - 1, -1, -1), rewards[::-1].tolist(), strict=True):
        running = reward + gamma * running
        returns[t] = running
    return returns


class EpisodeStore:
    """Per-env trajectories in preallocated arrays that double when an episode outgrows them;
    finished episodes move to a flat batch of (obs, action, return)."""

    def __init__(self, num_envs: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 discrete: bool, capacity: int = 512) -> None:
        self.num_envs = num_envs
        self.action_dtype = np.int64 if discrete else np.float32
        self.act_shape = () if discrete else action_shape
        self.obs = np.zeros((capacity, num_envs, *obs_shape), dtype=np.float32)
        self.actions = np.zeros((capacity, num_envs, *self.act_shape), dtype=self.action_dtype)
        self.rewards = np.zeros((capacity, num_envs), dtype=np.float64)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.batch_obs = np.zeros((capacity * num_envs, *obs_shape), dtype=np.float32)
        self.batch_actions = np.zeros((capacity * num_envs, *self.act_shape), dtype=self.action_dtype)
        self.batch_returns = np.zeros(capacity * num_envs, dtype=np.float32)
        self.batch_size = 0
        self.batch_episodes = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, valid: np.ndarray) -> None:
        envs = np.flatnonzero(valid)
        if len(envs) and self.length[envs].max() >= len(self.obs):
            self.obs, self.actions, self.rewards = (np.concatenate([a, np.zeros_like(a)]) for a in
                                                    (self.obs, self.actions, self.rewards))
        rows = self.length[envs]
        self.obs[rows, envs] = obs[envs]
        self.actions[rows, envs] = actions[envs]
        self.rewards[rows, envs] = rewards[envs]
        self.length[envs] += 1

    def finish(self, env: int, gamma: float, bootstrap: float) -> None:
        """Env ``env``'s episode ended: append its steps and returns to the batch."""
        n = int(self.length[env])
        end = self.batch_size + n
        if end > len(self.batch_obs):
            grow = max(end, 2 * len(self.batch_obs))
            self.batch_obs = np.resize(self.batch_obs, (grow, *self.batch_obs.shape[1:]))
            self.batch_actions = np.resize(self.batch_actions, (grow, *self.batch_actions.shape[1:]))
            self.batch_returns = np.resize(self.batch_returns, grow)
        self.batch_obs[self.batch_size:end] = self.obs[:n, env]
        self.batch_actions[self.batch_size:end] = self.actions[:n, env]
        self.batch_returns[self.batch_size:end] = discounted_returns(self.rewards[:n, env], gamma, bootstrap)
        self.batch_size = end
        self.batch_episodes += 1
        self.length[env] = 0

    def state_dict(self) -> dict[str, Any]:
        return {"obs": torch.from_numpy(self.obs.copy()), "actions": torch.from_numpy(self.actions.copy()),
                "rewards": torch.from_numpy(self.rewards.copy()), "length": torch.from_numpy(self.length.copy()),
                "batch_obs": torch.from_numpy(self.batch_obs[:self.batch_size].copy()),
                "batch_actions": torch.from_numpy(self.batch_actions[:self.batch_size].copy()),
                "batch_returns": torch.from_numpy(self.batch_returns[:self.batch_size].copy()),
                "batch_episodes": self.batch_episodes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs, self.actions = state["obs"].numpy().copy(), state["actions"].numpy().copy()
        self.rewards, self.length = state["rewards"].numpy().copy(), state["length"].numpy().copy()
        size = len(state["batch_returns"])
        if size > len(self.batch_obs):
            self.batch_obs = np.resize(self.batch_obs, (size, *self.batch_obs.shape[1:]))
            self.batch_actions = np.resize(self.batch_actions, (size, *self.batch_actions.shape[1:]))
            self.batch_returns = np.resize(self.batch_returns, size)
        self.batch_obs[:size] = state["batch_obs"].numpy()
        self.batch_actions[:size] = state["batch_actions"].numpy()
        self.batch_returns[:size] = state["batch_returns"].numpy()
        self.batch_size, self.batch_episodes = size, int(state["batch_episodes"])
