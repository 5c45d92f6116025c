"""``Adafactor`` with ``torch.optim.Adafactor``'s options, defaults, checks, state (``step``; ``row_var``
and ``col_var``, the factored second moment of a parameter of 2 or more dimensions; ``variance`` for
others) and update rule, in the order of torch's single-tensor step (its default), as NumPy operations
on each parameter's arrays, so it runs on every device deepkern has."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from ..tensor_long_tail import _finfo
from .adaptive import _ElementwiseOptimizer, _lerp_
from .optimizer import _implementation_options

__all__ = ["Adafactor"]


def _norm(x) -> float:
    """The 2-norm of the array ``x``'s elements, as a Python float (torch's ``norm(2).item()``)."""
    return float(np.sqrt(np.sum(x * x)))


def _mean_square(grad, axis: int):
    """``(grad * grad).mean(axis, keepdims)``, computed as torch's ``norm(grad, dim=axis) ** 2 / n``."""
    return np.square(np.sqrt(np.sum(grad * grad, axis=axis, keepdims=True))) / grad.shape[axis]


class Adafactor(_ElementwiseOptimizer):
    """Adafactor (Shazeer & Stern) as torch implements it: the relative step size
    ``rho_t = min(lr, 1 / sqrt(t))`` scaled by ``max(eps2, RMS(p))``, the second moment averaged with
    ``beta2_t = 1 - t ** beta2_decay`` and factored into row and column means over the last two
    dimensions, the update ``grad / max(sqrt(v), eps1)`` clipped to RMS ``d``, and decoupled weight decay
    ``p *= 1 - lr * weight_decay``. ``eps1=None`` is the machine epsilon of the dtype of the group's first
    parameter stepped (torch's choice for the whole group)."""

    _state_names = frozenset({"step", "row_var", "col_var", "variance"})
    _update_decays = True

    def __init__(
        self,
        params,
        lr=1e-2,
        beta2_decay=-0.8,
        eps=(None, 1e-3),
        d=1.0,
        weight_decay=0.0,
        *,
        foreach=None,
        maximize=False,
    ):
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": eps,
            "d": d,
            "weight_decay": weight_decay,
            **_implementation_options("Adafactor", foreach=foreach),
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _state_shape(self, name, p):
        shape = list(p.shape)
        if name == "row_var":
            shape[-1] = 1
        elif name == "col_var":
            shape[-2] = 1
        return tuple(shape)

    def _new_state(self, p):
        state = {"step": 0.0}
        for name in ("row_var", "col_var") if p.ndim > 1 else ("variance",):
            self._state_array(state, name, p)
        return state

    def _step_group(self, group, params, param_arrays, grad_arrays):
        eps1, eps2 = group["eps"]
        if eps1 is None:
            eps1 = float(_finfo(param_arrays[0].dtype).eps)
        super()._step_group({**group, "eps": (eps1, eps2)}, params, param_arrays, grad_arrays)

    def _update(self, group, state, param, grad):
        lr, step, (eps1, eps2) = group["lr"], state["step"], group["eps"]
        one_minus_beta2 = step ** group["beta2_decay"]
        rho = min(lr, 1 / (step**0.5))
        alpha = max(eps2, _norm(param) / (param.size**0.5)) * rho
        if group["weight_decay"] != 0:
            param *= 1 - lr * group["weight_decay"]
        if param.ndim > 1:
            row_var, col_var = state["row_var"]._array, state["col_var"]._array
            _lerp_(row_var, _mean_square(grad, -1), one_minus_beta2)
            _lerp_(col_var, _mean_square(grad, -2), one_minus_beta2)
            var_estimate = row_var * col_var  # torch's row_var @ col_var: the outer product
            var_estimate /= np.maximum(row_var.mean(axis=-2, keepdims=True), eps1)
        else:
            variance = state["variance"]._array
            _lerp_(variance, grad * grad, one_minus_beta2)
            var_estimate = variance.copy()
        update = 1 / np.sqrt(np.maximum(var_estimate, eps1 * eps1))
        update *= grad
        denom = max(1.0, _norm(update) / ((update.size**0.5) * group["d"]))
        param += (-alpha / denom) * update
