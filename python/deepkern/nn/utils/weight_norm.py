"""``torch.nn.utils.weight_norm`` / ``remove_weight_norm``: the hook-based weight normalization
(Salimans and Kingma, 2016), as PyTorch's.

The parameter ``name`` (``weight``) is replaced by the parameters ``name + "_g"`` (its norm over
every dimension but ``dim``, kept with size 1 in those dimensions) and ``name + "_v"`` (its
direction, the original values); a forward pre-hook sets the plain attribute ``name`` to
``v * (g / ||v||)`` before each forward. ``dim=None`` takes the norm of the whole tensor (``g`` is
then 0-d); the state dict keys are PyTorch's."""

from __future__ import annotations

import numbers
import warnings

from ...tensor import Tensor
from ..module import Module, Parameter

__all__ = ["WeightNorm", "norm_except_dim", "weight_norm", "remove_weight_norm"]


def norm_except_dim(v: Tensor, pow: float = 2, dim: int = 0) -> Tensor:
    """The ``pow``-norm of ``v`` over every dimension but ``dim``, shaped to broadcast against
    ``v`` (size 1 in the other dimensions); ``dim=-1``: of the whole tensor, 0-d (PyTorch's
    ``torch.norm_except_dim``)."""
    if dim == -1:
        return v.norm(pow)
    dim = dim % v.ndim
    keep = tuple(d for d in range(v.ndim) if d != dim)
    return v.norm(pow, dim=keep, keepdim=True) if keep else v.abs()


def _weight_norm(v: Tensor, g: Tensor, dim: int) -> Tensor:
    return v * (g / norm_except_dim(v, 2, dim))


class WeightNorm:
    """The forward pre-hook (and its state: ``name``, ``dim``) that weight_norm registers."""

    def __init__(self, name: str, dim) -> None:
        self.name = name
        self.dim = -1 if dim is None else dim

    def compute_weight(self, module: Module) -> Tensor:
        return _weight_norm(getattr(module, self.name + "_v"), getattr(module, self.name + "_g"), self.dim)

    @staticmethod
    def apply(module: Module, name: str, dim) -> "WeightNorm":
        warnings.warn(
            "torch.nn.utils.weight_norm is deprecated in favor of torch.nn.utils.parametrizations.weight_norm.",
            FutureWarning,
            stacklevel=3,
        )
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, WeightNorm) and hook.name == name:
                raise RuntimeError(f"weight_norm: cannot register two weight_norm hooks on the same parameter {name!r}")
        if name not in module._parameters:
            raise AttributeError(f"weight_norm: {type(module).__name__} has no parameter {name!r}")
        weight = module._parameters[name]
        if weight is None:
            raise ValueError(f"weight_norm: parameter {name!r} is None")
        if dim is not None and dim != -1:  # -1: the whole tensor, as None (PyTorch's norm_except_dim)
            if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
                raise TypeError(f"weight_norm: dim must be an int or None, got {dim!r}")
            if not -weight.ndim <= dim < weight.ndim:
                raise IndexError(
                    f"weight_norm: dim must be None or in [{-weight.ndim}, {weight.ndim - 1}] for parameter "
                    f"{name!r} of shape {tuple(weight.shape)}, got {dim}"
                )
            dim = int(dim)
        fn = WeightNorm(name, dim)
        del module._parameters[name]
        # g and v as new parameters, and the weight as g / ||v|| * v
        module.register_parameter(name + "_g", Parameter(norm_except_dim(weight.detach(), 2, fn.dim)))
        module.register_parameter(name + "_v", Parameter(weight.detach()))
        setattr(module, name, fn.compute_weight(module))
        # recomputed before every forward
        module.register_forward_pre_hook(fn)
        return fn

    def remove(self, module: Module) -> None:
        weight = self.compute_weight(module)
        delattr(module, self.name)
        del module._parameters[self.name + "_g"]
        del module._parameters[self.name + "_v"]
        setattr(module, self.name, Parameter(weight.detach()))

    def __call__(self, module: Module, inputs) -> None:
        setattr(module, self.name, self.compute_weight(module))


def weight_norm(module, name: str = "weight", dim=0):
    """Applies weight normalization to the parameter ``name`` of ``module`` and returns ``module``
    (see the module docstring); FutureWarning as PyTorch's (it prefers the parametrization)."""
    if not isinstance(module, Module):
        raise TypeError(f"weight_norm: module must be an nn.Module, got {type(module).__name__}")
    WeightNorm.apply(module, name, dim)
    return module


def remove_weight_norm(module, name: str = "weight"):
    """Removes the weight normalization of ``name`` from ``module`` (``name`` becomes a Parameter
    again, holding the current weight) and returns ``module``; ValueError if it has none."""
    for k, hook in module._forward_pre_hooks.items():
        if isinstance(hook, WeightNorm) and hook.name == name:
            hook.remove(module)
            del module._forward_pre_hooks[k]
            return module
    raise ValueError(f"remove_weight_norm: weight_norm of {name!r} not found in {module}")
