"""Dropout from a counter-based generator: ``dropout`` and ``dropout_backward``.

Element ``i`` (in C order of ``x``'s shape) of a call with ``(seed, offset)`` takes 32 bits of
Philox4x32-10 (Salmon et al., SC 2011): word ``i % 4`` of the generator at counter
``offset + i // 4`` with key ``seed``, and is kept when that word is at least ``ceil(p * 2**32)``.
So the mask depends only on ``(seed, offset, i)``: the CPU and the GPU, any thread count and any
instruction set give the same bits, and the CUDA kernel draws it on the device. A call on ``n``
elements consumes :func:`counters` ``(n) = ceil(n / 4)`` counters; the next independent call starts
at ``offset + counters(n)`` (``deepkern.random.philox_seed_offset`` keeps that state). The
definitions are in csrc/cpu/dropout/philox.h.

The kept elements are scaled by ``1 / (1 - p)`` rounded once to the dtype (PyTorch's
``x * mask / (1 - p)``): a dropped NaN or infinity gives NaN, and ``p = 1`` drops everything. The
mask is a bool array (one byte per element, as PyTorch's ``native_dropout``): the backward reads it
directly, and NumPy and the GPU index it without unpacking bits.
"""

from __future__ import annotations

import numpy as np

from ..backends import backend_of
from ._validate import as_float_array, bfloat16_through_float32, check_output, check_scalar

__all__ = ["dropout", "dropout_backward", "counters"]

_BOOL = np.dtype(np.bool_)


def counters(n: int) -> int:
    """Philox counters a call on ``n`` elements consumes: ``ceil(n / 4)``."""
    return (n + 3) // 4


def _probability(p, op: str) -> float:
    p = check_scalar(p, "p", op)
    if not 0 <= p <= 1:
        raise ValueError(f"{op}: p must be a probability in [0, 1], got {p}")
    return p


def _uint64(value, name: str, op: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    if not 0 <= value < 2**64:
        raise ValueError(f"{op}: {name} must be in [0, 2**64), got {value}")
    return int(value)


def _target(backend, result, shape, dtype):
    """``result`` when the kernel can write it directly (C-contiguous), else a new array to copy from."""
    return result if result.flags.c_contiguous else backend.empty(shape, dtype)


def _output(out, name, op, x, dtype, inputs, backend):
    if out is None:
        return backend.empty(x.shape, dtype)
    return check_output(out, name, op, x.shape, dtype, inputs, backend)


@bfloat16_through_float32
def dropout(x, p, seed, offset, *, out=None, mask=None):
    """Returns ``(y, mask)``: ``mask`` (bool, ``x``'s shape) marks the elements kept, each with
    probability ``1 - p`` from the Philox stream of ``(seed, offset)`` (see the module docstring),
    and ``y = x * mask / (1 - p)`` (``x``'s dtype). ``x`` is float32, float64 or bfloat16 (computed
    in float32, ``y`` rounded once), any shape and strides; ``out`` and ``mask`` may be given (any
    strides, overlapping nothing) and are returned."""
    op = "dropout"
    x = as_float_array(x, "x", op)
    p = _probability(p, op)
    seed, offset = _uint64(seed, "seed", op), _uint64(offset, "offset", op)
    backend = backend_of(x, out, mask, op=op)
    y = _output(out, "out", op, x, x.dtype, {"x": x}, backend)
    m = _output(mask, "mask", op, x, _BOOL, {"x": x, "out": y}, backend)
    if x.size:
        y_target, m_target = _target(backend, y, x.shape, x.dtype), _target(backend, m, x.shape, _BOOL)
        backend.dropout(backend.ascontiguousarray(x), y_target, m_target, p, seed, offset)
        for target, result in ((y_target, y), (m_target, m)):
            if target is not result:
                result[...] = target
    return y, m


@bfloat16_through_float32
def dropout_backward(grad, mask, p, *, out=None):
    """Gradient of :func:`dropout` with respect to ``x``: ``grad * mask / (1 - p)``, the same
    multiplier as the forward, on the mask it returned (bool, ``grad``'s shape)."""
    op = "dropout_backward"
    grad = as_float_array(grad, "grad", op)
    p = _probability(p, op)
    backend = backend_of(grad, mask, out, op=op)
    if not hasattr(mask, "dtype") or mask.dtype != _BOOL:
        raise TypeError(f"{op}: mask must be a bool array, got {getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != grad.shape:
        raise ValueError(f"{op}: mask must have grad's shape {grad.shape}, got {mask.shape}")
    result = _output(out, "out", op, grad, grad.dtype, {"grad": grad, "mask": mask}, backend)
    if grad.size:
        target = _target(backend, result, grad.shape, grad.dtype)
        backend.dropout_backward(backend.ascontiguousarray(grad), backend.ascontiguousarray(mask), target, p)
        if target is not result:
            result[...] = target
    return result
