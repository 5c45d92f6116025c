"""``deepkern.nn.functional``: the layers' computations as functions on Tensors, with PyTorch's
names, arguments and defaults (``torch.nn.functional``).

Each op is one Function (forward plus backward on NumPy arrays, see autograd.py); the heavy ones
call the deepkern kernels: ``linear`` the GEMM with bias (and optionally ReLU) fused in its
epilogue, ``conv2d`` the convolution and its backward, the pooling ops theirs. Arguments may be
Tensors or NumPy arrays; results are Tensors. ``inplace=True`` is accepted for PyTorch
compatibility and computes out of place (the returned value is the same); the in-place forms
(``relu_``, ``elu_``, ...) write into their input Tensor, recorded as PyTorch records them.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

from .. import autograd, backends, ops
from .. import tensor_ops as _T
from ..autograd import Function
from ..ops import conv as _conv_ops
from ..ops import pool as _pool_ops
from ..ops._validate import is_bfloat16, is_floating_dtype
from ..ops.dropout import counters as _dropout_counters
from ..random import philox_seed_offset
from ..tensor import Tensor, _wrap_dim, as_tensor, through_float32

__all__ = [
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "relu",
    "leaky_relu",
    "silu",
    "elu",
    "softplus",
    "prelu",
    "hardtanh",
    "relu6",
    "hardsigmoid",
    "hardswish",
    "logsigmoid",
    "softsign",
    "tanhshrink",
    "mish",
    "tanh",
    "sigmoid",
    "gelu",
    "softmax",
    "log_softmax",
    "softmin",
    "selu",
    "celu",
    "glu",
    "softshrink",
    "hardshrink",
    "threshold",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "scaled_dot_product_attention",
    "batch_norm",
    "layer_norm",
    "group_norm",
    "instance_norm",
    "rms_norm",
    "embedding",
    "flatten",
    "pixel_shuffle",
    "pixel_unshuffle",
    "unfold",
    "fold",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "affine_grid",
    "embedding_bag",
    "ctc_loss",
    "grid_sample",
    "one_hot",
    "pad",
    "interpolate",
    "normalize",
    "cosine_similarity",
]


def _array(x):
    return x._array if isinstance(x, Tensor) else x


def _recorded_on_input(io, grad):
    """``grad`` (forward argument 0's gradient, a Tensor) recorded as a function of that argument too,
    with a zero derivative there: a gradient that depends on the input only through constant masks or
    positions is recorded on it anyway by PyTorch (differentiating it again gives zeros, not an error)."""
    return _T.MaskedGradient.apply(grad, io.placeholder(0, grad), 1.0)


# ---------------------------------------------------------------------------------------------
# Linear and convolution: the GEMM and convolution kernels
# ---------------------------------------------------------------------------------------------


class Linear(Function):
    """``x @ weight.T + bias`` (then ReLU when ``relu``) in one GEMM with a fused epilogue."""

    @staticmethod
    def forward(ctx, x, weight, bias=None, relu=False):
        out = ops.linear(x, weight, bias, relu=relu)
        need_x, need_w = ctx.needs_input_grad[:2]  # x only for the weight's gradient, weight for x's
        ctx.x_shape = np.shape(x)
        ctx.save_for_backward(x if need_w else None, weight if need_x else None, out if relu else None)
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight, out = ctx.saved_tensors
        if out is not None:  # through the fused ReLU
            g = g * (out > 0)
        g2 = g.reshape(-1, g.shape[-1])
        need_x, need_w, need_b = ctx.needs_input_grad
        gx = ops.matmul(g2, weight).reshape(ctx.x_shape) if need_x else None
        gw = ops.gemm(g2, x.reshape(-1, x.shape[-1]), trans_a=True) if need_w else None
        gb = _column_sums(g2) if need_b else None
        return gx, gw, gb

    @staticmethod
    def backward_graph(ctx, io, g):
        x, weight, out = ctx.saved_tensors
        if out is not None:  # through the fused ReLU (a constant mask)
            g = g * (out > 0).astype(g.dtype)
        g2 = g.reshape(-1, g.shape[-1])
        need_x, need_w, need_b = ctx.needs_input_grad
        gx = (g2 @ io.input(1, weight)).reshape(ctx.x_shape) if need_x else None
        gw = g2.t() @ io.input(0, x).reshape(-1, x.shape[-1]) if need_w else None
        gb = g2.sum(0) if need_b else None
        return gx, gw, gb


def _column_sums(g):
    """``g.sum(axis=0)``; bfloat16 summed in float32 and rounded once, as PyTorch does (a bfloat16
    running sum would lose the small terms)."""
    if g.dtype.name == "bfloat16":
        return g.astype(np.float32).sum(axis=0).astype(g.dtype)
    return g.sum(axis=0)


def linear(input, weight, bias=None, relu=False):
    """``input @ weight.T + bias`` for input ``(..., in_features)`` and weight
    ``(out_features, in_features)``; ``relu=True`` applies ReLU in the same kernel pass."""
    return Linear.apply(input, weight, bias, relu=relu)


class Conv2d(Function):
    """``ops.<op>`` (``op``: the class's, conv2d here) forward, ``ops.<op>_backward`` backward."""

    op = "conv2d"

    @classmethod
    def forward(cls, ctx, x, weight, bias=None, **options):
        ctx.save_for_backward(x, weight)
        ctx.options = options
        return getattr(ops, cls.op)(x, weight, bias, **options)

    @classmethod
    def backward(cls, ctx, g):
        x, weight = ctx.saved_tensors
        return getattr(ops, cls.op + "_backward")(g, x, weight, needs=ctx.needs_input_grad, **ctx.options)

    @staticmethod
    def backward_graph(ctx, io, g):
        """The gradients as differentiable ops on the zero-padded input: x's by the transposed
        convolution of g, cropped to x; w's by convolving the input's channels with g's (stride and
        dilation trade places), one group at a time, cropped to the kernel; b's by summing g."""
        x, weight = ctx.saved_tensors
        geo = _conv_ops._Geometry("conv2d", x.shape, x.dtype, weight, **ctx.options)
        need_x, need_w, need_b = ctx.needs_input_grad
        xt, wt = io.input(0, x), io.input(1, weight)
        if geo.unbatched:
            xt, g = xt.unsqueeze(0), g.unsqueeze(0)
        (h, width), (r, s) = xt.shape[-2:], wt.shape[-2:]
        spans = [d * (k - 1) for d, k in zip(geo.dilation, (r, s))]
        begins, ends = geo.padding, geo.padding_end  # 'same' may pad one more at the end
        padded = [n + b + e for n, b, e in zip((h, width), begins, ends)]
        gx = gw = gb = None
        if need_x:
            # rows past the last window get no gradient: output_padding reaches the padded size
            extra = [n - ((o - 1) * st + t + 1) for n, o, st, t in zip(padded, g.shape[-2:], geo.stride, spans)]
            full = conv_transpose2d(g, wt, None, geo.stride, 0, tuple(extra), geo.groups, geo.dilation)
            gx = full[:, :, begins[0] : begins[0] + h, begins[1] : begins[1] + width]
            gx = gx.squeeze(0) if geo.unbatched else gx
        if need_w:
            xp = pad(xt, [begins[1], ends[1], begins[0], ends[0]]) if padded != [h, width] else xt
            gw = _conv2d_weight_grad(xp, g, (r, s), geo)
        if need_b:
            gb = g.sum((0, 2, 3))
        return gx, gw, gb


def _conv2d_weight_grad(padded_input, grad_out, kernel, geo):
    """The weight gradient of a convolution (geometry ``geo``) of the zero-padded input
    ``padded_input`` whose output's gradient is ``grad_out``, as differentiable ops: each group's
    input channels convolved with its output channels' gradients (stride and dilation trading
    places), cropped to ``kernel``."""
    c_group, k_group = padded_input.shape[1] // geo.groups, grad_out.shape[1] // geo.groups
    parts = []
    for group in range(geo.groups):
        xs = padded_input[:, group * c_group : (group + 1) * c_group].transpose(0, 1)
        gs = grad_out[:, group * k_group : (group + 1) * k_group].transpose(0, 1)
        parts.append(conv2d(xs, gs, None, geo.dilation, 0, geo.stride)[:, :, : kernel[0], : kernel[1]].transpose(0, 1))
    return parts[0] if len(parts) == 1 else _T.Cat.apply(*parts, dim=0)


class ConvTranspose2d(Conv2d):
    op = "conv_transpose2d"

    @staticmethod
    def backward_graph(ctx, io, g):
        """The transposed convolution is the data gradient of a convolution (``ops.conv._transposed``)
        taking g's shape to x's: x's gradient is that convolution of g (cropped to x), w's its weight
        gradient with x as the output's gradient, b's the sum of g."""
        x, weight = ctx.saved_tensors
        geo = _conv_ops._transposed("conv_transpose2d", x, weight, **_transposed_options(ctx.options))
        need_x, need_w, need_b = ctx.needs_input_grad
        xt, wt = io.input(0, x), io.input(1, weight)
        if geo.unbatched:
            xt, g = xt.unsqueeze(0), g.unsqueeze(0)
        (h, width), (r, s) = xt.shape[-2:], wt.shape[-2:]
        gx = gw = gb = None
        if need_x:
            gx = conv2d(g, wt, None, geo.stride, geo.padding, geo.dilation, geo.groups)[:, :, :h, :width]
            gx = gx.squeeze(0) if geo.unbatched else gx
        if need_w:
            # the convolution's input is g padded by `padding`; x, fitted to its output, is the output's gradient
            fitted = pad(xt, [0, geo.out_shape[3] - width, 0, geo.out_shape[2] - h])
            padded = pad(g, [geo.padding[1], geo.padding[1], geo.padding[0], geo.padding[0]])
            gw = _conv2d_weight_grad(padded, fitted, (r, s), geo)
        if need_b:
            gb = g.sum((0, 2, 3))
        return gx, gw, gb


def _transposed_options(options: dict) -> dict:
    """A transposed convolution's keyword options with PyTorch's defaults filled in."""
    defaults = {"stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "dilation": 1}
    return {**defaults, **options}


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution of input ``(N, C, H, W)`` or ``(C, H, W)`` with weight
    ``(K, C/groups, R, S)`` (``padding`` may also be ``'same'`` or ``'valid'``)."""
    return Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution of input ``(N, C, H, W)`` or ``(C, H, W)`` with weight
    ``(C, K/groups, R, S)`` (see ``deepkern.ops.conv_transpose2d`` for the output size)."""
    return ConvTranspose2d.apply(
        input,
        weight,
        bias,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )


# 1-D convolutions and pooling run the 2-D ops on (N, C, 1, L) views of their inputs (no copies);
# their int-or-1-tuple arguments become (height, L) pairs with the neutral height value.


def _unsqueezed(value, name: str, op: str, ndims: tuple, expected: str):
    """``value`` as a Tensor with a height axis of 1 inserted before its last one."""
    t = value if isinstance(value, Tensor) else Tensor._wrap(backends.as_array(value))
    if t.ndim not in ndims:
        raise ValueError(f"{op}: {name} must be {expected}, got shape {tuple(t.shape)}")
    return t.unsqueeze(-2)


def _single(value, name: str, op: str, height):
    """A 1-D op's int or 1-tuple argument as the (height, value) pair of its 2-D form (None and
    strings, e.g. padding='same', pass through)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{op}: {name} must be an int or a 1-tuple, got {tuple(value)!r}")
        value = value[0]
    return (height, value)


def _as_1d(op: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on the height-1 views, its results without the height axis and its
    errors named after the 1-D op."""
    try:
        out = fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{op}: {err}") from None
    return tuple(o.squeeze(-2) for o in out) if isinstance(out, tuple) else out.squeeze(-2)


_NCL = "3-D (N, C, L) or 2-D (C, L)"


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of input ``(N, C, L)`` or ``(C, L)`` with weight ``(K, C/groups, R)``
    (``padding`` may also be ``'same'`` or ``'valid'``)."""
    op = "conv1d"
    x = _unsqueezed(input, "input", op, (2, 3), _NCL)
    w = _unsqueezed(weight, "weight", op, (3,), "3-D (K, C/groups, R)")
    stride, padding = _single(stride, "stride", op, 1), _single(padding, "padding", op, 0)
    return _as_1d(op, conv2d, x, w, bias, stride, padding, _single(dilation, "dilation", op, 1), groups)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """1-D transposed convolution of input ``(N, C, L)`` or ``(C, L)`` with weight ``(C, K/groups, R)``."""
    op = "conv_transpose1d"
    x = _unsqueezed(input, "input", op, (2, 3), _NCL)
    w = _unsqueezed(weight, "weight", op, (3,), "3-D (C, K/groups, R)")
    stride, padding = _single(stride, "stride", op, 1), _single(padding, "padding", op, 0)
    output_padding, dilation = _single(output_padding, "output_padding", op, 0), _single(dilation, "dilation", op, 1)
    return _as_1d(op, conv_transpose2d, x, w, bias, stride, padding, output_padding, groups, dilation)


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, return_indices=False, **window):
        out, indices = ops.max_pool2d(x, return_indices=True, **window)
        ctx.x_shape = x.shape
        ctx.save_for_backward(indices)
        if not return_indices:
            return out
        ctx.mark_non_differentiable(indices)
        return out, indices

    @staticmethod
    def backward(ctx, g, g_indices=None):
        (indices,) = ctx.saved_tensors
        return ops.max_pool2d_backward(g, ctx.x_shape, indices)

    @staticmethod
    def backward_graph(ctx, io, g, g_indices=None):
        (indices,) = ctx.saved_tensors
        x_shape = ctx.x_shape
        return _max_pool_grad_graph(io, g, indices, x_shape, lambda a: ops.max_pool2d_backward(a, x_shape, indices))


def _max_pool_grad_graph(io, g, indices, x_shape, scatter, spatial: int = 2):
    """create_graph=True's gradient of a max pooling whose backward ``scatter`` adds g at the flat
    (H*W, or D*H*W with ``spatial`` 3) positions ``indices`` of the planes of ``x_shape``: a linear map
    of g, whose transpose gathers from those positions, recorded on the input as PyTorch's."""
    gather = functools.partial(_gather_planes, indices=indices, x_shape=x_shape, spatial=spatial)
    return _recorded_on_input(io, _T.LinearBackward.apply(g, scatter, gather))


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over each window; with ``return_indices`` also the int64 flat (H*W) positions."""
    return MaxPool2d.apply(
        input,
        return_indices=return_indices,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
    )


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, **window):
        ctx.x_shape = x.shape
        ctx.window = window
        return ops.avg_pool2d(x, **window)

    @staticmethod
    def backward(ctx, g):
        return ops.avg_pool2d_backward(g, ctx.x_shape, **ctx.window)

    @staticmethod
    def backward_graph(ctx, io, g):
        x_shape, window = ctx.x_shape, ctx.window
        return _T.LinearBackward.apply(
            g, lambda a: ops.avg_pool2d_backward(a, x_shape, **window), lambda a: ops.avg_pool2d(a, **window)
        )


def avg_pool2d(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    """Mean over each window (divisor: see ``deepkern.ops.avg_pool2d``)."""
    return AvgPool2d.apply(
        input,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
    )


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over each window of input ``(N, C, L)`` or ``(C, L)``; with ``return_indices`` also
    the int64 positions along L."""
    op = "max_pool1d"
    x = _unsqueezed(input, "input", op, (2, 3), _NCL)
    kernel_size, stride = _single(kernel_size, "kernel_size", op, 1), _single(stride, "stride", op, 1)
    padding, dilation = _single(padding, "padding", op, 0), _single(dilation, "dilation", op, 1)
    return _as_1d(op, max_pool2d, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over each window of input ``(N, C, L)`` or ``(C, L)`` (the padding counted in the
    divisor when ``count_include_pad``)."""
    op = "avg_pool1d"
    x = _unsqueezed(input, "input", op, (2, 3), _NCL)
    kernel_size, stride = _single(kernel_size, "kernel_size", op, 1), _single(stride, "stride", op, 1)
    padding = _single(padding, "padding", op, 0)
    return _as_1d(op, avg_pool2d, x, kernel_size, stride, padding, ceil_mode, count_include_pad)


class AdaptiveAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, output_size):
        ctx.x_shape = x.shape
        return ops.adaptive_avg_pool2d(x, output_size)

    @staticmethod
    def backward(ctx, g):
        return ops.adaptive_avg_pool2d_backward(g, ctx.x_shape), None

    @staticmethod
    def backward_graph(ctx, io, g):
        x_shape, output_size = ctx.x_shape, tuple(g.shape[-2:])
        return _T.LinearBackward.apply(
            g,
            lambda a: ops.adaptive_avg_pool2d_backward(a, x_shape),
            lambda a: ops.adaptive_avg_pool2d(a, output_size),
        ), None


def adaptive_avg_pool2d(input, output_size):
    """Mean over PyTorch's adaptive windows giving ``output_size`` (int or pair; None keeps)."""
    return AdaptiveAvgPool2d.apply(input, output_size)


def _adaptive_windows(size: int, out: int):
    """PyTorch's adaptive windows along one axis: window ``i`` of ``out`` spans
    ``floor(i * size / out)`` to ``ceil((i + 1) * size / out)``; as an (out, k) index array, k the
    widest window, the narrower ones padded by repeating their last index (which changes no max and,
    the repeats coming after it, no first or last position)."""
    start = np.arange(out) * size // out
    stop = -(-(np.arange(out) + 1) * size // out)
    k = int((stop - start).max()) if out else 1
    return np.minimum(start[:, None] + np.arange(k), stop[:, None] - 1)


class AdaptiveMaxPool2d(Function):
    """Max over PyTorch's adaptive windows and its position (flat, H*W) per output element; the
    position is the first largest element in row-major order, or the last NaN where the window has
    one (so the output is NaN), as PyTorch's CPU kernel picks. The backward adds each output's
    gradient at its position (overlapping windows accumulate)."""

    @staticmethod
    def forward(ctx, x, output_size=(1, 1), return_indices=False):
        (oh, ow), (h, w) = output_size, x.shape[-2:]
        rows, cols = _adaptive_windows(h, oh), _adaptive_windows(w, ow)
        lead = x.shape[:-2]
        # (..., oh, ow, kh, kw): every window, gathered
        windows = x[..., rows[:, None, :, None], cols[None, :, None, :]]
        windows = windows.reshape(lead + (oh, ow, rows.shape[1] * cols.shape[1]))
        k = _first_max(windows)
        out = np.take_along_axis(windows, k[..., None], axis=-1)[..., 0]
        kw = cols.shape[1]
        indices = rows[np.arange(oh)[:, None], k // kw] * w + cols[np.arange(ow), k % kw]
        indices = indices.astype(np.int64, copy=False)
        ctx.x_shape = x.shape
        ctx.save_for_backward(indices)
        if not return_indices:
            return out
        ctx.mark_non_differentiable(indices)
        return out, indices

    @staticmethod
    def backward(ctx, g, g_indices=None):
        (indices,) = ctx.saved_tensors
        return _scatter_add_planes(g, indices, ctx.x_shape), None

    @staticmethod
    def backward_graph(ctx, io, g, g_indices=None):
        (indices,) = ctx.saved_tensors
        x_shape = ctx.x_shape
        return _max_pool_grad_graph(io, g, indices, x_shape, lambda a: _scatter_add_planes(a, indices, x_shape)), None


def _first_max(windows):
    """Per window (the last axis of ``windows``): the position of its first largest element, or of its
    last NaN where it has one, as PyTorch's CPU kernels pick (bfloat16 compared exactly, in float32)."""
    compared = windows.astype(np.float32) if is_bfloat16(windows.dtype) else windows
    nan = np.isnan(compared)
    last_nan = nan.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    return np.where(nan.any(axis=-1), last_nan, np.argmax(compared, axis=-1)) if windows.size else last_nan


def _scatter_add_planes(g, indices, x_shape, spatial: int = 2):
    """An array of ``x_shape`` (..., H, W), zero but for ``g`` (..., h, w) added at the flat H*W
    positions ``indices`` of each plane (repeats summed, in float64 then rounded once); with
    ``spatial`` 3, planes of D*H*W likewise."""
    planes, hw = int(np.prod(x_shape[:-spatial])), int(np.prod(x_shape[-spatial:]))
    per_plane = int(np.prod(g.shape[-spatial:]))
    flat = (np.arange(planes)[:, None] * hw + indices.reshape(planes, per_plane)).reshape(-1)
    summed = np.bincount(flat, weights=g.reshape(-1).astype(np.float64), minlength=planes * hw)
    return summed.astype(g.dtype).reshape(x_shape)


def _gather_planes(a, indices, x_shape, spatial: int = 2):
    """The transpose of :func:`_scatter_add_planes`: from each (H, W) plane of ``a`` (of ``x_shape``)
    the values at its flat positions ``indices`` (..., h, w); with ``spatial`` 3, planes of D*H*W."""
    planes, per_plane = int(np.prod(x_shape[:-spatial])), int(np.prod(indices.shape[-spatial:]))
    flat = a.reshape(planes, int(np.prod(x_shape[-spatial:])))
    return np.take_along_axis(flat, indices.reshape(planes, per_plane), axis=1).reshape(indices.shape)


def _adaptive_output_size(output_size, shape, op: str, dims: int) -> tuple:
    """``output_size`` of an adaptive 1-D (``dims`` 1: an int or a 1-tuple) or 2-D pooling (an int
    or a pair whose None entries keep the input's size) as an (H, W) pair for the 2-D op."""
    if dims == 2:
        return _pool_ops._adaptive_size(output_size, shape, op)
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 1:
            raise ValueError(f"{op}: output_size must be an int or a 1-tuple, got {tuple(output_size)!r}")
        output_size = output_size[0]
    if output_size is None:
        raise TypeError(f"{op}: output_size must be an int or a 1-tuple of ints, got None")
    return (1, _pool_ops._adaptive_size(output_size, shape, op)[1])


def _adaptive_input(input, op: str, dims: int):
    """``input`` as a Tensor of ``dims`` spatial dimensions, batched or not, with non-zero sizes
    but for the batch: a TypeError or ValueError naming ``op`` otherwise."""
    x = input if isinstance(input, Tensor) else Tensor._wrap(backends.as_array(input))
    _check_floating(op, x)
    ndims, expected = ((2, 3), _NCL) if dims == 1 else ((3, 4), "3-D (C, H, W) or 4-D (N, C, H, W)")
    if x.ndim not in ndims:
        raise ValueError(f"{op}: input must be {expected}, got shape {tuple(x.shape)}")
    if 0 in x.shape[x.ndim - dims - 1 :]:
        raise ValueError(
            f"{op}: input must have non-zero sizes but for the batch dimension, got shape {tuple(x.shape)}"
        )
    return x


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over PyTorch's adaptive windows giving ``output_size`` (an int or a pair; None keeps the
    input's size) of input ``(N, C, H, W)`` or ``(C, H, W)``: output row ``i`` of ``H_out`` takes
    input rows ``floor(i * H / H_out)`` to ``ceil((i + 1) * H / H_out)``, and columns likewise.
    With ``return_indices`` also the int64 flat (H*W) positions: the first largest element of each
    window, or its last NaN (a NaN output), as PyTorch's."""
    op = "adaptive_max_pool2d"
    x = _adaptive_input(input, op, 2)
    size = _adaptive_output_size(output_size, x.shape, op, 2)
    return AdaptiveMaxPool2d.apply(x, output_size=size, return_indices=return_indices)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """Max over PyTorch's adaptive windows giving ``output_size`` (an int or a 1-tuple) of input
    ``(N, C, L)`` or ``(C, L)``; with ``return_indices`` also the int64 positions along L (see
    adaptive_max_pool2d)."""
    op = "adaptive_max_pool1d"
    x = _adaptive_input(input, op, 1).unsqueeze(-2)
    return _as_1d(op, adaptive_max_pool2d, x, _adaptive_output_size(output_size, x.shape, op, 1), return_indices)


def adaptive_avg_pool1d(input, output_size):
    """Mean over PyTorch's adaptive windows giving ``output_size`` (an int or a 1-tuple) of input
    ``(N, C, L)`` or ``(C, L)``: output ``i`` of ``L_out`` averages inputs ``floor(i * L / L_out)``
    to ``ceil((i + 1) * L / L_out)``."""
    op = "adaptive_avg_pool1d"
    x = _adaptive_input(input, op, 1).unsqueeze(-2)
    return _as_1d(op, adaptive_avg_pool2d, x, _adaptive_output_size(output_size, x.shape, op, 1))


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------


def relu(input, inplace=False):
    return _T.Relu.apply(input)


def tanh(input):
    return _T.Tanh.apply(input)


@through_float32
def sigmoid(input):
    return _T.Sigmoid.apply(input)


class LeakyRelu(Function):
    """x where x > 0, else x * negative_slope: max(x, x * slope) on host arrays for a slope in (0, 1]
    (exact: the product never passes x on the wrong side; at slope 0, +inf * 0 would be NaN), else
    tensor_ops.select."""

    @staticmethod
    def forward(ctx, x, negative_slope=0.01):
        positive = x > 0
        ctx.save_for_backward(positive)
        ctx.slope = negative_slope
        if isinstance(x, np.ndarray) and 0 < negative_slope <= 1:
            out = np.multiply(x, x.dtype.type(negative_slope), out=np.empty_like(x))
            return np.maximum(x, out, out=out)
        return _T.select(positive, x, x * negative_slope)

    @staticmethod
    def backward(ctx, g):
        (positive,) = ctx.saved_tensors
        return _T.select(positive, g, g * ctx.slope)

    @staticmethod
    def backward_graph(ctx, io, g):
        (positive,) = ctx.saved_tensors
        return _T.MaskedGradient.apply(g, io.placeholder(0, g), np.where(positive, 1.0, ctx.slope).astype(g.dtype))


@through_float32
def leaky_relu(input, negative_slope=0.01, inplace=False):
    _check_floating("leaky_relu", input)
    return LeakyRelu.apply(input, negative_slope=negative_slope)


def _check_floating(op: str, input) -> None:
    """TypeError naming ``op`` unless ``input`` is a floating-point (bfloat16 included) tensor or array."""
    dtype = np.dtype(getattr(_array(input), "dtype", np.float64))
    if not is_floating_dtype(dtype):
        raise TypeError(f"{op}: input must be a floating-point tensor, got dtype {dtype}")


class Silu(Function):
    """``x * sigmoid(x)``; d/dx = s (1 + x (1 - s))."""

    @staticmethod
    def forward(ctx, x):
        s = _T.stable_sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        return g * (s * (1 + x * (1 - s)))

    @staticmethod
    def backward_graph(ctx, io, g):
        x, _ = ctx.saved_tensors
        xt = io.input(0, x)
        st = xt.sigmoid()
        return g * (st * (1 + xt * (1 - st)))


@through_float32
def silu(input, inplace=False):
    """SiLU (swish): ``input * sigmoid(input)``."""
    _check_floating("silu", input)
    return Silu.apply(input)


class Elu(Function):
    """``x`` where x > 0, ``alpha * (exp(x) - 1)`` elsewhere; d/dx = 1 or alpha * exp(x)."""

    @staticmethod
    def forward(ctx, x, alpha=1.0):
        positive = x > 0
        negative_part = alpha * np.expm1(np.minimum(x, 0))
        ctx.save_for_backward(positive, negative_part)
        ctx.alpha = alpha
        return _T.select(positive, x, negative_part).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        positive, negative_part = ctx.saved_tensors
        return _T.select(positive, g, g * (negative_part + ctx.alpha))

    @staticmethod
    def backward_graph(ctx, io, g):
        positive, negative_part = ctx.saved_tensors
        negative = np.abs(negative_part) > 0  # x < 0; at x = 0 (and NaN) the slope is a constant, as PyTorch's
        # the output where x < 0 (the rest is masked out): alpha (e^x - 1), whose derivative is out + alpha
        out = io.output(0, np.where(negative, negative_part, 0).astype(negative_part.dtype, copy=False))
        return g * _T.Where.apply(negative, out + ctx.alpha, np.where(positive, 1, negative_part + ctx.alpha))


@through_float32
def elu(input, alpha=1.0, inplace=False):
    """ELU: ``input`` where positive, ``alpha * (exp(input) - 1)`` elsewhere."""
    _check_floating("elu", input)
    return Elu.apply(input, alpha=float(alpha))


class Softplus(Function):
    """``log(1 + exp(beta x)) / beta``, and ``x`` itself where ``beta x > threshold`` (PyTorch's
    linear region); d/dx = sigmoid(beta x), 1 in the linear region."""

    @staticmethod
    def forward(ctx, x, beta=1.0, threshold=20.0):
        z = x * beta
        linear = z > threshold
        ctx.save_for_backward(x, linear)
        ctx.beta = beta
        soft = np.log1p(np.exp(np.minimum(z, threshold))) / beta
        return _T.select(linear, x, soft).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        x, linear = ctx.saved_tensors
        return _T.select(linear, g, g * _T.stable_sigmoid(x * ctx.beta))

    @staticmethod
    def backward_graph(ctx, io, g):
        x, linear = ctx.saved_tensors
        return _T.Where.apply(linear, g, g * (io.input(0, x) * ctx.beta).sigmoid())


@through_float32
def softplus(input, beta=1.0, threshold=20.0):
    """Softplus ``log(1 + exp(beta * input)) / beta``, linear where ``beta * input > threshold``."""
    _check_floating("softplus", input)
    if beta == 0:
        raise ValueError("softplus: beta must be non-zero, got 0")
    return Softplus.apply(input, beta=float(beta), threshold=float(threshold))


class Prelu(Function):
    """``x`` where x > 0, ``weight[c] * x`` elsewhere, ``c`` the channel (dimension 1; one weight
    for every element when the weight has one)."""

    @staticmethod
    def forward(ctx, x, weight):
        w = weight.reshape((1, -1) + (1,) * (x.ndim - 2)) if weight.size > 1 else weight.reshape(())
        positive = x > 0
        ctx.save_for_backward(x, w, positive)
        ctx.weight_shape = weight.shape
        return np.where(positive, x, w * x).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        x, w, positive = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad
        gx = np.where(positive, g, g * w) if need_x else None
        gw = None
        if need_w:
            gw = np.where(positive, 0, g * x)
            gw = gw.sum(axis=tuple(a for a in range(x.ndim) if a != 1)) if w.ndim else gw.sum()
            gw = gw.reshape(ctx.weight_shape)
        return gx, gw

    @staticmethod
    def backward_graph(ctx, io, g):
        """As backward, on Tensors; x's gradient, which depends on x only through the constant mask, is
        recorded on x, as PyTorch's."""
        x, w, positive = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad
        gx = gw = None
        if need_x:
            weight = io.input(1, w.reshape(ctx.weight_shape)).reshape(w.shape)
            gx = _recorded_on_input(io, _T.Where.apply(positive, g, g * weight))
        if need_w:
            gw = _T.Where.apply(positive, 0.0, g * io.input(0, x))
            gw = gw.sum(tuple(a for a in range(x.ndim) if a != 1)) if w.ndim else gw.sum()
            gw = gw.reshape(ctx.weight_shape)
        return gx, gw


@through_float32
def prelu(input, weight):
    """PReLU: ``input`` where positive, ``weight * input`` elsewhere, with one weight (any input)
    or one per channel (dimension 1 of an input of 2 or more dimensions)."""
    _check_floating("prelu", input)
    shape, wshape = np.shape(_array(input)), np.shape(_array(weight))
    if len(wshape) > 1:
        raise ValueError(f"prelu: weight must be 0-D or 1-D, got shape {wshape}")
    n = int(np.prod(wshape))
    if n != 1 and (len(shape) < 2 or n != shape[1]):
        channels = shape[1] if len(shape) >= 2 else 1
        raise ValueError(
            f"prelu: weight of shape {wshape} has {n} elements, expected 1 or the {channels} channel(s) "
            f"(dimension 1) of input of shape {shape}"
        )
    return Prelu.apply(input, weight)


class Hardtanh(Function):
    """``x`` clamped to [min_val, max_val]; the gradient passes strictly inside only (PyTorch)."""

    @staticmethod
    def forward(ctx, x, min_val=-1.0, max_val=1.0):
        ctx.save_for_backward((x > min_val) & (x < max_val))
        return np.clip(x, min_val, max_val).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved_tensors
        return g * inside

    @staticmethod
    def backward_graph(ctx, io, g):
        (inside,) = ctx.saved_tensors
        return _T.MaskedGradient.apply(g, io.placeholder(0, g), inside)


@through_float32
def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """``input`` clamped to [min_val, max_val] (which must satisfy min_val < max_val)."""
    _check_floating("hardtanh", input)
    if not min_val < max_val:
        raise ValueError(f"hardtanh: min_val must be less than max_val, got min_val={min_val}, max_val={max_val}")
    return Hardtanh.apply(input, min_val=float(min_val), max_val=float(max_val))


def relu6(input, inplace=False):
    """``input`` clamped to [0, 6] (MobileNet's activation): hardtanh(input, 0, 6)."""
    return hardtanh(input, 0.0, 6.0)


def hardsigmoid(input, inplace=False):
    """``relu6(input + 3) / 6``: 0 below -3, 1 above 3, linear between (gradient 1/6 strictly inside)."""
    _check_floating("hardsigmoid", input)
    return hardtanh(input + 3.0, 0.0, 6.0) / 6.0


class Hardswish(Function):
    """``x * relu6(x + 3) / 6`` (MobileNetV3); d/dx = 0 up to -3, (2x + 3) / 6 strictly between, 1 from
    3 on, as PyTorch's at the breakpoints too."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x * np.clip(x + 3, 0, 6) / 6).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * Hardswish.slope(x)

    @staticmethod
    def backward_graph(ctx, io, g):
        """The slope strictly between -3 and 3 as Tensor ops of x (the second derivative 1/3 there, 0
        elsewhere, at NaN too, as PyTorch's)."""
        (x,) = ctx.saved_tensors
        inside = (x > -3) & (x < 3)
        return g * _T.Where.apply(inside, (2 * io.input(0, x) + 3) / 6, Hardswish.slope(x))

    @staticmethod
    def slope(x):
        """d/dx of hardswish at ``x`` (an array)."""
        inner = _T.select(x < 3, (2 * x + 3) / 6, _T.select(x >= 3, 1, x))  # NaN stays NaN
        slope = _T.select(x <= -3, 0, inner)
        return slope.astype(x.dtype, copy=False)


@through_float32
def hardswish(input, inplace=False):
    """Hardswish: ``input * relu6(input + 3) / 6``."""
    _check_floating("hardswish", input)
    return Hardswish.apply(input)


class LogSigmoid(Function):
    """``log(sigmoid(x))`` as min(x, 0) - log1p(exp(-|x|)) (no overflow, exact far out); d/dx =
    sigmoid(-x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * _T.stable_sigmoid(-x)

    @staticmethod
    def backward_graph(ctx, io, g):
        (x,) = ctx.saved_tensors
        return g * (-io.input(0, x)).sigmoid()


@through_float32
def logsigmoid(input):
    """``log(sigmoid(input))``, exact for large negative inputs."""
    _check_floating("logsigmoid", input)
    return LogSigmoid.apply(input)


def softsign(input):
    """``input / (1 + |input|)``."""
    _check_floating("softsign", input)
    x = as_tensor(input)  # arrays too, as the other functions
    return x / (x.abs() + 1.0)


def tanhshrink(input):
    """``input - tanh(input)``."""
    _check_floating("tanhshrink", input)
    x = as_tensor(input)
    return x - x.tanh()


class Mish(Function):
    """``x * tanh(softplus(x))``; d/dx = t + x sigmoid(x) (1 - t^2), t = tanh(softplus(x))."""

    @staticmethod
    def forward(ctx, x):
        t = np.tanh(np.logaddexp(0, x)).astype(x.dtype, copy=False)
        ctx.save_for_backward(x, t)
        return x * t

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        return g * (t + x * _T.stable_sigmoid(x) * (1 - t * t))

    @staticmethod
    def backward_graph(ctx, io, g):
        """The derivative as Tensor ops, t = tanh(softplus(x)) (softplus's linear region above 20, as
        PyTorch's)."""
        x, _ = ctx.saved_tensors
        xt = io.input(0, x)
        t = Softplus.apply(xt).tanh()
        return g * (t + xt * xt.sigmoid() * (1 - t * t))


@through_float32
def mish(input, inplace=False):
    """Mish: ``input * tanh(softplus(input))``."""
    _check_floating("mish", input)
    return Mish.apply(input)


class Gelu(Function):
    """``x * Phi(x)`` (Phi the standard normal CDF), or PyTorch's tanh approximation, on the
    single-pass kernels of :mod:`deepkern.ops.activation`."""

    @staticmethod
    def forward(ctx, x, approximate="none"):
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        return ops.gelu(x, approximate=approximate)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return ops.gelu_backward(g, x, approximate=ctx.approximate)

    @staticmethod
    def backward_graph(ctx, io, g):
        """The derivative as Tensor ops: Phi(x) + x phi(x), or the tanh form's
        0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2), t = tanh(k (x + c x^3))."""
        (x,) = ctx.saved_tensors
        xt = io.input(0, x)
        if ctx.approximate == "tanh":
            k, c = float(np.sqrt(2 / np.pi)), 0.044715
            t = (k * (xt + c * xt * xt * xt)).tanh()
            slope = 0.5 * (1 + t) + 0.5 * xt * (1 - t * t) * k * (1 + 3 * c * xt * xt)
        else:
            slope = 0.5 * (1 + (xt * float(1 / np.sqrt(2))).erf()) + xt * (-0.5 * xt * xt).exp() * float(
                1 / np.sqrt(2 * np.pi)
            )
        return g * slope


def gelu(input, approximate="none"):
    """GELU, exact (erf) by default; ``approximate='tanh'`` for the tanh form."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(input, approximate=approximate)


def _softmax_dim(dim, ndim: int, op: str) -> int:
    if dim is None:  # PyTorch's legacy implicit choice
        dim = 0 if ndim in (0, 1, 3) else 1
    return _wrap_dim(dim, ndim, op)


class Softmax(Function):
    """softmax along ``dim`` (``log``: log_softmax) on the fused kernels of
    :mod:`deepkern.ops.softmax`; the backward reads the saved output."""

    @staticmethod
    def forward(ctx, x, dim=-1, log=False):
        out = (ops.log_softmax if log else ops.softmax)(x, dim)
        ctx.save_for_backward(out)
        ctx.meta = (dim, log)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        dim, log = ctx.meta
        return (ops.log_softmax_backward if log else ops.softmax_backward)(g, out, dim)

    @staticmethod
    def backward_graph(ctx, io, g):
        (out,) = ctx.saved_tensors
        dim, log = ctx.meta
        y = io.output(0, out)
        if log:
            return g - y.exp() * g.sum(dim, keepdim=True)
        return y * (g - (g * y).sum(dim, keepdim=True))


def _cast(input, dtype):
    if dtype is None:
        return input
    return input.to(dtype) if isinstance(input, Tensor) else backends.as_array(input).astype(dtype, copy=False)


def softmax(input, dim=None, dtype=None):
    """``exp(x) / sum(exp(x))`` along ``dim``, computed from ``x - max`` (no overflow)."""
    input = _cast(input, dtype)
    if _in_float32(input):
        return softmax(input.float(), dim).to(input.dtype)  # in float32, rounded once (as PyTorch)
    return Softmax.apply(input, dim=_softmax_dim(dim, np.ndim(_array(input)), "softmax"))


def _in_float32(input) -> bool:
    """Whether a softmax of ``input`` runs on its float32 copy: float16, or bfloat16 outside autocast
    (the kernels take float32 and float64)."""
    if not isinstance(input, Tensor):
        return False
    return input.dtype == np.float16 or (is_bfloat16(input.dtype) and not autograd.autocast_casts(Softmax))


def log_softmax(input, dim=None, dtype=None):
    """``x - logsumexp(x)`` along ``dim``, numerically stable."""
    input = _cast(input, dtype)
    if _in_float32(input):
        return log_softmax(input.float(), dim).to(input.dtype)  # in float32, rounded once (as PyTorch)
    return Softmax.apply(input, dim=_softmax_dim(dim, np.ndim(_array(input)), "log_softmax"), log=True)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    """``softmax(-input)`` along ``dim`` (no dim: PyTorch's legacy implicit choice, with its
    deprecation warning); ``dtype`` casts the input first."""
    if dim is None:
        warnings.warn(
            "Implicit dimension choice for softmin has been deprecated. Change the call to include dim=X "
            "as an argument.",
            UserWarning,
            stacklevel=_stacklevel - 1,  # PyTorch counts the frame of its dimension helper
        )
    x = _cast(input, dtype)
    x = x if isinstance(x, Tensor) else Tensor._wrap(backends.as_array(x))
    return softmax(-x, _softmax_dim(dim, x.ndim, "softmin"))


class ScaledElu(Function):
    """PyTorch's ``elu`` with ``scale`` and ``input_scale``: ``scale * x`` where x > 0, else
    ``scale * alpha * (exp(input_scale * x) - 1)``; d/dx = scale, or scale * alpha * input_scale *
    exp(input_scale * x) where x <= 0 (so a NaN input gets ``scale``, as PyTorch's)."""

    @staticmethod
    def forward(ctx, x, alpha=1.0, scale=1.0, input_scale=1.0):
        nonpositive = x <= 0
        z = _T.select(nonpositive, x, x.dtype.type(0)) * input_scale  # no overflow where x > 0; -0 stays -0
        e = np.exp(z)
        ctx.save_for_backward(nonpositive, e)
        ctx.meta = (alpha, scale, input_scale)
        out = _T.select(nonpositive, (scale * alpha) * np.expm1(z), x * scale)
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        nonpositive, e = ctx.saved_tensors
        alpha, scale, input_scale = ctx.meta
        return _T.select(nonpositive, g * ((scale * alpha * input_scale) * e), g * scale).astype(g.dtype, copy=False)

    @staticmethod
    def backward_graph(ctx, io, g):
        """The slope scale * alpha * input_scale * e where x < 0 as a function of x (x itself is not
        saved): the output moves there by scale * alpha times e's change, so e is the saved value plus
        this node's output (its value taken as 0) over scale * alpha. At x = 0 (told by e = 1, so also
        where input_scale * x is too small to move e off 1) and above, the slope is backward's
        constant, as in PyTorch's double backward."""
        nonpositive, e = ctx.saved_tensors
        alpha, scale, input_scale = ctx.meta
        coefficient = scale * alpha * input_scale
        negative = nonpositive & (e != 1)
        moving = io.output(0, np.zeros_like(e)) / (scale * alpha) + e
        return g * _T.Where.apply(negative, moving * coefficient, np.where(nonpositive, coefficient * e, scale))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@through_float32
def selu(input, inplace=False):
    """SELU: ``scale * (max(0, x) + min(0, alpha * (exp(x) - 1)))`` with PyTorch's constants
    alpha = 1.6732632423543772848170429916717 and scale = 1.0507009873554804934193349852946."""
    _check_floating("selu", input)
    return ScaledElu.apply(input, alpha=_SELU_ALPHA, scale=_SELU_SCALE)


@through_float32
def celu(input, alpha=1.0, inplace=False):
    """CELU: ``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`` (alpha must be non-zero)."""
    _check_floating("celu", input)
    _check_number("celu", "alpha", alpha)
    if alpha == 0:
        raise ValueError("celu: alpha must be non-zero (it divides the input), got 0")
    return ScaledElu.apply(input, alpha=float(alpha), input_scale=1.0 / float(alpha))


def _check_number(op: str, name: str, value) -> None:
    """TypeError naming ``name`` unless ``value`` is a real number (bool excluded)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__}")


@through_float32
def glu(input, dim=-1):
    """The gated linear unit: ``a * sigmoid(b)`` for ``a, b`` the two halves of ``input`` along
    ``dim`` (whose size must be even)."""
    _check_floating("glu", input)
    x = input if isinstance(input, Tensor) else Tensor._wrap(backends.as_array(input))
    if x.ndim == 0:
        raise ValueError("glu: input must have at least one dimension (0-d tensors cannot be halved)")
    dim = _wrap_dim(dim, x.ndim, "glu")
    if x.shape[dim] % 2:
        raise ValueError(
            f"glu: the halved dimension must have an even size, but dimension {dim} of input of shape "
            f"{tuple(x.shape)} has size {x.shape[dim]}"
        )
    half = x.shape[dim] // 2
    return x.narrow(dim, 0, half) * sigmoid(x.narrow(dim, half, half))


class Shrink(Function):
    """``softshrink`` (``soft``: x - lambd above lambd, x + lambd below -lambd) or ``hardshrink``
    (x itself there), 0 in [-lambd, lambd]; NaN stays NaN. The gradient passes outside the
    closed interval (a NaN input's too), as PyTorch's."""

    @staticmethod
    def forward(ctx, x, lambd=0.5, soft=True):
        inside = (x >= -lambd) & (x <= lambd)
        ctx.save_for_backward(inside)
        if not soft:
            return np.where(inside, x.dtype.type(0), x)
        return np.where(inside, x.dtype.type(0), np.where(x > lambd, x - lambd, x + lambd)).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved_tensors
        return np.where(inside, g.dtype.type(0), g)

    @staticmethod
    def backward_graph(ctx, io, g):
        (inside,) = ctx.saved_tensors
        return _blocked_where(io, g, inside)


def _blocked_where(io, g, blocked):
    """create_graph=True's ``g`` set to 0 where ``blocked`` (a constant mask; 0 even where g is inf or
    NaN, as backward), recorded on the input as PyTorch's."""
    return _recorded_on_input(io, _T.Where.apply(blocked, 0.0, g))


@through_float32
def softshrink(input, lambd=0.5):
    """``input - lambd`` above ``lambd``, ``input + lambd`` below ``-lambd``, 0 between (``lambd``
    must be >= 0)."""
    _check_floating("softshrink", input)
    _check_number("softshrink", "lambd", lambd)
    if not lambd >= 0:
        raise ValueError(f"softshrink: lambd must be >= 0, got {lambd}")
    return Shrink.apply(input, lambd=float(lambd), soft=True)


@through_float32
def hardshrink(input, lambd=0.5):
    """``input`` where ``|input| > lambd``, 0 elsewhere."""
    _check_floating("hardshrink", input)
    _check_number("hardshrink", "lambd", lambd)
    return Shrink.apply(input, lambd=float(lambd), soft=False)


class Threshold(Function):
    """``x`` where x > threshold, else ``value`` (NaN stays NaN); the gradient passes where
    x > threshold (and at NaN), as PyTorch's ``threshold_backward``."""

    @staticmethod
    def forward(ctx, x, threshold=0.0, value=0.0):
        below = x <= threshold
        ctx.save_for_backward(below)
        return np.where(below, np.asarray(value).astype(x.dtype), x)

    @staticmethod
    def backward(ctx, g):
        (below,) = ctx.saved_tensors
        return np.where(below, g.dtype.type(0), g)

    @staticmethod
    def backward_graph(ctx, io, g):
        (below,) = ctx.saved_tensors
        return _blocked_where(io, g, below)


@through_float32
def threshold(input, threshold, value, inplace=False):
    """``input`` where ``input > threshold``, ``value`` elsewhere (integer tensors too, as PyTorch;
    ``value`` is then cast to their dtype)."""
    _check_number("threshold", "threshold", threshold)
    _check_number("threshold", "value", value)
    x = input if isinstance(input, Tensor) else Tensor._wrap(backends.as_array(input))
    if x.dtype == np.bool_:
        raise TypeError("threshold: input must be a numeric tensor, got dtype bool")
    return Threshold.apply(x, threshold=threshold, value=value)


# ---------------------------------------------------------------------------------------------
# Dropout, batch normalisation, embedding, flatten
# ---------------------------------------------------------------------------------------------


class Dropout(Function):
    """``x * mask / (1 - p)`` with the mask drawn by the dropout kernel on ``x``'s device from
    deepkern's Philox state (``deepkern.random.philox_seed_offset``); the backward multiplies the
    gradient by the same saved mask."""

    @staticmethod
    def forward(ctx, x, p=0.5):
        seed, offset = philox_seed_offset(_dropout_counters(x.size))
        y, mask = ops.dropout(x, p, seed, offset)
        ctx.save_for_backward(mask)
        ctx.p = p
        return y

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return ops.dropout_backward(g, mask, ctx.p)

    @staticmethod
    def backward_graph(ctx, io, g):
        (mask,) = ctx.saved_tensors
        return g * ops.dropout_backward(
            backends.backend_of(mask, op="DropoutBackward").full(mask.shape, 1, g.dtype), mask, ctx.p
        )


def dropout(input, p=0.5, training=True, inplace=False):
    """Zeroes each element with probability ``p`` (deepkern's Philox stream, see
    ``deepkern.manual_seed``: the same mask on every device) and scales the rest by
    ``1 / (1 - p)``; the identity when not ``training``."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"dropout: p must be a number, got {type(p).__name__}")
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be between 0 and 1, got {p}")
    if not training or p == 0:
        return input if isinstance(input, Tensor) else Tensor._wrap(input)
    return Dropout.apply(input, p=float(p))


def _channel_dropout(input, p, training, what: str, spatial: int):
    """Zeroes whole channels (the dimensions before the last ``spatial`` ones) with probability ``p``,
    scaling the rest by 1 / (1 - p): the mask is dropout of ones of shape (N, C, 1, ...), so it comes
    from the same Philox stream as dropout's."""
    x = as_tensor(input)
    if x.ndim not in (spatial + 1, spatial + 2):  # in eval mode too, as PyTorch
        raise ValueError(
            f"{what}: expects an input of {spatial + 1} or {spatial + 2} dimensions ((C, ...) or (N, C, ...)), "
            f"got shape {x.shape}"
        )
    if not training or p == 0:
        return dropout(input, p, training)  # checks p, gives the input
    mask = dropout(x.new_ones(x.shape[: x.ndim - spatial] + (1,) * spatial), p, True)
    return x * mask


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Zeroes each channel of an (N, C, L) or (C, L) input with probability ``p`` (see dropout)."""
    return _channel_dropout(input, p, training, "dropout1d", 1)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zeroes each channel of an (N, C, H, W) input with probability ``p`` (see dropout). A 3-D input
    is taken as (N, C, L), with a warning, as PyTorch does: channel-wise 1-D dropout."""
    if training and p != 0 and getattr(input, "ndim", None) == 3:
        warnings.warn(
            "dropout2d: received a 3-D input and assuming channel-wise 1-D dropout is meant: the input is "
            "taken as (N, C, L); use dropout1d for that, or add a batch dimension to a (C, H, W) input",
            UserWarning,
            stacklevel=2,
        )
        return _channel_dropout(input, p, training, "dropout2d", 1)
    return _channel_dropout(input, p, training, "dropout2d", 2)


def dropout3d(input, p=0.5, training=True, inplace=False):
    """Zeroes each channel of an (N, C, D, H, W) or (C, D, H, W) input with probability ``p`` (see
    dropout). Other inputs are deprecated, as in PyTorch: with a warning, dimension 0 is taken as the
    channels."""
    ndim = np.ndim(_array(input))
    if ndim not in (4, 5):
        warnings.warn(
            f"dropout3d: received a {ndim}-D input, which is deprecated (PyTorch will make it an error); dropout3d "
            "drops channels of inputs with 3 spatial dimensions, a channel dimension and an optional batch dimension "
            "(4-D or 5-D); use dropout for others",
            UserWarning,
            stacklevel=2,
        )
        return _channel_dropout(input, p, training, "dropout3d", ndim - 1)
    return _channel_dropout(input, p, training, "dropout3d", 3)


class BatchNorm(Function):
    """Normalises over every axis but the channel axis (1) with the fused kernels of
    ``deepkern.ops.batch_norm``. In training the batch's statistics are used (biased variance) and
    the running ones updated in place (unbiased variance)."""

    @staticmethod
    def forward(
        ctx, x, weight=None, bias=None, running_mean=None, running_var=None, training=False, momentum=0.1, eps=1e-5
    ):
        out, save_mean, save_invstd = ops.batch_norm(
            x, weight, bias, running_mean, running_var, training=training, momentum=momentum, eps=eps
        )
        ctx.save_for_backward(x, weight)
        ctx.meta = (save_mean, save_invstd, training, eps)
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        save_mean, save_invstd, training, _ = ctx.meta
        return ops.batch_norm_backward(g, x, weight, save_mean, save_invstd, training, needs=ctx.needs_input_grad[:3])

    @staticmethod
    def backward_graph(ctx, io, g):
        """The gradients as Tensor ops: in training the batch statistics recomputed from x (their
        dependence on x is part of the gradients' graph), dx = r (dy - mean(dy) - x^ mean(dy x^)) per
        channel for dy = g * weight; in eval mode the running statistics are constants, dx = dy r."""
        x, weight = ctx.saved_tensors
        save_mean, save_invstd, training, eps = ctx.meta
        xt = io.input(0, x)
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        reduced = (0,) + tuple(range(2, x.ndim))
        scale = None if weight is None else io.input(1, weight).reshape(shape)
        dy = g if scale is None else g * scale
        if training:
            centered = xt - xt.mean(reduced, keepdim=True)
            rstd = ((centered * centered).mean(reduced, keepdim=True) + eps).rsqrt()
            normed = centered * rstd
            dx = rstd * (dy - dy.mean(reduced, keepdim=True) - normed * (dy * normed).mean(reduced, keepdim=True))
        else:
            rstd = save_invstd.reshape(shape).astype(x.dtype)
            normed = (xt - save_mean.reshape(shape).astype(x.dtype)) * rstd
            dx = dy * rstd
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        return (
            dx if need_x else None,
            (g * normed).sum(reduced) if need_w else None,
            g.sum(reduced) if need_b else None,
        )


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """PyTorch's ``F.batch_norm`` over input ``(N, C, ...)``: batch statistics when ``training``
    (updating ``running_mean``/``running_var`` in place when given, by ``momentum``), else the
    running ones."""
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var are needed when not training")
    under_autocast = autograd.autocast_casts(BatchNorm)  # it runs batch norm in float32: its statistics too
    bfloat16_stats = any(isinstance(s, Tensor) and is_bfloat16(s.dtype) for s in (running_mean, running_var))
    if _in_bfloat16(input) or (under_autocast and bfloat16_stats):  # in float32 (rounded once outside autocast)
        return _batch_norm_in_float32(input, running_mean, running_var, weight, bias, training, momentum, eps)
    out = BatchNorm.apply(
        input,
        weight,
        bias,
        running_mean=_array(running_mean),
        running_var=_array(running_var),
        training=training,
        momentum=momentum,
        eps=eps,
    )
    for stats in (running_mean, running_var) if training else ():
        if stats is not None:  # updated in place: what was computed from it (a folded Conv2d) is stale
            autograd.bump_version(_array(stats))
    return out


class RowNorm(Function):
    """``layer_norm`` or ``group_norm`` (``op``, a deepkern.ops name; ``size`` its normalized
    shape or group count) with their fused kernels; the backward pass gives the three gradients in
    one call."""

    @staticmethod
    def forward(ctx, x, weight=None, bias=None, op="layer_norm", size=None, eps=1e-5):
        out, save_mean, save_rstd = getattr(ops, op)(x, size, weight, bias, eps)
        ctx.save_for_backward(x, weight)
        ctx.meta = (op, size, save_mean, save_rstd, eps)
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        op, size, save_mean, save_rstd, _ = ctx.meta
        backward = getattr(ops, op + "_backward")
        return backward(g, x, size, weight, save_mean, save_rstd, needs=ctx.needs_input_grad[:3])

    @staticmethod
    def backward_graph(ctx, io, g):
        """The three gradients as Tensor ops, the statistics recomputed from x (their dependence on
        x is part of the gradients' graph): with x^ = (x - mean) r over each normalized row,
        dx = r (dy - mean(dy) - x^ mean(dy x^)) for dy = g * weight; dweight = sum(g x^), dbias = sum(g)
        over the other dimensions."""
        x, weight = ctx.saved_tensors
        op, size, _, _, eps = ctx.meta
        xt = io.input(0, x)
        if op == "layer_norm":  # rows: everything before the normalized dimensions
            normalized = 1 if isinstance(size, (int, np.integer)) else len(size)
            rows = (int(np.prod(x.shape[: x.ndim - normalized])), -1)
            param_shape = bias_shape = tuple(x.shape[x.ndim - normalized :])
            reduced = tuple(range(x.ndim - normalized))
        else:  # group_norm: rows are the size groups of channels of each sample
            rows = (x.shape[0] * size, -1)
            param_shape, bias_shape = (x.shape[1],) + (1,) * (x.ndim - 2), (x.shape[1],)
            reduced = (0,) + tuple(range(2, x.ndim))
        flat = xt.reshape(*rows)
        centered = flat - flat.mean(1, keepdim=True)
        rstd = ((centered * centered).mean(1, keepdim=True) + eps).rsqrt()
        normed = centered * rstd
        scale = None if weight is None else io.input(1, weight).reshape(param_shape)
        dy = (g if scale is None else g * scale).reshape(*rows)
        dx = rstd * (dy - dy.mean(1, keepdim=True) - normed * (dy * normed).mean(1, keepdim=True))
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        normed = normed.reshape(x.shape)
        dw = (g * normed).sum(reduced).reshape(bias_shape) if need_w else None
        db = g.sum(reduced).reshape(bias_shape) if need_b else None
        return (dx.reshape(x.shape) if need_x else None), dw, db


def _batch_norm_in_float32(input, running_mean, running_var, weight, bias, training, momentum, eps):
    """batch_norm of a bfloat16 input (or of bfloat16 statistics under autocast): its parameters
    (differentiably) and running statistics widened to float32, the output rounded once (kept float32
    under autocast, whose policy runs batch norm in float32); the updated statistics written back into
    their own tensors (in their dtype)."""
    widened = [None if t is None else t.float() for t in (weight, bias)]
    stats = [None if s is None else s.detach().float() for s in (running_mean, running_var)]
    out = batch_norm(input.float(), *stats, *widened, training=training, momentum=momentum, eps=eps)
    with autograd.no_grad():
        for kept, updated in zip((running_mean, running_var), stats) if training else ():
            if kept is not None:
                kept.copy_(updated)
    return out if autograd.autocast_casts(BatchNorm) else out.to(input.dtype)


def _in_bfloat16(*tensors) -> bool:
    """Whether a bfloat16 Tensor is among ``tensors`` outside autocast (which runs norms in float32 itself)."""
    return not autograd.autocast_casts() and any(isinstance(t, Tensor) and is_bfloat16(t.dtype) for t in tensors)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """PyTorch's ``F.layer_norm``: each row over the last ``len(normalized_shape)`` axes
    normalized by its mean and biased variance, then scaled by ``weight`` and shifted by ``bias``."""
    if _in_bfloat16(input, weight, bias):  # in float32, rounded once (as PyTorch)
        return through_float32(layer_norm)(input, normalized_shape, weight, bias, eps)
    return RowNorm.apply(input, weight, bias, op="layer_norm", size=normalized_shape, eps=eps)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """PyTorch's ``F.group_norm`` over input ``(N, C, ...)``: ``num_groups`` groups of consecutive
    channels, each normalized per sample, then the per-channel ``weight`` and ``bias``."""
    if _in_bfloat16(input, weight, bias):  # in float32, rounded once (as PyTorch)
        return through_float32(group_norm)(input, num_groups, weight, bias, eps)
    return RowNorm.apply(input, weight, bias, op="group_norm", size=num_groups, eps=eps)


def _tensor_argument(value):
    """``value`` (a Tensor, an array or array-like data) as a Tensor."""
    return value if isinstance(value, Tensor) else Tensor._wrap(backends.as_array(value))


def _check_channels(op: str, name: str, value, channels: int, shape) -> None:
    """ValueError naming ``name`` unless ``value`` (None passes) holds one element per channel."""
    if value is not None and tuple(np.shape(_array(value))) != (channels,):
        raise ValueError(
            f"{op}: {name} must have shape ({channels},), one per channel (dimension 1) of input of shape "
            f"{tuple(shape)}, got shape {tuple(np.shape(_array(value)))}"
        )


def instance_norm(
    input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True, momentum=0.1, eps=1e-5
):
    """PyTorch's ``F.instance_norm`` over input ``(N, C, *)``: each channel of each sample normalised
    by its own mean and biased variance (``use_input_stats``; the running statistics, updated in
    place by ``momentum`` with the mean over the batch of the unbiased variances, when given) or by
    ``running_mean``/``running_var``, then the per-channel ``weight`` and ``bias``. It is batch_norm
    of the input seen as (1, N*C, *), as PyTorch computes it."""
    op = "instance_norm"
    x = _tensor_argument(input)
    _check_floating(op, x)
    if x.ndim < 2:
        raise ValueError(f"{op}: input must have at least 2 dimensions (N, C, *), got shape {tuple(x.shape)}")
    if use_input_stats and int(np.prod(x.shape[2:])) == 1:
        raise ValueError(f"{op}: expected more than 1 spatial element when training, got input of shape {x.shape}")
    if not use_input_stats and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: running_mean and running_var are needed when use_input_stats is False")
    _check_number(op, "momentum", momentum)
    n, c = x.shape[:2]
    for name, value in (
        ("weight", weight),
        ("bias", bias),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ):
        _check_channels(op, name, value, c, x.shape)
    # every (sample, channel) pair a channel of one batch; the parameters and statistics repeated per sample
    stats = [None if s is None else Tensor._wrap(np.tile(_array(s), n)) for s in (running_mean, running_var)]
    weight, bias = (None if p is None else _tensor_argument(p).repeat(n) for p in (weight, bias))
    out = batch_norm(
        x.reshape((1, n * c) + tuple(x.shape[2:])), *stats, weight, bias, use_input_stats, momentum, eps
    ).reshape(x.shape)
    if use_input_stats:
        for kept, updated in zip((running_mean, running_var), stats):
            if kept is not None:  # the mean over the samples; NaN for an empty batch, as PyTorch
                _array(kept)[...] = updated._array.reshape(n, c).mean(axis=0) if n else np.nan
                autograd.bump_version(_array(kept))
    return out


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """PyTorch's ``F.rms_norm``: ``input / sqrt(mean(input**2) + eps) * weight`` with the mean over
    the last ``len(normalized_shape)`` dimensions (which must equal ``normalized_shape``); ``eps``
    None is the machine epsilon of the input's dtype (float32's for bfloat16, computed in float32)."""
    op = "rms_norm"
    x = _tensor_argument(input)
    _check_floating(op, x)
    shape = _normalized_shape(op, normalized_shape)
    k = len(shape)
    if x.ndim < k or tuple(x.shape[x.ndim - k :]) != shape:
        raise ValueError(
            f"{op}: normalized_shape={shape} must equal the last dimensions of input, got input of shape "
            f"{tuple(x.shape)}"
        )
    if weight is not None:
        weight = _tensor_argument(weight)
        if tuple(weight.shape) != shape:
            raise ValueError(f"{op}: weight must have normalized_shape {shape}, got shape {tuple(weight.shape)}")
        if weight.dtype != x.dtype:
            warnings.warn(
                f"rms_norm: mismatch dtype between input and weight: input dtype = {x.dtype}, weight dtype = "
                f"{weight.dtype}; the result's dtype is their promoted type",
                UserWarning,
                stacklevel=2,
            )
    if eps is not None:
        _check_number(op, "eps", eps)
    narrow = is_bfloat16(x.dtype) or x.dtype == np.float16
    wide = x.float() if narrow else x  # PyTorch's opmath: float32 for the narrow dtypes
    if eps is None:
        eps = float(np.finfo(wide.dtype).eps)
    dims = tuple(range(x.ndim - k, x.ndim))
    out = wide * (wide.square().mean(dims, keepdim=True) + eps).rsqrt()
    out = out.to(x.dtype) if narrow else out
    return out if weight is None else out * weight


def _normalized_shape(op: str, normalized_shape) -> tuple:
    """``normalized_shape`` (an int or a non-empty sequence of ints) as a tuple of non-negative ints."""
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(
            f"{op}: normalized_shape must be an int or a sequence of ints, got {normalized_shape!r}"
        ) from None
    if any(isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) for n in shape):
        raise TypeError(f"{op}: normalized_shape must be an int or a sequence of ints, got {normalized_shape!r}")
    if not shape or any(n < 0 for n in shape):
        raise ValueError(f"{op}: normalized_shape must hold at least one size, none negative, got {normalized_shape!r}")
    return tuple(int(n) for n in shape)


class Embedding(Function):
    """Rows of a 2-D weight table by integer indices, through the backend's ``embedding`` kernel
    (a gather on the GPU); the backward scatters the gradient rows into the weight's gradient
    (``embedding_backward``: summed per row in index order, the ``padding_idx`` row zero)."""

    @staticmethod
    def forward(ctx, weight, indices, padding_idx=None):
        indices_given = indices  # its shape: ascontiguousarray makes a 0-d array 1-d
        backend = backends.backend_of(weight, indices, op="embedding")
        if indices.dtype != np.int64:
            indices = indices.astype(np.int64)
        indices = backend.ascontiguousarray(indices)
        ctx.save_for_backward(indices)
        ctx.meta = (weight.shape, padding_idx)
        out = backend.empty(indices.shape + (weight.shape[1],), weight.dtype)
        backend.embedding(backend.ascontiguousarray(weight), indices, out)
        return out.reshape(np.shape(indices_given) + (weight.shape[1],))

    @staticmethod
    def backward(ctx, g):
        (indices,) = ctx.saved_tensors
        return _embedding_grad(g, indices, *ctx.meta), None

    @staticmethod
    def backward_graph(ctx, io, g):
        """The weight's gradient is linear in g; the transpose takes each index's row (0 for padding_idx's)."""
        (indices,) = ctx.saved_tensors
        shape, padding_idx = ctx.meta
        g_shape = tuple(g.shape)

        def rows(a):
            out = a[indices]
            if padding_idx is not None:
                out[indices == padding_idx] = 0
            return out.reshape(g_shape)

        return _T.LinearBackward.apply(g, lambda a: _embedding_grad(a, indices, shape, padding_idx), rows), None


def _embedding_grad(g, indices, shape, padding_idx):
    """The weight gradient of an embedding (weight ``shape``) of ``indices`` whose output has gradient
    ``g``: its rows summed per index, the ``padding_idx`` row zero."""
    backend = backends.backend_of(g, op="EmbeddingBackward")
    grad = backend.empty(shape, g.dtype)
    backend.embedding_backward(backend.ascontiguousarray(g), indices, grad, -1 if padding_idx is None else padding_idx)
    return grad


def embedding(input, weight, padding_idx=None):
    """Rows ``weight[input]`` for integer indices ``input`` of any shape; the gradient of a row
    is the sum over its occurrences, and the ``padding_idx`` row gets none. An index outside the
    table is an IndexError (on the GPU, checked by the kernel)."""
    idx = backends.as_array(_array(input))
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be an integer tensor, got dtype {idx.dtype}")
    if np.ndim(_array(weight)) != 2:
        raise ValueError(
            f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape {np.shape(_array(weight))}"
        )
    rows = np.shape(_array(weight))[0]
    if isinstance(idx, np.ndarray) and idx.size and (idx.min() < 0 or idx.max() >= rows):
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise IndexError(f"embedding: index {bad} is out of range for a weight of {rows} rows")
    return Embedding.apply(weight, idx, padding_idx=_padding_row(padding_idx, rows, "embedding"))


def _padding_row(padding_idx, rows: int, op: str):
    """``padding_idx`` (None, or in [-rows, rows): negative counts from the end) as a row of the table,
    or a ValueError naming ``op``, as PyTorch's check."""
    if padding_idx is None:
        return None
    if not -rows <= padding_idx < rows:
        raise ValueError(f"{op}: padding_idx={padding_idx} must be within num_embeddings={rows}")
    return int(padding_idx) % rows


def one_hot(tensor, num_classes=-1):
    """int64 one-hot rows: ``out[..., c] = 1`` where ``tensor[...] == c``, for class indices in
    [0, num_classes); ``num_classes=-1`` takes the largest index plus one. Not differentiable."""
    idx = _array(tensor)
    idx = idx if hasattr(idx, "dtype") else backends.as_array(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: tensor must hold integer class indices, got dtype {idx.dtype}")
    if num_classes == -1:
        if idx.size == 0:
            raise ValueError("one_hot: can not infer the number of classes from an empty tensor; pass num_classes")
        num_classes = int(idx.max()) + 1
    if isinstance(num_classes, (bool, np.bool_)) or not (
        isinstance(num_classes, (int, np.integer)) and num_classes >= 0
    ):
        raise ValueError(f"one_hot: num_classes must be -1 or a non-negative integer, got {num_classes!r}")
    if max(idx.size, 1) * int(num_classes) >= 2**62:  # NumPy's largest arrays (np.arange of more is empty)
        raise ValueError(f"one_hot: num_classes={num_classes} is too large for {idx.size} indices")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
        raise ValueError(f"one_hot: class value {bad} is outside [0, {num_classes}) (num_classes={num_classes})")
    classes = backends.to_device(np.arange(num_classes, dtype=np.int64), backends.device_of(idx))
    return Tensor._wrap((idx[..., None] == classes).astype(np.int64))


class VectorNorm(Function):
    """||x||_p along ``dim`` (kept), for p > 0 or inf; the gradient is 0 where the norm is 0."""

    @staticmethod
    def forward(ctx, x, p=2.0, dim=-1):
        norm = p_norm(x, p, dim)
        ctx.save_for_backward(x, norm)
        ctx.meta = (p, dim)
        return norm

    @staticmethod
    def backward(ctx, g):
        x, norm = ctx.saved_tensors
        p, dim = ctx.meta
        return p_norm_grad(x, norm, p, dim) * g

    @staticmethod
    def backward_graph(ctx, io, g):
        x, norm = ctx.saved_tensors
        p, dim = ctx.meta
        return _p_norm_grad_graph(io.input(0, x), x, io.output(0, norm), norm, p, dim) * g


def _p_norm_grad_graph(xt, x, normt, norm, p: float, dim: int):
    """loss.p_norm_grad as Tensor ops of ``xt`` (holding ``x``) and ``normt`` (its norm, holding
    ``norm``), differentiable with finite derivatives: the divisions and powers the masks drop are fed
    ones (a zero norm, a zero element)."""
    if p == 1:
        d = xt.sign()
    elif p == np.inf:  # shared by the elements of largest magnitude: constant but for the sign
        top = np.abs(x) == norm
        d = xt.sign() * (top / top.sum(axis=dim, keepdims=True)).astype(x.dtype)
    else:
        safe = _T.Where.apply(norm == 0, 1.0, normt)
        if p == 2:
            d = xt / safe
        else:  # 0 at a zero element (0 ** (p - 1) is inf for p < 1)
            zero = x == 0
            d = _T.Where.apply(zero, 0.0, xt.sign() * _T.Where.apply(zero, 1.0, xt.abs() / safe) ** (p - 1))
    return _T.Where.apply(norm == 0, 0.0, d)


def _check_p(op: str, p) -> float:
    if not (isinstance(p, (int, float)) and p > 0):
        raise ValueError(f"{op}: p must be a positive number or inf, got {p!r}")
    return float(p)


@through_float32
def normalize(input, p=2.0, dim=1, eps=1e-12):
    """``input / max(||input||_p, eps)`` with the norm along ``dim`` (torch.nn.functional.normalize)."""
    _check_floating("normalize", input)
    x = input if isinstance(input, Tensor) else Tensor._wrap(input)
    dim = _wrap_dim(dim, x.ndim, "normalize")
    return x / VectorNorm.apply(x, p=_check_p("normalize", p), dim=dim).clamp(min=eps)


@through_float32
def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """The cosine of the angle between ``x1`` and ``x2`` (broadcast together) along ``dim``:
    ``sum(x1 / max(||x1||, eps) * x2 / max(||x2||, eps))`` (torch.nn.functional.cosine_similarity)."""
    a, b = (x if isinstance(x, Tensor) else Tensor._wrap(backends.as_array(x)) for x in (x1, x2))
    for what, t in (("x1", a), ("x2", b)):
        if not is_floating_dtype(t.dtype):
            raise TypeError(f"cosine_similarity: {what} must be a floating-point tensor, got dtype {t.dtype}")
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"cosine_similarity: x1 of shape {a.shape} and x2 of shape {b.shape} do not broadcast"
        ) from None
    a, b = (t if t.shape == shape else t.expand(*shape) for t in (a, b))
    dim = _wrap_dim(dim, len(shape), "cosine_similarity")
    unit_a = a / VectorNorm.apply(a, p=2.0, dim=dim).clamp(min=eps)
    unit_b = b / VectorNorm.apply(b, p=2.0, dim=dim).clamp(min=eps)
    return (unit_a * unit_b).sum(dim)


def _factor(op: str, name: str, value) -> int:
    """A pixel (un)shuffle's factor: a positive int (TypeError for anything not an int)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {value}")
    return int(value)


def pixel_shuffle(input, upscale_factor):
    """Rearranges ``(*, C * r**2, H, W)`` into ``(*, C, H * r, W * r)``, r = ``upscale_factor``:
    ``out[..., c, h * r + i, w * r + j] = input[..., c * r**2 + i * r + j, h, w]``."""
    op = "pixel_shuffle"
    r = _factor(op, "upscale_factor", upscale_factor)
    x = _tensor_argument(input)
    if x.ndim < 3:
        raise ValueError(f"{op}: input must have at least 3 dimensions (*, C, H, W), got shape {tuple(x.shape)}")
    *batch, c, h, w = x.shape
    if c % (r * r):
        raise ValueError(
            f"{op}: the channel dimension (-3) of input must be divisible by upscale_factor**2 = {r * r}, got "
            f"input of shape {tuple(x.shape)}"
        )
    b = len(batch)
    y = x.reshape(*batch, c // (r * r), r, r, h, w).permute(*range(b), b, b + 3, b + 1, b + 4, b + 2)
    return y.reshape(*batch, c // (r * r), h * r, w * r)


def pixel_unshuffle(input, downscale_factor):
    """The inverse of pixel_shuffle: ``(*, C, H * r, W * r)`` into ``(*, C * r**2, H, W)``,
    r = ``downscale_factor`` (which must divide H and W)."""
    op = "pixel_unshuffle"
    r = _factor(op, "downscale_factor", downscale_factor)
    x = _tensor_argument(input)
    if x.ndim < 3:
        raise ValueError(f"{op}: input must have at least 3 dimensions (*, C, H, W), got shape {tuple(x.shape)}")
    *batch, c, h, w = x.shape
    if h % r or w % r:
        raise ValueError(
            f"{op}: the height and width (dimensions -2 and -1) of input must be divisible by "
            f"downscale_factor={r}, got input of shape {tuple(x.shape)}"
        )
    b = len(batch)
    y = x.reshape(*batch, c, h // r, r, w // r, r).permute(*range(b), b, b + 2, b + 4, b + 1, b + 3)
    return y.reshape(*batch, c * r * r, h // r, w // r)


def flatten(input, start_dim=0, end_dim=-1):
    """Merges dimensions ``start_dim`` to ``end_dim`` (``torch.flatten``)."""
    t = input if isinstance(input, Tensor) else Tensor._wrap(input)
    return t.flatten(start_dim, end_dim)


# The losses' functional forms live beside their modules (loss.py).
from ._attention import scaled_dot_product_attention  # noqa: E402
from ._conv3d import conv3d, conv_transpose3d  # noqa: E402
from ._ctc import ctc_loss  # noqa: E402
from ._embedding_bag import embedding_bag  # noqa: E402
from ._fold import fold, max_unpool1d, max_unpool2d, max_unpool3d, unfold  # noqa: E402
from ._fractional import (  # noqa: E402
    fractional_max_pool2d,
    fractional_max_pool2d_with_indices,
    fractional_max_pool3d,
    fractional_max_pool3d_with_indices,
)
from ._grid import affine_grid, grid_sample  # noqa: E402
from ._pool3d import adaptive_avg_pool3d, adaptive_max_pool3d, avg_pool3d, max_pool3d  # noqa: E402
from ._resample import interpolate, pad  # noqa: E402
from .loss import (  # noqa: E402
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    contrastive_loss,
    cosine_embedding_loss,
    cross_entropy,
    gaussian_nll_loss,
    hinge_embedding_loss,
    huber_loss,
    kl_div,
    l1_loss,
    margin_ranking_loss,
    mse_loss,
    multi_margin_loss,
    multilabel_margin_loss,
    multilabel_soft_margin_loss,
    nll_loss,
    p_norm,
    p_norm_grad,
    pairwise_distance,
    poisson_nll_loss,
    smooth_l1_loss,
    soft_margin_loss,
    triplet_margin_loss,
    triplet_margin_with_distance_loss,
)

__all__ += [
    "mse_loss",
    "l1_loss",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy",
    "smooth_l1_loss",
    "huber_loss",
    "kl_div",
    "pairwise_distance",
    "triplet_margin_loss",
    "contrastive_loss",
    "cosine_embedding_loss",
    "margin_ranking_loss",
    "hinge_embedding_loss",
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "triplet_margin_with_distance_loss",
]


# ---------------------------------------------------------------------------------------------
# Compositions of the ops above, as PyTorch writes them
# ---------------------------------------------------------------------------------------------


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """AlexNet's local response normalization: ``input / (k + alpha * mean of the squares over the
    ``size`` neighbouring channels (zero past the edges)) ** beta``, as PyTorch's."""
    x = input if isinstance(input, Tensor) else as_tensor(input)
    if x.ndim < 3:
        raise ValueError(f"local_response_norm: expected 3-D or higher input, got shape {x.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"local_response_norm: size must be an int >= 1, got {size!r}")
    if x.numel() == 0:
        return x
    channels = x.shape[1]
    squares = x * x
    widths = [0, 0] * (x.ndim - 2) + [size // 2, (size - 1) // 2]
    padded = pad(squares, widths)
    window = sum(padded.narrow(1, o, channels) for o in range(size)) / size
    return x / (window * alpha + k) ** beta


def bilinear(input1, input2, weight, bias=None):
    """``y[..., o] = input1[..., i] weight[o, i, j] input2[..., j] (+ bias[o])``."""
    from ..tensor_functions import einsum

    out = einsum("...i,oij,...j->...o", input1, weight, input2)
    return out if bias is None else out + bias


def _lp_pool(input, norm_type, kernel_size, stride, ceil_mode, dims: int):
    """The ``norm_type``-norm over each window of ``dims`` spatial dimensions: (sum of x^p) ^ (1/p),
    from the windows' average of x^p, as PyTorch's; at +-inf the largest (smallest) magnitude."""
    max_pool, avg_pool = ((max_pool1d, avg_pool1d), (max_pool2d, avg_pool2d), (max_pool3d, avg_pool3d))[dims - 1]
    if np.isinf(norm_type):
        sign = 1 if norm_type > 0 else -1
        return sign * max_pool(sign * input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    pooled = avg_pool(input**norm_type, kernel_size, stride, 0, ceil_mode)
    sizes = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,)
    window = math.prod(sizes) if len(sizes) == dims else sizes[0] ** dims
    return (pooled.sign() * pooled.abs().relu() * int(window)) ** (1.0 / norm_type)


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """The ``norm_type``-norm over each window along the last dimension of ``(N, C, L)`` or ``(C, L)``."""
    return _lp_pool(input, norm_type, kernel_size, stride, ceil_mode, 1)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """The ``norm_type``-norm over each window of ``(N, C, H, W)`` or ``(C, H, W)``: (sum of x^p) ^ (1/p)."""
    return _lp_pool(input, norm_type, kernel_size, stride, ceil_mode, 2)


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """The ``norm_type``-norm over each window of ``(N, C, D, H, W)`` or ``(C, D, H, W)``."""
    return _lp_pool(input, norm_type, kernel_size, stride, ceil_mode, 3)


def gumbel_softmax(logits, tau=1.0, hard=False, eps=1e-10, dim=-1):
    """Samples of the Gumbel-softmax distribution: softmax((logits + g) / tau) with g Gumbel noise
    from deepkern's generator; with ``hard`` the one-hot of each sample's largest entry, whose
    gradient is the soft sample's (the straight-through estimator), as PyTorch's."""
    noise = -logits.detach().new_zeros(logits.shape).exponential_().log()
    soft = softmax((logits + noise) / tau, dim)
    if not hard:
        return soft
    index = soft.max(dim, keepdim=True)[1]
    one_hot_sample = soft.detach().new_zeros(soft.shape).scatter_(dim, index, 1.0)
    return one_hot_sample - soft.detach() + soft


def pdist(input, p=2.0):
    """The ``p``-norm distances between the rows of the (N, M) ``input``, pair (i, j) for i < j in
    row-major order: N (N - 1) / 2 values."""
    if input.ndim != 2:
        raise ValueError(f"pdist: input must be 2-D, got shape {input.shape}")
    n = input.shape[0]
    rows, cols = np.triu_indices(n, 1)
    first = input.index_select(0, Tensor._wrap(backends.as_array(rows.astype(np.int64))))
    second = input.index_select(0, Tensor._wrap(backends.as_array(cols.astype(np.int64))))
    return (first - second).norm(p=p, dim=1)


def channel_shuffle(input, groups):
    """The channels (dimension 1) of ``groups`` groups interleaved: channel g * (C / groups) + i goes
    to i * groups + g."""
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"channel_shuffle: groups must be an int >= 1, got {groups!r}")
    if input.ndim < 3 or input.shape[1] % groups:
        raise ValueError(f"channel_shuffle: input must be (N, C, *), C divisible by groups={groups}, got {input.shape}")
    n, c = input.shape[:2]
    rest = tuple(input.shape[2:])
    return input.reshape(n, groups, c // groups, *rest).transpose(1, 2).reshape(n, c, *rest)


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):
    """Randomized leaky ReLU: negative inputs times a slope drawn U(lower, upper) per element in
    training (from deepkern's generator), times (lower + upper) / 2 otherwise."""
    _check_floating("rrelu", input)
    if not lower <= upper:
        raise ValueError(f"rrelu: lower must not exceed upper, got lower={lower}, upper={upper}")
    if not training:
        return leaky_relu(input, (lower + upper) / 2)
    slopes = input.detach().new_zeros(input.shape).uniform_(lower, upper)
    return as_tensor(_T.Where.apply(input._array >= 0, input, input * slopes))


_SELU_NEGATIVE_SATURATION = 1.7580993408473766  # SELU's scale times alpha: where alpha dropout sends dropped units


def _alpha_dropout(input, p, training, mask_shape, what: str):
    if not 0 <= p <= 1:
        raise ValueError(f"{what}: dropout probability has to be between 0 and 1, but got {p}")
    if p == 0 or not training:
        return input
    if p == 1:
        return input * 0.0
    alpha = _SELU_NEGATIVE_SATURATION
    a = 1.0 / np.sqrt((alpha * alpha * p + 1) * (1 - p))
    keep = input.detach().new_zeros(mask_shape).bernoulli_(1 - p)
    return input * (keep * a) + (keep - 1) * (alpha * a) + alpha * a * p


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    """SELU networks' dropout: dropped units set to SELU's negative saturation, then an affine map
    that keeps the mean and variance (PyTorch's formula); the identity unless ``training``."""
    return _alpha_dropout(input, p, training, input.shape, "alpha_dropout")


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False):
    """:func:`alpha_dropout` of whole channels: one draw per (sample, channel) of (N, C, *) input."""
    if input.ndim < 2:
        raise ValueError(f"feature_alpha_dropout: input must be (N, C, *), got shape {input.shape}")
    return _alpha_dropout(input, p, training, input.shape[:2] + (1,) * (input.ndim - 2), "feature_alpha_dropout")


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Deprecated in PyTorch in favour of :func:`interpolate`, which it calls."""
    warnings.warn(
        "nn.functional.upsample is deprecated. Use nn.functional.interpolate instead.", UserWarning, stacklevel=2
    )
    return interpolate(input, size, scale_factor, mode, align_corners)


def max_pool1d_with_indices(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    """max_pool1d's output and indices, whatever ``return_indices`` says (PyTorch's)."""
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    """max_pool2d's output and indices, whatever ``return_indices`` says (PyTorch's)."""
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool3d_with_indices(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    """max_pool3d's output and indices, whatever ``return_indices`` says (PyTorch's)."""
    return max_pool3d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def adaptive_max_pool1d_with_indices(input, output_size, return_indices=False):
    """adaptive_max_pool1d's output and indices, whatever ``return_indices`` says (PyTorch's)."""
    return adaptive_max_pool1d(input, output_size, True)


def adaptive_max_pool2d_with_indices(input, output_size, return_indices=False):
    """adaptive_max_pool2d's output and indices, whatever ``return_indices`` says (PyTorch's)."""
    return adaptive_max_pool2d(input, output_size, True)


def adaptive_max_pool3d_with_indices(input, output_size, return_indices=False):
    """adaptive_max_pool3d's output and indices, whatever ``return_indices`` says (PyTorch's)."""
    return adaptive_max_pool3d(input, output_size, True)


class _Applied:
    """An nn.functional function as what Tensor._inplace writes into the tensor."""

    def __init__(self, function):
        self.function = function

    def apply(self, tensor, *args):
        return self.function(tensor, *args)


def _written_back(what: str, function, input, *args):
    """``function(input, *args)`` written into ``input``, recorded as PyTorch records an in-place op
    (refused on a leaf that requires grad; a saved value changed before backward is an error)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{what}: input must be a Tensor, got {type(input).__name__}")
    return input._inplace(what, _Applied(function), *args)


def relu_(input):
    """In-place :func:`relu`."""
    return _written_back("relu_", relu, input)


def elu_(input, alpha=1.0):
    """In-place :func:`elu`."""
    return _written_back("elu_", elu, input, alpha)


def leaky_relu_(input, negative_slope=0.01):
    """In-place :func:`leaky_relu`."""
    return _written_back("leaky_relu_", leaky_relu, input, negative_slope)


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    """In-place :func:`hardtanh`."""
    return _written_back("hardtanh_", hardtanh, input, min_val, max_val)


def selu_(input):
    """In-place :func:`selu`."""
    return _written_back("selu_", selu, input)


def celu_(input, alpha=1.0):
    """In-place :func:`celu`."""
    return _written_back("celu_", celu, input, alpha)


def rrelu_(input, lower=1.0 / 8, upper=1.0 / 3, training=False):
    """In-place :func:`rrelu`."""
    return _written_back("rrelu_", rrelu, input, lower, upper, training)


_threshold = threshold  # threshold_'s argument of that name hides the function


def threshold_(input, threshold, value):
    """In-place :func:`threshold`."""
    return _written_back("threshold_", _threshold, input, threshold, value)


__all__ += [
    "local_response_norm",
    "bilinear",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "gumbel_softmax",
    "pdist",
    "channel_shuffle",
]
__all__ += ["rrelu", "alpha_dropout", "feature_alpha_dropout", "upsample"]
__all__ += ["max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices"]
__all__ += ["adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices", "adaptive_max_pool3d_with_indices"]
__all__ += ["fractional_max_pool2d", "fractional_max_pool3d"]
__all__ += ["fractional_max_pool2d_with_indices", "fractional_max_pool3d_with_indices"]
__all__ += ["relu_", "elu_", "leaky_relu_", "hardtanh_", "selu_", "celu_", "rrelu_", "threshold_"]
