"""Episodes as the runner counts them: in training, in evaluation, and across a resume.

:class:`EpisodeTracker` keeps, per env copy, the episode's number, its return and length so far,
and the episodes that finished since the last log row; training and evaluation
(:func:`evaluate`) count episodes with it alike. :class:`EpisodesInFlight` also keeps the actions
taken in each episode: a checkpoint stores these instead of cutting the episodes, and a resumed
run rebuilds each one by resetting its copy with the episode's seed and replaying the actions
(:meth:`EpisodesInFlight.restore_options`), then checks the observation it reaches against the
saved one.

Autoreset: vector envs run in Gymnasium's next-step mode (see ``envs.py``). When env ``i`` ends an
episode at step t, step t returns the real final observation, and step t + 1 only resets env
``i``: that row is no transition (``valid[i] = False``) and starts the copy's next episode.

Everything here is a few numpy operations per vector step: no Python objects per transition.
Finished episodes are appended to lists only when some episode ends, and flushed at the log
interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from drlrun.envs import RESTORE, reset_seed

EVAL_SEED_OFFSET = 1_000_003  # evaluation envs never share seeds with training envs


class EpisodeTracker:
    """Returns and lengths of the episode each env copy is in, and the finished episodes not yet
    in a log row."""

    def __init__(self, num_envs: int) -> None:
        self.n = num_envs
        self.number = np.zeros(num_envs, dtype=np.int64)  # the copy's episode count, from 0
        self.length = np.zeros(num_envs, dtype=np.int64)  # actions taken in the episode
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.ended = np.zeros(num_envs, dtype=bool)  # ended on the last step: the next one only resets
        self.pending_steps: list[int] = []  # finished episodes since the last log row: the step each ended at
        self.pending_returns: list[float] = []
        self.pending_lengths: list[int] = []
        self.pending_in_tensorboard = 0  # how many of the pending episodes TensorBoard already has
        self.episodes = 0  # finished episodes in log rows so far
        self.last_return: float | None = None  # their mean return in the latest log row that had any

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
        self._log_actions(actions)
        self.length += valid
        self.returns += rewards
        self.ended = ended

    def _log_actions(self, actions: np.ndarray) -> None:
        """(Only :class:`EpisodesInFlight` keeps the actions.)"""

    def finish(self, copies: np.ndarray, step: int) -> None:
        """The episodes of the copies ``copies`` (a mask; they ended on this step, at ``step``)
        are finished: they wait for the next log row."""
        if copies.any():
            for i in np.flatnonzero(copies):
                self.pending_steps.append(step)
                self.pending_returns.append(float(self.returns[i]))
                self.pending_lengths.append(int(self.length[i]))

    def flush(self, telemetry: Any) -> dict[str, float]:
        """The log row's episode statistics (none if no episode finished since the last row); the
        finished episodes also go to TensorBoard, and wait no more."""
        if not self.pending_returns:
            return {}
        self.episodes += len(self.pending_returns)
        self.last_return = float(np.mean(self.pending_returns))
        row = {"charts/episodic_return": self.last_return,
               "charts/episodic_length": float(np.mean(self.pending_lengths)),
               "charts/episodes": float(self.episodes)}
        self.to_tensorboard(telemetry)
        self.pending_steps, self.pending_returns, self.pending_lengths = [], [], []
        self.pending_in_tensorboard = 0
        return row

    def to_tensorboard(self, telemetry: Any) -> None:
        """Finished episodes not yet in TensorBoard go there now, at the steps they ended (at
        every checkpoint too, so a resumed run never writes them twice)."""
        k = self.pending_in_tensorboard
        telemetry.episodes(self.pending_steps[k:], self.pending_returns[k:], self.pending_lengths[k:])
        self.pending_in_tensorboard = len(self.pending_steps)

    def log_state_dict(self) -> dict[str, Any]:
        """The finished episodes and counts a checkpoint keeps (its ``loop`` entries)."""
        return {"episodes": self.episodes, "last_return": self.last_return,
                "pending_steps": list(self.pending_steps), "pending_returns": list(self.pending_returns),
                "pending_lengths": list(self.pending_lengths), "pending_in_tensorboard": self.pending_in_tensorboard}

    def load_log_state_dict(self, loop: dict[str, Any]) -> None:
        self.episodes, self.last_return = loop["episodes"], loop["last_return"]
        self.pending_steps = list(loop["pending_steps"])
        self.pending_returns = list(loop["pending_returns"])
        self.pending_lengths = list(loop["pending_lengths"])
        self.pending_in_tensorboard = loop["pending_in_tensorboard"]


class EpisodesInFlight(EpisodeTracker):
    """An :class:`EpisodeTracker` of the training envs that also keeps the actions taken in each
    episode, so that a checkpoint can record the episodes in flight."""

    def __init__(self, num_envs: int, action_shape: tuple[int, ...], action_dtype: Any, capacity: int = 256) -> None:
        super().__init__(num_envs)
        self.columns = np.arange(num_envs)
        self.actions = np.zeros((capacity, num_envs, *action_shape), dtype=action_dtype)

    def _log_actions(self, actions: np.ndarray) -> None:
        if self.length.max() >= len(self.actions):  # a long episode: double the log
            self.actions = np.concatenate([self.actions, np.zeros_like(self.actions)])
        self.actions[self.length, self.columns] = actions  # an autoreset row's is overwritten later

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

    def start_new_episodes(self) -> None:
        """Every copy begins a new episode (a native vector env after a resume)."""
        self.number += 1
        self.length[:] = 0
        self.returns[:] = 0.0
        self.ended[:] = False


def evaluate(agent: Any, envs: Any, episodes: int, seed: int, deterministic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of ``episodes`` whole episodes, spread evenly over the eval envs.

    Each env runs a fixed number of episodes (not 'the first N to finish', which would favour
    short episodes), and the envs are reset with the same seeds at every evaluation, so
    evaluations along a run are comparable.
    """
    n = envs.num_envs
    quota = np.array([(episodes + i) // n for i in range(n)])
    done_count = np.zeros(n, dtype=np.int64)
    tracker = EpisodeTracker(n)
    obs, _ = envs.reset(seed=reset_seed(envs, seed))
    while (done_count < quota).any():
        actions = agent.act(obs, explore=False, deterministic=deterministic)
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        ended = terminated | truncated
        tracker.step(actions, rewards, ended, tracker.valid)
        counted = ended & (done_count < quota)
        tracker.finish(counted, 0)  # (the step each ended at is not asked for here)
        done_count += counted
    return np.asarray(tracker.pending_returns), np.asarray(tracker.pending_lengths)
