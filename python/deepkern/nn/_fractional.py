"""``fractional_max_pool2d`` and ``fractional_max_pool3d`` (``torch.nn.functional``'s, Graham's
fractional max pooling): max over windows of ``kernel_size`` whose starts along each spatial
dimension follow PyTorch's pseudo-random sequence, one per (sample, channel) plane, from a sample
``u`` in [0, 1): ``start[i] = int((i + u) * alpha) - int(u * alpha)`` with ``alpha = (size -
kernel) / (out - 1)`` (computed in the input's floating type, as PyTorch's kernel does) and the
last window ending at the edge. ``_random_samples`` (N, C, dims) gives the samples (for 2-D, [W, H]
per plane; for 3-D, [D, H, W]), else they are drawn from deepkern's generator. The window's first
largest element is taken (its last NaN, where it holds one); the gradient goes back to it."""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from .. import backends
from ..autograd import Function
from ..tensor import Tensor, rand

__all__ = [
    "fractional_max_pool2d",
    "fractional_max_pool3d",
    "fractional_max_pool2d_with_indices",
    "fractional_max_pool3d_with_indices",
]

#: Per number of spatial dimensions: which sample of a plane's each dimension's sequence takes (PyTorch's).
_SAMPLE_OF = {2: (1, 0), 3: (0, 1, 2)}


class FractionalMaxPool(Function):
    """Max over the windows ``windows`` (N, C, *out, K) of flat positions into the planes of ``x``
    (N, C, *spatial), and the chosen positions; the gradient is added at those positions."""

    @staticmethod
    def forward(ctx, x, windows, return_indices=False):
        from .functional import _first_max

        n, c = x.shape[:2]
        planes = x.reshape(n, c, math.prod(x.shape[2:]))
        chosen = windows.reshape(n, c, math.prod(windows.shape[2:]))
        gathered = np.take_along_axis(planes, chosen, axis=2).reshape(windows.shape)
        k = _first_max(gathered)[..., None]
        out = np.take_along_axis(gathered, k, axis=-1)[..., 0]
        indices = np.take_along_axis(windows, k, axis=-1)[..., 0]
        ctx.x_shape = x.shape
        ctx.save_for_backward(indices)
        if not return_indices:
            return out
        ctx.mark_non_differentiable(indices)
        return out, indices

    @staticmethod
    def backward(ctx, g, g_indices=None):
        from .functional import _scatter_add_planes

        (indices,) = ctx.saved_tensors
        return _scatter_add_planes(g, indices, ctx.x_shape, len(ctx.x_shape) - 2)

    @staticmethod
    def backward_graph(ctx, io, g, g_indices=None):
        from .functional import _max_pool_grad_graph, _scatter_add_planes

        (indices,) = ctx.saved_tensors
        x_shape, spatial = ctx.x_shape, len(ctx.x_shape) - 2
        scatter = functools.partial(_scatter_add_planes, indices=indices, x_shape=x_shape, spatial=spatial)
        return _max_pool_grad_graph(io, g, indices, x_shape, scatter, spatial)


def _starts(samples, size: int, out: int, pool: int, dtype) -> np.ndarray:
    """PyTorch's window starts along one dimension, per plane: ``samples`` (P,) gives (P, out)."""
    t = np.dtype(dtype).type
    starts = np.empty(samples.shape + (out,), np.int64)
    if out > 1:
        alpha = t(size - pool) / t(out - 1)
        steps = np.arange(out - 1).astype(dtype)[None, :]
        starts[:, :-1] = ((steps + samples[:, None]) * alpha).astype(np.int64) - (samples * alpha).astype(np.int64)[
            :, None
        ]
    if out > 0:
        starts[:, -1] = size - pool
    return starts


def _windows(starts: list, pools: tuple, sizes: tuple) -> np.ndarray:
    """The flat positions (P, *out, prod(pools)) of every window, row-major within a window, from the
    starts (P, out) along each dimension."""
    n, planes = len(starts), starts[0].shape[0]
    flat = np.zeros((planes,) + (1,) * (2 * n), np.int64)
    for a, (begin, pool) in enumerate(zip(starts, pools)):
        shape = [planes] + [1] * (2 * n)
        shape[1 + a], shape[1 + n + a] = begin.shape[1], pool
        positions = begin[:, :, None] + np.arange(pool)
        flat = flat + positions.reshape(shape) * math.prod(sizes[a + 1 :])
    return flat.reshape(planes, *(s.shape[1] for s in starts), math.prod(pools))


def _sizes(value, n: int, name: str, op: str, kind=numbers.Integral) -> tuple:
    """An int (a float for output_ratio) or a sequence of ``n`` as an ``n``-tuple."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(values) != n or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        what = "float" if kind is numbers.Real else "int"
        raise ValueError(f"{op}: {name} must either be a single {what} or a tuple of {n} {what}s, got {value!r}")
    return values


def _fractional_max_pool(op, dims, input, kernel_size, output_size, output_ratio, samples):
    """The output and the indices of fractional max pooling over ``dims`` spatial dimensions."""
    from .functional import _check_floating

    x = input if isinstance(input, Tensor) else Tensor._wrap(backends.as_array(input))
    _check_floating(op, x)
    if x.ndim not in (dims + 1, dims + 2):
        raise ValueError(f"{op}: expected a {dims + 1}-D or {dims + 2}-D input, got shape {tuple(x.shape)}")
    batched = x.ndim == dims + 2
    x = x if batched else x.unsqueeze(0)
    if 0 in x.shape[1:]:
        raise ValueError(
            f"{op}: expected input to have non-zero size for non-batch dimensions, got shape {tuple(input.shape)}"
        )
    pools = _sizes(kernel_size, dims, "kernel_size", op)
    if min(pools) < 1:
        raise ValueError(f"{op}: kernel_size must be positive, got {pools}")
    n, c, *sizes = x.shape
    if output_size is None:
        if output_ratio is None:
            raise ValueError(f"{op} requires specifying either an output_size or an output_ratio")
        ratios = _sizes(output_ratio, dims, "output_ratio", op, numbers.Real)
        output_size = tuple(int(size * r) for size, r in zip(sizes, ratios))
    outs = _sizes(output_size, dims, "output_size", op)
    if min(outs) < 0:
        raise ValueError(f"{op}: output_size must be non-negative, got {outs}")
    names = ("height", "width") if dims == 2 else ("time", "height", "width")
    for name, out, pool, size in zip(names, outs, pools, sizes):
        if not (out + pool - 1 <= size if dims == 2 else out + pool - 1 < size):  # PyTorch's bounds
            raise ValueError(f"{op}: pool {name} {pool} too large relative to input {name} {size} (output {out})")
    if samples is None:
        samples = rand(n, c, dims, dtype=x.dtype, device=x.device)
    _check_samples(op, samples, x, dims)
    host = backends.backend_of(samples._array, op=op).to_cpu(samples._array)[:n].reshape(n * c, dims)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
    starts = [_starts(host[:, _SAMPLE_OF[dims][a]], sizes[a], outs[a], pools[a], dtype) for a in range(dims)]
    windows = _windows(starts, pools, tuple(sizes)).reshape(n, c, *outs, math.prod(pools))
    out = FractionalMaxPool.apply(x, backends.to_device(windows, x.device), return_indices=True)
    return out if batched else tuple(t.squeeze(0) for t in out)


def _check_samples(op: str, samples, x, dims: int) -> None:
    """``_random_samples`` as PyTorch checks it: x's dtype, (at least N, C, dims)."""
    if not isinstance(samples, Tensor):
        raise TypeError(f"{op}: _random_samples must be a Tensor, got {type(samples).__name__}")
    if samples.dtype != x.dtype:
        raise TypeError(f"{op}: _random_samples must have the input's dtype {x.dtype}, got {samples.dtype}")
    n, c = x.shape[:2]
    if samples.ndim != 3 or samples.shape[0] < n or samples.shape[1:] != (c, dims):
        raise ValueError(
            f"{op}: _random_samples must have shape (N, C, {dims}) with N at least the input's batch {n} and C its "
            f"{c} channels, got {tuple(samples.shape)}"
        )


def fractional_max_pool2d_with_indices(
    input, kernel_size, output_size=None, output_ratio=None, return_indices=False, _random_samples=None
):
    """Fractional max pooling of ``(N, C, H, W)`` or ``(C, H, W)`` input to ``output_size`` (or
    ``output_ratio`` of the input's size): the output and the flat (H * W) positions taken."""
    return _fractional_max_pool(
        "fractional_max_pool2d", 2, input, kernel_size, output_size, output_ratio, _random_samples
    )


def fractional_max_pool3d_with_indices(
    input, kernel_size, output_size=None, output_ratio=None, return_indices=False, _random_samples=None
):
    """Fractional max pooling of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input: the output and the flat
    (D * H * W) positions taken."""
    return _fractional_max_pool(
        "fractional_max_pool3d", 3, input, kernel_size, output_size, output_ratio, _random_samples
    )


def fractional_max_pool2d(
    input, kernel_size, output_size=None, output_ratio=None, return_indices=False, _random_samples=None
):
    """Fractional max pooling of ``(N, C, H, W)`` or ``(C, H, W)`` input (see the module's
    docstring); with ``return_indices`` also the flat (H * W) positions taken."""
    out = fractional_max_pool2d_with_indices(input, kernel_size, output_size, output_ratio, False, _random_samples)
    return out if return_indices else out[0]


def fractional_max_pool3d(
    input, kernel_size, output_size=None, output_ratio=None, return_indices=False, _random_samples=None
):
    """Fractional max pooling of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input; with
    ``return_indices`` also the flat (D * H * W) positions taken."""
    out = fractional_max_pool3d_with_indices(input, kernel_size, output_size, output_ratio, False, _random_samples)
    return out if return_indices else out[0]
