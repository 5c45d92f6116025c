"""3-D pooling (``torch.nn.functional``'s ``max_pool3d``, ``avg_pool3d``, ``adaptive_avg_pool3d``,
``adaptive_max_pool3d``) on the 2-D pooling kernels: a window of depth x height x width is a depth
run of 2-D windows, so each depth plane of ``(N, C, D, H, W)`` is pooled over height and width by
the 2-D op (``N x C*D`` planes), and the depth runs are then gathered (an index array into the
depth-padded planes: ``-inf`` for the max, zeros for the mean) and reduced. The mean's divisor is a
product of one count per dimension (PyTorch's rules for ``count_include_pad``, ``ceil_mode`` and
``divisor_override`` factor so), the max's index is the 2-D op's index in the chosen plane. The
gradients flow back through the reduction, the gather and the 2-D ops' own backward."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backends
from ..ops.pool import pool_output_size
from ..tensor import Tensor

__all__ = ["max_pool3d", "avg_pool3d", "adaptive_avg_pool3d", "adaptive_max_pool3d"]

_NCDHW = "4-D (C, D, H, W) or 5-D (N, C, D, H, W)"


def _input(input, op: str):
    """``input`` as a 5-D float Tensor and whether it came unbatched."""
    from .functional import _check_floating

    x = input if isinstance(input, Tensor) else Tensor._wrap(backends.as_array(input))
    _check_floating(op, x)
    if x.ndim not in (4, 5):
        raise ValueError(f"{op}: input must be {_NCDHW}, got shape {tuple(x.shape)}")
    if 0 in x.shape[-4:]:
        raise ValueError(
            f"{op}: input must have non-zero sizes but for the batch dimension, got shape {tuple(x.shape)}"
        )
    return (x.unsqueeze(0), True) if x.ndim == 4 else (x, False)


def _triple(value, name: str, op: str) -> tuple:
    """An int or a 1- or 3-sequence of ints as a 3-tuple; ValueError naming ``op`` and ``name`` otherwise."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{op}: {name} must be an int or a tuple of 3 ints, got {value!r}")
    return tuple(int(v) for v in values)


def _window(op: str, shape: tuple, kernel_size, stride, padding, dilation, ceil_mode) -> list:
    """Per dimension (depth, height, width): (kernel, stride, padding, dilation, output size), with
    PyTorch's checks (positive sizes, padding at most half the kernel, a non-empty output)."""
    kernel = _triple(kernel_size, "kernel_size", op)
    empty = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    stride = kernel if empty else _triple(stride, "stride", op)
    padding, dilation = _triple(padding, "padding", op), _triple(dilation, "dilation", op)
    for name, value in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        if min(value) < 1:
            raise ValueError(f"{op}: {name} must be positive, got {value}")
    if min(padding) < 0 or any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(
            f"{op}: padding must be between 0 and half of kernel_size, got padding={padding} and kernel_size={kernel}"
        )
    out = [
        pool_output_size(n, k, s, p, d, bool(ceil_mode))
        for n, k, s, p, d in zip(shape[-3:], kernel, stride, padding, dilation)
    ]
    if min(out) < 1:
        raise ValueError(
            f"{op}: the output would be empty: input {tuple(shape)} gives output size {tuple(out)} with "
            f"kernel_size={kernel}, stride={stride}, padding={padding}, dilation={dilation}, "
            f"ceil_mode={bool(ceil_mode)}"
        )
    return list(zip(kernel, stride, padding, dilation, out))


def _depth_runs(depth: int, kernel: int, stride: int, padding: int, dilation: int, out: int):
    """(index (out, kernel) into the depth planes padded by ``padding`` in front, the padding needed
    behind so that every index is in range)."""
    index = np.arange(out)[:, None] * stride + np.arange(kernel)[None, :] * dilation
    return index, max(int(index.max()) + 1 - depth - padding, 0)


def _planes(x):
    """(N, C, D, H, W) as N x C*D planes of H x W for the 2-D ops."""
    n, c, d, h, w = x.shape
    return x.reshape(n, c * d, h, w)


def _max_over_runs(planes, plane_index, index, front: int, back: int, shape: tuple, return_indices: bool):
    """The max over the depth runs ``index`` of the 2-D pooled ``planes`` (N, C, D, H', W'), whose
    2-D flat indices are ``plane_index``; with ``return_indices`` also the flat D*H*W positions."""
    from . import functional as F

    padded = F.pad(planes, [0, 0, 0, 0, front, back], value=-math.inf)
    values, choice = padded[:, :, index].max(dim=3)  # runs: (N, C, D_out, kernel, H', W')
    if not return_indices:
        return values
    depth = np.take(index, np.arange(index.shape[0])[:, None, None] * index.shape[1] + choice.numpy()) - front
    depth = np.clip(depth, 0, shape[2] - 1)  # a pad chosen (a window of -inf inputs): its first input
    within = np.take_along_axis(plane_index.numpy(), depth, axis=2)
    return values, Tensor._wrap(backends.to_device(depth * (shape[3] * shape[4]) + within, planes.device))


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over each window of input ``(N, C, D, H, W)`` or ``(C, D, H, W)``; with
    ``return_indices`` also the int64 flat (D*H*W) positions of the first largest element of each
    window (PyTorch's)."""
    op = "max_pool3d"
    x, unbatched = _input(input, op)
    (kd, sd, pd, dd, od), *hw = _window(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    from . import functional as F

    planes, plane_index = F.max_pool2d(
        _planes(x), *[tuple(v) for v in list(zip(*hw))[:4]], ceil_mode=ceil_mode, return_indices=True
    )
    n, c, d = x.shape[:3]
    planes = planes.reshape(n, c, d, *planes.shape[-2:])
    plane_index = plane_index.reshape(planes.shape)
    index, back = _depth_runs(d, kd, sd, pd, dd, od)
    out = _max_over_runs(planes, plane_index, index, pd, back, x.shape, return_indices)
    return _unbatch(out, unbatched)


def adaptive_max_pool3d(input, output_size, return_indices=False):
    """Max over PyTorch's adaptive windows giving ``output_size`` (an int or a triple; None keeps
    that size) of input ``(N, C, D, H, W)`` or ``(C, D, H, W)``: output plane ``i`` of ``D_out``
    takes input planes ``floor(i * D / D_out)`` to ``ceil((i + 1) * D / D_out)``, rows and columns
    likewise (functional._adaptive_windows); ``return_indices`` as max_pool3d's."""
    op = "adaptive_max_pool3d"
    x, unbatched = _input(input, op)
    size = _adaptive_size(output_size, x.shape, op)
    from . import functional as F

    planes, plane_index = F.adaptive_max_pool2d(_planes(x), size[1:], return_indices=True)
    n, c, d = x.shape[:3]
    planes = planes.reshape(n, c, d, *planes.shape[-2:])
    plane_index = plane_index.reshape(planes.shape)
    index = F._adaptive_windows(d, size[0])  # narrower runs repeat their last plane: no other max
    out = _max_over_runs(planes, plane_index, index, 0, 0, x.shape, return_indices)
    return _unbatch(out, unbatched)


def avg_pool3d(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    """Mean over each window of input ``(N, C, D, H, W)`` or ``(C, D, H, W)``, divided as PyTorch's:
    by ``divisor_override`` when given, else by the window's size clipped to the padded input
    (``count_include_pad``) or to the input."""
    op = "avg_pool3d"
    x, unbatched = _input(input, op)
    if divisor_override is not None and (
        isinstance(divisor_override, bool)
        or not isinstance(divisor_override, numbers.Integral)
        or divisor_override == 0
    ):
        raise ValueError(f"{op}: divisor_override must be a non-zero int, got {divisor_override!r}")
    (kd, sd, pd, _, od), *hw = _window(op, x.shape, kernel_size, stride, padding, 1, ceil_mode)
    from . import functional as F

    kernel, strides, pads = (tuple(v) for v in list(zip(*hw))[:3])
    # per plane: the H x W window's sum (divided by nothing), or its mean by PyTorch's rule for H, W
    planes = F.avg_pool2d(
        _planes(x), kernel, strides, pads, ceil_mode, count_include_pad, 1 if divisor_override else None
    )
    n, c, d = x.shape[:3]
    planes = planes.reshape(n, c, d, *planes.shape[-2:])
    index, back = _depth_runs(d, kd, sd, pd, 1, od)
    sums = F.pad(planes, [0, 0, 0, 0, pd, back])[:, :, index].sum(dim=3)
    if divisor_override:
        return _unbatch(sums / divisor_override, unbatched)
    starts = np.arange(od) * sd - pd
    ends = np.minimum(starts + kd, d + pd)
    counts = ends - starts if count_include_pad else np.minimum(ends, d) - np.maximum(starts, 0)
    counts = Tensor._wrap(backends.to_device(counts.astype(np.float64), x.device)).reshape(1, 1, od, 1, 1)
    return _unbatch(sums / counts.to(sums.dtype), unbatched)


def adaptive_avg_pool3d(input, output_size):
    """Mean over PyTorch's adaptive windows giving ``output_size`` (an int or a triple; None keeps
    that size) of input ``(N, C, D, H, W)`` or ``(C, D, H, W)`` (windows as adaptive_max_pool3d's)."""
    op = "adaptive_avg_pool3d"
    x, unbatched = _input(input, op)
    size = _adaptive_size(output_size, x.shape, op)
    from . import functional as F

    planes = F.adaptive_avg_pool2d(_planes(x), size[1:])
    n, c, d = x.shape[:3]
    planes = planes.reshape(n, c, d, *planes.shape[-2:])
    # each run's planes, summed and divided by their count: a run's repeated last index (a narrower
    # window) reads the zero plane behind (a weighted sum over all planes would carry a NaN or an
    # Inf of one window into the others, as 0 * NaN)
    index = F._adaptive_windows(d, size[0])
    repeated = np.zeros(index.shape, bool)
    repeated[:, 1:] = index[:, 1:] == index[:, :-1]
    sums = F.pad(planes, [0, 0, 0, 0, 0, 1])[:, :, np.where(repeated, d, index)].sum(dim=3)
    counts = backends.to_device((~repeated).sum(axis=1).astype(x.dtype), x.device).reshape(1, 1, -1, 1, 1)
    return _unbatch(sums / Tensor._wrap(counts), unbatched)


def _adaptive_size(output_size, shape, op: str) -> tuple:
    """``output_size`` (an int or a triple, None entries keeping the input's size) as a triple."""
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * 3
    if len(sizes) != 3:
        raise ValueError(f"{op}: output_size must be an int or a triple (D, H, W), got {output_size!r}")
    sizes = tuple(shape[-3 + i] if v is None else v for i, v in enumerate(sizes))
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in sizes):
        raise ValueError(f"{op}: output_size must be positive ints (or None), got {output_size!r}")
    return tuple(int(v) for v in sizes)


def _unbatch(out, unbatched):
    if not unbatched:
        return out
    if isinstance(out, tuple):
        return tuple(t.squeeze(0) for t in out)
    return out.squeeze(0)
