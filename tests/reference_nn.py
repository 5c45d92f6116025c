"""Plain float64 NumPy references for deepkern.nn's layers and functions that are not kernels
(the kernels' references, linear/conv/pooling, are in reference.py). Inputs are converted to
float64 first, as there."""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def leaky_relu_ref(x, negative_slope=0.01):
    x = _f64(x)
    return np.where(x > 0, x, negative_slope * x)


def sigmoid_ref(x):
    return 1 / (1 + np.exp(-_f64(x)))


def gelu_ref(x, approximate="none"):
    x = _f64(x)
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def softmax_ref(x, dim):
    x = _f64(x)
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def log_softmax_ref(x, dim):
    return np.log(softmax_ref(x, dim))


def batch_norm_ref(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """``(out, new_running_mean, new_running_var)`` of PyTorch's batch norm in float64 (the
    running values are returned unchanged when not training or when None)."""
    x = _f64(x)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    new_mean, new_var = running_mean, running_var
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        n = x.size // x.shape[1]
        if running_mean is not None:
            new_mean = (1 - momentum) * _f64(running_mean) + momentum * mean
            new_var = (1 - momentum) * _f64(running_var) + momentum * var * n / (n - 1)
    else:
        mean, var = _f64(running_mean), _f64(running_var)
    out = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if weight is not None:
        out = out * _f64(weight).reshape(shape)
    if bias is not None:
        out = out + _f64(bias).reshape(shape)
    return out, new_mean, new_var


def batch_norm_backward_ref(grad_out, x, weight, mean, var, training, eps=1e-5):
    """``(grad_x, grad_weight, grad_bias)`` of PyTorch's batch norm in float64, ``mean`` and
    ``var`` the statistics the forward normalized with (the batch's, biased, when ``training``: the
    gradient then flows through them too; the running ones otherwise)."""
    g, x = _f64(grad_out), _f64(x)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    invstd = 1 / np.sqrt(_f64(var) + eps)
    xhat = (x - _f64(mean).reshape(shape)) * invstd.reshape(shape)
    w = np.ones(x.shape[1]) if weight is None else _f64(weight)
    grad_bias, grad_weight = g.sum(axis=axes), (g * xhat).sum(axis=axes)
    if training:
        n = x.size // x.shape[1]
        g = g - (grad_bias.reshape(shape) + xhat * grad_weight.reshape(shape)) / n
    return g * (invstd * w).reshape(shape), grad_weight, grad_bias


def embedding_backward_ref(grad_out, indices, num_embeddings, padding_idx=None):
    """The weight's gradient: row r is the sum of grad_out over the positions holding index r."""
    g = _f64(grad_out).reshape(-1, grad_out.shape[-1])
    grad = np.zeros((num_embeddings, g.shape[1]))
    for pos, r in enumerate(np.asarray(indices).reshape(-1)):
        if r != padding_idx:
            grad[r] += g[pos]
    return grad


def _rows_normalized(x2, eps):
    """``(xhat, mean, rstd)`` of the float64 rows of ``x2`` (biased variance; NaN for empty rows)."""
    if x2.shape[1] == 0:
        nan = np.full(x2.shape[0], np.nan)
        return x2, nan, nan
    mean, var = x2.mean(axis=1), x2.var(axis=1)
    rstd = 1 / np.sqrt(var + eps)
    return (x2 - mean[:, None]) * rstd[:, None], mean, rstd


def _rows_grad_x(g2, x2, w2, eps):
    """grad_x of the row normalization of ``x2`` scaled by ``w2`` (both (rows, len) float64)."""
    if x2.shape[1] == 0:
        return np.zeros_like(x2)
    xhat, _, rstd = _rows_normalized(x2, eps)
    gw = g2 * w2
    return rstd[:, None] * (gw - gw.mean(axis=1, keepdims=True) - xhat * (gw * xhat).mean(axis=1, keepdims=True))


def layer_norm_ref(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``(out, mean, rstd)`` of PyTorch's layer norm in float64; mean and rstd of shape
    ``x.shape[:-len(normalized_shape)]``."""
    x, k = _f64(x), len(normalized_shape)
    lead = x.shape[: x.ndim - k]
    xhat, mean, rstd = _rows_normalized(x.reshape(int(np.prod(lead)), int(np.prod(normalized_shape))), eps)
    out = xhat.reshape(x.shape)
    if weight is not None:
        out = out * _f64(weight)
    if bias is not None:
        out = out + _f64(bias)
    return out, mean.reshape(lead), rstd.reshape(lead)


def layer_norm_backward_ref(grad_out, x, normalized_shape, weight=None, eps=1e-5):
    """``(grad_x, grad_weight, grad_bias)`` of PyTorch's layer norm in float64."""
    g, x = _f64(grad_out), _f64(x)
    rows, d = int(np.prod(x.shape[: x.ndim - len(normalized_shape)])), int(np.prod(normalized_shape))
    g2, x2 = g.reshape(rows, d), x.reshape(rows, d)
    w2 = np.ones((1, d)) if weight is None else _f64(weight).reshape(1, d)
    xhat = _rows_normalized(x2, eps)[0]
    grad_x = _rows_grad_x(g2, x2, w2, eps).reshape(x.shape)
    return grad_x, (g2 * xhat).sum(axis=0).reshape(normalized_shape), g2.sum(axis=0).reshape(normalized_shape)


def _group_rows(a, groups):
    """(N, C, ...) as (N * groups, C / groups * spatial) rows."""
    return a.reshape(a.shape[0] * groups, int(np.prod(a.shape[1:])) // groups)


def _per_channel_rows(v, shape, groups):
    """A per-channel vector broadcast over (N, C, ...) ``shape``, as _group_rows' rows."""
    return _group_rows(np.broadcast_to(v.reshape((1, -1) + (1,) * (len(shape) - 2)), shape), groups)


def group_norm_ref(x, groups, weight=None, bias=None, eps=1e-5):
    """``(out, mean, rstd)`` of PyTorch's group norm in float64; mean and rstd of shape (N, groups)."""
    x = _f64(x)
    xhat, mean, rstd = _rows_normalized(_group_rows(x, groups), eps)
    out = xhat.reshape(x.shape)
    per_channel = (1, -1) + (1,) * (x.ndim - 2)
    if weight is not None:
        out = out * _f64(weight).reshape(per_channel)
    if bias is not None:
        out = out + _f64(bias).reshape(per_channel)
    return out, mean.reshape(x.shape[0], groups), rstd.reshape(x.shape[0], groups)


def group_norm_backward_ref(grad_out, x, groups, weight=None, eps=1e-5):
    """``(grad_x, grad_weight, grad_bias)`` of PyTorch's group norm in float64."""
    g, x = _f64(grad_out), _f64(x)
    w = np.ones(x.shape[1]) if weight is None else _f64(weight)
    g2, x2 = _group_rows(g, groups), _group_rows(x, groups)
    grad_x = _rows_grad_x(g2, x2, _per_channel_rows(w, x.shape, groups), eps).reshape(x.shape)
    xhat = _rows_normalized(x2, eps)[0].reshape(x.shape)
    axes = (0,) + tuple(range(2, x.ndim))
    return grad_x, (g * xhat).sum(axis=axes), g.sum(axis=axes)
