"""``deepkern.nn.functional``: the layers' computations as functions on Tensors, with PyTorch's
names, arguments and defaults (``torch.nn.functional``).

Each op is one Function (forward plus backward on NumPy arrays, see autograd.py); the heavy ones
call the deepkern kernels: ``linear`` the GEMM with bias (and optionally ReLU) fused in its
epilogue, ``conv2d`` the convolution and its backward, the pooling ops theirs. Arguments may be
Tensors or NumPy arrays; results are Tensors. ``inplace=True`` is accepted for PyTorch
compatibility and computes out of place (the returned value is the same).
"""

from __future__ import annotations

import numpy as np

from .. import backends, ops
from .. import tensor_ops as _T
from ..autograd import Function
from ..random import get_generator
from ..tensor import Tensor

__all__ = [
    "linear",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "relu",
    "leaky_relu",
    "tanh",
    "sigmoid",
    "gelu",
    "softmax",
    "log_softmax",
    "dropout",
    "batch_norm",
    "embedding",
    "flatten",
]


def _array(x):
    return x._array if isinstance(x, Tensor) else x


def _dim(dim, ndim: int, op: str) -> int:
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor of {ndim} dimensions")
    return dim % max(ndim, 1)


# ---------------------------------------------------------------------------------------------
# Linear and convolution: the GEMM and convolution kernels
# ---------------------------------------------------------------------------------------------


class Linear(Function):
    """``x @ weight.T + bias`` (then ReLU when ``relu``) in one GEMM with a fused epilogue."""

    @staticmethod
    def forward(ctx, x, weight, bias=None, relu=False):
        out = ops.linear(x, weight, bias, relu=relu)
        ctx.save_for_backward(x, weight, out if relu else None)
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight, out = ctx.saved_tensors
        if out is not None:  # through the fused ReLU
            g = g * (out > 0)
        g2 = g.reshape(-1, g.shape[-1])
        need_x, need_w, need_b = ctx.needs_input_grad
        gx = ops.matmul(g2, weight).reshape(x.shape) if need_x else None
        gw = ops.gemm(g2, x.reshape(-1, x.shape[-1]), trans_a=True) if need_w else None
        gb = g2.sum(axis=0) if need_b else None
        return gx, gw, gb


def linear(input, weight, bias=None, relu=False):
    """``input @ weight.T + bias`` for input ``(..., in_features)`` and weight
    ``(out_features, in_features)``; ``relu=True`` applies ReLU in the same kernel pass."""
    return Linear.apply(input, weight, bias, relu=relu)


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, weight, bias=None, **options):
        ctx.save_for_backward(x, weight)
        ctx.options = options
        return ops.conv2d(x, weight, bias, **options)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        return ops.conv2d_backward(g, x, weight, needs=ctx.needs_input_grad, **ctx.options)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution of input ``(N, C, H, W)`` or ``(C, H, W)`` with weight
    ``(K, C/groups, R, S)`` (``padding`` may also be ``'same'`` or ``'valid'``)."""
    return Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


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


class AdaptiveAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, output_size):
        ctx.x_shape = x.shape
        return ops.adaptive_avg_pool2d(x, output_size)

    @staticmethod
    def backward(ctx, g):
        return ops.adaptive_avg_pool2d_backward(g, ctx.x_shape), None


def adaptive_avg_pool2d(input, output_size):
    """Mean over PyTorch's adaptive windows giving ``output_size`` (int or pair; None keeps)."""
    return AdaptiveAvgPool2d.apply(input, output_size)


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------


def relu(input, inplace=False):
    return _T.Relu.apply(input)


def tanh(input):
    return _T.Tanh.apply(input)


def sigmoid(input):
    return _T.Sigmoid.apply(input)


class LeakyRelu(Function):
    @staticmethod
    def forward(ctx, x, negative_slope=0.01):
        positive = x > 0
        ctx.save_for_backward(positive)
        ctx.slope = negative_slope
        return np.where(positive, x, x * negative_slope)

    @staticmethod
    def backward(ctx, g):
        (positive,) = ctx.saved_tensors
        return np.where(positive, g, g * ctx.slope)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return LeakyRelu.apply(input, negative_slope=negative_slope)


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


def gelu(input, approximate="none"):
    """GELU, exact (erf) by default; ``approximate='tanh'`` for the tanh form."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(input, approximate=approximate)


def _softmax_dim(dim, ndim: int, op: str) -> int:
    if dim is None:  # PyTorch's legacy implicit choice
        dim = 0 if ndim in (0, 1, 3) else 1
    return _dim(dim, ndim, op)


class Softmax(Function):
    @staticmethod
    def forward(ctx, x, dim=-1):
        e = np.exp(x - x.max(axis=dim, keepdims=True))
        out = e / e.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return out * (g - (g * out).sum(axis=ctx.dim, keepdims=True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, dim=-1):
        shifted = x - x.max(axis=dim, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        ctx.save_for_backward(out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g - np.exp(out) * g.sum(axis=ctx.dim, keepdims=True)


def _cast(input, dtype):
    if dtype is None:
        return input
    return input.to(dtype) if isinstance(input, Tensor) else backends.as_array(input).astype(dtype, copy=False)


def softmax(input, dim=None, dtype=None):
    """``exp(x) / sum(exp(x))`` along ``dim``, computed from ``x - max`` (no overflow)."""
    input = _cast(input, dtype)
    return Softmax.apply(input, dim=_softmax_dim(dim, np.ndim(_array(input)), "softmax"))


def log_softmax(input, dim=None, dtype=None):
    """``x - logsumexp(x)`` along ``dim``, numerically stable."""
    input = _cast(input, dtype)
    return LogSoftmax.apply(input, dim=_softmax_dim(dim, np.ndim(_array(input)), "log_softmax"))


# ---------------------------------------------------------------------------------------------
# Dropout, batch normalisation, embedding, flatten
# ---------------------------------------------------------------------------------------------


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, p=0.5):
        if p == 1:
            mask = backends.backend_of(x, op="dropout").zeros(x.shape, x.dtype)
        else:  # drawn in host memory (deepkern's generator), then copied to x's device
            mask = (get_generator().random(x.shape, dtype=np.float32) >= p).astype(x.dtype)
            mask *= 1 / (1 - p)
            mask = backends.to_device(mask, backends.device_of(x))
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask


def dropout(input, p=0.5, training=True, inplace=False):
    """Zeroes each element with probability ``p`` (from deepkern's generator, see
    ``deepkern.manual_seed``) and scales the rest by ``1 / (1 - p)``; the identity when not
    ``training``."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be between 0 and 1, got {p}")
    if not training or p == 0:
        return input if isinstance(input, Tensor) else Tensor._wrap(input)
    return Dropout.apply(input, p=p)


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
        ctx.meta = (save_mean, save_invstd, training)
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        save_mean, save_invstd, training = ctx.meta
        return ops.batch_norm_backward(g, x, weight, save_mean, save_invstd, training, needs=ctx.needs_input_grad[:3])


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """PyTorch's ``F.batch_norm`` over input ``(N, C, ...)``: batch statistics when ``training``
    (updating ``running_mean``/``running_var`` in place when given, by ``momentum``), else the
    running ones."""
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var are needed when not training")
    return BatchNorm.apply(
        input,
        weight,
        bias,
        running_mean=_array(running_mean),
        running_var=_array(running_var),
        training=training,
        momentum=momentum,
        eps=eps,
    )


class Embedding(Function):
    @staticmethod
    def forward(ctx, weight, indices, padding_idx=None):
        ctx.save_for_backward(indices)
        ctx.meta = (weight.shape, padding_idx)
        return weight[indices]

    @staticmethod
    def backward(ctx, g):
        (indices,) = ctx.saved_tensors
        shape, padding_idx = ctx.meta
        grad = backends.backend_of(g, op="EmbeddingBackward").zeros(shape, g.dtype)
        np.add.at(grad, indices.reshape(-1), g.reshape(-1, shape[1]))  # repeated rows accumulate
        if padding_idx is not None:
            grad[padding_idx] = 0
        return grad, None


def embedding(input, weight, padding_idx=None):
    """Rows ``weight[input]`` for integer indices ``input`` of any shape; the gradient of a row
    is the sum over its occurrences, and the ``padding_idx`` row gets none."""
    idx = backends.as_array(_array(input))
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be an integer tensor, got dtype {idx.dtype}")
    rows = np.shape(_array(weight))[0]
    if idx.size and (idx.min() < 0 or idx.max() >= rows):
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise IndexError(f"embedding: index {bad} is out of range for a weight of {rows} rows")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += rows
    return Embedding.apply(weight, idx, padding_idx=padding_idx)


def flatten(input, start_dim=0, end_dim=-1):
    """Merges dimensions ``start_dim`` to ``end_dim`` (``torch.flatten``)."""
    t = input if isinstance(input, Tensor) else Tensor._wrap(input)
    return t.flatten(start_dim, end_dim)


# The losses' functional forms live beside their modules (loss.py).
from .loss import (  # noqa: E402
    binary_cross_entropy_with_logits,
    contrastive_loss,
    cosine_embedding_loss,
    cross_entropy,
    l1_loss,
    mse_loss,
    nll_loss,
    pairwise_distance,
    triplet_margin_loss,
)

__all__ += [
    "mse_loss",
    "l1_loss",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy_with_logits",
    "pairwise_distance",
    "triplet_margin_loss",
    "contrastive_loss",
    "cosine_embedding_loss",
]
