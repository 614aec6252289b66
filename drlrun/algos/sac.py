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

import copy
import math
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
from drlrun.buffers.replay import ReplayBatch
from drlrun.config import RunConfig, param
from drlrun.nets import LOG_2PI, QEnsemble, mlp_layers
from drlrun.optim import make_adam
from drlrun.policy import Deterministic, UnitToBox
from drlrun.registry import BUFFERS

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # the clamp of the authors' and SB3's implementations
LOG_2 = math.log(2.0)


@dataclass
class SACConfig:
    name: str = "sac"
    lr: float = param(3e-4, gt=0.0, help="Adam learning rate of actor, critics and temperature")
    actor_lr: float | None = param(None, gt=0.0, help="actor learning rate; null: lr")
    critic_lr: float | None = param(None, gt=0.0, help="critic learning rate; null: lr")
    gamma: float = param(0.99, ge=0.0, le=1.0, help="discount factor")
    batch_size: int = param(256, ge=1, help="transitions per gradient step")
    learning_starts: int = param(100, ge=0, help="env steps of uniformly random actions before learning")
    train_freq: int = param(1, ge=1, help="env steps between training rounds")
    gradient_steps: int = param(1, ge=1, help="gradient steps per training round")
    tau: float = param(0.005, gt=0.0, le=1.0, help="Polyak coefficient of the target critics")
    n_step: int = param(1, ge=1, help="steps in the bootstrapped return (1: the paper's one-step target)")
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


def td_target(returns: torch.Tensor, discounts: torch.Tensor, next_q_target: torch.Tensor,
              next_log_probs: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """Soft Bellman target y = r + gamma (1 - done) (min_i Q'_i(s', a') - alpha log pi(a'|s')).

    ``next_q_target`` is ``[critics, batch]``; ``discounts`` is already 0 after a termination."""
    soft_value = next_q_target.min(dim=0).values - alpha * next_log_probs
    return returns + discounts * soft_value


def qf_loss(q_values: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """J_Q = sum over critics of E[1/2 (Q_i(s, a) - y)^2]; ``q_values`` is ``[critics, batch]``.
    ``weights`` are prioritized replay's importance-sampling weights (None: a plain mean)."""
    squared = 0.5 * (q_values - y).pow(2).sum(dim=0)
    return squared.mean() if weights is None else (weights * squared).mean()


def actor_loss(log_probs: torch.Tensor, q_values: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """J_pi = E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi(.|s) reparameterized."""
    return (alpha * log_probs - q_values.min(dim=0).values).mean()


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
class SAC(ReplaySchedule):
    """Soft Actor-Critic for continuous (Box) actions."""

    Config = SACConfig
    action_spaces = ("continuous",)

    @staticmethod
    def check_config(cfg: SACConfig, run: RunConfig) -> None:
        check_off_policy_config(cfg, run)

    def __init__(self, cfg: SACConfig, ctx: BuildContext) -> None:
        self.cfg = cfg
        self.device = ctx.device
        spec = ctx.spec
        self.scaler = ActionScaler(spec, cfg.name, self.device)
        obs_dim, action_dim = spec.obs_dim, spec.action_dim
        self.actor = SquashedGaussianActor(ctx.network, obs_dim, action_dim).to(self.device)
        self.critic = QEnsemble(ctx.network, obs_dim, action_dim).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_params = list(self.actor.parameters())  # walked every step: listed once
        self.critic_params = list(self.critic.parameters())
        self.critic_target_params = list(self.critic_target.parameters())
        self.actor_optimizer = make_adam(self.actor_params, cfg.actor_lr or cfg.lr, self.device)
        self.critic_optimizer = make_adam(self.critic_params, cfg.critic_lr or cfg.lr, self.device)
        self.target_entropy = float(-action_dim if cfg.target_entropy is None else cfg.target_entropy)
        self.log_alpha = torch.tensor(math.log(cfg.alpha_init), device=self.device, requires_grad=cfg.autotune)
        self.alpha_optimizer = make_adam([self.log_alpha], cfg.lr, self.device) if cfg.autotune else None
        self._fixed_alpha = torch.tensor(cfg.alpha, device=self.device)
        self.buffer = BUFFERS.build(ctx.buffer.name, ctx.buffer, spec, gamma=cfg.gamma, n_step=cfg.n_step,
                                    device=self.device, seed=ctx.rng_seed("replay"), total_steps=ctx.total_steps)
        self.rng = np.random.default_rng(ctx.rng_seed("exploration"))
        self.eval_rng = np.random.default_rng(ctx.rng_seed("evaluation"))  # noisy evaluations
        self.steps = 0  # env steps observed
        self.n_updates = 0  # critic gradient steps
        self.last_train_step = -1  # the training schedule starts at learning_starts
        self._last: dict[str, torch.Tensor] = {}  # detached tensors, read by metrics()

    @property
    def alpha(self) -> torch.Tensor:
        """The current temperature, as a detached tensor (no host sync)."""
        return self.log_alpha.detach().exp() if self.cfg.autotune else self._fixed_alpha

    # ------------------------------------------------------------------ act
    def act(self, obs: np.ndarray, *, explore: bool, deterministic: bool = True) -> np.ndarray:
        if explore and self.steps < self.cfg.learning_starts:
            return self.scaler.uniform(self.rng, len(obs))
        with torch.inference_mode():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            sample = explore or not deterministic
            actions = self.actor.sample(obs_t)[0] if sample else self.actor.deterministic(obs_t)
            actions = actions.cpu().numpy()
        return self.scaler.to_env(actions)

    # observe() and update() come from ReplaySchedule: replay, then gradient_step() on schedule.

    def gradient_step(self, batch: ReplayBatch) -> None:
        """One critic update; every ``policy_frequency``-th also an actor and temperature update."""
        c = self.cfg
        alpha = self.alpha
        actions = self.scaler.to_unit(batch.actions)
        with torch.no_grad():
            next_actions, next_log_probs = self.actor.sample(batch.next_obs)
            y = td_target(batch.returns, batch.discounts, self.critic_target(batch.next_obs, next_actions),
                          next_log_probs, alpha)
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
        last["qf2_values"] = q_values[1].detach().mean()

        if self.n_updates % c.policy_frequency == 0:
            pi_actions, log_probs = self.actor.sample(batch.obs)
            pi_loss = actor_loss(log_probs, self.critic(batch.obs, pi_actions), alpha)
            self.actor_optimizer.zero_grad(set_to_none=True)
            pi_loss.backward(inputs=self.actor_params)  # no gradients for the critics
            self.actor_optimizer.step()
            last["actor_loss"] = pi_loss.detach()
            if self.alpha_optimizer is not None:
                alpha_loss = temperature_loss(self.log_alpha, log_probs, self.target_entropy)
                self.alpha_optimizer.zero_grad(set_to_none=True)
                alpha_loss.backward()
                self.alpha_optimizer.step()
                last["alpha_loss"] = alpha_loss.detach()
        soft_update(self.critic_target_params, self.critic_params, c.tau)

    def export_policy(self) -> nn.Module:
        """Raw observations -> tanh(mean) scaled to the action bounds (drlrun-export)."""
        s = self.scaler
        return nn.Sequential(Deterministic(self.actor), UnitToBox(s.low, s.high, s.shape))

    def metrics(self) -> dict[str, float]:
        out = {"losses/alpha": float(self.alpha)}
        out.update({f"losses/{key}": float(value) for key, value in self._last.items()})
        if self.n_updates:
            out["charts/gradient_steps"] = float(self.n_updates)
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self, *, with_buffer: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            **self.replay_state(with_buffer=with_buffer),
        }
        if self.alpha_optimizer is not None:
            state["alpha_optimizer"] = self.alpha_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        for name in ("actor_optimizer", "critic_optimizer", "alpha_optimizer"):
            optimizer = getattr(self, name)
            if name in state and optimizer is not None:
                optimizer.load_state_dict(state[name])
        if "log_alpha" in state:
            with torch.no_grad():
                self.log_alpha.copy_(state["log_alpha"])
        self.load_replay_state(state)
