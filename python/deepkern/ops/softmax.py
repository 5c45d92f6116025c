"""Softmax, log-softmax and cross entropy with class-index targets: one fused kernel each way.

Definitions and special values are PyTorch's (``torch.softmax``, ``torch.log_softmax``,
``torch.nn.functional.cross_entropy`` and their autograd gradients); csrc/cpu/softmax/softmax.h
states them. The inputs are float32 or float64 arrays of any shape and strides (other layouts are
copied once); ``dim`` may be any axis, no transpose is made. Results have the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np

from ..backends import backend_of
from ._validate import as_float_array, check_array_type, check_index, check_int64_range, check_output, check_scalar
from .activation import _run

__all__ = [
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
]


def _split(shape: tuple, dim, op: str) -> tuple:
    """(outer, length, inner) of ``shape`` around axis ``dim`` (a 0-d array is one element)."""
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    ndim = max(len(shape), 1)
    if not -ndim <= dim < ndim:
        raise ValueError(f"{op}: dim {dim} is out of range for an array of shape {shape}")
    shape = shape or (1,)
    d = int(dim) % ndim
    return math.prod(shape[:d]), shape[d], math.prod(shape[d + 1 :])


def _like(array, name: str, y, op: str):
    """``array`` as a float array of ``y``'s dtype and shape (TypeError / ValueError naming it)."""
    a = as_float_array(array, name, op)
    if a.dtype != y.dtype:
        raise TypeError(f"{op}: {name} has dtype {a.dtype}, y has {y.dtype}")
    if a.shape != y.shape:
        raise ValueError(f"{op}: {name} must have y's shape {y.shape}, got {a.shape}")
    return a


def _along(op: str, kernel: str, inputs: dict, dim, log: bool, out) -> np.ndarray:
    """The backend's ``kernel`` along axis ``dim`` of the last input (see activation._run)."""
    last = list(inputs.values())[-1]
    return _run(op, inputs, out, *_split(last.shape, dim, op), log, kernel=kernel)


def softmax(x, dim: int = -1, *, out=None) -> np.ndarray:
    """``exp(x - max) / sum(exp(x - max))`` along ``dim``, as ``torch.softmax``."""
    return _along("softmax", "softmax", {"x": as_float_array(x, "x", "softmax")}, dim, False, out)


def log_softmax(x, dim: int = -1, *, out=None) -> np.ndarray:
    """``(x - max) - log(sum(exp(x - max)))`` along ``dim``, as ``torch.log_softmax``."""
    return _along("log_softmax", "softmax", {"x": as_float_array(x, "x", "log_softmax")}, dim, True, out)


def _backward(op: str, grad, y, dim, log: bool, out) -> np.ndarray:
    y = as_float_array(y, "y", op)
    return _along(op, "softmax_backward", {"grad": _like(grad, "grad", y, op), "y": y}, dim, log, out)


def softmax_backward(grad, y, dim: int = -1, *, out=None) -> np.ndarray:
    """Gradient of ``softmax`` wrt its input from the output ``y``: ``y * (grad - sum(grad * y))``."""
    return _backward("softmax_backward", grad, y, dim, False, out)


def log_softmax_backward(grad, y, dim: int = -1, *, out=None) -> np.ndarray:
    """Gradient of ``log_softmax`` wrt its input from the output ``y``: ``grad - exp(y) * sum(grad)``."""
    return _backward("log_softmax_backward", grad, y, dim, True, out)


def _classes(x, target, weight, ignore_index, label_smoothing, op: str):
    """Checks the cross-entropy arguments; returns (backend, x, int64 target, weight or None,
    (batch, classes, inner), index shape, ignore_index, label_smoothing)."""
    x = as_float_array(x, "x", op)
    backend = backend_of(x, target, weight, op=op)
    if x.ndim < 1:
        raise ValueError(f"{op}: x must have shape (N, C, d1, ...) or (C,), got {x.shape}")
    index_shape = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    target = target if isinstance(target, backend.array_type) else np.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold class indices (an integer dtype), got dtype {target.dtype}")
    if target.shape != index_shape:
        raise ValueError(f"{op}: target must have shape {index_shape} for x of shape {x.shape}, got {target.shape}")
    check_int64_range(target, "target", op)
    if isinstance(target, np.ndarray):  # aligned, native int64, C order
        target = np.require(target, np.int64, ["C_CONTIGUOUS", "ALIGNED"])
    else:
        target = backend.ascontiguousarray(target if target.dtype == np.int64 else target.astype(np.int64))
    classes = x.shape[1] if x.ndim > 1 else x.shape[0]
    if weight is not None:
        weight = as_float_array(weight, "weight", op)
        if weight.dtype != x.dtype:
            raise TypeError(f"{op}: weight has dtype {weight.dtype}, x has {x.dtype}")
        if weight.shape != (classes,):
            raise ValueError(f"{op}: weight must have shape ({classes},) for x of shape {x.shape}, got {weight.shape}")
        weight = backend.ascontiguousarray(weight)
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{op}: ignore_index must be an int, got {type(ignore_index).__name__}")
    ignore_index = check_index(int(ignore_index), "ignore_index", op)
    smoothing = check_scalar(label_smoothing, "label_smoothing", op)
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    sizes = (x.shape[0], classes, math.prod(x.shape[2:])) if x.ndim > 1 else (1, classes, 1)
    return backend, x, target, weight, sizes, index_shape, ignore_index, smoothing


def cross_entropy(x, target, weight=None, *, ignore_index: int = -100, label_smoothing: float = 0.0):
    """Per-sample cross entropy of logits ``x`` (N, C, d1, ...) or (C,) and class indices
    ``target`` (N, d1, ...) or (), with PyTorch's ``weight`` (C,), ``ignore_index`` (those
    samples' loss is 0) and ``label_smoothing``. Returns ``(loss, stats)``: ``loss`` of target's
    shape (reduce it as PyTorch's 'sum' or, divided by ``stats[..., 2].sum()``, 'mean') and
    ``stats`` of target's shape + (3,), what :func:`cross_entropy_backward` needs (each sample's
    max logit, log-sum-exp of the logits minus it, and target weight, 0 when ignored). A target
    outside [0, C) other than ``ignore_index`` is a ValueError naming it."""
    op = "cross_entropy"
    backend, x, t, w, sizes, index_shape, ignore_index, eps = _classes(
        x, target, weight, ignore_index, label_smoothing, op
    )
    loss = backend.empty(index_shape, x.dtype)
    stats = backend.empty(index_shape + (3,), x.dtype)
    backend.cross_entropy_forward(backend.ascontiguousarray(x), t, w, loss, stats, *sizes, ignore_index, eps)
    return loss, stats


def cross_entropy_backward(
    grad, x, target, stats, weight=None, *, ignore_index: int = -100, label_smoothing: float = 0.0, out=None
):
    """Gradient wrt ``x`` of the per-sample losses of :func:`cross_entropy` times ``grad`` (one
    factor per sample, target's shape, or one for all, a single element): ``grad * (softmax(x) *
    sum(q) - q)`` with q the weighted, smoothed one-hot target, in one pass over ``x``."""
    op = "cross_entropy_backward"
    backend, x, t, w, sizes, index_shape, ignore_index, eps = _classes(
        x, target, weight, ignore_index, label_smoothing, op
    )
    g = as_float_array(grad, "grad", op)
    if g.dtype != x.dtype:
        raise TypeError(f"{op}: grad has dtype {g.dtype}, x has {x.dtype}")
    if g.shape != index_shape and g.size != 1:
        raise ValueError(f"{op}: grad must have target's shape {index_shape} or one element, got {g.shape}")
    check_array_type(stats, "stats", op, backend, " (cross_entropy's)")
    s = as_float_array(stats, "stats", op)
    if s.dtype != x.dtype or s.shape != index_shape + (3,):
        raise ValueError(
            f"{op}: stats must be cross_entropy's, {x.dtype} of shape {index_shape + (3,)}, got {s.dtype} {s.shape}"
        )
    inputs = {"grad": g, "target": t, "weight": w, "stats": s, "x": x}
    result = (
        backend.empty(x.shape, x.dtype)
        if out is None
        else check_output(out, "out", op, x.shape, x.dtype, inputs, backend)
    )
    target_array = result if result.flags.c_contiguous else backend.empty(x.shape, x.dtype)
    contiguous = [backend.ascontiguousarray(a) for a in (g, x)]
    backend.cross_entropy_backward(
        contiguous[0], contiguous[1], t, w, backend.ascontiguousarray(s), target_array, *sizes, ignore_index, eps
    )
    if target_array is not result:
        result[...] = target_array
    return result
