"""Networks, chosen with the ``network`` config group and built through the NETWORKS registry.

A network class takes ``(cfg, in_dim, out_dim)`` and maps a batch of flat observations to
``out_dim`` outputs (Q-values, logits, action means, ...). A class with
``observations = "frames"`` (``network=cnn``) reads image observations instead and takes
``(cfg, obs_shape, out_dim, obs_dtype=...)``; :func:`build_network` calls either kind and
:func:`check_network` refuses a network that cannot read the env's observations.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from drlrun.compose import network_options
from drlrun.config import param
from drlrun.errors import DrlrunError
from drlrun.registry import NETWORKS


class _SigmoidTanh(torch.autograd.Function):
    """tanh(x) = 2 sigmoid(2x) - 1, with tanh's own backward, grad * (1 - y^2)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Module):
    """The tanh activation, computed through the sigmoid on CPU.

    Measured here (torch 2.13, AVX-512 CPU, one thread), ``torch.tanh`` on a 2x256x64 batch takes
    69 us against 7.6 us for ``torch.sigmoid``: 2 sigmoid(2x) - 1 takes 18 us and differs from
    ``torch.tanh`` by at most 2e-7. The tanh networks of the PPO and A2C presets spend a fifth of
    their update time here otherwise. On other devices this is ``torch.tanh``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            return _SigmoidTanh.apply(x)
        return torch.tanh(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": Tanh,
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


@dataclass
class MLPConfig:
    name: str = "mlp"
    hidden_sizes: list[int] = param([64, 64], ge=1, help="widths of the hidden layers")
    activation: str = param("relu", choices=tuple(ACTIVATIONS))
    shared: bool = param(False, help="actor-critic algorithms: one torso for policy and value")


class MLP(nn.Sequential):
    """A multilayer perceptron: observation -> hidden layers -> ``out_dim`` linear outputs."""

    Config = MLPConfig
    observations = "flat"

    def __init__(self, cfg: MLPConfig, in_dim: int, out_dim: int) -> None:
        layers, width = mlp_layers(in_dim, cfg.hidden_sizes, cfg.activation)
        super().__init__(nn.Flatten(), *layers, nn.Linear(width, out_dim))


@dataclass
class DuelingConfig:
    name: str = "dueling"
    hidden_sizes: list[int] = param([64, 64], ge=1, help="widths of the shared hidden layers")
    activation: str = param("relu", choices=tuple(ACTIVATIONS))


class DuelingQNetwork(nn.Module):
    """Dueling architecture (Wang et al., 2016): Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a').

    Subtracting the mean advantage makes V and A identifiable without changing the greedy action.
    """

    Config = DuelingConfig
    observations = "flat"

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


@dataclass
class CNNConfig:
    name: str = "cnn"
    channels: list[int] = param([32, 64, 64], ge=1, help="output channels of each conv layer")
    kernels: list[int] = param([8, 4, 3], ge=1, help="kernel size of each conv layer (one per channels entry)")
    strides: list[int] = param([4, 2, 1], ge=1, help="stride of each conv layer (one per channels entry)")
    hidden_sizes: list[int] = param([512], ge=1, help="widths of the fully connected layers after the convs")
    activation: str = param("relu", choices=tuple(ACTIVATIONS))
    dueling: bool = param(False, help="DQN: value and advantage streams after the torso (Q = V + A - mean A)")
    channel_order: str = param("auto", choices=("auto", "first", "last"),
                               help="frames as CxHxW (first) or HxWxC (last); auto: last when the last axis "
                                    "is the shortest (MinAtar's 10x10xC), else first (stacked 4x84x84)")


def channels_last(order: str, obs_shape: Sequence[int]) -> bool:
    """Whether frames of ``obs_shape`` are HxWxC (``network.channel_order``)."""
    if order == "auto":
        return obs_shape[-1] < obs_shape[0]
    return order == "last"


# Frames of at most this many pixels run their first conv layer as one gather and one matmul
# (FrameEncoder.first_as_matmul). Measured (torch 2.13, AVX-512, one thread, batch 32, a 16-channel
# 3x3 layer, forward and backward, with a strided gather slower than the index gather used here):
# 10x10 frames 388 us against oneDNN's 459 us, 16x16 even, 24x24 and larger slower.
SMALL_FRAME_PIXELS = 16 * 16


def patch_index(obs_shape: Sequence[int], channels_last: bool, kernel: int, stride: int) -> torch.Tensor:
    """Where the first conv layer's input patches lie in a flattened frame of ``obs_shape``: one
    row per output pixel (i, j), row-major, each row's entries in (kh, kw, channel) order; flat.
    Taking the frame's own memory order here (HxWxC or CxHxW) saves moving the channels first."""
    if channels_last:
        h, w, c = obs_shape
        offsets = torch.arange(h * w * c).view(h, w, c)  # offsets[y, x, ch]: where pixel (y, x, ch) is
    else:
        c, h, w = obs_shape
        offsets = torch.arange(c * h * w).view(c, h, w).permute(1, 2, 0)
    patches = offsets.unfold(0, kernel, stride).unfold(1, kernel, stride)  # [H', W', C, kh, kw]
    return patches.permute(0, 1, 3, 4, 2).reshape(-1)


class FrameEncoder(nn.Module):
    """Frames -> flat features: cast to float and scaled to [0, 1] here, not in storage (uint8
    frames are divided by 255, booleans are already 0/1), moved channels-first, then the conv
    layers (Mnih et al., 2015's torso by default) and a flatten (channels, height, width: the same
    features for HxWxC and CxHxW frames). ``out_dim`` is the features' width.

    Small frames (at most :data:`SMALL_FRAME_PIXELS`, such as MinAtar's 10x10) run the first conv
    layer as one gather of its input patches (:func:`patch_index`) and one matmul: the same sums
    as ``nn.Conv2d``, in another order. On small maps oneDNN's fixed cost per call dominates
    (MinAtar: 100 to 125 us forward and 180 to 250 us backward for a 2.4 MFLOP layer); the frames
    need no gradient, so the backward is one small matmul for the weight's. Larger frames run
    every layer through ``nn.Conv2d`` (oneDNN), which is faster there. The parameters are the
    ``nn.Conv2d`` layers' either way, so state dicts do not depend on the path; forward hooks on
    the first layer fire on the ``nn.Conv2d`` path only."""

    def __init__(self, cfg: CNNConfig, obs_shape: Sequence[int], obs_dtype: Any) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise DrlrunError(f"network=cnn takes frames of rank 3 (HxWxC or CxHxW), not shape {tuple(obs_shape)}.")
        if not len(cfg.channels) == len(cfg.kernels) == len(cfg.strides):
            raise DrlrunError(f"network.channels={cfg.channels}, network.kernels={cfg.kernels} and network.strides="
                              f"{cfg.strides} must have one entry per conv layer (the same length).")
        self.channels_last = channels_last(cfg.channel_order, obs_shape)
        c, h, w = (obs_shape[2], obs_shape[0], obs_shape[1]) if self.channels_last else tuple(obs_shape)
        self.divisor = 255.0 if np.dtype(obs_dtype) == np.uint8 else 1.0
        self.first_as_matmul = bool(cfg.channels) and h * w <= SMALL_FRAME_PIXELS
        layers: list[nn.Module] = []
        for i, (out, kernel, stride) in enumerate(zip(cfg.channels, cfg.kernels, cfg.strides, strict=True)):
            if kernel > min(h, w):
                raise DrlrunError(
                    f"network=cnn: conv layer {i + 1} (kernel {kernel}) does not fit the {h}x{w} map it gets from "
                    f"frames of shape {tuple(obs_shape)}. For small frames such as MinAtar's 10x10 use "
                    "network.channels=[16] network.kernels=[3] network.strides=[1] (the MinAtar presets do).")
            layers += [nn.Conv2d(c, out, kernel, stride), ACTIVATIONS[cfg.activation]()]
            c, h, w = out, (h - kernel) // stride + 1, (w - kernel) // stride + 1
            if i == 0:
                self.first_map = (h, w)  # the first layer's output size
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.out_dim = c * h * w
        if self.first_as_matmul:  # a buffer, so that it follows .to(device); not saved
            index = patch_index(obs_shape, self.channels_last, cfg.kernels[0], cfg.strides[0])
            self.register_buffer("patch_index", index, persistent=False)
            self.patch_width = self.convs[0].in_channels * cfg.kernels[0] ** 2  # one row of patches

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dtype == torch.uint8 and self.divisor != 1.0:
            x = torch.div(obs, self.divisor)  # float32, cast and scaled in one pass
        else:
            x = obs.to(torch.float32)
            if self.divisor != 1.0:
                x = x / self.divisor
        if not self.first_as_matmul:
            return self.convs(x.permute(0, 3, 1, 2) if self.channels_last else x)
        conv = self.convs[0]
        rows = x.flatten(1).index_select(1, self.patch_index).view(-1, self.patch_width)
        weight = conv.weight.permute(2, 3, 1, 0).reshape(-1, conv.out_channels)  # rows' (kh, kw, C) order
        y = self.convs[1](torch.addmm(conv.bias, rows, weight))  # [N * H' * W', out]
        # Channels first, as nn.Conv2d gives them: the later layers' layout and the features' order.
        x = y.view(-1, self.first_map[0] * self.first_map[1], conv.out_channels).transpose(1, 2)
        x = x.reshape(-1, conv.out_channels, *self.first_map)
        for layer in itertools.islice(self.convs, 2, None):
            x = layer(x)
        return x


def input_major(layer: nn.Linear) -> nn.Linear:
    """``layer`` with its weight kept transposed in memory: the same values, shape ``[out, in]``
    and state dict, but ``x @ weight.T`` becomes a plain matmul of two row-major matrices.

    Why: MKL's matmul with a transposed right-hand side is slow for a short batch. Measured
    (torch 2.13, AVX-512, one thread): 32x1024 by 1024x128 (cnn_small's hidden layer) 136 us
    against 62 us; the Nature torso's 32x3136 by 3136x512, 991 us against 787 us. Autograd gives
    the gradient the weight's layout, and drlrun's Adam keeps every layout consistent."""
    layer.weight = nn.Parameter(layer.weight.detach().t().contiguous().t())
    return layer


class CNN(nn.Module):
    """A Q-network on frames: :class:`FrameEncoder`, fully connected layers, then ``out_dim``
    Q-values, or with ``network.dueling=true`` the dueling streams of :class:`DuelingQNetwork`.
    The fully connected layers keep their weights transposed in memory (:func:`input_major`).
    The policy-gradient family uses the encoder as its shared torso (:class:`ActorCritic`)."""

    Config = CNNConfig
    observations = "frames"

    def __init__(self, cfg: CNNConfig, obs_shape: Sequence[int], out_dim: int, *, obs_dtype: Any = np.uint8) -> None:
        super().__init__()
        self.encoder = FrameEncoder(cfg, obs_shape, obs_dtype)
        layers, width = mlp_layers(self.encoder.out_dim, cfg.hidden_sizes, cfg.activation)
        self.torso = nn.Sequential(*(input_major(x) if isinstance(x, nn.Linear) else x for x in layers))
        self.head = input_major(nn.Linear(width, out_dim))  # Q-values, or the advantages when dueling
        self.value = input_major(nn.Linear(width, 1)) if cfg.dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.torso(self.encoder(obs))
        out = self.head(features)
        if self.value is None:
            return out
        return self.value(features) + out - out.mean(dim=-1, keepdim=True)


def takes_frames(obs_shape: Sequence[int]) -> bool:
    """Image observations (rank 3: HxWxC or CxHxW), the input of ``network=cnn``."""
    return len(obs_shape) == 3


def check_network(algo: str, network: str, choices: Sequence[str], obs_shape: Sequence[int], env_id: str) -> None:
    """Refuse, before training, a network that cannot read the env's observations (a CNN on flat
    vectors, an MLP on frames), naming the algorithm's choices that can. A plug-in network
    that does not declare ``observations`` is not checked."""
    reads = getattr(NETWORKS.get(network), "observations", None)
    frames = takes_frames(obs_shape)
    if reads is None or (reads == "frames") == frames:
        return
    wanted = "frames" if frames else "flat"
    fitting = [name for name in choices if getattr(NETWORKS.get(name), "observations", None) == wanted]
    given = "image observations (frames)" if frames else "flat observations"
    reads_text = "frames (rank 3: HxWxC or CxHxW)" if reads == "frames" else "flat observation vectors"
    raise DrlrunError(f"env.id={env_id!r} gives {given} of shape {tuple(obs_shape)}, but network={network} reads "
                      f"{reads_text}. Valid choices for algo={algo} here: "
                      f"{', '.join(f'network={name}' for name in network_options(fitting)) or 'none'}. (An "
                      "environment option that names its network, such as MinAtar's cnn_small, gets it when no "
                      "network= is given; a sweep over env= options whose observations differ gets none: sweep "
                      "each kind on its own.)")


def build_network(cfg: Any, obs_shape: Sequence[int], out_dim: int, obs_dtype: Any) -> nn.Module:
    """The configured network (``cfg.name``): a frames network gets the observation shape and
    dtype, any other the flat observation width."""
    cls = NETWORKS.get(cfg.name)
    if getattr(cls, "observations", None) == "frames":
        return cls(cfg, tuple(obs_shape), out_dim, obs_dtype=obs_dtype)
    return cls(cfg, int(np.prod(obs_shape)), out_dim)


class StackedMLP(nn.Module):
    """``n`` independent MLPs of the same shape, evaluated together.

    Each layer's weights are stacked as ``[n, in, out]`` and applied to all members with one
    batched matmul (``baddbmm``): two small networks cost one kernel per layer instead of two,
    forward and backward. For the small networks of RL, per-kernel overhead, not arithmetic, is
    what a layer costs. Members stay independent (separate parameters), initialised as
    ``nn.Linear`` does (uniform in +-1/sqrt(fan_in)) unless :meth:`orthogonal_` is called.
    Input ``[batch, in]`` (shared by all members) or ``[n, batch, in]``; output ``[n, batch, out]``.
    """

    def __init__(self, n: int, sizes: Sequence[int], activation: str, *, activate_last: bool) -> None:
        super().__init__()
        self.n = n
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))
        self.activation = ACTIVATIONS[activation]()
        self.activated = len(self.weights) if activate_last else len(self.weights) - 1

    @torch.no_grad()
    def orthogonal_(self, gain: float) -> None:
        """Orthogonal weights (per member and layer, as ``nn.init.orthogonal_`` on a Linear) and
        zero biases."""
        for weight, bias in zip(self.weights, self.biases, strict=True):
            for member in weight:
                member.copy_(nn.init.orthogonal_(torch.empty(member.shape[1], member.shape[0]), gain).T)
            bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(self.n, -1, -1) if x.dim() == 2 else x
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(bias, h, weight)
            if i < self.activated:
                h = self.activation(h)
        return h

    def member_module(self, index: int) -> nn.Sequential:
        """Member ``index`` as a plain ``nn.Sequential`` of ``nn.Linear`` layers (a copy), for
        exporters: it computes what :meth:`member` computes."""
        layers: list[nn.Module] = []
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            linear = nn.Linear(weight.shape[1], weight.shape[2])
            with torch.no_grad():
                linear.weight.copy_(weight[index].T)
                linear.bias.copy_(bias[index, 0])
            layers.append(linear)
            if i < self.activated:
                layers.append(copy.deepcopy(self.activation))
        return nn.Sequential(*layers)

    def member(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Member ``index`` alone on ``[batch, in]``: ``[batch, out]``."""
        h = x
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.addmm(bias[index], h, weight[index])
            if i < self.activated:
                h = self.activation(h)
        return h


class QEnsemble(nn.Module):
    """``n`` independent critics Q_i(s, a) (SAC and TD3 use two: clipped double Q-learning;
    DDPG one), stacked in one :class:`StackedMLP`. ``forward`` returns ``[n, batch]``; callers
    take ``.min(0)`` for the target and sum the losses.
    """

    def __init__(self, cfg: MLPConfig, obs_dim: int, action_dim: int, n: int = 2) -> None:
        super().__init__()
        self.net = StackedMLP(n, [obs_dim + action_dim, *cfg.hidden_sizes, 1], cfg.activation, activate_last=False)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs.flatten(1), actions], dim=1)).squeeze(-1)

    def q(self, index: int, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Critic ``index`` alone, ``[batch]`` (TD3's actor loss needs Q1 only)."""
        return self.net.member(index, torch.cat([obs.flatten(1), actions], dim=1)).squeeze(-1)


LOG_2PI = math.log(2.0 * math.pi)
SDE_EPS = 1e-6  # added to the gSDE variance: a state whose features are all 0 still has a density


def orthogonal_init(module: nn.Module, gain: float) -> None:
    """Orthogonal weights and zero biases for every Linear and Conv2d layer in ``module``."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)


class ActorCritic(nn.Module):
    """Policy pi(a|s) and value V(s) for the policy-gradient family.

    Discrete actions: a categorical policy over logits. Continuous actions: a diagonal Gaussian
    with a state-independent, learned log-std, or with ``sde=True`` generalized state-dependent
    exploration (gSDE, Raffin et al., 2022): the noise is the actor's last features ``z(s)`` times
    a random matrix ``W`` (``W_jk ~ N(0, sigma_jk^2)``, ``sigma = exp(log_std)`` of shape
    ``[features, actions]``) that the agent keeps for several steps, so that exploration is smooth
    in time and in state. For a fixed ``W`` the action is deterministic given ``s``; over ``W`` it
    is Gaussian with variance ``sum_j z_j(s)^2 sigma_jk^2``, and that is the density PPO's ratio
    uses. ``z`` is detached in the variance, so the noise scale learns only through ``log_std``.
    The torso is shared between policy and value when ``network.shared=true``, otherwise each has
    its own. With ``orthogonal=True`` layers get the orthogonal initialisation of PPO's reference
    implementation (gain sqrt(2) in the torso, 0.01 for the policy output, 1 for the value
    output). Distributions are written out as plain tensor math rather than
    ``torch.distributions`` objects: acting happens every step.
    On frames (``network=cnn``, ``obs_shape`` of rank 3) a :class:`FrameEncoder` comes first and
    the whole torso, convs and fully connected layers, is shared; on flat observations the
    encoder is a flatten.
    """

    def __init__(self, cfg: Any, obs_shape: int | Sequence[int], discrete: bool, action_dim: int, *,
                 critic: bool = True, orthogonal: bool = True, log_std_init: float = 0.0,
                 obs_dtype: Any = np.float32, sde: bool = False) -> None:
        super().__init__()
        self.discrete = discrete
        self.sde = sde and not discrete
        frames = isinstance(cfg, CNNConfig)
        self.encoder: nn.Module = FrameEncoder(cfg, obs_shape, obs_dtype) if frames else nn.Flatten()  # type: ignore[arg-type]
        in_dim = self.encoder.out_dim if isinstance(self.encoder, FrameEncoder) else int(np.prod(obs_shape))
        self.shared = frames or bool(getattr(cfg, "shared", False))
        separate_critic = critic and not self.shared
        # The actor's torso and (unless shared) the critic's, stacked: one kernel per layer for both.
        self.torsos = StackedMLP(2 if separate_critic else 1, [in_dim, *cfg.hidden_sizes], cfg.activation,
                                 activate_last=True)
        width = cfg.hidden_sizes[-1]
        self.actor_head = nn.Linear(width, action_dim)
        std_shape = (width, action_dim) if self.sde else (action_dim,)
        self.log_std = None if discrete else nn.Parameter(torch.full(std_shape, float(log_std_init)))
        self.critic_head = nn.Linear(width, 1) if critic else None
        if orthogonal:
            self.torsos.orthogonal_(math.sqrt(2.0))
            orthogonal_init(self.encoder, math.sqrt(2.0))
            orthogonal_init(self.actor_head, 0.01)
            if self.critic_head is not None:
                orthogonal_init(self.critic_head, 1.0)

    def _features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.torsos(self.encoder(obs))
        return h[0], (h[-1] if self.critic_head is not None else None)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        if self.critic_head is None:
            raise RuntimeError("this ActorCritic was built without a critic")
        return self.critic_head(self.torsos.member(self.torsos.n - 1, self.encoder(obs))).squeeze(-1)

    def sample_exploration(self, n: int) -> torch.Tensor:
        """gSDE: ``n`` exploration matrices ``W ~ N(0, exp(log_std)^2)``, one per env, ``[n, features, actions]``."""
        assert self.sde and self.log_std is not None
        std = self.log_std.detach().exp()
        return std * torch.randn(n, *std.shape, device=std.device, dtype=std.dtype)

    def _sde_log_std(self, actor: torch.Tensor) -> torch.Tensor:
        """gSDE: log of the per-state std, 0.5 log(sum_j z_j^2 sigma_jk^2), ``[batch, actions]``."""
        assert self.log_std is not None
        variance = actor.detach().pow(2) @ (2.0 * self.log_std).exp()
        return 0.5 * torch.log(variance + SDE_EPS)

    def _gaussian_log_std(self, actor: torch.Tensor) -> torch.Tensor:
        """The Gaussian policy's log-std: per state with gSDE (``[batch, actions]``), else the
        learned ``[actions]`` vector."""
        assert self.log_std is not None
        return self._sde_log_std(actor) if self.sde else self.log_std

    def act(self, obs: torch.Tensor, deterministic: bool, exploration: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Sampled (or most likely) actions, their log-probabilities, and V(s) if there is a critic.
        With gSDE, sampling needs ``exploration``, one matrix per observation (:meth:`sample_exploration`)."""
        actor, critic = self._features(obs)
        out = self.actor_head(actor)
        if self.discrete:
            log_probs = torch.log_softmax(out, dim=-1)
            if deterministic:
                actions = out.argmax(dim=-1)
            else:
                actions = torch.multinomial(log_probs.exp(), 1).squeeze(-1)
            log_prob = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        else:
            log_std = self._gaussian_log_std(actor)
            if deterministic:
                actions = out
            elif self.sde:
                assert exploration is not None and len(exploration) == len(out), "gSDE samples with one matrix per env"
                actions = out + torch.bmm(actor.detach().unsqueeze(1), exploration).squeeze(1)
            else:
                actions = out + log_std.exp() * torch.randn_like(out)
            log_prob = gaussian_log_prob(actions, out, log_std)
        value = None if critic is None or self.critic_head is None else self.critic_head(critic).squeeze(-1)
        return actions, log_prob, value

    def log_prob_entropy_value(self, obs: torch.Tensor, actions: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """log pi(a|s) of given actions, the policy's entropy H[pi(.|s)], and V(s) (None without a
        critic): the three terms of a policy-gradient loss, with gradients, for learning."""
        actor, critic = self._features(obs)
        out = self.actor_head(actor)
        if self.discrete:
            log_probs = torch.log_softmax(out, dim=-1)
            log_prob = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
        else:
            log_std = self._gaussian_log_std(actor)
            log_prob = gaussian_log_prob(actions.reshape(len(out), -1), out, log_std)
            entropy = (0.5 + 0.5 * LOG_2PI + log_std).sum(-1).expand(len(out))  # per state with gSDE
        value = None if critic is None or self.critic_head is None else self.critic_head(critic).squeeze(-1)
        return log_prob, entropy, value


def gaussian_log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(a; mean, exp(log_std)^2), summed over action dimensions."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)
