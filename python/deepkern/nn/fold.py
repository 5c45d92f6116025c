"""The layers ``Unfold`` and ``Fold`` (im2col and col2im) and ``MaxUnpool1d``, ``MaxUnpool2d``,
``MaxUnpool3d``, PyTorch's, over the functions of nn/_fold.py."""

from __future__ import annotations

from ._fold import _ints, fold, max_unpool1d, max_unpool2d, max_unpool3d, unfold
from .module import Module

__all__ = ["Unfold", "Fold", "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d"]


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


class _MaxUnpoolNd(Module):
    """The partial inverse of max pooling over ``dims`` spatial dimensions (``function``:
    ``max_unpool1d``, ``2d`` or ``3d``): ``forward(input, indices, output_size=None)``; kernel_size,
    stride (default: kernel_size) and padding kept as tuples, as PyTorch's."""

    dims = 2
    function = staticmethod(max_unpool2d)

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        op, n = type(self).__name__, self.dims
        self.kernel_size = _ints(kernel_size, n, "kernel_size", op)
        self.stride = _ints(kernel_size if stride is None else stride, n, "stride", op)
        self.padding = _ints(padding, n, "padding", op)

    def forward(self, input, indices, output_size=None):
        return self.function(input, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxUnpool1d(_MaxUnpoolNd):
    """The partial inverse of MaxPool1d (see ``max_unpool1d``)."""

    dims = 1
    function = staticmethod(max_unpool1d)


class MaxUnpool2d(_MaxUnpoolNd):
    """The partial inverse of MaxPool2d (see ``max_unpool2d``)."""


class MaxUnpool3d(_MaxUnpoolNd):
    """The partial inverse of MaxPool3d (see ``max_unpool3d``)."""

    dims = 3
    function = staticmethod(max_unpool3d)
