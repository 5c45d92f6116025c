"""``conv3d`` (``torch.nn.functional``'s) on the 2-D convolution: the taps along depth become input
channels. For output depth ``d`` and depth tap ``t`` the input slice ``d * stride + t * dilation``
(of the depth-padded input) is gathered, so ``(N, C, D, H, W)`` becomes ``N * D_out`` images of
``T * C`` channels (ordered group, tap, channel), and the weight ``(K, C/groups, T, R, S)`` becomes
``(K, T * C/groups, R, S)`` in the same order: one ``conv2d`` of those images, with the height and
width stride, padding, dilation and groups, gives every output plane. Gradients flow back through
the gather (a scatter-add) and the 2-D convolution's own backward.

``conv_transpose3d`` is its adjoint on the 2-D transposed convolution: each input depth plane runs
one ``conv_transpose2d`` whose output channels are the (channel, depth tap) pairs, and each tap's
planes are added at their output depths ``d * stride + t * dilation - padding``
(:class:`DepthScatter`, whose gradient gathers them back)."""

from __future__ import annotations

import numpy as np

from .. import backends
from ..autograd import Function
from ..tensor import Tensor
from ..tensor_ops import LinearBackward
from ._pool3d import _triple

__all__ = ["conv3d", "conv_transpose3d"]

_NCDHW = "(N, C, D, H, W) or (C, D, H, W)"


def _padding_pairs(padding, kernel, stride, dilation) -> list:
    """(before, after) per spatial dimension: PyTorch's 'same' puts the odd element after."""
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * 3
        if padding != "same":
            raise ValueError(f"conv3d: padding must be an int, a tuple of 3 ints, 'same' or 'valid', got {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError("conv3d: padding='same' is not supported for strided convolutions")
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return [(t // 2, t - t // 2) for t in totals]
    pads = _triple(padding, "padding", "conv3d")
    if any(p < 0 for p in pads):
        raise ValueError(f"conv3d: padding must be non-negative, got {padding!r}")
    return [(p, p) for p in pads]


def _operands(input, weight, op: str, weight_shape: str):
    """``input`` (4-D or 5-D) and ``weight`` (5-D) as Tensors, the input batched, and whether it was not."""
    x = input if isinstance(input, Tensor) else Tensor._wrap(backends.as_array(input))
    w = weight if isinstance(weight, Tensor) else Tensor._wrap(backends.as_array(weight))
    if x.ndim not in (4, 5):
        raise ValueError(f"{op}: input must be {_NCDHW}, got shape {tuple(x.shape)}")
    if w.ndim != 5:
        raise ValueError(f"{op}: weight must be 5-D {weight_shape}, got shape {tuple(w.shape)}")
    return (x.unsqueeze(0), w, True) if x.ndim == 4 else (x, w, False)


def _check_groups(groups, op: str) -> None:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")


def _with_bias(y, bias, op: str):
    """``y`` (N, K, D, H, W) plus ``bias`` (K,) when given, contiguous."""
    if bias is not None:
        k = y.shape[1]
        b = bias if isinstance(bias, Tensor) else Tensor._wrap(backends.as_array(bias))
        if b.shape != (k,):
            raise ValueError(f"{op}: bias must have shape ({k},), got {tuple(b.shape)}")
        y = y + b.reshape(1, k, 1, 1, 1)
    return y.contiguous()


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D convolution of input ``(N, C, D, H, W)`` or ``(C, D, H, W)`` with weight
    ``(K, C/groups, T, R, S)`` (``padding`` may also be ``'same'`` or ``'valid'``): output
    ``(N, K, D_out, H_out, W_out)``, contiguous."""
    from . import functional as F

    x, w, unbatched = _operands(input, weight, "conv3d", "(K, C/groups, T, R, S)")
    stride, dilation = _triple(stride, "stride", "conv3d"), _triple(dilation, "dilation", "conv3d")
    if any(v < 1 for v in stride + dilation):
        raise ValueError(f"conv3d: stride and dilation must be positive, got {stride} and {dilation}")
    _check_groups(groups, "conv3d")
    n, c, depth, h, width = x.shape
    k, c_group, taps, r, s = w.shape
    if c_group * groups != c or k % groups:
        raise ValueError(
            f"conv3d: input has {c} channels and weight shape {tuple(w.shape)} with groups={groups}; "
            f"expected weight.shape[1] * groups == channels and weight.shape[0] divisible by groups"
        )
    pairs = _padding_pairs(padding, (taps, r, s), stride, dilation)
    (front, back), hw_pairs = pairs[0], pairs[1:]
    hw_padding = tuple(before for before, _ in hw_pairs)
    if any(before != after for before, after in hw_pairs):  # 'same' with an even kernel: pad unevenly first
        x = F.pad(x, [side for pair in reversed(hw_pairs) for side in pair])
        hw_padding = (0, 0)
    if front or back:
        x = F.pad(x, [0, 0, 0, 0, front, back])
    padded = depth + front + back
    out_depth = (padded - dilation[0] * (taps - 1) - 1) // stride[0] + 1
    if out_depth < 1:
        raise ValueError(
            f"conv3d: input depth {depth} padded to {padded} is smaller than the kernel's extent "
            f"{dilation[0] * (taps - 1) + 1} (depth taps {taps}, dilation {dilation[0]})"
        )
    index = np.arange(out_depth)[:, None] * stride[0] + np.arange(taps)[None, :] * dilation[0]
    cols = x[:, :, index]  # (N, C, D_out, T, H', W')
    hp, wp = cols.shape[-2:]
    cols = cols.reshape(n, groups, c_group, out_depth, taps, hp, wp).permute(0, 3, 1, 4, 2, 5, 6)
    cols = cols.reshape(n * out_depth, groups * taps * c_group, hp, wp)
    w2 = w.permute(0, 2, 1, 3, 4).reshape(k, taps * c_group, r, s)
    y = F.conv2d(cols, w2, None, stride[1:], hw_padding, dilation[1:], groups)
    y = _with_bias(y.reshape(n, out_depth, k, *y.shape[-2:]).permute(0, 2, 1, 3, 4), bias, "conv3d")
    return y.squeeze(0) if unbatched else y


class DepthScatter(Function):
    """``y`` (N, K, D, T, H, W): tap ``t`` of input plane ``d`` added into output plane
    ``d * stride + t * dilation - padding`` of (N, K, out_depth, H, W) when that lies in range, one
    strided slice per tap; the gradient takes each tap's planes back from those slices."""

    @staticmethod
    def forward(ctx, y, stride, dilation, padding, out_depth):
        ctx.meta = (y.shape, stride, dilation, padding, out_depth)
        return DepthScatter._scatter(y, *ctx.meta)

    @staticmethod
    def backward(ctx, g):
        return DepthScatter._gather(g, *ctx.meta)

    @staticmethod
    def backward_graph(ctx, io, g):
        meta = ctx.meta
        return LinearBackward.apply(
            g, lambda a: DepthScatter._gather(a, *meta), lambda a: DepthScatter._scatter(a, *meta)
        )

    @staticmethod
    def _scatter(y, shape, stride, dilation, padding, out_depth):
        """The forward: each tap's planes of ``y`` (of ``shape``) added into the output planes they land on."""
        n, k, depth, taps, h, w = shape
        out = backends.backend_of(y, op="conv_transpose3d").zeros((n, k, out_depth, h, w), y.dtype)
        for t, planes, depths in DepthScatter._runs(stride, dilation, padding, out_depth, depth, taps):
            out[:, :, depths] += y[:, :, planes, t]
        return out

    @staticmethod
    def _gather(g, shape, stride, dilation, padding, out_depth):
        """The transpose of :meth:`_scatter`: each tap's planes taken back from the output planes."""
        grad = backends.backend_of(g, op="DepthScatterBackward").zeros(shape, g.dtype)
        for t, planes, depths in DepthScatter._runs(stride, dilation, padding, out_depth, shape[2], shape[3]):
            grad[:, :, planes, t] = g[:, :, depths]
        return grad

    @staticmethod
    def _runs(stride, dilation, padding, out_depth, depth, taps):
        """Per tap: (tap, slice of the input planes, slice of the output planes they land on)."""
        for t in range(taps):
            offset = t * dilation - padding
            first = max(0, -(offset // stride))  # the first plane d with d * stride + offset >= 0
            last = min(depth - 1, (out_depth - 1 - offset) // stride)
            if first <= last:
                start = first * stride + offset
                yield t, slice(first, last + 1), slice(start, last * stride + offset + 1, stride)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """3-D transposed convolution of input ``(N, C, D, H, W)`` or ``(C, D, H, W)`` with weight
    ``(C, K/groups, T, R, S)``: output ``(N, K, D_out, H_out, W_out)``, ``D_out = (D - 1) * stride -
    2 * padding + dilation * (T - 1) + output_padding + 1`` (H_out, W_out likewise);
    ``output_padding`` must be smaller than ``stride`` or ``dilation`` in each dimension."""
    from . import functional as F

    op = "conv_transpose3d"
    x, w, unbatched = _operands(input, weight, op, "(C, K/groups, T, R, S)")
    stride, padding = _triple(stride, "stride", op), _triple(padding, "padding", op)
    output_padding, dilation = _triple(output_padding, "output_padding", op), _triple(dilation, "dilation", op)
    if any(v < 1 for v in stride + dilation):
        raise ValueError(f"{op}: stride and dilation must be positive, got {stride} and {dilation}")
    if any(p < 0 for p in padding + output_padding):
        raise ValueError(f"{op}: padding and output_padding must be non-negative, got {padding} and {output_padding}")
    if any(o >= max(s, d) for o, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            f"{op}: output_padding {output_padding} must be smaller than stride {stride} or dilation {dilation} "
            "in each dimension"
        )
    _check_groups(groups, op)
    n, c, depth, h, width = x.shape
    c_in, k_group, taps, r, s = w.shape
    if c_in != c or c % groups:
        raise ValueError(
            f"{op}: input has {c} channels and weight shape {tuple(w.shape)} with groups={groups}; "
            "expected weight.shape[0] == channels, divisible by groups"
        )
    if 0 in x.shape[1:] or 0 in w.shape[2:]:
        raise ValueError(
            f"{op}: input {tuple(x.shape)} and weight {tuple(w.shape)} must have non-zero sizes but for the batch"
        )
    out = [
        (i - 1) * st - 2 * p + d * (t - 1) + o + 1
        for i, st, p, d, t, o in zip((depth, h, width), stride, padding, dilation, (taps, r, s), output_padding)
    ]
    if min(out) < 1:
        raise ValueError(
            f"{op}: the output size {tuple(out)} is not positive for input of shape {tuple(x.shape)}, weight of "
            f"shape {tuple(w.shape)}, stride={stride}, padding={padding}, dilation={dilation}, "
            f"output_padding={output_padding}"
        )
    planes = x.permute(0, 2, 1, 3, 4).reshape(n * depth, c, h, width)
    options = (stride[1:], padding[1:], output_padding[1:], groups, dilation[1:])
    y = F.conv_transpose2d(planes, w.reshape(c, k_group * taps, r, s), None, *options)
    k = k_group * groups  # the channels of y are the (k, t) pairs, k major
    y = y.reshape(n, depth, k, taps, *y.shape[-2:]).permute(0, 2, 1, 3, 4, 5)
    y = _with_bias(DepthScatter.apply(y, stride[0], dilation[0], padding[0], out[0]), bias, op)
    return y.squeeze(0) if unbatched else y
