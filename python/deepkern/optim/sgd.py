"""``SGD`` with ``torch.optim.SGD``'s options, defaults, checks and state (``momentum_buffer``
when momentum != 0), stepping each param group with one call of the fused kernel
``deepkern.ops.sgd_step_multi``."""

from __future__ import annotations

from .. import ops
from ..tensor import Tensor
from .optimizer import Optimizer, _check_nonnegative

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (dampened or Nesterov), weight
    decay and ``maximize``."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        _check_nonnegative(lr, "learning rate")
        _check_nonnegative(momentum, "momentum value")
        _check_nonnegative(weight_decay, "weight_decay value")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov, "maximize": maximize}
        super().__init__(params, defaults)

    def step(self, closure=None):
        """One SGD step of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = self._evaluate(closure)
        for group in self.param_groups:
            params, param_arrays, grad_arrays = self._with_grad(group)
            if not params:
                continue
            # momentum: each parameter's buffer, None before its first step (torch's
            # momentum_buffer_list); the op sets a None entry to a new buffer holding the gradient.
            buffers = None
            if group["momentum"] != 0:
                buffers = [self.state[p].get("momentum_buffer") for p in params]
                buffers = [None if b is None else b._array for b in buffers]
            for idx, (pa, ga, ba) in self._by_dtype(param_arrays, grad_arrays, buffers):
                ops.sgd_step_multi(pa, ga, ba, lr=group["lr"], momentum=group["momentum"],
                                   dampening=group["dampening"], weight_decay=group["weight_decay"],
                                   nesterov=group["nesterov"], maximize=group["maximize"])
                if ba is not None:
                    for p, buf in zip(params if idx is None else [params[i] for i in idx], ba):
                        state = self.state[p]
                        if "momentum_buffer" not in state:
                            state["momentum_buffer"] = Tensor._wrap(buf)
        return loss
