"""REINFORCE (Williams, 1992), optionally with a learned value baseline.

Each environment of the vector env plays its own episodes. When one ends, its Monte Carlo returns
G_t = r_t + gamma * G_{t+1} are computed and the episode joins the next batch; once
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
from drlrun.config import RunConfig, param
from drlrun.nets import ActorCritic, check_policy_gradient_config
from drlrun.normalize import ObsNormalizer
from drlrun.optim import clip_grad_norm, make_adam
from drlrun.policy import actor_critic_policy


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


def discounted_returns(rewards: np.ndarray, gamma: float, bootstrap: float = 0.0) -> np.ndarray:
    """G_t = r_t + gamma * G_{t+1} with G_T = ``bootstrap``, computed backwards over one episode."""
    returns = np.empty(len(rewards), dtype=np.float64)
    running = bootstrap
    for t, reward in zip(range(len(rewards) - 1, -1, -1), rewards[::-1].tolist(), strict=True):
        running = reward + gamma * running
        returns[t] = running
    return returns


def policy_gradient_loss(log_probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """-E[log pi(a|s) * w]: its gradient is the REINFORCE estimate of -grad J."""
    return -(log_probs * weights).mean()


class EpisodeStore:
    """Per-env trajectories in preallocated arrays that double when an episode outgrows them;
    finished episodes move to a flat batch of (obs, action, return)."""

    def __init__(self, num_envs: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 discrete: bool, capacity: int = 512) -> None:
        self.num_envs = num_envs
        self.action_dtype = np.int64 if discrete else np.float32
        self.act_shape = () if discrete else action_shape
        self.obs = np.zeros((capacity, num_envs, *obs_shape), dtype=np.float32)
        self.actions = np.zeros((capacity, num_envs, *self.act_shape), dtype=self.action_dtype)
        self.rewards = np.zeros((capacity, num_envs), dtype=np.float64)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.batch_obs = np.zeros((capacity * num_envs, *obs_shape), dtype=np.float32)
        self.batch_actions = np.zeros((capacity * num_envs, *self.act_shape), dtype=self.action_dtype)
        self.batch_returns = np.zeros(capacity * num_envs, dtype=np.float32)
        self.batch_size = 0
        self.batch_episodes = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, valid: np.ndarray) -> None:
        envs = np.flatnonzero(valid)
        if len(envs) and self.length[envs].max() >= len(self.obs):
            self.obs, self.actions, self.rewards = (np.concatenate([a, np.zeros_like(a)]) for a in
                                                    (self.obs, self.actions, self.rewards))
        rows = self.length[envs]
        self.obs[rows, envs] = obs[envs]
        self.actions[rows, envs] = actions[envs]
        self.rewards[rows, envs] = rewards[envs]
        self.length[envs] += 1

    def finish(self, env: int, gamma: float, bootstrap: float) -> None:
        """Env ``env``'s episode ended: append its steps and returns to the batch."""
        n = int(self.length[env])
        end = self.batch_size + n
        if end > len(self.batch_obs):
            grow = max(end, 2 * len(self.batch_obs))
            self.batch_obs = np.resize(self.batch_obs, (grow, *self.batch_obs.shape[1:]))
            self.batch_actions = np.resize(self.batch_actions, (grow, *self.batch_actions.shape[1:]))
            self.batch_returns = np.resize(self.batch_returns, grow)
        self.batch_obs[self.batch_size:end] = self.obs[:n, env]
        self.batch_actions[self.batch_size:end] = self.actions[:n, env]
        self.batch_returns[self.batch_size:end] = discounted_returns(self.rewards[:n, env], gamma, bootstrap)
        self.batch_size = end
        self.batch_episodes += 1
        self.length[env] = 0

    def state_dict(self) -> dict[str, Any]:
        return {"obs": torch.from_numpy(self.obs.copy()), "actions": torch.from_numpy(self.actions.copy()),
                "rewards": torch.from_numpy(self.rewards.copy()), "length": torch.from_numpy(self.length.copy()),
                "batch_obs": torch.from_numpy(self.batch_obs[:self.batch_size].copy()),
                "batch_actions": torch.from_numpy(self.batch_actions[:self.batch_size].copy()),
                "batch_returns": torch.from_numpy(self.batch_returns[:self.batch_size].copy()),
                "batch_episodes": self.batch_episodes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs, self.actions = state["obs"].numpy().copy(), state["actions"].numpy().copy()
        self.rewards, self.length = state["rewards"].numpy().copy(), state["length"].numpy().copy()
        size = len(state["batch_returns"])
        if size > len(self.batch_obs):
            self.batch_obs = np.resize(self.batch_obs, (size, *self.batch_obs.shape[1:]))
            self.batch_actions = np.resize(self.batch_actions, (size, *self.batch_actions.shape[1:]))
            self.batch_returns = np.resize(self.batch_returns, size)
        self.batch_obs[:size] = state["batch_obs"].numpy()
        self.batch_actions[:size] = state["batch_actions"].numpy()
        self.batch_returns[:size] = state["batch_returns"].numpy()
        self.batch_size, self.batch_episodes = size, int(state["batch_episodes"])


class Reinforce:
    """Monte Carlo policy gradient for discrete and continuous actions."""

    Config = ReinforceConfig
    action_spaces = ("discrete", "continuous")

    @staticmethod
    def check_config(cfg: ReinforceConfig, run: RunConfig) -> None:
        check_policy_gradient_config(cfg.name, run)

    def __init__(self, cfg: ReinforceConfig, ctx: BuildContext) -> None:
        spec = ctx.spec
        self.cfg = cfg
        self.device = ctx.device
        self.discrete = spec.action_kind == "discrete"
        self.policy = ActorCritic(ctx.network, spec.obs_dim, self.discrete, spec.action_dim, critic=cfg.baseline,
                                  orthogonal=cfg.orthogonal_init, log_std_init=cfg.log_std_init).to(self.device)
        self.params = list(self.policy.parameters())  # walked every update: listed once
        self.optimizer = make_adam(self.params, cfg.lr, self.device)
        self.store = EpisodeStore(spec.num_envs, spec.obs_shape, spec.action_shape, self.discrete)
        self.obs_norm = ObsNormalizer(spec.obs_shape, enabled=cfg.normalize_obs)
        self.low, self.high = spec.action_low, spec.action_high
        self.spec = spec
        self.action_shape = spec.action_shape
        self.steps = 0
        self.n_updates = 0
        self._pending: tuple[np.ndarray, np.ndarray] | None = None
        self._last: dict[str, torch.Tensor] = {}

    def act(self, obs: np.ndarray, *, explore: bool, deterministic: bool = True) -> np.ndarray:
        normed = self.obs_norm(obs, update=explore)
        with torch.inference_mode():
            obs_t = torch.from_numpy(normed).to(self.device)
            actions, _, _ = self.policy.act(obs_t, deterministic=not explore and deterministic)
            actions_np = actions.cpu().numpy().reshape(len(obs), *self.action_shape)
        if explore:
            self._pending = (normed, actions_np)
        return actions_np if self.discrete else np.clip(actions_np, self.low, self.high)

    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray) -> None:
        assert self._pending is not None, "observe() must follow act(explore=True)"
        normed, raw_actions = self._pending
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
        """Episodes of envs ``ended`` go to the batch; those not terminated bootstrap their last
        return from V(final observation) when there is a baseline."""
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
        log_probs, entropy, values = self.policy.evaluate(obs, actions)
        weights = returns if values is None else returns - values.detach()
        if cfg.normalize_returns and n > 1:
            weights = (weights - weights.mean()) / (weights.std() + 1e-8)
        policy_loss = policy_gradient_loss(log_probs, weights)
        entropy_loss = entropy.mean()
        loss = policy_loss - cfg.ent_coef * entropy_loss
        if values is not None:
            value_loss = ((values - returns) ** 2).mean()
            loss = loss + cfg.vf_coef * value_loss
            self._last["losses/value_loss"] = value_loss.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            clip_grad_norm(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self._last.update({"losses/policy_loss": policy_loss.detach(), "losses/entropy": entropy_loss.detach(),
                           "charts/batch_episodes": torch.tensor(float(store.batch_episodes))})
        store.batch_size = store.batch_episodes = 0
        self.n_updates += 1

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in self._last.items()}

    def export_policy(self) -> torch.nn.Module:
        """Raw observations -> the actions of a deterministic evaluation (drlrun-export)."""
        return actor_critic_policy(self.policy, self.obs_norm, self.spec)

    def state_dict(self, *, with_buffer: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                                 "obs_norm": self.obs_norm.state_dict(),
                                 "counters": {"steps": self.steps, "n_updates": self.n_updates},
                                 # episodes in progress and the batch: small, always kept (exact resume)
                                 "episodes": self.store.state_dict()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        self.obs_norm.load_state_dict(state["obs_norm"])
        for key, value in state.get("counters", {}).items():
            setattr(self, key, int(value))
        if "episodes" in state:
            self.store.load_state_dict(state["episodes"])
