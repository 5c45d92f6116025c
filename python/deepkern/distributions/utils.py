"""Helpers shared by the distributions (PyTorch's torch.distributions.utils): parameter broadcasting,
probabilities <-> logits, lazily computed parameters, and draws from deepkern's generator."""

from __future__ import annotations

import functools
import numbers

import numpy as np

from .. import autograd
from ..backends import to_device
from ..random import get_generator
from ..tensor import Tensor, get_default_dtype, rand, randn, tensor
from ..tensor_functions import broadcast_tensors

__all__ = [
    "broadcast_all",
    "logits_to_probs",
    "clamp_probs",
    "probs_to_logits",
    "lazy_property",
    "euler_constant",
]

euler_constant = 0.57721566490153286060  # Euler-Mascheroni constant


def is_number(value) -> bool:
    """Whether ``value`` is a Python (or NumPy) real number, as PyTorch's ``_Number`` check."""
    return isinstance(value, numbers.Real) and not isinstance(value, Tensor)


def broadcast_all(*values):
    """``values`` (Tensors and numbers) as Tensors broadcast to one shape; numbers become tensors of the
    first Tensor's dtype and device (the default dtype when all are numbers)."""
    if not all(isinstance(v, Tensor) or is_number(v) for v in values):
        raise ValueError("Input arguments must all be instances of numbers.Number or deepkern.Tensor.")
    first = next((v for v in values if isinstance(v, Tensor)), None)
    dtype, device = (get_default_dtype(), None) if first is None else (first.dtype, first.device)
    return broadcast_tensors(*(v if isinstance(v, Tensor) else tensor(v, dtype=dtype, device=device) for v in values))


def broadcast_shapes(*shapes) -> tuple:
    """The broadcast of ``shapes`` (PyTorch's torch.broadcast_shapes)."""
    return tuple(np.broadcast_shapes(*(tuple(s) for s in shapes)))


def finfo(dtype):
    """The machine limits (eps, tiny, min) of a floating dtype."""
    return np.finfo(np.dtype(dtype))


def sum_rightmost(value, dim: int):
    """``value`` summed over its ``dim`` rightmost dimensions."""
    if dim == 0:
        return value
    return value.reshape(value.shape[: value.ndim - dim] + (-1,)).sum(-1)


def logits_to_probs(logits, is_binary: bool = False):
    """Probabilities of log-odds (``is_binary``) or of unnormalized log-probabilities along the last dim."""
    return logits.sigmoid() if is_binary else logits.softmax(-1)


def clamp_probs(probs):
    """``probs`` clamped to [eps, 1 - eps] of its dtype."""
    eps = float(finfo(probs.dtype).eps)
    return probs.clamp(min=eps, max=1 - eps)


def probs_to_logits(probs, is_binary: bool = False):
    """Log-odds (``is_binary``) or log-probabilities of ``probs``, clamped away from 0 and 1 first."""
    clamped = clamp_probs(probs)
    return clamped.log() - (-clamped).log1p() if is_binary else clamped.log()


class lazy_property:
    """A parameter computed from another on first access (``probs`` from ``logits``, ...) and then kept
    as an instance attribute; computed with gradients enabled, as PyTorch's."""

    def __init__(self, wrapped):
        self.wrapped = wrapped
        functools.update_wrapper(self, wrapped)

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        with autograd.enable_grad():
            value = self.wrapped(instance)
        setattr(instance, self.wrapped.__name__, value)
        return value


def standard_normal(shape, dtype, device):
    """Standard normal draws from deepkern's generator."""
    return randn(tuple(shape), dtype=dtype, device=device)


def standard_uniform(shape, dtype, device):
    """Uniform draws in [0, 1) from deepkern's generator."""
    return rand(tuple(shape), dtype=dtype, device=device)


def host(t) -> np.ndarray:
    """A tensor's values as a NumPy array in host memory, outside the graph."""
    return np.asarray(t.detach().cpu().numpy())


def host_tensor(values, dtype, device):
    """Host ``values`` as a Tensor of ``dtype`` on ``device``, outside the graph."""
    return Tensor(to_device(np.asarray(values).astype(dtype), device))


def drawn(method: str, like, *params, **options):
    """``getattr(generator, method)(*params, **options)`` (a NumPy sampler of deepkern's generator:
    ``standard_gamma``, ``poisson``, ...) as a Tensor of ``like``'s dtype and device."""
    return host_tensor(getattr(get_generator(), method)(*params, **options), like.dtype, like.device)


def with_gradient_of(value, surrogate):
    """``value`` (computed outside the graph) carrying the gradient of ``surrogate``, a differentiable
    expression of the same values: ``value + (surrogate - surrogate.detach())``, whose added term is
    exactly zero. Implicit reparameterization gradients are written this way."""
    if not surrogate.requires_grad:
        return value
    return value + (surrogate - surrogate.detach())
