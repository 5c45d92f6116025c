"""Element-wise activations: ``relu``, ``gelu`` and their backward passes, single-pass kernels.

Definitions and special values are PyTorch's (``torch.relu``, ``torch.nn.functional.gelu`` and
their autograd gradients); csrc/cpu/activation/activation.h states them and the accuracy. The
inputs are float32 or float64 NumPy arrays of any shape and strides (other layouts are copied
once), or bfloat16 ones (relu and its backward on the values themselves, exact; gelu in float32,
the result rounded once); the result has the input's
shape and dtype. Every function takes ``out=`` (an array of that
shape and dtype, any strides, overlapping no input) and returns it.
"""

from __future__ import annotations

import numpy as np

from ..backends import backend_of
from ._validate import as_float_array, bfloat16_through_float32, check_output, is_bfloat16

__all__ = ["relu", "relu_backward", "gelu", "gelu_backward"]

_APPROXIMATIONS = ("none", "tanh")


def _grad(grad, x: np.ndarray, op: str) -> np.ndarray:
    g = as_float_array(grad, "grad", op, bfloat16=True)
    if g.dtype != x.dtype:
        raise TypeError(f"{op}: grad has dtype {g.dtype}, x has {x.dtype}")
    if g.shape != x.shape:
        raise ValueError(f"{op}: grad must have x's shape {x.shape}, got {g.shape}")
    return g


def _tanh(approximate, op: str) -> bool:
    if not isinstance(approximate, str) or approximate not in _APPROXIMATIONS:
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")
    return approximate == "tanh"


def _run(op: str, inputs: dict, out, *flags, kernel: str = "") -> np.ndarray:
    """Runs the backend's kernel ``op(*inputs, target, *flags)`` (named ``kernel`` where that is not
    the op's name) on C-contiguous copies of the inputs where they are not, writing ``out``
    (checked) or a new array of the last input's shape and dtype."""
    x = list(inputs.values())[-1]
    backend = backend_of(*inputs.values(), out, op=op)
    if out is None:
        result = backend.empty(x.shape, x.dtype)
    else:
        result = check_output(out, "out", op, x.shape, x.dtype, inputs, backend)
    if x.size:
        target = result if result.flags.c_contiguous else backend.empty(x.shape, x.dtype)
        getattr(backend, kernel or op)(*(backend.ascontiguousarray(a) for a in inputs.values()), target, *flags)
        if target is not result:
            result[...] = target
    return result


def _host_bfloat16(*arrays) -> bool:
    """Every array a bfloat16 NumPy array: the CPU kernels of relu and its backward take those as
    they are (both only select values, so nothing is rounded)."""
    return all(isinstance(a, np.ndarray) and is_bfloat16(a.dtype) for a in arrays)


@bfloat16_through_float32(native=_host_bfloat16)
def relu(x, *, out=None) -> np.ndarray:
    """``max(x, 0)`` element-wise, as ``torch.relu``: NaN stays NaN, -0 stays -0."""
    op = "relu"
    return _run(op, {"x": as_float_array(x, "x", op, bfloat16=True)}, out)


@bfloat16_through_float32(native=_host_bfloat16)
def relu_backward(grad, x, *, out=None) -> np.ndarray:
    """Gradient of ``relu`` with respect to ``x``: ``grad`` where ``x > 0`` (and where ``x`` is
    NaN), 0 where ``x <= 0``, as PyTorch's ``threshold_backward(grad, x, 0)``."""
    op = "relu_backward"
    x = as_float_array(x, "x", op, bfloat16=True)
    return _run(op, {"grad": _grad(grad, x, op), "x": x}, out)


@bfloat16_through_float32
def gelu(x, *, approximate: str = "none", out=None) -> np.ndarray:
    """``x * Phi(x)`` element-wise (Phi the standard normal CDF), as
    ``torch.nn.functional.gelu``; ``approximate="tanh"``: ``0.5 x (1 + tanh(sqrt(2/pi) (x +
    0.044715 x^3)))``. float32 results are within a few ulp, tiny negative tails included."""
    op = "gelu"
    tanh = _tanh(approximate, op)
    return _run(op, {"x": as_float_array(x, "x", op)}, out, tanh)


@bfloat16_through_float32
def gelu_backward(grad, x, *, approximate: str = "none", out=None) -> np.ndarray:
    """Gradient of ``gelu`` with respect to ``x``: ``grad * d gelu(x) / dx``, the derivative
    PyTorch's autograd uses for either ``approximate``."""
    op = "gelu_backward"
    tanh = _tanh(approximate, op)
    x = as_float_array(x, "x", op)
    return _run(op, {"grad": _grad(grad, x, op), "x": x}, out, tanh)
