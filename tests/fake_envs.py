"""Tiny deterministic environments whose transitions a test can predict exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class CountEnv(gym.Env):
    """obs = [step within the episode, episode number]; reward 1 per step; terminates after
    ``length`` steps. With ``env.max_episode_steps`` below ``length`` episodes truncate instead."""

    def __init__(self, length: int = 3, continuous: bool = False, action_shape: tuple[int, ...] = (1,)) -> None:
        self.length = length
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = (gym.spaces.Box(-1.0, 1.0, tuple(action_shape), np.float32) if continuous
                             else gym.spaces.Discrete(2))
        self.t = 0
        self.episode = -1

    def _obs(self) -> np.ndarray:
        return np.array([self.t, self.episode], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, self.t >= self.length, False, {}


class GuessEnv(gym.Env):
    """One-step bandit: reward 1 for action 1, else 0. A learner must find it quickly."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.ones(1, dtype=np.float32), {}

    def step(self, action):
        return np.ones(1, dtype=np.float32), float(action == 1), True, False, {}


# 'module:env-id' support: importing this module registers an id, as third-party packages do.
gym.register(id="FakeGuess-v0", entry_point=GuessEnv, max_episode_steps=5)


class NaNRewardEnv(GuessEnv):
    """GuessEnv whose rewards are NaN: any learner's loss becomes NaN (a diverging run)."""

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float("nan"), terminated, truncated, info


class ConstEnv(GuessEnv):
    """One-step episodes paying ``reward`` whatever the action: an evaluation returns exactly it."""

    def __init__(self, reward: float = 1.0) -> None:
        super().__init__()
        self.reward = float(reward)

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, self.reward, terminated, truncated, info
