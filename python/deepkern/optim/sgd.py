"""``SGD`` with ``torch.optim.SGD``'s options, defaults, checks and state (``momentum_buffer``
when momentum != 0), stepping each param group with one call of the fused kernel
``deepkern.ops.sgd_step_multi``."""

from __future__ import annotations

from .. import ops
from ..tensor import Tensor
from .optimizer import FLOAT_KERNELS, Optimizer, _check_nonnegative, _implementation_options

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (dampened or Nesterov), weight
    decay and ``maximize``."""

    _kernel_dtypes = FLOAT_KERNELS
    _state_names = frozenset({"step", "momentum_buffer"})

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0,
        dampening=0,
        weight_decay=0,
        nesterov=False,
        *,
        maximize=False,
        foreach=None,
        differentiable=False,
        fused=None,
    ):
        _check_nonnegative(lr, "learning rate")
        _check_nonnegative(momentum, "momentum value")
        _check_nonnegative(weight_decay, "weight_decay value")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            **_implementation_options("SGD", foreach=foreach, differentiable=differentiable, fused=fused),
        }
        super().__init__(params, defaults)

    def _step_group(self, group, params, param_arrays, grad_arrays):
        # momentum: torch creates a parameter's buffer on its first step, as the gradient; the
        # op is given an uninitialised buffer and first_step=True for it, and writes it. New
        # buffers join the state once the step has succeeded.
        buffers = first = None
        new = []
        momentum = group["momentum"]
        if momentum != 0:
            buffers, first = [], []
            for p in params:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                first.append(buf is None)
                if buf is None:
                    buf = Tensor._wrap(p._backend().empty(p.shape, self._state_dtype(p)))
                    new.append((state, buf))
                buffers.append(buf._array)
        for pa, ga, ba, fs in self._by_dtype(param_arrays, grad_arrays, buffers, first):
            ops.sgd_step_multi(
                pa,
                ga,
                ba,
                lr=group["lr"],
                momentum=momentum,
                dampening=group["dampening"],
                weight_decay=group["weight_decay"],
                nesterov=group["nesterov"] and momentum != 0,  # PyTorch: no momentum, no Nesterov step
                maximize=group["maximize"],
                first_step=False if fs is None else fs,
            )
        for state, buf in new:
            state["momentum_buffer"] = buf
