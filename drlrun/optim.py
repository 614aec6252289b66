"""Optimizer plumbing shared by the algorithms: Adam on torch's fused kernel, and gradient clipping.

Reinforcement learning's networks are small, so what an optimizer step costs is Python and
dispatch, not arithmetic: on the 64x64 PPO network (benchmarks/NOTES.md) ``torch.optim.Adam(fused=True)``
takes 37 us a step, of which its fused kernel is 6.5 us; the rest is ``Optimizer.step``'s hooks,
profiler records and grouping by device and dtype. Its constructor also imports ``torch._dynamo``,
0.7 s of every run's start-up. :class:`Adam` calls the same kernel directly, so its updates are
bit-identical to ``torch.optim.Adam(fused=True)``'s, and its state dict has the same layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn


class Adam:
    """Adam (Kingma and Ba, 2015) over one group of parameters, on ``torch._fused_adam_`` (CPU, CUDA).

    The interface the algorithms use of ``torch.optim.Adam``: ``param_groups[0]["lr"]`` (learning
    rate schedules write it), ``zero_grad``, ``step``, ``state_dict`` and ``load_state_dict``.
    Parameters without a gradient are skipped, as torch does.
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

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        params, grads = self.params, [p.grad for p in self.params]
        exp_avgs, exp_avg_sqs, steps = self.exp_avgs, self.exp_avg_sqs, self.steps
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
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=group["lr"], beta1=beta1,
                           beta2=beta2, weight_decay=0.0, eps=group["eps"], amsgrad=False, maximize=False,
                           grad_scale=None, found_inf=None)

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
