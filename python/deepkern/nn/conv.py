"""Convolution and pooling layers on NCHW (or CHW) input: ``Conv2d``, ``MaxPool2d``,
``AvgPool2d``, ``AdaptiveAvgPool2d`` (PyTorch's signatures, defaults, parameter names,
initialisation and reprs)."""

from __future__ import annotations

from . import functional as F
from ._layer import (
    add_weight_and_bias,
    bad_shape,
    check_float,
    check_ndim,
    factory_kwargs,
    reset_weight_and_bias,
    run_op,
)
from .module import Module

__all__ = ["Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]

_NCHW = "(N, C, H, W) or (C, H, W)"


def _pool(module, function, input, *args):
    """A pooling layer's forward: float (N, C, H, W) or (C, H, W) input, errors naming it."""
    check_float(module, input)
    check_ndim(module, input, (3, 4), _NCHW)
    return run_op(module, function, input, *args)


def _pair(value) -> tuple:
    if isinstance(value, (tuple, list)):
        return tuple(value) if len(value) != 1 else (value[0], value[0])
    return (value, value)


class Conv2d(Module):
    """2-D convolution of ``(N, in_channels, H, W)`` input with weight
    ``(out_channels, in_channels / groups, kH, kW)``, initialised as PyTorch does
    (kaiming_uniform_(a=sqrt(5)); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))). Only
    ``padding_mode='zeros'`` is supported."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = factory_kwargs("Conv2d", dtype, device)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: groups={groups} must be positive and divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d: padding_mode={padding_mode!r} is not supported, only 'zeros'")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size, self.stride, self.dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("Conv2d: padding='same' is not supported for strided convolutions")
            self.padding = padding
        else:
            self.padding = _pair(padding)
        self.padding_mode = padding_mode
        weight_shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        add_weight_and_bias(self, weight_shape, bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_weight_and_bias(self)

    def forward(self, input):
        check_float(self, input, self.weight.dtype)
        if input.ndim not in (3, 4) or input.shape[-3] != self.in_channels:
            c = self.in_channels
            bad_shape(self, input, f"(N, {c}, H, W) or ({c}, H, W)")
        return run_op(
            self, F.conv2d, input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class MaxPool2d(Module):
    """Max over each window; ``return_indices=True`` also returns the flat (H*W) positions."""

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False, ceil_mode: bool = False
    ):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        return _pool(
            self,
            F.max_pool2d,
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(Module):
    """Mean over each window (``count_include_pad``, ``divisor_override`` as in PyTorch)."""

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override=None,
    ):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input):
        return _pool(
            self,
            F.avg_pool2d,
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Mean over PyTorch's adaptive windows giving ``output_size`` (int or pair; None keeps)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return _pool(self, F.adaptive_avg_pool2d, input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
