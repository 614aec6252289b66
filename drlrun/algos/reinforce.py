"""REINFORCE (Williams, 1992), optionally with a learned value baseline.

Each environment of the vector env plays its own episodes. When one ends, its Monte Carlo returns
G_t = r_t + gamma * G_{t+1} are computed (``discounted_returns`` in ``drlrun/buffers/episodes.py``)
and the episode joins the next batch; once
``episodes_per_update`` episodes are ready, one gradient step on

    L = -E[log pi(a_t|s_t) (G_t - b(s_t))] + c_v * E[(V(s_t) - G_t)^2] - c_e * H[pi]

where b = V (``baseline=true``) or 0. ``normalize_returns`` standardises the weights G_t - b(s_t)
over the batch. An episode cut by a time limit bootstraps its last return from V(final
observation) when there is a baseline (it did not end, the clock did); a terminated one never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from drlrun.agent import BuildContext
from drlrun.algos.onpolicy import OnPolicyAgent, check_policy_gradient_config
from drlrun.buffers.episodes import EpisodeStore
from drlrun.config import RunConfig, param
from drlrun.optim import Optimizer, make_adam


@dataclass
class ReinforceConfig:
    name: str = "reinforce"
    lr: float = param(1e-3, gt=0.0, help="Adam learning rate")
    gamma: float = param(0.99, ge=0.0, le=1.0, help="discount factor")
    episodes_per_update: int = param(8, ge=1, help="finished episodes per gradient step")
    baseline: bool = param(True, help="subtract a learned V(s) from the returns")
    normalize_returns: bool = param(True, help="standardise the policy-gradient weights per batch")
    vf_coef: float = param(0.5, ge=0.0, help="value-loss weight (with a baseline)")
    ent_coef: float = param(0.0, ge=0.0, help="entropy bonus weight")
    max_grad_norm: float = param(0.5, ge=0.0, help="gradient-norm clip; 0 disables it")
    normalize_obs: bool = param(False, help="running mean/std observation normalisation")
    orthogonal_init: bool = True
    log_std_init: float = param(0.0, help="initial log-std of the Gaussian policy (continuous actions)")


def policy_gradient_loss(log_probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """-E[log pi(a|s) * w]: its gradient is the REINFORCE estimate of -grad J."""
    return -(log_probs * weights).mean()


class Reinforce(OnPolicyAgent):
    """Monte Carlo policy gradient for discrete and continuous actions. Acting, export, state and
    the optimizer step come from :class:`OnPolicyAgent`; the storage is whole episodes."""

    Config = ReinforceConfig
    cfg: ReinforceConfig
    networks = ("mlp",)  # flat observations only: its episode store keeps float32

    @staticmethod
    def check_config(cfg: ReinforceConfig, run: RunConfig) -> None:
        check_policy_gradient_config(cfg.name, run)

    def __init__(self, cfg: ReinforceConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx, critic=cfg.baseline)

    def make_optimizer(self) -> Optimizer:
        return make_adam(self.params, self.cfg.lr, self.device)

    def build_storage(self, ctx: BuildContext) -> None:
        spec = ctx.spec
        self.store = EpisodeStore(spec.num_envs, spec.obs_shape, spec.action_shape, self.discrete)

    # act() comes from OnPolicyAgent.

    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray) -> None:
        assert self._pending is not None, "observe() must follow act(explore=True)"
        normed, raw_actions, _, _ = self._pending
        # An invalid row (an autoreset) with steps stored for its env: the episode was cut there
        # (a resume could not rebuild it); it ends as at a time limit, at this row's observation.
        dropped = np.flatnonzero(~valid & (self.store.length > 0))
        if len(dropped):
            self._finish(dropped, np.zeros(len(obs), dtype=bool), obs)
        self.store.add(normed, raw_actions, rewards, valid)
        self.steps += len(obs)
        ended = np.flatnonzero((terminated | truncated) & valid)  # only real steps end episodes
        if len(ended):
            self._finish(ended, terminated, next_obs)

    def _finish(self, ended: np.ndarray, terminated: np.ndarray, final_obs: np.ndarray) -> None:
        """Episodes of envs ``ended`` go to the batch with their returns G_t; those not terminated
        bootstrap their last return from V(final observation) when there is a baseline."""
        bootstrap = np.zeros(len(final_obs))
        cut = ended[~terminated[ended]]
        if self.cfg.baseline and len(cut):
            with torch.inference_mode():
                final = torch.from_numpy(self.obs_norm(final_obs[cut], update=False)).to(self.device)
                bootstrap[cut] = self.policy.value(final).cpu().numpy()
        for env in ended:
            self.store.finish(int(env), self.cfg.gamma, float(bootstrap[env]))

    def update(self) -> None:
        store, cfg = self.store, self.cfg
        if store.batch_episodes < cfg.episodes_per_update:
            return
        n = store.batch_size
        obs = torch.from_numpy(store.batch_obs[:n]).to(self.device)
        actions = torch.from_numpy(store.batch_actions[:n]).to(self.device)
        returns = torch.from_numpy(store.batch_returns[:n]).to(self.device)
        log_probs, entropy, values = self.policy.log_prob_entropy_value(obs, actions)
        advantages = returns if values is None else returns - values.detach()  # G_t - b(s_t)
        if cfg.normalize_returns and n > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = policy_gradient_loss(log_probs, advantages)
        entropy_loss = entropy.mean()
        loss = policy_loss - cfg.ent_coef * entropy_loss
        if values is not None:
            value_loss = ((values - returns) ** 2).mean()
            loss = loss + cfg.vf_coef * value_loss
            self._last["losses/value_loss"] = value_loss.detach()
        self.clip_and_step(loss)
        self._last.update({"losses/policy_loss": policy_loss.detach(), "losses/entropy": entropy_loss.detach(),
                           "charts/batch_episodes": torch.tensor(float(store.batch_episodes))})
        store.batch_size = store.batch_episodes = 0
        self.n_updates += 1

    def metrics(self) -> dict[str, float]:
        """The losses only: no learning-rate schedule to chart."""
        return {k: float(v) for k, v in self._last.items()}

    # ------------------------------------------------------------------ state
    # state_dict() and load_state_dict() come from OnPolicyAgent; the storage is the episodes.
    def storage_state(self) -> dict[str, Any]:
        return {"episodes": self.store.state_dict()}  # in progress and the batch: small, always kept

    def load_storage_state(self, state: dict[str, Any]) -> None:
        if "episodes" in state:
            self.store.load_state_dict(state["episodes"])
