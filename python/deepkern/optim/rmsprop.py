"""``RMSprop`` with ``torch.optim.RMSprop``'s options, defaults, checks and state (``step``,
``square_avg``, ``momentum_buffer`` when momentum > 0, ``grad_avg`` when centered), stepping each
param group with one call of the fused kernel ``deepkern.ops.rmsprop_step_multi``."""

from __future__ import annotations

from .. import ops
from .optimizer import FLOAT_KERNELS, Optimizer, _check_nonnegative, _implementation_options

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop (Hinton): divides the gradient by a running root mean square of its recent values;
    ``centered`` subtracts the running mean first; ``momentum`` > 0 adds a velocity buffer."""

    _kernel_dtypes = FLOAT_KERNELS
    _state_names = frozenset({"step", "square_avg", "momentum_buffer", "grad_avg"})

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0,
        momentum=0,
        centered=False,
        capturable=False,
        foreach=None,
        maximize=False,
        differentiable=False,
    ):
        _check_nonnegative(lr, "learning rate")
        _check_nonnegative(eps, "epsilon value")
        _check_nonnegative(momentum, "momentum value")
        _check_nonnegative(weight_decay, "weight_decay value")
        _check_nonnegative(alpha, "alpha value")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "maximize": maximize,
            **_implementation_options("RMSprop", capturable=capturable, foreach=foreach, differentiable=differentiable),
        }
        super().__init__(params, defaults)

    def _step_group(self, group, params, param_arrays, grad_arrays):
        with_momentum, centered = group["momentum"] > 0, group["centered"]
        square_avgs, buffers, grad_avgs = [], [] if with_momentum else None, [] if centered else None
        for p in params:
            state = self.state[p]
            state.setdefault("step", 0.0)
            square_avgs.append(self._state_array(state, "square_avg", p))
            if with_momentum:
                buffers.append(self._state_array(state, "momentum_buffer", p))
            if centered:
                grad_avgs.append(self._state_array(state, "grad_avg", p))
        for pa, ga, sa, ba, aa in self._by_dtype(param_arrays, grad_arrays, square_avgs, buffers, grad_avgs):
            ops.rmsprop_step_multi(
                pa,
                ga,
                sa,
                lr=group["lr"],
                alpha=group["alpha"],
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                centered=centered,
                momentum_buffers=ba,
                grad_avgs=aa,
                maximize=group["maximize"],
            )
        self._count_step(params)
