"""Activation layers and ``Dropout`` (PyTorch's signatures, defaults and reprs). ``inplace=True``
is accepted and computes out of place (the result is the same). ``PReLU`` holds its slopes as a
parameter."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from . import functional as F
from . import init
from ._inference import CPU, identity, infer_alone, passes_through
from ._layer import check_float, empty_parameter, factory_kwargs, run_op
from .module import Module

__all__ = [
    "RReLU",
    "AlphaDropout",
    "FeatureAlphaDropout",
    "Softmax2d",
    "ReLU",
    "LeakyReLU",
    "Tanh",
    "Sigmoid",
    "GELU",
    "SiLU",
    "ELU",
    "Softplus",
    "PReLU",
    "Hardtanh",
    "ReLU6",
    "Hardsigmoid",
    "Hardswish",
    "LogSigmoid",
    "Softsign",
    "Tanhshrink",
    "Mish",
    "Softmax",
    "LogSoftmax",
    "Softmin",
    "SELU",
    "CELU",
    "GLU",
    "Softshrink",
    "Hardshrink",
    "Threshold",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
]


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _inplace_repr(inplace: bool) -> str:
    return "inplace=True" if inplace else ""


def _check_input(module, input) -> None:
    """An activation's input: float32, float64 or bfloat16 (which its function computes in float32
    and rounds once)."""
    check_float(module, input, bfloat16=True)


def _relu_step(x):
    """ReLU's inference step (see _inference.py): the kernel into a new array."""
    y = np.empty_like(x)
    CPU.relu(x, y)
    return y


class ReLU(Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        if passes_through(self, input):  # the output of a layer this ReLU was fused into
            return input
        y = infer_alone(self, input)
        if y is not None:
            return y
        _check_input(self, input)
        return F.relu(input)

    def _infer_step(self, x, bn=None, relu=False):
        """The inference step for arrays typed as ``x`` (from _inference.host_array): the kernel
        alone, into a new array; None for a dtype it lacks (the ordinary path)."""
        return _relu_step if x.dtype in _KERNEL_DTYPES else None

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input):
        _check_input(self, input)
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Tanh(Module):
    def forward(self, input):
        _check_input(self, input)
        return F.tanh(input)


class Sigmoid(Module):
    def forward(self, input):
        _check_input(self, input)
        return F.sigmoid(input)


class GELU(Module):
    """GELU, exact (erf) by default; ``approximate='tanh'`` for the tanh form."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        _check_input(self, input)
        return F.gelu(input, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """``x * sigmoid(x)``."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        _check_input(self, input)
        return F.silu(input)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class Mish(SiLU):
    """``x * tanh(softplus(x))``."""

    def forward(self, input):
        _check_input(self, input)
        return F.mish(input)


class ELU(Module):
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input):
        _check_input(self, input)
        return F.elu(input, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Softplus(Module):
    """``log(1 + exp(beta x)) / beta``, linear where ``beta x > threshold``."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        if beta == 0:
            raise ValueError("Softplus: beta must be non-zero, got 0")
        self.beta, self.threshold = beta, threshold

    def forward(self, input):
        _check_input(self, input)
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(Module):
    """``x`` clamped to [min_val, max_val]."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        if not min_val < max_val:
            raise ValueError(f"Hardtanh: min_val must be less than max_val, got min_val={min_val}, max_val={max_val}")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, input):
        _check_input(self, input)
        return F.hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + (", inplace=True" if self.inplace else "")


class ReLU6(Hardtanh):
    """``x`` clamped to [0, 6] (MobileNet's activation)."""

    def __init__(self, inplace: bool = False):
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class _Elementwise(Module):
    """An activation without settings: ``forward`` applies ``function`` (a name in nn.functional)."""

    function = ""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        _check_input(self, input)
        return getattr(F, self.function)(input)


class Hardsigmoid(_Elementwise):
    """``relu6(x + 3) / 6``."""

    function = "hardsigmoid"


class Hardswish(_Elementwise):
    """``x * relu6(x + 3) / 6`` (MobileNetV3)."""

    function = "hardswish"


class LogSigmoid(_Elementwise):
    """``log(sigmoid(x))``."""

    function = "logsigmoid"


class Softsign(_Elementwise):
    """``x / (1 + |x|)``."""

    function = "softsign"


class Tanhshrink(_Elementwise):
    """``x - tanh(x)``."""

    function = "tanhshrink"


class PReLU(Module):
    """``x`` where positive, ``weight * x`` elsewhere: one learnt slope (``num_parameters=1``) or
    one per channel (dimension 1 of the input), each starting at ``init``."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        super().__init__()
        if not (isinstance(num_parameters, int) and num_parameters >= 1):
            raise ValueError(f"PReLU: num_parameters must be a positive integer, got {num_parameters!r}")
        self.num_parameters, self.init = num_parameters, init
        self.weight = empty_parameter((num_parameters,), **factory_kwargs("PReLU", dtype, device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.constant_(self.weight, self.init)

    def forward(self, input):
        check_float(self, input, self.weight.dtype)
        return run_op(self, F.prelu, input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class Softmax(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        _check_input(self, input)
        return run_op(self, F.softmax, input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def forward(self, input):
        _check_input(self, input)
        return run_op(self, F.log_softmax, input, self.dim)


class Softmin(Module):
    """``softmax(-input)`` along ``dim``."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, input):
        _check_input(self, input)
        return run_op(self, F.softmin, input, self.dim, _stacklevel=5)


class SELU(_Elementwise):
    """``scale * (max(0, x) + min(0, alpha * (exp(x) - 1)))`` with PyTorch's constants."""

    function = "selu"

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class CELU(Module):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input):
        _check_input(self, input)
        return run_op(self, F.celu, input, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class GLU(Module):
    """``a * sigmoid(b)``, ``a`` and ``b`` the halves of the input along ``dim``."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        _check_input(self, input)
        return run_op(self, F.glu, input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class _Shrink(Module):
    """A shrinkage by ``lambd``: ``forward`` applies ``function`` (a name in nn.functional)."""

    function = ""

    def __init__(self, lambd: float = 0.5):
        super().__init__()
        self.lambd = lambd

    def forward(self, input):
        _check_input(self, input)
        return run_op(self, getattr(F, self.function), input, self.lambd)

    def extra_repr(self) -> str:
        return str(self.lambd)


class Softshrink(_Shrink):
    """``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, 0 between (``lambd`` >= 0,
    checked on the input, as PyTorch)."""

    function = "softshrink"


class Hardshrink(_Shrink):
    """``x`` where ``|x| > lambd``, 0 elsewhere."""

    function = "hardshrink"


class Threshold(Module):
    """``x`` where ``x > threshold``, ``value`` elsewhere."""

    def __init__(self, threshold: float, value: float, inplace: bool = False):
        super().__init__()
        self.threshold, self.value, self.inplace = threshold, value, inplace

    def forward(self, input):
        return run_op(self, F.threshold, input, self.threshold, self.value)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, value={self.value}" + (", inplace=True" if self.inplace else "")


class Dropout(Module):
    """Zeroes elements with probability ``p`` in training (scaling the rest by 1/(1-p)); the
    identity in eval mode. Draws from deepkern's generator (``deepkern.manual_seed``)."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: probability p has to be between 0 and 1, got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input):
        _check_input(self, input)
        if not self.training and isinstance(input, Tensor):  # the identity, as F.dropout gives it
            return input
        return F.dropout(input, self.p, self.training)

    def _infer_step(self, x, bn=None, relu=False):
        """The inference step for arrays typed as ``x`` (from _inference.host_array): the identity in
        eval mode for a float input; None otherwise (training draws its mask on the ordinary path)."""
        return identity if not self.training and x.dtype in _KERNEL_DTYPES else None

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout1d(Dropout):
    """Zeroes whole channels of an (N, C, L) or (C, L) input with probability ``p`` in training."""

    def forward(self, input):
        _check_input(self, input)
        return F.dropout1d(input, self.p, self.training)


class Dropout2d(Dropout):
    """Zeroes whole channels of an (N, C, H, W) or (C, H, W) input with probability ``p`` in training."""

    def forward(self, input):
        _check_input(self, input)
        return F.dropout2d(input, self.p, self.training)


class Dropout3d(Dropout):
    """Zeroes whole channels of an (N, C, D, H, W) or (C, D, H, W) input with probability ``p`` in training."""

    def forward(self, input):
        _check_input(self, input)
        return F.dropout3d(input, self.p, self.training)


class Softmax2d(Module):
    """Softmax over the channels of (N, C, H, W) or (C, H, W) input (dimension -3)."""

    def forward(self, input):
        if input.ndim not in (3, 4):
            raise ValueError(f"Softmax2d: expected 3-D or 4-D input, got shape {tuple(input.shape)}")
        return F.softmax(input, -3)


class RReLU(Module):
    """Randomized leaky ReLU (F.rrelu): random negative slopes U(lower, upper) in training, their
    mean in eval mode."""

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3, inplace: bool = False):
        super().__init__()
        self.lower, self.upper, self.inplace = lower, upper, inplace

    def forward(self, input):
        _check_input(self, input)
        return F.rrelu(input, self.lower, self.upper, self.training)

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}"


class AlphaDropout(Dropout):
    """Dropout for SELU networks (F.alpha_dropout): keeps the inputs' mean and variance."""

    def forward(self, input):
        _check_input(self, input)
        return F.alpha_dropout(input, self.p, self.training)

    _infer_step = None


class FeatureAlphaDropout(Dropout):
    """Alpha dropout of whole channels (F.feature_alpha_dropout)."""

    def forward(self, input):
        _check_input(self, input)
        return F.feature_alpha_dropout(input, self.p, self.training)

    _infer_step = None
