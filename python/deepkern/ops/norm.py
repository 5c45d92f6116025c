"""Normalization as fused kernels: ``batch_norm`` (the batch statistics, the normalization and the
running-statistics update in one call) and ``batch_norm_backward`` (the input, weight and bias
gradients in one call); ``layer_norm`` and ``group_norm`` and their backward passes the same way
(see their docstrings).

Semantics are PyTorch's ``F.batch_norm`` over ``x`` of shape ``(N, C, ...)`` (2-D ``(N, C)`` or
more dimensions): the statistics run over every axis but the channel axis 1. When ``training``,
the batch's mean and biased variance normalize, and ``running_mean``/``running_var`` (when given)
are updated in place, ``r = (1 - momentum) * r + momentum * stat`` with the unbiased variance;
otherwise the running statistics normalize. Statistics are accumulated in float64 (the mean, then
the squared deviations from it), so float32 inputs of millions of values per channel keep float32
accuracy. The kernels run on C-contiguous arrays; other layouts are copied once.
"""

from __future__ import annotations

import numpy as np

from ..backends import backend_of
from ._validate import as_float_array, backward_needs, check_output, check_scalar, overlaps

__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "layer_norm",
    "layer_norm_backward",
    "group_norm",
    "group_norm_backward",
]


def _channels(x, op: str):
    """``x`` as a float array of at least 2 dimensions, and its (n, c, s) kernel shape."""
    x = as_float_array(x, "x", op)
    if x.ndim < 2:
        raise ValueError(f"{op}: x must have shape (N, C, ...) with at least 2 dimensions, got shape {x.shape}")
    n, c = x.shape[:2]
    return x, (n, c, int(np.prod(x.shape[2:], dtype=np.int64)))


def _per_channel(value, name: str, op: str, x, backend):
    """None, or ``value`` as a C-element array of x's dtype on x's backend."""
    if value is None:
        return None
    arr = as_float_array(value, name, op)
    if arr.dtype != x.dtype:
        raise TypeError(f"{op}: {name} must have x's dtype {x.dtype}, got {arr.dtype}")
    if arr.shape != (x.shape[1],):
        raise ValueError(
            f"{op}: {name} must have shape ({x.shape[1]},) (x's channels, x has shape {x.shape}), got {arr.shape}"
        )
    backend_of(x, arr, op=op)
    return arr


def _output(out, op: str, x, inputs: dict, backend):
    """``(written, result)``: the array the kernel writes (C-contiguous, x's shape and dtype) and
    the one returned, ``out`` when given (checked against ``inputs``; written from a contiguous
    copy when it is not contiguous itself)."""
    if out is None:
        written = backend.empty(x.shape, x.dtype)
        return written, written
    check_output(out, "out", op, x.shape, x.dtype, {k: v for k, v in inputs.items() if v is not None}, backend)
    return (out if out.flags.c_contiguous else backend.empty(x.shape, x.dtype)), out


def _check_updated(op: str, x, others: dict, running: list, given: tuple) -> None:
    """The running statistics a training call updates in place: the caller's own arrays (no
    converted copy: writeable, aligned, native byte order), sharing memory with no other argument."""
    arrays = {"x": x, **{k: v for k, v in others.items() if v is not None}}
    for name, arr, original in zip(("running_mean", "running_var"), running, given):
        if arr is None:
            continue
        repeated = any(stride == 0 for n, stride in zip(arr.shape, arr.strides) if n > 1)
        if arr is not original or not arr.flags.writeable or repeated:
            raise ValueError(
                f"{op}: {name} is updated in place: it must be a writeable, aligned array of native byte "
                "order whose elements do not share memory"
            )
        for other, value in arrays.items():
            if overlaps(arr, value):
                raise ValueError(f"{op}: {name} is updated in place and must not share memory with {other}")
        arrays[name] = arr


def batch_norm(
    x, weight=None, bias=None, running_mean=None, running_var=None, training=False, momentum=0.1, eps=1e-5, *, out=None
):
    """``(out, save_mean, save_invstd)``: ``out = (x - mean) / sqrt(var + eps) * weight + bias``
    per channel, with the batch's statistics when ``training`` (updating ``running_mean`` and
    ``running_var`` in place when given) or the running ones. ``save_mean`` and ``save_invstd``
    (float64, one per channel) are what ``batch_norm_backward`` takes."""
    op = "batch_norm"
    x, shape = _channels(x, op)
    backend = backend_of(x, out, op=op)
    weight, bias = (_per_channel(v, name, op, x, backend) for v, name in ((weight, "weight"), (bias, "bias")))
    running = [
        _per_channel(v, name, op, x, backend)
        for v, name in ((running_mean, "running_mean"), (running_var, "running_var"))
    ]
    if training:
        _check_updated(op, x, {"weight": weight, "bias": bias, "out": out}, running, (running_mean, running_var))
    momentum, eps = check_scalar(momentum, "momentum", op), check_scalar(eps, "eps", op)
    if training and shape[0] * shape[2] == 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got input of shape {x.shape}")
    if not training and (running[0] is None or running[1] is None):
        raise ValueError(f"{op}: running_mean and running_var are needed when not training")
    if not (np.isfinite(momentum) and np.isfinite(eps) and eps >= 0):
        raise ValueError(f"{op}: momentum must be finite and eps finite and >= 0, got momentum={momentum}, eps={eps}")
    x = backend.ascontiguousarray(x)
    inputs = {"x": x, "weight": weight, "bias": bias, "running_mean": running[0], "running_var": running[1]}
    written, result = _output(out, op, x, inputs, backend)
    if x.size == 0:  # an empty batch: nothing to normalize and no statistics (the running ones kept, as PyTorch)
        return result, backend.zeros((shape[1],), np.float64), backend.zeros((shape[1],), np.float64)
    # Running statistics updated in place: the kernel writes contiguous ones directly, others
    # through a contiguous copy written back.
    # Evaluation reads them: a read-only one goes to the kernel as a copy.
    stats = [
        None if r is None else backend.ascontiguousarray(r) if training or r.flags.writeable else r.copy()
        for r in running
    ]
    save_mean, save_invstd = backend.empty((shape[1],), np.float64), backend.empty((shape[1],), np.float64)
    weight, bias = (None if v is None else backend.ascontiguousarray(v) for v in (weight, bias))
    backend.batch_norm_forward(
        x, weight, bias, stats[0], stats[1], written, save_mean, save_invstd, shape, bool(training), momentum, eps
    )
    for given, used in zip(running, stats):
        if training and given is not None and used is not given:
            given[...] = used
    if written is not result:
        result[...] = written
    return result, save_mean, save_invstd


def batch_norm_backward(grad_out, x, weight, save_mean, save_invstd, training, needs=(True, True, True)):
    """``(grad_x, grad_weight, grad_bias)`` of ``batch_norm`` from its ``x``, ``weight`` and the
    ``save_mean``/``save_invstd`` it returned; ``needs`` says which to compute (None for the
    others). When ``training`` the statistics depend on ``x`` and grad_x includes that path."""
    op = "batch_norm_backward"
    x, shape = _channels(x, op)
    g = as_float_array(grad_out, "grad_out", op)
    if g.shape != x.shape or g.dtype != x.dtype:
        raise ValueError(
            f"{op}: grad_out must have x's shape {x.shape} and dtype {x.dtype}, got {g.shape} and {g.dtype}"
        )
    backend = backend_of(g, x, op=op)
    weight = _per_channel(weight, "weight", op, x, backend)
    saved = []
    for value, name in ((save_mean, "save_mean"), (save_invstd, "save_invstd")):
        arr = None if value is None else as_float_array(value, name, op)
        if arr is None or arr.dtype != np.float64 or arr.shape != (shape[1],):
            raise ValueError(f"{op}: {name} must be the float64 ({shape[1]},) array batch_norm returned")
        backend_of(x, arr, op=op)
        saved.append(backend.ascontiguousarray(arr))
    need_x, need_w, need_b = backward_needs(needs, op, "x, weight, bias")
    g, x = backend.ascontiguousarray(g), backend.ascontiguousarray(x)
    grad_x = backend.empty(x.shape, x.dtype) if need_x else None
    grad_w = backend.empty((shape[1],), x.dtype) if need_w else None
    grad_b = backend.empty((shape[1],), x.dtype) if need_b else None
    weight = None if weight is None else backend.ascontiguousarray(weight)
    if need_x or need_w or need_b:
        backend.batch_norm_backward(g, x, weight, saved[0], saved[1], grad_x, grad_w, grad_b, shape, bool(training))
    return grad_x, grad_w, grad_b


# ---- layer and group normalization ---------------------------------------------------------------


def _normalized_shape(normalized_shape, x, op: str) -> tuple:
    """``normalized_shape`` (an int or a sequence of ints) as a tuple equal to x's trailing sizes."""
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
    if not isinstance(shape, (tuple, list)) or any(
        isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) for n in shape
    ):
        raise TypeError(f"{op}: normalized_shape must be an int or a sequence of ints, got {normalized_shape!r}")
    shape = tuple(int(n) for n in shape)
    if not shape or len(shape) > x.ndim or x.shape[x.ndim - len(shape) :] != shape:
        raise ValueError(
            f"{op}: normalized_shape {shape} must be non-empty and equal the last sizes of x, got x of shape {x.shape}"
        )
    return shape


def _param(value, name: str, op: str, x, shape: tuple, what: str):
    """None, or ``value`` as a C-contiguous array of ``shape`` and x's dtype on x's backend."""
    if value is None:
        return None
    arr = as_float_array(value, name, op)
    if arr.dtype != x.dtype:
        raise TypeError(f"{op}: {name} must have x's dtype {x.dtype}, got {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{op}: {name} must have shape {shape} ({what}, x has shape {x.shape}), got {arr.shape}")
    return backend_of(x, arr, op=op).ascontiguousarray(arr)


def _eps(eps, op: str) -> float:
    eps = check_scalar(eps, "eps", op)
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"{op}: eps must be finite and >= 0, got {eps}")
    return eps


def _saved_stats(values, op: str, x, shape: tuple, backend, forward: str) -> list:
    """save_mean and save_rstd: the float64 arrays of ``shape`` the forward returned."""
    saved = []
    for value, name in zip(values, ("save_mean", "save_rstd")):
        arr = None if value is None else as_float_array(value, name, op)
        if arr is None or arr.dtype != np.float64 or arr.shape != shape:
            got = "None" if arr is None else f"{arr.dtype} {arr.shape}"
            raise ValueError(f"{op}: {name} must be the float64 {shape} array {forward} returned, got {got}")
        backend_of(x, arr, op=op)
        saved.append(backend.ascontiguousarray(arr))
    return saved


def _grad_out(grad_out, x, op: str):
    g = as_float_array(grad_out, "grad_out", op)
    if g.shape != x.shape or g.dtype != x.dtype:
        raise ValueError(
            f"{op}: grad_out must have x's shape {x.shape} and dtype {x.dtype}, got {g.shape} and {g.dtype}"
        )
    return g


def _run_backward(kernel, g, x, weight, saved, params_shape, needs, backend, *args):
    """``(grad_x, grad_weight, grad_bias)`` from ``kernel`` (a backend entry), those not in ``needs`` (three
    bools, see :func:`backward_needs`) None."""
    need_x, need_w, need_b = needs
    g, x = backend.ascontiguousarray(g), backend.ascontiguousarray(x)
    grad_x = backend.empty(x.shape, x.dtype) if need_x else None
    grad_w = backend.empty(params_shape, x.dtype) if need_w else None
    grad_b = backend.empty(params_shape, x.dtype) if need_b else None
    if need_x or need_w or need_b:
        kernel(g, x, weight, saved[0], saved[1], grad_x, grad_w, grad_b, *args)
    return grad_x, grad_w, grad_b


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, out=None):
    """``(out, save_mean, save_rstd)``: PyTorch's ``F.layer_norm``. Each of x's rows (its last
    ``len(normalized_shape)`` axes, which must equal ``normalized_shape``) is normalized by its
    own mean and biased variance, ``out = (x - mean) / sqrt(var + eps) * weight + bias`` with
    ``weight`` and ``bias`` (optional) of shape ``normalized_shape``. The statistics are taken in
    float64 (the mean, then the squared deviations from it); ``save_mean`` and ``save_rstd``
    (float64, shape ``x.shape[:-len(normalized_shape)]``) are what ``layer_norm_backward`` takes."""
    op = "layer_norm"
    x = as_float_array(x, "x", op)
    shape = _normalized_shape(normalized_shape, x, op)
    backend = backend_of(x, out, op=op)
    weight, bias = (_param(v, n, op, x, shape, "normalized_shape") for v, n in ((weight, "weight"), (bias, "bias")))
    eps = _eps(eps, op)
    x = backend.ascontiguousarray(x)
    written, result = _output(out, op, x, {"x": x, "weight": weight, "bias": bias}, backend)
    stats_shape = x.shape[: x.ndim - len(shape)]
    save_mean, save_rstd = backend.empty(stats_shape, np.float64), backend.empty(stats_shape, np.float64)
    rows_len = (int(np.prod(stats_shape, dtype=np.int64)), int(np.prod(shape, dtype=np.int64)))
    backend.layer_norm_forward(x, weight, bias, written, save_mean, save_rstd, rows_len, eps)
    if written is not result:
        result[...] = written
    return result, save_mean, save_rstd


def layer_norm_backward(grad_out, x, normalized_shape, weight, save_mean, save_rstd, needs=(True, True, True)):
    """``(grad_x, grad_weight, grad_bias)`` of ``layer_norm`` from its ``x``, ``weight`` and the
    ``save_mean``/``save_rstd`` it returned; ``needs`` says which to compute (None for the others).
    grad_weight and grad_bias are summed over the rows in float64."""
    op = "layer_norm_backward"
    x = as_float_array(x, "x", op)
    shape = _normalized_shape(normalized_shape, x, op)
    g = _grad_out(grad_out, x, op)
    backend = backend_of(g, x, op=op)
    weight = _param(weight, "weight", op, x, shape, "normalized_shape")
    stats_shape = x.shape[: x.ndim - len(shape)]
    saved = _saved_stats((save_mean, save_rstd), op, x, stats_shape, backend, "layer_norm")
    rows_len = (int(np.prod(stats_shape, dtype=np.int64)), int(np.prod(shape, dtype=np.int64)))
    needs = backward_needs(needs, op, "x, weight, bias")
    return _run_backward(backend.layer_norm_backward, g, x, weight, saved, shape, needs, backend, rows_len)


def _groups(x, num_groups, op: str):
    """x (at least 2-D), its (n, c, s) kernel shape and ``num_groups`` checked to divide c."""
    x, shape = _channels(x, op)
    if isinstance(num_groups, (bool, np.bool_)) or not isinstance(num_groups, (int, np.integer)):
        raise TypeError(f"{op}: num_groups must be an int, got {type(num_groups).__name__}")
    if num_groups < 1 or shape[1] % num_groups:
        raise ValueError(
            f"{op}: num_groups must be >= 1 and divide the channels ({shape[1]}, x has shape {x.shape}), "
            f"got num_groups={num_groups}"
        )
    return x, shape, int(num_groups)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, out=None):
    """``(out, save_mean, save_rstd)``: PyTorch's ``F.group_norm`` over x of shape ``(N, C, ...)``:
    the C channels form ``num_groups`` groups of consecutive channels, each (sample, group)
    normalized by its own mean and biased variance, then ``weight`` and ``bias`` (optional, C
    elements) applied per channel. Statistics in float64 as ``layer_norm``'s; ``save_mean`` and
    ``save_rstd`` are float64 of shape ``(N, num_groups)``."""
    op = "group_norm"
    x, shape, groups = _groups(x, num_groups, op)
    backend = backend_of(x, out, op=op)
    weight, bias = (_param(v, n, op, x, (shape[1],), "x's channels") for v, n in ((weight, "weight"), (bias, "bias")))
    eps = _eps(eps, op)
    x = backend.ascontiguousarray(x)
    written, result = _output(out, op, x, {"x": x, "weight": weight, "bias": bias}, backend)
    save_mean, save_rstd = (backend.empty((shape[0], groups), np.float64) for _ in range(2))
    backend.group_norm_forward(x, weight, bias, written, save_mean, save_rstd, shape, groups, eps)
    if written is not result:
        result[...] = written
    return result, save_mean, save_rstd


def group_norm_backward(grad_out, x, num_groups, weight, save_mean, save_rstd, needs=(True, True, True)):
    """``(grad_x, grad_weight, grad_bias)`` of ``group_norm`` from its ``x``, ``weight`` and the
    ``save_mean``/``save_rstd`` it returned; ``needs`` says which to compute (None for the others)."""
    op = "group_norm_backward"
    x, shape, groups = _groups(x, num_groups, op)
    g = _grad_out(grad_out, x, op)
    backend = backend_of(g, x, op=op)
    weight = _param(weight, "weight", op, x, (shape[1],), "x's channels")
    saved = _saved_stats((save_mean, save_rstd), op, x, (shape[0], groups), backend, "group_norm")
    needs = backward_needs(needs, op, "x, weight, bias")
    return _run_backward(backend.group_norm_backward, g, x, weight, saved, (shape[1],), needs, backend, shape, groups)
