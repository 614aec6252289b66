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
    OffPolicyAgent,
    OffPolicyConfig,
    clipped_double_q,
    soft_update,
    td_target,
)
from drlrun.buffers.replay import ReplayBatch
from drlrun.config import param
from drlrun.nets import mlp_layers
from drlrun.optim import make_adam
from drlrun.policy import ActionScaler, UnitToBox


@dataclass
class TD3Config(OffPolicyConfig):
    name: str = "td3"
    lr: float = param(1e-3, gt=0.0, help="Adam learning rate of actor and critics")
    actor_lr: float | None = param(None, gt=0.0, help="actor learning rate; null: lr")
    critic_lr: float | None = param(None, gt=0.0, help="critic learning rate; null: lr")
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
class TD3(OffPolicyAgent):
    """Twin Delayed DDPG for continuous (Box) actions."""

    Config = TD3Config
    action_spaces = ("continuous",)
    MODULES = ("actor", "actor_target", "critic", "critic_target", "actor_optimizer", "critic_optimizer")

    def __init__(self, cfg: TD3Config, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.scaler = ActionScaler(ctx.spec, cfg.name, self.device)
        self.actor = DeterministicActor(ctx.network, ctx.spec.obs_dim, ctx.spec.action_dim).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.actor_params = list(self.actor.parameters())  # walked every step: listed once
        self.actor_optimizer = make_adam(self.actor_params, cfg.actor_lr or cfg.lr, self.device)
        self.build_critics(ctx, n=2 if cfg.twin else 1, lr=cfg.critic_lr or cfg.lr)
        # Actor and critic targets move together: one Polyak kernel for both.
        self.targets = (list(self.actor_target.parameters()) + self.critic_target_params,
                        self.actor_params + self.critic_params)

    # ------------------------------------------------------------------ act
    def act(self, obs: np.ndarray, *, explore: bool, deterministic: bool = True) -> np.ndarray:
        if self.warming_up(explore):
            return self.scaler.uniform(self.rng, len(obs))
        with torch.inference_mode():
            actions = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=self.device)).cpu().numpy()
        if (explore or not deterministic) and self.cfg.exploration_noise > 0:
            rng = self.rng if explore else self.eval_rng  # evaluating leaves exploration's stream alone
            noise = rng.normal(0.0, self.cfg.exploration_noise, size=actions.shape).astype(np.float32)
            actions = np.clip(actions + noise, -1.0, 1.0)
        return self.scaler.to_env(actions)

    # observe() and update() come from OffPolicyAgent: replay, then gradient_step() on schedule.

    def gradient_step(self, batch: ReplayBatch) -> None:
        """One critic update; every ``policy_delay``-th also the actor and the target networks."""
        c = self.cfg
        with torch.no_grad():
            next_actions = self.actor_target(batch.next_obs)
            if c.policy_noise > 0:
                noise = torch.randn_like(next_actions) * c.policy_noise
                next_actions = smoothed_target_actions(next_actions, noise, c.noise_clip)
            next_values = clipped_double_q(self.critic_target(batch.next_obs, next_actions))
            y = td_target(batch.returns, batch.discounts, next_values)
        self.critic_step(batch, self.scaler.to_unit(batch.actions), y)

        if self.n_updates % c.policy_delay == 0:
            pi_loss = actor_loss(self.critic.q(0, batch.obs, self.actor(batch.obs)))  # Q1 only: no Q2 forward
            self.actor_optimizer.zero_grad(set_to_none=True)
            pi_loss.backward(inputs=self.actor_params)  # no gradients for the critics
            self.actor_optimizer.step()
            self._last["actor_loss"] = pi_loss.detach()
            soft_update(*self.targets, c.tau)  # actor and critic targets in one kernel

    def export_policy(self) -> nn.Module:
        """Raw observations -> the actor's action scaled to the bounds, without exploration noise
        (drlrun-export)."""
        s = self.scaler
        return nn.Sequential(self.actor, UnitToBox(s.low, s.high, s.shape))

    # metrics(), state_dict() and load_state_dict() come from OffPolicyAgent (MODULES above).


class DDPG(TD3):
    """DDPG: TD3 with ``policy_delay=1``, no target smoothing and a single critic."""

    Config = DDPGConfig
