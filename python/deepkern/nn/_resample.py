"""``pad`` and ``interpolate`` (``torch.nn.functional``'s): each output element of the
reflect/replicate/circular pads and of the nearest/linear/cubic resizes is a weighted sum of at most
four input elements along each spatial axis, so both are one Function, :class:`AxisResample`, that maps
one axis at a time by index arrays (gathers forward, scatter-adds backward). The constant pad is
a copy into a filled array (:class:`ConstantPad`). The index arrays are computed in host memory
with PyTorch's formulas (in the input's floating type, as its kernels do) and moved to the
input's device."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backends
from ..autograd import Function
from ..tensor import Tensor
from ..tensor_ops import LinearBackward

__all__ = ["pad", "interpolate"]


def _array(x):
    return x._array if isinstance(x, Tensor) else backends.as_array(x)


class AxisResample(Function):
    """``plan`` is a list of ``(axis, input size, taps)``, applied in order; each tap is
    ``(index, weight)`` (arrays over the output positions along ``axis``; weight None for 1):
    ``out[.., j, ..] = sum over taps of weight[j] * in[.., index[j], ..]``."""

    @staticmethod
    def forward(ctx, x, plan):
        ctx.plan = plan
        return _gather(x, plan)

    @staticmethod
    def backward(ctx, g):
        return _scatter(g, ctx.plan)

    @staticmethod
    def backward_graph(ctx, io, g):
        plan = ctx.plan
        return LinearBackward.apply(g, lambda a: _scatter(a, plan), lambda a: _gather(a, plan))


def _gather(x, plan):
    """AxisResample's map: the weighted gathers of ``plan`` along its axes, in order."""
    for axis, _, taps in plan:
        out = None
        for index, weight in taps:
            part = np.take_along_axis(x, _along(index, axis, x.ndim), axis=axis)
            if weight is not None:
                part = part * _along(weight, axis, x.ndim)
            out = part if out is None else out + part
        x = out
    return x


def _scatter(g, plan):
    """The transpose of :func:`_gather`: the weighted scatter-adds, the axes in reverse order."""
    for axis, size, taps in reversed(plan):
        shape = g.shape[:axis] + (size,) + g.shape[axis + 1 :]
        grad = backends.backend_of(g, op="AxisResampleBackward").zeros(shape, g.dtype)
        key = (slice(None),) * axis
        for index, weight in taps:
            np.add.at(grad, key + (index,), g if weight is None else g * _along(weight, axis, g.ndim))
        g = grad
    return g


def _along(values, axis: int, ndim: int):
    """A 1-D array shaped to broadcast along ``axis`` of an ``ndim``-dimensional array."""
    return values.reshape((1,) * axis + (-1,) + (1,) * (ndim - axis - 1))


def _resample(input, plan):
    """``AxisResample`` with ``plan``'s host arrays moved to ``input``'s device."""
    device = backends.device_of(_array(input))
    moved = [
        (
            axis,
            size,
            [(backends.to_device(i, device), None if w is None else backends.to_device(w, device)) for i, w in taps],
        )
        for axis, size, taps in plan
    ]
    return AxisResample.apply(input, moved)


# ---------------------------------------------------------------------------------------------
# pad
# ---------------------------------------------------------------------------------------------


class ConstantPad(Function):
    """Pads (or, for negative amounts, crops) every axis by ``(before, after)`` in ``widths``
    with ``value``."""

    @staticmethod
    def forward(ctx, x, widths, value=0):
        shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, widths))
        src = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for n, (lo, hi) in zip(x.shape, widths))
        dst = tuple(slice(max(lo, 0), m - max(hi, 0)) for m, (lo, hi) in zip(shape, widths))
        ctx.meta = (x.shape, src, dst)
        return _place(x, shape, src, dst, value, "pad")

    @staticmethod
    def backward(ctx, g):
        shape, src, dst = ctx.meta
        return _place(g, shape, dst, src, None, "ConstantPadBackward")

    @staticmethod
    def backward_graph(ctx, io, g):
        shape, src, dst = ctx.meta
        out_shape = tuple(g.shape)
        return LinearBackward.apply(
            g,
            lambda a: _place(a, shape, dst, src, None, "ConstantPadBackward"),
            lambda a: _place(a, out_shape, src, dst, None, "pad"),  # the crop's transpose pads with zeros
        )


def _place(a, shape, src, dst, value, op: str):
    """An array of ``shape`` filled with ``value`` (None: zeros) holding ``a[src]`` at ``dst``."""
    backend = backends.backend_of(a, op=op)
    out = backend.zeros(shape, a.dtype) if value is None else backend.full(shape, value, a.dtype)
    out[dst] = a[src]
    return out


def _pad_index(mode: str, n: int, lo: int, hi: int) -> np.ndarray:
    """The input position of each output position along an axis of ``n`` padded by (lo, hi) (a
    negative amount crops)."""
    j = np.arange(-lo, n + hi)
    if mode == "replicate":
        return np.clip(j, 0, n - 1)
    if mode == "circular":  # the crops first, then the padding wraps around what is left, as PyTorch's
        kept = n + min(lo, 0) + min(hi, 0)
        return max(-lo, 0) + np.arange(-max(lo, 0), kept + max(hi, 0)) % max(kept, 1)
    j = np.abs(j)  # reflect: about the first and the last element
    return np.where(j > n - 1, 2 * (n - 1) - j, j)


def pad(input, pad, mode="constant", value=None):
    """Pads ``input`` (torch.nn.functional.pad): ``pad`` = (left, right) for the last dimension,
    then (top, bottom) for the one before, and so on. ``mode`` 'constant' (fills with ``value``,
    default 0; any number of dimensions; negative amounts crop), or 'reflect' (mirrors without
    repeating the edge), 'replicate' (repeats the edge) or 'circular' (wraps around) for the last
    1, 2 or 3 dimensions of an input with one or two more (batch and channel); negative amounts crop
    in every mode, as PyTorch's (circular: the crops first)."""
    x = _array(input)
    if not (isinstance(pad, (tuple, list)) and all(isinstance(v, numbers.Integral) for v in pad)):
        raise TypeError(f"pad: pad must be a tuple of ints, got {pad!r}")
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(
            f"pad: pad {tuple(pad)} must have an even length of at most twice the input's {x.ndim} dimensions"
        )
    pairs = [(int(pad[2 * k]), int(pad[2 * k + 1])) for k in range(len(pad) // 2)]  # last axis first
    if mode == "constant":
        widths = [(0, 0)] * (x.ndim - len(pairs)) + pairs[::-1]
        if any(n + lo + hi < 0 for n, (lo, hi) in zip(x.shape, widths)):
            raise ValueError(f"pad: pad {tuple(pad)} crops more than the input's shape {x.shape} holds")
        return ConstantPad.apply(input, widths, value=0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}")
    if value is not None:
        raise ValueError(f"pad: padding mode {mode!r} doesn't take in a value argument")
    k = len(pairs)
    if not 1 <= k <= 3 or x.ndim not in (k + 1, k + 2):
        raise ValueError(
            f"pad: {mode} padding of {k} dimension(s) (pad {tuple(pad)}) needs an input of {k + 1} or {k + 2} "
            f"dimensions (1 to 3 padded), got shape {x.shape}"
        )
    plan = []
    for d, (lo, hi) in enumerate(pairs):
        axis = x.ndim - 1 - d
        n = x.shape[axis]
        # the largest padding: reflect's must be below the size, circular's at most what the crops leave
        largest = {"reflect": n - 1, "replicate": math.inf, "circular": n + min(lo, 0) + min(hi, 0)}[mode]
        if max(lo, hi) > largest:
            raise ValueError(
                f"pad: {mode} padding ({lo}, {hi}) of dimension {axis} (size {n}) must be at most {largest}"
                + (" (it would wrap around more than once)" if mode == "circular" else "")
            )
        if n + lo + hi < 0 or n == 0:
            raise ValueError(
                f"pad: {mode} padding ({lo}, {hi}) of dimension {axis} (size {n}) gives an output of size "
                f"{n + lo + hi}; the input is too small"
            )
        plan.append((axis, n, [(_pad_index(mode, n, lo, hi), None)]))
    return _resample(input, plan)


# ---------------------------------------------------------------------------------------------
# interpolate
# ---------------------------------------------------------------------------------------------

_LINEAR_MODES = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}
_NEAREST_MODES = ("nearest", "nearest-exact")


def _nearest_taps(n_in: int, n_out: int, scale, image: bool):
    """PyTorch's nearest source index: floor(j * s) (in float32) with s = 1 / scale_factor when
    given, else n_in / n_out; clamped to n_in - 1. For images (4-D input, ``image``) PyTorch's kernel
    copies an axis whose size is kept and repeats each element of one doubled, whatever the scale
    factor; its 3-D and 5-D kernels do not."""
    j = np.arange(n_out)
    if image and n_out == n_in:
        return [(j, None)]
    if image and n_out == 2 * n_in:
        return [(j >> 1, None)]
    s = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
    return [(np.minimum(np.floor(j.astype(np.float32) * s).astype(np.int64), n_in - 1), None)]


def _nearest_exact_taps(n_in: int, n_out: int, scale):
    """PyTorch's nearest-exact source index: floor((j + 0.5) * s) (in float32), s as for nearest,
    clamped to n_in - 1: the input pixel whose centre is nearest the output pixel's."""
    j = np.arange(n_out)
    s = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
    return [(np.minimum(np.floor((j.astype(np.float32) + np.float32(0.5)) * s).astype(np.int64), n_in - 1), None)]


def _source_positions(n_in: int, n_out: int, scale, align_corners: bool, dtype):
    """PyTorch's source position of each output position, computed in ``dtype``: ``j * (n_in - 1) /
    (n_out - 1)`` with ``align_corners``, else ``(j + 0.5) / scale_factor - 0.5`` (n_in / n_out without
    a scale factor); the linear modes clamp it at 0, the cubic one does not."""
    t = np.dtype(dtype).type
    j = np.arange(n_out).astype(dtype)
    if align_corners:
        return (t(n_in - 1) / t(n_out - 1) if n_out > 1 else t(0)) * j
    return (t(1.0 / scale) if scale else t(n_in) / t(n_out)) * (j + t(0.5)) - t(0.5)


def _cubic_taps(n_in: int, n_out: int, scale, align_corners: bool, dtype):
    """The four neighbours i0 - 1 .. i0 + 2 (clamped to the axis) of each source position (not
    clamped at 0), weighted by PyTorch's cubic convolution kernel (A = -0.75) at their distances."""
    t = np.dtype(dtype).type
    if n_out == n_in and not align_corners:
        return [(np.arange(n_out), None)]
    src = _source_positions(n_in, n_out, scale, align_corners, dtype)
    i0 = np.floor(src).astype(np.int64)
    frac = (src - i0.astype(dtype)).astype(dtype)
    a = t(-0.75)

    def near(d):  # the kernel for distances in [0, 1]
        return ((a + t(2)) * d - (a + t(3))) * d * d + t(1)

    def far(d):  # for distances in [1, 2]
        return ((a * d - t(5) * a) * d + t(8) * a) * d - t(4) * a

    weights = (far(frac + t(1)), near(frac), near(t(1) - frac), far(t(2) - frac))
    return [(np.clip(i0 + k, 0, n_in - 1), w.astype(dtype)) for k, w in zip((-1, 0, 1, 2), weights)]


def _linear_taps(n_in: int, n_out: int, scale, align_corners: bool, dtype):
    """The two neighbours of each source position (clamped at 0) and their linear weights."""
    t = np.dtype(dtype).type
    if n_out == n_in:
        return [(np.arange(n_out), None)]
    src = _source_positions(n_in, n_out, scale, align_corners, dtype)
    if not align_corners:
        src = np.maximum(src, t(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam1 = np.clip(src - i0.astype(dtype), t(0), t(1)).astype(dtype)
    i1 = i0 + (i0 < n_in - 1)
    return [(i0, (t(1) - lam1).astype(dtype)), (i1, lam1)]


#: An array's element count must stay below this (NumPy's limit; np.arange of more is empty).
_MAX_ELEMENTS = 2**62


def _size_of(value, size) -> int:
    """One entry of interpolate's ``size``: an int (a bool or a float is refused, as by PyTorch)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"interpolate: size must be an int or a sequence of ints, got {size!r}")
    return int(value)


def _spatial(what: str, value, dims: int, x_shape) -> list:
    """``value`` (a number or a sequence of ``dims``) as a list of ``dims`` values."""
    values = list(value) if isinstance(value, (tuple, list)) else [value] * dims
    if len(values) != dims:
        raise ValueError(
            f"interpolate: {what} {tuple(values)} has {len(values)} values, but input of shape {x_shape} has "
            f"{dims} spatial dimension(s)"
        )
    return values


def interpolate(
    input,
    size=None,
    scale_factor=None,
    mode="nearest",
    align_corners=None,
    recompute_scale_factor=None,
    antialias=False,
):
    """Resizes the spatial dimensions (all after the first two) of ``input``
    (torch.nn.functional.interpolate) to ``size`` or by ``scale_factor`` (output size
    floor(in * scale_factor); the source positions use the scale factor itself unless
    ``recompute_scale_factor``). ``mode``: 'nearest' or 'nearest-exact' (3-D to 5-D input; the
    latter takes the source pixel whose centre is nearest), 'linear' (3-D), 'bilinear' (4-D),
    'bicubic' (4-D; PyTorch's cubic convolution, A = -0.75, the neighbours clamped at the borders) or
    'trilinear' (5-D), with ``align_corners`` (default False) mapping the corner pixels' centres onto
    each other; 'area' (3-D, 4-D) is adaptive average pooling to the output size."""
    x = _array(input)
    if mode not in _NEAREST_MODES and mode not in _LINEAR_MODES and mode != "area":
        raise ValueError(
            "interpolate: mode must be 'nearest', 'nearest-exact', 'linear', 'bilinear', 'bicubic', 'trilinear' "
            f"or 'area', got {mode!r}"
        )
    if antialias:
        raise ValueError("interpolate: antialias=True is not supported")
    if (mode in _NEAREST_MODES or mode == "area") and align_corners is not None:
        raise ValueError(
            "interpolate: align_corners option can only be set with the interpolating modes: linear | bilinear | "
            "bicubic | trilinear"
        )
    if mode == "area" and x.ndim not in (3, 4):
        raise ValueError(f"interpolate: mode 'area' needs 3-D or 4-D input, got shape {x.shape}")
    wanted = _LINEAR_MODES.get(mode)
    if (wanted is None and x.ndim not in (3, 4, 5)) or (wanted is not None and x.ndim != wanted):
        expected = "3-D, 4-D or 5-D" if wanted is None else f"{wanted}-D"
        raise ValueError(f"interpolate: mode {mode!r} needs {expected} input, got shape {x.shape}")
    if wanted is not None and x.dtype.kind != "f":
        raise TypeError(f"interpolate: mode {mode!r} needs a floating-point input, got dtype {x.dtype}")
    dims = x.ndim - 2
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: exactly one of size or scale_factor should be defined")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("interpolate: recompute_scale_factor is not meaningful with an explicit size")
        out_sizes, scales = [_size_of(v, size) for v in _spatial("size", size, dims, x.shape)], [None] * dims
    else:
        scales = [float(v) for v in _spatial("scale_factor", scale_factor, dims, x.shape)]
        if any(not s > 0 for s in scales):
            raise ValueError(f"interpolate: scale_factor must be positive, got {scale_factor!r}")
        out_sizes = [math.floor(n * s) for n, s in zip(x.shape[2:], scales)]
        if recompute_scale_factor:
            scales = [None] * dims
    if any(n <= 0 for n in out_sizes + list(x.shape[2:])):
        raise ValueError(
            f"interpolate: input and output sizes should be greater than 0, got input of shape {x.shape} "
            f"and output size {tuple(out_sizes)}"
        )
    if math.prod(x.shape[:2]) * math.prod(out_sizes) >= _MAX_ELEMENTS:
        raise ValueError(f"interpolate: output size {tuple(out_sizes)} is too large for input of shape {x.shape}")
    if mode == "area":
        from .functional import adaptive_avg_pool1d, adaptive_avg_pool2d

        return (adaptive_avg_pool1d if dims == 1 else adaptive_avg_pool2d)(input, tuple(out_sizes))
    plan = []
    for axis in reversed(range(2, x.ndim)):  # the last axis first, as PyTorch's weights nest
        n_in, n_out, scale = x.shape[axis], out_sizes[axis - 2], scales[axis - 2]
        if mode == "nearest":
            taps = _nearest_taps(n_in, n_out, scale, x.ndim == 4)
        elif mode == "nearest-exact":
            taps = _nearest_exact_taps(n_in, n_out, scale)
        elif mode == "bicubic":
            taps = _cubic_taps(n_in, n_out, scale, bool(align_corners), x.dtype)
        else:
            taps = _linear_taps(n_in, n_out, scale, bool(align_corners), x.dtype)
        plan.append((axis, n_in, taps))
    return _resample(input, plan)
