"""DQN (Mnih et al., 2015) and the course's exercises on top of it.

- experience replay and a target network (hard copy every ``target_update_interval`` env steps,
  or Polyak averaging with ``tau < 1``), epsilon-greedy exploration annealed linearly;
- Double DQN (van Hasselt et al., 2016), ``algo.double=true``: the online network picks the next
  action, the target network scores it;
- Dueling networks (Wang et al., 2016), ``network=dueling`` (see ``drlrun/nets.py``);
- image observations with ``network=cnn`` (``network.dueling=true`` for the dueling head): frames
  are stored and acted on in the env's dtype (uint8, bool) and scaled inside the network;
- prioritized replay (Schaul et al., 2016), ``buffer=prioritized``: the loss is weighted by the
  importance-sampling weights and the new |TD errors| become the priorities;
- n-step returns, ``algo.n_step``: the buffer returns R = sum_{k<m} gamma^k r_{t+k} and the
  discount gamma^m (0 after a termination) to bootstrap with.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from drlrun.agent import BuildContext
from drlrun.algos.offpolicy import OffPolicyAgent, OffPolicyConfig, due, soft_update, td_target
from drlrun.buffers.replay import ReplayBatch, observation_dtype
from drlrun.config import RunConfig, param
from drlrun.errors import DrlrunError
from drlrun.nets import build_network, check_network
from drlrun.optim import clip_grad_norm, make_adam
from drlrun.policy import Greedy


@dataclass
class DQNConfig(OffPolicyConfig):
    name: str = "dqn"
    lr: float = param(1e-4, gt=0.0, help="Adam learning rate")
    batch_size: int = param(64, ge=1, help="transitions per gradient step")
    learning_starts: int = param(1_000, ge=0, help="env steps of random play before learning")
    train_freq: int = param(4, ge=1, help="env steps between training rounds")
    tau: float = param(1.0, gt=0.0, le=1.0, help="1: hard copy; below 1: Polyak averaging")
    anneal_lr: bool = param(False, help="decay the learning rate linearly to 0 over total_steps")
    target_update_interval: int = param(1_000, ge=1, help="env steps between target updates")
    exploration_fraction: float = param(0.1, ge=0.0, le=1.0, help="share of training to anneal epsilon over")
    exploration_initial_eps: float = param(1.0, ge=0.0, le=1.0)
    exploration_final_eps: float = param(0.05, ge=0.0, le=1.0)
    loss: str = param("huber", choices=("huber", "mse"))
    max_grad_norm: float = param(10.0, ge=0.0, help="gradient-norm clip; 0 disables it")
    double: bool = param(False, help="Double DQN target")


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """Value moving linearly from ``start`` to ``end`` over ``duration`` steps, then ``end``."""
    if duration <= 0:
        return end
    return start + min(1.0, step / duration) * (end - start)


def greedy_value(next_q_target: torch.Tensor, next_q_online: torch.Tensor | None = None) -> torch.Tensor:
    """V(s') to bootstrap with: max_a' Q_target(s', a') (DQN), or Q_target(s', a') with
    a' = argmax Q_online(s', .) (Double DQN: the online network picks, the target network scores)."""
    if next_q_online is None:
        return next_q_target.max(dim=1).values
    next_actions = next_q_online.argmax(dim=1, keepdim=True)
    return next_q_target.gather(1, next_actions).squeeze(1)


class DQN(OffPolicyAgent):
    """Deep Q-learning for discrete actions."""

    Config = DQNConfig
    action_spaces = ("discrete",)
    networks = ("mlp", "dueling", "cnn")
    COUNTERS = (*OffPolicyAgent.COUNTERS, "last_target_step")
    MODULES = ("q_network", "target_network", "optimizer")

    @classmethod
    def check_config(cls, cfg: DQNConfig, run: RunConfig) -> None:
        super().check_config(cfg, run)
        if cfg.exploration_final_eps > cfg.exploration_initial_eps:
            raise DrlrunError(
                f"algo.exploration_final_eps={cfg.exploration_final_eps} is above "
                f"algo.exploration_initial_eps={cfg.exploration_initial_eps}; epsilon should decay."
            )

    def __init__(self, cfg: DQNConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.total_steps = ctx.total_steps
        self.n_actions = ctx.spec.n_actions
        spec = ctx.spec
        check_network(cfg.name, ctx.network.name, self.networks, spec.obs_shape, spec.id)
        obs_dtype = observation_dtype(spec)  # float32, or the frames' own uint8/bool
        self.obs_dtype = torch.from_numpy(np.zeros(0, obs_dtype)).dtype
        self.q_network = build_network(ctx.network, spec.obs_shape, self.n_actions, obs_dtype).to(self.device)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self.params = list(self.q_network.parameters())  # walked every step: listed once
        self.optimizer = make_adam(self.params, cfg.lr, self.device)
        self.last_target_step = 0

    @property
    def epsilon(self) -> float:
        c = self.cfg
        duration = int(c.exploration_fraction * self.total_steps)
        return linear_schedule(c.exploration_initial_eps, c.exploration_final_eps, duration, self.steps)

    # ------------------------------------------------------------------ act
    def act(self, obs: np.ndarray, *, explore: bool, deterministic: bool = True) -> np.ndarray:
        n = len(obs)
        if explore:
            eps = self.epsilon
        elif deterministic:
            eps = 0.0
        else:  # evaluation with a little noise: the final epsilon
            eps = self.cfg.exploration_final_eps
        rng = self.rng if explore else self.eval_rng  # evaluating leaves exploration's stream alone
        explore_mask = rng.random(n) < eps if eps > 0.0 else None
        if explore_mask is not None and explore_mask.all():  # every env explores: no forward pass
            return rng.integers(self.n_actions, size=n)
        with torch.inference_mode():
            q_values = self.q_network(torch.as_tensor(obs, dtype=self.obs_dtype, device=self.device))
            actions = q_values.argmax(dim=1).cpu().numpy()
        if explore_mask is not None:
            actions = np.where(explore_mask, rng.integers(self.n_actions, size=n), actions)
        return actions

    # ------------------------------------------------------------------ learn
    # observe() and update() come from OffPolicyAgent: replay, then gradient_step() on schedule.

    def gradient_step(self, batch: ReplayBatch) -> None:
        """Refresh the target network when due (env steps do not move within a training round, so
        this happens before the round's first step only), then one TD-learning step."""
        c = self.cfg
        target_rounds, self.last_target_step = due(self.steps, self.last_target_step, c.target_update_interval)
        if target_rounds:
            self._update_target(target_rounds)
        if c.anneal_lr:  # the policy settles as the run ends, instead of drifting on to its last step
            self.optimizer.param_groups[0]["lr"] = c.lr * max(0.0, 1.0 - self.steps / self.total_steps)
        loss, td_errors, q_taken = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if c.max_grad_norm > 0:
            clip_grad_norm(self.params, c.max_grad_norm)
        self.optimizer.step()
        if td_errors is not None:
            self.buffer.update_priorities(batch.indices, td_errors)
        self.n_updates += 1
        self._last.update(td_loss=loss.detach(), q_values=q_taken.detach().mean())

    def loss(self, batch: ReplayBatch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Importance-weighted Huber (or squared) TD error.

        Returns (loss, TD errors y - Q(s, a) for prioritized replay or None, Q(s, a))."""
        q_taken = self.q_network(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            next_q_online = self.q_network(batch.next_obs) if self.cfg.double else None
            next_values = greedy_value(self.target_network(batch.next_obs), next_q_online)
            y = td_target(batch.returns, batch.discounts, next_values)
        loss_fn = F.smooth_l1_loss if self.cfg.loss == "huber" else F.mse_loss
        if batch.weights is None:  # uniform replay: a plain mean, no priorities to update
            return loss_fn(q_taken, y), None, q_taken
        loss = (batch.weights * loss_fn(q_taken, y, reduction="none")).mean()
        return loss, y - q_taken.detach(), q_taken

    @torch.no_grad()
    def _update_target(self, rounds: int) -> None:
        if self.cfg.tau >= 1.0:
            self.target_network.load_state_dict(self.q_network.state_dict())
        else:  # ``rounds`` Polyak steps at once: 1 - (1 - tau)^rounds of the way
            soft_update(self.target_network, self.q_network, 1.0 - (1.0 - self.cfg.tau) ** rounds)

    def metrics(self) -> dict[str, float]:
        out = {"charts/epsilon": self.epsilon}
        if self._last:  # losses/td_loss, losses/q_values and charts/gradient_steps, once it learned
            out.update(super().metrics())
            out["charts/learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        return out

    def export_policy(self) -> torch.nn.Module:
        """Raw observations -> the greedy action (drlrun-export)."""
        return Greedy(self.q_network)

    # state_dict() and load_state_dict() come from OffPolicyAgent: MODULES and the replay state.
