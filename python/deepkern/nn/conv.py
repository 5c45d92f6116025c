"""Convolution and pooling layers on NCHW (or CHW) input, their 1-D forms on NCL (or CL) input and
their 3-D forms on NCDHW (or CDHW) input: ``Conv1d``, ``Conv2d``, ``Conv3d``, ``ConvTranspose1d``,
``ConvTranspose2d``, ``ConvTranspose3d``, ``MaxPool1d``, ``MaxPool2d``, ``MaxPool3d``,
``FractionalMaxPool2d``, ``FractionalMaxPool3d``, ``AvgPool1d``, ``AvgPool2d``, ``AvgPool3d``,
``AdaptiveAvgPool1d``, ``AdaptiveAvgPool2d``, ``AdaptiveAvgPool3d``, ``AdaptiveMaxPool1d``,
``AdaptiveMaxPool2d``, ``AdaptiveMaxPool3d``, ``LPPool1d``, ``LPPool2d``, ``LPPool3d`` (PyTorch's
signatures, defaults, parameter names, weight shapes, initialisation and reprs); ``PixelShuffle``
and ``PixelUnshuffle``, the channel-to-space rearrangements of sub-pixel convolution, and
``ChannelShuffle``."""

from __future__ import annotations

import numpy as np

from ..ops.conv import _bias, _Geometry
from ..ops.pool import _adaptive_size, _kernel_shape, _window
from . import functional as F
from ._inference import CPU, cached_plan, conv_bn_arrays, folded, host_array, infer, infer_alone, kept, member
from ._layer import (
    add_weight_and_bias,
    bad_shape,
    check_float,
    check_ndim,
    describe,
    empty_parameter,
    factory_kwargs,
    reset_weight_and_bias,
    run_op,
)
from .module import Module

__all__ = [
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
    "ChannelShuffle",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "FractionalMaxPool2d",
    "FractionalMaxPool3d",
    "AvgPool3d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "PixelShuffle",
    "PixelUnshuffle",
]

_NCHW = "(N, C, H, W) or (C, H, W)"


_NCL = "(N, C, L) or (C, L)"
_NCDHW = "(N, C, D, H, W) or (C, D, H, W)"


def _kernel_step(kernel, shape, dtype, *args):
    """A pooling layer's inference step (see _inference.py): ``kernel(x, y, *args)`` into a new
    array ``y`` of ``shape`` and ``dtype``."""

    def step(x):
        y = np.empty(shape, dtype)
        kernel(x, y, *args)
        return y

    return step


def _pool(module, function, input, *args):
    """A pooling layer's forward: float input with the layer's ``dims`` spatial dimensions
    (batched or not), errors naming the layer."""
    check_float(module, input, bfloat16=True)
    dims = getattr(module, "dims", 2)
    check_ndim(module, input, (dims + 1, dims + 2), (_NCL, _NCHW, _NCDHW)[dims - 1])
    return run_op(module, function, input, *args)


def _ntuple(value, n: int) -> tuple:
    """An int, or a sequence of 1 or n, as an n-tuple (PyTorch's _single/_pair)."""
    if isinstance(value, (tuple, list)):
        return tuple(value) if len(value) != 1 else tuple(value) * n
    return (value,) * n


class _ConvNd(Module):
    """What Conv1d/Conv2d/ConvTranspose1d/ConvTranspose2d share: arguments, the weight
    ``(out_channels, in_channels / groups, *kernel_size)`` (transposed:
    ``(in_channels, out_channels / groups, *kernel_size)``), PyTorch's initialisation
    (kaiming_uniform_(a=sqrt(5)); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))), input checks and repr.
    ``padding_mode`` 'reflect', 'replicate' or 'circular' (convolutions only, as in PyTorch) pads the
    input with ``F.pad`` in that mode, then convolves without padding."""

    dims = 2  # spatial dimensions
    transposed = False

    @property
    def padding_mode(self) -> str:
        return self.__dict__["_padding_mode"]

    @padding_mode.setter
    def padding_mode(self, mode) -> None:  # checked whenever set: a later assignment had been ignored
        allowed = ("zeros",) if self.transposed else ("zeros", "reflect", "replicate", "circular")
        if mode not in allowed:
            raise ValueError(f"{type(self).__name__}: padding_mode must be one of {allowed}, got {mode!r}")
        self.__dict__["_padding_mode"] = mode

    def _mode_padding(self) -> list:
        """The input's padding for F.pad (last dimension first, each side) in a non-zeros padding mode."""
        if self.padding == "valid":
            return [0, 0] * self.dims
        if self.padding == "same":
            sides = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            pairs = [(total // 2, total - total // 2) for total in sides]
        else:
            pairs = [(p, p) for p in self.padding]
        return [side for pair in reversed(pairs) for side in pair]

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
        self._setup(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device, dtype
        )

    def _setup(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding,
        dilation,
        groups,
        bias,
        padding_mode,
        device,
        dtype,
        output_padding=0,
    ):
        name, n = type(self).__name__, self.dims
        factory = factory_kwargs(name, dtype, device)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: groups={groups} must be positive and divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size, self.stride, self.dilation = (_ntuple(v, n) for v in (kernel_size, stride, dilation))
        self.output_padding = _ntuple(output_padding, n)
        if any(o >= max(s, d) for o, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(
                f"{name}: output_padding={self.output_padding} must be smaller than stride={self.stride} "
                f"or dilation={self.dilation} in each dimension"
            )
        if isinstance(padding, str):
            if self.transposed or padding not in ("same", "valid"):
                allowed = "" if self.transposed else ", 'same' or 'valid'"
                raise ValueError(f"{name}: padding must be an int or a tuple{allowed}, got {padding!r}")
            if padding == "same" and any(v != 1 for v in self.stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions")
            self.padding = padding
        else:
            self.padding = _ntuple(padding, n)
        self.padding_mode = padding_mode
        if self.transposed:  # the bias is one per output channel, dimension 1 of the weight
            add_weight_and_bias(
                self, (self.in_channels, self.out_channels // self.groups) + self.kernel_size, False, **factory
            )
            if bias:
                self.bias = empty_parameter((self.out_channels,), **factory)
        else:
            add_weight_and_bias(
                self, (self.out_channels, self.in_channels // self.groups) + self.kernel_size, bias, **factory
            )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_weight_and_bias(self)

    def _checked(self, input) -> None:
        """The input is float of the layer's dtype, (N, in_channels, *spatial) or unbatched."""
        check_float(self, input, self.weight.dtype, bfloat16=True)
        n, c = self.dims, self.in_channels
        if input.ndim not in (n + 1, n + 2) or input.shape[-n - 1] != c:
            spatial = ("L", "H, W", "D, H, W")[n - 1]
            bad_shape(self, input, f"(N, {c}, {spatial}) or ({c}, {spatial})")

    def forward(self, input):
        x = host_array(input) if self.dims == 2 else None
        if x is not None:
            y = infer(self, x)
            if y is not None:
                return y
        self._checked(input)
        function = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        padding = self.padding
        if self.padding_mode != "zeros":
            input, padding = F.pad(input, self._mode_padding(), mode=self.padding_mode), 0
        return run_op(self, function, input, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)

    def _infer_step(self, x, bn=None, relu=False):
        """The inference step for arrays shaped and typed as ``x`` (from _inference.host_array): the
        2-D convolution on the kernel with ``bn`` (an eval-mode BatchNorm2d) folded in and, when
        ``relu``, the ReLU applied by the convolution kernel on its output. Everything but the call
        (the checks, the folded and packed weights) is made once per input shape and weights
        (_conv_step, kept until an array is replaced or written in place). None where the ordinary
        path must run (not 2-D, weights on another device or not contiguous)."""
        if x.dtype not in (np.float32, np.float64) or self.padding_mode != "zeros":  # bfloat16, padding modes:
            return None  # the ordinary path
        bias = member(self, "bias")
        weight = member(self, "weight")._array
        arrays = (weight, None if bias is None else bias._array) if bn is None else conv_bn_arrays(self, bn)
        config = (x.shape, x.dtype, self.stride, self.padding, self.dilation, self.groups, relu)
        key = config + (None if bn is None else (id(bn), bn.eps), *map(id, arrays))
        return kept(self, "_plan", key, arrays, lambda: self._conv_step(x, arrays, bn, relu))

    def _conv_step(self, x, arrays, bn, relu):
        """The step (see _infer_step) convolving arrays shaped and typed as ``x`` by ``arrays``
        (weight and bias, or _inference.conv_bn_arrays with ``bn`` to fold), validated as
        ``ops.conv2d`` does (errors name the layer), with the weights packed for that input shape
        (Winograd, GEMM panels; each None where there are none); None unless x is 4-D and the
        weights are contiguous NumPy arrays."""
        self._checked(x)
        w, b = arrays[:2] if bn is None else folded(arrays, bn.eps)
        if x.ndim != 4 or any(type(a) is not np.ndarray or not a.flags.c_contiguous for a in (w, b) if a is not None):
            return None
        geo = run_op(
            self, _Geometry, "conv2d", x.shape, x.dtype, w, self.stride, self.padding, self.dilation, self.groups
        )
        run_op(self, _bias, b, w.shape[0], x.dtype, "conv2d")
        shape, dtype, options = geo.out_shape, x.dtype, geo.options()
        winograd = CPU.conv2d_pack_winograd_weights(w, *options, x.shape, shape)
        panels = CPU.conv2d_pack_gemm_weights(w, x.shape, shape, *options)
        kernel = CPU.conv2d_forward

        def step(x):
            y = np.empty(shape, dtype)
            kernel(x, w, b, y, *options, winograd, panels, relu)  # positional: keywords cost ~0.6 us a call
            return y

        step.packed = (winograd, panels)  # the packed weights it convolves with (None: not packed)
        return step

    def extra_repr(self) -> str:
        n = self.dims
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv1d(_ConvNd):
    """1-D convolution of ``(N, in_channels, L)`` input with weight
    ``(out_channels, in_channels / groups, kernel_size)``."""

    dims = 1


class Conv2d(_ConvNd):
    """2-D convolution of ``(N, in_channels, H, W)`` input with weight
    ``(out_channels, in_channels / groups, kH, kW)``."""

    dims = 2


class Conv3d(_ConvNd):
    """3-D convolution of ``(N, in_channels, D, H, W)`` input with weight
    ``(out_channels, in_channels / groups, kD, kH, kW)`` (``F.conv3d``: the depth taps run as channels
    of one 2-D convolution)."""

    dims = 3


class _ConvTransposeNd(_ConvNd):
    """The transposed convolutions: PyTorch's argument order, and ``forward(input,
    output_size=None)`` picks the output_padding that gives ``output_size``."""

    transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        bias: bool = True,
        dilation=1,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ):
        Module.__init__(self)  # the arguments are _setup's, in PyTorch's transposed order
        self._setup(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
            output_padding,
        )

    def _output_padding(self, input, output_size) -> tuple:
        """``self.output_padding``, or the one giving ``output_size`` (the spatial sizes, possibly
        preceded by the batch and channel sizes), which must lie within ``stride - 1`` of the
        smallest output."""
        if output_size is None:
            return self.output_padding
        n = self.dims
        size = tuple(output_size)
        if len(size) == input.ndim:
            size = size[-n:]
        if len(size) != n:
            raise ValueError(
                f"{describe(self)}: output_size must have {n} or {input.ndim} elements for input of shape "
                f"{tuple(input.shape)}, got {tuple(output_size)!r}"
            )
        smallest = tuple(
            (i - 1) * s - 2 * p + d * (k - 1) + 1
            for i, s, p, d, k in zip(input.shape[-n:], self.stride, self.padding, self.dilation, self.kernel_size)
        )
        largest = tuple(m + s - 1 for m, s in zip(smallest, self.stride))
        if any(not lo <= v <= hi for v, lo, hi in zip(size, smallest, largest)):
            raise ValueError(
                f"{describe(self)}: requested output_size {size}, but valid sizes range from {smallest} to "
                f"{largest} for input of shape {tuple(input.shape)}"
            )
        return tuple(v - lo for v, lo in zip(size, smallest))

    def forward(self, input, output_size=None):
        self._checked(input)
        function = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[self.dims - 1]
        output_padding = self._output_padding(input, output_size)
        return run_op(
            self,
            function,
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            output_padding,
            self.groups,
            self.dilation,
        )


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution of ``(N, in_channels, L)`` input with weight
    ``(in_channels, out_channels / groups, kernel_size)``."""

    dims = 1


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution of ``(N, in_channels, H, W)`` input with weight
    ``(in_channels, out_channels / groups, kH, kW)``."""

    dims = 2


class ConvTranspose3d(_ConvTransposeNd):
    """3-D transposed convolution of ``(N, in_channels, D, H, W)`` input with weight
    ``(in_channels, out_channels / groups, kD, kH, kW)`` (F.conv_transpose3d)."""

    dims = 3


class _MaxPoolNd(Module):
    """Max over each window; ``return_indices=True`` also returns the flat positions in each plane
    (``h * W + w``; along L for MaxPool1d)."""

    dims = 2

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False, ceil_mode: bool = False
    ):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        y = infer_alone(self, input)
        if y is not None:
            return y
        return _pool(
            self,
            (F.max_pool1d, F.max_pool2d, F.max_pool3d)[self.dims - 1],
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
        )

    def _infer_step(self, x, bn=None, relu=False):
        """The inference step for arrays shaped and typed as ``x`` (from _inference.host_array): the
        2-D pooling kernel, the arguments validated once per input shape; None where the ordinary
        path must run (1-D, ``return_indices``, a dtype the kernel lacks)."""
        if self.dims != 2 or self.return_indices:
            return None
        config = (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        return cached_plan(self, x, (), config, lambda: self._pool_step(x))

    def _pool_step(self, x):
        """The step pooling arrays shaped and typed as ``x``, validated as ``ops.max_pool2d`` does
        (errors name the layer); None for a dtype the kernel lacks."""
        _pool(self, lambda *args: None, x)  # the layer's own checks
        if x.dtype not in (np.float32, np.float64):
            return None
        window = (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        kernel, stride, padding, dilation, out_hw = run_op(self, _window, "max_pool2d", x.shape, *window)
        shape = _kernel_shape(x.shape, out_hw, kernel, stride, padding, dilation)
        return _kernel_step(CPU.max_pool2d, x.shape[:-2] + out_hw, x.dtype, None, shape)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class MaxPool1d(_MaxPoolNd):
    """Max over each window of ``(N, C, L)`` or ``(C, L)`` input."""

    dims = 1


class MaxPool2d(_MaxPoolNd):
    """Max over each window of ``(N, C, H, W)`` or ``(C, H, W)`` input."""


class MaxPool3d(_MaxPoolNd):
    """Max over each window of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input (F.max_pool3d: the 2-D
    kernel per depth plane, then the max along depth); ``return_indices`` gives flat D*H*W positions."""

    dims = 3


class _FractionalMaxPoolNd(Module):
    """Fractional max pooling (F.fractional_max_pool2d or 3d, by ``dims``) to ``output_size`` or
    ``output_ratio`` (in (0, 1)) of the input's size; ``_random_samples`` (a buffer, None: drawn at each
    call) fixes the windows, ``return_indices`` also returns the flat positions taken."""

    dims = 2

    def __init__(
        self, kernel_size, output_size=None, output_ratio=None, return_indices: bool = False, _random_samples=None
    ):
        super().__init__()
        name, n = type(self).__name__, self.dims
        self.kernel_size = _ntuple(kernel_size, n)
        self.return_indices = return_indices
        self.register_buffer("_random_samples", _random_samples)
        self.output_size = None if output_size is None else _ntuple(output_size, n)
        self.output_ratio = None if output_ratio is None else _ntuple(output_ratio, n)
        if output_size is None and output_ratio is None:
            raise ValueError(f"{name} requires specifying either an output size, or a pooling ratio")
        if output_size is not None and output_ratio is not None:
            raise ValueError(f"{name}: only one of output_size and output_ratio may be specified")
        if self.output_ratio is not None and not all(0 < r < 1 for r in self.output_ratio):
            raise ValueError(f"{name}: output_ratio must be between 0 and 1 (got {output_ratio})")

    def forward(self, input):
        function = F.fractional_max_pool2d if self.dims == 2 else F.fractional_max_pool3d
        return run_op(
            self,
            function,
            input,
            self.kernel_size,
            self.output_size,
            self.output_ratio,
            self.return_indices,
            _random_samples=self._random_samples,
        )


class FractionalMaxPool2d(_FractionalMaxPoolNd):
    """Fractional max pooling of ``(N, C, H, W)`` or ``(C, H, W)`` input (F.fractional_max_pool2d)."""


class FractionalMaxPool3d(_FractionalMaxPoolNd):
    """Fractional max pooling of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input (F.fractional_max_pool3d)."""

    dims = 3


class AvgPool1d(Module):
    """Mean over each window of ``(N, C, L)`` or ``(C, L)`` input (``count_include_pad`` as in
    PyTorch, whose AvgPool1d has no ``divisor_override``)."""

    dims = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__()
        self.kernel_size = _ntuple(kernel_size, 1)
        self.stride = _ntuple(stride if stride is not None else kernel_size, 1)
        self.padding = _ntuple(padding, 1)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, input):
        args = (self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)
        return _pool(self, F.avg_pool1d, input, *args)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """Mean over each window (``count_include_pad``, ``divisor_override`` as in PyTorch)."""

    function = staticmethod(F.avg_pool2d)

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
            self.function,
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


class AvgPool3d(AvgPool2d):
    """Mean over each window of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input (F.avg_pool3d: the 2-D
    kernel per depth plane, then the mean along depth; PyTorch's divisors)."""

    dims = 3
    function = staticmethod(F.avg_pool3d)


class AdaptiveAvgPool2d(Module):
    """Mean over PyTorch's adaptive windows giving ``output_size`` (int or pair; None keeps)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        y = infer_alone(self, input)
        if y is not None:
            return y
        return _pool(self, F.adaptive_avg_pool2d, input, self.output_size)

    def _infer_step(self, x, bn=None, relu=False):
        """The inference step for arrays shaped and typed as ``x`` (from _inference.host_array): the
        pooling kernel, the arguments validated once per input shape; None where the ordinary path
        must run (a dtype the kernel lacks, an empty output)."""
        return cached_plan(self, x, (), (self.output_size,), lambda: self._pool_step(x))

    def _pool_step(self, x):
        """The step pooling arrays shaped and typed as ``x``, validated as
        ``ops.adaptive_avg_pool2d`` does (errors name the layer); None for a dtype the kernel lacks
        or an empty output."""
        _pool(self, lambda *args: None, x)  # the layer's own checks
        out_hw = run_op(self, _adaptive_size, self.output_size, x.shape, "adaptive_avg_pool2d")
        if x.dtype not in (np.float32, np.float64) or 0 in out_hw:
            return None
        return _kernel_step(CPU.adaptive_avg_pool2d, x.shape[:-2] + out_hw, x.dtype, _kernel_shape(x.shape, out_hw))

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class _AdaptivePoolNd(Module):
    """An adaptive pooling layer: its ``output_size``, shown as PyTorch shows it."""

    dims = 2

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptivePoolNd):
    """Mean over PyTorch's adaptive windows of ``(N, C, L)`` or ``(C, L)`` input giving
    ``output_size`` (an int or a 1-tuple)."""

    dims = 1

    def forward(self, input):
        return _pool(self, F.adaptive_avg_pool1d, input, self.output_size)


class _AdaptiveMaxPoolNd(_AdaptivePoolNd):
    """Max over PyTorch's adaptive windows; ``return_indices=True`` also returns the flat positions
    in each plane (``h * W + w``; along L for AdaptiveMaxPool1d)."""

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__(output_size)
        self.return_indices = return_indices

    def forward(self, input):
        function = (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)[self.dims - 1]
        return _pool(self, function, input, self.output_size, self.return_indices)


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """Max over PyTorch's adaptive windows of ``(N, C, H, W)`` or ``(C, H, W)`` input giving
    ``output_size`` (an int or a pair; None keeps that input size)."""


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """Max over PyTorch's adaptive windows of ``(N, C, L)`` or ``(C, L)`` input giving
    ``output_size`` (an int or a 1-tuple)."""

    dims = 1


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """Max over PyTorch's adaptive windows of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input giving
    ``output_size`` (an int or a triple; None keeps that input size)."""

    dims = 3


class AdaptiveAvgPool3d(_AdaptivePoolNd):
    """Mean over PyTorch's adaptive windows of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input giving
    ``output_size`` (an int or a triple; None keeps that input size)."""

    dims = 3

    def forward(self, input):
        return _pool(self, F.adaptive_avg_pool3d, input, self.output_size)


class PixelShuffle(Module):
    """``(*, C * r**2, H, W)`` to ``(*, C, H * r, W * r)``, r = ``upscale_factor`` (F.pixel_shuffle)."""

    def __init__(self, upscale_factor: int):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, input):
        return run_op(self, F.pixel_shuffle, input, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """``(*, C, H * r, W * r)`` to ``(*, C * r**2, H, W)``, r = ``downscale_factor`` (F.pixel_unshuffle)."""

    def __init__(self, downscale_factor: int):
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, input):
        return run_op(self, F.pixel_unshuffle, input, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


class _LPPoolNd(Module):
    """The ``norm_type``-norm over each window (``function``: F.lp_pool1d, 2d or 3d)."""

    function = staticmethod(F.lp_pool2d)

    def __init__(self, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False):
        super().__init__()
        self.norm_type, self.kernel_size, self.stride, self.ceil_mode = norm_type, kernel_size, stride, ceil_mode

    def forward(self, input):
        return run_op(self, self.function, input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)

    def extra_repr(self) -> str:
        return (
            f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"ceil_mode={self.ceil_mode}"
        )


class LPPool1d(_LPPoolNd):
    """The ``norm_type``-norm over each window along one dimension (F.lp_pool1d)."""

    function = staticmethod(F.lp_pool1d)


class LPPool2d(_LPPoolNd):
    """The ``norm_type``-norm over each window (F.lp_pool2d)."""


class LPPool3d(_LPPoolNd):
    """The ``norm_type``-norm over each window of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input (F.lp_pool3d)."""

    function = staticmethod(F.lp_pool3d)


class ChannelShuffle(Module):
    """The channels of ``groups`` groups interleaved (F.channel_shuffle; ShuffleNet's)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, input):
        return run_op(self, F.channel_shuffle, input, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
