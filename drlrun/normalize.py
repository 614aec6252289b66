"""Running statistics for observation and reward normalisation.

They live in the agent (not in an env wrapper) so that every checkpoint carries them, and
evaluation uses them frozen: an agent normalises with ``update=False`` when it does not explore.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class RunningMeanStd:
    """Mean and variance of a stream of batches (Chan et al.'s parallel update), in float64."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = epsilon

    def update(self, batch: np.ndarray) -> None:
        if len(batch) == 0:
            return
        batch_mean = batch.mean(axis=0)
        batch_var = batch.var(axis=0)
        n = len(batch)
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean = np.asarray(self.mean + delta * n / total)
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var = np.asarray(m2 / total)
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": torch.from_numpy(np.array(self.mean)), "var": torch.from_numpy(np.array(self.var)),
                "count": float(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = state["mean"].numpy().astype(np.float64)
        self.var = state["var"].numpy().astype(np.float64)
        self.count = float(state["count"])


class ObsNormalizer:
    """(obs - mean) / std, clipped; statistics updated only while training."""

    def __init__(self, shape: tuple[int, ...], *, enabled: bool, clip: float = 10.0, eps: float = 1e-8) -> None:
        self.enabled = enabled
        self.rms = RunningMeanStd(shape)
        self.clip = clip
        self.eps = eps

    def __call__(self, obs: np.ndarray, *, update: bool) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        if not self.enabled:
            return obs
        if update:
            self.rms.update(obs)
        normed = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.eps)
        return np.clip(normed, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state)


class RewardScaler:
    """Divides rewards by the running std of each env's discounted return (not its mean, so the
    sign of rewards is kept), as PPO's reference implementation does."""

    def __init__(self, num_envs: int, gamma: float, *, enabled: bool, clip: float = 10.0, eps: float = 1e-8) -> None:
        self.enabled = enabled
        self.gamma = gamma
        self.rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.clip = clip
        self.eps = eps

    def __call__(self, rewards: np.ndarray, ended: np.ndarray, valid: np.ndarray) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=np.float64)
        if not self.enabled:
            return rewards.astype(np.float32)
        # An invalid row (an autoreset) starts the env's next episode: its discounted return too.
        self.returns = np.where(valid, self.returns * self.gamma + rewards, 0.0)
        self.rms.update(self.returns[valid])
        scaled = np.clip(rewards / np.sqrt(self.rms.var + self.eps), -self.clip, self.clip)
        self.returns[ended] = 0.0
        return scaled.astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"rms": self.rms.state_dict(), "returns": torch.from_numpy(self.returns.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state["rms"])
        self.returns = state["returns"].numpy().astype(np.float64)
