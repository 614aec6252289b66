"""The on-policy (policy-gradient) family's base: what REINFORCE, A2C and PPO share.

All three act with an :class:`~drlrun.nets.ActorCritic` (observation normalisation, sampling,
clipping to the bounds), export the same deterministic policy, checkpoint the same way, and step
their optimizer the same way; that lives here once. A2C and PPO also collect the same rollout
and compute the same GAE advantages, then differ only in how they learn from it: each one's file
holds its config and its ``learn`` method (the loss). REINFORCE learns from whole episodes
instead, so it swaps the storage (:meth:`OnPolicyAgent.build_storage` and its state) and the
``observe``/``update`` around it, and keeps the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from drlrun.agent import BuildContext
from drlrun.buffers.replay import observation_dtype
from drlrun.buffers.rollout import RolloutBuffer, episode_ends, gae
from drlrun.config import RunConfig, param
from drlrun.errors import DrlrunError
from drlrun.nets import ActorCritic, check_network, takes_frames
from drlrun.normalize import ObsNormalizer, RewardScaler
from drlrun.optim import Optimizer, clip_grad_norm
from drlrun.policy import actor_critic_policy


@dataclass
class OnPolicyConfig:
    """Hyperparameters every rollout-based actor-critic has."""

    name: str = "onpolicy"
    lr: float = param(3e-4, gt=0.0, help="learning rate")
    gamma: float = param(0.99, ge=0.0, le=1.0, help="discount factor")
    gae_lambda: float = param(0.95, ge=0.0, le=1.0, help="GAE lambda; 1 gives n-step returns")
    n_steps: int = param(128, ge=1, help="vector steps per rollout")
    ent_coef: float = param(0.0, ge=0.0, help="entropy bonus weight")
    vf_coef: float = param(0.5, ge=0.0, help="value-loss weight")
    max_grad_norm: float = param(0.5, ge=0.0, help="gradient-norm clip; 0 disables it")
    normalize_advantage: bool = True
    anneal_lr: bool = param(False, help="decay the learning rate linearly to 0")
    normalize_obs: bool = param(False, help="running mean/std observation normalisation")
    normalize_reward: bool = param(False, help="scale rewards by the std of the discounted return")
    orthogonal_init: bool = True
    log_std_init: float = param(0.0, help="initial log-std of the Gaussian policy (continuous actions)")
    use_sde: bool = param(False, help="continuous actions: generalized state-dependent exploration (gSDE)")
    sde_sample_freq: int = param(-1, ge=-1, help="gSDE: vector steps between new exploration matrices; "
                                                  "-1 or 0: one per rollout")


def check_policy_gradient_config(algo: str, run: RunConfig, networks: tuple[str, ...] = ("mlp",)) -> None:
    """The policy-gradient family builds its policy from ``networks`` (A2C and PPO: mlp, or cnn on
    frames) and learns from its own rollouts: a Q-network or a replay buffer chosen for it is a
    user error, not something to ignore."""
    if run.network.name not in networks:
        raise DrlrunError(f"algo={algo} builds its policy from network={' or network='.join(networks)}; "
                          f"network={run.network.name} is not one of them. Valid choices: {', '.join(networks)}.")
    if run.buffer.name != "uniform":
        raise DrlrunError(f"algo={algo} learns from its own rollouts, so buffer={run.buffer.name} would be "
                          "ignored. Leave the buffer at its default (uniform).")


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 - Var[target - predicted] / Var[target]: 1 is a perfect critic, 0 no better than a constant."""
    var = float(np.var(target))
    return float("nan") if var == 0 else 1.0 - float(np.var(target - predicted)) / var


class OnPolicyAgent:
    """Acts with an actor-critic, and (A2C, PPO) fills a rollout and calls ``self.learn(batch)``
    each time it is full. Subclasses pick the optimizer (:meth:`make_optimizer`) and the loss."""

    action_spaces = ("discrete", "continuous")
    networks: tuple[str, ...] = ("mlp", "cnn")  # cnn: image observations, a shared conv torso

    @classmethod
    def check_config(cls, cfg: OnPolicyConfig, run: RunConfig) -> None:
        check_policy_gradient_config(cfg.name, run, cls.networks)
        rollout = cfg.n_steps * run.env.num_envs
        if run.total_steps < rollout:
            raise DrlrunError(
                f"total_steps={run.total_steps} is less than one rollout (algo.n_steps={cfg.n_steps} x "
                f"env.num_envs={run.env.num_envs} = {rollout}): the agent would never learn."
            )

    def __init__(self, cfg: Any, ctx: BuildContext, *, critic: bool = True) -> None:
        """``cfg`` has at least ``lr``, ``max_grad_norm``, ``normalize_obs``, ``orthogonal_init``
        and ``log_std_init``; ``critic=False`` builds the policy without V(s)."""
        spec = ctx.spec
        self.cfg = cfg
        self.device = ctx.device
        self.spec = spec
        self.discrete = spec.action_kind == "discrete"
        check_network(cfg.name, ctx.network.name, self.networks, spec.obs_shape, spec.id)
        self.frames = takes_frames(spec.obs_shape)  # kept as the env gives them, scaled in the network
        self.obs_dtype = observation_dtype(spec)
        if self.frames and cfg.normalize_obs:
            raise DrlrunError(f"algo.normalize_obs=true: env.id={spec.id!r} gives frames, which network=cnn scales "
                              "to [0, 1] itself. Set algo.normalize_obs=false.")
        sde = bool(getattr(cfg, "use_sde", False))  # A2C and PPO have it; REINFORCE samples per step
        if sde and self.discrete:
            raise DrlrunError(f"algo.use_sde=true explores with state-dependent Gaussian noise, for continuous "
                              f"actions; env.id={spec.id!r} has discrete ones. Set algo.use_sde=false.")
        self.policy = ActorCritic(ctx.network, spec.obs_shape, self.discrete, spec.action_dim, critic=critic,
                                  orthogonal=cfg.orthogonal_init, log_std_init=cfg.log_std_init,
                                  obs_dtype=self.obs_dtype, sde=sde).to(self.device)
        # gSDE's exploration matrices, one per env: drawn at each rollout's start and every
        # sde_sample_freq steps (act), kept in the checkpoint so that a resumed rollout explores the same
        self.exploration: torch.Tensor | None = None
        self.params = list(self.policy.parameters())  # walked every minibatch: listed once
        self.optimizer = self.make_optimizer()
        self.obs_norm = ObsNormalizer(spec.obs_shape, enabled=cfg.normalize_obs)
        self.low, self.high = spec.action_low, spec.action_high
        self.action_shape = spec.action_shape
        self.steps = 0
        self.n_updates = 0
        self._last: dict[str, Any] = {}
        # act(explore=True)'s normalised obs, actions, log-probs and values, for observe()
        self._pending: tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor | None] | None = None
        self.build_storage(ctx)

    def make_optimizer(self) -> Optimizer:
        raise NotImplementedError  # each algorithm picks its optimizer

    def build_storage(self, ctx: BuildContext) -> None:
        """The rollout of ``n_steps`` vector steps, its reward scaling, and the minibatch RNG."""
        cfg, spec = self.cfg, ctx.spec
        self.rollout = RolloutBuffer(cfg.n_steps, spec.num_envs, spec.obs_shape, spec.action_shape, self.discrete,
                                     self.obs_dtype)
        self.reward_scaler = RewardScaler(spec.num_envs, cfg.gamma, enabled=cfg.normalize_reward)
        self.total_updates = max(1, ctx.total_steps // (cfg.n_steps * spec.num_envs))
        self.generator = torch.Generator().manual_seed(ctx.rng_seed("minibatch"))  # minibatch order

    # ------------------------------------------------------------------ act
    def policy_input(self, obs: np.ndarray, *, update: bool) -> np.ndarray:
        """Frames as the env gives them; flat observations as float32, normalised if enabled."""
        return np.asarray(obs, dtype=self.obs_dtype) if self.frames else self.obs_norm(obs, update=update)

    def act(self, obs: np.ndarray, *, explore: bool, deterministic: bool = True) -> np.ndarray:
        normed = self.policy_input(obs, update=explore)
        with torch.inference_mode():
            obs_t = torch.from_numpy(normed).to(self.device)
            sampled_sde = self.policy.sde and (explore or not deterministic)
            exploration = self.sde_exploration(len(obs), explore) if sampled_sde else None
            actions, log_probs, values = self.policy.act(obs_t, deterministic=not explore and deterministic,
                                                         exploration=exploration)
            actions_np = actions.cpu().numpy().reshape(len(obs), *self.action_shape)
        if explore:  # remembered for observe(): storage keeps the unclipped action
            self._pending = (normed, actions_np, log_probs, values)
        if not self.discrete:
            return np.clip(actions_np, self.low, self.high)
        return actions_np

    def sde_exploration(self, n: int, explore: bool) -> torch.Tensor:
        """gSDE's matrices for this step: training keeps them for ``sde_sample_freq`` steps of the
        rollout (a new rollout, after an update, always draws new ones: ``log_std`` has changed);
        a sampled evaluation draws new ones every step."""
        if not explore:
            return self.policy.sample_exploration(n)
        freq, pos = self.cfg.sde_sample_freq, self.rollout.pos
        if self.exploration is None or pos == 0 or (freq > 0 and pos % freq == 0):
            self.exploration = self.policy.sample_exploration(n)
        return self.exploration

    # ------------------------------------------------------------------ observe
    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray) -> None:
        assert self._pending is not None, "observe() must follow act(explore=True)"
        normed, raw_actions, log_probs, values = self._pending
        assert values is not None
        ended = terminated | truncated
        scaled = self.reward_scaler(rewards, ended, valid)
        self.rollout.add(normed, raw_actions, log_probs.cpu().numpy(), values.cpu().numpy(), scaled, terminated,
                         ended, valid, next_obs)
        self.steps += len(obs)

    # ------------------------------------------------------------------ update
    def update(self) -> None:
        if not self.rollout.full:
            return
        cfg, r = self.cfg, self.rollout
        with torch.inference_mode():
            next_obs = torch.from_numpy(self.policy_input(r.next_obs, update=False)).to(self.device)
            last_values = self.policy.value(next_obs).cpu().numpy()
        ended = episode_ends(r.ended, r.valid)
        advantages, returns = gae(r.rewards, r.values, last_values, r.terminated, ended, cfg.gamma, cfg.gae_lambda)
        if cfg.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr * (1.0 - self.progress)
        valid = r.valid
        batch = {
            "obs": r.obs[valid], "actions": r.actions[valid], "log_probs": r.log_probs[valid],
            "values": r.values[valid], "advantages": advantages[valid], "returns": returns[valid].astype(np.float32),
        }
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in batch.items()}
        self._last = self.learn(tensors)
        self._last["losses/explained_variance"] = explained_variance(batch["values"], batch["returns"])
        self.rollout.pos = 0
        self.n_updates += 1

    @property
    def progress(self) -> float:
        """Share of the run's updates done, in [0, 1]: annealed values stop at their final value
        (a rollout past the planned count, when total_steps is not a multiple of one, must not
        turn a learning rate or clip range negative)."""
        return min(1.0, self.n_updates / self.total_updates)

    def learn(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        raise NotImplementedError  # the algorithm's loss

    def minibatches(self, batch: dict[str, torch.Tensor], size: int) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch of shuffled minibatches of ``cfg.batch_size``. A minibatch that would hold the
        whole rollout is the rollout itself: a mean over it does not depend on the order."""
        batch_size = getattr(self.cfg, "batch_size", size)
        if batch_size >= size:
            yield batch
            return
        order = torch.randperm(size, generator=self.generator).to(self.device)
        for start in range(0, size, batch_size):
            mb = order[start:start + batch_size]
            yield {key: value[mb] for key, value in batch.items()}

    def clip_and_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            clip_grad_norm(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()

    def metrics(self) -> dict[str, float]:
        out = {k: float(v) for k, v in self._last.items()}
        out["charts/learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        return out

    def export_policy(self) -> torch.nn.Module:
        """Raw observations -> the actions of a deterministic evaluation (drlrun-export)."""
        return actor_critic_policy(self.policy, self.obs_norm, self.spec)

    # ------------------------------------------------------------------ state
    def state_dict(self, *, with_buffer: bool = True) -> dict[str, Any]:
        """The storage in progress (rollout or episodes) is small: always kept (``with_buffer`` is
        for replay buffers), so that a resumed run is exact."""
        state = {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "obs_norm": self.obs_norm.state_dict(),
                 "counters": {"steps": self.steps, "n_updates": self.n_updates}, **self.storage_state()}
        if self.exploration is not None:
            state["exploration"] = self.exploration.cpu()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        self.obs_norm.load_state_dict(state["obs_norm"])
        for key, value in state.get("counters", {}).items():
            setattr(self, key, int(value))
        if self.policy.sde and "exploration" in state:
            self.exploration = state["exploration"].to(self.device)
        self.load_storage_state(state)

    def storage_state(self) -> dict[str, Any]:
        return {"reward_scaler": self.reward_scaler.state_dict(), "generator": self.generator.get_state(),
                "rollout": self.rollout.state_dict()}

    def load_storage_state(self, state: dict[str, Any]) -> None:
        self.reward_scaler.load_state_dict(state["reward_scaler"])
        if "generator" in state:
            self.generator.set_state(state["generator"])
        if "rollout" in state:
            self.rollout.load_state_dict(state["rollout"])
