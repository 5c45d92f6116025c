"""GRU and Elman RNN: the cell and one layer over a sequence, forward and backward (BPTT).

PyTorch's layouts. GRU, gates r, z, n: ``w_ih`` (3H, I), ``w_hh`` (3H, H), ``b_ih`` and ``b_hh``
(3H,); r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise, n = tanh(W_in x + b_in + r * (W_hn h
+ b_hn)), h' = (1 - z) * n + z * h. RNN: ``w_ih`` (H, I), ``w_hh`` (H, H), ``b_ih`` and ``b_hh``
(H,); h' = tanh(W_ih x + b_ih + W_hh h + b_hh), or relu of it with ``nonlinearity="relu"``.

They run on the LSTM's kernels (csrc/cpu/lstm: the same team of threads, packed weights, chunked
input projection and BPTT, with their own fused cell passes), so they share its properties: sizes
of 0 are allowed, each thread keeps its working memory between calls, and reverse=True runs a
sequence backwards in time (the reverse direction of a bidirectional layer). On 'cuda' arrays they
run float32 on the GPU driver of csrc/cuda/lstm (its per-step path), with the same cache.
``batch_sizes`` (CPU only) runs a batch of variable lengths as :mod:`deepkern.ops.lstm` describes,
and bfloat16 layers (CPU only) compute as it describes (the GRU's cached gates are float32).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backends import backend_of
from .lstm import _arrays, _batch_sizes, _bias_sum, _cache_dtype, _check_cache, _gradients


class GRUCache(NamedTuple):
    """What :func:`gru_backward` needs from the forward: r, z, n and W_hn h + b_hn of each step
    (T, B, 4H), the hidden state after each step (T, B, H) and the forward's batch_sizes. Keep it
    unchanged between the calls."""

    gates: np.ndarray
    hidden: np.ndarray
    reverse: bool
    batch_sizes: np.ndarray | None = None


class RNNCache(NamedTuple):
    """What :func:`rnn_backward` needs from the forward: the hidden state after each step (T, B, H)
    the nonlinearity and the forward's batch_sizes. Keep it unchanged between the calls."""

    hidden: np.ndarray
    reverse: bool
    nonlinearity: str
    batch_sizes: np.ndarray | None = None


def _relu(op: str, nonlinearity) -> bool:
    """Whether ``nonlinearity`` ("tanh" or "relu") is relu; other values raise ValueError."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{op}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity == "relu"


def _grad_arrays(op: str, backend, x, hidden, grad_y, grad_h_T):
    """The output gradients (None: zero) checked and C-contiguous on ``backend``."""
    steps, batch, _ = x.shape
    named = (("grad_y", grad_y, (steps, batch, hidden)), ("grad_h_T", grad_h_T, (batch, hidden)))
    grads = _gradients(op, x.dtype, named)
    backend_of(*grads, x, op=op)
    return [None if g is None else backend.ascontiguousarray(g) for g in grads]


def _outputs(backend, x, hidden):
    """Empty y (T, B, H) and h_T (B, H) on ``backend``, of x's dtype."""
    steps, batch, _ = x.shape
    return backend.empty((steps, batch, hidden), x.dtype), backend.empty((batch, hidden), x.dtype)


def gru(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, reverse=False, return_cache=False, batch_sizes=None):
    """One GRU layer over ``x`` (T, B, I) from ``h0`` (B, H; None: zeros).

    Returns ``(y, h_T)``: ``y`` (T, B, H) is the hidden state after each step, ``h_T`` the state
    after the last step processed (step 0 when ``reverse``). With ``return_cache=True`` also returns
    the :class:`GRUCache` that :func:`gru_backward` needs. ``batch_sizes``: variable lengths.
    """
    backend, x, h0, _, w_ih, w_hh, b_ih, b_hh, hidden = _arrays(
        "gru", x, h0, None, w_ih, w_hh, b_ih, b_hh, sequence=True, gates=3
    )
    packed = _batch_sizes("gru", batch_sizes, x, backend)
    y, h_last = _outputs(backend, x, hidden)
    cache = None
    if return_cache:
        gates = backend.empty(y.shape[:2] + (4 * hidden,), _cache_dtype(x.dtype))
        cache = GRUCache(gates, backend.empty_like(y), bool(reverse), *packed)
    kept = (None, None) if cache is None else cache[:2]
    backend.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, y, h_last, *kept, bool(reverse), *packed)
    return (y, h_last, cache) if return_cache else (y, h_last)


def gru_backward(grad_y, grad_h_T, x, h0, w_ih, w_hh, cache: GRUCache, *, reverse=False):
    """Backpropagation through time for :func:`gru`.

    ``grad_y`` (T, B, H) and ``grad_h_T`` (B, H) are the gradients of the forward's outputs (None:
    zero). Returns ``(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)``.
    """
    op = "gru_backward"
    backend, x, h0, _, w_ih, w_hh, *_, hidden = _arrays(op, x, h0, None, w_ih, w_hh, None, None, sequence=True, gates=3)
    _check_cache(op, cache, GRUCache, "gru", x, w_hh, reverse, gates=4)
    packed = _batch_sizes(op, cache.batch_sizes, x, backend)
    grad_y, grad_h_T = _grad_arrays(op, backend, x, hidden, grad_y, grad_h_T)
    backend_of(x, *cache[:2], op=op)
    steps, batch, inputs = x.shape
    empty, dtype = backend.empty, x.dtype
    grads = (
        empty((steps, batch, inputs), dtype),
        empty((batch, hidden), dtype),
        empty((3 * hidden, inputs), dtype),
        empty((3 * hidden, hidden), dtype),
        empty(3 * hidden, dtype),
        empty(3 * hidden, dtype),
    )
    backend.gru_backward(grad_y, grad_h_T, x, h0, w_ih, w_hh, cache.gates, cache.hidden, *grads, bool(reverse), *packed)
    return grads


def rnn(
    x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, nonlinearity="tanh", reverse=False, return_cache=False, batch_sizes=None
):
    """One Elman RNN layer over ``x`` (T, B, I) from ``h0`` (B, H; None: zeros).

    Returns ``(y, h_T)`` as :func:`gru` does; with ``return_cache=True`` also the :class:`RNNCache`
    that :func:`rnn_backward` needs. ``batch_sizes``: variable lengths.
    """
    relu = _relu("rnn", nonlinearity)
    backend, x, h0, _, w_ih, w_hh, b_ih, b_hh, hidden = _arrays(
        "rnn", x, h0, None, w_ih, w_hh, b_ih, b_hh, sequence=True, gates=1
    )
    packed = _batch_sizes("rnn", batch_sizes, x, backend)
    y, h_last = _outputs(backend, x, hidden)
    cache = RNNCache(backend.empty_like(y), bool(reverse), nonlinearity, *packed) if return_cache else None
    kept = None if cache is None else cache.hidden
    backend.rnn_forward(x, h0, w_ih, w_hh, _bias_sum(b_ih, b_hh), y, h_last, kept, relu, bool(reverse), *packed)
    return (y, h_last, cache) if return_cache else (y, h_last)


def rnn_backward(grad_y, grad_h_T, x, h0, w_ih, w_hh, cache: RNNCache, *, reverse=False):
    """Backpropagation through time for :func:`rnn` (the cache holds the nonlinearity).

    Returns ``(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)``; the two bias
    gradients are equal.
    """
    op = "rnn_backward"
    backend, x, h0, _, w_ih, w_hh, *_, hidden = _arrays(op, x, h0, None, w_ih, w_hh, None, None, sequence=True, gates=1)
    _check_cache(op, cache, RNNCache, "rnn", x, w_hh, reverse)
    relu = _relu(op, cache.nonlinearity)
    packed = _batch_sizes(op, cache.batch_sizes, x, backend)
    grad_y, grad_h_T = _grad_arrays(op, backend, x, hidden, grad_y, grad_h_T)
    backend_of(x, cache.hidden, op=op)
    steps, batch, inputs = x.shape
    empty, dtype = backend.empty, x.dtype
    grads = (
        empty((steps, batch, inputs), dtype),
        empty((batch, hidden), dtype),
        empty((hidden, inputs), dtype),
        empty((hidden, hidden), dtype),
        empty(hidden, dtype),
    )
    backend.rnn_backward(grad_y, grad_h_T, x, h0, w_ih, w_hh, cache.hidden, *grads, relu, bool(reverse), *packed)
    return (*grads, grads[-1].copy())


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step (torch.nn.GRUCell): x (B, I), h (B, H) or None -> h_next."""
    _, x, h, _, w_ih, w_hh, b_ih, b_hh, _ = _arrays(
        "gru_cell", x, h, None, w_ih, w_hh, b_ih, b_hh, sequence=False, gates=3
    )
    return gru(x[None], h, w_ih, w_hh, b_ih, b_hh)[1]


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, *, nonlinearity="tanh"):
    """One Elman RNN step (torch.nn.RNNCell): x (B, I), h (B, H) or None -> h_next."""
    _relu("rnn_cell", nonlinearity)
    _, x, h, _, w_ih, w_hh, b_ih, b_hh, _ = _arrays(
        "rnn_cell", x, h, None, w_ih, w_hh, b_ih, b_hh, sequence=False, gates=1
    )
    return rnn(x[None], h, w_ih, w_hh, b_ih, b_hh, nonlinearity=nonlinearity)[1]
