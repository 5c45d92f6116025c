"""``torch.nn.utils``: gradient clipping by norm and by value; ``parameters_to_vector`` and
``vector_to_parameters``; ``spectral_norm`` and ``weight_norm`` (the hook-based
reparametrizations, undone by ``remove_spectral_norm`` and ``remove_weight_norm``); ``rnn``, the
variable-length batches of the recurrent layers (PackedSequence and the pad/pack functions);
``fuse_modules``, the inference fusion of layers called from a model's own ``forward``;
``parametrize`` and ``parametrizations`` (a tensor computed from others: weight_norm and
spectral_norm in their current PyTorch form)."""

from __future__ import annotations

import functools
import math
import operator
import weakref

import numpy as np

from ...tensor import Tensor, tensor
from . import parametrizations, parametrize, rnn
from .convert_parameters import parameters_to_vector, vector_to_parameters
from .spectral_norm import remove_spectral_norm, spectral_norm
from .weight_norm import remove_weight_norm, weight_norm

__all__ = [
    "clip_grad_norm_",
    "clip_grad_value_",
    "fuse_modules",
    "parameters_to_vector",
    "parametrizations",
    "parametrize",
    "remove_spectral_norm",
    "remove_weight_norm",
    "rnn",
    "spectral_norm",
    "vector_to_parameters",
    "weight_norm",
]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
    """Scales the gradients of ``parameters`` in place so that their joint ``norm_type`` norm
    is at most ``max_norm``; returns the norm before clipping as a 0-d Tensor of the gradients'
    promoted dtype on their device, as PyTorch does (its rule: scale by ``max_norm / (norm + 1e-6)``
    when that is below 1, or NaN, which a NaN norm gives every gradient). ``norm_type`` inf is the
    largest magnitude, -inf the smallest, 0 PyTorch's count (of the gradients with a non-zero element).
    With ``error_if_nonfinite`` a NaN or infinite norm raises RuntimeError and leaves the gradients alone."""
    with_grad = [p.grad for p in _as_list(parameters) if p.grad is not None]
    if not with_grad:
        return tensor(0.0)
    grads = [g._array for g in with_grad]
    norm_type = float(norm_type)
    # Each gradient's part stays on its device; one conversion to a Python float at the end (one
    # wait for a GPU per call, not one per gradient).
    if math.isinf(norm_type):
        extreme = np.maximum if norm_type > 0 else np.minimum
        parts = [(np.abs(g).max() if norm_type > 0 else np.abs(g).min()) for g in grads if g.size]
        total = float(functools.reduce(extreme, parts)) if parts else 0.0
    elif norm_type == 0:
        total = float(sum(bool(np.count_nonzero(g)) for g in grads))
    else:
        if norm_type == 2.0:  # the same sums without a power function: 15x faster
            parts = [np.square(g, dtype=np.float64).sum() for g in grads]
        else:
            parts = [np.sum(np.abs(g, dtype=np.float64) ** norm_type) for g in grads]
        total = float(functools.reduce(operator.add, parts)) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}, "
            "so they cannot be clipped (error_if_nonfinite=True)"
        )
    scale = float(max_norm) / (total + 1e-6)
    if not scale >= 1:  # below 1, or NaN
        for g in grads:
            g *= g.dtype.type(scale)
    dtype = functools.reduce(np.promote_types, (g.dtype for g in grads))
    return tensor(total, dtype=dtype, device=with_grad[0].device)


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


def fuse_modules(model, modules_to_fuse):
    """Fuses groups of ``model``'s layers for inference and returns ``model``; the groups are named
    as ``torch.ao.quantization.fuse_modules`` names them: lists of dotted submodule names (or one
    list), each ``[conv, bn]``, ``[conv, bn, relu]``, ``[conv, relu]`` (Conv2d, BatchNorm2d with
    running statistics, ReLU) or ``[linear, relu]``.

    The modules stay where they are (same state dict, same training): in eval mode under
    ``no_grad``, on CPU input, the group's first layer computes the whole group in one call (the
    batch norm folded into the convolution's weight and bias, refolded when any of them changes;
    the ReLU in the same call) and the others pass that output through. The model's ``forward``
    must feed that layer's output only to the next layer of its group (as PyTorch's fusion
    assumes). ``Sequential`` fuses its adjacent children by itself; this is for models with their
    own ``forward``."""
    from .._inference import FUSION, can_fold
    from ..activation import ReLU
    from ..conv import Conv2d
    from ..linear import Linear
    from ..normalization import BatchNorm2d

    groups = [modules_to_fuse] if modules_to_fuse and isinstance(modules_to_fuse[0], str) else modules_to_fuse
    checked = []
    for names in groups:
        layers = [model.get_submodule(name) for name in names]
        kinds = tuple(type(m) for m in layers)
        if kinds not in (
            (Conv2d, BatchNorm2d),
            (Conv2d, BatchNorm2d, ReLU),
            (Conv2d, ReLU),
            (Linear, ReLU),
        ):
            got = ", ".join(t.__name__ for t in kinds)
            raise ValueError(
                f"fuse_modules: cannot fuse {list(names)} ({got}); groups are [Conv2d, BatchNorm2d], "
                "[Conv2d, BatchNorm2d, ReLU], [Conv2d, ReLU] or [Linear, ReLU]"
            )
        bn = layers[1] if kinds[1] is BatchNorm2d else None
        if bn is not None and not can_fold(layers[0], bn):
            raise ValueError(
                f"fuse_modules: {names[1]} ({bn!r}) cannot be folded into {names[0]} ({layers[0]!r}): it needs "
                "running statistics over the convolution's output channels, in its dtype and on the CPU"
            )
        # Where the fused batch norm and ReLU sit in the model (parent, attribute name): replacing
        # one there ends the fusion.
        places = [(weakref.ref(_parent(model, n)), n.rpartition(".")[2], m) for n, m in zip(names[1:], layers[1:])]
        checked.append((layers[0], bn, layers[-1] if kinds[-1] is ReLU else None, places))
    for head, bn, relu, places in checked:
        head.__dict__[FUSION] = (bn, relu, places)
    return model


def _parent(model, name: str):
    """The module holding the submodule ``name`` (dotted) of ``model``."""
    parent = name.rpartition(".")[0]
    return model.get_submodule(parent) if parent else model
