"""A2C, the synchronous advantage actor-critic (Mnih et al., 2016).

Per rollout of ``n_steps`` vector steps: n-step (or GAE) advantages, then one gradient step on

    L = -E[log pi(a_t|s_t) A_t] + c_v * E[(V(s_t) - R_t)^2] - c_e * H[pi]

with RMSprop (the paper's choice) or Adam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from drlrun.algos.onpolicy import OnPolicyAgent, OnPolicyConfig
from drlrun.config import param
from drlrun.optim import Optimizer, make_adam


@dataclass
class A2CConfig(OnPolicyConfig):
    name: str = "a2c"
    lr: float = param(7e-4, gt=0.0, help="learning rate")
    n_steps: int = param(5, ge=1, help="vector steps per rollout")
    gae_lambda: float = param(1.0, ge=0.0, le=1.0, help="GAE lambda; 1 gives n-step returns")
    normalize_advantage: bool = False
    optimizer: str = param("rmsprop", choices=("rmsprop", "adam"))
    rms_alpha: float = param(0.99, gt=0.0, lt=1.0, help="RMSprop smoothing constant")
    optimizer_eps: float = param(1e-5, gt=0.0)


class A2C(OnPolicyAgent):
    """Advantage actor-critic for discrete and continuous actions."""

    Config = A2CConfig
    cfg: A2CConfig

    def make_optimizer(self) -> Optimizer:
        cfg = self.cfg
        if cfg.optimizer == "adam":
            return make_adam(self.params, cfg.lr, self.device, eps=cfg.optimizer_eps)
        return torch.optim.RMSprop(self.params, lr=cfg.lr, alpha=cfg.rms_alpha, eps=cfg.optimizer_eps)

    def learn(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        cfg = self.cfg
        log_probs, entropy, values = self.policy.log_prob_entropy_value(batch["obs"], batch["actions"])
        assert values is not None
        advantages = batch["advantages"]
        if cfg.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -(log_probs * advantages).mean()
        value_loss = ((values - batch["returns"]) ** 2).mean()
        entropy_loss = entropy.mean()
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy_loss
        self.clip_and_step(loss)
        return {"losses/policy_loss": policy_loss.detach(), "losses/value_loss": value_loss.detach(),
                "losses/entropy": entropy_loss.detach()}
