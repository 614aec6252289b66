"""Replay that stores each frame once, for observations that are stacks of the last k frames
(Atari through Gymnasium's FrameStackObservation: 4 x 84 x 84 uint8).

A stack of k frames repeats each frame in k consecutive observations, and a next observation
repeats the observation's frames once more: stored whole, a transition costs 2k frames (k when
next observations come from the following row, as in :class:`ReplayBuffer`). This buffer keeps
the newest frame of each observation only, in the rows :class:`ReplayBuffer` would have held the
whole stacks in, and rebuilds the stacks, observations and next observations alike, with one
index gather per batch: about one frame per transition (7 GB for 1M Atari transitions, against
28 GB for whole stacks stored once and 56 GB for stacks stored twice).

How a stack is found again. Row t of an env holds frame f_t, the newest frame of that row's
observation, and ``age[t]``: how many frames before it belong to the same episode, at most k-1.
The observation of row t is then ``[f_(t - min(d, age[t])) for d = k-1, ..., 0]``: within an
episode the last k frames, and at its start FrameStackObservation's padding, which repeats the
episode's first frame (``padding_type="reset"``, Gymnasium 1.x's default). An episode starts in
the row after an invalid one (next-step autoreset: the invalid row's next observation is the new
episode's first). The next observation of row t is the stack of row t + 1, whose frame is the next
row's (or, for the newest row, ``newest_next_obs``). The ring's oldest rows need the k-1 frames
before them, which the ring has already overwritten: ``history`` keeps those (and, for the very
first row, the older frames of its own stack: a run resumed without its buffer starts mid-episode).

Every ``add`` checks that the observations are such stacks (a next observation is the observation
shifted by one frame, or a new episode's padded first stack; an observation is the last next
one), so stacks of any other kind are refused on the first step, not learnt from wrongly.

``prioritized_frames`` is the same storage with proportional prioritized sampling
(:class:`drlrun.buffers.prioritized.PrioritizedReplayBuffer`). ``buffer=uniform`` and
``buffer=prioritized`` become these two on ALE ids (:func:`frame_storage`); ``buffer=frames`` and
``buffer=prioritized_frames`` choose them for any env whose observations are such stacks.

Checkpoints hold the arrays as they are (no copy when saving), and a loaded checkpoint's arrays
are adopted, not copied into the buffer's own: restoring a buffer of N GB takes N GB, not 2N.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from drlrun.agent import EnvSpec
from drlrun.buffers.prioritized import PrioritizedConfig, PrioritizedReplayBuffer
from drlrun.buffers.replay import ReplayBuffer
from drlrun.config import param
from drlrun.errors import DrlrunError
from drlrun.preprocess import stacks_frames


@dataclass
class FramesConfig:
    name: str = "frames"
    capacity: int = param(100_000, ge=1, help="transitions kept, over all environments")


@dataclass
class PrioritizedFramesConfig(PrioritizedConfig):
    name: str = "prioritized_frames"


def frame_storage(buffer_cfg: Any, spec: EnvSpec) -> Any:
    """The buffer config an agent is built with: ``buffer=uniform`` and ``buffer=prioritized`` on
    the frame stacks drlrun makes itself (ALE ids) become their frame-once twins, which sample the
    same transitions with the same random draws at a quarter of the memory; any other choice is
    kept. (Automatic because it changes what is stored, never what is sampled: a 1M-step Atari
    preset should not need 28 GB because ``buffer=`` was left at its default.)"""
    twin = {"uniform": FramesConfig, "prioritized": PrioritizedFramesConfig}.get(buffer_cfg.name)
    if twin is None or not stacks_frames(spec.id):
        return buffer_cfg
    values = {f.name: getattr(buffer_cfg, f.name) for f in dataclasses.fields(buffer_cfg) if f.name != "name"}
    return twin(**values)


def check_frame_stacks(name: str, spec: EnvSpec) -> None:
    """Refuse observations that cannot be stacks of frames (k x height x width, uint8 or bool)."""
    if len(spec.obs_shape) != 3 or spec.obs_dtype not in ("uint8", "bool"):
        raise DrlrunError(
            f"buffer={name} stores stacked frames (k x height x width, uint8) one frame at a time, but "
            f"env.id={spec.id!r} has observations of shape {spec.obs_shape} ({spec.obs_dtype}). "
            "Valid choices for it: buffer=uniform, buffer=prioritized.")


class FrameReplayBuffer(ReplayBuffer):
    """Uniform replay over frame stacks, each frame stored once (see the module docstring)."""

    Config = FramesConfig
    _ARRAYS = (*ReplayBuffer._ARRAYS, "age", "history")

    def __init__(self, cfg: Any, spec: EnvSpec, *, gamma: float, n_step: int,
                 device: torch.device, seed: int, total_steps: int) -> None:
        check_frame_stacks(cfg.name, spec)
        self.env_id = spec.id
        self.stack = spec.obs_shape[0]
        # ReplayBuffer's rows then hold one frame per observation: obs[t] is the newest frame of
        # row t's observation, newest_next_obs the newest frame of the newest row's next one.
        super().__init__(cfg, dataclasses.replace(spec, obs_shape=spec.obs_shape[1:]), gamma=gamma,
                         n_step=n_step, device=device, seed=seed, total_steps=total_steps)
        self.age = np.zeros((self.rows, self.num_envs), dtype=np.uint8)
        self.history = np.zeros((max(1, self.stack - 1), *self.obs.shape[1:]), dtype=self.obs.dtype)
        self.back = np.arange(self.stack - 1, -1, -1)  # d of each slot of a stack, oldest first

    @property
    def rows_written(self) -> int:
        """Rows added since the buffer began (its absolute row count; the ring keeps the last ones)."""
        return self.steps_added // self.num_envs

    @property
    def nbytes(self) -> int:
        return super().nbytes + self.age.nbytes + self.history.nbytes

    # ------------------------------------------------------------------ writing
    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray) -> None:
        written, p, k = self.rows_written, self.pos, self.stack
        self._check_stacks(obs, next_obs, valid, written)
        if written == 0:  # the first row: the older frames of its stack become history
            for d in range(1, k):
                self.history[(-d) % len(self.history)] = obs[:, k - 1 - d]
            self.age[p] = k - 1
        else:
            before = (p - 1) % self.rows
            self.age[p] = np.where(self.valid[before], np.minimum(self.age[before] + 1, k - 1), 0)
        if self.full:  # row p's frame leaves the ring; the stacks of the rows after it still need it
            self.history[(written - self.rows) % len(self.history)] = self.obs[p]
        super().add(obs[:, -1], actions, rewards, next_obs[:, -1], terminated, truncated, valid)

    def _check_stacks(self, obs: np.ndarray, next_obs: np.ndarray, valid: np.ndarray, written: int) -> None:
        """Each next observation is its observation shifted by one frame (or, after an autoreset,
        a first stack: one frame repeated), and each observation is the last next one."""
        k = self.stack
        follows = written == 0 or np.array_equal(obs[:, -1], self.newest_next_obs)
        if k == 1:
            shifted = True
        elif valid.all():
            shifted = np.array_equal(next_obs[:, :-1], obs[:, 1:])
        else:
            older = np.where(valid[:, None, None, None], obs[:, 1:], next_obs[:, 1:])
            shifted = np.array_equal(next_obs[:, :-1], older)
        if not (follows and shifted):
            raise DrlrunError(
                f"buffer={self.cfg.name} rebuilds stacked frames from one frame per step, but the observations "
                f"of env.id={self.env_id!r} are not stacks of the last {k} frames padded with an episode's first "
                "frame (Gymnasium's FrameStackObservation, as ALE ids get them), or an observation is not the "
                "last step's next one. Valid choices for it: buffer=uniform, buffer=prioritized.")

    # ------------------------------------------------------------------ sampling
    def _obs(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        return self._stacks(self._absolute(rows), self.age[rows, envs], envs)

    def _next_obs(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        # The row after ``rows`` is in the same episode (n-step windows hold valid rows only).
        next_age = np.minimum(self.age[rows, envs] + 1, self.stack - 1)
        return self._stacks(self._absolute(rows) + 1, next_age, envs)

    def _absolute(self, rows: np.ndarray) -> np.ndarray:
        """The absolute row numbers of ring rows ``rows``."""
        return self.rows_written - 1 - (self.pos - 1 - rows) % self.rows

    def _stacks(self, newest: np.ndarray, age: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """``[batch, k, *frame]`` stacks whose newest frames are absolute rows ``newest`` with ``age``
        frames of their episode before them: one gather, then the few frames that lie before the
        ring's oldest row (history) or after its newest (the newest next frame)."""
        sources = newest[:, None] - np.minimum(self.back[None, :], age[:, None].astype(np.int64))
        columns = np.broadcast_to(envs[:, None], sources.shape)
        out = self.obs[sources % self.rows, columns]
        written = self.rows_written
        old = sources < written - self.stored_rows
        if old.any():
            out[old] = self.history[sources[old] % len(self.history), columns[old]]
        ahead = sources == written
        if ahead.any():
            out[ahead] = self.newest_next_obs[columns[ahead]]
        return out

    # ------------------------------------------------------------------ checkpointing
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Takes the checkpoint's arrays as its own (after checking their shapes): copying them into
        the buffer's arrays would hold the buffer twice in memory while it loads."""
        arrays: dict[str, np.ndarray] = {}
        for name in self._ARRAYS:
            array = state[name].numpy()
            own = getattr(self, name)
            if array.shape != own.shape or array.dtype != own.dtype:
                raise DrlrunError(
                    f"The checkpoint's replay buffer has {name} of shape {tuple(array.shape)} ({array.dtype}), "
                    f"this run expects {own.shape} ({own.dtype}) (buffer.capacity, env.num_envs or the frames "
                    "differ).")
            arrays[name] = array
        for name, array in arrays.items():
            setattr(self, name, array)
        self.pos, self.full = int(state["pos"]), bool(state["full"])
        self.num_valid, self.steps_added = int(state["num_valid"]), int(state["steps_added"])
        self.rng.bit_generator.state = state["rng"]


class PrioritizedFrameReplayBuffer(FrameReplayBuffer, PrioritizedReplayBuffer):
    """Proportional prioritized replay over frame stacks, each frame stored once: the frame
    storage of :class:`FrameReplayBuffer`, the sum tree and sampling of
    :class:`PrioritizedReplayBuffer` (which calls this class's gather)."""

    Config = PrioritizedFramesConfig

    def load_state_dict(self, state: dict[str, Any]) -> None:
        FrameReplayBuffer.load_state_dict(self, state)
        self.tree.tree[...] = state["tree"].numpy()
        self.max_priority = float(state["max_priority"])
