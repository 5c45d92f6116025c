"""``torch.nn.utils.parametrizations``: ``weight_norm`` and ``spectral_norm`` as parametrizations
(:mod:`.parametrize`), PyTorch's current forms of the hook-based ``nn.utils.weight_norm`` and
``nn.utils.spectral_norm``, with PyTorch's state dict keys (``parametrizations.weight.original0``
and ``original1`` for the weight norm's g and v; ``parametrizations.weight.original`` and
``parametrizations.weight.0._u`` / ``_v`` for the spectral norm)."""

from __future__ import annotations

import numbers

from ... import autograd
from ...tensor import Tensor
from ..module import Module
from . import parametrize
from .spectral_norm import _normalize, weight_as_matrix
from .weight_norm import _weight_norm, norm_except_dim

__all__ = ["spectral_norm", "weight_norm"]


class _WeightNorm(Module):
    """``weight = g * v / ||v||`` (the norm over every dimension but ``dim``; -1: of the whole tensor)."""

    def __init__(self, dim=0) -> None:
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, weight_g, weight_v):
        return _weight_norm(weight_v, weight_g, self.dim)

    def right_inverse(self, weight):
        return norm_except_dim(weight, 2, self.dim), weight


def weight_norm(module, name: str = "weight", dim=0):
    """Parametrizes ``module.<name>`` as ``g * v / ||v||``: the originals are g (``original0``, the norm
    over every dimension but ``dim``; None: of the whole tensor) and v (``original1``, the direction).
    Returns ``module``."""
    parametrize.register_parametrization(module, name, _WeightNorm(dim), unsafe=True)
    return module


class _SpectralNorm(Module):
    """``weight / sigma``, sigma the largest singular value of the weight as a matrix (dimension
    ``dim`` first) estimated by power iteration: ``_u`` and ``_v`` (buffers) start from 15 iterations
    on the initial weight, and each forward in training mode runs ``n_power_iterations`` more
    (``u = normalize(W v)``, then ``v = normalize(W^T u)``, in place, with no gradient). A 1-D weight
    is normalised to unit length instead."""

    def __init__(self, weight: Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12) -> None:
        super().__init__()
        ndim = weight.ndim
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or not -ndim <= dim < ndim:
            raise IndexError(
                f"spectral_norm: dim must be an int in [{-ndim}, {ndim - 1}] for a weight of shape "
                f"{tuple(weight.shape)}, got {dim!r}"
            )
        if isinstance(n_power_iterations, bool) or not isinstance(n_power_iterations, numbers.Integral):
            raise TypeError(f"spectral_norm: n_power_iterations must be an int, got {n_power_iterations!r}")
        if n_power_iterations <= 0:
            raise ValueError(
                "Expected n_power_iterations to be positive, but got n_power_iterations={}".format(n_power_iterations)
            )
        self.dim = int(dim) % ndim
        self.eps = float(eps)
        self.n_power_iterations = int(n_power_iterations)
        if ndim > 1:
            with autograd.no_grad():
                weight_mat = self._reshape_weight_to_matrix(weight)
                h, w = weight_mat.shape
                self.register_buffer("_u", _normalize(weight_mat.new_empty(h).normal_(0, 1), self.eps))
                self.register_buffer("_v", _normalize(weight_mat.new_empty(w).normal_(0, 1), self.eps))
                self._power_method(weight_mat, 15)

    def _reshape_weight_to_matrix(self, weight: Tensor) -> Tensor:
        return weight_as_matrix(weight, self.dim)

    def _power_method(self, weight_mat: Tensor, iterations: int) -> None:
        with autograd.no_grad():
            for _ in range(iterations):
                self._u.copy_(_normalize(weight_mat.mv(self._v), self.eps))
                self._v.copy_(_normalize(weight_mat.t().mv(self._u), self.eps))

    def forward(self, weight):
        if weight.ndim == 1:
            return _normalize(weight, self.eps)
        weight_mat = self._reshape_weight_to_matrix(weight)
        if self.training:
            self._power_method(weight_mat, self.n_power_iterations)
        # copies: the next forward's iterations write the buffers in place while this forward's graph
        # may still need these values for its backward
        u, v = self._u.clone(), self._v.clone()
        sigma = u.dot(weight_mat.mv(v))
        return weight / sigma

    def right_inverse(self, value):
        return value


def spectral_norm(module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12, dim=None):
    """Parametrizes ``module.<name>`` as itself divided by its spectral norm (see _SpectralNorm);
    ``dim`` (None: 1 for the transposed convolutions, else 0) is the dimension of the output
    channels. Returns ``module``."""
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"Module '{module}' has no parameter or buffer with name '{name}'")
    if dim is None:
        from ..conv import _ConvTransposeNd

        dim = 1 if isinstance(module, _ConvTransposeNd) else 0
    parametrize.register_parametrization(module, name, _SpectralNorm(weight, n_power_iterations, dim, eps))
    return module
