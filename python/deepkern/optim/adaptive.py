"""``Adagrad``, ``NAdam``, ``RAdam``, ``Adadelta``, ``Adamax``, ``ASGD`` and ``Rprop`` with
``torch.optim``'s options, defaults, checks, state names and update rules (the order of torch's
single-tensor steps, so float32 results round as torch's do). Each step is a few NumPy operations
per parameter on its backend's arrays, so these optimizers run on every device deepkern has."""

from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor
from .optimizer import Optimizer, _adam_defaults, _check_nonnegative, _implementation_options

__all__ = ["Adagrad", "NAdam", "RAdam", "Adadelta", "Adamax", "ASGD", "Rprop"]


class _ElementwiseOptimizer(Optimizer):
    """An optimizer whose rule is written with NumPy operations, one parameter at a time.

    ``step`` counts the parameter's step, takes its gradient (negated with ``maximize``) and applies
    the weight decay (added to the gradient, or with ``decoupled_weight_decay`` the parameter shrunk
    by ``1 - lr * weight_decay``; none for an optimizer without that option, or one whose :meth:`_update`
    applies it, ``_update_decays``), then calls :meth:`_update`."""

    #: Whether :meth:`_update` applies the weight decay itself (Adafactor's rule reads the weights before).
    _update_decays = False

    def _new_state(self, p: Tensor) -> dict:
        """A parameter's state before its first step."""
        raise NotImplementedError

    def _update(self, group: dict, state: dict, param, grad) -> None:
        """Updates the array ``param`` (and the arrays of ``state``) in place from ``grad``."""
        raise NotImplementedError

    def _filled(self, p: Tensor, value: float) -> Tensor:
        return Tensor._wrap(p._backend().full(p.shape, value, p.dtype))

    def _step_group(self, group, params, param_arrays, grad_arrays):
        weight_decay = 0 if self._update_decays else group.get("weight_decay", 0)
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
        self,
        params,
        lr=1e-2,
        lr_decay=0,
        weight_decay=0,
        initial_accumulator_value=0,
        eps=1e-10,
        foreach=None,
        *,
        maximize=False,
        differentiable=False,
        fused=None,
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
            **_implementation_options("Adagrad", foreach=foreach, differentiable=differentiable, fused=fused),
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
        foreach=None,
        maximize=False,
        capturable=False,
        differentiable=False,
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
            **_implementation_options("NAdam", foreach=foreach, capturable=capturable, differentiable=differentiable),
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
        foreach=None,
        maximize=False,
        capturable=False,
        differentiable=False,
    ):
        defaults = _adam_defaults(
            lr,
            betas,
            eps,
            weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            **_implementation_options("RAdam", foreach=foreach, capturable=capturable, differentiable=differentiable),
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


def _lerp_(start, end, weight: float) -> None:
    """``start`` moved towards ``end`` by ``weight``, in place, from the nearer end as torch's lerp
    (``end`` exactly for ``weight`` 1; torch fuses the multiply-add, so a last bit may differ)."""
    if weight < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)


class Adadelta(_ElementwiseOptimizer):
    """Adadelta (Zeiler): ``square_avg`` and ``acc_delta`` are running averages (factor ``rho``) of
    the squared gradients and of the squared updates; the update is
    ``delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * grad``, applied as ``p -= lr * delta``.
    The optimizer of PyTorch's MNIST example (``lr=1.0``, the default)."""

    _state_names = frozenset({"step", "square_avg", "acc_delta"})

    def __init__(
        self,
        params,
        lr=1.0,
        rho=0.9,
        eps=1e-6,
        weight_decay=0,
        foreach=None,
        *,
        capturable=False,
        maximize=False,
        differentiable=False,
    ):
        _check_nonnegative(lr, "learning rate")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        _check_nonnegative(eps, "epsilon value")
        _check_nonnegative(weight_decay, "weight_decay value")
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            **_implementation_options(
                "Adadelta", foreach=foreach, capturable=capturable, differentiable=differentiable
            ),
        }
        super().__init__(params, defaults)

    def _new_state(self, p):
        return {"step": 0.0, "square_avg": self._filled(p, 0.0), "acc_delta": self._filled(p, 0.0)}

    def _update(self, group, state, param, grad):
        rho, eps = group["rho"], group["eps"]
        square_avg, acc_delta = state["square_avg"]._array, state["acc_delta"]._array
        square_avg *= rho
        square_avg += (1 - rho) * grad * grad
        std = np.sqrt(square_avg + eps)
        delta = np.sqrt(acc_delta + eps)
        delta /= std
        delta *= grad
        acc_delta *= rho
        acc_delta += (1 - rho) * delta * delta
        param += (-group["lr"]) * delta


class Adamax(_ElementwiseOptimizer):
    """Adamax (Kingma & Ba): Adam with the infinity norm, ``exp_inf = max(beta2 exp_inf,
    |grad| + eps)``, and ``p -= lr / (1 - beta1^t) * exp_avg / exp_inf``."""

    _state_names = frozenset({"step", "exp_avg", "exp_inf"})

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        foreach=None,
        *,
        maximize=False,
        differentiable=False,
        capturable=False,
    ):
        options = _implementation_options(
            "Adamax", foreach=foreach, differentiable=differentiable, capturable=capturable
        )
        defaults = _adam_defaults(lr, betas, eps, weight_decay, maximize=maximize, **options)
        super().__init__(params, defaults)

    def _new_state(self, p):
        return {"step": 0.0, "exp_avg": self._filled(p, 0.0), "exp_inf": self._filled(p, 0.0)}

    def _update(self, group, state, param, grad):
        beta1, beta2 = group["betas"]
        exp_avg, exp_inf = state["exp_avg"]._array, state["exp_inf"]._array
        _lerp_(exp_avg, grad, 1 - beta1)
        exp_inf *= beta2
        np.maximum(exp_inf, np.abs(grad) + group["eps"], out=exp_inf)
        clr = group["lr"] / (1 - beta1 ** state["step"])
        param += (-clr) * exp_avg / exp_inf


def _float32(value: float) -> float:
    """``value`` rounded to float32, as torch keeps ASGD's ``eta`` and ``mu`` (0-d tensors of the
    default dtype, float32)."""
    return float(np.float32(value))


class ASGD(_ElementwiseOptimizer):
    """Averaged SGD (Polyak & Juditsky): ``p *= 1 - lambd eta``, ``p -= eta grad`` with the decaying
    rate ``eta = lr / (1 + lambd lr t)^alpha``; ``ax`` is the running average of the iterates, taken
    from step ``t0`` on (``mu = 1 / max(1, t - t0)``). As torch, ``eta`` and ``mu`` are kept rounded
    to float32 (torch's 0-d float32 tensors; Python floats here) and ``eta`` starts at the first
    step's ``lr``."""

    _state_names = frozenset({"step", "eta", "mu", "ax"})

    _scalar_state = ("step", "eta", "mu")

    def __init__(
        self,
        params,
        lr=1e-2,
        lambd=1e-4,
        alpha=0.75,
        t0=1e6,
        weight_decay=0,
        foreach=None,
        maximize=False,
        differentiable=False,
        capturable=False,
    ):
        _check_nonnegative(lr, "learning rate")
        _check_nonnegative(weight_decay, "weight_decay value")
        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "maximize": maximize,
            **_implementation_options("ASGD", foreach=foreach, differentiable=differentiable, capturable=capturable),
        }
        super().__init__(params, defaults)

    def _step_group(self, group, params, param_arrays, grad_arrays):
        for p in params:  # eta starts at the group's lr when the parameter first steps
            if not self.state[p]:
                self.state[p].update({"step": 0.0, "eta": _float32(group["lr"]), "mu": 1.0, "ax": self._filled(p, 0.0)})
        super()._step_group(group, params, param_arrays, grad_arrays)

    def _update(self, group, state, param, grad):
        lr, lambd, eta = group["lr"], group["lambd"], state["eta"]
        param *= 1 - lambd * eta
        param += (-eta) * grad
        ax = state["ax"]._array
        if state["mu"] != 1:
            ax += (param - ax) * state["mu"]
        else:
            ax[...] = param
        step = state["step"]
        state["eta"] = _float32(lr / ((1 + lambd * lr * step) ** group["alpha"]))
        state["mu"] = _float32(1 / max(1, step - group["t0"]))


class Rprop(_ElementwiseOptimizer):
    """Resilient backpropagation (Riedmiller & Braun): each element's ``step_size`` (starting at
    ``lr``) grows by ``etas[1]`` while its gradient keeps its sign and shrinks by ``etas[0]`` when
    the sign flips (that step then skips the element and forgets its gradient), within
    ``step_sizes``; ``p -= sign(grad) * step_size``."""

    _state_names = frozenset({"step", "prev", "step_size"})

    def __init__(
        self,
        params,
        lr=1e-2,
        etas=(0.5, 1.2),
        step_sizes=(1e-6, 50),
        *,
        capturable=False,
        foreach=None,
        maximize=False,
        differentiable=False,
    ):
        _check_nonnegative(lr, "learning rate")
        if len(etas) != 2:
            raise ValueError(f"etas must be a pair (etaminus, etaplus), got {etas!r}")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        if len(step_sizes) != 2:
            raise ValueError(f"step_sizes must be a pair (min, max), got {step_sizes!r}")
        defaults = {
            "lr": lr,
            "etas": tuple(etas),
            "step_sizes": tuple(step_sizes),
            "maximize": maximize,
            **_implementation_options("Rprop", capturable=capturable, foreach=foreach, differentiable=differentiable),
        }
        super().__init__(params, defaults)

    def _step_group(self, group, params, param_arrays, grad_arrays):
        for p in params:  # the step sizes start at the group's lr when the parameter first steps
            if not self.state[p]:
                self.state[p].update(
                    {"step": 0.0, "prev": self._filled(p, 0.0), "step_size": self._filled(p, float(group["lr"]))}
                )
        super()._step_group(group, params, param_arrays, grad_arrays)

    def _update(self, group, state, param, grad):
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        prev, step_size = state["prev"]._array, state["step_size"]._array
        sign = np.sign(grad * prev)
        down = sign < 0
        factor = np.where(sign > 0, etaplus, np.where(down, etaminus, 1)).astype(sign.dtype, copy=False)
        step_size *= factor
        np.clip(step_size, step_size_min, step_size_max, out=step_size)
        grad = np.where(down, 0, grad).astype(grad.dtype, copy=False)
        param += -np.sign(grad) * step_size
        prev[...] = grad
