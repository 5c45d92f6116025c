"""``torch.nn.utils``: gradient clipping by norm and by value; ``rnn``, the variable-length batches
of the recurrent layers (PackedSequence and the pad/pack functions)."""

from __future__ import annotations

import math

import numpy as np

from ...tensor import Tensor
from . import rnn

__all__ = ["clip_grad_norm_", "clip_grad_value_", "rnn"]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0) -> float:
    """Scales the gradients of ``parameters`` in place so that their joint ``norm_type`` norm
    is at most ``max_norm``; returns the norm before clipping (PyTorch's rule: scale by
    ``max_norm / (norm + 1e-6)`` when that is below 1)."""
    grads = [p.grad._array for p in _as_list(parameters) if p.grad is not None]
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    if math.isinf(norm_type):
        total = max(float(np.abs(g).max()) for g in grads if g.size)
    else:
        total = sum(float(np.sum(np.abs(g, dtype=np.float64) ** norm_type)) for g in grads) ** (1.0 / norm_type)
    scale = float(max_norm) / (total + 1e-6)
    if scale < 1:
        for g in grads:
            g *= g.dtype.type(scale)
    return total


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamps every gradient element of ``parameters`` (Tensors, or one Tensor) to
    [-clip_value, clip_value] in place."""
    clip_value = float(clip_value)
    for p in _as_list(parameters):
        if p.grad is not None:
            np.clip(p.grad._array, -clip_value, clip_value, out=p.grad._array)


def _as_list(parameters) -> list:
    """``parameters`` (an iterable of Tensors, or one Tensor) as a list."""
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)
