"""Lazy modules, PyTorch's: ``LazyLinear``, ``LazyConv1d/2d/3d``, ``LazyConvTranspose1d/2d/3d``,
``LazyBatchNorm1d/2d/3d`` and ``LazyInstanceNorm1d/2d/3d`` take the regular layer's arguments but
the input size (``in_features``, ``in_channels``, ``num_features``), which their first call infers
from its input. Until then their parameters (and running statistics) are UninitializedParameter
and UninitializedBuffer placeholders (nn/module.py), which follow ``to()``; a forward pre-hook
materializes them at the first call, initializes them as the regular layer does, and makes the
module that layer: its class is swapped (an attribute set, so the inference caches see a module
change). ``load_state_dict`` into a lazy module takes the checkpoint's shapes; the first call then
checks them against the input's size."""

from __future__ import annotations

from ._layer import bad_shape, describe
from .conv import _NCDHW, _NCHW, _NCL, Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .linear import Linear
from .module import UninitializedBuffer, UninitializedParameter, is_lazy
from .normalization import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
)

__all__ = [
    "LazyModuleMixin",
    "LazyLinear",
    "LazyConv1d",
    "LazyConv2d",
    "LazyConv3d",
    "LazyConvTranspose1d",
    "LazyConvTranspose2d",
    "LazyConvTranspose3d",
    "LazyBatchNorm1d",
    "LazyBatchNorm2d",
    "LazyBatchNorm3d",
    "LazyInstanceNorm1d",
    "LazyInstanceNorm2d",
    "LazyInstanceNorm3d",
]


def _infer_parameters(module, args):
    """The lazy module's forward pre-hook: its parameters from the first input, then the regular class."""
    module.initialize_parameters(*args)
    if module.has_uninitialized_params():
        raise RuntimeError(f"module {type(module).__name__} has not been fully initialized")
    module._initialize_hook.remove()
    del module._initialize_hook
    if module.cls_to_become is not None:
        module.__class__ = module.cls_to_become


class LazyModuleMixin:
    """What a lazy layer adds to its regular class (``cls_to_become``): the size attribute
    ``_lazy_size`` is 0 and the parameters (and the buffers ``_lazy_buffers``) placeholders until the
    first call, which sets them from the input (``_size_of(input)``; the shapes: ``_lazy_shapes()``)."""

    cls_to_become = None
    _lazy_size = ""
    _lazy_buffers: tuple = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # the regular layer with size 0, its entries replaced below
        for name, p in self._parameters.items():
            if p is not None:
                setattr(self, name, UninitializedParameter(device=p.device, dtype=p.dtype))
        for name in self._lazy_buffers:
            b = self._buffers[name]
            if b is not None:
                setattr(self, name, UninitializedBuffer(device=b.device, dtype=b.dtype))
        self._initialize_hook = self.register_forward_pre_hook(_infer_parameters)

    def has_uninitialized_params(self) -> bool:
        """Whether a parameter or buffer is still a placeholder."""
        return any(is_lazy(t) for t in (*self._parameters.values(), *self._buffers.values()))

    def reset_parameters(self) -> None:
        """The regular layer's initialization, once the parameters have their shapes."""
        if not self.has_uninitialized_params() and getattr(self, self._lazy_size) != 0:
            super().reset_parameters()

    def initialize_parameters(self, input, *args, **kwargs) -> None:
        """The size from ``input``, the placeholders materialized to the regular layer's shapes and
        initialized as it does; entries loaded from a state dict must have those shapes."""
        setattr(self, self._lazy_size, self._size_of(input))
        shapes = self._lazy_shapes()
        entries = {name: getattr(self, name) for name in shapes}
        loaded = [name for name, t in entries.items() if not is_lazy(t)]
        for name, t in entries.items():
            if is_lazy(t):
                t.materialize(shapes[name])
            elif t.shape != shapes[name]:
                raise ValueError(
                    f"{describe(self)}: the input of shape {tuple(input.shape)} needs {name} of shape "
                    f"{shapes[name]}, but the loaded {name} has shape {t.shape}"
                )
        if not loaded:
            self.reset_parameters()
        elif len(loaded) < len(entries):
            raise RuntimeError(
                f"{describe(self)}: {', '.join(loaded)} were loaded but not the other entries "
                f"({', '.join(n for n in entries if n not in loaded)}); load all of them or none"
            )

    def _shapes(self, **shapes) -> dict:
        """``shapes`` of the entries the layer has (not None)."""
        return {name: shape for name, shape in shapes.items() if getattr(self, name) is not None}


class LazyLinear(LazyModuleMixin, Linear):
    """A Linear whose ``in_features`` is the size of the first input's last dimension."""

    cls_to_become = Linear
    _lazy_size = "in_features"

    def __init__(self, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(0, out_features, bias, device, dtype)

    def _size_of(self, input) -> int:
        if input.ndim < 1:
            bad_shape(self, input, "(..., in_features)")
        return input.shape[-1]

    def _lazy_shapes(self) -> dict:
        return self._shapes(weight=(self.out_features, self.in_features), bias=(self.out_features,))


class _LazyConvMixin(LazyModuleMixin):
    """A convolution whose ``in_channels`` is the first input's channels; the arguments are the
    regular layer's after ``in_channels``."""

    _lazy_size = "in_channels"

    def __init__(self, out_channels: int, kernel_size, *args, **kwargs):
        super().__init__(0, out_channels, kernel_size, *args, **kwargs)

    def _size_of(self, input) -> int:
        n = self.dims
        if input.ndim not in (n + 1, n + 2):
            bad_shape(self, input, (_NCL, _NCHW, _NCDHW)[n - 1])
        channels = input.shape[-n - 1]
        if channels % self.groups:
            raise ValueError(f"{describe(self)}: in_channels={channels} must be divisible by groups={self.groups}")
        return channels

    def _lazy_shapes(self) -> dict:
        c, k, g = self.in_channels, self.out_channels, self.groups
        weight = (c, k // g) if self.transposed else (k, c // g)
        return self._shapes(weight=weight + self.kernel_size, bias=(k,))


def _lazy_form(mixin, regular):
    """The lazy form of layer class ``regular``: ``mixin``'s size (``_lazy_size``) inferred from the first
    input, after which the module becomes ``regular``; named and picklable as a class of this module."""
    name = "Lazy" + regular.__name__
    doc = f"A {regular.__name__} whose ``{mixin._lazy_size}`` is inferred from the first input."
    return type(
        name, (mixin, regular), {"cls_to_become": regular, "__doc__": doc, "__module__": __name__, "__qualname__": name}
    )


LazyConv1d, LazyConv2d, LazyConv3d, LazyConvTranspose1d, LazyConvTranspose2d, LazyConvTranspose3d = (
    _lazy_form(_LazyConvMixin, layer)
    for layer in (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d)
)


class _LazyNormMixin(LazyModuleMixin):
    """A batch or instance normalization whose ``num_features`` is the first input's channels, with
    PyTorch's lazy defaults (``affine`` and ``track_running_stats`` True, for the instance norms too)."""

    _lazy_size = "num_features"
    _lazy_buffers = ("running_mean", "running_var")

    def __init__(
        self,
        eps: float = 1e-5,
        momentum=0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ):
        super().__init__(0, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def _size_of(self, input) -> int:
        if input.ndim not in self._ndims:
            accepted = " or ".join(f"{n}-D" for n in self._ndims)
            raise ValueError(f"{describe(self)}: expected {accepted} input, got shape {tuple(input.shape)}")
        return input.shape[self._feature_dim(input)]

    def _lazy_shapes(self) -> dict:
        c = (self.num_features,)
        return self._shapes(weight=c, bias=c, running_mean=c, running_var=c)


LazyBatchNorm1d, LazyBatchNorm2d, LazyBatchNorm3d, LazyInstanceNorm1d, LazyInstanceNorm2d, LazyInstanceNorm3d = (
    _lazy_form(_LazyNormMixin, layer)
    for layer in (BatchNorm1d, BatchNorm2d, BatchNorm3d, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d)
)
