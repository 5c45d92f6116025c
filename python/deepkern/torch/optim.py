"""``torch.optim`` optimizers whose step runs deepkern's fused multi-tensor kernels."""

from __future__ import annotations

import torch

from ._ops import adam_

__all__ = ["Adam"]

_LISTS = ("params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs", "step")


class Adam(torch.optim.Optimizer):
    """``torch.optim.Adam`` (``decoupled_weight_decay=True``: ``AdamW``) whose step updates every
    parameter of a group in one call of :func:`deepkern.torch.adam_`. The state (``step``, a float
    tensor as torch.optim keeps it; ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` with amsgrad) and
    the state_dict have torch.optim.Adam's names, so either optimizer can load the other's state.
    Parameters must be contiguous CPU float32/float64 tensors (they are updated in place); a group may
    mix the two (one kernel call per dtype). A step that raises changes nothing, the step counts included."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        *,
        maximize=False,
        decoupled_weight_decay=False,
    ):
        for name, value in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
            if not value >= 0.0:
                raise ValueError(f"deepkern.torch.optim.Adam: invalid {name} = {value} (must be >= 0)")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"deepkern.torch.optim.Adam: invalid betas[{i}] = {beta} (must be in [0, 1))")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One step over every parameter with a gradient; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            by_dtype = {}  # one adam_ call per dtype of the group (the kernel takes one at a time)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("deepkern.torch.optim.Adam does not support sparse gradients")
                state = self.state[p]
                if not state:  # as torch.optim.Adam initialises it
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                lists = by_dtype.setdefault(p.dtype, {k: [] for k in _LISTS})
                lists["params"].append(p)
                lists["grads"].append(p.grad)
                lists["exp_avgs"].append(state["exp_avg"])
                lists["exp_avg_sqs"].append(state["exp_avg_sq"])
                if group["amsgrad"]:
                    lists["max_exp_avg_sqs"].append(state["max_exp_avg_sq"])
                lists["step"].append(int(state["step"].item()) + 1)
            for lists in by_dtype.values():
                adam_(
                    **lists,
                    lr=group["lr"],
                    betas=group["betas"],
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                    amsgrad=group["amsgrad"],
                    maximize=group["maximize"],
                    decoupled_weight_decay=group["decoupled_weight_decay"],
                )
                for p in lists["params"]:  # counted once the step is taken (a refused step counts none)
                    self.state[p]["step"] += 1
        return loss
