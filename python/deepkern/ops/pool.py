"""2-D pooling: ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d`` and their backward passes.

Names, arguments, defaults and results are PyTorch's (``torch.nn.functional``) on NCHW NumPy
arrays: ``x`` is ``(N, C, H, W)`` or ``(C, H, W)``, ``kernel_size``/``stride``/``padding``/
``dilation`` are an int or a pair (H, W), and the output size follows PyTorch's formula,
``ceil_mode`` included (the last window must start inside the input or the left padding). The
kernels (csrc/cpu/pool) run on C-contiguous float32 or float64 planes; other layouts are copied
once. Every function takes ``out=`` (the result's exact shape and dtype) and returns it.
bfloat16 arrays (``deepkern.bfloat16``) are widened to float32 (exact), pooled there and rounded
to bfloat16 once, as PyTorch's bfloat16 pooling computes each window in float32; max pooling is
exact. ``out=`` is then a bfloat16 array.

The backward functions return the gradient with respect to ``x`` from the forward's arguments,
so a network layer keeps only what the forward gave it: ``max_pool2d(..., return_indices=True)``
returns the indices that ``max_pool2d_backward`` scatters with.
"""

from __future__ import annotations

import operator

import numpy as np

from ..backends import as_array, backend_of
from ._validate import as_float_array, bfloat16_through_float32, check_index, check_int64_range, check_output

__all__ = [
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "pool_output_size",
]


# ---- argument checks ---------------------------------------------------------------------------


def _int(value, name: str, op: str, kind: str = "an int or a pair of ints") -> int:
    """``value`` as a Python int; a TypeError saying ``name`` must be ``kind`` for anything else."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be {kind}, got {value!r}")
    try:
        return check_index(operator.index(value), name, op)
    except TypeError:
        raise TypeError(f"{op}: {name} must be {kind}, got {value!r}") from None


def _pair(value, name: str, op: str) -> tuple:
    """An int or a pair of ints as an (H, W) pair of Python ints."""
    if isinstance(value, (tuple, list)):
        if len(value) == 1:  # PyTorch accepts (k,) for (k, k)
            value = (value[0], value[0])
        if len(value) != 2:
            raise ValueError(f"{op}: {name} must be an int or a pair (H, W), got {tuple(value)!r}")
        return _int(value[0], name, op), _int(value[1], name, op)
    v = _int(value, name, op)
    return v, v


def _input(x, name: str, op: str):
    """``x`` as a float32/float64 array of shape (N, C, H, W) or (C, H, W)."""
    x = as_float_array(x, name, op)
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: {name} must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {x.shape}")
    if 0 in x.shape[-3:]:
        raise ValueError(f"{op}: {name} must have non-zero C, H and W, got shape {x.shape}")
    return x


def _x_shape(x_shape, grad_out: np.ndarray, op: str) -> tuple:
    """The forward input's shape: 3 or 4 positive ints whose leading (N, C) are grad_out's."""
    try:
        shape = tuple(_int(v, "x_shape", op) for v in x_shape)
    except TypeError:
        raise TypeError(f"{op}: x_shape must be a tuple of ints, got {x_shape!r}") from None
    if len(shape) != grad_out.ndim or shape[:-2] != grad_out.shape[:-2] or min(shape[-3:]) < 1 or min(shape) < 0:
        raise ValueError(
            f"{op}: x_shape {shape} must be the forward input's (N, C, H, W) or (C, H, W) with the same "
            f"leading dimensions as grad_out {grad_out.shape}"
        )
    return shape


def _grad_out(grad_out, op: str):
    g = as_float_array(grad_out, "grad_out", op)
    if g.ndim not in (3, 4):
        raise ValueError(f"{op}: grad_out must be 3-D or 4-D like the forward's output, got shape {g.shape}")
    return g


def pool_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooled size along one axis (``ceil_mode``: the last window must start inside
    the input or the left padding)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _window(op: str, in_shape: tuple, kernel_size, stride, padding, dilation, ceil_mode) -> tuple:
    """Checked (kernel, stride, padding, dilation) pairs and the output (H, W)."""
    kernel = _pair(kernel_size, "kernel_size", op)
    stride = (
        kernel
        if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
        else _pair(stride, "stride", op)
    )
    padding = _pair(padding, "padding", op)
    dilation = _pair(dilation, "dilation", op)
    for name, value in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        if min(value) < 1:
            raise ValueError(f"{op}: {name} must be positive, got {value}")
    if min(padding) < 0 or padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{op}: padding must be between 0 and half of kernel_size, got padding={padding} and kernel_size={kernel}"
        )
    h, w = in_shape[-2:]
    out_hw = tuple(
        pool_output_size(n, k, s, p, d, bool(ceil_mode))
        for n, k, s, p, d in zip((h, w), kernel, stride, padding, dilation)
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"{op}: the output would be empty: input {in_shape} gives output size {out_hw} with "
            f"kernel_size={kernel}, stride={stride}, padding={padding}, dilation={dilation}, "
            f"ceil_mode={bool(ceil_mode)}"
        )
    return kernel, stride, padding, dilation, out_hw


def _kernel_shape(in_shape, out_hw, kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> tuple:
    """The shape tuple deepkern._C's pooling functions take."""
    planes = int(np.prod(in_shape[:-2]))
    return (planes, *in_shape[-2:], *out_hw, *kernel, *stride, *padding, *dilation)


def _target(backend, out, op: str, shape: tuple, dtype, inputs: dict):
    """(array the kernel writes, array returned): ``out`` itself when it is C-contiguous."""
    if out is None:
        result = backend.empty(shape, dtype)
        return result, result
    check_output(out, "out", op, shape, dtype, inputs, backend)
    return (out if out.flags.c_contiguous else backend.empty(shape, dtype)), out


def _finish(written, result):
    if written is not result:
        result[...] = written
    return result


# ---- max -------------------------------------------------------------------------------------


@bfloat16_through_float32
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *, out=None):
    """Max over each window (PyTorch's ``F.max_pool2d``); padding never wins.

    A window holding a NaN gives NaN. With ``return_indices`` returns ``(out, indices)``: int64,
    the flat position ``h * W + w`` of each maximum in its (H, W) plane, as PyTorch. A window over
    padding only (possible with dilation) gives -inf and index -1, which the backward skips; PyTorch
    gives an index outside the plane there.
    """
    op = "max_pool2d"
    x = _input(x, "x", op)
    kernel, stride, padding, dilation, out_hw = _window(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    shape = x.shape[:-2] + out_hw
    backend = backend_of(x, out, op=op)
    x = backend.ascontiguousarray(x)
    written, result = _target(backend, out, op, shape, x.dtype, {"x": x})
    indices = backend.empty(shape, np.int64) if return_indices else None
    backend.max_pool2d(x, written, indices, _kernel_shape(x.shape, out_hw, kernel, stride, padding, dilation))
    result = _finish(written, result)
    return (result, indices) if return_indices else result


@bfloat16_through_float32
def max_pool2d_backward(grad_out, x_shape, indices, *, out=None):
    """Gradient of ``max_pool2d`` with respect to ``x``: zeros, plus each ``grad_out`` element
    added at its window's maximum (``indices`` from ``max_pool2d(..., return_indices=True)``)."""
    op = "max_pool2d_backward"
    g = _grad_out(grad_out, op)
    shape = _x_shape(x_shape, g, op)
    ind = indices if isinstance(indices, np.ndarray) else as_array(indices)
    if ind.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer array (int64 from max_pool2d), got dtype {ind.dtype}")
    if ind.shape != g.shape:
        raise ValueError(f"{op}: indices must have grad_out's shape {g.shape}, got {ind.shape}")
    backend = backend_of(g, ind, out, op=op)
    check_int64_range(ind, "indices", op)
    if ind.dtype != np.int64 or (isinstance(ind, np.ndarray) and not ind.flags.aligned):
        ind = ind.astype(np.int64)  # other integers, byte orders and unaligned data: converted once
    g, ind = backend.ascontiguousarray(g), backend.ascontiguousarray(ind)
    written, result = _target(backend, out, op, shape, g.dtype, {"grad_out": g, "indices": ind})
    try:
        backend.max_pool2d_backward(g, ind, written, _kernel_shape(shape, g.shape[-2:]))
    except ValueError as err:
        raise ValueError(f"{op}: indices {ind.shape} for x_shape {shape}: {err}") from None
    return _finish(written, result)


# ---- average ---------------------------------------------------------------------------------


def _divisor(divisor_override, op: str) -> int:
    if divisor_override is None:
        return 0
    d = _int(divisor_override, "divisor_override", op, "an int")
    if d == 0:
        raise ValueError(f"{op}: divisor_override must be nonzero, got {d}")
    return d


@bfloat16_through_float32
def avg_pool2d(
    x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None, *, out=None
):
    """Mean over each window (PyTorch's ``F.avg_pool2d``).

    The divisor is ``divisor_override`` when given, else the window's size: counting the zero
    padding (``count_include_pad``) or only the input elements it covers.
    """
    op = "avg_pool2d"
    x = _input(x, "x", op)
    kernel, stride, padding, _, out_hw = _window(op, x.shape, kernel_size, stride, padding, 1, ceil_mode)
    divisor = _divisor(divisor_override, op)
    shape = x.shape[:-2] + out_hw
    backend = backend_of(x, out, op=op)
    x = backend.ascontiguousarray(x)
    written, result = _target(backend, out, op, shape, x.dtype, {"x": x})
    backend.avg_pool2d(
        x, written, _kernel_shape(x.shape, out_hw, kernel, stride, padding), bool(count_include_pad), divisor
    )
    return _finish(written, result)


@bfloat16_through_float32
def avg_pool2d_backward(
    grad_out,
    x_shape,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    *,
    out=None,
):
    """Gradient of ``avg_pool2d`` (same arguments) with respect to ``x`` of shape ``x_shape``."""
    op = "avg_pool2d_backward"
    g = _grad_out(grad_out, op)
    shape = _x_shape(x_shape, g, op)
    kernel, stride, padding, _, out_hw = _window(op, shape, kernel_size, stride, padding, 1, ceil_mode)
    if g.shape[-2:] != out_hw:
        raise ValueError(
            f"{op}: grad_out must have shape {shape[:-2] + out_hw} (the forward's output for "
            f"x_shape {shape}), got {g.shape}"
        )
    divisor = _divisor(divisor_override, op)
    backend = backend_of(g, out, op=op)
    g = backend.ascontiguousarray(g)
    written, result = _target(backend, out, op, shape, g.dtype, {"grad_out": g})
    backend.avg_pool2d_backward(
        g, written, _kernel_shape(shape, out_hw, kernel, stride, padding), bool(count_include_pad), divisor
    )
    return _finish(written, result)


# ---- adaptive average ------------------------------------------------------------------------


def _adaptive_size(output_size, in_shape: tuple, op: str) -> tuple:
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"{op}: output_size must be an int or a pair (H, W), got {tuple(output_size)!r}")
        size = tuple(in_shape[-2 + i] if v is None else _int(v, "output_size", op) for i, v in enumerate(output_size))
    else:
        size = _pair(output_size, "output_size", op)
    if min(size) < 0:
        raise ValueError(f"{op}: output_size must be non-negative, got {size} for input {in_shape}")
    return size


@bfloat16_through_float32
def adaptive_avg_pool2d(x, output_size, *, out=None):
    """Mean over PyTorch's adaptive windows: output row ``i`` of ``H_out`` averages input rows
    ``floor(i * H / H_out)`` to ``ceil((i + 1) * H / H_out)``, and columns likewise.
    ``output_size`` is an int or a pair; ``None`` in a pair keeps that input size."""
    op = "adaptive_avg_pool2d"
    x = _input(x, "x", op)
    out_hw = _adaptive_size(output_size, x.shape, op)
    shape = x.shape[:-2] + out_hw
    backend = backend_of(x, out, op=op)
    x = backend.ascontiguousarray(x)
    written, result = _target(backend, out, op, shape, x.dtype, {"x": x})
    if written.size:
        backend.adaptive_avg_pool2d(x, written, _kernel_shape(x.shape, out_hw))
    return _finish(written, result)


@bfloat16_through_float32
def adaptive_avg_pool2d_backward(grad_out, x_shape, *, out=None):
    """Gradient of ``adaptive_avg_pool2d`` with respect to ``x`` of shape ``x_shape`` (the output
    size is ``grad_out``'s last two dimensions)."""
    op = "adaptive_avg_pool2d_backward"
    g = _grad_out(grad_out, op)
    shape = _x_shape(x_shape, g, op)
    backend = backend_of(g, out, op=op)
    g = backend.ascontiguousarray(g)
    written, result = _target(backend, out, op, shape, g.dtype, {"grad_out": g})
    if g.size:
        backend.adaptive_avg_pool2d_backward(g, written, _kernel_shape(shape, g.shape[-2:]))
    else:
        written[...] = 0
    return _finish(written, result)
