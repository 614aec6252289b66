"""The training episodes in flight: what the runner reports of them and what a checkpoint keeps.

Per env copy it tracks the episode's number (the count :class:`drlrun.envs.SeededEpisodes`
keeps), its return and length so far, and the actions taken in it. A checkpoint stores these
instead of cutting the episodes; a resumed run rebuilds each one by resetting its copy with the
episode's seed and replaying the actions (:meth:`EpisodesInFlight.restore_options`), then checks
the observation it reaches against the saved one.

Everything here is a few numpy operations per vector step: no Python objects per transition.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from drlrun.envs import RESTORE


class EpisodesInFlight:
    """Returns, lengths and actions of the episode each env copy is in."""

    def __init__(self, num_envs: int, action_shape: tuple[int, ...], action_dtype: Any, capacity: int = 256) -> None:
        self.n = num_envs
        self.columns = np.arange(num_envs)
        self.number = np.zeros(num_envs, dtype=np.int64)  # the copy's episode count, from 0
        self.length = np.zeros(num_envs, dtype=np.int64)  # actions taken in the episode
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.ended = np.zeros(num_envs, dtype=bool)  # ended on the last step: the next one only resets
        self.actions = np.zeros((capacity, num_envs, *action_shape), dtype=action_dtype)

    @property
    def valid(self) -> np.ndarray:
        """Rows of the coming step that are transitions (the others are autoresets)."""
        return ~self.ended

    def step(self, actions: np.ndarray, rewards: np.ndarray, ended: np.ndarray, valid: np.ndarray) -> None:
        """Record one vector step. ``valid`` is :attr:`valid` as it was before the step (the runner
        already has it). Rows that only reset (their episode ended on the step before) start the
        copy's next episode; the others add their action and reward."""
        if not valid.all():
            resets = ~valid
            self.number += resets
            self.length[resets] = 0
            self.returns[resets] = 0.0
        if self.length.max() >= len(self.actions):  # a long episode: double the log
            self.actions = np.concatenate([self.actions, np.zeros_like(self.actions)])
        self.actions[self.length, self.columns] = actions  # an autoreset row's is overwritten later
        self.length += valid
        self.returns += rewards
        self.ended = ended

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        longest = int(self.length.max())
        return {"number": torch.from_numpy(self.number.copy()), "length": torch.from_numpy(self.length.copy()),
                "returns": torch.from_numpy(self.returns.copy()), "ended": torch.from_numpy(self.ended.copy()),
                "actions": torch.from_numpy(self.actions[:longest].copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.number = state["number"].numpy().copy()
        self.length = state["length"].numpy().copy()
        self.returns = state["returns"].numpy().copy()
        self.ended = state["ended"].numpy().copy()
        actions = state["actions"].numpy()
        if len(actions) >= len(self.actions):
            grown = 2 * len(actions)
            self.actions = np.zeros((grown, *self.actions.shape[1:]), dtype=self.actions.dtype)
        self.actions[:len(actions)] = actions

    def restore_options(self, seeds: list[int], envs: np.ndarray | None = None) -> dict[str, Any]:
        """The reset options with which :class:`drlrun.envs.SeededEpisodes` rebuilds the
        episodes of the copies ``envs`` (all by default): per copy seed, the episode's number, its
        actions, and whether it had just ended."""
        chosen = range(self.n) if envs is None else envs
        return {RESTORE: {seeds[i]: (int(self.number[i]), self.actions[:self.length[i], i].copy(), bool(self.ended[i]))
                          for i in chosen}}

    def start_afresh(self, seeds: list[int], envs: np.ndarray) -> dict[str, Any]:
        """Copies whose episode could not be rebuilt are put where an episode has just ended:
        their next step starts the copy's next episode (a row the agent treats as a reset), and
        the unfinished episode is not reported. Returns the reset options that do this."""
        self.ended[envs] = True
        return {RESTORE: {seeds[i]: (int(self.number[i]), self.actions[:0, i], True) for i in envs}}
