"""``torch.nn.utils``: gradient clipping by norm and by value; ``rnn``, the variable-length batches
of the recurrent layers (PackedSequence and the pad/pack functions)."""

from __future__ import annotations

import functools
import math
import operator

import numpy as np

from ...tensor import Tensor, tensor
from . import rnn

__all__ = ["clip_grad_norm_", "clip_grad_value_", "rnn"]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
    """Scales the gradients of ``parameters`` in place so that their joint ``norm_type`` norm
    is at most ``max_norm``; returns the norm before clipping as a 0-d Tensor of the gradients'
    dtype on their device, as PyTorch does (its rule: scale by ``max_norm / (norm + 1e-6)`` when
    that is below 1). With ``error_if_nonfinite`` a NaN or infinite norm raises RuntimeError
    and leaves the gradients alone."""
    with_grad = [p.grad for p in _as_list(parameters) if p.grad is not None]
    if not with_grad:
        return tensor(0.0)
    grads = [g._array for g in with_grad]
    norm_type = float(norm_type)
    # Each gradient's part stays on its device; one conversion to a Python float at the end (one
    # wait for a GPU per call, not one per gradient).
    if math.isinf(norm_type):
        parts = [np.abs(g).max() for g in grads if g.size]
        total = float(functools.reduce(np.maximum, parts)) if parts else 0.0
    else:
        parts = [np.sum(np.abs(g, dtype=np.float64) ** norm_type) for g in grads]
        total = float(functools.reduce(operator.add, parts)) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}, "
            "so they cannot be clipped (error_if_nonfinite=True)"
        )
    scale = float(max_norm) / (total + 1e-6)
    if scale < 1:
        for g in grads:
            g *= g.dtype.type(scale)
    return tensor(total, dtype=with_grad[0].dtype, device=with_grad[0].device)


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
