"""``Adagrad``, ``NAdam`` and ``RAdam`` with ``torch.optim``'s options, defaults, checks, state
names and update rules (the order of torch's single-tensor steps, so float32 results round as
torch's do). Each step is a few NumPy operations per parameter on its backend's arrays, so these
optimizers run on every device deepkern has."""

from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor
from .optimizer import Optimizer, _adam_defaults, _check_nonnegative

__all__ = ["Adagrad", "NAdam", "RAdam"]


class _ElementwiseOptimizer(Optimizer):
    """An optimizer whose rule is written with NumPy operations, one parameter at a time.

    ``step`` counts the parameter's step, takes its gradient (negated with ``maximize``) and applies
    the weight decay (added to the gradient, or with ``decoupled_weight_decay`` the parameter shrunk
    by ``1 - lr * weight_decay``), then calls :meth:`_update`."""

    def _new_state(self, p: Tensor) -> dict:
        """A parameter's state before its first step."""
        raise NotImplementedError

    def _update(self, group: dict, state: dict, param, grad) -> None:
        """Updates the array ``param`` (and the arrays of ``state``) in place from ``grad``."""
        raise NotImplementedError

    def _filled(self, p: Tensor, value: float) -> Tensor:
        return Tensor._wrap(p._backend().full(p.shape, value, p.dtype))

    def _step_group(self, group, params, param_arrays, grad_arrays):
        weight_decay = group["weight_decay"]
        for p, param, grad in zip(params, param_arrays, grad_arrays):
            state = self.state[p]
            if not state:
                state.update(self._new_state(p))
            state["step"] += 1.0
            if group["maximize"]:
                grad = -grad
            if weight_decay != 0:
                if group.get("decoupled_weight_decay", False):
                    param *= 1 - group["lr"] * weight_decay
                else:
                    grad = grad + weight_decay * param
            self._update(group, state, param, grad)


def _update_moments(state: dict, grad, betas) -> tuple:
    """Adam's moving averages, in place: ``exp_avg`` towards ``grad`` by ``1 - beta1`` (torch's
    lerp), ``exp_avg_sq`` by ``beta2`` plus ``(1 - beta2) grad^2``; returns both arrays."""
    beta1, beta2 = betas
    exp_avg, exp_avg_sq = state["exp_avg"]._array, state["exp_avg_sq"]._array
    exp_avg += (1 - beta1) * (grad - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    return exp_avg, exp_avg_sq


class Adagrad(_ElementwiseOptimizer):
    """Adagrad (Duchi et al.): ``sum += g^2``, ``p -= clr g / (sqrt(sum) + eps)`` with
    ``clr = lr / (1 + (step - 1) lr_decay)``. As torch, the state (``step``, ``sum`` filled with
    ``initial_accumulator_value``) is created for every parameter at construction."""

    _state_names = frozenset({"step", "sum"})

    def __init__(
        self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, *, maximize=False
    ):
        _check_nonnegative(lr, "learning rate")
        _check_nonnegative(lr_decay, "lr_decay value")
        _check_nonnegative(weight_decay, "weight_decay value")
        _check_nonnegative(initial_accumulator_value, "initial_accumulator_value value")
        _check_nonnegative(eps, "epsilon value")
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "maximize": maximize,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p].update(self._new_state(p))

    def _new_state(self, p):
        # torch fills ``sum`` from the constructor's value, whatever a group says
        return {"step": 0.0, "sum": self._filled(p, float(self.defaults["initial_accumulator_value"]))}

    def _update(self, group, state, param, grad):
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state_sum = state["sum"]._array
        state_sum += grad * grad
        param += (-clr) * grad / (np.sqrt(state_sum) + group["eps"])


class NAdam(_ElementwiseOptimizer):
    """Adam with Nesterov momentum (Dozat), with torch's momentum schedule
    ``mu_t = beta1 (1 - 0.5 * 0.96^(t momentum_decay))`` and its running product ``mu_product``;
    ``decoupled_weight_decay=True`` is NAdamW."""

    _state_names = frozenset({"step", "mu_product", "exp_avg", "exp_avg_sq"})

    _scalar_state = ("step", "mu_product")

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        momentum_decay=4e-3,
        decoupled_weight_decay=False,
        *,
        maximize=False,
    ):
        _check_nonnegative(momentum_decay, "momentum_decay value")
        defaults = _adam_defaults(
            lr,
            betas,
            eps,
            weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _new_state(self, p):
        return {"step": 0.0, "mu_product": 1.0, "exp_avg": self._filled(p, 0.0), "exp_avg_sq": self._filled(p, 0.0)}

    def _update(self, group, state, param, grad):
        lr, (beta1, beta2), step = group["lr"], group["betas"], state["step"]
        decay = group["momentum_decay"]
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * decay))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * decay))
        state["mu_product"] *= mu
        mu_product = state["mu_product"]
        exp_avg, exp_avg_sq = _update_moments(state, grad, group["betas"])
        denom = np.sqrt(exp_avg_sq / (1 - beta2**step)) + group["eps"]
        param += (-lr * (1.0 - mu) / (1.0 - mu_product)) * grad / denom
        param += (-lr * mu_next / (1.0 - mu_product * mu_next)) * exp_avg / denom


class RAdam(_ElementwiseOptimizer):
    """Rectified Adam (Liu et al.): plain bias-corrected momentum while the variance's
    approximated length of SMA ``rho_t`` is at most 5, Adam's step times the rectification term
    after; ``decoupled_weight_decay=True`` is RAdamW."""

    _state_names = frozenset({"step", "exp_avg", "exp_avg_sq"})

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        decoupled_weight_decay=False,
        *,
        maximize=False,
    ):
        defaults = _adam_defaults(
            lr, betas, eps, weight_decay, decoupled_weight_decay=decoupled_weight_decay, maximize=maximize
        )
        super().__init__(params, defaults)

    def _new_state(self, p):
        return {"step": 0.0, "exp_avg": self._filled(p, 0.0), "exp_avg_sq": self._filled(p, 0.0)}

    def _update(self, group, state, param, grad):
        lr, (beta1, beta2), step = group["lr"], group["betas"], state["step"]
        exp_avg, exp_avg_sq = _update_moments(state, grad, group["betas"])
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        corrected = exp_avg / bias_correction1
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            adaptive = bias_correction2**0.5 / (np.sqrt(exp_avg_sq) + group["eps"])
            param -= corrected * lr * adaptive * rect
        else:
            param -= corrected * lr
