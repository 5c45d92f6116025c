"""2-D convolution: ``conv2d`` and ``conv2d_backward`` with PyTorch's semantics.

NCHW activations, (K, C/groups, R, S) weights. The kernels (csrc/cpu/conv) run the convolution as
blocked GEMMs over chunks of im2col columns, Winograd F(4x4, 3x3) or F(2x2, 3x3), or direct depthwise loops; inputs
that are not C-contiguous are copied once. :class:`ConvPlan` packs a layer's weights once for
inference.

bfloat16 (``deepkern.bfloat16``, CPU) x, w and b give bfloat16 outputs and gradients, as PyTorch:
the kernels multiply on the bfloat16 GEMM with float32 sums (the weight and bias gradients summed
over the batch in float32) and round each result once. x, w, b and grad_out share one dtype;
mixing bfloat16 with float32 is a TypeError naming both (under ``deepkern.autocast`` the
convolution's arguments are all cast to bfloat16 before the op).
"""

from __future__ import annotations

import threading

import numpy as np

from ..backends import backend_of
from ._validate import backward_needs, check_index, is_bfloat16
from .gemm import _as_operand


def _pair(value, name: str, op: str, minimum: int) -> tuple:
    """An int, a 1-tuple or a pair of ints, each >= minimum, as a pair (an int or 1-tuple serves both
    dimensions, as in PyTorch)."""
    values = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return check_index(int(values[0]), name, op), check_index(int(values[1]), name, op)


def _check_groups(groups, op: str) -> None:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be an int >= 1, got {groups!r}")


class _Geometry:
    """Validated shapes and options of one convolution (what the kernels receive)."""

    def __init__(self, op, x_shape, x_dtype, w, stride, padding, dilation, groups):
        if len(x_shape) not in (3, 4):
            raise ValueError(f"{op}: x must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x_shape}")
        if w.ndim != 4:
            raise ValueError(f"{op}: w must be 4-D (K, C/groups, R, S), got shape {w.shape}")
        if x_dtype != w.dtype:
            raise TypeError(f"{op}: x and w must have the same dtype, got {x_dtype} and {w.dtype}")
        _check_groups(groups, op)
        self.unbatched = len(x_shape) == 3
        n, c, h, width = (1,) + x_shape if self.unbatched else x_shape
        k, c_per_group, r, s = w.shape
        if r < 1 or s < 1:
            raise ValueError(f"{op}: kernel size should be greater than zero, got w of shape {w.shape}")
        if c % groups or k % groups:
            raise ValueError(
                f"{op}: groups={groups} must divide the input channels C={c} (x {x_shape}) and the "
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
        self.padding, self.padding_end = pad_begin, pad_end  # they differ only for 'same' with an even span
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

    def unbatch_shape(self, shape: tuple) -> tuple:
        return shape[1:] if self.unbatched else shape


def _check_grad_out(grad_out, expected: tuple, x, w, op: str) -> None:
    """grad_out has the forward output's shape ``expected`` and x's dtype."""
    if grad_out.shape != expected:
        raise ValueError(
            f"{op}: grad_out must have the output's shape {expected} (x {x.shape}, w {w.shape}), got {grad_out.shape}"
        )
    if grad_out.dtype != x.dtype:
        raise TypeError(f"{op}: grad_out must have dtype {x.dtype}, got {grad_out.dtype}")


def _channel_sums(dy):
    """``dy`` (N, K, P, Q) summed over N, P and Q in its dtype: bfloat16 summed in float32 and
    rounded once."""
    if is_bfloat16(dy.dtype):
        return dy.sum(axis=(0, 2, 3), dtype=np.float32).astype(dy.dtype)
    return dy.sum(axis=(0, 2, 3))


def _bias(b, k: int, dtype, op: str):
    if b is None:
        return None
    b = _as_operand(b, "b", op)
    if b.shape != (k,):
        raise ValueError(f"{op}: b must have shape ({k},) (one per output channel), got {b.shape}")
    if b.dtype != dtype:
        raise TypeError(f"{op}: b must have dtype {dtype}, got {b.dtype}")
    return b


_CONV_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}


class ConvPlan:
    """A convolution's weights packed once for inference, for ``conv2d(x, plan, b)``.

    ``ConvPlan(w, stride=1, padding=0, dilation=1, groups=1)`` validates the options as
    :func:`conv2d` does, keeps a C-contiguous copy of ``w`` (K, C/groups, R, S) and, where the CPU
    kernels would take the Winograd path for some input (3x3, stride 1, no dilation, one group,
    padding <= 2, >= 64 channels in and out, finite weights), its transformed weights, so that calls
    skip the weight transform: ``winograd_weights``, the (36, K, C) F(4x4, 3x3) transform (the
    variant outputs larger than 6 x 6 run). Inputs whose forward reads the transformed weights in
    another layout (F(2x2, 3x3): a side of 2, 5 x 5 to 6 x 6; fewer tiles than the weights have values,
    in the GEMM's panels) get them packed in that layout on their first call. Inputs whose forward runs
    as Y^T = col^T W^T (small batches of small images with many output channels) get ``w``'s transpose
    packed as the GEMM's B panels on their first call, and inputs whose forward writes col(X) as the
    GEMM's B panels (the stride-2 stem's row blocks; float32 layers of stride 1 whose output is as
    wide as the input) get ``w`` packed as its A panels, kept per input shape (the last
    :attr:`MAX_INPUT_SHAPES`). The plan
    works on any device; only the CPU packs more than the copy.

    Contract for callers that cache plans (a model in ``eval()`` packing each layer once):

    - ``conv2d(x, plan, b)`` equals ``conv2d(x, w, b, **options)`` on the weights the plan was made
      from, to float32 rounding; the options come from the plan (options passed to ``conv2d`` must be
      left at their defaults or equal the plan's, else ValueError); ``b`` is passed as usual.
    - The plan never sees later changes of ``w``: whoever changes the weights (an optimizer step,
      ``load_state_dict``, an in-place init, ``train()``) must call :meth:`invalidate` and make a new
      plan. Using an invalidated plan raises RuntimeError; ``plan.valid`` tells.
    - x must have the plan's dtype and device (TypeError / ValueError as for ``w``).
    """

    #: Input shapes whose packed GEMM weights a plan keeps (each about the size of ``w``).
    MAX_INPUT_SHAPES = 4

    def __init__(self, w, *, stride=1, padding=0, dilation=1, groups=1):
        op = "ConvPlan"
        w = _as_operand(w, "w", op)
        if w.ndim != 4:
            raise ValueError(f"{op}: w must be 4-D (K, C/groups, R, S), got shape {w.shape}")
        _check_groups(groups, op)
        # An input just large enough for one output validates the options and resolves the padding.
        spans = [d * (r - 1) + 1 for d, r in zip(_pair(dilation, "dilation", op, 1), w.shape[2:])]
        geo = _Geometry(op, (1, w.shape[1] * groups, *spans), w.dtype, w, stride, padding, dilation, groups)
        backend = backend_of(w, op=op)
        self.options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        self.weight = w.copy()  # C-contiguous
        self._pack_winograd = getattr(backend, "conv2d_pack_winograd_weights", None)
        self.winograd_weights = (
            None if self._pack_winograd is None else self._pack_winograd(self.weight, *geo.options())
        )
        self._pack_gemm = getattr(backend, "conv2d_pack_gemm_weights", None)
        self._by_input = {}  # input shape -> {kernel argument: packed weights} of that input
        self._lock = threading.Lock()  # guards _gemm_weights: threads may share a plan (the kernels release the GIL)
        self._valid = True

    @property
    def valid(self) -> bool:
        """False once :meth:`invalidate` was called."""
        return self._valid

    def invalidate(self) -> None:
        """Marks the plan stale (its weights changed): every later use raises RuntimeError."""
        self._valid = False
        self.weight = self.winograd_weights = None
        with self._lock:
            self._by_input.clear()

    def _kernel_weights(self, geo: "_Geometry") -> dict:
        """The packed weights for a call of this geometry, as the forward kernel's keyword arguments:
        the GEMM's, and the Winograd weights in the layout of this input (the shared (36, K, C) ones
        where that is it), packed on the input shape's first call."""
        if self._pack_gemm is None:  # a backend that packs nothing per input
            return {} if self.winograd_weights is None else {"winograd_weights": self.winograd_weights}
        key = geo.x_shape
        with self._lock:
            if key not in self._by_input:
                if len(self._by_input) >= self.MAX_INPUT_SHAPES:
                    del self._by_input[next(iter(self._by_input))]
                winograd = self.winograd_weights
                if winograd is not None:
                    for_input = self._pack_winograd(self.weight, *geo.options(), key, geo.out_shape)
                    winograd = winograd if for_input is None or for_input.shape == winograd.shape else for_input
                packed = {
                    "winograd_weights": winograd,
                    "gemm_weights": self._pack_gemm(self.weight, key, geo.out_shape, *geo.options()),
                }
                self._by_input[key] = {name: array for name, array in packed.items() if array is not None}
            return self._by_input[key]

    def resolve(self, op: str, given: dict) -> dict:
        """The options of a call with this plan: ``given`` (the call's options) must be left at their
        defaults or equal the plan's."""
        if not self._valid:
            raise RuntimeError(f"{op}: this ConvPlan was invalidated (its weights changed); make a new one")
        for name, value in given.items():
            if _as_read(value) not in (_as_read(_CONV_DEFAULTS[name]), _as_read(self.options[name])):
                raise ValueError(f"{op}: {name}={value!r} differs from the ConvPlan's {name}={self.options[name]!r}")
        return self.options


def _as_read(option):
    """A convolution option as the ops read it: an int of stride, padding or dilation as the pair it
    stands for (so 2 and (2, 2) compare equal); anything else as it is."""
    if isinstance(option, (tuple, list)):
        return tuple(option)
    return option if isinstance(option, str) else (option, option)


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch) of x (N, C, H, W) or (C, H, W) with
    w (K, C/groups, R, S), plus b (K,) if given.

    ``stride``, ``dilation``: int or pair, >= 1; ``padding``: int or pair >= 0, or ``'same'``
    (stride 1; odd total padding puts the extra row/column at the end) or ``'valid'`` (no padding);
    ``groups`` divides C and K (``groups == C`` is a depthwise convolution).
    ``w`` may be a :class:`ConvPlan` (weights packed once; its options are the call's).
    Returns (N, K, P, Q), or (K, P, Q) for an unbatched x.
    """
    plan = None
    if isinstance(w, ConvPlan):
        options = w.resolve("conv2d", {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups})
        stride, padding, dilation, groups = (options[name] for name in _CONV_DEFAULTS)
        plan, w = w, w.weight
    x = _as_operand(x, "x", "conv2d")
    w = _as_operand(w, "w", "conv2d")
    geo = _Geometry("conv2d", x.shape, x.dtype, w, stride, padding, dilation, groups)
    bias = _bias(b, w.shape[0], x.dtype, "conv2d")
    backend = backend_of(x, w, bias, op="conv2d")
    contiguous = backend.ascontiguousarray
    y = backend.empty(geo.out_shape, x.dtype)
    extra = {} if plan is None else plan._kernel_weights(geo)
    backend.conv2d_forward(
        contiguous(geo.batched(x)),
        contiguous(w),
        None if bias is None else contiguous(bias),
        y,
        *geo.options(),
        **extra,
    )
    return geo.unbatch(y)


def conv2d_backward(grad_out, x, w, *, stride=1, padding=0, dilation=1, groups=1, needs=(True, True, True)):
    """Gradients of ``conv2d(x, w, b, ...)`` given ``grad_out`` (the gradient of its output).

    Returns ``(grad_x, grad_w, grad_b)``; each is computed only when the matching flag of
    ``needs`` is true, and is None otherwise. ``grad_b`` is ``grad_out`` summed over N, P and Q.
    """
    x = _as_operand(x, "x", "conv2d_backward")
    w = _as_operand(w, "w", "conv2d_backward")
    grad_out = _as_operand(grad_out, "grad_out", "conv2d_backward")
    geo = _Geometry("conv2d_backward", x.shape, x.dtype, w, stride, padding, dilation, groups)
    need_x, need_w, need_b = backward_needs(needs, "conv2d_backward", "x, w, b")
    _check_grad_out(grad_out, geo.unbatch_shape(geo.out_shape), x, w, "conv2d_backward")
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
            grad_b[...] = _channel_sums(dy)
    return grad_x, grad_w, grad_b


# ---- transposed convolution ---------------------------------------------------------------------
#
# conv_transpose2d(x, w) is the data gradient of the convolution whose input has the transposed
# convolution's output shape and whose output has x's: the kernels' conv2d_backward_data computes
# it, with w (C, K/groups, R, S) in the convolution's (K', C'/groups, R, S) layout as it is. Its
# backward is that convolution's forward (grad_x) and weight gradient with the roles of x and
# grad_out swapped (grad_w).


def _transposed(op, x, w, stride, padding, output_padding, groups, dilation) -> _Geometry:
    """The convolution whose data gradient is ``conv_transpose2d(x, w, ...)``. Its output shape
    (``out_shape``) is x's batched shape, or larger by ``output_padding // stride`` rows/columns
    when ``output_padding >= stride`` (allowed while it is below ``dilation``): x is then padded
    with zeros at the end (see ``_fit``)."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: x must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}")
    if 0 in x.shape[-3:]:
        raise ValueError(f"{op}: x must have non-zero C, H and W, got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"{op}: w must be 4-D (C, K/groups, R, S), got shape {w.shape}")
    if min(w.shape[2:]) < 1:
        raise ValueError(f"{op}: kernel size should be greater than zero, got w of shape {w.shape}")
    _check_groups(groups, op)
    c = x.shape[-3]
    if w.shape[0] != c or c % groups:
        raise ValueError(
            f"{op}: w {w.shape} must have x's C={c} input channels (x {x.shape}) in dimension 0, "
            f"and groups={groups} must divide C"
        )
    stride, dilation = _pair(stride, "stride", op, 1), _pair(dilation, "dilation", op, 1)
    pad, out_pad = _pair(padding, "padding", op, 0), _pair(output_padding, "output_padding", op, 0)
    if any(o >= max(s, d) for o, s, d in zip(out_pad, stride, dilation)):
        raise ValueError(
            f"{op}: output_padding {out_pad} must be smaller than stride {stride} or dilation {dilation} "
            f"in each dimension"
        )
    out_hw = tuple(
        (n - 1) * s - 2 * p + d * (r - 1) + o + 1
        for n, s, p, d, r, o in zip(x.shape[-2:], stride, pad, dilation, w.shape[-2:], out_pad)
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"{op}: output size {out_hw} is not positive: input {x.shape[-2:]}, kernel {w.shape[-2:]}, "
            f"stride {stride}, padding {pad}, dilation {dilation}, output_padding {out_pad}"
        )
    conv_input = x.shape[:-3] + (w.shape[1] * groups,) + out_hw
    return _Geometry(op, conv_input, x.dtype, w, stride, pad, dilation, groups)


def _fit(backend, arr, shape: tuple):
    """``arr`` (N, C, H, W), C-contiguous, zero-padded at the end of H and W to ``shape``."""
    if arr.shape == shape:
        return backend.ascontiguousarray(arr)
    fitted = backend.zeros(shape, arr.dtype)
    fitted[:, :, : arr.shape[2], : arr.shape[3]] = arr
    return fitted


def conv_transpose2d(x, w, b=None, *, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution (PyTorch's ``F.conv_transpose2d``): x (N, C, H, W) or (C, H, W)
    with w (C, K/groups, R, S), plus b (K,) if given; each input pixel scatters itself times the
    kernel into the output at stride spacing, then ``padding`` is cropped from every border.

    The output is (N, K, H_out, W_out), ``H_out = (H - 1) * stride - 2 * padding + dilation * (R - 1)
    + output_padding + 1`` (W likewise); ``output_padding`` (added at the bottom/right) must be
    smaller than ``stride`` or ``dilation``; ``groups`` divides C and K.
    """
    op = "conv_transpose2d"
    x, w = _as_operand(x, "x", op), _as_operand(w, "w", op)
    geo = _transposed(op, x, w, stride, padding, output_padding, groups, dilation)
    bias = _bias(b, geo.x_shape[1], x.dtype, op)
    backend = backend_of(x, w, bias, op=op)
    y = backend.empty(geo.x_shape, x.dtype)
    dy = _fit(backend, geo.batched(x), geo.out_shape)
    backend.conv2d_backward_data(dy, backend.ascontiguousarray(w), y, *geo.options())
    if bias is not None:
        y += bias.reshape(-1, 1, 1)
    return geo.unbatch(y)


def conv_transpose2d_backward(
    grad_out, x, w, *, stride=1, padding=0, output_padding=0, groups=1, dilation=1, needs=(True, True, True)
):
    """Gradients ``(grad_x, grad_w, grad_b)`` of ``conv_transpose2d(x, w, b, ...)`` given
    ``grad_out``; each only when its flag of ``needs`` is true, else None. grad_x is
    ``conv2d(grad_out, w, ...)`` (cropped to x's size), grad_b ``grad_out`` summed over N, H and W.
    """
    op = "conv_transpose2d_backward"
    x, w = _as_operand(x, "x", op), _as_operand(w, "w", op)
    grad_out = _as_operand(grad_out, "grad_out", op)
    geo = _transposed(op, x, w, stride, padding, output_padding, groups, dilation)
    need_x, need_w, need_b = backward_needs(needs, op, "x, w, b")
    _check_grad_out(grad_out, geo.unbatch_shape(geo.x_shape), x, w, op)
    backend = backend_of(grad_out, x, w, op=op)
    contiguous = backend.ascontiguousarray
    dy = contiguous(geo.batched(grad_out))
    grad_x = grad_w = grad_b = None
    if need_x:
        grad_x = backend.empty(geo.out_shape, x.dtype)
        backend.conv2d_forward(dy, contiguous(w), None, grad_x, *geo.options())
        h, width = x.shape[-2:]
        grad_x = geo.unbatch(contiguous(grad_x[:, :, :h, :width]))
    if need_w:
        grad_w = backend.empty(w.shape, x.dtype)
        backend.conv2d_backward_weight(_fit(backend, geo.batched(x), geo.out_shape), dy, grad_w, None, *geo.options())
    if need_b:
        grad_b = _channel_sums(dy)
    return grad_x, grad_w, grad_b
