"""The layers ``Unfold`` and ``Fold`` (im2col and col2im) and ``MaxUnpool2d``, PyTorch's, over the
functions of nn/_fold.py."""

from __future__ import annotations

from ._fold import _pair, fold, max_unpool2d, unfold
from .module import Module

__all__ = ["Unfold", "Fold", "MaxUnpool2d"]


class Unfold(Module):
    """The sliding blocks of an ``(N, C, H, W)`` or ``(C, H, W)`` input as columns (see
    ``unfold``); the arguments are kept as given, as PyTorch's."""

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input):
        return unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, stride={self.stride}"


class Fold(Module):
    """Columns summed back into an image of ``output_size`` (see ``fold``); the arguments are kept as
    given, as PyTorch's."""

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.output_size = output_size
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input):
        return fold(input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
            f"padding={self.padding}, stride={self.stride}"
        )


class MaxUnpool2d(Module):
    """The partial inverse of MaxPool2d (see ``max_unpool2d``): ``forward(input, indices,
    output_size=None)``; kernel_size, stride (default: kernel_size) and padding kept as pairs."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        op = "MaxUnpool2d"
        self.kernel_size = _pair(kernel_size, "kernel_size", op)
        self.stride = _pair(kernel_size if stride is None else stride, "stride", op)
        self.padding = _pair(padding, "padding", op)

    def forward(self, input, indices, output_size=None):
        return max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
