"""Networks, chosen with the ``network`` config group and built through the NETWORKS registry.

A network class takes ``(cfg, in_dim, out_dim)`` and maps a batch of flat observations to
``out_dim`` outputs (Q-values, logits, action means, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from drlrun.config import param
from drlrun.registry import NETWORKS

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}


def mlp_layers(in_dim: int, hidden_sizes: Sequence[int], activation: str) -> tuple[list[nn.Module], int]:
    """Linear + activation layers; returns them and the width of the last one."""
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        width = size
    return layers, width


def make_adam(params: Iterable[nn.Parameter], lr: float, device: torch.device, **kwargs: float) -> torch.optim.Adam:
    """Adam with the fused kernel where the device has one: for the small networks of RL the
    per-parameter Python loop of the default implementation costs more than the arithmetic."""
    if device.type in ("cpu", "cuda"):
        return torch.optim.Adam(params, lr=lr, fused=True, **kwargs)
    return torch.optim.Adam(params, lr=lr, foreach=True, **kwargs)


@dataclass
class MLPConfig:
    name: str = "mlp"
    hidden_sizes: list[int] = param([64, 64], ge=1, help="widths of the hidden layers")
    activation: str = param("relu", choices=tuple(ACTIVATIONS))


@NETWORKS.register("mlp")
class MLP(nn.Sequential):
    """A multilayer perceptron: observation -> hidden layers -> ``out_dim`` linear outputs."""

    Config = MLPConfig

    def __init__(self, cfg: MLPConfig, in_dim: int, out_dim: int) -> None:
        layers, width = mlp_layers(in_dim, cfg.hidden_sizes, cfg.activation)
        super().__init__(nn.Flatten(), *layers, nn.Linear(width, out_dim))


@dataclass
class DuelingConfig:
    name: str = "dueling"
    hidden_sizes: list[int] = param([64, 64], ge=1, help="widths of the shared hidden layers")
    activation: str = param("relu", choices=tuple(ACTIVATIONS))


@NETWORKS.register("dueling")
class DuelingQNetwork(nn.Module):
    """Dueling architecture (Wang et al., 2016): Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a').

    Subtracting the mean advantage makes V and A identifiable without changing the greedy action.
    """

    Config = DuelingConfig

    def __init__(self, cfg: DuelingConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        layers, width = mlp_layers(in_dim, cfg.hidden_sizes, cfg.activation)
        self.torso = nn.Sequential(nn.Flatten(), *layers)
        self.value = nn.Linear(width, 1)
        self.advantage = nn.Linear(width, out_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.torso(obs)
        advantages = self.advantage(features)
        return self.value(features) + advantages - advantages.mean(dim=-1, keepdim=True)


class TwinQNetwork(nn.Module):
    """Two independent critics Q1(s, a), Q2(s, a) for SAC and TD3 (clipped double Q-learning).

    ``forward`` returns both as a ``[2, batch]`` tensor, so callers take ``.min(0)`` for the
    target and sum both losses.
    """

    def __init__(self, cfg: MLPConfig, obs_dim: int, action_dim: int) -> None:
        super().__init__()
        self.q1 = MLP(cfg, obs_dim + action_dim, 1)
        self.q2 = MLP(cfg, obs_dim + action_dim, 1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs.flatten(1), actions], dim=1)
        return torch.stack([self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)])
