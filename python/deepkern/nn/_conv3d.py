"""``conv3d`` (``torch.nn.functional``'s) on the 2-D convolution: the taps along depth become input
channels. For output depth ``d`` and depth tap ``t`` the input slice ``d * stride + t * dilation``
(of the depth-padded input) is gathered, so ``(N, C, D, H, W)`` becomes ``N * D_out`` images of
``T * C`` channels (ordered group, tap, channel), and the weight ``(K, C/groups, T, R, S)`` becomes
``(K, T * C/groups, R, S)`` in the same order: one ``conv2d`` of those images, with the height and
width stride, padding, dilation and groups, gives every output plane. Gradients flow back through
the gather (a scatter-add) and the 2-D convolution's own backward."""

from __future__ import annotations

import numpy as np

from .. import backends
from ..tensor import Tensor
from ._pool3d import _triple

__all__ = ["conv3d"]

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


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D convolution of input ``(N, C, D, H, W)`` or ``(C, D, H, W)`` with weight
    ``(K, C/groups, T, R, S)`` (``padding`` may also be ``'same'`` or ``'valid'``): output
    ``(N, K, D_out, H_out, W_out)``, contiguous."""
    from . import functional as F

    x = input if isinstance(input, Tensor) else Tensor._wrap(backends.as_array(input))
    w = weight if isinstance(weight, Tensor) else Tensor._wrap(backends.as_array(weight))
    if x.ndim not in (4, 5):
        raise ValueError(f"conv3d: input must be {_NCDHW}, got shape {tuple(x.shape)}")
    if w.ndim != 5:
        raise ValueError(f"conv3d: weight must be 5-D (K, C/groups, T, R, S), got shape {tuple(w.shape)}")
    unbatched = x.ndim == 4
    if unbatched:
        x = x.unsqueeze(0)
    stride, dilation = _triple(stride, "stride", "conv3d"), _triple(dilation, "dilation", "conv3d")
    if any(v < 1 for v in stride + dilation):
        raise ValueError(f"conv3d: stride and dilation must be positive, got {stride} and {dilation}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv3d: groups must be a positive int, got {groups!r}")
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
    y = y.reshape(n, out_depth, k, *y.shape[-2:]).permute(0, 2, 1, 3, 4)
    if bias is not None:
        b = bias if isinstance(bias, Tensor) else Tensor._wrap(backends.as_array(bias))
        if b.shape != (k,):
            raise ValueError(f"conv3d: bias must have shape ({k},), got {tuple(b.shape)}")
        y = y + b.reshape(1, k, 1, 1, 1)
    y = y.contiguous()
    return y.squeeze(0) if unbatched else y
