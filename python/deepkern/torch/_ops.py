"""The custom operators of conv2d, linear, matmul and the Adam step, with their fake functions and
autograd formulas, and the checks every public function of deepkern.torch shares."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .. import ops
from ..ops._validate import check_scalar
from ..ops.conv import _check_groups, _Geometry, _pair

Tensor = torch.Tensor
_FLOATS = (torch.float32, torch.float64)


# ---- shared checks and the NumPy views ----------------------------------------------------------


def check_tensor(op: str, name: str, t, dtype: Optional[torch.dtype] = None) -> torch.dtype:
    """``t`` must be a float32 or float64 CPU tensor (of ``dtype`` when given); returns its dtype.
    Errors name ``deepkern.torch.<op>`` and the argument."""
    if not isinstance(t, Tensor):
        raise TypeError(f"deepkern.torch.{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise NotImplementedError(
            f"deepkern.torch.{op}: {name} is on device '{t.device}'; deepkern's PyTorch operators run on "
            f"CPU tensors only (move it with .cpu())"
        )
    if t.dtype not in _FLOATS:
        raise TypeError(f"deepkern.torch.{op}: {name} must be float32 or float64, got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"deepkern.torch.{op}: {name} has dtype {t.dtype} but the input has {dtype}; use one dtype")
    return t.dtype


def as_numpy(t: Optional[Tensor], op: str):
    """The NumPy view of a CPU tensor's memory (same strides, no copy); None stays None."""
    if t is None:
        return None
    if t.device.type != "cpu":
        raise NotImplementedError(f"deepkern::{op} has no kernel for device '{t.device}' (CPU tensors only)")
    return t.detach().numpy()


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor over the memory of an array a kernel just allocated and wrote (no copy)."""
    return torch.from_numpy(arr)


def shape_text(t: Tensor) -> tuple:
    """A tensor's shape as a plain tuple, as the error messages print it."""
    return tuple(t.shape)


# ---- conv2d -------------------------------------------------------------------------------------


def _conv_options(stride, padding, dilation, groups, same) -> dict:
    """deepkern.ops.conv2d's keyword arguments from the operator's."""
    padding = "same" if same else tuple(padding)
    return {"stride": tuple(stride), "padding": padding, "dilation": tuple(dilation), "groups": groups}


def _conv_geometry(input, weight, bias, options: dict) -> _Geometry:
    """The checked geometry of one convolution; errors name torch's arguments (input, weight, bias)."""
    op = "deepkern.torch.conv2d"
    if input.dim() not in (3, 4):
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {shape_text(input)}")
    if weight.dim() != 4:
        raise ValueError(f"{op}: weight must be 4-D (K, C/groups, R, S), got shape {shape_text(weight)}")
    groups = options["groups"]
    _check_groups(groups, op)
    channels, kernels = input.shape[-3], weight.shape[0]
    if kernels % groups or weight.shape[1] * groups != channels:
        raise ValueError(
            f"{op}: input {shape_text(input)} has C={channels} channels; weight {shape_text(weight)} with "
            f"groups={groups} needs C = groups * weight.shape[1] = {weight.shape[1] * groups} and "
            f"K={kernels} divisible by groups"
        )
    if bias is not None and shape_text(bias) != (kernels,):
        raise ValueError(f"{op}: bias must have shape ({kernels},) (one per output channel), got {shape_text(bias)}")
    return _Geometry(op, shape_text(input), input.dtype, weight, **options)


@torch.library.custom_op("deepkern::conv2d", mutates_args=())
def _conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    same: bool,
) -> Tensor:
    """deepkern's conv2d kernel; ``same`` is padding='same' (then ``padding`` is not read)."""
    options = _conv_options(stride, padding, dilation, groups, same)
    _conv_geometry(input, weight, bias, options)
    op = "conv2d"
    return from_numpy(ops.conv2d(as_numpy(input, op), as_numpy(weight, op), as_numpy(bias, op), **options))


@_conv2d.register_fake
def _(input, weight, bias, stride, padding, dilation, groups, same):
    geo = _conv_geometry(input, weight, bias, _conv_options(stride, padding, dilation, groups, same))
    return input.new_empty(geo.unbatch_shape(geo.out_shape))


@torch.library.custom_op("deepkern::conv2d_backward", mutates_args=())
def _conv2d_backward(
    grad_out: Tensor,
    input: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    same: bool,
    output_mask: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients (input, weight, bias) of deepkern::conv2d; each is empty (0,) when its flag of
    ``output_mask`` is false."""
    op = "conv2d_backward"
    grads = ops.conv2d_backward(
        as_numpy(grad_out, op),
        as_numpy(input, op),
        as_numpy(weight, op),
        **_conv_options(stride, padding, dilation, groups, same),
        needs=tuple(output_mask),
    )
    return tuple(input.new_empty(0) if g is None else from_numpy(g) for g in grads)


@_conv2d_backward.register_fake
def _(grad_out, input, weight, stride, padding, dilation, groups, same, output_mask):
    shapes = (input.shape, weight.shape, (weight.shape[0],))
    return tuple(input.new_empty(shape if needed else (0,)) for shape, needed in zip(shapes, output_mask))


def _conv2d_setup(ctx, inputs, output):
    input, weight, bias, *options = inputs
    ctx.save_for_backward(input, weight)
    ctx.options = options
    ctx.has_bias = bias is not None


def _conv2d_grad(ctx, grad):
    input, weight = ctx.saved_tensors
    need = list(ctx.needs_input_grad[:3])
    need[2] = need[2] and ctx.has_bias
    grads = _conv2d_backward(grad, input, weight, *ctx.options, need)
    return (*(g if n else None for g, n in zip(grads, need)), *([None] * len(ctx.options)))


_conv2d.register_autograd(_conv2d_grad, setup_context=_conv2d_setup)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """``torch.nn.functional.conv2d`` on deepkern's kernels: input (N, C, H, W) or (C, H, W), weight
    (K, C/groups, R, S), bias (K,) or None; stride, dilation: int or pair >= 1; padding: int or pair
    >= 0, 'valid' or 'same' (stride 1). A non-contiguous input or weight is copied once (the kernels
    read contiguous NCHW); the output is the array the kernel wrote, wrapped without a copy."""
    op = "conv2d"
    dtype = check_tensor(op, "input", input)
    check_tensor(op, "weight", weight, dtype)
    if bias is not None:
        check_tensor(op, "bias", bias, dtype)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"deepkern.torch.{op}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        same, pad = padding == "same", (0, 0)
    else:
        same, pad = False, _pair(padding, "padding", f"deepkern.torch.{op}", 0)
    stride = _pair(stride, "stride", f"deepkern.torch.{op}", 1)
    dilation = _pair(dilation, "dilation", f"deepkern.torch.{op}", 1)
    _check_groups(groups, f"deepkern.torch.{op}")
    return _conv2d(input, weight, bias, stride, pad, dilation, int(groups), same)


# ---- matmul and linear --------------------------------------------------------------------------


def _matmul_shape(a, b) -> tuple:
    """torch.matmul's result shape for a (input) and b (other); errors name them."""
    op = "deepkern.torch.matmul"
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError(
            f"{op}: input and other must have at least 1 dimension, got shapes {shape_text(a)} and {shape_text(b)}"
        )
    k_a, k_b = a.shape[-1], b.shape[-2] if b.dim() > 1 else b.shape[0]
    if k_a != k_b:
        raise ValueError(
            f"{op}: inner dimensions differ: input {shape_text(a)} (K={k_a}), other {shape_text(b)} (K={k_b})"
        )
    try:
        batch = tuple(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except RuntimeError:
        raise ValueError(
            f"{op}: batch dimensions of input {shape_text(a)} and other {shape_text(b)} do not broadcast"
        ) from None
    return batch + tuple(a.shape[-2:-1]) + tuple(b.shape[-1:] if b.dim() > 1 else ())


@torch.library.custom_op("deepkern::matmul", mutates_args=())
def _matmul(input: Tensor, other: Tensor) -> Tensor:
    """deepkern's GEMM with torch.matmul's semantics; strided inputs are read in place."""
    out = torch.empty(_matmul_shape(input, other), dtype=input.dtype)
    ops.matmul(as_numpy(input, "matmul"), as_numpy(other, "matmul"), out=as_numpy(out, "matmul"))
    return out


@_matmul.register_fake
def _(input, other):
    return input.new_empty(_matmul_shape(input, other))


def _matmul_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _matmul_grad(ctx, grad):
    """Each operand's gradient as a matmul (on the operator itself), summed over broadcast axes."""
    a, b = ctx.saved_tensors
    a2 = a.unsqueeze(0) if a.dim() == 1 else a
    b2 = b.unsqueeze(-1) if b.dim() == 1 else b
    g2 = grad.unsqueeze(-1) if b.dim() == 1 else grad  # the axes a 1-D operand removed, restored
    g2 = g2.unsqueeze(-2) if a.dim() == 1 else g2
    grad_a = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_a = _matmul(g2, b2.mT).sum_to_size(a2.shape).reshape(a.shape)
    if ctx.needs_input_grad[1]:
        grad_b = _matmul(a2.mT, g2).sum_to_size(b2.shape).reshape(b.shape)
    return grad_a, grad_b


_matmul.register_autograd(_matmul_grad, setup_context=_matmul_setup)


def matmul(input, other) -> Tensor:
    """``torch.matmul`` on deepkern's GEMM kernel: 1-D operands, batched and broadcast stacks of
    matrices; both float32 or both float64. Transposed or sliced inputs are read in place."""
    dtype = check_tensor("matmul", "input", input)
    check_tensor("matmul", "other", other, dtype)
    return _matmul(input, other)


def _linear_shape(input, weight, bias) -> tuple:
    """F.linear's result shape; errors name input, weight and bias."""
    op = "deepkern.torch.linear"
    if weight.dim() != 2:
        raise ValueError(f"{op}: weight must be 2-D (out_features, in_features), got shape {shape_text(weight)}")
    if input.dim() < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{op}: input's last dimension must equal in_features={weight.shape[1]} of weight "
            f"{shape_text(weight)}, got input of shape {shape_text(input)}"
        )
    if bias is not None and shape_text(bias) != (weight.shape[0],):
        raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got {shape_text(bias)}")
    return shape_text(input)[:-1] + (weight.shape[0],)


@torch.library.custom_op("deepkern::linear", mutates_args=())
def _linear(input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """input @ weight.T + bias in one GEMM with the bias in its epilogue."""
    out = torch.empty(_linear_shape(input, weight, bias), dtype=input.dtype)
    arrays = (as_numpy(t, "linear") for t in (input, weight, bias))
    ops.linear(*arrays, out=as_numpy(out, "linear"))
    return out


@_linear.register_fake
def _(input, weight, bias):
    return input.new_empty(_linear_shape(input, weight, bias))


def _linear_setup(ctx, inputs, output):
    input, weight, _ = inputs
    ctx.save_for_backward(input, weight)


def _as_rows(t: Tensor) -> Tensor:
    """(..., n) as (rows, n): a 1-D tensor is one row."""
    return t.unsqueeze(0) if t.dim() == 1 else t.flatten(0, -2)


def _linear_grad(ctx, grad):
    input, weight = ctx.saved_tensors
    need_input, need_weight, need_bias = ctx.needs_input_grad
    grad_input = _matmul(grad, weight) if need_input else None
    grad_weight = _matmul(_as_rows(grad).mT, _as_rows(input)) if need_weight else None
    grad_bias = _as_rows(grad).sum(0) if need_bias else None
    return grad_input, grad_weight, grad_bias


_linear.register_autograd(_linear_grad, setup_context=_linear_setup)


def linear(input, weight, bias=None) -> Tensor:
    """``torch.nn.functional.linear`` on deepkern's GEMM kernel (the bias added in its epilogue):
    input (..., in_features), weight (out_features, in_features), bias (out_features,) or None.
    Inputs are read in place whatever their strides, unless input's leading axes cannot be merged
    into one (then it is copied once)."""
    dtype = check_tensor("linear", "input", input)
    check_tensor("linear", "weight", weight, dtype)
    if bias is not None:
        check_tensor("linear", "bias", bias, dtype)
    return _linear(input, weight, bias)


# ---- the Adam step ------------------------------------------------------------------------------


@torch.library.custom_op("deepkern::adam_", mutates_args=("params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"))
def _adam_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    max_exp_avg_sqs: Sequence[Tensor],
    steps: Sequence[int],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    """deepkern.ops.adam_step_multi on the tensors' memory, in place (max_exp_avg_sqs: [] without amsgrad)."""

    def arrays(tensors):
        return [as_numpy(t, "adam_") for t in tensors]

    ops.adam_step_multi(
        arrays(params),
        arrays(grads),
        arrays(exp_avgs),
        arrays(exp_avg_sqs),
        steps=list(steps),
        lr=lr,
        betas=(beta1, beta2),
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        max_exp_avg_sqs=arrays(max_exp_avg_sqs) if amsgrad else None,
        maximize=maximize,
        decoupled_weight_decay=decoupled_weight_decay,
    )


@_adam_.register_fake
def _(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *hyperparameters):
    return None


def _tensor_list(op: str, name: str, value, count: Optional[int], dtype) -> list:
    """``value`` as a list of CPU float tensors (of ``count`` entries when given)."""
    if isinstance(value, Tensor) or not isinstance(value, (list, tuple)):
        raise TypeError(f"deepkern.torch.{op}: {name} must be a list of tensors, got {type(value).__name__}")
    if count is not None and len(value) != count:
        raise ValueError(f"deepkern.torch.{op}: {name} has {len(value)} tensors but params has {count}")
    for i, t in enumerate(value):
        check_tensor(op, f"{name}[{i}]", t, dtype)
    return list(value)


def _steps(step, count: int) -> list:
    """The step count of each tensor: one int (or 0-d tensor) for all, or a sequence of them."""
    many = isinstance(step, (list, tuple))
    values = list(step) if many else [step] * count
    if many and len(values) != count:
        raise ValueError(f"deepkern.torch.adam_: step has {len(values)} entries but params has {count}")
    out = []
    for s in values:
        if isinstance(s, Tensor) and s.numel() == 1:
            s = s.item()
        if isinstance(s, float) and s.is_integer():  # torch.optim keeps the count in a float tensor
            s = int(s)
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(f"deepkern.torch.adam_: step must be an int or a sequence of ints, got {step!r}")
        out.append(s)
    return out


def adam_(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    step,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    max_exp_avg_sqs=None,
    maximize=False,
    decoupled_weight_decay=False,
) -> None:
    """One ``torch.optim.Adam`` step (``decoupled_weight_decay=True``: ``AdamW``) on every tensor of
    the lists, in place, in one call of deepkern's multi-tensor kernel (deepkern.ops.adam_step_multi:
    the same rule and order of operations as torch.optim's single-tensor step).

    ``step`` is the step count including this step (1 first): one int for all tensors or one per
    tensor. ``params`` and the states (zeros before the first step; ``max_exp_avg_sqs`` with amsgrad)
    must be contiguous (they are updated in place); a non-contiguous grad is copied once. Runs under
    ``torch.no_grad()``, as torch.optim's steps do.
    """
    op = "adam_"
    params = _tensor_list(op, "params", params, None, None)
    dtype = params[0].dtype if params else None
    grads = _tensor_list(op, "grads", grads, len(params), dtype)
    exp_avgs = _tensor_list(op, "exp_avgs", exp_avgs, len(params), dtype)
    exp_avg_sqs = _tensor_list(op, "exp_avg_sqs", exp_avg_sqs, len(params), dtype)
    if amsgrad and max_exp_avg_sqs is None:
        raise ValueError("deepkern.torch.adam_: max_exp_avg_sqs is required when amsgrad=True")
    maxima = _tensor_list(op, "max_exp_avg_sqs", max_exp_avg_sqs, len(params), dtype) if amsgrad else []
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(f"deepkern.torch.adam_: betas must be a pair (beta1, beta2), got {betas!r}")
    if not params:
        return
    hyperparameters = (
        (lr, "lr"),
        (betas[0], "betas[0]"),
        (betas[1], "betas[1]"),
        (eps, "eps"),
        (weight_decay, "weight_decay"),
    )
    with torch.no_grad():
        _adam_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            maxima,
            _steps(step, len(params)),
            *(check_scalar(v, name, "deepkern.torch.adam_") for v, name in hyperparameters),
            bool(amsgrad),
            bool(maximize),
            bool(decoupled_weight_decay),
        )
