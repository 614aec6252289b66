"""Uniform experience replay in preallocated arrays, with n-step returns.

Storage is ``[rows, num_envs, ...]``: row ``t`` holds one vector step of every environment, so
an environment's consecutive steps are consecutive rows and n-step windows are plain index
arithmetic. There are no per-transition Python objects.

Gymnasium's next-step autoreset gives each row's next observation for free: the observation in
row ``t + 1`` of an environment *is* the next observation of row ``t``, also where an episode
ended (the final observation is returned on the step that ends it, and the reset happens one
step later, in a row marked invalid). So next observations are not stored twice; only the newest
row's next observations live in a side array. That halves observation memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from drlrun.agent import EnvSpec
from drlrun.config import param
from drlrun.errors import DrlrunError


def observation_dtype(spec: EnvSpec) -> np.dtype:
    """The dtype observations are stored and fed to the network in (``EnvSpec.obs_dtype``): the
    env's own for uint8 and bool frames, float32 otherwise."""
    return np.dtype(spec.obs_dtype)


@dataclass
class UniformConfig:
    name: str = "uniform"
    capacity: int = param(100_000, ge=1, help="transitions kept, over all environments")


class ReplayBatch(NamedTuple):
    """A sampled minibatch as tensors on the training device."""

    obs: torch.Tensor
    actions: torch.Tensor
    returns: torch.Tensor  # n-step discounted reward sum R_t^(m), m <= n
    next_obs: torch.Tensor  # observation m steps later, to bootstrap from
    discounts: torch.Tensor  # gamma^m, or 0 where the window ended in a termination
    weights: torch.Tensor | None  # importance-sampling weights; None for uniform replay
    indices: np.ndarray  # flat positions, for priority updates

    def split(self, parts: int) -> list[ReplayBatch]:
        """``parts`` equal minibatches (views, no copies) of this batch."""
        size = len(self.indices) // parts
        return [ReplayBatch(*(None if field is None else field[i * size:(i + 1) * size] for field in self))
                for i in range(parts)]


class ReplayBuffer:
    """Fixed-capacity ring of transitions, sampled uniformly."""

    Config = UniformConfig
    # Sampling does not depend on what was learned, so a training round may draw all of its
    # minibatches at once (one gather, one host-to-device copy). Prioritized replay sets False.
    independent_samples = True

    def __init__(self, cfg: Any, spec: EnvSpec, *, gamma: float, n_step: int,
                 device: torch.device, seed: int, total_steps: int) -> None:
        self.cfg = cfg
        self.num_envs = n = spec.num_envs
        self.rows = max(2, math.ceil(cfg.capacity / n))
        self.gamma = gamma
        self.n_step = n_step
        self.device = device
        self.total_steps = total_steps
        self.rng = np.random.default_rng(seed)
        discrete = spec.action_kind == "discrete"
        action_shape = () if discrete else spec.action_shape
        obs_dtype = observation_dtype(spec)  # frames stay uint8 (or bool): scaled in the network
        self.obs = np.zeros((self.rows, n, *spec.obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((self.rows, n, *action_shape), dtype=np.int64 if discrete else np.float32)
        self.rewards = np.zeros((self.rows, n), dtype=np.float32)
        self.terminated = np.zeros((self.rows, n), dtype=bool)
        self.ended = np.zeros((self.rows, n), dtype=bool)  # terminated or truncated
        self.valid = np.zeros((self.rows, n), dtype=bool)
        self.newest_next_obs = np.zeros((n, *spec.obs_shape), dtype=obs_dtype)
        self.pos = 0  # next row to write
        self.full = False
        self.num_valid = 0
        self.steps_added = 0
        self.discount_powers = gamma ** np.arange(n_step + 1, dtype=np.float64)

    # ------------------------------------------------------------------ writing
    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray) -> None:
        p = self.pos
        if self.full:
            self.num_valid -= int(self.valid[p].sum())
        self.obs[p] = obs
        self.actions[p] = actions
        self.rewards[p] = rewards
        self.terminated[p] = terminated
        np.logical_or(terminated, truncated, out=self.ended[p])
        self.valid[p] = valid
        self.newest_next_obs[:] = next_obs
        self.num_valid += int(valid.sum())
        self.steps_added += self.num_envs
        self._on_write(p, valid)
        self.pos = (p + 1) % self.rows
        self.full = self.full or self.pos == 0

    def _on_write(self, row: int, valid: np.ndarray) -> None:
        """Hook for prioritized replay: a row was (over)written."""

    @property
    def stored_rows(self) -> int:
        return self.rows if self.full else self.pos

    def __len__(self) -> int:
        """Number of valid transitions stored."""
        return self.num_valid

    @property
    def nbytes(self) -> int:
        arrays = (self.obs, self.actions, self.rewards, self.terminated, self.ended, self.valid,
                  self.newest_next_obs)
        return sum(a.nbytes for a in arrays)

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int) -> ReplayBatch:
        if self.num_valid == 0:
            raise DrlrunError("Cannot sample from an empty replay buffer.")
        flat = self.rng.integers(0, self.stored_rows * self.num_envs, size=batch_size)
        invalid = ~self.valid.reshape(-1)[flat]
        while invalid.any():  # autoreset rows are rare (one per episode): redraw them
            flat[invalid] = self.rng.integers(0, self.stored_rows * self.num_envs, size=int(invalid.sum()))
            invalid = ~self.valid.reshape(-1)[flat]
        return self._gather(flat, None)

    def _gather(self, flat: np.ndarray, weights: np.ndarray | None) -> ReplayBatch:
        rows, envs = np.divmod(flat, self.num_envs)
        if self.n_step == 1:
            last = rows
            returns = self.rewards[rows, envs]
            discounts = np.where(self.terminated[rows, envs], np.float32(0.0), np.float32(self.gamma))
        else:
            returns, last, steps = self._n_step_window(rows, envs)
            discounts = (self.discount_powers[steps] * ~self.terminated[last, envs]).astype(np.float32)
        return ReplayBatch(
            obs=self._tensor(self._obs(rows, envs)),
            actions=self._tensor(self.actions[rows, envs]),
            returns=self._tensor(returns.astype(np.float32, copy=False)),
            next_obs=self._tensor(self._next_obs(last, envs)),
            discounts=self._tensor(discounts),
            weights=None if weights is None else self._tensor(weights),
            indices=flat,
        )

    def _n_step_window(self, rows: np.ndarray, envs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """R = sum_{k<m} gamma^k r_{t+k}, where the window of m <= n steps stops at the first
        episode end (inclusive), before an invalid row and at the newest stored row."""
        ks = np.arange(self.n_step)
        window = (rows[:, None] + ks) % self.rows
        oldest = self.pos if self.full else 0
        age = (rows - oldest) % self.rows
        stored = (age[:, None] + ks) < self.stored_rows
        # An invalid row (an autoreset) ends the window too: it normally follows an episode's end
        # anyway, but after a resume that could not rebuild an episode it is the only mark of its cut.
        valid = self.valid[window, envs[:, None]]
        ended = self.ended[window, envs[:, None]] | ~valid
        ends_before = np.cumsum(ended, axis=1) - ended
        included = stored & valid & (ends_before == 0)
        steps = included.sum(axis=1)
        returns = (self.rewards[window, envs[:, None]] * self.discount_powers[None, :-1] * included).sum(axis=1)
        last = window[np.arange(len(rows)), steps - 1]
        return returns, last, steps

    def _obs(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """The observations of rows ``rows`` (of envs ``envs``); a storage of another layout (frames
        stored once: :mod:`drlrun.buffers.frames`) overrides this and :meth:`_next_obs`."""
        return self.obs[rows, envs]

    def _next_obs(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """The observations that follow rows ``rows``: the next row's, or the newest row's side array."""
        newest = (self.pos - 1) % self.rows
        out = self.obs[(rows + 1) % self.rows, envs]
        is_newest = rows == newest
        if is_newest.any():
            out[is_newest] = self.newest_next_obs[envs[is_newest]]
        return out

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        return tensor if self.device.type == "cpu" else tensor.to(self.device, non_blocking=True)

    def update_priorities(self, indices: np.ndarray, td_errors: torch.Tensor) -> None:
        """Uniform replay has no priorities."""

    # ------------------------------------------------------------------ checkpointing
    _ARRAYS = ("obs", "actions", "rewards", "terminated", "ended", "valid", "newest_next_obs")

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: torch.from_numpy(getattr(self, name)) for name in self._ARRAYS}
        state.update(pos=self.pos, full=self.full, num_valid=self.num_valid,
                     steps_added=self.steps_added, rng=self.rng.bit_generator.state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._ARRAYS:
            array = state[name].numpy()
            if array.shape != getattr(self, name).shape:
                raise DrlrunError(
                    f"The checkpoint's replay buffer has {name} of shape {tuple(array.shape)}, "
                    f"this run expects {getattr(self, name).shape} (buffer.capacity or env.num_envs differ)."
                )
            getattr(self, name)[...] = array
        self.pos, self.full = int(state["pos"]), bool(state["full"])
        self.num_valid, self.steps_added = int(state["num_valid"]), int(state["steps_added"])
        self.rng.bit_generator.state = state["rng"]
