"""What the replay-based algorithms share: config checks, target-network averaging, and the
mapping between a policy's [-1, 1] actions and an environment's action bounds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from drlrun.agent import EnvSpec
from drlrun.config import RunConfig
from drlrun.errors import DrlrunError


@torch.no_grad()
def soft_update(target: nn.Module | Sequence[torch.Tensor], online: nn.Module | Sequence[torch.Tensor],
                tau: float) -> None:
    """Polyak averaging: theta' <- (1 - tau) theta' + tau theta, all parameters in one kernel.
    Takes modules or (faster, on the hot path) their parameter lists."""
    target_params = list(target.parameters()) if isinstance(target, nn.Module) else target
    online_params = list(online.parameters()) if isinstance(online, nn.Module) else online
    if len(target_params) != len(online_params):
        raise ValueError("soft_update needs two modules with the same parameters")
    torch._foreach_lerp_(target_params, online_params, tau)


def due(steps: int, last: int, every: int) -> tuple[int, int]:
    """How many periods of ``every`` env steps are due since ``last``, and the new ``last``.

    A vector step adds ``num_envs`` env steps at once, so more than one period can be due: a
    schedule such as 'train every 4 env steps' keeps its ratio whatever the number of envs.
    ``last < 0`` means the schedule starts now, with exactly one period due.
    """
    if last < 0:
        return 1, steps
    rounds = (steps - last) // every
    return rounds, last + rounds * every


def check_off_policy_config(cfg: Any, run: RunConfig, networks: tuple[str, ...] = ("mlp",)) -> None:
    """Cross-field checks shared by the replay-based algorithms (DQN, SAC, TD3, DDPG)."""
    if cfg.learning_starts > run.total_steps:
        raise DrlrunError(
            f"algo.learning_starts={cfg.learning_starts} is larger than total_steps={run.total_steps}: "
            "the agent would never learn. Lower algo.learning_starts or raise total_steps."
        )
    if cfg.batch_size > run.buffer.capacity:
        raise DrlrunError(
            f"algo.batch_size={cfg.batch_size} is larger than buffer.capacity={run.buffer.capacity}. "
            "Lower the batch size or enlarge the buffer."
        )
    if run.network.name not in networks:
        raise DrlrunError(
            f"algo={cfg.name} cannot use network={run.network.name}. Valid choices: {', '.join(networks)}."
        )


class ActionScaler:
    """Maps between the policy's [-1, 1] actions and the environment's [low, high] box."""

    def __init__(self, spec: EnvSpec, algo: str, device: torch.device) -> None:
        if spec.action_low is None or spec.action_high is None:
            raise DrlrunError(f"algo={algo} needs the bounds of a Box action space.")
        low = spec.action_low.astype(np.float32).reshape(-1)
        high = spec.action_high.astype(np.float32).reshape(-1)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise DrlrunError(
                f"algo={algo} squashes actions into the action space's bounds, but env.id={spec.id!r} "
                f"has unbounded actions (low={low}, high={high}). Wrap the env with "
                "gymnasium.wrappers.ClipAction or give it finite bounds."
            )
        self.low, self.high = low, high
        self.shape = spec.action_shape
        self.scale_np = (high - low) / 2.0
        self.bias_np = (high + low) / 2.0
        self.scale = torch.as_tensor(self.scale_np, device=device)
        self.bias = torch.as_tensor(self.bias_np, device=device)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """[-1, 1] -> [low, high], shaped as the env's actions."""
        env_actions = (actions * self.scale_np + self.bias_np).astype(np.float32, copy=False)
        return env_actions.reshape(len(actions), *self.shape)

    def to_unit(self, actions: torch.Tensor) -> torch.Tensor:
        """Stored env actions [batch, *shape] -> the policy's [-1, 1] as ``[batch, action_dim]``."""
        return (actions.reshape(len(actions), -1) - self.bias) / self.scale

    def uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Uniformly random env actions, for the warm-up before learning starts."""
        return rng.uniform(self.low, self.high, size=(n, len(self.low))).astype(np.float32).reshape(n, *self.shape)


class ReplaySchedule:
    """``observe`` and ``update`` for an actor-critic that learns from replay on a schedule.

    Every transition goes into ``self.buffer``; once ``cfg.learning_starts`` env steps have been
    seen, every ``cfg.train_freq`` env steps bring ``cfg.gradient_steps`` calls of
    ``self.gradient_step(batch)`` with a fresh minibatch. The agent provides ``cfg``, ``buffer``,
    ``rng``, ``eval_rng``, ``steps``, ``n_updates``, ``last_train_step`` (start it at -1) and ``gradient_step``.
    :meth:`replay_state` and :meth:`load_replay_state` checkpoint what the schedule owns: the
    counters named in ``COUNTERS``, the exploration RNG and (optionally) the buffer.
    """

    COUNTERS: tuple[str, ...] = ("steps", "n_updates", "last_train_step")
    refill_until = 0  # resumed from a checkpoint without its buffer: no learning before this step
    cfg: Any
    buffer: Any
    rng: np.random.Generator
    eval_rng: np.random.Generator
    steps: int
    last_train_step: int
    gradient_step: Callable[[Any], None]

    def replay_state(self, *, with_buffer: bool) -> dict[str, Any]:
        state: dict[str, Any] = {"rng": self.rng.bit_generator.state, "eval_rng": self.eval_rng.bit_generator.state,
                                 "counters": {name: getattr(self, name) for name in self.COUNTERS}}
        if with_buffer:
            state["buffer"] = self.buffer.state_dict()
        return state

    def load_replay_state(self, state: dict[str, Any]) -> None:
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]
        if "eval_rng" in state:
            self.eval_rng.bit_generator.state = state["eval_rng"]
        for key, value in state.get("counters", {}).items():
            setattr(self, key, int(value))
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
        elif "counters" in state:  # a checkpoint saved with checkpoint.buffer=false: refill first
            self.refill_until = self.steps + max(self.cfg.learning_starts, self.cfg.batch_size)
            self.last_train_step = -1  # the training schedule restarts once the buffer is refilled

    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray) -> None:
        self.buffer.add(obs, actions, rewards, next_obs, terminated, truncated, valid)
        self.steps += len(obs)

    def update(self) -> None:
        c = self.cfg
        if self.steps < c.learning_starts or self.steps < self.refill_until:
            return
        rounds, self.last_train_step = due(self.steps, self.last_train_step, c.train_freq)
        steps = rounds * c.gradient_steps
        if steps > 1 and getattr(self.buffer, "independent_samples", False):
            for batch in self.buffer.sample(c.batch_size * steps).split(steps):
                self.gradient_step(batch)
        else:
            for _ in range(steps):
                self.gradient_step(self.buffer.sample(c.batch_size))
