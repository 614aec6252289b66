"""Soft Actor-Critic (Haarnoja et al., 2018), the version with automatic temperature tuning.

- a squashed Gaussian policy: u ~ N(mu(s), sigma(s)^2), a = tanh(u), rescaled to the action
  bounds; its log-probability is corrected for the tanh squashing;
- twin Q critics (clipped double Q-learning) with Polyak-averaged target copies (``tau``);
- the soft Bellman target y = r + gamma (1 - done) (min_i Q'_i(s', a') - alpha log pi(a'|s')),
  a' ~ pi(.|s');
- the temperature alpha learned so that the policy's entropy stays near ``target_entropy``
  (default -action_dim), or fixed (``autotune=false``).

Actions are stored in the replay buffer in the environment's scale (what the env was given) and
mapped to [-1, 1] when learning, so the critics and the log-probabilities always work in the
policy's normalized [-1, 1] space. Defaults follow Stable-Baselines3's SAC.
"""

from __future__ import annotations

import math
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
from drlrun.nets import LOG_2PI, mlp_layers
from drlrun.optim import make_adam
from drlrun.policy import ActionScaler, Deterministic, UnitToBox

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # the clamp of the authors' and SB3's implementations
LOG_2 = math.log(2.0)


@dataclass
class SACConfig(OffPolicyConfig):
    name: str = "sac"
    actor_lr: float | None = param(None, gt=0.0, help="actor learning rate; null: lr")
    critic_lr: float | None = param(None, gt=0.0, help="critic learning rate; null: lr")
    policy_frequency: int = param(1, ge=1, help="critic updates per actor (and temperature) update")
    autotune: bool = param(True, help="learn the temperature alpha towards target_entropy")
    alpha: float = param(0.2, ge=0.0, help="fixed temperature when autotune=false")
    alpha_init: float = param(1.0, gt=0.0, help="starting temperature when autotune=true")
    target_entropy: float | None = param(None, help="entropy the temperature aims for; null: -action_dim")


# --------------------------------------------------------------------------- the math
def squashed_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) of a = tanh(u), u ~ N(mean, exp(log_std)^2), summed over action dimensions.

    Change of variables: log pi(a) = log N(u) - sum_j log(1 - tanh(u_j)^2). The correction is
    written in the overflow-free form log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
    (The further affine rescaling to the env's bounds only adds a constant; it is left out, as in
    the paper's and SB3's implementations, since it changes no gradient.)
    """
    z = (u - mean) * torch.exp(-log_std)
    gaussian = (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)
    squash = (2.0 * (LOG_2 - u - nn.functional.softplus(-2.0 * u))).sum(-1)
    return gaussian - squash


def soft_value(next_q_target: torch.Tensor, next_log_probs: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """The soft state value V(s') = min_i Q'_i(s', a') - alpha log pi(a'|s'), a' ~ pi(.|s'), that
    the soft Bellman target y = r + gamma (1 - done) V(s') bootstraps with; ``next_q_target`` is
    ``[critics, batch]``."""
    return clipped_double_q(next_q_target) - alpha * next_log_probs


def actor_loss(log_probs: torch.Tensor, q_values: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """J_pi = E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi(.|s) reparameterized."""
    return (alpha * log_probs - clipped_double_q(q_values)).mean()


def temperature_loss(log_alpha: torch.Tensor, log_probs: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """J(alpha) = E[-log_alpha (log pi(a|s) + target_entropy)], the log-probabilities held fixed.

    Its gradient raises alpha while the policy's entropy -E[log pi] is below the target and lowers
    it above. (Parameterized by log alpha, as in SB3, so alpha stays positive.)"""
    return -(log_alpha * (log_probs.detach() + target_entropy)).mean()


# --------------------------------------------------------------------------- networks
class SquashedGaussianActor(nn.Module):
    """obs -> hidden layers -> (mean, log_std) of u; actions a = tanh(u) in [-1, 1]."""

    def __init__(self, cfg: Any, obs_dim: int, action_dim: int) -> None:
        super().__init__()
        layers, width = mlp_layers(obs_dim, cfg.hidden_sizes, cfg.activation)
        self.torso = nn.Sequential(nn.Flatten(), *layers)
        self.mean = nn.Linear(width, action_dim)
        self.log_std = nn.Linear(width, action_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.torso(obs)
        return self.mean(features), self.log_std(features).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized a = tanh(mean + std * eps) and log pi(a|s)."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), squashed_gaussian_log_prob(u, mean, log_std)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0])


# --------------------------------------------------------------------------- the agent
class SAC(OffPolicyAgent):
    """Soft Actor-Critic for continuous (Box) actions."""

    Config = SACConfig
    action_spaces = ("continuous",)
    MODULES = ("actor", "critic", "critic_target", "actor_optimizer", "critic_optimizer", "alpha_optimizer")

    def __init__(self, cfg: SACConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.scaler = ActionScaler(ctx.spec, cfg.name, self.device)
        self.actor = SquashedGaussianActor(ctx.network, ctx.spec.obs_dim, ctx.spec.action_dim).to(self.device)
        self.actor_params = list(self.actor.parameters())  # walked every step: listed once
        self.actor_optimizer = make_adam(self.actor_params, cfg.actor_lr or cfg.lr, self.device)
        self.build_critics(ctx, n=2, lr=cfg.critic_lr or cfg.lr)
        self.target_entropy = float(-ctx.spec.action_dim if cfg.target_entropy is None else cfg.target_entropy)
        self.log_alpha = torch.tensor(math.log(cfg.alpha_init), device=self.device, requires_grad=cfg.autotune)
        self.alpha_optimizer = make_adam([self.log_alpha], cfg.lr, self.device) if cfg.autotune else None
        self._fixed_alpha = torch.tensor(cfg.alpha, device=self.device)

    @property
    def alpha(self) -> torch.Tensor:
        """The current temperature, as a detached tensor (no host sync)."""
        return self.log_alpha.detach().exp() if self.cfg.autotune else self._fixed_alpha

    # ------------------------------------------------------------------ act
    def act(self, obs: np.ndarray, *, explore: bool, deterministic: bool = True) -> np.ndarray:
        if self.warming_up(explore):
            return self.scaler.uniform(self.rng, len(obs))
        with torch.inference_mode():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            sample = explore or not deterministic
            actions = self.actor.sample(obs_t)[0] if sample else self.actor.deterministic(obs_t)
            actions = actions.cpu().numpy()
        return self.scaler.to_env(actions)

    # observe() and update() come from OffPolicyAgent: replay, then gradient_step() on schedule.

    def gradient_step(self, batch: ReplayBatch) -> None:
        """One critic update; every ``policy_frequency``-th also an actor and temperature update."""
        c = self.cfg
        alpha = self.alpha
        with torch.no_grad():
            next_actions, next_log_probs = self.actor.sample(batch.next_obs)
            next_values = soft_value(self.critic_target(batch.next_obs, next_actions), next_log_probs, alpha)
            y = td_target(batch.returns, batch.discounts, next_values)
        self.critic_step(batch, self.scaler.to_unit(batch.actions), y)

        if self.n_updates % c.policy_frequency == 0:
            pi_actions, log_probs = self.actor.sample(batch.obs)
            pi_loss = actor_loss(log_probs, self.critic(batch.obs, pi_actions), alpha)
            self.actor_optimizer.zero_grad(set_to_none=True)
            pi_loss.backward(inputs=self.actor_params)  # no gradients for the critics
            self.actor_optimizer.step()
            self._last["actor_loss"] = pi_loss.detach()
            if self.alpha_optimizer is not None:
                alpha_loss = temperature_loss(self.log_alpha, log_probs, self.target_entropy)
                self.alpha_optimizer.zero_grad(set_to_none=True)
                alpha_loss.backward()
                self.alpha_optimizer.step()
                self._last["alpha_loss"] = alpha_loss.detach()
        soft_update(self.critic_target_params, self.critic_params, c.tau)

    def export_policy(self) -> nn.Module:
        """Raw observations -> tanh(mean) scaled to the action bounds (drlrun-export)."""
        s = self.scaler
        return nn.Sequential(Deterministic(self.actor), UnitToBox(s.low, s.high, s.shape))

    def metrics(self) -> dict[str, float]:
        return {"losses/alpha": float(self.alpha), **super().metrics()}

    # ------------------------------------------------------------------ state
    def state_dict(self, *, with_buffer: bool = True) -> dict[str, Any]:
        return super().state_dict(with_buffer=with_buffer) | {"log_alpha": self.log_alpha.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "log_alpha" in state:
            with torch.no_grad():
                self.log_alpha.copy_(state["log_alpha"])
