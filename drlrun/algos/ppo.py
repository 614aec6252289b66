"""PPO with the clipped surrogate objective (Schulman et al., 2017).

Per rollout: GAE advantages (``onpolicy.py``), then ``n_epochs`` passes over shuffled minibatches
minimising

    L = -E[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)] + c_v * L_V - c_e * H[pi],
    r_t = pi(a_t|s_t) / pi_old(a_t|s_t),

with optional value clipping, advantage normalisation per minibatch, learning-rate and clip-range
annealing, and an early stop once the approximate KL to the old policy passes ``target_kl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from drlrun.algos.onpolicy import OnPolicyAgent, OnPolicyConfig
from drlrun.config import param
from drlrun.optim import Optimizer, make_adam


@dataclass
class PPOConfig(OnPolicyConfig):
    name: str = "ppo"
    n_steps: int = param(128, ge=1, help="vector steps per rollout")
    batch_size: int = param(64, ge=1, help="minibatch size")
    n_epochs: int = param(10, ge=1, help="passes over each rollout")
    clip_range: float = param(0.2, gt=0.0, help="epsilon of the clipped objective")
    anneal_clip: bool = param(False, help="decay the clip range linearly to 0")
    clip_vloss: bool = param(False, help="clip the value update to the same range")
    target_kl: float | None = param(None, gt=0.0, help="stop the epochs once approx KL exceeds this")


def clipped_surrogate(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                      clip_range: float, *, stats: bool = True) -> tuple[torch.Tensor, Any, Any]:
    """The policy loss -E[min(r A, clip(r, 1-eps, 1+eps) A)], the approximate KL
    E[(r - 1) - log r] (Schulman's low-variance estimator), and the fraction of clipped ratios
    (those two only with ``stats``: they are diagnostics, needed once per epoch, not per minibatch)."""
    log_ratio = log_probs - old_log_probs
    ratio = log_ratio.exp()
    policy_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)).mean()
    if not stats:
        return policy_loss, None, None
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    return policy_loss, approx_kl, clip_fraction


class PPO(OnPolicyAgent):
    """Proximal Policy Optimization for discrete and continuous actions."""

    Config = PPOConfig
    cfg: PPOConfig

    def make_optimizer(self) -> Optimizer:
        return make_adam(self.params, self.cfg.lr, self.device, eps=1e-5)

    def learn(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        cfg = self.cfg
        clip_range = cfg.clip_range * (1.0 - self.progress) if cfg.anneal_clip else cfg.clip_range
        size = len(batch["obs"])
        last = -(-size // min(cfg.batch_size, size)) - 1  # index of each epoch's last minibatch
        for _epoch in range(cfg.n_epochs):
            for index, mb in enumerate(self.minibatches(batch, size)):
                log_probs, entropy, values = self.policy.log_prob_entropy_value(mb["obs"], mb["actions"])
                assert values is not None
                advantages = mb["advantages"]
                if cfg.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                policy_loss, approx_kl, clip_fraction = clipped_surrogate(
                    log_probs, mb["log_probs"], advantages, clip_range, stats=index == last)
                returns = mb["returns"]
                if cfg.clip_vloss:
                    old_values = mb["values"]
                    clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
                    value_loss = 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2).mean()
                else:
                    value_loss = 0.5 * ((values - returns) ** 2).mean()
                entropy_loss = entropy.mean()
                loss = policy_loss - cfg.ent_coef * entropy_loss + cfg.vf_coef * value_loss
                self.clip_and_step(loss)
            if cfg.target_kl is not None and approx_kl > cfg.target_kl:
                break
        return {
            "losses/policy_loss": policy_loss.detach(), "losses/value_loss": value_loss.detach(),
            "losses/entropy": entropy_loss.detach(), "losses/approx_kl": approx_kl,
            "losses/clipfrac": clip_fraction, "charts/clip_range": clip_range,
        }
