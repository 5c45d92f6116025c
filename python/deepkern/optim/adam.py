"""``Adam`` and ``AdamW`` with ``torch.optim.Adam``/``AdamW``'s options, defaults, checks and state
(``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` with amsgrad), stepping each param group
with one call of the fused kernel ``deepkern.ops.adam_step_multi``."""

from __future__ import annotations

from .. import ops
from .optimizer import FLOAT_KERNELS, Optimizer, _adam_defaults, _implementation_options

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam (Kingma & Ba); with ``decoupled_weight_decay=True`` it is AdamW (weight decay
    applied to the parameter, ``p *= 1 - lr * weight_decay``, instead of added to the gradient)."""

    _kernel_dtypes = FLOAT_KERNELS
    _state_names = frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"})

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        amsgrad=False,
        *,
        foreach=None,
        maximize=False,
        capturable=False,
        differentiable=False,
        fused=None,
        decoupled_weight_decay=False,
    ):
        options = _implementation_options(
            type(self).__name__, foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused
        )
        defaults = _adam_defaults(
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            **options,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def _step_group(self, group, params, param_arrays, grad_arrays):
        amsgrad = group["amsgrad"]
        exp_avgs, exp_avg_sqs, max_sqs, steps = [], [], [] if amsgrad else None, []
        for p in params:
            state = self.state[p]
            steps.append(int(state.setdefault("step", 0.0)) + 1)
            exp_avgs.append(self._state_array(state, "exp_avg", p))
            exp_avg_sqs.append(self._state_array(state, "exp_avg_sq", p))
            if amsgrad:
                max_sqs.append(self._state_array(state, "max_exp_avg_sq", p))
        for pa, ga, ea, sa, ma, st in self._by_dtype(param_arrays, grad_arrays, exp_avgs, exp_avg_sqs, max_sqs, steps):
            ops.adam_step_multi(
                pa,
                ga,
                ea,
                sa,
                steps=st,
                lr=group["lr"],
                betas=group["betas"],
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                amsgrad=amsgrad,
                max_exp_avg_sqs=ma,
                maximize=group["maximize"],
                decoupled_weight_decay=group["decoupled_weight_decay"],
            )
        self._count_step(params)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter): Adam with decoupled weight decay (default 1e-2)."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
        foreach=None,
        capturable=False,
        differentiable=False,
        fused=None,
    ):
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
