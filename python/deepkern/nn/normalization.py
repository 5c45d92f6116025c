"""Normalisation layers. ``BatchNorm1d``, ``BatchNorm2d`` and ``BatchNorm3d`` with PyTorch's
parameters (weight, bias), buffers (running_mean, running_var, num_batches_tracked) and update
rules: biased variance to normalise, unbiased for the running variance, ``momentum=None`` for a
cumulative average over the batches seen. ``bias=False`` (keyword) keeps the scale without the
shift, as in torch 2.13. ``InstanceNorm1d``, ``InstanceNorm2d`` and ``InstanceNorm3d`` with the
same parameters and buffers (off by default: ``affine=False``, ``track_running_stats=False``).
``LayerNorm``, ``GroupNorm`` and ``RMSNorm`` with PyTorch's parameters (weight initialised to ones,
bias to zeros), so state dicts carry over. ``CosineSimilarity`` and ``PairwiseDistance``, the layer
forms of the normalised product and the p-norm distance."""

from __future__ import annotations

import warnings

import numpy as np

from .. import autograd
from ..tensor import ones, zeros
from . import functional as F
from . import init
from ._inference import passes_through
from ._layer import bad_shape, check_float, describe, empty_parameter, factory_kwargs, run_op, size_argument
from .module import Module

__all__ = [
    "BatchNorm3d",
    "LocalResponseNorm",
    "BatchNorm1d",
    "BatchNorm2d",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "GroupNorm",
    "RMSNorm",
    "CosineSimilarity",
    "PairwiseDistance",
]


class _BatchNorm(Module):
    _ndims: tuple = ()
    _optional_state = ("num_batches_tracked",)  # absent from checkpoints of older PyTorch versions

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum=0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ):
        super().__init__()
        factory = factory_kwargs(type(self).__name__, dtype, device)
        self.num_features = size_argument(type(self).__name__, "num_features", num_features)
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = empty_parameter((self.num_features,), **factory)
            if bias:
                self.bias = empty_parameter((self.num_features,), **factory)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(self.num_features, **factory))
            self.register_buffer("running_var", ones(self.num_features, **factory))
            self.register_buffer("num_batches_tracked", zeros((), dtype=np.int64, device=factory["device"]))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean._array[...] = 0
            self.running_var._array[...] = 1
            self.num_batches_tracked._array[...] = 0
            self._bump_running_stats()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _expected_shape(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def _feature_dim(self, input) -> int:
        """The dimension of ``input`` holding the features (channels)."""
        return 1

    def forward(self, input):
        if passes_through(self, input):  # the output of the convolution this layer was folded into
            return input
        check_float(self, input, None if self.weight is None else self.weight.dtype, bfloat16=True)
        if input.ndim not in self._ndims or input.shape[1] != self.num_features:
            bad_shape(self, input, self._expected_shape())
        if self.training and input.shape[0] * int(np.prod(input.shape[2:])) == 1:
            raise ValueError(
                f"{describe(self)}: expected more than 1 value per channel when training, "
                f"got input of shape {tuple(input.shape)}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked._array += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked._array)
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        out = F.batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
        )
        if self.training and self.track_running_stats:  # counted in place (F.batch_norm bumps the statistics)
            autograd.bump_version(self.num_batches_tracked._array)
        return out

    def _bump_running_stats(self) -> None:
        for t in (self.running_mean, self.running_var, self.num_batches_tracked):
            autograd.bump_version(t._array)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Over input ``(N, C)`` or ``(N, C, L)``."""

    _ndims = (2, 3)

    def _expected_shape(self) -> str:
        c = self.num_features
        return f"(N, {c}) or (N, {c}, L)"


class BatchNorm2d(_BatchNorm):
    """Over input ``(N, C, H, W)``."""

    _ndims = (4,)

    def _expected_shape(self) -> str:
        return f"(N, {self.num_features}, H, W)"


class BatchNorm3d(_BatchNorm):
    """Over input ``(N, C, D, H, W)``."""

    _ndims = (5,)

    def _expected_shape(self) -> str:
        return f"(N, {self.num_features}, D, H, W)"


class _InstanceNorm(_BatchNorm):
    """Per sample and channel statistics (F.instance_norm); input batched, ``(N, C, *)``, or not,
    ``(C, *)``. The running statistics (``track_running_stats``) are updated in training and used
    in eval mode; ``num_batches_tracked`` is kept for the state dict but not counted, as PyTorch.
    ``momentum=None`` is taken as 0 (the running statistics stay), as PyTorch does."""

    _ndims: tuple = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum=0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def _feature_dim(self, input) -> int:
        return input.ndim - self._ndims[0]  # 0 unbatched, 1 batched

    def forward(self, input):
        check_float(self, input, None if self.weight is None else self.weight.dtype, bfloat16=True)
        unbatched, batched = self._ndims
        if input.ndim not in self._ndims:
            raise ValueError(f"{describe(self)}: expected {unbatched}D or {batched}D input (got {input.ndim}D input)")
        feature_dim = self._feature_dim(input)
        if input.shape[feature_dim] != self.num_features:
            if self.affine:
                raise ValueError(
                    f"{describe(self)}: expected input's size at dim={feature_dim} to match num_features "
                    f"({self.num_features}), but got: {input.shape[feature_dim]} (input of shape {tuple(input.shape)})"
                )
            warnings.warn(
                f"{describe(self)}: input's size at dim={feature_dim} does not match num_features. You can "
                "silence this warning by not passing in num_features, which is not used because affine=False",
                UserWarning,
                stacklevel=2,
            )
        x = input.unsqueeze(0) if input.ndim == unbatched else input
        out = run_op(
            self,
            F.instance_norm,
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training or not self.track_running_stats,
            0.0 if self.momentum is None else self.momentum,
            self.eps,
        )
        return out.squeeze(0) if input.ndim == unbatched else out


class InstanceNorm1d(_InstanceNorm):
    """Over input ``(N, C, L)`` or ``(C, L)``."""

    _ndims = (2, 3)


class InstanceNorm2d(_InstanceNorm):
    """Over input ``(N, C, H, W)`` or ``(C, H, W)``."""

    _ndims = (3, 4)


class InstanceNorm3d(_InstanceNorm):
    """Over input ``(N, C, D, H, W)`` or ``(C, D, H, W)``."""

    _ndims = (4, 5)


class _AffineNorm(Module):
    """A layer with an optional ``weight`` (initialised to ones) and ``bias`` (zeros)."""

    def _add_parameters(self, shape: tuple, weight: bool, bias: bool, factory: dict) -> None:
        for name, wanted in (("weight", weight), ("bias", weight and bias)):
            if wanted:
                setattr(self, name, empty_parameter(shape, **factory))
            else:
                self.register_parameter(name, None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)


class LayerNorm(_AffineNorm):
    """Over the last ``len(normalized_shape)`` axes of the input, which must equal
    ``normalized_shape``; ``elementwise_affine`` adds a weight (and, with ``bias``, a bias) of
    that shape."""

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = factory_kwargs(type(self).__name__, dtype, device)
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self._add_parameters(self.normalized_shape, elementwise_affine, bias, factory)

    def forward(self, input):
        check_float(self, input, None if self.weight is None else self.weight.dtype, bfloat16=True)
        k = len(self.normalized_shape)
        if input.ndim < k or tuple(input.shape[input.ndim - k :]) != self.normalized_shape:
            bad_shape(self, input, f"(*, {', '.join(map(str, self.normalized_shape))})")
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(_AffineNorm):
    """Over input ``(N, C, *)``: ``num_groups`` groups of consecutive channels (it must divide
    ``num_channels``); ``affine`` adds a per-channel weight and bias."""

    def __init__(
        self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, device=None, dtype=None
    ):
        super().__init__()
        factory = factory_kwargs(type(self).__name__, dtype, device)
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(
                f"GroupNorm: num_groups ({num_groups}) must be >= 1 and divide num_channels ({num_channels})"
            )
        self.num_groups, self.num_channels, self.eps, self.affine = int(num_groups), int(num_channels), eps, affine
        self._add_parameters((self.num_channels,), affine, True, factory)

    def forward(self, input):
        check_float(self, input, None if self.weight is None else self.weight.dtype, bfloat16=True)
        if input.ndim < 2 or input.shape[1] != self.num_channels:
            bad_shape(self, input, f"(N, {self.num_channels}, *)")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class RMSNorm(Module):
    """Root mean square normalisation over the last ``len(normalized_shape)`` axes of the input,
    which must equal ``normalized_shape``: ``x / sqrt(mean(x**2) + eps) * weight``; ``eps`` None is
    the machine epsilon of the input's dtype; ``elementwise_affine`` adds the weight (ones)."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine: bool = True, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        factory = factory_kwargs(name, dtype, device)
        self.normalized_shape = F._normalized_shape(name, normalized_shape)
        if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating))):
            raise TypeError(f"{name}: eps must be a number or None, got {type(eps).__name__}")
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:  # a weight only (no bias, as PyTorch's)
            self.weight = empty_parameter(self.normalized_shape, **factory)
        else:
            self.register_parameter("weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)

    def forward(self, input):
        check_float(self, input, bfloat16=True)
        k = len(self.normalized_shape)
        if input.ndim < k or tuple(input.shape[input.ndim - k :]) != self.normalized_shape:
            bad_shape(self, input, f"(*, {', '.join(map(str, self.normalized_shape))})")
        return run_op(self, F.rms_norm, input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class CosineSimilarity(Module):
    """The cosine similarity of two inputs along ``dim`` (F.cosine_similarity)."""

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        return run_op(self, F.cosine_similarity, x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    """The p-norm distance ``||x1 - x2 + eps||_p`` over the last dimension (F.pairwise_distance)."""

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1, x2):
        return run_op(self, F.pairwise_distance, x1, x2, self.norm, self.eps, self.keepdim)


class LocalResponseNorm(Module):
    """AlexNet's local response normalization over ``size`` neighbouring channels (F.local_response_norm)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, input):
        return run_op(self, F.local_response_norm, input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
