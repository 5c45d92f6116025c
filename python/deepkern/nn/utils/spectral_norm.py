"""``torch.nn.utils.spectral_norm`` / ``remove_spectral_norm``: the classic hook-based spectral
normalization of SN-GANs (Miyato et al., 2018), as PyTorch's.

The parameter ``name`` (``weight``) is replaced by the parameter ``name + "_orig"`` and the buffers
``name + "_u"`` and ``name + "_v"`` (the left and right singular vector estimates; the state dict
keys are PyTorch's, so a PyTorch state dict loads and gives the same outputs). A forward pre-hook
sets the plain attribute ``name`` to ``weight_orig / sigma`` before each forward, ``sigma =
u . (W v)`` with ``W`` the weight as a matrix (dimension ``dim`` first, the others flattened). In
training mode it first runs ``n_power_iterations`` power iterations, writing ``u`` and ``v`` in
place (``v = normalize(W^T u)``, ``u = normalize(W v)``, with no gradient through them); in eval
mode it uses them as they are."""

from __future__ import annotations

import numbers

from ... import autograd
from ...tensor import Tensor
from ..module import Module, Parameter

__all__ = ["SpectralNorm", "spectral_norm", "remove_spectral_norm"]


def _normalize(x: Tensor, eps: float) -> Tensor:
    """``x / max(||x||_2, eps)`` (torch.nn.functional.normalize of a vector)."""
    return x / x.norm().clamp(min=eps)


def weight_as_matrix(weight: Tensor, dim: int) -> Tensor:
    """``weight`` as a matrix: dimension ``dim`` first (its rows), the others flattened."""
    if dim != 0:
        weight = weight.permute(dim, *[d for d in range(weight.ndim) if d != dim])
    return weight.reshape(weight.shape[0], -1)


class SpectralNorm:
    """The forward pre-hook (and its state) that spectral_norm registers; PyTorch's class, with the
    same attributes (``name``, ``dim``, ``n_power_iterations``, ``eps``)."""

    _version: int = 1

    def __init__(self, name: str = "weight", n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12) -> None:
        self.name = name
        self.dim = dim
        if isinstance(n_power_iterations, bool) or not isinstance(n_power_iterations, numbers.Integral):
            raise TypeError(f"spectral_norm: n_power_iterations must be an int, got {n_power_iterations!r}")
        if n_power_iterations <= 0:
            raise ValueError(
                "spectral_norm: expected n_power_iterations to be positive, but got "
                f"n_power_iterations={n_power_iterations}"
            )
        self.n_power_iterations = int(n_power_iterations)
        self.eps = float(eps)

    def reshape_weight_to_matrix(self, weight: Tensor) -> Tensor:
        return weight_as_matrix(weight, self.dim)

    def compute_weight(self, module: Module, do_power_iteration: bool) -> Tensor:
        """``weight_orig / sigma``, after the power iterations (which update the buffers ``u`` and
        ``v`` in place) when ``do_power_iteration``."""
        weight = getattr(module, self.name + "_orig")
        u = getattr(module, self.name + "_u")
        v = getattr(module, self.name + "_v")
        weight_mat = self.reshape_weight_to_matrix(weight)
        if do_power_iteration:
            with autograd.no_grad():
                for _ in range(self.n_power_iterations):
                    v.copy_(_normalize(weight_mat.t().mv(u), self.eps))
                    u.copy_(_normalize(weight_mat.mv(v), self.eps))
                # Copies: the next forward's iterations write the buffers in place while this
                # forward's graph may still need these values for its backward.
                u = u.clone()
                v = v.clone()
        sigma = u.dot(weight_mat.mv(v))
        return weight / sigma

    def remove(self, module: Module) -> None:
        """Puts back ``name`` as a Parameter holding the current normalized weight (no power
        iteration) and removes ``name_orig``, ``name_u`` and ``name_v``."""
        with autograd.no_grad():
            weight = self.compute_weight(module, do_power_iteration=False)
        delattr(module, self.name)
        delattr(module, self.name + "_u")
        delattr(module, self.name + "_v")
        delattr(module, self.name + "_orig")
        module.register_parameter(self.name, Parameter(weight.detach()))

    def __call__(self, module: Module, inputs) -> None:
        setattr(module, self.name, self.compute_weight(module, do_power_iteration=module.training))

    @staticmethod
    def apply(module: Module, name: str, n_power_iterations: int, dim: int, eps: float) -> "SpectralNorm":
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm) and hook.name == name:
                raise RuntimeError(
                    f"spectral_norm: cannot register two spectral_norm hooks on the same parameter {name!r}"
                )
        fn = SpectralNorm(name, n_power_iterations, dim, eps)
        if name not in module._parameters:
            raise KeyError(f"spectral_norm: {type(module).__name__} has no parameter {name!r}")
        weight = module._parameters[name]
        if weight is None:
            raise ValueError(f"spectral_norm: `SpectralNorm` cannot be applied as parameter {name!r} is None")
        if weight.ndim == 0:
            raise ValueError(f"spectral_norm: parameter {name!r} must have at least one dimension, got a 0-d tensor")
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or not -weight.ndim <= dim < weight.ndim:
            raise IndexError(
                f"spectral_norm: dim must be an int in [{-weight.ndim}, {weight.ndim - 1}] for parameter {name!r} "
                f"of shape {tuple(weight.shape)}, got {dim!r}"
            )
        fn.dim = int(dim) % weight.ndim  # PyTorch's permute fails on a negative dim; it counts from the end here
        with autograd.no_grad():
            weight_mat = fn.reshape_weight_to_matrix(weight)
            h, w = weight_mat.shape
            # random starting u and v
            u = _normalize(weight.new_empty(h).normal_(0, 1), fn.eps)
            v = _normalize(weight.new_empty(w).normal_(0, 1), fn.eps)
        delattr(module, fn.name)
        module.register_parameter(fn.name + "_orig", weight)
        # ``name`` stays an attribute (code that initialises weights reads it), but a plain tensor,
        # not a parameter: the weight's data until the first forward replaces it.
        setattr(module, fn.name, weight.detach())
        module.register_buffer(fn.name + "_u", u)
        module.register_buffer(fn.name + "_v", v)
        module.register_forward_pre_hook(fn)
        return fn


def spectral_norm(module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12, dim=None):
    """Applies spectral normalization to the parameter ``name`` of ``module`` and returns ``module``
    (see the module docstring). ``dim`` (None: 1 for the transposed convolutions, whose weights hold
    the output channels in dimension 1, else 0) is the dimension of the output channels."""
    if not isinstance(module, Module):
        raise TypeError(f"spectral_norm: module must be an nn.Module, got {type(module).__name__}")
    if dim is None:
        from ..conv import _ConvTransposeNd

        dim = 1 if isinstance(module, _ConvTransposeNd) else 0
    SpectralNorm.apply(module, name, n_power_iterations, dim, eps)
    return module


def remove_spectral_norm(module, name: str = "weight"):
    """Removes the spectral normalization of ``name`` from ``module`` (``name`` becomes a Parameter
    again, holding the normalized weight) and returns ``module``; ValueError if it has none."""
    for k, hook in module._forward_pre_hooks.items():
        if isinstance(hook, SpectralNorm) and hook.name == name:
            hook.remove(module)
            del module._forward_pre_hooks[k]
            return module
    raise ValueError(f"remove_spectral_norm: spectral_norm of {name!r} not found in {module}")
