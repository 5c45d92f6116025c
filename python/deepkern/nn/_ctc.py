"""``ctc_loss`` (``torch.nn.functional``'s): the connectionist temporal classification loss, the
negative log-probability of each target sequence summed over its alignments to the input frames.

The forward (alpha) and backward (beta) recursions run in log space over the extended targets
(blanks between and around the labels), all samples of the batch at once, one frame at a time; the
gradient is PyTorch's, ``exp(lp) - exp(logsumexp over s with label c of (alpha + beta) + nll - lp)``
(the second term is d nll / d lp; the first makes it the gradient of the logits behind a log_softmax,
as PyTorch's kernels compute it), zero past each input's length."""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..tensor import Tensor, tensor

__all__ = ["ctc_loss"]

_NEG_INF = -np.inf


def _extended(targets: np.ndarray, lengths: np.ndarray, blank: int, width: int) -> np.ndarray:
    """The extended targets (N, width): blank, l1, blank, l2, ..., blank (blank past each one's end)."""
    out = np.full((len(lengths), width), blank, np.int64)
    for n, (row, length) in enumerate(zip(targets, lengths)):
        out[n, 1 : 2 * length : 2] = row[:length]
    return out


class CTCNegLogLikelihood(Function):
    """Per-sample CTC negative log-likelihoods of log_probs (T, N, C); see the module docstring."""

    @staticmethod
    def forward(ctx, log_probs, targets, input_lengths, target_lengths, blank, zero_infinity):
        lp = log_probs.astype(np.float64)  # the recursions in float64 (PyTorch's float32 runs in float32)
        steps, batch, _ = lp.shape
        width = 2 * int(target_lengths.max(initial=0)) + 1
        ext = _extended(targets, target_lengths, blank, width)
        ext_len = 2 * target_lengths + 1
        positions = np.arange(width)
        valid = positions[None, :] < ext_len[:, None]
        # alpha may come from s - 2 where the label differs from the one two back and is not blank
        skip = np.zeros_like(valid)
        skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
        rows = np.arange(batch)[:, None]
        emit = lambda t: lp[t][rows, ext]  # noqa: E731  (N, width): log-prob of each extended label at t
        alpha = np.full((steps, batch, width), _NEG_INF)
        with np.errstate(invalid="ignore", divide="ignore"):
            first = np.full((batch, width), _NEG_INF)
            first[:, 0] = 0.0
            first[:, 1] = np.where(ext_len > 1, 0.0, _NEG_INF)
            if steps:
                alpha[0] = np.where(valid, first + emit(0), _NEG_INF)
            for t in range(1, steps):
                prev = alpha[t - 1]
                one = np.concatenate([np.full((batch, 1), _NEG_INF), prev[:, :-1]], axis=1)
                two = np.concatenate([np.full((batch, 2), _NEG_INF), prev[:, :-2]], axis=1)
                total = np.logaddexp(np.logaddexp(prev, one), np.where(skip, two, _NEG_INF))
                running = (t < input_lengths)[:, None]
                alpha[t] = np.where(running & valid, total + emit(t), np.where(running, _NEG_INF, prev))
            last = np.maximum(input_lengths - 1, 0)
            final = alpha[last, np.arange(batch)]  # (N, width) at each sample's last frame
            end = ext_len - 1
            nll = -np.logaddexp(
                final[np.arange(batch), end], np.where(end > 0, final[np.arange(batch), end - 1], _NEG_INF)
            )
        nll = np.where(input_lengths == 0, np.where(target_lengths == 0, 0.0, np.inf), nll)
        infinite = np.isinf(nll)
        if zero_infinity:
            nll = np.where(infinite, 0.0, nll)
        ctx.meta = (lp, ext, ext_len, valid, skip, input_lengths, alpha, nll, infinite, zero_infinity, log_probs.dtype)
        return nll.astype(log_probs.dtype)

    @staticmethod
    def backward(ctx, g):
        lp, ext, ext_len, valid, skip, input_lengths, alpha, nll, infinite, zero_infinity, dtype = ctx.meta
        steps, batch, classes = lp.shape
        width = ext.shape[1]
        rows = np.arange(batch)[:, None]
        beta = np.full((steps, batch, width), _NEG_INF)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            end = ext_len - 1
            for t in range(steps - 1, -1, -1):
                emit = lp[t][rows, ext]
                starting = (t == input_lengths - 1)[:, None]
                init = np.full((batch, width), _NEG_INF)
                init[np.arange(batch), end] = 0.0
                init[np.arange(batch), np.maximum(end - 1, 0)] = np.where(end > 0, 0.0, init[np.arange(batch), 0])
                if t + 1 < steps:
                    nxt = beta[t + 1]
                    one = np.concatenate([nxt[:, 1:], np.full((batch, 1), _NEG_INF)], axis=1)
                    two = np.concatenate([nxt[:, 2:], np.full((batch, 2), _NEG_INF)], axis=1)
                    skip_from = np.concatenate([skip[:, 2:], np.zeros((batch, 2), bool)], axis=1)
                    total = np.logaddexp(np.logaddexp(nxt, one), np.where(skip_from, two, _NEG_INF))
                else:
                    total = np.full((batch, width), _NEG_INF)
                running = (t < input_lengths - 1)[:, None]
                source = np.where(starting, init, np.where(running, total, _NEG_INF))
                beta[t] = np.where(valid, source + emit, _NEG_INF)
            both = alpha + beta  # (T, N, width)
            lcab = np.full((steps, batch, classes), _NEG_INF)
            t_index = np.broadcast_to(np.arange(steps)[:, None, None], both.shape)
            n_index = np.broadcast_to(np.arange(batch)[None, :, None], both.shape)
            c_index = np.broadcast_to(ext[None], both.shape)
            np.logaddexp.at(lcab, (t_index, n_index, c_index), both)
            grad = np.exp(lp) - np.exp(lcab + nll[None, :, None] - lp)
        inside = np.arange(steps)[:, None] < input_lengths[None, :]
        grad = np.where(inside[:, :, None], grad, 0.0)
        if zero_infinity:
            grad = np.where(infinite[None, :, None], 0.0, grad)
        grad = grad * np.asarray(g, np.float64)[None, :, None]
        return grad.astype(dtype), None, None, None


def _lengths(value, name: str, count: int) -> np.ndarray:
    array = np.asarray(value._array if isinstance(value, Tensor) else value).reshape(-1)
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(f"ctc_loss: {name} must hold integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.shape != (count,):
        raise ValueError(f"ctc_loss: {name} must have one length per sample ({count}), got shape {array.shape}")
    if np.any(array < 0):
        raise ValueError(f"ctc_loss: {name} must be non-negative, got {array.tolist()}")
    return array


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    """The CTC loss of ``log_probs`` (T, N, C) (log_softmax outputs; (T, C) unbatched) against
    ``targets`` (N, S) padded or all concatenated (1-D), with each sample's ``input_lengths`` and
    ``target_lengths``: 'mean' divides each loss by its target length (at least 1) and averages,
    'sum' sums, 'none' gives the (N,) losses; ``zero_infinity`` makes impossible alignments 0 (and
    their gradients 0)."""
    if not isinstance(log_probs, Tensor) or log_probs.dtype.kind != "f":
        raise TypeError(f"ctc_loss: log_probs must be a floating-point Tensor, got {type(log_probs).__name__}")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"ctc_loss: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    unbatched = log_probs.ndim == 2
    if unbatched:
        log_probs = log_probs.unsqueeze(1)
    if log_probs.ndim != 3:
        raise ValueError(f"ctc_loss: log_probs must be (T, N, C) or (T, C), got shape {log_probs.shape}")
    steps, batch, classes = log_probs.shape
    if not 0 <= blank < classes:
        raise ValueError(f"ctc_loss: blank must be in [0, {classes}), got {blank}")
    raw = np.asarray(targets._array if isinstance(targets, Tensor) else targets)
    if raw.size and raw.dtype.kind not in "iu":
        raise TypeError(f"ctc_loss: targets must hold integer labels, got dtype {raw.dtype}")
    input_lengths = _lengths(input_lengths, "input_lengths", batch)
    target_lengths = _lengths(target_lengths, "target_lengths", batch)
    if np.any(input_lengths > steps):
        raise ValueError(f"ctc_loss: input_lengths must be at most T = {steps}, got {input_lengths.tolist()}")
    if unbatched and raw.ndim == 1 and raw.size == target_lengths[0]:
        raw = raw[None]
    if raw.ndim == 2:
        if raw.shape[0] != batch or raw.shape[1] < target_lengths.max(initial=0):
            raise ValueError(
                f"ctc_loss: padded targets must be (N, S) with S >= every target length, got shape {raw.shape}"
            )
        padded = raw.astype(np.int64)
    else:
        if raw.size != target_lengths.sum():
            raise ValueError(
                f"ctc_loss: concatenated targets must hold sum(target_lengths) = {target_lengths.sum()} labels, "
                f"got {raw.size}"
            )
        padded = np.zeros((batch, int(target_lengths.max(initial=0))), np.int64)
        for n, (start, length) in enumerate(zip(np.cumsum(target_lengths) - target_lengths, target_lengths)):
            padded[n, :length] = raw[start : start + length]
    used = np.concatenate([padded[n, :length] for n, length in enumerate(target_lengths)]) if batch else padded
    if used.size and (used.min() < 0 or used.max() >= classes or np.any(used == blank)):
        raise ValueError(f"ctc_loss: target labels must be in [0, {classes}) and not the blank {blank}")
    losses = CTCNegLogLikelihood.apply(log_probs, padded, input_lengths, target_lengths, blank, bool(zero_infinity))
    if reduction == "none":
        return losses[0] if unbatched else losses
    if reduction == "sum":
        return losses.sum()
    divisors = tensor(np.maximum(target_lengths, 1).astype(log_probs.dtype), dtype=log_probs.dtype)
    return (losses / divisors).mean()
