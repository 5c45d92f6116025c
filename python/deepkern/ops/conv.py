"""2-D convolution: ``conv2d`` and ``conv2d_backward`` with PyTorch's semantics.

NCHW activations, (K, C/groups, R, S) weights. The kernels (csrc/cpu/conv) run the convolution as
blocked GEMMs over chunks of im2col columns; inputs that are not C-contiguous are copied once.
"""

from __future__ import annotations

import numpy as np

from ..backends import backend_of
from ._validate import as_float_array, check_index


def _pair(value, name: str, op: str, minimum: int) -> tuple:
    """An int or a pair of ints, each >= minimum, as a pair."""
    values = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return check_index(int(values[0]), name, op), check_index(int(values[1]), name, op)


class _Geometry:
    """Validated shapes and options of one convolution (what the kernels receive)."""

    def __init__(self, op, x, w, stride, padding, dilation, groups):
        if x.ndim not in (3, 4):
            raise ValueError(f"{op}: x must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}")
        if w.ndim != 4:
            raise ValueError(f"{op}: w must be 4-D (K, C/groups, R, S), got shape {w.shape}")
        if x.dtype != w.dtype:
            raise TypeError(f"{op}: x and w must have the same dtype, got {x.dtype} and {w.dtype}")
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"{op}: groups must be an int >= 1, got {groups!r}")
        self.unbatched = x.ndim == 3
        n, c, h, width = (1,) + x.shape if self.unbatched else x.shape
        k, c_per_group, r, s = w.shape
        if c % groups or k % groups:
            raise ValueError(
                f"{op}: groups={groups} must divide the input channels C={c} (x {x.shape}) and the "
                f"output channels K={k} (w {w.shape})"
            )
        if c_per_group * groups != c:
            raise ValueError(
                f"{op}: x has C={c} channels but w {w.shape} expects C/groups={c_per_group} with "
                f"groups={groups}, i.e. C={c_per_group * groups}"
            )
        self.stride = _pair(stride, "stride", op, 1)
        self.dilation = _pair(dilation, "dilation", op, 1)
        spans = (self.dilation[0] * (r - 1), self.dilation[1] * (s - 1))
        if isinstance(padding, str):
            if padding == "valid":
                pad_begin = pad_end = (0, 0)
            elif padding == "same":
                if self.stride != (1, 1):
                    raise ValueError(f"{op}: padding='same' needs stride 1, got stride={stride!r}")
                pad_begin = (spans[0] // 2, spans[1] // 2)  # PyTorch puts the odd one at the end
                pad_end = (spans[0] - pad_begin[0], spans[1] - pad_begin[1])
            else:
                raise ValueError(f"{op}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        else:
            pad_begin = pad_end = _pair(padding, "padding", op, 0)
        self.padding = pad_begin
        out_h = (h + pad_begin[0] + pad_end[0] - spans[0] - 1) // self.stride[0] + 1
        out_w = (width + pad_begin[1] + pad_end[1] - spans[1] - 1) // self.stride[1] + 1
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"{op}: output size ({out_h}, {out_w}) is not positive: input {h}x{width}, kernel {r}x{s}, "
                f"stride {self.stride}, padding {padding!r}, dilation {self.dilation}"
            )
        self.groups = int(groups)
        self.x_shape = (n, c, h, width)
        self.out_shape = (n, k, out_h, out_w)

    def options(self):
        return self.stride, self.padding, self.dilation, self.groups

    def batched(self, arr):
        return arr[None] if self.unbatched else arr

    def unbatch(self, arr):
        return arr[0] if self.unbatched else arr


def _bias(b, k: int, dtype, op: str):
    if b is None:
        return None
    b = as_float_array(b, "b", op)
    if b.shape != (k,):
        raise ValueError(f"{op}: b must have shape ({k},) (one per output channel), got {b.shape}")
    if b.dtype != dtype:
        raise TypeError(f"{op}: b must have dtype {dtype}, got {b.dtype}")
    return b


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch) of x (N, C, H, W) or (C, H, W) with
    w (K, C/groups, R, S), plus b (K,) if given.

    ``stride``, ``dilation``: int or pair, >= 1; ``padding``: int or pair >= 0, or ``'same'``
    (stride 1; odd total padding puts the extra row/column at the end) or ``'valid'`` (no padding);
    ``groups`` divides C and K (``groups == C`` is a depthwise convolution).
    Returns (N, K, P, Q), or (K, P, Q) for an unbatched x.
    """
    x = as_float_array(x, "x", "conv2d")
    w = as_float_array(w, "w", "conv2d")
    geo = _Geometry("conv2d", x, w, stride, padding, dilation, groups)
    bias = _bias(b, w.shape[0], x.dtype, "conv2d")
    backend = backend_of(x, w, bias, op="conv2d")
    contiguous = backend.ascontiguousarray
    y = backend.empty(geo.out_shape, x.dtype)
    backend.conv2d_forward(
        contiguous(geo.batched(x)), contiguous(w), None if bias is None else contiguous(bias), y, *geo.options()
    )
    return geo.unbatch(y)


def conv2d_backward(grad_out, x, w, *, stride=1, padding=0, dilation=1, groups=1, needs=(True, True, True)):
    """Gradients of ``conv2d(x, w, b, ...)`` given ``grad_out`` (the gradient of its output).

    Returns ``(grad_x, grad_w, grad_b)``; each is computed only when the matching flag of
    ``needs`` is true, and is None otherwise. ``grad_b`` is ``grad_out`` summed over N, P and Q.
    """
    x = as_float_array(x, "x", "conv2d_backward")
    w = as_float_array(w, "w", "conv2d_backward")
    grad_out = as_float_array(grad_out, "grad_out", "conv2d_backward")
    geo = _Geometry("conv2d_backward", x, w, stride, padding, dilation, groups)
    if len(tuple(needs)) != 3:
        raise ValueError(f"conv2d_backward: needs must be three bools (x, w, b), got {needs!r}")
    need_x, need_w, need_b = (bool(v) for v in needs)
    expected = geo.out_shape[1:] if geo.unbatched else geo.out_shape
    if grad_out.shape != expected:
        raise ValueError(
            f"conv2d_backward: grad_out must have the output's shape {expected} (x {x.shape}, w {w.shape}), "
            f"got {grad_out.shape}"
        )
    if grad_out.dtype != x.dtype:
        raise TypeError(f"conv2d_backward: grad_out must have dtype {x.dtype}, got {grad_out.dtype}")
    backend = backend_of(grad_out, x, w, op="conv2d_backward")
    contiguous = backend.ascontiguousarray
    dy = contiguous(geo.batched(grad_out))
    grad_x = grad_w = grad_b = None
    if need_x:
        grad_x = backend.empty(geo.x_shape, x.dtype)
        backend.conv2d_backward_data(dy, contiguous(w), grad_x, *geo.options())
        grad_x = geo.unbatch(grad_x)
    if need_w or need_b:
        grad_b = backend.empty(w.shape[0], x.dtype) if need_b else None
        if need_w:
            grad_w = backend.empty(w.shape, x.dtype)
            backend.conv2d_backward_weight(dy, contiguous(geo.batched(x)), grad_w, grad_b, *geo.options())
        else:
            grad_b[...] = dy.sum(axis=(0, 2, 3))
    return grad_x, grad_w, grad_b
