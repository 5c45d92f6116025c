"""The function forms of Tensor's methods (``deepkern.exp(x)`` is ``x.exp()``, ``deepkern.max(x, 1)``
is ``x.max(1)``), and ``matmul``, ``bmm`` and ``einsum``, with PyTorch's names and arguments.

They live in their own module because several of their names (``max``, ``min``, ``sum``, ``abs``,
``all``, ``any``) are Python builtins that tensor.py itself uses.
"""

from __future__ import annotations

import builtins
import itertools
import math
import numbers
import string

import numpy as np

from . import tensor_ops as F
from .tensor import (
    Tensor,
    _in_common_dtype,
    _kind_name,
    cat,
    empty,
    get_default_dtype,
    stack,
    tensor,
    through_float32,
    zeros,
)
from .tensor_long_tail import HistogramddResult, _checked_geometry

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
    "add",
    "sub",
    "mul",
    "div",
    "true_divide",
    "neg",
    "negative",
    "transpose",
    "reshape",
    "squeeze",
    "unsqueeze",
    "permute",
    "clone",
    "t",
    "numel",
    "select",
    "mm",
    "mv",
    "dot",
    "addmm",
    "tan",
    "sinh",
    "cosh",
    "asin",
    "acos",
    "atan",
    "arcsin",
    "arccos",
    "arctan",
    "atan2",
    "arctan2",
    "erf",
    "erfc",
    "exp2",
    "hypot",
    "logaddexp",
    "lerp",
    "logit",
    "xlogy",
    "addcmul",
    "addcdiv",
    "nansum",
    "nanmean",
    "nan_to_num",
    "isclose",
    "allclose",
    "equal",
    "logical_and",
    "logical_or",
    "logical_xor",
    "logical_not",
    "bitwise_not",
    "count_nonzero",
    "diff",
    "trace",
    "diag",
    "take_along_dim",
    "tensor_split",
    "ravel",
    "rot90",
    "fliplr",
    "flipud",
    "absolute",
    "fix",
    "cumprod",
    "median",
    "kthvalue",
    "unique",
    "concat",
    "concatenate",
    "broadcast_to",
    "broadcast_tensors",
    "meshgrid",
    "hstack",
    "vstack",
    "column_stack",
    "cdist",
    "tril_indices",
    "triu_indices",
    "searchsorted",
    "bucketize",
    "index_add",
    "index_copy",
    "index_fill",
    "float_power",
    "copysign",
    "signbit",
    "heaviside",
    "sinc",
    "cross",
    "cummax",
    "cummin",
    "logcumsumexp",
    "diag_embed",
    "bincount",
    "bernoulli",
    "quantile",
    "nanquantile",
    "nanmedian",
    "mode",
    "aminmax",
    "std_mean",
    "var_mean",
    "scatter_reduce",
    "masked_scatter",
    "index_put",
    "index_put_",
    "put",
    "take",
    "histc",
    "msort",
    "renorm",
    "vander",
    "cartesian_prod",
    "combinations",
    "block_diag",
    "kron",
    "tensordot",
    "inner",
    "trapezoid",
    "trapz",
    "cov",
    "corrcoef",
    "multiply",
    "divide",
    "subtract",
    "greater",
    "greater_equal",
    "less",
    "less_equal",
    "not_equal",
    "positive",
    "sgn",
    "acosh",
    "asinh",
    "atanh",
    "arccosh",
    "arcsinh",
    "arctanh",
    "deg2rad",
    "rad2deg",
    "logaddexp2",
    "fmax",
    "fmin",
    "isneginf",
    "isposinf",
    "isreal",
    "is_signed",
    "is_nonzero",
    "is_same_size",
    "get_device",
    "ldexp",
    "frexp",
    "nextafter",
    "lgamma",
    "digamma",
    "polygamma",
    "mvlgamma",
    "erfinv",
    "i0",
    "bitwise_and",
    "bitwise_or",
    "bitwise_xor",
    "bitwise_left_shift",
    "bitwise_right_shift",
    "gcd",
    "lcm",
    "multinomial",
    "split_with_sizes",
    "unsafe_split",
    "unsafe_chunk",
    "unsafe_split_with_sizes",
    "hsplit",
    "vsplit",
    "dsplit",
    "narrow_copy",
    "unique_consecutive",
    "as_strided",
    "as_strided_",
    "empty_strided",
    "nonzero_static",
    "resize_as_",
    "select_scatter",
    "slice_scatter",
    "diagonal_scatter",
    "index_reduce",
    "histogram",
    "histogramdd",
    "adjoint",
    "conj",
    "conj_physical",
    "conj_physical_",
    "resolve_conj",
    "resolve_neg",
    "is_conj",
    "is_neg",
    "real",
    "imag",
    "is_inference",
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
add, sub, mul, div, true_divide = map(_method_form, ["add", "sub", "mul", "div", "true_divide"])
neg, negative, transpose, reshape, squeeze = map(_method_form, ["neg", "negative", "transpose", "reshape", "squeeze"])
unsqueeze, permute, clone, t, numel = map(_method_form, ["unsqueeze", "permute", "clone", "t", "numel"])
select, mm, mv, dot, addmm = map(_method_form, ["select", "mm", "mv", "dot", "addmm"])
tan, sinh, cosh, asin, acos = map(_method_form, ["tan", "sinh", "cosh", "asin", "acos"])
atan, arcsin, arccos, arctan, atan2 = map(_method_form, ["atan", "arcsin", "arccos", "arctan", "atan2"])
arctan2, erf, erfc, exp2, hypot = map(_method_form, ["arctan2", "erf", "erfc", "exp2", "hypot"])
logaddexp, lerp, logit, xlogy, addcmul = map(_method_form, ["logaddexp", "lerp", "logit", "xlogy", "addcmul"])
addcdiv, nansum, nanmean, nan_to_num, isclose = map(
    _method_form, ["addcdiv", "nansum", "nanmean", "nan_to_num", "isclose"]
)
allclose, equal, logical_and, logical_or, logical_xor = map(
    _method_form, ["allclose", "equal", "logical_and", "logical_or", "logical_xor"]
)
logical_not, bitwise_not, count_nonzero, diff, trace = map(
    _method_form, ["logical_not", "bitwise_not", "count_nonzero", "diff", "trace"]
)
diag, take_along_dim, tensor_split, ravel, rot90 = map(
    _method_form, ["diag", "take_along_dim", "tensor_split", "ravel", "rot90"]
)
fliplr, flipud, absolute, fix, cumprod = map(_method_form, ["fliplr", "flipud", "absolute", "fix", "cumprod"])
median, kthvalue, unique = map(_method_form, ["median", "kthvalue", "unique"])
index_add, index_copy, index_fill = map(_method_form, ["index_add", "index_copy", "index_fill"])
float_power, copysign, signbit, heaviside = map(_method_form, ["float_power", "copysign", "signbit", "heaviside"])
sinc, cross, cummax, cummin = map(_method_form, ["sinc", "cross", "cummax", "cummin"])
logcumsumexp, diag_embed, bincount, bernoulli = map(
    _method_form, ["logcumsumexp", "diag_embed", "bincount", "bernoulli"]
)
quantile, nanquantile, nanmedian, mode, aminmax = map(
    _method_form, ["quantile", "nanquantile", "nanmedian", "mode", "aminmax"]
)
scatter_reduce, masked_scatter, index_put, index_put_ = map(
    _method_form, ["scatter_reduce", "masked_scatter", "index_put", "index_put_"]
)
put, take, histc, msort, renorm = map(_method_form, ["put", "take", "histc", "msort", "renorm"])
kron, inner, cov, corrcoef = map(_method_form, ["kron", "inner", "cov", "corrcoef"])
multiply, divide, subtract, greater = map(_method_form, ["multiply", "divide", "subtract", "greater"])
greater_equal, less, less_equal, not_equal = map(_method_form, ["greater_equal", "less", "less_equal", "not_equal"])
positive, sgn, acosh, asinh, atanh = map(_method_form, ["positive", "sgn", "acosh", "asinh", "atanh"])
arccosh, arcsinh, arctanh, deg2rad, rad2deg = map(_method_form, ["arccosh", "arcsinh", "arctanh", "deg2rad", "rad2deg"])
logaddexp2, fmax, fmin, isneginf, isposinf = map(_method_form, ["logaddexp2", "fmax", "fmin", "isneginf", "isposinf"])
isreal, is_signed, is_nonzero, is_same_size = map(_method_form, ["isreal", "is_signed", "is_nonzero", "is_same_size"])
get_device, ldexp, frexp, nextafter = map(_method_form, ["get_device", "ldexp", "frexp", "nextafter"])
lgamma, digamma, mvlgamma, erfinv, i0 = map(_method_form, ["lgamma", "digamma", "mvlgamma", "erfinv", "i0"])
bitwise_and, bitwise_or, bitwise_xor = map(_method_form, ["bitwise_and", "bitwise_or", "bitwise_xor"])
bitwise_left_shift, bitwise_right_shift = map(_method_form, ["bitwise_left_shift", "bitwise_right_shift"])
gcd, lcm, multinomial = map(_method_form, ["gcd", "lcm", "multinomial"])
split_with_sizes, unsafe_split, unsafe_chunk, unsafe_split_with_sizes = map(
    _method_form, ["split_with_sizes", "unsafe_split", "unsafe_chunk", "unsafe_split_with_sizes"]
)
hsplit, vsplit, dsplit, narrow_copy = map(_method_form, ["hsplit", "vsplit", "dsplit", "narrow_copy"])
unique_consecutive, as_strided, as_strided_, nonzero_static = map(
    _method_form, ["unique_consecutive", "as_strided", "as_strided_", "nonzero_static"]
)
resize_as_, select_scatter, slice_scatter, diagonal_scatter = map(
    _method_form, ["resize_as_", "select_scatter", "slice_scatter", "diagonal_scatter"]
)
index_reduce, histogram, adjoint, conj, conj_physical = map(
    _method_form, ["index_reduce", "histogram", "adjoint", "conj", "conj_physical"]
)
conj_physical_, resolve_conj, resolve_neg, is_conj, is_neg = map(
    _method_form, ["conj_physical_", "resolve_conj", "resolve_neg", "is_conj", "is_neg"]
)
is_inference = _method_form("is_inference")


def real(input) -> Tensor:
    """``input.real``: a real tensor itself."""
    _check_tensor("real", "input", input)
    return input.real


def imag(input) -> Tensor:
    """``input.imag`` (refused for a real tensor, as PyTorch)."""
    _check_tensor("imag", "input", input)
    return input.imag


def empty_strided(size, stride, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """An uninitialized tensor of ``size`` laid out with ``stride`` (in elements) in new memory just large enough
    for it (host memory only; read-only where its elements overlap, as as_strided's views)."""
    dtype = np.dtype(dtype or get_default_dtype())
    size, stride = _checked_geometry("empty_strided", size, stride, 0, math.inf, dtype.itemsize)
    memory = empty(
        0 if 0 in size else 1 + builtins.sum((n - 1) * s for n, s in zip(size, stride)), dtype=dtype, device=device
    )
    out = F.AsStrided.apply(memory, storage=memory._storage("empty_strided"), size=size, stride=stride, offset=0)
    out.requires_grad = requires_grad
    return out


def histogramdd(input, bins, *, range=None, weight=None, density=False) -> tuple:
    """``(hist, bin_edges)``: the histogram of the rows of ``input`` (its last dimension's D coordinates) with
    ``bins`` (an int, one int per coordinate, or one 1-D edges tensor per coordinate), over ``range`` (2 D
    floats: each coordinate's min and max; by default the data's), of the counts or the sums of ``weight``
    (``input``'s shape without the last dimension), as density with ``density``; see Tensor.histogram."""
    _check_tensor("histogramdd", "input", input)
    if input.ndim < 2:
        raise RuntimeError(f"histogramdd: input tensor should have at least 2 dimensions, got shape {input.shape}")
    dims = input.shape[-1]
    bins = [bins] * dims if isinstance(bins, numbers.Integral) and not isinstance(bins, bool) else list(bins)
    if len(bins) != dims:
        raise RuntimeError(
            f"histogramdd: The size of bins must be equal to the innermost dimension of the input, got {len(bins)} "
            f"bins for {dims} dimensions."
        )
    hist, edges = input._histogramdd("histogramdd", bins, range, weight, density)
    return HistogramddResult(hist, tuple(edges))


def polygamma(n, input) -> Tensor:
    """``input.polygamma(n)``: the ``n``-th derivative of digamma (``n`` first, as ``torch.polygamma``)."""
    _check_tensor("polygamma", "input", input)
    return input.polygamma(n)


def _floating_input(what: str, input) -> None:
    _check_tensor(what, "input", input)
    if input.dtype.kind not in "fVc":
        raise RuntimeError(f"{what} only support floating point and complex dtypes, got {input.dtype}")


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None) -> tuple:
    """``(input.var(...), input.mean(...))`` over the same ``dim`` (``var``'s arguments: ``unbiased``
    or ``correction``, 1 by default)."""
    _floating_input("var_mean", input)
    if isinstance(dim, bool):  # the var_mean(input, unbiased) form
        dim, unbiased = None, dim
    return input.var(dim, unbiased, keepdim, correction=correction), input.mean(dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None) -> tuple:
    """``(input.std(...), input.mean(...))`` over the same ``dim`` (see :func:`var_mean`)."""
    _floating_input("std_mean", input)
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return input.std(dim, unbiased, keepdim, correction=correction), input.mean(dim, keepdim)


def vander(x, N=None, increasing=False) -> Tensor:
    """The Vandermonde matrix of the 1-D ``x``: columns x^(N-1), ..., x^1, x^0 (``increasing``: the
    other way round), ``N`` defaulting to len(x); integer and bool ``x`` give int64, as PyTorch's.
    Built from a running product, so the gradient is exact at 0."""
    _check_tensor("vander", "x", x)
    if x.ndim != 1:
        raise RuntimeError("x must be a one-dimensional tensor.")
    n = x.shape[0] if N is None else N
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"vander(): argument 'N' must be an int, got {_kind_name(N)}")
    if n < 0:
        raise RuntimeError("N must be non-negative.")
    if x.dtype.kind in "biu" and x.dtype != np.int64:
        x = x.to(np.int64)
    columns = [] if n == 0 else [zeros((x.shape[0], 1), dtype=x.dtype, device=x.device) + 1]
    if n > 1:
        columns.append(x.unsqueeze(1).expand(x.shape[0], n - 1).cumprod(1))
    out = cat(columns, 1) if columns else zeros((x.shape[0], 0), dtype=x.dtype, device=x.device)
    return out if increasing else out.flip(1)


def cartesian_prod(*tensors) -> Tensor:
    """The Cartesian product of 1-D tensors of one dtype: a (prod of lengths, k) tensor, rows in
    lexicographic order (one tensor: itself)."""
    for i, t in enumerate(tensors):
        _check_tensor("cartesian_prod", f"tensors[{i}]", t)
        if t.ndim != 1:
            raise RuntimeError(f"Expect a 1D vector, but got shape {list(t.shape)}")
    if len(tensors) == 1:
        return tensors[0]
    if len({t.dtype for t in tensors}) > 1:
        raise RuntimeError("meshgrid expects all tensors to have the same dtype")
    return stack([g.reshape(-1) for g in meshgrid(*tensors, indexing="ij")], 1)


def combinations(input, r=2, with_replacement=False) -> Tensor:
    """The length-``r`` combinations of the 1-D ``input``'s elements (with replacement if asked), as
    rows of an (N, r) tensor in lexicographic order of their positions (``r=0``: an empty 1-D tensor)."""
    _check_tensor("combinations", "input", input)
    if input.ndim != 1:
        raise RuntimeError(f"Expect a 1D vector, but got shape {list(input.shape)}")
    if isinstance(r, bool) or not isinstance(r, numbers.Integral):
        raise TypeError(f"combinations(): argument 'r' must be an int, got {_kind_name(r)}")
    if r < 0:
        raise RuntimeError(f"Expect a non-negative number, but got {r}")
    if r == 0:
        return zeros(0, dtype=input.dtype, device=input.device)
    choose = itertools.combinations_with_replacement if with_replacement else itertools.combinations
    rows = np.array(list(choose(range(input.shape[0]), r)), dtype=np.int64).reshape(-1, r)
    return stack([input.index_select(0, tensor(rows[:, j], device=input.device)) for j in range(r)], 1)


def block_diag(*tensors) -> Tensor:
    """The tensors (0-D as 1x1, 1-D as one row, 2-D) as the blocks of a block-diagonal matrix, zeros
    elsewhere, in their promoted dtype."""
    if not tensors:
        return zeros((1, 0))
    blocks = []
    for i, t in enumerate(tensors):
        _check_tensor("block_diag", f"tensors[{i}]", t)
        if t.ndim > 2:
            raise RuntimeError(
                f"torch.block_diag: Input tensors must have 2 or fewer dimensions. Input {i} has {t.ndim} dimensions"
            )
        blocks.append(t.reshape(1, -1) if t.ndim < 2 else t)
    blocks = _in_common_dtype(blocks)
    width = builtins.sum(b.shape[1] for b in blocks)
    rows, left = [], 0
    for b in blocks:
        r, c = b.shape
        parts = [zeros((r, left), dtype=b.dtype, device=b.device), b]
        parts.append(zeros((r, width - left - c), dtype=b.dtype, device=b.device))
        rows.append(cat(parts, 1))
        left += c
    return cat(rows, 0)


def _tensordot_dims(dims, a, b) -> tuple:
    if isinstance(dims, Tensor):
        dims = dims.item() if dims.ndim == 0 else dims.tolist()
    if isinstance(dims, numbers.Integral) and not isinstance(dims, bool):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        if dims > builtins.min(a.ndim, b.ndim):
            raise RuntimeError(f"tensordot expects dims < ndim_a or ndim_b, but got dims={dims}")
        return list(range(a.ndim - dims, a.ndim)), list(range(dims))
    if isinstance(dims, (list, tuple)) and len(dims) == 2:
        first, second = ([d] if isinstance(d, numbers.Integral) else list(d) for d in dims)
        return first, second
    raise RuntimeError(f"tensordot expects dims to be an int or a pair of lists of dimensions, got {dims!r}")


def tensordot(a, b, dims=2) -> Tensor:
    """The sums of products of ``a`` and ``b`` over the dimensions ``dims`` (an int n: a's last n with
    b's first n; or two lists), the free dimensions of ``a`` then of ``b`` left; a dimension of size 1
    against a larger one is summed first, as PyTorch's."""
    _check_tensor("tensordot", "a", a)
    _check_tensor("tensordot", "b", b)
    dims_a, dims_b = _tensordot_dims(dims, a, b)
    if len(dims_a) != len(dims_b):
        raise RuntimeError("both dimension lists should have same length")
    if a.dtype != b.dtype:
        raise RuntimeError(f"both inputs should have same dtype, got {a.dtype} and {b.dtype}")
    dims_a = [a._dim(d, "tensordot") for d in dims_a]
    dims_b = [b._dim(d, "tensordot") for d in dims_b]
    for da, db in zip(dims_a, dims_b):
        sa, sb = a.shape[da], b.shape[db]
        if sb == 1 and sa != 1:
            a = a.sum(da, keepdim=True)
        elif sa == 1 and sb != 1:
            b = b.sum(db, keepdim=True)
        elif sa != sb:
            raise RuntimeError(
                f"contracted dimensions need to match, but first has size {sa} in dim {da} and second has size "
                f"{sb} in dim {db}"
            )
    free_a = [d for d in range(a.ndim) if d not in dims_a]
    free_b = [d for d in range(b.ndim) if d not in dims_b]
    size = int(np.prod([a.shape[d] for d in dims_a]))
    rows = int(np.prod([a.shape[d] for d in free_a]))
    cols = int(np.prod([b.shape[d] for d in free_b]))
    left = a.permute(*free_a, *dims_a).reshape(rows, size)
    right = b.permute(*dims_b, *free_b).reshape(size, cols)
    return left.mm(right).reshape(*(a.shape[d] for d in free_a), *(b.shape[d] for d in free_b))


def trapezoid(y, x=None, *, dx=None, dim=-1) -> Tensor:
    """The trapezoidal rule along ``dim``: with sample points ``x`` (1-D along ``dim``, or broadcast
    with ``y``) or a constant spacing ``dx`` (1 by default); 0 for no samples, as PyTorch's."""
    _check_tensor("trapezoid", "y", y)
    if x is not None and dx is not None:
        raise TypeError("trapezoid(): give the sample points x or the spacing dx, not both")
    axis = y._dim(dim, "trapezoid")
    if y.dtype == np.bool_ or (isinstance(x, Tensor) and x.dtype == np.bool_):
        raise RuntimeError("trapezoid: received a bool input for `y` or `x`, but bool is not supported")
    if y.ndim and y.shape[axis] == 0:
        return zeros(y.shape[:axis] + y.shape[axis + 1 :], dtype=y.dtype, device=y.device)
    if x is None:
        spacing = 1 if dx is None else dx
        if isinstance(spacing, (bool, complex)) or not isinstance(spacing, numbers.Real):
            raise RuntimeError("trapezoid: Currently, we only support dx as a real number.")
        ends = y.select(axis, 0) + y.select(axis, -1)
        return (y.sum(axis) - ends * 0.5) * float(spacing)
    _check_tensor("trapezoid", "x", x)
    if x.ndim == 1:
        if x.shape[0] != y.shape[axis]:
            raise RuntimeError("trapezoid: There must be one `x` value for each sample point")
        x = x.reshape([-1 if d == axis else 1 for d in range(y.ndim)])
    elif x.ndim < y.ndim:
        x = x.reshape((1,) * (y.ndim - x.ndim) + x.shape)
    n = x.shape[axis]
    spacing = x.narrow(axis, 1, n - 1) - x.narrow(axis, 0, n - 1)
    m = y.shape[axis]
    return (spacing * (y.narrow(axis, 0, m - 1) + y.narrow(axis, 1, m - 1))).sum(axis) / 2.0


trapz = trapezoid


def concat(tensors, dim=0) -> Tensor:
    """``deepkern.cat``'s other name."""
    return cat(tensors, dim)


concatenate = concat


def broadcast_to(input, size) -> Tensor:
    """``input.expand(size)``."""
    _check_tensor("broadcast_to", "input", input)
    return input.expand(size)


def broadcast_tensors(*tensors) -> tuple:
    """The tensors expanded to their common broadcast shape."""
    for i, t in enumerate(tensors):
        _check_tensor("broadcast_tensors", f"tensors[{i}]", t)
    shape = np.broadcast_shapes(*(t.shape for t in tensors))
    return tuple(t.expand(shape) for t in tensors)


def meshgrid(*tensors, indexing="ij") -> tuple:
    """Coordinate grids of 1-D tensors: with ``indexing="ij"`` output i varies along dimension i; with
    ``"xy"`` the first two dimensions are swapped (NumPy's default)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    for i, t in enumerate(tensors):
        _check_tensor("meshgrid", f"tensors[{i}]", t)
        if t.ndim > 1:
            raise RuntimeError(f"meshgrid: expects 0-D or 1-D tensors, got shape {t.shape} at position {i}")
    swap = indexing == "xy" and len(tensors) > 1
    order = [1, 0, *range(2, len(tensors))] if swap else list(range(len(tensors)))
    ordered = [tensors[i].reshape(-1) for i in order]
    shape = tuple(t.shape[0] for t in ordered)
    grids = [t.reshape([-1 if j == i else 1 for j in range(len(shape))]).expand(shape) for i, t in enumerate(ordered)]
    return tuple(grids[order.index(i)] for i in range(len(tensors)))


def hstack(tensors) -> Tensor:
    """Joined along the second dimension (the first for 1-D tensors)."""
    parts = [t.reshape(-1) if t.ndim == 0 else t for t in tensors]
    return cat(parts, 0 if parts and parts[0].ndim == 1 else 1)


def vstack(tensors) -> Tensor:
    """Joined along the first dimension, 0-D and 1-D tensors as rows."""
    return cat([t.reshape(1, -1) if t.ndim < 2 else t for t in tensors], 0)


def column_stack(tensors) -> Tensor:
    """Joined along the second dimension, 0-D and 1-D tensors as columns."""
    return cat([t.reshape(-1, 1) if t.ndim < 2 else t for t in tensors], 1)


def cdist(x1, x2, p=2.0) -> Tensor:
    """The ``p``-norm distances between the rows of ``x1`` (..., P, M) and of ``x2`` (..., R, M): a
    (..., P, R) tensor; the gradient at a zero distance is 0, as PyTorch's. (It forms the
    (..., P, R, M) differences.)"""
    _check_tensor("cdist", "x1", x1)
    _check_tensor("cdist", "x2", x2)
    if x1.ndim < 2 or x2.ndim < 2 or x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(
            f"cdist: x1 and x2 must be at least 2-D with the same last dimension, got {x1.shape} and {x2.shape}"
        )
    if p < 0:
        raise RuntimeError(f"cdist: only supports non-negative p values, got {p}")
    differences = x1.unsqueeze(-2) - x2.unsqueeze(-3)
    if p == 0:  # how many coordinates differ (no gradient)
        return (differences.detach() != 0).sum(-1).to(differences.dtype)
    if p == float("inf"):  # the largest |difference|, its gradient whole to every coordinate that ties for it
        magnitude = differences.abs()
        largest = magnitude.detach().amax(-1, keepdim=True)
        ties = magnitude.detach() == largest
        return (magnitude * ties).sum(-1) - (ties.sum(-1) - 1).to(magnitude.dtype) * largest.squeeze(-1)
    return differences.norm(p=p, dim=-1)


def _index_pairs(which, row: int, col: int, offset: int, dtype, device) -> Tensor:
    rows, cols = which(row, offset, col)
    return tensor(np.stack([rows, cols]).astype(np.int64), dtype=dtype, device=device)


def tril_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None) -> Tensor:
    """The (2, N) row and column indices of the lower triangle of a ``row`` x ``col`` matrix."""
    return _index_pairs(np.tril_indices, row, col, offset, dtype or np.int64, device)


def triu_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None) -> Tensor:
    """The (2, N) row and column indices of the upper triangle of a ``row`` x ``col`` matrix."""
    return _index_pairs(np.triu_indices, row, col, offset, dtype or np.int64, device)


def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None, sorter=None) -> Tensor:
    """Where ``input``'s values would go in ``sorted_sequence`` (the last dimension of each of its rows)
    to keep it sorted: the first such place, or with ``right=True`` (``side="right"``) the last."""
    _check_tensor("searchsorted", "sorted_sequence", sorted_sequence)
    if side not in (None, "left", "right") or (side == "left" and right):
        raise RuntimeError(f"searchsorted: side must be 'left' or 'right' (and agree with right), got {side!r}")
    side = side or ("right" if right else "left")
    seq = sorted_sequence._array
    if sorter is not None:
        seq = np.take_along_axis(seq, sorter._array, -1)
    values = input._array if isinstance(input, Tensor) else np.asarray(input)
    if seq.ndim <= 1:
        found = np.searchsorted(seq, values, side=side)
    else:
        if values.shape[:-1] != seq.shape[:-1]:
            raise RuntimeError(
                f"searchsorted: the leading dimensions of sorted_sequence {seq.shape} and input {values.shape} differ"
            )
        rows, vals = seq.reshape(-1, seq.shape[-1]), values.reshape(-1, values.shape[-1])
        found = np.stack([np.searchsorted(r, v, side=side) for r, v in zip(rows, vals)]).reshape(values.shape)
    return tensor(np.asarray(found).astype(np.int32 if out_int32 else np.int64), device=sorted_sequence.device)


def bucketize(input, boundaries, *, out_int32=False, right=False) -> Tensor:
    """The bucket of each of ``input``'s values among the 1-D ``boundaries``: i with
    boundaries[i - 1] < x <= boundaries[i] (``right=True``: boundaries[i - 1] <= x < boundaries[i])."""
    _check_tensor("bucketize", "boundaries", boundaries)
    if boundaries.ndim != 1:
        raise RuntimeError(f"bucketize: boundaries must be 1-D, got shape {boundaries.shape}")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


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
    has the letters that appear once, in alphabetical order; an operand may repeat a letter (its
    diagonal). Differentiable, twice too (create_graph=True). bfloat16 operands are summed in float32 and the result
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
