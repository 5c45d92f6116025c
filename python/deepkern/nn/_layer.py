"""What the layers share: parameter creation from PyTorch's factory arguments, and input checks
whose messages name the layer (as its repr) and the shapes."""

from __future__ import annotations

import math

import numpy as np

from .. import amp, backends
from ..backends import CPU_DEVICE, Device
from ..ops._validate import is_bfloat16
from ..tensor import empty, get_default_dtype
from . import init
from .module import Parameter

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def describe(module) -> str:
    """The layer as PyTorch prints it, e.g. ``Linear(in_features=3, out_features=2, bias=True)``."""
    return f"{type(module).__name__}({module.extra_repr()})"


def factory_kwargs(module_name: str, dtype=None, device=None) -> dict:
    """The parameters' ``dtype`` (the default float dtype: float32 unless set) and ``device`` (the CPU
    by default) from a layer's arguments, checked: a device deepkern has no backend for is a RuntimeError."""
    try:
        device = CPU_DEVICE if device is None else Device(device)
        backends.get(device)
    except (ValueError, RuntimeError) as err:
        raise type(err)(f"{module_name}: {err}") from None
    dtype = get_default_dtype() if dtype is None else np.dtype(dtype)
    if dtype not in _FLOATS:
        raise TypeError(f"{module_name}: dtype must be float32 or float64, got {dtype}")
    return {"dtype": dtype, "device": device}


def size_argument(module_name: str, name: str, value, minimum: int = 0) -> int:
    """A layer's size argument (features, channels, rows) as an int of at least ``minimum`` and below
    2**62; a TypeError for a float, a bool or anything not an integer (PyTorch's), a ValueError else."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{module_name}: {name} must be an int, got {value!r}")
    if not minimum <= value < 2**62:
        raise ValueError(f"{module_name}: {name} must be an int >= {minimum}, got {value}")
    return int(value)


def empty_parameter(shape, dtype, device) -> Parameter:
    """An uninitialised Parameter on ``device`` (the layer's ``reset_parameters`` fills it)."""
    return Parameter(empty(shape, dtype=dtype, device=device))


def add_weight_and_bias(module, weight_shape: tuple, bias: bool, dtype, device) -> None:
    """Registers ``weight`` and ``bias`` (one per output, dimension 0 of the weight, or None)."""
    module.weight = empty_parameter(weight_shape, dtype, device)
    if bias:
        module.bias = empty_parameter(weight_shape[:1], dtype, device)
    else:
        module.register_parameter("bias", None)


def reset_weight_and_bias(module) -> None:
    """PyTorch's Linear/Conv initialisation: kaiming_uniform_(a=sqrt(5)) for the weight and
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias."""
    init.kaiming_uniform_(module.weight, a=math.sqrt(5))
    if module.bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(module.weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(module.bias, -bound, bound)


def check_float(module, x, dtype=None, also=(), bfloat16=False) -> None:
    """``x`` is float32/float64 or one of the dtypes ``also`` (the layer's other kernels' dtypes),
    or bfloat16 where ``bfloat16`` (the layer's functions take it), and of ``dtype``, the layer's
    parameters', when given. Under autocast on ``x``'s device, ``x`` may also have the autocast's
    dtype and differ from the parameters' (its ops cast them)."""
    got = x.dtype
    if bfloat16 and is_bfloat16(got):
        also = (*also, got)
    device_type = backends.device_of(x._array if hasattr(x, "_array") else x).type  # a Tensor or an array
    if amp.is_autocast_enabled(device_type):
        dtype, also = None, (*also, amp.get_autocast_dtype(device_type))
    if dtype is not None and got != dtype:
        raise TypeError(
            f"{describe(module)}: input has dtype {got} but the layer's parameters are {dtype}; "
            f"convert one of them (.float(), .double() or .to(dtype))"
        )
    if got not in _FLOATS + tuple(also):
        names = [str(d) for d in _FLOATS + tuple(also)]
        accepted = ", ".join(names[:-1]) + " or " + names[-1]
        raise TypeError(f"{describe(module)}: input must be {accepted}, got dtype {got}")


def check_ndim(module, x, ndims, expected: str) -> None:
    """``x`` has one of ``ndims`` dimensions; ``expected`` spells the accepted shapes."""
    if x.ndim not in ndims:
        bad_shape(module, x, expected)


def bad_shape(module, x, expected: str):
    raise ValueError(f"{describe(module)}: input has shape {tuple(x.shape)}, expected {expected}")


def run_op(module, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with the layer named in front of an op's ValueError, TypeError or
    IndexError (an input the layer's own checks let through, e.g. smaller than the window)."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError, IndexError) as err:
        raise type(err)(f"{describe(module)}: {err}") from None
