"""Optimizer plumbing shared by the algorithms: Adam on torch's fused kernel, and gradient clipping.

Reinforcement learning's networks are small, so what an optimizer step costs is Python and
dispatch, not arithmetic: on the 64x64 PPO network (benchmarks/NOTES.md) ``torch.optim.Adam(fused=True)``
takes 37 us a step, of which its fused kernel is 6.5 us; the rest is ``Optimizer.step``'s hooks,
profiler records and grouping by device and dtype. Its constructor also imports ``torch._dynamo``,
0.7 s of every run's start-up. :class:`Adam` calls the same kernel directly, so its updates are
bit-identical to ``torch.optim.Adam(fused=True)``'s (numbers below float32's normal range aside:
:class:`Adam` flushes them to zero), and its state dict has the same layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

# The smallest positive float32, a denormal: doubled, it stays non-zero unless denormals are flushed.
_SMALLEST_DENORMAL = np.array([1], dtype=np.uint32).view(np.float32)[0]
_TWO = np.float32(2.0)


def flushing_denormals() -> bool:
    """Whether this thread's CPU flushes denormal floats to zero (``torch.set_flush_denormal``,
    which has no getter: numpy's scalar arithmetic runs under the same per-thread control word)."""
    return not bool(_SMALLEST_DENORMAL * _TWO)


def row_major_order(tensor: torch.Tensor) -> list[int] | None:
    """The order of dimensions in which ``tensor``'s memory is row-major (``tensor.permute(order)``
    is contiguous), or None when it is row-major already or has no such order (not dense)."""
    if tensor.is_contiguous():
        return None
    order = sorted(range(tensor.dim()), key=lambda d: -tensor.stride(d))
    return order if tensor.permute(order).is_contiguous() else None


class Adam:
    """Adam (Kingma and Ba, 2015) over one group of parameters, on ``torch._fused_adam_`` (CPU, CUDA).

    The interface the algorithms use of ``torch.optim.Adam``: ``param_groups[0]["lr"]`` (learning
    rate schedules write it), ``zero_grad``, ``step``, ``state_dict`` and ``load_state_dict``.
    Parameters without a gradient are skipped, as torch does.

    Denormals (floats below 1.2e-38) are flushed to zero during the step, on the calling thread
    (``torch.set_flush_denormal``; the setting is put back afterwards). x86 CPUs compute with
    denormals in microcode, tens of times slower, and Adam's first moment decays by beta1 = 0.9 on
    every step a parameter gets a zero gradient (a ReLU unit that stays off, a pixel that never
    lights up), so it passes through that range: after 3,000 gradient steps of DQN on MinAtar
    Breakout, 21% of the 132k first moments were denormal and the step took 473 us instead of
    94. Flushed, such a moment reaches 0 a few steps sooner; its share of an update (lr * 1e-38 /
    eps) lies far below any parameter's float32 resolution. With ``torch_threads`` above 1 the
    kernel's other threads keep their own setting.

    Parameters may be stored in any dense layout (the frames Q-network keeps its weights
    transposed, ``drlrun.nets.input_major``). The fused kernel is fast on row-major tensors only
    (a transposed 128x1024 weight took 200 us instead of 91: it copies) and mixes up elements when
    a gradient's layout differs from its parameter's, so such a parameter goes in as the row-major
    view of its memory (``p.permute(order)``), its moments and its gradient viewed the same way;
    a gradient set by hand in another layout is first copied into the parameter's.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        self.param_groups: list[dict[str, Any]] = [{
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": 0.0, "amsgrad": False, "maximize": False,
            "foreach": None, "capturable": False, "differentiable": False, "fused": True,
            "decoupled_weight_decay": False,
        }]
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # Each parameter's step count (float32, as torch keeps it) is a view into one tensor, so that
        # counting a step is one kernel instead of one per parameter.
        self.step_counts = torch.zeros(len(self.params), dtype=torch.float32, device=self.params[0].device)
        self.steps = list(self.step_counts.unbind())
        # What the kernel gets: each parameter and its moments as the row-major view of their memory.
        self.orders = [row_major_order(p) for p in self.params]
        self.strided = [i for i, order in enumerate(self.orders) if order is not None]
        self.kernel_params, self.kernel_exp_avgs, self.kernel_exp_avg_sqs = (
            [t if order is None else t.permute(order) for t, order in zip(tensors, self.orders, strict=True)]
            for tensors in (self.params, self.exp_avgs, self.exp_avg_sqs))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        for i in self.strided:
            grad, param, order = grads[i], self.params[i], self.orders[i]
            if grad is not None:
                if grad.stride() != param.stride():
                    grad = torch.empty_like(param).copy_(grad)
                grads[i] = grad.permute(order)
        params, exp_avgs, exp_avg_sqs = self.kernel_params, self.kernel_exp_avgs, self.kernel_exp_avg_sqs
        steps = self.steps
        if any(g is None for g in grads):  # only some parameters took part in the loss
            index = [i for i, g in enumerate(grads) if g is not None]
            if not index:
                return
            params, grads = [params[i] for i in index], [grads[i] for i in index]
            exp_avgs, exp_avg_sqs = [exp_avgs[i] for i in index], [exp_avg_sqs[i] for i in index]
            steps = [steps[i] for i in index]
            torch._foreach_add_(steps, 1)
        else:
            self.step_counts.add_(1)
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        flush = not flushing_denormals() and torch.set_flush_denormal(True)  # False: already on, or unsupported
        try:
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=group["lr"], beta1=beta1,
                               beta2=beta2, weight_decay=0.0, eps=group["eps"], amsgrad=False, maximize=False,
                               grad_scale=None, found_inf=None)
        finally:
            if flush:
                torch.set_flush_denormal(False)

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Adam``'s layout: per-parameter ``step``, ``exp_avg``, ``exp_avg_sq``."""
        stepped = (self.step_counts > 0).tolist()  # as torch: only parameters that have had a step
        state = {i: {"step": self.steps[i].clone(), "exp_avg": self.exp_avgs[i].clone(),
                     "exp_avg_sq": self.exp_avg_sqs[i].clone()}
                 for i in range(len(self.params)) if stepped[i]}
        return {"state": state, "param_groups": [{**self.param_groups[0], "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Replace the whole state, as torch does; nothing changes if the state does not fit."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(f"optimizer state for {[len(g['params']) for g in groups]} parameters in "
                             f"{len(groups)} group(s); this optimizer has {len(self.params)} in one group")
        saved = {int(i): entry for i, entry in state_dict["state"].items()}
        for i, entry in saved.items():
            if not 0 <= i < len(self.params) or entry["exp_avg"].shape != self.params[i].shape:
                shape = tuple(self.params[i].shape) if 0 <= i < len(self.params) else "none"
                raise ValueError(f"optimizer state of parameter {i} has shape {tuple(entry['exp_avg'].shape)}, "
                                 f"the parameter {shape}")
        self.step_counts.zero_()
        for i in range(len(self.params)):
            entry = saved.get(i)
            if entry is None:  # a parameter that had no step yet
                self.exp_avgs[i].zero_()
                self.exp_avg_sqs[i].zero_()
                continue
            self.steps[i].copy_(entry["step"])
            self.exp_avgs[i].copy_(entry["exp_avg"])
            self.exp_avg_sqs[i].copy_(entry["exp_avg_sq"])
        saved_group = groups[0]
        self.param_groups[0].update(lr=saved_group["lr"], betas=tuple(saved_group["betas"]), eps=saved_group["eps"])


Optimizer = Adam | torch.optim.Optimizer  # what an algorithm's make_optimizer may return


def make_adam(params: Iterable[nn.Parameter], lr: float, device: torch.device,
              **kwargs: Any) -> Adam | torch.optim.Adam:
    """Adam: drlrun's :class:`Adam` where torch has the fused kernel (CPU, CUDA), else torch's
    multi-tensor implementation."""
    if device.type in ("cpu", "cuda"):
        return Adam(params, lr=lr, **kwargs)
    return torch.optim.Adam(params, lr=lr, foreach=True, **kwargs)


@torch.no_grad()
def clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale the gradients so that their global L2 norm is at most ``max_norm``; returns the norm
    before clipping. The same rule as ``torch.nn.utils.clip_grad_norm_`` (scale by
    min(1, max_norm / (norm + 1e-6))) in four kernels and no host sync; the library function's
    generality (grouping by device and dtype, inf norms, checks) cost 100 us a call here, an
    eighth of a PPO minibatch step."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp_(max=1.0))
    return norm
