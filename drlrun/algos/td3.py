"""TD3, Twin Delayed DDPG (Fujimoto et al., 2018), and DDPG (Lillicrap et al., 2016) as its
special case.

- a deterministic actor mu(s) = tanh(...) in [-1, 1], rescaled to the action bounds, explored
  with Gaussian noise of std ``exploration_noise`` (in the [-1, 1] scale);
- clipped double Q-learning: twin critics, the target takes the smaller of the two target
  critics (``twin=false``: one critic, DDPG's target);
- target policy smoothing: the target action is mu'(s') plus Gaussian noise (std
  ``policy_noise``) clipped to +-``noise_clip``, then clipped to the bounds;
- delayed policy updates: the actor and all target networks move every ``policy_delay``-th
  critic update, the targets by Polyak averaging with ``tau``.

DDPG (``algo=ddpg``) is the same code with ``policy_delay=1``, ``policy_noise=0`` and
``twin=false``: one critic, no smoothing, no delay (SB3's DDPG is defined the same way; the
original's Ornstein-Uhlenbeck noise is replaced by Gaussian noise, as in the TD3 paper's DDPG).

As in SAC, actions are stored in the replay buffer in the environment's scale and mapped to
[-1, 1] when learning. Defaults follow Stable-Baselines3's TD3 (plus the paper's exploration
noise 0.1, which SB3 leaves to the user).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from drlrun.agent import BuildContext
from drlrun.algos.offpolicy import (
    ActionScaler,
    ReplaySchedule,
    check_off_policy_config,
    soft_update,
)
from drlrun.algos.sac import qf_loss
from drlrun.buffers.replay import ReplayBatch
from drlrun.config import RunConfig, param
from drlrun.nets import QEnsemble, mlp_layers
from drlrun.optim import make_adam
from drlrun.policy import UnitToBox
from drlrun.registry import BUFFERS


@dataclass
class TD3Config:
    name: str = "td3"
    lr: float = param(1e-3, gt=0.0, help="Adam learning rate of actor and critics")
    actor_lr: float | None = param(None, gt=0.0, help="actor learning rate; null: lr")
    critic_lr: float | None = param(None, gt=0.0, help="critic learning rate; null: lr")
    gamma: float = param(0.99, ge=0.0, le=1.0, help="discount factor")
    batch_size: int = param(256, ge=1, help="transitions per gradient step")
    learning_starts: int = param(100, ge=0, help="env steps of uniformly random actions before learning")
    train_freq: int = param(1, ge=1, help="env steps between training rounds")
    gradient_steps: int = param(1, ge=1, help="gradient steps per training round")
    tau: float = param(0.005, gt=0.0, le=1.0, help="Polyak coefficient of the target networks")
    n_step: int = param(1, ge=1, help="steps in the bootstrapped return (1: the paper's one-step target)")
    policy_delay: int = param(2, ge=1, help="critic updates per actor and target update")
    exploration_noise: float = param(0.1, ge=0.0, help="std of the Gaussian exploration noise, [-1, 1] scale")
    policy_noise: float = param(0.2, ge=0.0, help="std of the target smoothing noise, [-1, 1] scale")
    noise_clip: float = param(0.5, ge=0.0, help="target smoothing noise is clipped to +-noise_clip")
    twin: bool = param(True, help="clipped double Q-learning with two critics; false: one critic")


@dataclass
class DDPGConfig(TD3Config):
    """DDPG as TD3 without its three additions (SB3's DDPG defaults)."""

    name: str = "ddpg"
    policy_delay: int = param(1, ge=1, help="critic updates per actor and target update")
    policy_noise: float = param(0.0, ge=0.0, help="std of the target smoothing noise, [-1, 1] scale")
    noise_clip: float = param(0.0, ge=0.0, help="target smoothing noise is clipped to +-noise_clip")
    twin: bool = param(False, help="clipped double Q-learning with two critics; false: one critic")


# --------------------------------------------------------------------------- the math
def smoothed_target_actions(target_actions: torch.Tensor, noise: torch.Tensor, noise_clip: float) -> torch.Tensor:
    """Target policy smoothing: a' = clip(mu'(s') + clip(noise, -c, c), -1, 1), in the [-1, 1]
    action scale (so a' always lies within the env's bounds once rescaled)."""
    return (target_actions + noise.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)


def td_target(returns: torch.Tensor, discounts: torch.Tensor, next_q_target: torch.Tensor) -> torch.Tensor:
    """y = r + gamma (1 - done) min_i Q'_i(s', a'); ``next_q_target`` is ``[critics, batch]``
    (one row for DDPG, where the min is just Q')."""
    return returns + discounts * next_q_target.min(dim=0).values


def actor_loss(q1_values: torch.Tensor) -> torch.Tensor:
    """J = -E[Q_1(s, mu(s))]: the actor climbs the first critic (as in the paper)."""
    return -q1_values.mean()


# --------------------------------------------------------------------------- networks
class DeterministicActor(nn.Module):
    """obs -> hidden layers -> tanh: actions in [-1, 1]."""

    def __init__(self, cfg: Any, obs_dim: int, action_dim: int) -> None:
        super().__init__()
        layers, width = mlp_layers(obs_dim, cfg.hidden_sizes, cfg.activation)
        self.net = nn.Sequential(nn.Flatten(), *layers, nn.Linear(width, action_dim), nn.Tanh())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


# --------------------------------------------------------------------------- the agent
class TD3(ReplaySchedule):
    """Twin Delayed DDPG for continuous (Box) actions."""

    Config = TD3Config
    action_spaces = ("continuous",)

    @staticmethod
    def check_config(cfg: TD3Config, run: RunConfig) -> None:
        check_off_policy_config(cfg, run)

    def __init__(self, cfg: TD3Config, ctx: BuildContext) -> None:
        self.cfg = cfg
        self.device = ctx.device
        spec = ctx.spec
        self.scaler = ActionScaler(spec, cfg.name, self.device)
        obs_dim, action_dim = spec.obs_dim, spec.action_dim
        self.action_dim = action_dim
        self.actor = DeterministicActor(ctx.network, obs_dim, action_dim).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = QEnsemble(ctx.network, obs_dim, action_dim, n=2 if cfg.twin else 1).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_params = list(self.actor.parameters())  # walked every step: listed once
        self.critic_params = list(self.critic.parameters())
        self.targets = (list(self.actor_target.parameters()) + list(self.critic_target.parameters()),
                        self.actor_params + self.critic_params)
        self.actor_optimizer = make_adam(self.actor_params, cfg.actor_lr or cfg.lr, self.device)
        self.critic_optimizer = make_adam(self.critic_params, cfg.critic_lr or cfg.lr, self.device)
        self.buffer = BUFFERS.build(ctx.buffer.name, ctx.buffer, spec, gamma=cfg.gamma, n_step=cfg.n_step,
                                    device=self.device, seed=ctx.rng_seed("replay"), total_steps=ctx.total_steps)
        self.rng = np.random.default_rng(ctx.rng_seed("exploration"))
        self.eval_rng = np.random.default_rng(ctx.rng_seed("evaluation"))  # noisy evaluations
        self.steps = 0  # env steps observed
        self.n_updates = 0  # critic gradient steps
        self.last_train_step = -1  # the training schedule starts at learning_starts
        self._last: dict[str, torch.Tensor] = {}  # detached tensors, read by metrics()

    # ------------------------------------------------------------------ act
    def act(self, obs: np.ndarray, *, explore: bool, deterministic: bool = True) -> np.ndarray:
        n = len(obs)
        if explore and self.steps < self.cfg.learning_starts:
            return self.scaler.uniform(self.rng, n)
        with torch.inference_mode():
            actions = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=self.device)).cpu().numpy()
        if (explore or not deterministic) and self.cfg.exploration_noise > 0:
            rng = self.rng if explore else self.eval_rng  # evaluating leaves exploration's stream alone
            noise = rng.normal(0.0, self.cfg.exploration_noise, size=actions.shape).astype(np.float32)
            actions = np.clip(actions + noise, -1.0, 1.0)
        return self.scaler.to_env(actions)

    # observe() and update() come from ReplaySchedule: replay, then gradient_step() on schedule.

    def gradient_step(self, batch: ReplayBatch) -> None:
        """One critic update; every ``policy_delay``-th also the actor and the target networks."""
        c = self.cfg
        actions = self.scaler.to_unit(batch.actions)
        with torch.no_grad():
            next_actions = self.actor_target(batch.next_obs)
            if c.policy_noise > 0:
                noise = torch.randn_like(next_actions) * c.policy_noise
                next_actions = smoothed_target_actions(next_actions, noise, c.noise_clip)
            y = td_target(batch.returns, batch.discounts, self.critic_target(batch.next_obs, next_actions))
        q_values = self.critic(batch.obs, actions)
        critic_loss = qf_loss(q_values, y, batch.weights)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        if batch.weights is not None:  # prioritized replay: new priorities from the mean |TD error|
            self.buffer.update_priorities(batch.indices, (y - q_values.detach()).abs().mean(dim=0))
        self.n_updates += 1
        last = self._last
        last["qf_loss"] = critic_loss.detach()
        last["qf1_values"] = q_values[0].detach().mean()
        if c.twin:
            last["qf2_values"] = q_values[1].detach().mean()

        if self.n_updates % c.policy_delay == 0:
            pi_loss = actor_loss(self.critic.q(0, batch.obs, self.actor(batch.obs)))  # Q1 only: no Q2 forward
            self.actor_optimizer.zero_grad(set_to_none=True)
            pi_loss.backward(inputs=self.actor_params)  # no gradients for the critics
            self.actor_optimizer.step()
            last["actor_loss"] = pi_loss.detach()
            soft_update(*self.targets, c.tau)  # actor and critic targets in one kernel

    def export_policy(self) -> nn.Module:
        """Raw observations -> the actor's action scaled to the bounds, without exploration noise
        (drlrun-export)."""
        s = self.scaler
        return nn.Sequential(self.actor, UnitToBox(s.low, s.high, s.shape))

    def metrics(self) -> dict[str, float]:
        out = {f"losses/{key}": float(value) for key, value in self._last.items()}
        if self.n_updates:
            out["charts/gradient_steps"] = float(self.n_updates)
        return out

    # ------------------------------------------------------------------ state
    _MODULES = ("actor", "actor_target", "critic", "critic_target", "actor_optimizer", "critic_optimizer")

    def state_dict(self, *, with_buffer: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name).state_dict() for name in self._MODULES}
        return state | self.replay_state(with_buffer=with_buffer)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._MODULES:
            if name in state or not name.endswith("optimizer"):
                getattr(self, name).load_state_dict(state[name])
        self.load_replay_state(state)


class DDPG(TD3):
    """DDPG: TD3 with ``policy_delay=1``, no target smoothing and a single critic."""

    Config = DDPGConfig
