"""Deployable policies: one ``nn.Module`` from a batch of raw observations to env actions.

An algorithm's ``export_policy()`` assembles its acting path from these blocks: the observation
normalisation it trained with (statistics frozen into buffers), its network, and the map to the
environment's actions (greedy over Q-values, or the deterministic action scaled or clipped to the
Box bounds). The module depends on torch alone, so ``drlrun-export`` can write it as TorchScript,
a ``torch.export`` program or ONNX, and it acts as the agent does in a deterministic evaluation.
:class:`ActionScaler` is the same [-1, 1] -> Box map as the agents use it while training.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from drlrun.agent import EnvSpec
from drlrun.errors import DrlrunError
from drlrun.nets import Tanh


class FrozenObsNorm(nn.Module):
    """(obs - mean) / sqrt(var + eps), clipped: the agent's running statistics, frozen. Computed
    in float64, as the agent does in numpy, so both give the same network input."""

    def __init__(self, mean: np.ndarray, var: np.ndarray, clip: float, eps: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float64)))
        self.register_buffer("std", torch.as_tensor(np.sqrt(np.asarray(var, dtype=np.float64) + eps)))
        self.clip = float(clip)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        normed = (obs.to(torch.float64) - self.mean) / self.std
        return normed.clamp(-self.clip, self.clip).to(torch.float32)


class Greedy(nn.Module):
    """Q-network -> the action with the highest value."""

    def __init__(self, q_network: nn.Module) -> None:
        super().__init__()
        self.q_network = q_network

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q_network(obs).argmax(dim=1)


class ActorMode(nn.Module):
    """An :class:`~drlrun.nets.ActorCritic`'s most likely action: the argmax of its logits, or
    its Gaussian's mean. Its encoder is a flatten, or (``network=cnn``) the frame encoder that
    scales the frames, which the exported policy then takes as the env gives them (uint8, bool)."""

    def __init__(self, actor_critic: nn.Module) -> None:
        super().__init__()
        self.encoder = actor_critic.encoder
        self.torso = actor_critic.torsos.member_module(0)
        self.actor_head = actor_critic.actor_head
        self.discrete = bool(actor_critic.discrete)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.actor_head(self.torso(self.encoder(obs)))
        return out.argmax(dim=-1) if self.discrete else out


class Deterministic(nn.Module):
    """A squashed-Gaussian actor's deterministic action, tanh(mean), in [-1, 1]."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.deterministic(obs)


class ActionScaler:
    """Maps between a squashed policy's [-1, 1] actions and the environment's [low, high] box,
    while training: SAC and TD3 act through :meth:`to_env`, store env actions in the replay
    buffer, and learn in the policy's scale (:meth:`to_unit`). Here, beside :class:`UnitToBox`,
    so that the training and the exported map stay one formula."""

    def __init__(self, spec: EnvSpec, algo: str, device: torch.device) -> None:
        if spec.action_low is None or spec.action_high is None:
            raise DrlrunError(f"algo={algo} needs the bounds of a Box action space.")
        low = spec.action_low.astype(np.float32).reshape(-1)
        high = spec.action_high.astype(np.float32).reshape(-1)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise DrlrunError(
                f"algo={algo} squashes actions into the action space's bounds, but env.id={spec.id!r} "
                f"has unbounded actions (low={low}, high={high}). Wrap the env with "
                "gymnasium.wrappers.ClipAction or give it finite bounds."
            )
        self.low, self.high = low, high
        self.shape = spec.action_shape
        self.scale_np = (high - low) / 2.0
        self.bias_np = (high + low) / 2.0
        self.scale = torch.as_tensor(self.scale_np, device=device)
        self.bias = torch.as_tensor(self.bias_np, device=device)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """[-1, 1] -> [low, high], shaped as the env's actions."""
        env_actions = (actions * self.scale_np + self.bias_np).astype(np.float32, copy=False)
        return env_actions.reshape(len(actions), *self.shape)

    def to_unit(self, actions: torch.Tensor) -> torch.Tensor:
        """Stored env actions [batch, *shape] -> the policy's [-1, 1] as ``[batch, action_dim]``."""
        return (actions.reshape(len(actions), -1) - self.bias) / self.scale

    def uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Uniformly random env actions, for the warm-up before learning starts."""
        return rng.uniform(self.low, self.high, size=(n, len(self.low))).astype(np.float32).reshape(n, *self.shape)


class UnitToBox(nn.Module):
    """Actions in [-1, 1] -> the env's [low, high], shaped as its action space: the exported
    form of :meth:`ActionScaler.to_env`."""

    def __init__(self, low: np.ndarray, high: np.ndarray, shape: tuple[int, ...]) -> None:
        super().__init__()
        low_t = torch.as_tensor(np.asarray(low, dtype=np.float32).reshape(-1))
        high_t = torch.as_tensor(np.asarray(high, dtype=np.float32).reshape(-1))
        self.register_buffer("scale", (high_t - low_t) / 2.0)
        self.register_buffer("bias", (high_t + low_t) / 2.0)
        self.shape = tuple(shape)

    def forward(self, unit: torch.Tensor) -> torch.Tensor:
        return (unit * self.scale + self.bias).reshape(unit.shape[0], *self.shape)


class ClipToBox(nn.Module):
    """Gaussian-policy means -> clipped to [low, high], shaped as the action space."""

    def __init__(self, low: np.ndarray, high: np.ndarray, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("low", torch.as_tensor(np.asarray(low, dtype=np.float32).reshape(-1)))
        self.register_buffer("high", torch.as_tensor(np.asarray(high, dtype=np.float32).reshape(-1)))
        self.shape = tuple(shape)

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(actions, self.high), self.low).reshape(actions.shape[0], *self.shape)


def actor_critic_policy(policy: nn.Module, obs_norm: object, spec: object) -> nn.Module:
    """The deterministic acting path of REINFORCE, A2C and PPO: normalise, most likely action,
    clip to the bounds."""
    layers: list[nn.Module] = []
    if getattr(obs_norm, "enabled", False):
        rms = obs_norm.rms  # type: ignore[attr-defined]
        layers.append(FrozenObsNorm(rms.mean, rms.var, obs_norm.clip, obs_norm.eps))  # type: ignore[attr-defined]
    layers.append(ActorMode(policy))
    if spec.action_kind == "continuous":  # type: ignore[attr-defined]
        layers.append(ClipToBox(spec.action_low, spec.action_high, spec.action_shape))  # type: ignore[attr-defined]
    return nn.Sequential(*layers)


def portable(module: nn.Module) -> nn.Module:
    """A copy for export, on CPU, in eval mode, with drlrun's CPU tanh (a custom autograd function,
    which exporters cannot trace) replaced by ``nn.Tanh``."""
    module = copy.deepcopy(module).cpu().eval()
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, Tanh):
                setattr(parent, name, nn.Tanh())
    for param in module.parameters():
        param.requires_grad_(False)
    return module
