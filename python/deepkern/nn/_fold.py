"""``unfold`` / ``fold`` (``torch.nn.functional``'s im2col and col2im) and ``max_unpool1d``,
``max_unpool2d``, ``max_unpool3d``, each one differentiable Function on arrays, with PyTorch's
arguments, shapes, checks and numerics.

* ``unfold(input, kernel_size, dilation=1, padding=0, stride=1)``: input ``(N, C, H, W)`` or
  ``(C, H, W)`` gives ``(N, C * kh * kw, L)`` or ``(C * kh * kw, L)``, each column one sliding
  block (row ``c * kh * kw + i * kw + j``, column ``bh * blocks_w + bw``), zeros where a block
  reaches the padding. A NumPy array is read through one strided view (no copy of the input but
  the padded one); other arrays by one slice copy per kernel offset (i, j).
* ``fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1)``: the adjoint: the
  blocks summed back into ``(N, C, H, W)`` (overlaps add), one strided slice addition per kernel
  offset, in PyTorch's order (so float32 sums are PyTorch's).
* ``max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None)``: the
  values of ``input`` put at the flat (H * W) positions ``indices`` of max_pool2d's
  ``return_indices=True`` in a zero output; its gradient gathers from those positions.
  ``max_unpool1d`` and ``max_unpool3d`` likewise with positions along L and in D * H * W.

The two first are each other's gradient. Bad arguments raise TypeError (a type) or ValueError (a
value) naming the function and the argument; an out-of-range unpooling index is a RuntimeError."""

from __future__ import annotations

import numbers

import numpy as np

from .. import backends
from ..autograd import Function
from ..ops._validate import is_floating_dtype
from ..tensor import Tensor
from ..tensor_ops import LinearBackward

__all__ = ["unfold", "fold", "max_unpool1d", "max_unpool2d", "max_unpool3d"]


# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    """An int, a NumPy integer or a bool (PyTorch's int lists take one as 0 or 1)."""
    return isinstance(value, (numbers.Integral, np.integer, np.bool_))


def _ints(value, n: int, name: str, op: str) -> tuple:
    """An int or a sequence of ``n`` ints as an ``n``-tuple of ints (PyTorch's ``_single``, ``_pair``,
    ``_triple`` and int-list arguments)."""
    what = "an int or a pair of ints" if n == 2 else f"an int or a tuple of {n} ints"
    if _is_int(value):
        return (int(value),) * n
    if isinstance(value, (tuple, list)) or (hasattr(value, "__len__") and not isinstance(value, (str, Tensor))):
        items = tuple(value)
        if not all(_is_int(v) for v in items):
            raise TypeError(f"{op}: {name} must be {what}, got {value!r}")
        if len(items) != n:
            raise ValueError(f"{op}: {name} must be {what}, got {len(items)} values: {value!r}")
        return tuple(int(v) for v in items)
    raise TypeError(f"{op}: {name} must be {what}, got {type(value).__name__} {value!r}")


def _window(op: str, kernel_size, dilation, padding, stride) -> tuple:
    """The four pairs, checked as PyTorch's im2col/col2im check them."""
    k = _ints(kernel_size, 2, "kernel_size", op)
    d = _ints(dilation, 2, "dilation", op)
    p = _ints(padding, 2, "padding", op)
    s = _ints(stride, 2, "stride", op)
    if min(k) <= 0:
        raise ValueError(f"{op}: kernel_size should be greater than zero, but got kernel_size={k}")
    if min(d) <= 0:
        raise ValueError(f"{op}: dilation should be greater than zero, but got dilation={d}")
    if min(p) < 0:
        raise ValueError(f"{op}: padding should be non-negative, but got padding={p}")
    if min(s) <= 0:
        raise ValueError(f"{op}: stride should be greater than zero, but got stride={s}")
    return k, d, p, s


def _blocks(size: tuple, k: tuple, d: tuple, p: tuple, s: tuple) -> tuple:
    """The number of sliding blocks along the height and the width (floor division, as PyTorch's
    div_rtn: negative when the padded size is below the dilated kernel)."""
    return tuple((size[a] + 2 * p[a] - (d[a] * (k[a] - 1) + 1)) // s[a] + 1 for a in (0, 1))


def _tensor(value, name: str, op: str) -> Tensor:
    t = value if isinstance(value, Tensor) else Tensor._wrap(backends.as_array(value))
    if not is_floating_dtype(t.dtype):
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


# ---------------------------------------------------------------------------------------------
# im2col / col2im on arrays
# ---------------------------------------------------------------------------------------------


def _offset_slices(i: int, j: int, blocks: tuple, d: tuple, s: tuple) -> tuple:
    """The strided slices of the padded image that kernel offset (i, j) reads in every block."""
    top, left = i * d[0], j * d[1]
    return (
        slice(None),
        slice(None),
        slice(top, top + s[0] * (blocks[0] - 1) + 1, s[0]),
        slice(left, left + s[1] * (blocks[1] - 1) + 1, s[1]),
    )


def im2col(x, k: tuple, d: tuple, p: tuple, s: tuple, strided: bool = True):
    """``x`` ``(N, C, H, W)`` as its blocks ``(N, C * kh * kw, L)`` (see the module docstring); the
    caller has checked that there is at least one block each way. ``strided``: read a NumPy array
    through one strided view (else one slice copy per kernel offset, as for other arrays)."""
    n, c, h, w = x.shape
    blocks = _blocks((h, w), k, d, p, s)
    backend = backends.backend_of(x, op="unfold")
    if p[0] or p[1]:
        padded = backend.zeros((n, c, h + 2 * p[0], w + 2 * p[1]), x.dtype)
        padded[:, :, p[0] : p[0] + h, p[1] : p[1] + w] = x
    else:
        padded = x
    shape = (n, c, k[0], k[1], blocks[0], blocks[1])
    if strided and type(padded) is np.ndarray:
        sn, sc, sh, sw = padded.strides
        view = np.lib.stride_tricks.as_strided(
            padded, shape, (sn, sc, d[0] * sh, d[1] * sw, s[0] * sh, s[1] * sw), writeable=False
        )
        return np.ascontiguousarray(view).reshape(n, c * k[0] * k[1], blocks[0] * blocks[1])
    out = backend.empty(shape, x.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            out[:, :, i, j] = padded[_offset_slices(i, j, blocks, d, s)]
    return out.reshape(n, c * k[0] * k[1], blocks[0] * blocks[1])


def col2im(cols, size: tuple, k: tuple, d: tuple, p: tuple, s: tuple):
    """The blocks ``cols`` ``(N, C * kh * kw, L)`` summed into an image ``(N, C, H, W)``, ``size``
    = (H, W); the caller has checked that L is the number of blocks."""
    n = cols.shape[0]
    c = cols.shape[1] // (k[0] * k[1])
    h, w = size
    blocks = _blocks(size, k, d, p, s)
    backend = backends.backend_of(cols, op="fold")
    out = backend.zeros((n, c, h + 2 * p[0], w + 2 * p[1]), cols.dtype)
    cols = cols.reshape(n, c, k[0], k[1], blocks[0], blocks[1])
    # One addition per kernel offset, in PyTorch's order; within one offset the blocks' positions
    # are distinct, so a slice addition sums every overlap.
    for i in range(k[0]):
        for j in range(k[1]):
            out[_offset_slices(i, j, blocks, d, s)] += cols[:, :, i, j]
    if p[0] or p[1]:
        out = backend.ascontiguousarray(out[:, :, p[0] : p[0] + h, p[1] : p[1] + w])
    return out


class Im2Col(Function):
    """``unfold`` of a 4-D array; the gradient is ``col2im``."""

    @staticmethod
    def forward(ctx, x, window):
        ctx.size = x.shape[2:]
        ctx.window = window
        return im2col(x, *window)

    @staticmethod
    def backward(ctx, g):
        return col2im(g, ctx.size, *ctx.window)

    @staticmethod
    def backward_graph(ctx, io, g):
        return _fold_pair(g, ctx.size, ctx.window, transposed=False)


class Col2Im(Function):
    """``fold`` of a 3-D array; the gradient is ``im2col``."""

    @staticmethod
    def forward(ctx, x, size, window):
        ctx.size = size
        ctx.window = window
        return col2im(x, size, *window)

    @staticmethod
    def backward(ctx, g):
        return im2col(g, *ctx.window)

    @staticmethod
    def backward_graph(ctx, io, g):
        return _fold_pair(g, ctx.size, ctx.window, transposed=True)


def _fold_pair(g, size: tuple, window: tuple, transposed: bool):
    """The create_graph gradient of Im2Col (col2im of ``g``) or, ``transposed``, of Col2Im (im2col of
    ``g``): each map's transpose is the other."""
    maps = (lambda a: col2im(a, size, *window), lambda a: im2col(a, *window))
    return LinearBackward.apply(g, *(maps[::-1] if transposed else maps))


# ---------------------------------------------------------------------------------------------
# unfold / fold
# ---------------------------------------------------------------------------------------------


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """The sliding blocks of ``input`` ``(N, C, H, W)`` or ``(C, H, W)`` as columns: ``(N, C *
    kh * kw, L)`` or ``(C * kh * kw, L)`` (torch.nn.functional.unfold, im2col)."""
    op = "unfold"
    x = _tensor(input, "input", op)
    k, d, p, s = _window(op, kernel_size, dilation, padding, stride)
    if x.ndim not in (3, 4) or 0 in x.shape[-3:]:
        raise ValueError(
            f"{op}: expected input to be 3-D (C, H, W) or 4-D (N, C, H, W) (with possibly 0 batch size) "
            f"and non-zero dimensions but the batch, got shape {tuple(x.shape)}"
        )
    size = x.shape[-2:]
    blocks = _blocks(size, k, d, p, s)
    if min(blocks) < 1:
        raise ValueError(
            f"{op}: given input with spatial size {tuple(size)}, kernel_size={k}, dilation={d}, padding={p}, "
            f"calculated shape of the array of sliding blocks as {blocks}, but its components must be at least one"
        )
    batched = x.ndim == 4
    out = Im2Col.apply(x if batched else x.unsqueeze(0), (k, d, p, s))
    return out if batched else out.squeeze(0)


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """The columns ``input`` ``(N, C * kh * kw, L)`` or ``(C * kh * kw, L)`` of unfold summed back
    into ``(N, C, H, W)`` or ``(C, H, W)``, ``output_size`` = (H, W), overlapping blocks adding up
    (torch.nn.functional.fold, col2im)."""
    op = "fold"
    x = _tensor(input, "input", op)
    size = _ints(output_size, 2, "output_size", op)
    k, d, p, s = _window(op, kernel_size, dilation, padding, stride)
    if x.ndim not in (2, 3) or 0 in x.shape[-2:]:
        raise ValueError(
            f"{op}: expected input to be 2-D (C * kh * kw, L) or 3-D (N, C * kh * kw, L) (with possibly 0 batch "
            f"size) and non-zero dimensions but the batch, got shape {tuple(x.shape)}"
        )
    planes, length = x.shape[-2:]
    if planes % (k[0] * k[1]):
        raise ValueError(
            f"{op}: expected the size of input's dimension {x.ndim - 2} to be divisible by the product of "
            f"kernel_size, but got input.size({x.ndim - 2})={planes} and kernel_size={k}"
        )
    blocks = _blocks(size, k, d, p, s)
    where = f"given output_size={size}, kernel_size={k}, dilation={d}, padding={p}, stride={s}"
    if length != blocks[0] * blocks[1]:
        raise ValueError(
            f"{op}: {where}, expected the size of input's last dimension to match the calculated number of "
            f"sliding blocks {blocks[0]} * {blocks[1]} = {blocks[0] * blocks[1]}, but got input.size(-1)={length}"
        )
    if min(blocks) < 1:
        raise ValueError(
            f"{op}: {where}, calculated shape of the array of sliding blocks as {blocks}, which is too small "
            "(non-positive)"
        )
    if min(size) < 1:
        raise ValueError(f"{op}: expected output_size to be positive, but got output_size={size}")
    batched = x.ndim == 3
    out = Col2Im.apply(x if batched else x.unsqueeze(0), size, (k, d, p, s))
    return out if batched else out.squeeze(0)


# ---------------------------------------------------------------------------------------------
# max_unpool1d, max_unpool2d, max_unpool3d
# ---------------------------------------------------------------------------------------------


class MaxUnpool(Function):
    """``x`` ``(P, L)`` (planes, values) put at ``indices`` ``(P, L)`` of zero planes of ``area``
    elements; the gradient gathers from those positions. Arrays of another device go through host
    memory."""

    @staticmethod
    def forward(ctx, x, indices, area):
        ctx.save_for_backward(indices)
        host_x, host_indices = _host(x), _host(indices)
        out = np.zeros((x.shape[0], area), x.dtype)
        out[np.arange(x.shape[0])[:, None], host_indices] = host_x
        return out if host_x is x else backends.to_device(out, backends.device_of(x))

    @staticmethod
    def backward(ctx, g):
        (indices,) = ctx.saved_tensors
        return _unpool_gather(g, indices)

    @staticmethod
    def backward_graph(ctx, io, g):
        (indices,) = ctx.saved_tensors
        area = g.shape[1]

        def scatter(a):  # the gather's transpose: a repeated index sums its values
            host_a = _host(a)
            out = np.zeros((a.shape[0], area), a.dtype)
            np.add.at(out, (np.arange(a.shape[0])[:, None], _host(indices)), host_a)
            return out if host_a is a else backends.to_device(out, backends.device_of(a))

        return LinearBackward.apply(g, lambda a: _unpool_gather(a, indices), scatter)


def _unpool_gather(g, indices):
    """MaxUnpool's gradient: each plane of ``g`` read at ``indices``."""
    host_g = _host(g)
    gathered = np.take_along_axis(host_g, _host(indices), axis=1)
    return gathered if host_g is g else backends.to_device(gathered, backends.device_of(g))


def _host(a) -> np.ndarray:
    """``a`` in host memory (itself when it is a NumPy array)."""
    return a if type(a) is np.ndarray else backends.backend_of(a, op="max_unpool").to_cpu(a)


def _unpool_output_size(op: str, shape: tuple, k: tuple, s: tuple, p: tuple, output_size) -> tuple:
    """PyTorch's ``_unpool_output_size``: the default ``(size - 1) * stride + kernel - 2 * padding`` per
    spatial dimension, or ``output_size`` (those sizes, or with the batch and channels first) within a
    stride of it."""
    n = len(k)
    default = tuple((shape[a - n] - 1) * s[a] + k[a] - 2 * p[a] for a in range(n))
    if output_size is None:
        return default
    if _is_int(output_size) or not hasattr(output_size, "__len__"):
        raise TypeError(f"{op}: output_size must be a sequence of {n} or {n + 2} ints, got {output_size!r}")
    size = tuple(output_size)
    if len(size) == n + 2:
        size = size[2:]
    if len(size) != n:
        raise ValueError(
            f"{op}: output_size should be a sequence containing {n} or {n + 2} elements, but it has a length of "
            f"{len(size)}"
        )
    if not all(_is_int(v) for v in size):
        raise TypeError(f"{op}: output_size must be a sequence of ints, got {output_size!r}")
    size = tuple(int(v) for v in size)
    for a in range(n):
        low, high = default[a] - s[a], default[a] + s[a]
        if not low < size[a] < high:
            raise ValueError(f"{op}: invalid output_size {size} (dim {a} must be between {low} and {high})")
    return size


def _max_unpool(op: str, dims: int, input, indices, kernel_size, stride, padding, output_size):
    """The values of ``input`` ``(N, C, *spatial)`` or ``(C, *spatial)`` (``dims`` spatial dimensions)
    put at the flat positions ``indices`` of zero outputs of ``output_size`` (by default the one
    max pooling with these arguments takes back to the input's size)."""
    x = _tensor(input, "input", op)
    k = _ints(kernel_size, dims, "kernel_size", op)
    s = k if stride is None else _ints(stride, dims, "stride", op)
    p = _ints(padding, dims, "padding", op)
    if min(k + s) < 1:
        raise ValueError(f"{op}: kernel_size and stride must be positive, got kernel_size={k} and stride={s}")
    idx = indices if isinstance(indices, Tensor) else Tensor._wrap(backends.as_array(indices))
    if idx.dtype != np.int64:
        raise TypeError(f"{op}: elements in indices should be type int64 but got: {idx.dtype}")
    if x.ndim not in (dims + 1, dims + 2):
        raise ValueError(
            f"{op}: input should be a {dims + 1}-D or {dims + 2}-D tensor, but got a tensor with {x.ndim} dimensions"
        )
    if tuple(idx.shape) != tuple(x.shape):
        raise ValueError(
            f"{op}: expected the shape of indices to be the same as that of the input tensor {tuple(x.shape)} "
            f"but got indices of shape {tuple(idx.shape)}"
        )
    for a in range(x.ndim - dims - 1, x.ndim):
        if x.shape[a] == 0:
            raise ValueError(
                f"{op}: expected input to have non-zero size for non-batch dimensions, but got {tuple(x.shape)} "
                f"with dimension {a} being empty"
            )
    size = _unpool_output_size(op, tuple(x.shape), k, s, p, output_size)
    if min(size) < 0:
        raise ValueError(f"{op}: output_size must contain non-negative spatial dimensions, got {size}")
    area, length = int(np.prod(size)), int(np.prod(x.shape[-dims:]))
    flat = idx._array.reshape(-1, length)
    if flat.size:
        host = _host(flat)
        low, high = int(host.min()), int(host.max())
        if low < 0 or high >= area:
            raise RuntimeError(
                f"{op}: found an invalid max index: {low if low < 0 else high} (output volumes are of size "
                f"{'x'.join(map(str, size))})"
            )
    out = MaxUnpool.apply(x.reshape(-1, length), flat, area)
    return out.reshape(*x.shape[:-dims], *size)


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of max_pool1d: ``input`` ``(N, C, L)`` or ``(C, L)`` put at the positions
    ``indices`` (max_pool1d's ``return_indices=True``) of zero rows of ``output_size`` (default
    ``(L - 1) * stride - 2 * padding + kernel_size``) (torch.nn.functional.max_unpool1d)."""
    return _max_unpool("max_unpool1d", 1, input, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of max_pool2d: ``input`` ``(N, C, H, W)`` or ``(C, H, W)`` put at the
    flat positions ``indices`` (max_pool2d's ``return_indices=True``, int64, ``input``'s shape) of
    zero planes ``output_size`` (default ``(H - 1) * stride - 2 * padding + kernel_size``)
    (torch.nn.functional.max_unpool2d)."""
    return _max_unpool("max_unpool2d", 2, input, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of max_pool3d: ``input`` ``(N, C, D, H, W)`` or ``(C, D, H, W)`` put at the
    flat (D * H * W) positions ``indices`` (max_pool3d's ``return_indices=True``) of zero volumes of
    ``output_size`` (torch.nn.functional.max_unpool3d)."""
    return _max_unpool("max_unpool3d", 3, input, indices, kernel_size, stride, padding, output_size)
