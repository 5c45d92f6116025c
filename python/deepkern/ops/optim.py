"""Fused optimizer steps, in place on NumPy arrays, with ``torch.optim``'s semantics.

``sgd_step``, ``adam_step`` / ``adamw_step`` and ``rmsprop_step`` update one parameter and its
optimizer state; the ``*_multi`` forms update a list of parameters in one call (one parallel region
for the whole list, like PyTorch's fused/foreach steps). Keyword names, defaults and the update
rules are ``torch.optim``'s; each kernel (csrc/cpu/optim) reads and writes every element once, in
PyTorch's order of operations, so float32 trajectories match ``torch.optim`` to rounding.

The state arrays belong to the caller, who creates them as ``torch.optim`` does:

* SGD: ``momentum_buffer`` (needed when ``momentum != 0``). On the first step PyTorch has no buffer
  yet and sets it to the gradient; here pass any array of the parameter's shape (e.g.
  ``np.empty_like(param)``) with ``first_step=True``: it is then written, not read.
* Adam/AdamW: ``exp_avg`` and ``exp_avg_sq`` start as zeros, ``max_exp_avg_sq`` too (``amsgrad``);
  ``step`` is the step count including this step (1 on the first step), as PyTorch's ``state["step"]``
  after its increment.
* RMSprop: ``square_avg``, ``momentum_buffer`` (``momentum > 0``) and ``grad_avg`` (``centered``)
  start as zeros.

All arrays of one call share one dtype (float32; float64 for checks), the states and ``grad`` have
the parameter's shape, and ``param`` and the states are C-contiguous and writeable (they are updated
in place); ``grad`` may be any array-like (a non-contiguous one is copied once). Bad input raises
``TypeError`` (types, dtypes) or ``ValueError`` (shapes, layouts, hyperparameters PyTorch rejects)
naming the argument, before any array is written.
"""

from __future__ import annotations

import numbers
import re

import numpy as np

from .. import backends
from ._validate import as_float_array, check_array_type, check_scalar

__all__ = [
    "sgd_step",
    "sgd_step_multi",
    "adam_step",
    "adam_step_multi",
    "adamw_step",
    "adamw_step_multi",
    "rmsprop_step",
    "rmsprop_step_multi",
]

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_NDARRAY = np.ndarray
_CPU = backends.get("cpu")


# ---- hyperparameters ------------------------------------------------------------------------


def _at_least_zero(op: str, **values) -> list:
    """Each value as float; ValueError unless it is >= 0 (NaN is rejected too, as PyTorch does)."""
    out = []
    for name, value in values.items():
        value = check_scalar(value, name, op)
        if not value >= 0.0:
            raise ValueError(f"{op}: invalid {name} = {value} (must be >= 0)")
        out.append(value)
    return out


def _betas(op: str, betas) -> tuple:
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(f"{op}: betas must be a pair (beta1, beta2), got {betas!r}")
    out = []
    for i, beta in enumerate(betas):
        beta = check_scalar(beta, f"betas[{i}]", op)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"{op}: invalid betas[{i}] = {beta} (must be in [0, 1))")
        out.append(beta)
    return tuple(out)


def _flag(value, name: str, op: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _per_tensor(value, n: int, name: str, op: str, kind: str) -> list:
    """``value`` (one int / bool, or a sequence of n of them) as a list of n ints."""
    if kind == "step":

        def one(v, what):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                raise TypeError(
                    f"{op}: {what} must be an int (the step count including this step), got {type(v).__name__}"
                )
            if not 1 <= v < 2**63:
                raise ValueError(f"{op}: {what} = {v} must be >= 1 and fit int64 (the step count including this step)")
            return int(v)
    else:

        def one(v, what):
            return int(_flag(v, what, op))

    if isinstance(value, (numbers.Integral, bool, np.bool_)):
        return [one(value, name)] * n
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(
            f"{op}: {name} must be {'an int' if kind == 'step' else 'a bool'} or a sequence of them, "
            f"got {type(value).__name__}"
        )
    if len(value) != n:
        raise ValueError(f"{op}: {name} has {len(value)} entries but params has {n}")
    return [one(v, f"{name}[{i}]") for i, v in enumerate(value)]


# ---- arrays -----------------------------------------------------------------------------------


class _Names:
    """How errors name the arrays: "exp_avg" (single form) or "exp_avgs[3]" (multi form)."""

    def __init__(self, multi: bool):
        self.multi = multi

    def __call__(self, name: str, i: int) -> str:
        return f"{name}s[{i}]" if self.multi else name


def _as_list(value, name: str, op: str) -> list:
    if isinstance(value, _NDARRAY) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{op}: {name} must be a list of arrays, got {type(value).__name__}")
    return list(value)


def _all_fine(dtype, params, grads, states) -> bool:
    """True when every array already is what the kernel takes (the common case, checked cheaply)."""
    if dtype is not _F32 and dtype is not _F64:
        return False
    nd = _NDARRAY
    for p, g in zip(params, grads):
        if type(p) is not nd or type(g) is not nd or p.dtype is not dtype or g.dtype is not dtype or p.shape != g.shape:
            return False
        flags, g_flags = p.flags, g.flags
        if not (flags.c_contiguous and flags.writeable and g_flags.c_contiguous and g_flags.aligned):
            return False
    for arrays in states.values():
        for p, s in zip(params, arrays):
            if type(s) is not nd or s.dtype is not dtype or s.shape != p.shape:
                return False
            flags = s.flags
            if not (flags.c_contiguous and flags.writeable):
                return False
    return True


def _check_in_place(arr, what: str, op: str, backend) -> None:
    check_array_type(arr, what, op, backend, " (it is updated in place)")
    if not arr.flags.c_contiguous:
        raise ValueError(
            f"{op}: {what} (shape {arr.shape}, strides {arr.strides}) is not C-contiguous, so it cannot "
            f"be updated in place; pass a contiguous array (np.ascontiguousarray) and keep that one"
        )
    if not arr.flags.writeable:
        raise ValueError(f"{op}: {what} is read-only, so it cannot be updated in place")


def _checked(op: str, names: _Names, params: list, grads: list, states: dict) -> tuple:
    """``(backend, params, grads, states)`` as the backend's kernel takes them, or the error naming
    the first bad array.

    grads are converted where needed; arrays updated in place are at most re-viewed (same memory)
    with NumPy's own dtype object, which the binding recognises.
    """
    dtype = getattr(params[0], "dtype", None)
    if _all_fine(dtype, params, grads, states):  # NumPy arrays only, so the CPU's
        return _CPU, params, grads, states
    backend = backends.backend_of(*params, *grads, *(s for arrays in states.values() for s in arrays), op=op)
    params, grads = list(params), list(grads)
    states = {name: list(arrays) for name, arrays in states.items()}
    canonical = None
    for i, p in enumerate(params):
        what = names("param", i)
        _check_in_place(p, what, op, backend)
        if p.dtype != _F32 and p.dtype != _F64:
            raise TypeError(f"{op}: {what} must be float32 or float64 (native byte order), got dtype {p.dtype}")
        if p.dtype != dtype:
            raise TypeError(f"{op}: {what} has dtype {p.dtype} but {names('param', 0)} has {dtype}; use one dtype")
        canonical = _F32 if p.dtype == _F32 else _F64
        params[i] = p.view(canonical)
        g_what = names("grad", i)
        g = as_float_array(grads[i], g_what, op)
        if g.dtype != p.dtype:
            raise TypeError(f"{op}: {g_what} has dtype {g.dtype} but {what} has {p.dtype}; use one dtype")
        if g.shape != p.shape:
            raise ValueError(f"{op}: {g_what} has shape {g.shape} but {what} has shape {p.shape}")
        grads[i] = backend.ascontiguousarray(g).view(canonical)
        for name, arrays in states.items():
            s, s_what = arrays[i], names(name, i)
            _check_in_place(s, s_what, op, backend)
            if s.dtype != p.dtype:
                raise TypeError(f"{op}: {s_what} has dtype {s.dtype} but {what} has {p.dtype}; use one dtype")
            if s.shape != p.shape:
                raise ValueError(f"{op}: {s_what} has shape {s.shape} but {what} has shape {p.shape}")
            arrays[i] = s.view(canonical)
    return backend, params, grads, states


def _run(op: str, names: _Names, kernel: str, params, grads, states: dict, *args) -> None:
    """Checks the arrays, then runs the backend's ``kernel(params, grads, *state lists, *args)``; an
    overlap of two arrays of one tensor, found by the binding before anything is written, is
    re-raised naming them."""
    used = {name: arrays for name, arrays in states.items() if arrays is not None}
    backend, params, grads, used = _checked(op, names, params, grads, used)
    try:
        getattr(backend, kernel)(params, grads, *(used.get(name) for name in states), *args)
    except ValueError as err:
        message = str(err).removeprefix(f"{kernel}: ")  # the binding names its kernel; name the op
        if not names.multi:  # "exp_avgs[0] overlaps params[0]" -> "exp_avg overlaps param"
            message = re.sub(r"(\w+)s\[0\]", r"\1", message)
        raise ValueError(f"{op}: {message}") from None


def _state_lists(op: str, multi: bool, n: int, **states) -> dict:
    """name -> list of n arrays (or None when not used), from the single or multi arguments."""
    out = {}
    for name, value in states.items():
        if value is None:
            out[name] = None
        elif multi:
            arrays = _as_list(value, name + "s", op)
            if len(arrays) != n:
                raise ValueError(f"{op}: {name}s has {len(arrays)} arrays but params has {n}")
            out[name] = arrays
        else:
            out[name] = [value]
    return out


def _param_lists(op: str, multi: bool, params, grads) -> tuple:
    if not multi:
        return [params], [grads]
    params, grads = _as_list(params, "params", op), _as_list(grads, "grads", op)
    if len(grads) != len(params):
        raise ValueError(f"{op}: grads has {len(grads)} arrays but params has {len(params)}")
    return params, grads


def _require(op: str, multi: bool, name: str, value, reason: str) -> None:
    if value is None:
        plural = name + "s" if multi else name
        raise ValueError(f"{op}: {plural} is required when {reason}")


def _state_if(op: str, multi: bool, name: str, value, used: bool, reason: str):
    """An optional state: required when ``used`` (``reason`` says when), else None: not read or
    written, as in PyTorch."""
    if not used:
        return None
    _require(op, multi, name, value, reason)
    return value


# ---- SGD --------------------------------------------------------------------------------------


def _sgd(
    op, multi, params, grads, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step
):
    lr, momentum, weight_decay = _at_least_zero(op, lr=lr, momentum=momentum, weight_decay=weight_decay)
    dampening = check_scalar(dampening, "dampening", op)
    nesterov, maximize = _flag(nesterov, "nesterov", op), _flag(maximize, "maximize", op)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(
            f"{op}: nesterov=True requires momentum > 0 and dampening = 0, "
            f"got momentum = {momentum}, dampening = {dampening}"
        )
    params, grads = _param_lists(op, multi, params, grads)
    first = _per_tensor(first_step, len(params), "first_step", op, "flag")
    momentum_buffer = _state_if(
        op,
        multi,
        "momentum_buffer",
        momentum_buffer,
        momentum != 0,
        "momentum != 0 (on the first step pass np.empty_like(param) with first_step=True)",
    )
    states = _state_lists(op, multi, len(params), momentum_buffer=momentum_buffer)
    if params:
        _run(
            op,
            _Names(multi),
            "sgd_step",
            params,
            grads,
            states,
            first,
            lr,
            momentum,
            dampening,
            weight_decay,
            nesterov,
            maximize,
        )


def sgd_step(
    param,
    grad,
    momentum_buffer=None,
    *,
    lr,
    momentum=0,
    dampening=0,
    weight_decay=0,
    nesterov=False,
    maximize=False,
    first_step=False,
) -> None:
    """One ``torch.optim.SGD`` step on ``param``, in place (and on ``momentum_buffer``).

    g = grad (-grad if maximize) + weight_decay * param; with momentum, buf = g on the first step
    (``first_step=True``: ``momentum_buffer``'s contents are not read), else buf = momentum * buf +
    (1 - dampening) * g, and g = g + momentum * buf (nesterov) or buf; then param -= lr * g.
    """
    _sgd(
        "sgd_step",
        False,
        param,
        grad,
        momentum_buffer,
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
        maximize,
        first_step,
    )


def sgd_step_multi(
    params,
    grads,
    momentum_buffers=None,
    *,
    lr,
    momentum=0,
    dampening=0,
    weight_decay=0,
    nesterov=False,
    maximize=False,
    first_step=False,
) -> None:
    """:func:`sgd_step` on every tensor of the lists in one call; ``first_step`` is one bool or one
    per tensor."""
    _sgd(
        "sgd_step_multi",
        True,
        params,
        grads,
        momentum_buffers,
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
        maximize,
        first_step,
    )


# ---- Adam / AdamW -----------------------------------------------------------------------------


def _adam(
    op,
    multi,
    params,
    grads,
    exp_avg,
    exp_avg_sq,
    step,
    lr,
    betas,
    eps,
    weight_decay,
    amsgrad,
    max_exp_avg_sq,
    maximize,
    decoupled,
):
    lr, eps, weight_decay = _at_least_zero(op, lr=lr, eps=eps, weight_decay=weight_decay)
    beta1, beta2 = _betas(op, betas)
    amsgrad, maximize = _flag(amsgrad, "amsgrad", op), _flag(maximize, "maximize", op)
    decoupled = _flag(decoupled, "decoupled_weight_decay", op)
    params, grads = _param_lists(op, multi, params, grads)
    steps = _per_tensor(step, len(params), "steps" if multi else "step", op, "step")
    _require(op, multi, "exp_avg", exp_avg, "stepping Adam")
    _require(op, multi, "exp_avg_sq", exp_avg_sq, "stepping Adam")
    max_exp_avg_sq = _state_if(op, multi, "max_exp_avg_sq", max_exp_avg_sq, amsgrad, "amsgrad=True")
    states = _state_lists(op, multi, len(params), exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, max_exp_avg_sq=max_exp_avg_sq)
    if params:
        _run(
            op,
            _Names(multi),
            "adam_step",
            params,
            grads,
            states,
            steps,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            amsgrad,
            maximize,
            decoupled,
        )


def adam_step(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    *,
    step,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0,
    amsgrad=False,
    max_exp_avg_sq=None,
    maximize=False,
    decoupled_weight_decay=False,
) -> None:
    """One ``torch.optim.Adam`` step (``decoupled_weight_decay=True``: ``torch.optim.AdamW``) on
    ``param``, ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq`` with amsgrad), in place.

    ``step`` counts the steps including this one (1 first). g = grad (-grad if maximize), plus
    weight_decay * param (Adam) or param *= 1 - lr * weight_decay (AdamW); exp_avg = lerp(exp_avg, g,
    1 - beta1); exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) g^2; max_exp_avg_sq = max(it,
    exp_avg_sq); param -= lr / (1 - beta1^step) * exp_avg / (sqrt(v) / sqrt(1 - beta2^step) + eps),
    v = max_exp_avg_sq with amsgrad, else exp_avg_sq.
    """
    _adam(
        "adam_step",
        False,
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        step,
        lr,
        betas,
        eps,
        weight_decay,
        amsgrad,
        max_exp_avg_sq,
        maximize,
        decoupled_weight_decay,
    )


def adam_step_multi(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    *,
    steps,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0,
    amsgrad=False,
    max_exp_avg_sqs=None,
    maximize=False,
    decoupled_weight_decay=False,
) -> None:
    """:func:`adam_step` on every tensor of the lists in one call; ``steps`` is one int or one per tensor."""
    _adam(
        "adam_step_multi",
        True,
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        steps,
        lr,
        betas,
        eps,
        weight_decay,
        amsgrad,
        max_exp_avg_sqs,
        maximize,
        decoupled_weight_decay,
    )


def adamw_step(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    *,
    step,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
    amsgrad=False,
    max_exp_avg_sq=None,
    maximize=False,
) -> None:
    """One ``torch.optim.AdamW`` step: :func:`adam_step` with decoupled weight decay (default 1e-2)."""
    _adam(
        "adamw_step",
        False,
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        step,
        lr,
        betas,
        eps,
        weight_decay,
        amsgrad,
        max_exp_avg_sq,
        maximize,
        True,
    )


def adamw_step_multi(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    *,
    steps,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
    amsgrad=False,
    max_exp_avg_sqs=None,
    maximize=False,
) -> None:
    """:func:`adamw_step` on every tensor of the lists in one call."""
    _adam(
        "adamw_step_multi",
        True,
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        steps,
        lr,
        betas,
        eps,
        weight_decay,
        amsgrad,
        max_exp_avg_sqs,
        maximize,
        True,
    )


# ---- RMSprop ----------------------------------------------------------------------------------


def _rmsprop(
    op,
    multi,
    params,
    grads,
    square_avg,
    lr,
    alpha,
    eps,
    weight_decay,
    momentum,
    centered,
    momentum_buffer,
    grad_avg,
    maximize,
):
    lr, alpha, eps, weight_decay, momentum = _at_least_zero(
        op, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum
    )
    centered, maximize = _flag(centered, "centered", op), _flag(maximize, "maximize", op)
    params, grads = _param_lists(op, multi, params, grads)
    _require(op, multi, "square_avg", square_avg, "stepping RMSprop")
    momentum_buffer = _state_if(op, multi, "momentum_buffer", momentum_buffer, momentum > 0, "momentum > 0")
    grad_avg = _state_if(op, multi, "grad_avg", grad_avg, centered, "centered=True")
    states = _state_lists(
        op, multi, len(params), square_avg=square_avg, momentum_buffer=momentum_buffer, grad_avg=grad_avg
    )
    if params:
        _run(
            op,
            _Names(multi),
            "rmsprop_step",
            params,
            grads,
            states,
            lr,
            alpha,
            eps,
            weight_decay,
            momentum,
            centered,
            maximize,
        )


def rmsprop_step(
    param,
    grad,
    square_avg,
    *,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0,
    momentum=0,
    centered=False,
    momentum_buffer=None,
    grad_avg=None,
    maximize=False,
) -> None:
    """One ``torch.optim.RMSprop`` step on ``param`` and its states, in place.

    g = grad (-grad if maximize) + weight_decay * param; square_avg = alpha * square_avg +
    (1 - alpha) g^2; avg = sqrt(square_avg - grad_avg^2) + eps with grad_avg = lerp(grad_avg, g,
    1 - alpha) (centered), else sqrt(square_avg) + eps; with momentum, buf = momentum * buf + g / avg
    and param -= lr * buf, else param -= lr * g / avg.
    """
    _rmsprop(
        "rmsprop_step",
        False,
        param,
        grad,
        square_avg,
        lr,
        alpha,
        eps,
        weight_decay,
        momentum,
        centered,
        momentum_buffer,
        grad_avg,
        maximize,
    )


def rmsprop_step_multi(
    params,
    grads,
    square_avgs,
    *,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0,
    momentum=0,
    centered=False,
    momentum_buffers=None,
    grad_avgs=None,
    maximize=False,
) -> None:
    """:func:`rmsprop_step` on every tensor of the lists in one call."""
    _rmsprop(
        "rmsprop_step_multi",
        True,
        params,
        grads,
        square_avgs,
        lr,
        alpha,
        eps,
        weight_decay,
        momentum,
        centered,
        momentum_buffers,
        grad_avgs,
        maximize,
    )
