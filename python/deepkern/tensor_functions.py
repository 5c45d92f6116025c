"""The function forms of Tensor's methods (``deepkern.exp(x)`` is ``x.exp()``, ``deepkern.max(x, 1)``
is ``x.max(1)``), and ``matmul``, ``bmm`` and ``einsum``, with PyTorch's names and arguments.

They live in their own module because several of their names (``max``, ``min``, ``sum``, ``abs``,
``all``, ``any``) are Python builtins that tensor.py itself uses.
"""

from __future__ import annotations

import builtins
import string

from . import tensor_ops as F
from .tensor import Tensor, _kind_name, through_float32

__all__ = [
    "abs",
    "all",
    "any",
    "argmax",
    "argmin",
    "argsort",
    "argwhere",
    "bmm",
    "chunk",
    "clamp",
    "clip",
    "cos",
    "cumsum",
    "einsum",
    "exp",
    "flatten",
    "flip",
    "gather",
    "index_select",
    "log",
    "log_softmax",
    "masked_fill",
    "masked_select",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "narrow",
    "nonzero",
    "norm",
    "pow",
    "relu",
    "roll",
    "scatter",
    "scatter_add",
    "sigmoid",
    "sin",
    "softmax",
    "sort",
    "split",
    "sqrt",
    "std",
    "sum",
    "tanh",
    "topk",
    "tril",
    "triu",
    "unbind",
    "var",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "amax",
    "amin",
    "prod",
    "logsumexp",
    "log1p",
    "expm1",
    "log2",
    "log10",
    "reciprocal",
    "rsqrt",
    "square",
    "floor",
    "ceil",
    "trunc",
    "round",
    "frac",
    "sign",
    "isnan",
    "isinf",
    "isfinite",
    "clamp_min",
    "clamp_max",
    "floor_divide",
    "remainder",
    "fmod",
    "movedim",
    "moveaxis",
    "swapaxes",
    "swapdims",
    "unflatten",
    "diagonal",
    "outer",
    "tile",
    "repeat_interleave",
]


def _method_form(name: str):
    """``deepkern.<name>(input, ...)``: ``input.<name>(...)``, for a Tensor ``input``."""

    def function(input, *args, **kwargs):
        _check_tensor(name, "input", input)
        return getattr(input, name)(*args, **kwargs)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"``input.{name}(...)``: see :meth:`deepkern.Tensor.{name}`."
    return function


def _check_tensor(what: str, name: str, value) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{what}(): argument {name!r} must be a Tensor, got {_kind_name(value)}")


abs, all, any, argmax, argmin, argsort = map(_method_form, ["abs", "all", "any", "argmax", "argmin", "argsort"])
chunk, clamp, clip, cos, cumsum, exp = map(_method_form, ["chunk", "clamp", "clip", "cos", "cumsum", "exp"])
flatten, flip, gather, index_select, log = map(_method_form, ["flatten", "flip", "gather", "index_select", "log"])
log_softmax, masked_fill, max, maximum = map(_method_form, ["log_softmax", "masked_fill", "max", "maximum"])
mean, min, minimum, narrow, norm, roll = map(_method_form, ["mean", "min", "minimum", "narrow", "norm", "roll"])
relu, scatter, scatter_add, sigmoid, sin = map(_method_form, ["relu", "scatter", "scatter_add", "sigmoid", "sin"])
softmax, sort, split, sqrt, std, sum = map(_method_form, ["softmax", "sort", "split", "sqrt", "std", "sum"])
tanh, topk, tril, triu, unbind, var = map(_method_form, ["tanh", "topk", "tril", "triu", "unbind", "var"])
eq, ne, lt, le, gt, ge = map(_method_form, ["eq", "ne", "lt", "le", "gt", "ge"])
argwhere, masked_select, nonzero = map(_method_form, ["argwhere", "masked_select", "nonzero"])
amax, amin, prod, logsumexp = map(_method_form, ["amax", "amin", "prod", "logsumexp"])
log1p, expm1, log2, log10 = map(_method_form, ["log1p", "expm1", "log2", "log10"])
reciprocal, rsqrt, square, sign = map(_method_form, ["reciprocal", "rsqrt", "square", "sign"])
floor, ceil, trunc, round, frac = map(_method_form, ["floor", "ceil", "trunc", "round", "frac"])
isnan, isinf, isfinite = map(_method_form, ["isnan", "isinf", "isfinite"])
clamp_min, clamp_max = map(_method_form, ["clamp_min", "clamp_max"])
floor_divide, remainder, fmod = map(_method_form, ["floor_divide", "remainder", "fmod"])
movedim, moveaxis, swapaxes, swapdims = map(_method_form, ["movedim", "moveaxis", "swapaxes", "swapdims"])
unflatten, diagonal, outer, tile = map(_method_form, ["unflatten", "diagonal", "outer", "tile"])
repeat_interleave = _method_form("repeat_interleave")


def pow(input, exponent) -> Tensor:
    """``input ** exponent``, as ``torch.pow``: a Tensor to a number or a Tensor, or a number to a
    Tensor ``exponent``."""
    if isinstance(input, Tensor):
        return input.pow(exponent)
    _check_tensor("pow", "exponent", exponent)
    return exponent.__rpow__(input)


def matmul(input, other) -> Tensor:
    """The matrix product with NumPy's (and PyTorch's) rules for 1-D and batched operands."""
    _check_tensor("matmul", "input", input)
    return F.MatMul.apply(input, other)


def bmm(input, mat2) -> Tensor:
    """Batched matrix product of (b, n, m) and (b, m, p) tensors: a (b, n, p) tensor."""
    _check_tensor("bmm", "input", input)
    _check_tensor("bmm", "mat2", mat2)
    if input.ndim != 3 or mat2.ndim != 3 or input.shape[0] != mat2.shape[0] or input.shape[2] != mat2.shape[1]:
        raise RuntimeError(
            f"bmm: expected input (b, n, m) and mat2 (b, m, p) tensors, got shapes {input.shape} and {mat2.shape}"
        )
    return F.MatMul.apply(input, mat2)


def einsum(equation: str, *operands) -> Tensor:
    """Einstein summation, as ``torch.einsum``: ``einsum("ij,jk->ik", a, b)``; operands may also be
    given as one list; ``...`` stands for the broadcast leading dimensions; without ``->`` the output
    has the letters that appear once, in alphabetical order. Differentiable except for an operand
    that repeats a letter (a diagonal). bfloat16 operands are summed in float32 and the result
    rounded once, as PyTorch does."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for i, t in enumerate(operands):
        _check_tensor("einsum", f"operands[{i}]", t)
    return _einsum(_explicit_subscripts(equation, [t.ndim for t in operands]), *operands)


@through_float32
def _einsum(subscripts: str, *operands) -> Tensor:
    return F.Einsum.apply(*operands, subscripts=subscripts)


def _explicit_subscripts(equation: str, ndims: list) -> str:
    """``equation`` with its ellipses written out as letters and its output given (``"ij,jk->ik"``)."""
    if not isinstance(equation, str):
        raise TypeError(f"einsum(): equation must be a str, got {type(equation).__name__}")
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ndims):
        raise ValueError(f"einsum(): equation {equation!r} has {len(terms)} operand(s) but {len(ndims)} were given")
    letters = set(equation) - set(".,->")
    if not letters <= set(string.ascii_letters):
        raise ValueError(f"einsum(): equation {equation!r} may hold only letters, ',', '->' and '...'")
    free = [c for c in string.ascii_letters if c not in letters]
    widths = []
    for i, (term, ndim) in enumerate(zip(terms, ndims)):
        named = len(term.replace("...", ""))
        width = ndim - named if "..." in term else 0
        if width < 0 or (width == 0 and "..." not in term and named != ndim):
            raise ValueError(f"einsum(): operand {i} has {ndim} dimensions but its subscripts {term!r} give {named}")
        widths.append(width)
    broadcast = "".join(free[: builtins.max(widths, default=0)])
    terms = [t.replace("...", broadcast[len(broadcast) - w :] if w else "") for t, w in zip(terms, widths)]
    if arrow:
        output = rhs.replace("...", broadcast)
    else:
        once = sorted(c for c in set("".join(terms)) if "".join(terms).count(c) == 1 and c not in broadcast)
        output = broadcast + "".join(once)
    return ",".join(terms) + "->" + output
