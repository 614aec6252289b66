"""The off-policy family's base: what DQN, SAC and TD3 (and DDPG) share, defined once.

All of them learn from replay on one schedule: every transition goes into a replay buffer; after
``learning_starts`` env steps of warm-up, every ``train_freq`` env steps bring ``gradient_steps``
gradient steps on fresh minibatches, each towards a TD target y = R + gamma^m V(s') computed with
target networks that trail the online ones by Polyak averaging (``tau``). The config fields of
that schedule, the schedule itself, its checkpoint state and the TD target live here, so that each
algorithm's file holds only its own math. SAC and TD3 also share their critic half (twin Q
critics with target copies, clipped double Q-learning, the critic loss with prioritized replay's
weights and priorities): :meth:`OffPolicyAgent.build_critics` and :meth:`OffPolicyAgent.critic_step`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from drlrun.agent import BuildContext
from drlrun.buffers.replay import ReplayBatch
from drlrun.config import RunConfig, param
from drlrun.errors import DrlrunError
from drlrun.nets import QEnsemble
from drlrun.optim import Optimizer, make_adam
from drlrun.registry import BUFFERS


@dataclass
class OffPolicyConfig:
    """Hyperparameters every replay-based algorithm has. The defaults are SAC's and TD3's
    (Stable-Baselines3's); an algorithm's config redeclares only those whose default differs."""

    name: str = "offpolicy"
    lr: float = param(3e-4, gt=0.0, help="Adam learning rate (of every network it trains)")
    gamma: float = param(0.99, ge=0.0, le=1.0, help="discount factor")
    batch_size: int = param(256, ge=1, help="transitions per gradient step")
    learning_starts: int = param(100, ge=0, help="env steps of uniformly random actions before learning")
    train_freq: int = param(1, ge=1, help="env steps between training rounds")
    gradient_steps: int = param(1, ge=1, help="gradient steps per training round")
    tau: float = param(0.005, gt=0.0, le=1.0, help="Polyak coefficient of the target networks")
    n_step: int = param(1, ge=1, help="steps in the bootstrapped return (1: the paper's one-step target)")


# --------------------------------------------------------------------------- the shared math
def td_target(returns: torch.Tensor, discounts: torch.Tensor, next_values: torch.Tensor) -> torch.Tensor:
    """y = R + gamma^m V(s'). The buffer gives the n-step return R = sum_{k<m} gamma^k r_{t+k} and
    gamma^m (already 0 where the episode terminated); V(s') is what each algorithm bootstraps
    with: max_a' Q'(s', a') in DQN, min_i Q'_i(s', a') in TD3, the soft value in SAC."""
    return returns + discounts * next_values


def clipped_double_q(q_values: torch.Tensor) -> torch.Tensor:
    """min_i Q_i over ``[critics, batch]`` (Fujimoto et al., 2018): the smaller of two independent
    estimates counters Q-learning's overestimation (one critic: DDPG's plain Q)."""
    return q_values.min(dim=0).values


def qf_loss(q_values: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """J_Q = sum over critics of E[1/2 (Q_i(s, a) - y)^2]; ``q_values`` is ``[critics, batch]``.
    ``weights`` are prioritized replay's importance-sampling weights (None: a plain mean)."""
    squared = 0.5 * (q_values - y).pow(2).sum(dim=0)
    return squared.mean() if weights is None else (weights * squared).mean()


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


# --------------------------------------------------------------------------- the base class
class OffPolicyAgent:
    """``observe``, ``update``, checkpoints and metrics for an agent that learns from replay.

    Every transition goes into ``self.buffer``; once ``cfg.learning_starts`` env steps have been
    seen, every ``cfg.train_freq`` env steps bring ``cfg.gradient_steps`` calls of
    :meth:`gradient_step` (the algorithm's own) with a fresh minibatch. ``MODULES`` names the
    attributes whose ``state_dict`` a checkpoint holds (a missing optimizer is allowed), besides
    what the schedule owns: the counters in ``COUNTERS``, both RNGs and (optionally) the buffer.
    """

    networks: ClassVar[tuple[str, ...]] = ("mlp",)  # the network=... choices it can use
    COUNTERS: ClassVar[tuple[str, ...]] = ("steps", "n_updates", "last_train_step")
    MODULES: ClassVar[tuple[str, ...]] = ()
    # Resumed from a checkpoint without its buffer: no learning before this step (0: none pending).
    refill_until: int = 0
    # Built by build_critics (SAC, TD3), which critic_step uses.
    critic: QEnsemble
    critic_target: QEnsemble
    critic_params: list[nn.Parameter]
    critic_target_params: list[torch.Tensor]
    critic_optimizer: Optimizer

    @classmethod
    def check_config(cls, cfg: OffPolicyConfig, run: RunConfig) -> None:
        """Settings under which the agent would never learn, or that it would ignore."""
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
        if run.network.name not in cls.networks:
            raise DrlrunError(
                f"algo={cfg.name} cannot use network={run.network.name}. Valid choices: {', '.join(cls.networks)}."
            )

    def __init__(self, cfg: Any, ctx: BuildContext) -> None:
        self.cfg = cfg
        self.device = ctx.device
        self.buffer = BUFFERS.build(ctx.buffer.name, ctx.buffer, ctx.spec, gamma=cfg.gamma, n_step=cfg.n_step,
                                    device=self.device, seed=ctx.rng_seed("replay"), total_steps=ctx.total_steps)
        self.rng = np.random.default_rng(ctx.rng_seed("exploration"))  # exploration and warm-up
        self.eval_rng = np.random.default_rng(ctx.rng_seed("evaluation"))  # noisy evaluations
        self.steps = 0  # env steps observed
        self.n_updates = 0  # (critic) gradient steps
        self.last_train_step = -1  # the training schedule starts at learning_starts
        self._last: dict[str, torch.Tensor] = {}  # detached tensors, read by metrics()

    def warming_up(self, explore: bool) -> bool:
        """A training call before ``learning_starts``: act uniformly at random (SAC, TD3)."""
        return explore and self.steps < self.cfg.learning_starts

    # ------------------------------------------------------------------ the schedule
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

    def gradient_step(self, batch: ReplayBatch) -> None:
        raise NotImplementedError  # the algorithm's loss

    # ------------------------------------------------------------------ twin critics (SAC, TD3)
    def build_critics(self, ctx: BuildContext, n: int, lr: float) -> None:
        """Q_1..Q_n (one stacked network), their frozen target copy and their optimizer."""
        spec = ctx.spec
        self.critic = QEnsemble(ctx.network, spec.obs_dim, spec.action_dim, n=n).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_params = list(self.critic.parameters())  # walked every step: listed once
        self.critic_target_params = list(self.critic_target.parameters())
        self.critic_optimizer = make_adam(self.critic_params, lr, self.device)

    def critic_step(self, batch: ReplayBatch, actions: torch.Tensor, y: torch.Tensor) -> None:
        """One gradient step on J_Q (:func:`qf_loss`) towards the TD target ``y`` for the batch's
        ``actions`` in [-1, 1]. With prioritized replay the loss is importance-weighted and the
        mean |TD error| over the critics becomes each transition's new priority."""
        q_values = self.critic(batch.obs, actions)
        critic_loss = qf_loss(q_values, y, batch.weights)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        if batch.weights is not None:
            self.buffer.update_priorities(batch.indices, (y - q_values.detach()).abs().mean(dim=0))
        self.n_updates += 1
        self._last["qf_loss"] = critic_loss.detach()
        for i, q in enumerate(q_values.detach(), start=1):
            self._last[f"qf{i}_values"] = q.mean()

    def metrics(self) -> dict[str, float]:
        out = {f"losses/{key}": float(value) for key, value in self._last.items()}
        if self.n_updates:
            out["charts/gradient_steps"] = float(self.n_updates)
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self, *, with_buffer: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name).state_dict() for name in self.MODULES
                                 if getattr(self, name) is not None}
        state.update(rng=self.rng.bit_generator.state, eval_rng=self.eval_rng.bit_generator.state,
                     counters={name: getattr(self, name) for name in self.COUNTERS})
        if with_buffer:
            state["buffer"] = self.buffer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.MODULES:
            module = getattr(self, name)
            if module is not None and (name in state or not name.endswith("optimizer")):
                module.load_state_dict(state[name])
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
