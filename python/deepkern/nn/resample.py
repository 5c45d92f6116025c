"""Layers over nn.functional's ``pad`` and ``interpolate`` (PyTorch's padding layers of 1 to 3
dimensions in the constant, zero, reflection, replication and circular modes, and Upsample), and
``Unflatten``: each forward is one call of its function with the settings kept."""

from __future__ import annotations

import numbers

from . import functional as F
from ._layer import describe, run_op
from .module import Module

__all__ = [
    "ConstantPad1d",
    "ConstantPad2d",
    "ConstantPad3d",
    "ZeroPad1d",
    "ZeroPad2d",
    "ZeroPad3d",
    "ReflectionPad1d",
    "ReflectionPad2d",
    "ReflectionPad3d",
    "ReplicationPad1d",
    "ReplicationPad2d",
    "ReplicationPad3d",
    "CircularPad1d",
    "CircularPad2d",
    "CircularPad3d",
    "Upsample",
    "UpsamplingNearest2d",
    "UpsamplingBilinear2d",
    "Unflatten",
]


class _Pad(Module):
    """Pads the last ``dims`` dimensions by ``padding`` (an int for every side, or F.pad's tuple:
    (left, right[, top, bottom[, front, back]])) in F.pad's ``mode``."""

    dims, mode = 1, "constant"

    def __init__(self, padding, value: float = 0.0):
        super().__init__()
        if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
            padding = (int(padding),) * (2 * self.dims)
        padding = tuple(padding)
        if len(padding) != 2 * self.dims or not all(isinstance(p, numbers.Integral) for p in padding):
            raise ValueError(f"{type(self).__name__}: padding must be an int or {2 * self.dims} ints, got {padding}")
        self.padding, self.value = padding, value

    def forward(self, input):
        return run_op(self, F.pad, input, self.padding, self.mode, self.value if self.mode == "constant" else None)

    def extra_repr(self) -> str:
        if self.mode == "constant" and not type(self).__name__.startswith("Zero"):
            return f"padding={self.padding}, value={self.value}"
        return f"{self.padding}"


class ConstantPad1d(_Pad):
    """Pads the last dimension with ``value``."""


class ConstantPad2d(_Pad):
    """Pads the last two dimensions with ``value``."""

    dims = 2


class ZeroPad1d(ConstantPad1d):
    """Pads the last dimension with zeros."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)


class ZeroPad2d(ConstantPad2d):
    """Pads the last two dimensions with zeros."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)


class ConstantPad3d(_Pad):
    """Pads the last three dimensions with ``value``."""

    dims = 3


class ZeroPad3d(ConstantPad3d):
    """Pads the last three dimensions with zeros."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)


class ReflectionPad1d(_Pad):
    """Pads the last dimension with its mirror image (the edge not repeated)."""

    mode = "reflect"


class ReflectionPad2d(ReflectionPad1d):
    """Pads the last two dimensions with their mirror image."""

    dims = 2


class ReplicationPad1d(_Pad):
    """Pads the last dimension by repeating its edge."""

    mode = "replicate"


class ReplicationPad2d(ReplicationPad1d):
    """Pads the last two dimensions by repeating their edges."""

    dims = 2


class ReflectionPad3d(ReflectionPad1d):
    """Pads the last three dimensions with their mirror image."""

    dims = 3


class ReplicationPad3d(ReplicationPad1d):
    """Pads the last three dimensions by repeating their edges."""

    dims = 3


class CircularPad1d(_Pad):
    """Pads the last dimension with its other end (wrapping around)."""

    mode = "circular"


class CircularPad2d(CircularPad1d):
    """Pads the last two dimensions with their other ends."""

    dims = 2


class CircularPad3d(CircularPad1d):
    """Pads the last three dimensions with their other ends."""

    dims = 3


class Upsample(Module):
    """Resizes the spatial dimensions to ``size`` or by ``scale_factor`` (F.interpolate's modes)."""

    def __init__(
        self, size=None, scale_factor=None, mode: str = "nearest", align_corners=None, recompute_scale_factor=None
    ):
        super().__init__()
        if isinstance(scale_factor, (tuple, list)):
            scale_factor = tuple(float(f) for f in scale_factor)
        elif scale_factor is not None:
            scale_factor = float(scale_factor)
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, input):
        return F.interpolate(
            input, self.size, self.scale_factor, self.mode, self.align_corners, self.recompute_scale_factor
        )

    def extra_repr(self) -> str:
        what = f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None else f"size={self.size!r}"
        return f"{what}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """Upsample in mode 'nearest' (4-D input)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "nearest")


class UpsamplingBilinear2d(Upsample):
    """Upsample in mode 'bilinear' with align_corners=True."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "bilinear", align_corners=True)


class Unflatten(Module):
    """Splits dimension ``dim`` into ``unflattened_size`` (one entry may be -1): Flatten's inverse."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input):
        if not hasattr(input, "unflatten"):
            raise TypeError(f"{describe(self)}: input must be a Tensor, got {type(input).__name__}")
        return input.unflatten(self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
