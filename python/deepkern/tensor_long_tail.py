"""PyTorch's long tail of Tensor methods (``mm``, ``lerp``, ``nansum``, ``median``, ``relu_``, ...),
written with the core methods of tensor.py, so their gradients come from those; the few that need
their own forward and backward (``tan``, ``erf``, ``atan2``, ``cumprod``, ...) are Functions in
tensor_ops.py. :class:`LongTailMethods` is a base class of :class:`deepkern.Tensor`.

Names, arguments, defaults and errors are PyTorch's; results that are not differentiable (``isclose``,
``unique``, ``count_nonzero``, indices) are tensors outside the graph, as there.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections import namedtuple

import numpy as np

from . import autograd
from . import tensor as _t
from . import tensor_ops as F
from .backends import as_array, to_device
from .ops._validate import is_bfloat16
from .random import get_generator


class _ByMethod:
    """The out-of-place method ``name`` as the function of an in-place write (Tensor._inplace), with
    keyword arguments ``options``."""

    def __init__(self, name: str, **options):
        self.name = name
        self.options = options

    def apply(self, tensor, *args):
        return getattr(tensor, self.name)(*args, **self.options)


class _ByMethodOfCopy(_ByMethod):
    """:class:`_ByMethod` on a clone of a tensor that requires grad: for methods made of several Functions
    whose inner ones save the tensor's values, which the in-place write would change under them."""

    def apply(self, tensor, *args):
        return super().apply(tensor.clone() if tensor.requires_grad else tensor, *args)


#: ``aminmax``'s result, as PyTorch's torch.return_types.aminmax.
AminmaxResult = namedtuple("aminmax", ["min", "max"])
#: ``frexp``'s result, as PyTorch's torch.return_types.frexp.
FrexpResult = namedtuple("frexp", ["mantissa", "exponent"])
#: ``histogram``'s result, as PyTorch's torch.return_types.histogram.
HistogramResult = namedtuple("histogram", ["hist", "bin_edges"])
#: ``histogramdd``'s result (``bin_edges`` a tuple, one tensor per dimension), as PyTorch's.
HistogramddResult = namedtuple("histogramdd", ["hist", "bin_edges"])

_INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest")
_SCATTER_REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")
_INDEX_REDUCTIONS = ("prod", "mean", "amax", "amin")
#: PyTorch's refusal of a write through a view that holds one memory address several times.
_OVERLAP = (
    "unsupported operation: more than one element of the written-to tensor refers to a single memory location. "
    "Please clone() before performing the operation."
)
#: The largest integer each floating dtype holds exactly (random_'s default upper bound), by itemsize.
_FLOAT_DIGITS = {2: 11, 4: 24, 8: 53}


def _dtype_name(dtype) -> str:
    return str(np.dtype(dtype)) if not is_bfloat16(dtype) else "bfloat16"


def _in_place(name: str, of_copy: bool = False):
    """``name + "_"``: ``name``'s result written into the tensor (recorded like PyTorch's in-place ops);
    ``of_copy``: computed from a clone (see _ByMethodOfCopy)."""

    def method(self, *args, **kwargs):
        return self._inplace(name + "_", (_ByMethodOfCopy if of_copy else _ByMethod)(name, **kwargs), *args)

    method.__name__ = method.__qualname__ = name + "_"
    method.__doc__ = f"In-place ``{name}``."
    return method


def _compared_in_place(name: str):
    """``name + "_"``: the comparison ``name`` written into the tensor as 1 or 0 in its own dtype; as in
    PyTorch, the change is recorded with a zero gradient."""

    def method(self, other):
        result = getattr(self, name)(other)
        if result.shape != self.shape:
            raise RuntimeError(
                f"{name}_: output with shape {self.shape} doesn't match the broadcast shape {result.shape}"
            )
        return self._inplace(name + "_", _t._Overwrite, result)

    method.__name__ = method.__qualname__ = name + "_"
    method.__doc__ = f"In-place ``{name}``: 1 where it holds, else 0, in the tensor's dtype."
    return method


def _alias(name: str, target: str):
    """The method ``name``: PyTorch's other name of Tensor's ``target``."""

    def method(self, *args, **kwargs):
        return getattr(self, target)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``{target}``."
    return method


#: PyTorch's other names of Tensor's methods (set on LongTailMethods after it).
_ALIASES = {
    "multiply": "mul",
    "multiply_": "mul_",
    "subtract": "sub",
    "subtract_": "sub_",
    "true_divide_": "div_",
    "greater": "gt",
    "greater_equal": "ge",
    "less": "lt",
    "less_equal": "le",
    "not_equal": "ne",
    "sgn": "sign",
    "unsafe_split": "split",
    "unsafe_chunk": "chunk",
    "unsafe_split_with_sizes": "split_with_sizes",
}


def _tensor_argument(what: str, name: str, value) -> None:
    if not isinstance(value, _t.Tensor):
        raise TypeError(f"{what}(): argument '{name}' must be a Tensor, got {_t._kind_name(value)}")


def _not_implemented(what: str, kernel: str, dtype) -> NotImplementedError:
    """PyTorch's refusal of an op for a dtype it has no kernel of (``"lshift_cpu" not implemented for ...``)."""
    return NotImplementedError(f"{what}: \"{kernel}_cpu\" not implemented for '{_dtype_name(dtype)}'")


def _matrix_check(what: str, name: str, t, ndim: int) -> None:
    if not isinstance(t, _t.Tensor):
        raise TypeError(f"{what}: {name} must be a Tensor, got {_t._kind_name(t)}")
    if t.ndim != ndim:
        kind = {1: "a vector (1-D)", 2: "a matrix (2-D)"}[ndim]
        raise RuntimeError(f"{what}: {name} must be {kind}, got shape {t.shape}")


def _finfo(dtype):
    if is_bfloat16(dtype):
        import ml_dtypes

        return ml_dtypes.finfo(dtype)
    return np.finfo(dtype)


def _host(t) -> np.ndarray:
    """A tensor's values as a host array (a copy when it is on another device), outside the graph."""
    return np.asarray(t.detach().cpu()._array)


def _number(x: float) -> str:
    """A float as PyTorch's messages print it (1, 2.5, inf, nan)."""
    return f"{x:g}"


def _checked_geometry(what: str, size, stride, offset: int, storage_size: int, itemsize: int) -> tuple:
    """``(size, stride)`` as tuples of ints, checked as PyTorch checks a strided view of a storage of
    ``storage_size`` elements (a view of no elements may start anywhere)."""
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise RuntimeError(
            f"{what}: mismatch in length of strides and shape, got sizes {list(size)} and strides {list(stride)}"
        )
    if any(n < 0 for n in size):
        raise RuntimeError(
            f"{what}: Storage size calculation overflowed with sizes={list(size)} and strides={list(stride)}"
        )
    if any(s < 0 for s in stride):
        raise RuntimeError(f"{what}: Negative strides are not supported at the moment, got strides: {list(stride)}")
    if offset < 0:
        raise RuntimeError(f"{what}: Tensor: invalid storage offset {offset}")
    needed = 0 if 0 in size else offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
    if needed > storage_size:
        raise RuntimeError(
            f"{what}: setStorage: sizes {list(size)}, strides {list(stride)}, storage offset {offset}, and itemsize "
            f"{itemsize} requiring a storage size of {needed * itemsize} are out of bounds for storage of size "
            f"{storage_size * itemsize}"
        )
    return size, stride


def _nested(sizes: tuple, strides: tuple, order) -> bool:
    """Whether the dimensions, from the innermost in ``order``, are laid out one inside the next (size-1 ones
    anywhere): PyTorch's contiguity test of a memory format."""
    expected = 1
    for d in order:
        if sizes[d] != 1:
            if strides[d] != expected:
                return False
            expected *= sizes[d]
    return True


def _dim_order(sizes: tuple, strides: tuple) -> tuple:
    """``(order, ambiguous)``: PyTorch's dim order of a layout (its compute_elementwise_output_logical_to_physical_perm
    for one tensor: contiguous and channels-last layouts first, else an insertion sort by stride, a size-1 or
    zero-stride dimension left where it is), and whether a neighbouring pair could swap."""
    ndim = len(sizes)
    if ndim < 2:
        return tuple(range(ndim)), False
    contiguous = math.prod(sizes) < 2 or _nested(sizes, strides, reversed(range(ndim)))
    channels_last = ndim == 4 and _nested(sizes, strides, (1, 3, 2, 0))
    if contiguous != channels_last:
        return (tuple(range(ndim)) if contiguous else (0, *range(2, ndim), 1)), False

    def at_least(a, b):
        return b == 0 or (a != 0 and a >= b)

    def order(a, b):  # 1: a goes inside b; -1: a stays outside; 0: either
        if strides[a] == 0 or strides[b] == 0:
            return 0
        if strides[a] == strides[b]:
            return 0 if at_least(sizes[b], sizes[a]) else 1
        return -1 if strides[b] >= strides[a] else 1

    perm = list(reversed(range(ndim)))
    for i in range(1, ndim):
        moving = i
        for j in reversed(range(i)):
            swap = order(perm[j], perm[moving])
            if swap > 0:
                perm[j], perm[moving] = perm[moving], perm[j]
                moving = j
            elif swap < 0:
                break
    ambiguous = any(order(perm[i], perm[i + 1]) != -1 for i in range(ndim - 1))
    return tuple(reversed(perm)), ambiguous


def _torch_linspace(low: float, high: float, steps: int, dtype) -> np.ndarray:
    """PyTorch's linspace in ``dtype``'s arithmetic (the first half from ``low``, the rest from ``high``): the
    bin edges histogram computes."""
    low, high = dtype.type(low), dtype.type(high)
    step = (high - low) / dtype.type(steps - 1)
    i = np.arange(steps)
    return np.where(i < steps // 2, low + step * i.astype(dtype), high - step * (steps - 1 - i).astype(dtype))


def _bin_edges(what: str, d: int, bins, column: np.ndarray, range_, dtype) -> np.ndarray:
    """The edges of coordinate ``d`` of histogramdd: a 1-D tensor ``bins`` of ``dtype``, or ``bins`` (an int) equal
    bins over ``range_``'s pair for it or else the ``column``'s min and max (0 and 1 for no values; widened by 0.5
    either side when equal), checked as PyTorch checks them."""
    if isinstance(bins, _t.Tensor):
        if bins.ndim != 1:
            raise RuntimeError(
                f"histogramdd: bins tensor should have one dimension, but got {bins.ndim} dimensions in the "
                f"bins tensor for dimension {d}"
            )
        if bins.dtype != dtype:
            raise RuntimeError(
                "histogramdd: input tensor and bins tensors should have the same dtype, but got input with "
                f"dtype {dtype} and bins for dimension {d} with dtype {bins.dtype}"
            )
    count = bins.numel() - 1 if isinstance(bins, _t.Tensor) else bins
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count <= 0:
        raise RuntimeError(f"{what}(): bins must be > 0, but got {count} for dimension {d}")
    if isinstance(bins, _t.Tensor):
        return _host(bins)
    if range_ is not None:
        low, high = float(range_[2 * d]), float(range_[2 * d + 1])
    else:
        low, high = (float(column.min()), float(column.max())) if column.size else (0.0, 1.0)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise RuntimeError(f"histogramdd: dimension {d}'s range [{_number(low)}, {_number(high)}] is not finite")
    if low > high:
        raise RuntimeError(
            f"histogramdd: min should not exceed max, but got min {_number(low)} max {_number(high)} for dimension {d}"
        )
    if low == high:
        low, high = low - 0.5, high + 0.5
    return _torch_linspace(low, high, int(count) + 1, dtype)


def _bin_positions(x: np.ndarray, edges: np.ndarray, linear: bool) -> tuple:
    """``(kept, bin)`` of each value of ``x`` among ``edges``, as PyTorch's histogramdd places them: values outside
    [first, last] (and NaN) are not kept; a value goes to the bin it starts, the last bin also taking its right
    edge. ``linear`` (evenly spaced edges): PyTorch's guess by interpolation, searched one bin either side."""
    count = edges.size
    kept = (x >= edges[0]) & (x <= edges[-1])
    after = np.searchsorted(edges, x, side="right")
    if linear:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            guess = (x - edges[0]) * x.dtype.type(count - 1) / (edges[-1] - edges[0])
        guess = np.where(kept, guess, 0).astype(np.int64)
        after = np.clip(after, np.maximum(guess - 1, 0), np.minimum(guess + 2, count))
    return kept, np.clip(after - 1, 0, count - 2)


def _shared_among_ties(flat, value):
    """``value`` (an element of the 1-D ``flat``) with its gradient shared evenly by the elements equal
    to it, as PyTorch's median without a dim does (a NaN median keeps its own)."""
    if bool(np.isnan(value.detach()._array)):
        return value
    ties = flat.detach() == value.detach()
    return _t.where(ties, flat, 0.0).sum() / ties.sum().to(flat.dtype)


class LongTailMethods:
    """Tensor methods of PyTorch's long tail (see the module's docstring)."""

    __slots__ = ()

    # -- products ----------------------------------------------------------------------------------

    def mm(self, mat2):
        """The product of two matrices (2-D only, as ``torch.mm``)."""
        _matrix_check("mm", "self", self, 2)
        _matrix_check("mm", "mat2", mat2, 2)
        if self.shape[1] != mat2.shape[0]:
            raise RuntimeError(
                f"mm: mat1 and mat2 shapes cannot be multiplied ({self.shape[0]}x{self.shape[1]} and "
                f"{mat2.shape[0]}x{mat2.shape[1]})"
            )
        return self @ mat2

    def bmm(self, mat2):
        """Batched matrix product, as ``deepkern.bmm``."""
        from .tensor_functions import bmm

        return bmm(self, mat2)

    def mv(self, vec):
        """Matrix times vector (2-D and 1-D)."""
        _matrix_check("mv", "self", self, 2)
        _matrix_check("mv", "vec", vec, 1)
        if self.shape[1] != vec.shape[0]:
            raise RuntimeError(f"mv: size mismatch, got matrix {self.shape} and vector {vec.shape}")
        return self @ vec

    def dot(self, other):
        """The dot product of two 1-D tensors of one length and dtype (a 0-d tensor)."""
        _matrix_check("dot", "self", self, 1)
        _matrix_check("dot", "other", other, 1)
        if self.shape != other.shape:
            raise RuntimeError(f"dot: inconsistent tensor size, got {self.shape} and {other.shape}")
        if self.dtype != other.dtype:
            raise RuntimeError(f"dot: expected both vectors to have the same dtype, got {self.dtype} and {other.dtype}")
        return self @ other

    def addmm(self, mat1, mat2, *, beta=1, alpha=1):
        """``beta * self + alpha * (mat1 @ mat2)``; with ``beta=0`` this tensor's values are not read
        (NaN in it does not propagate), as in PyTorch."""
        product = mat1.mm(mat2)
        if alpha != 1:
            product = product * alpha
        if beta == 0:
            return product + _t.zeros(self.shape, dtype=product.dtype, device=product.device)
        return (self if beta == 1 else self * beta) + product

    def view_as(self, other):
        return self.view(other.shape)

    def reshape_as(self, other):
        return self.reshape(other.shape)

    def where(self, condition, other):
        """``deepkern.where(condition, self, other)``."""
        return _t.where(condition, self, other)

    # -- elementwise -------------------------------------------------------------------------------

    def tan(self):
        return F.Tan.apply(self._as_floating())

    def sinh(self):
        return F.Sinh.apply(self._as_floating())

    def cosh(self):
        return F.Cosh.apply(self._as_floating())

    def asin(self):
        return F.Asin.apply(self._as_floating())

    def acos(self):
        return F.Acos.apply(self._as_floating())

    def atan(self):
        return F.Atan.apply(self._as_floating())

    def erf(self):
        """The error function (computed in float64 and rounded once)."""
        return F.Erf.apply(self._as_floating())

    def erfc(self):
        """1 - erf, without its cancellation for large arguments."""
        return F.Erfc.apply(self._as_floating())

    def exp2(self):
        return F.Exp2.apply(self._as_floating())

    def atan2(self, other):
        """The angle of (other, self): atan(self / other) in the quadrant of the pair."""
        return F.Atan2.apply(*_t._promoted(self._as_floating(), other))

    def hypot(self, other):
        """sqrt(self^2 + other^2) without overflow or underflow in the squares."""
        return F.Hypot.apply(*_t._promoted(self._as_floating(), other))

    def logaddexp(self, other):
        """log(exp(self) + exp(other)), without overflow."""
        return F.LogAddExp.apply(*_t._promoted(self._as_floating(), other))

    arcsin, arccos, arctan, arctan2 = asin, acos, atan, atan2

    def lerp(self, end, weight):
        """``self + weight * (end - self)``; for weights of 0.5 and above computed from ``end``
        (``end - (end - self) * (1 - weight)``), as PyTorch, so that weight 1 gives ``end`` exactly."""
        if isinstance(weight, _t.Tensor):
            return _t.where(weight < 0.5, self + weight * (end - self), end - (end - self) * (1 - weight))
        return self + weight * (end - self) if weight < 0.5 else end - (end - self) * (1 - weight)

    def logit(self, eps=None):
        """log(p / (1 - p)); with ``eps``, p clamped to [eps, 1 - eps] first (gradient 0 outside)."""
        p = self._as_floating()
        if eps is not None:
            p = p.clamp(eps, 1 - eps)
        return (p / (1 - p)).log()

    def xlogy(self, other):
        """``self * log(other)``, and 0 where ``self`` is 0 unless ``other`` is NaN, with PyTorch's gradients
        (deepkern.special.xlogy)."""
        from .special import xlogy

        return xlogy(self, other)

    def addcmul(self, tensor1, tensor2, *, value=1):
        """``self + value * tensor1 * tensor2``."""
        product = tensor1 * tensor2
        return self + (product if value == 1 else value * product)

    def addcdiv(self, tensor1, tensor2, *, value=1):
        """``self + value * tensor1 / tensor2``."""
        quotient = tensor1 / tensor2
        return self + (quotient if value == 1 else value * quotient)

    def addcmul_(self, tensor1, tensor2, *, value=1):
        return self.add_(tensor1 * tensor2, alpha=value)

    def addcdiv_(self, tensor1, tensor2, *, value=1):
        return self.add_(tensor1 / tensor2, alpha=value)

    def true_divide(self, other):
        return self / other

    def negative(self):
        return -self

    def absolute(self):
        return self.abs()

    def fix(self):
        return self.trunc()

    def ndimension(self) -> int:
        return self.ndim

    def nelement(self) -> int:
        return self.numel()

    # -- NaN-aware reductions and replacements -----------------------------------------------------

    def nansum(self, dim=None, keepdim=False):
        """The sum with NaN counted as zero (they get no gradient)."""
        if self.dtype.kind not in "fV":
            return self.sum(dim, keepdim)
        return F.ZeroNaN.apply(self).sum(dim, keepdim)

    def nanmean(self, dim=None, keepdim=False):
        """The mean of the elements that are not NaN (NaN where all are)."""
        if self.dtype.kind not in "fV":
            raise RuntimeError(f"nanmean: needs a floating-point tensor, got dtype {self.dtype}")
        count = (~self.isnan()).sum(dim, keepdim)
        return self.nansum(dim, keepdim) / count.to(self.dtype)

    def nan_to_num(self, nan=0.0, posinf=None, neginf=None):
        """NaN, inf and -inf replaced by ``nan``, ``posinf`` and ``neginf`` (the dtype's largest and
        lowest finite values by default); the replaced elements get no gradient."""
        if self.dtype.kind not in "fV":
            return self.clone()
        info = _finfo(self.dtype)
        high = float(info.max) if posinf is None else posinf
        low = float(info.min) if neginf is None else neginf
        a = self._array
        replacement = np.where(np.isnan(a), nan, np.where(a > 0, high, low)).astype(a.dtype)
        return _t.where(self.isfinite(), self, _t.Tensor._wrap(as_array(replacement)))

    def nan_to_num_(self, nan=0.0, posinf=None, neginf=None):
        return self._inplace("nan_to_num_", _ByMethod("nan_to_num"), nan, posinf, neginf)

    # -- comparisons and logic (outside the graph) -------------------------------------------------

    def isclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        """|self - other| <= atol + rtol * |other| elementwise (a bool tensor)."""
        return _t.Tensor._wrap(as_array(np.isclose(self._array, _t._array_of(other), rtol, atol, equal_nan)))

    def allclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
        return bool(np.all(self.isclose(other, rtol, atol, equal_nan)._array))

    def logical_and(self, other):
        return _t.Tensor._wrap(as_array(np.logical_and(self._array, _t._array_of(other))))

    def logical_or(self, other):
        return _t.Tensor._wrap(as_array(np.logical_or(self._array, _t._array_of(other))))

    def logical_xor(self, other):
        return _t.Tensor._wrap(as_array(np.logical_xor(self._array, _t._array_of(other))))

    def bitwise_not(self):
        return ~self

    def count_nonzero(self, dim=None):
        """How many elements are not zero (over ``dim``, an int or tuple; all by default): int64."""
        return (self != 0).sum(dim)

    # -- shape and selection -----------------------------------------------------------------------

    def ravel(self):
        return self.reshape(-1)

    def fliplr(self):
        if self.ndim < 2:
            raise RuntimeError(f"fliplr: needs a tensor of at least 2 dimensions, got shape {self.shape}")
        return self.flip(1)

    def flipud(self):
        if self.ndim < 1:
            raise RuntimeError("flipud: needs a tensor of at least 1 dimension, got a 0-d tensor")
        return self.flip(0)

    def rot90(self, k=1, dims=(0, 1)):
        """Rotated by 90 degrees ``k`` times in the plane ``dims``, from the first axis towards the second."""
        if len(dims) != 2 or self.ndim < 2:
            raise RuntimeError(
                f"rot90: needs 2 dims and a tensor of at least 2 dimensions, got {dims} and {self.shape}"
            )
        d0, d1 = (self._dim(d, "rot90") for d in dims)
        if d0 == d1:
            raise RuntimeError(f"rot90: the dims must differ, got {dims}")
        turns = int(k) % 4
        if turns == 1:
            return self.flip(d1).transpose(d0, d1)
        if turns == 2:
            return self.flip(d0, d1)
        if turns == 3:
            return self.flip(d0).transpose(d0, d1)
        return self.clone()

    def tril_(self, diagonal=0):
        return self.copy_(self.tril(diagonal))

    def triu_(self, diagonal=0):
        return self.copy_(self.triu(diagonal))

    def trace(self):
        """The sum of the main diagonal of a matrix."""
        _matrix_check("trace", "self", self, 2)
        return self.diagonal().sum()

    def diag(self, diagonal=0):
        """A vector's square matrix with it on diagonal ``diagonal`` (zeros elsewhere), or a matrix's
        diagonal ``diagonal`` as a new vector."""
        if self.ndim == 2:
            return self.diagonal(diagonal).clone()
        if self.ndim != 1:
            raise RuntimeError(f"diag: needs a 1-D or 2-D tensor, got shape {self.shape}")
        size = self.shape[0] + abs(int(diagonal))
        base = _t.zeros((size, size), dtype=self.dtype, device=self.device)
        return F.DiagonalScatter.apply(base, self, offset=int(diagonal), dim1=0, dim2=1)

    def diff(self, n=1, dim=-1, prepend=None, append=None):
        """The ``n``-th forward difference along ``dim`` (``prepend``/``append`` joined first)."""
        if self.ndim == 0:
            raise RuntimeError("diff: needs a tensor of at least 1 dimension, got a 0-d tensor")
        axis = self._dim(dim, "diff")
        parts = [t for t in (prepend, self, append) if t is not None]
        x = _t.cat(parts, axis) if len(parts) > 1 else self
        for _ in range(int(n)):
            length = x.shape[axis]
            if length == 0:
                break
            later, earlier = x.narrow(axis, 1, length - 1), x.narrow(axis, 0, length - 1)
            x = later ^ earlier if x.dtype == _t.bool_ else later - earlier
        return x

    def take_along_dim(self, indices, dim=None):
        """Elements at ``indices`` along ``dim`` (gather, with the other dimensions broadcast); with no
        ``dim``, of the flattened tensor."""
        if dim is None:
            return self.reshape(-1).gather(0, indices.reshape(-1))
        axis = self._dim(dim, "take_along_dim")
        if indices.ndim != self.ndim:
            raise RuntimeError(
                f"take_along_dim: input and indices must have the same number of dimensions, got shapes "
                f"{self.shape} and {indices.shape}"
            )
        shape = list(
            np.broadcast_shapes(*(tuple(1 if i == axis else n for i, n in enumerate(t.shape)) for t in (self, indices)))
        )
        source = self.expand(*(n if i != axis else self.shape[axis] for i, n in enumerate(shape)))
        index = indices.expand(*(n if i != axis else indices.shape[axis] for i, n in enumerate(shape)))
        return source.gather(axis, index)

    def tensor_split(self, indices_or_sections, dim=0):
        """Views along ``dim``: ``n`` nearly equal parts (the first ``size % n`` one longer) for an int,
        or the parts between the given indices (clipped to the size) for a sequence."""
        axis = self._dim(dim, "tensor_split")
        size = self.shape[axis]
        split = indices_or_sections
        if isinstance(split, _t.Tensor):
            split = split.item() if split.ndim == 0 else split.tolist()
        if isinstance(split, numbers.Integral) and not isinstance(split, bool):
            if split <= 0:
                raise RuntimeError(f"tensor_split: number of sections must be larger than 0, got {split}")
            cuts = [size // split * i + min(i, size % split) for i in range(1, split)]
        else:
            cuts = [int(i) for i in split]
        bounds = [0] + [min(max(c, 0), size) for c in cuts] + [size]
        return tuple(self.narrow(axis, a, max(b - a, 0)) for a, b in zip(bounds, bounds[1:]))

    # -- order statistics --------------------------------------------------------------------------

    def cumprod(self, dim, dtype=None):
        """The running product along ``dim`` (bool and integer tensors in int64 unless ``dtype`` says);
        its gradient is exact where the tensor holds zeros."""
        x = self if dtype is None else self.to(dtype)
        if dtype is None and x.dtype.kind in "biu" and x.dtype != _t.int64:
            x = x.to(_t.int64)
        if x.ndim == 0:
            return x.reshape(1).cumprod(0).reshape(())
        axis = self._dim(dim, "cumprod")
        return _t._in_float32(x, lambda x: F.Cumprod.apply(x, axis), F.Cumprod)

    def kthvalue(self, k, dim=-1, keepdim=False):
        """``(values, indices)`` of the ``k``-th smallest element along ``dim`` (1-based; NaN largest)."""
        size = self.shape[self._dim(dim, "kthvalue")] if self.ndim else 1
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= size:
            raise RuntimeError(f"kthvalue: k ({k!r}) is out of range for dimension {dim} of size {size}")
        return self._order_statistic(k - 1, dim, keepdim, nan_wins=False)

    def median(self, dim=None, keepdim=False):
        """The lower median (of an even count, the smaller middle element), NaN where a NaN is present,
        as PyTorch: of all elements (a 0-d tensor) with no ``dim``, else ``(values, indices)``."""
        if dim is None:
            flat = self.reshape(-1)
            if flat.numel() == 0:
                return _t.full((), math.nan, dtype=self.dtype, device=self.device)
            value = flat._order_statistic((flat.numel() - 1) // 2, 0, False, nan_wins=True).values
            return _shared_among_ties(flat, value)
        size = self.shape[self._dim(dim, "median")] if self.ndim else 1
        if size == 0:
            raise IndexError(f"median: cannot compute the median of an empty dimension {dim}")
        return self._order_statistic((size - 1) // 2, dim, keepdim, nan_wins=True)

    def _order_statistic(self, position: int, dim, keepdim: bool, nan_wins: bool):
        """The element at ``position`` of each sorted slice along ``dim`` and its index; ``nan_wins``:
        a slice holding NaN gives its first NaN (median's rule)."""
        if self.ndim == 0:
            return _t.MaxResult(self.clone(), _t.zeros((), dtype=_t.int64, device=self.device))
        axis = self._dim(dim, "order statistic")
        ordered = self.sort(axis)
        values, indices = ordered.values.select(axis, position), ordered.indices.select(axis, position)
        if nan_wins and self.dtype.kind in "fV" and bool(np.any(np.isnan(self._array))):
            nan = self.isnan()
            first = _t.Tensor._wrap(as_array(np.argmax(nan._array, axis=axis)).astype(np.int64, copy=False))
            has_nan = nan.any(axis)
            values = _t.where(has_nan, self.gather(axis, first.unsqueeze(axis)).squeeze(axis), values)
            indices = _t.where(has_nan, first, indices)
        if keepdim:
            values, indices = values.unsqueeze(axis), indices.unsqueeze(axis)
        return _t.MaxResult(values, indices)

    def unique(self, sorted=True, return_inverse=False, return_counts=False, dim=None):
        """The distinct elements in ascending order (slices along ``dim`` when given), optionally with
        each element's position among them (``inverse``, this tensor's shape) and their counts."""
        axis = None if dim is None else self._dim(dim, "unique")
        values, inverse, counts = np.unique(
            self._array, return_inverse=True, return_counts=True, axis=axis, equal_nan=False
        )
        out = [_t.Tensor._wrap(as_array(values))]
        if return_inverse:
            shape = self.shape if axis is None else (self.shape[axis],)
            out.append(_t.Tensor._wrap(as_array(inverse.reshape(shape).astype(np.int64, copy=False))))
        if return_counts:
            out.append(_t.Tensor._wrap(as_array(counts.astype(np.int64, copy=False))))
        return out[0] if len(out) == 1 else tuple(out)

    # -- indexed updates ---------------------------------------------------------------------------

    def _index_along(self, what: str, dim, index, source=None):
        """(axis, index expanded to ``source``'s shape (or this tensor's with its length along the axis)
        for scatter_add / where), checked as PyTorch checks index_add/index_copy/index_fill."""
        axis = self._dim(dim, what)
        if not isinstance(index, _t.Tensor) or index.dtype.kind not in "iu" or index.ndim > 1:
            raise RuntimeError(f"{what}: index must be a 0-D or 1-D integer Tensor, got {_t._kind_name(index)}")
        index = index.reshape(-1)
        if self.ndim and index.numel() and not bool(np.all((index._array >= 0) & (index._array < self.shape[axis]))):
            raise IndexError(f"{what}: index out of range for dimension {dim} of size {self.shape[axis]}")
        target = list(self.shape) if source is None else list(source.shape)
        if source is not None:
            expected = list(self.shape)
            expected[axis] = index.numel()
            if self.ndim and target != expected:
                raise RuntimeError(
                    f"{what}: source must have shape {tuple(expected)} (index's length along dim {dim}), "
                    f"got {tuple(target)}"
                )
        else:
            target[axis] = index.numel()
        shape = [-1 if i == axis else 1 for i in range(self.ndim)]
        return axis, index.reshape(shape).expand(*target)

    def index_add(self, dim, index, source, *, alpha=1):
        """A copy with ``alpha * source``'s slices added to the slices ``index`` along ``dim``
        (repeated indices accumulate)."""
        if self.ndim == 0:
            return self.reshape(1).index_add(0, index, source.reshape(1), alpha=alpha).reshape(())
        axis, spread = self._index_along("index_add", dim, index, source)
        return self.scatter_add(axis, spread, source if alpha == 1 else source * alpha)

    def index_copy(self, dim, index, source):
        """A copy with the slices ``index`` along ``dim`` replaced by ``source``'s slices."""
        if self.ndim == 0:
            return self.reshape(1).index_copy(0, index, source.reshape(1)).reshape(())
        axis, spread = self._index_along("index_copy", dim, index, source)
        return self.index_fill(axis, index, 0).scatter_add(axis, spread, source)

    def index_fill(self, dim, index, value):
        """A copy with the slices ``index`` along ``dim`` set to ``value``."""
        if isinstance(value, _t.Tensor) and value.ndim != 0:
            raise RuntimeError(
                "index_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                f"{value.ndim} dimension(s)."
            )
        if self.ndim == 0:
            return self.reshape(1).index_fill(0, index, value).reshape(())
        axis, _ = self._index_along("index_fill", dim, index)
        chosen = np.zeros(self.shape[axis], dtype=bool)
        chosen[index._array.reshape(-1)] = True
        mask = _t.Tensor._wrap(as_array(chosen.reshape([-1 if i == axis else 1 for i in range(self.ndim)])))
        return self.masked_fill(mask.expand(*self.shape), value)

    def index_add_(self, dim, index, source, *, alpha=1):
        return self._inplace("index_add_", _ByMethod("index_add"), dim, index, source if alpha == 1 else source * alpha)

    def index_copy_(self, dim, index, source):
        return self._inplace("index_copy_", _ByMethod("index_copy"), dim, index, source)

    def index_fill_(self, dim, index, value):
        return self._inplace("index_fill_", _ByMethod("index_fill"), dim, index, value)

    # -- more elementwise and running ops ------------------------------------------------------------

    def float_power(self, exponent):
        """``self ** exponent`` computed in float64 (a float64 result, as PyTorch)."""
        exponent = exponent.double() if isinstance(exponent, _t.Tensor) else float(exponent)
        return self.double() ** exponent

    def copysign(self, other):
        """|self| with the sign of ``other`` (-0 counts as negative); gradient only to ``self``."""
        negative = np.signbit(_t._array_of(other))
        sign = _t.Tensor._wrap(as_array(np.where(negative, -1.0, 1.0)))
        x = self._as_floating()
        return x.abs() * sign.to(x.dtype)

    def signbit(self):
        return _t.Tensor._wrap(as_array(np.signbit(self._array)))

    def heaviside(self, values):
        """0 below zero, 1 above, ``values`` at zero (not differentiable)."""
        return _t.Tensor._wrap(as_array(np.heaviside(self._array, _t._array_of(values)).astype(self.dtype)))

    def sinc(self):
        """sin(pi x) / (pi x), 1 at 0 (gradient 0 there)."""
        x = self._as_floating()
        zero = x == 0
        safe = _t.where(zero, 1.0, x) * math.pi
        return _t.where(zero, 1.0, safe.sin() / safe)

    def cross(self, other, dim=None):
        """The cross product of 3-vectors along ``dim`` (by default the first dimension of size 3)."""
        if dim is None:
            dim = next((i for i, n in enumerate(self.shape) if n == 3), None)
            if dim is None:
                raise RuntimeError(f"cross: no dimension of size 3 in input of shape {self.shape}")
        axis = self._dim(dim, "cross")
        if self.shape[axis] != 3 or other.shape[self._dim(dim, "cross") - self.ndim + other.ndim] != 3:
            raise RuntimeError(f"cross: dimension {dim} must have size 3, got shapes {self.shape} and {other.shape}")
        a = [self.select(axis, i) for i in range(3)]
        b = [other.select(axis - self.ndim + other.ndim, i) for i in range(3)]
        parts = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
        return _t.stack(parts, axis)

    def cummax(self, dim):
        """``(values, indices)``: the running maximum along ``dim`` and where it was reached (the latest
        index on ties; NaN, once seen, stays, at the index of the latest NaN)."""
        return self._running_extreme(dim, np.maximum, "cummax")

    def cummin(self, dim):
        """``(values, indices)``: the running minimum along ``dim`` (see cummax)."""
        return self._running_extreme(dim, np.minimum, "cummin")

    def _running_extreme(self, dim, ufunc, what: str):
        if self.ndim == 0:
            return _t.MaxResult(self.clone(), _t.zeros((), dtype=_t.int64, device=self.device))
        axis = self._dim(dim, what)
        a = self._array
        running = ufunc.accumulate(a, axis=axis)
        reached = (a == running) | (np.isnan(a) if a.dtype.kind == "f" else False)
        positions = np.arange(a.shape[axis]).reshape([-1 if i == axis else 1 for i in range(a.ndim)])
        indices = np.maximum.accumulate(np.where(reached, positions, 0), axis=axis) if a.size else running
        indices = _t.Tensor._wrap(as_array(indices.astype(np.int64, copy=False)))
        return _t.MaxResult(self.gather(axis, indices), indices)

    def logcumsumexp(self, dim):
        """log of the running sum of exp along ``dim``, without overflow."""
        x = self._as_floating()
        if x.ndim == 0:
            return x.clone()
        return F.LogCumSumExp.apply(x, self._dim(dim, "logcumsumexp"))

    def diag_embed(self, offset=0, dim1=-2, dim2=-1):
        """Matrices (in dims ``dim1``, ``dim2`` of the result) with the last dimension on diagonal ``offset``."""
        size = self.shape[-1] + abs(int(offset)) if self.ndim else 1
        base = _t.zeros((*self.shape[:-1], size, size), dtype=self.dtype, device=self.device)
        out = F.DiagonalScatter.apply(base, self, offset=int(offset), dim1=base.ndim - 2, dim2=base.ndim - 1)
        d1, d2 = (_t._wrap_dim(d, out.ndim, "diag_embed") for d in (dim1, dim2))
        if d1 == d2:
            raise RuntimeError(f"diag_embed: dim1 and dim2 must differ, got {dim1} and {dim2}")
        return out.movedim((out.ndim - 2, out.ndim - 1), (d1, d2))

    def sum_to_size(self, *size):
        """The sums over the dimensions along which ``size`` broadcasts to this tensor's shape."""
        size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else tuple(size)
        if np.broadcast_shapes(size, self.shape) != self.shape:
            raise RuntimeError(f"sum_to_size: size {size} is not expandable to the tensor's shape {self.shape}")
        lead = self.ndim - len(size)
        out = self.sum(tuple(range(lead))) if lead else self
        keep = tuple(i for i, n in enumerate(size) if n == 1 and out.shape[i] != 1)
        return out.sum(keep, keepdim=True) if keep else out

    def bincount(self, weights=None, minlength=0):
        """How many times each value 0 .. max occurs in this 1-D tensor of non-negative integers (the
        sums of ``weights`` at them, when given); at least ``minlength`` entries."""
        if self.ndim != 1 or self.dtype.kind not in "iu":
            raise RuntimeError(f"bincount: needs a 1-D integer tensor, got shape {self.shape} and dtype {self.dtype}")
        if self.numel() and int(self._array.min()) < 0:
            raise RuntimeError("bincount: the input must hold non-negative values")
        w = None if weights is None else _t._array_of(weights)
        counts = np.bincount(self._array, weights=w, minlength=int(minlength))
        return _t.Tensor._wrap(as_array(counts.astype(np.int64 if w is None else counts.dtype, copy=False)))

    def bernoulli(self, p=None, *, generator=None):
        """0 or 1 in each element, 1 with probability ``p`` (by default this tensor's values)."""
        probability = self._array if p is None else _t._array_of(p)
        draws = (generator or get_generator()).random(self.shape) < probability
        return _t.Tensor._wrap(as_array(draws.astype(self.dtype if self.dtype.kind in "fV" else np.float32)))

    def bernoulli_(self, p=0.5, *, generator=None):
        """Fills the tensor with 0 or 1, 1 with probability ``p`` (a number or a tensor)."""
        probability = _t._array_of(p)
        return self._fill_random("bernoulli_", lambda rng: (rng.random(self.shape) < probability) * 1.0, generator)

    def is_complex(self) -> bool:
        return self.dtype.kind == "c"

    def half(self):
        return self.to(np.float16)

    # -- in place ----------------------------------------------------------------------------------

    neg_, abs_, sqrt_, log_ = map(_in_place, ["neg", "abs", "sqrt", "log"])
    sigmoid_, tanh_, relu_, square_ = map(_in_place, ["sigmoid", "tanh", "relu", "square"])
    floor_, ceil_, round_, trunc_ = map(_in_place, ["floor", "ceil", "round", "trunc"])
    sin_, cos_, reciprocal_, rsqrt_ = map(_in_place, ["sin", "cos", "reciprocal", "rsqrt"])
    clamp_min_, clamp_max_, lerp_ = map(_in_place, ["clamp_min", "clamp_max", "lerp"])

    # -- quantiles, medians, modes -------------------------------------------------------------------

    def quantile(self, q, dim=None, keepdim=False, *, interpolation="linear"):
        """The ``q``-th quantiles (a number, or a 0-D or 1-D tensor of this tensor's dtype, each in
        [0, 1]) along ``dim`` (None: of all elements), between the sorted elements as
        ``interpolation`` says (linear, lower, higher, midpoint, nearest; nearest rounds half to even).
        A 1-D ``q`` puts its dimension first. A slice holding NaN gives NaN, as PyTorch's. The gradient
        goes to the one or two elements each quantile is taken from."""
        return self._quantile("quantile", q, dim, keepdim, interpolation, ignore_nan=False)

    def nanquantile(self, q, dim=None, keepdim=False, *, interpolation="linear"):
        """:meth:`quantile` of the elements that are not NaN (NaN where all are)."""
        return self._quantile("nanquantile", q, dim, keepdim, interpolation, ignore_nan=True)

    def _quantile(self, what: str, q, dim, keepdim: bool, interpolation, ignore_nan: bool):
        if self.dtype not in (np.float32, np.float64):
            raise RuntimeError(f"{what}() input tensor must be either float or double dtype, got {self.dtype}")
        if isinstance(q, _t.Tensor):
            if q.ndim > 1:
                raise RuntimeError(f"{what}() q must be a scalar or 1D tensor, got shape {q.shape}")
            if q.dtype != self.dtype:
                raise RuntimeError(
                    f"{what}() q tensor must be same dtype as the input tensor, got {q.dtype} and {self.dtype}"
                )
            qs, one_q = np.asarray(q._host_array(), dtype=self.dtype).reshape(-1), q.ndim == 0
            if not bool(np.all((qs >= 0) & (qs <= 1))):
                raise RuntimeError(f"{what}() q values must be in the range [0, 1]")
        elif isinstance(q, numbers.Real) and not isinstance(q, bool):
            if not 0 <= q <= 1:
                raise RuntimeError(f"{what}() q must be in the range [0, 1] but got {q}")
            qs, one_q = np.array([q], dtype=self.dtype), True
        else:
            raise TypeError(f"{what}(): argument 'q' must be a number or a Tensor, got {_t._kind_name(q)}")
        if self.numel() == 0:
            raise RuntimeError(f"{what}() input tensor must be non-empty")
        if interpolation not in _INTERPOLATIONS:
            raise RuntimeError(
                f"{what}() interpolation must be one of linear, lower, higher, midpoint or nearest, "
                f"but got {interpolation}"
            )
        if dim is None:
            x, axis = self.reshape(-1), 0
        else:
            axis = self._dim(dim, what)
            x = self if self.ndim else self.reshape(1)
        ordered = x.sort(axis).values.movedim(axis, -1)  # NaN last
        arr = ordered._array
        last = arr.shape[-1] - 1
        nan = np.isnan(arr)
        if ignore_nan:  # PyTorch's ranks: q (count - 1), at least 0 (an all-NaN slice takes its first, a NaN)
            ranks = qs * (np.sum(~nan, axis=-1, keepdims=True) - 1).astype(self.dtype)
            ranks = np.where(ranks < 0, 0, ranks).astype(self.dtype)
        else:  # a slice with NaN takes its last element, a NaN
            ranks = np.where(np.any(nan, axis=-1, keepdims=True), last, qs * self.dtype.type(last)).astype(self.dtype)
        if interpolation == "lower":
            ranks = np.floor(ranks)
        elif interpolation == "higher":
            ranks = np.ceil(ranks)
        elif interpolation == "nearest":
            ranks = np.round(ranks)  # half to even, as PyTorch
        below = np.floor(ranks).astype(np.int64)
        pick = lambda r: ordered.gather(-1, _t.Tensor._wrap(as_array(r)))  # noqa: E731
        result = pick(below)
        if interpolation in ("linear", "midpoint"):
            above = np.ceil(ranks).astype(np.int64)
            if interpolation == "linear":
                weights = ranks - below
            else:
                weights = np.ceil(ranks - np.floor(ranks)) * 0.5
            weights = _t.Tensor._wrap(as_array(weights.astype(self.dtype, copy=False)))
            result = result.lerp(pick(above), weights)
        result = result.movedim(-1, 0)  # the quantiles first
        if one_q:
            result = result.select(0, 0)
        if keepdim:
            lead = () if one_q else (len(qs),)
            if dim is None:
                result = result.reshape(*lead, *((1,) * self.ndim))
            elif self.ndim:
                result = result.unsqueeze(axis + len(lead))
        return result

    def nanmedian(self, dim=None, keepdim=False):
        """The lower median of the elements that are not NaN (NaN where all are): of all elements (a
        0-d tensor) with no ``dim``, else ``(values, indices)`` along ``dim``."""
        if dim is None:
            flat = self.reshape(-1)
            if flat.numel() == 0:
                return _t.full((), math.nan, dtype=self.dtype, device=self.device)
            return _shared_among_ties(flat, flat.nanmedian(0).values)
        axis = self._dim(dim, "nanmedian")
        if self.ndim == 0:
            return _t.MaxResult(self.clone(), _t.zeros((), dtype=_t.int64, device=self.device))
        if self.shape[axis] == 0:
            raise IndexError(f"nanmedian(): Expected reduction dim {dim} to have non-zero size.")
        order = self.argsort(axis)._array  # stable, NaN last
        a = self._array
        count = np.sum(~np.isnan(a), axis=axis, keepdims=True) if a.dtype.kind == "f" else a.shape[axis]
        position = np.maximum((np.asarray(count) - 1) // 2, 0)
        position = np.broadcast_to(position, order.shape[:axis] + (1,) + order.shape[axis + 1 :])
        indices = _t.Tensor._wrap(as_array(np.take_along_axis(order, position, axis)))
        values = self.gather(axis, indices)
        if not keepdim:
            values, indices = values.squeeze(axis), indices.squeeze(axis)
        return _t.MaxResult(values, indices)

    def mode(self, dim=-1, keepdim=False):
        """``(values, indices)``: the most frequent value along ``dim`` (the smallest of those that tie)
        and the last index it occurs at, as PyTorch's; NaN counts as a value of its own each time. The
        gradient goes to that index."""
        if self.ndim == 0:
            self._dim(dim, "mode")
            return _t.MaxResult(self.clone(), _t.zeros((), dtype=_t.int64, device=self.device))
        axis = self._dim(dim, "mode")
        if self.shape[axis] == 0:
            raise IndexError(f"mode(): Expected reduction dim {dim} to have non-zero size.")
        a = np.moveaxis(self._host_array(), axis, -1)
        rows = a.reshape(-1, a.shape[-1])
        order = np.argsort(rows, axis=-1, kind="stable")
        ordered = np.take_along_axis(rows, order, -1)
        starts = np.ones(ordered.shape, dtype=bool)
        starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]  # NaN != NaN: each NaN its own run
        run_ids = np.cumsum(starts, axis=-1) - 1
        best = np.empty(len(rows), dtype=np.int64)
        for r in range(len(rows)):
            lengths = np.bincount(run_ids[r])
            run = int(np.argmax(lengths))  # the first (smallest) of the longest runs
            best[r] = order[r, np.flatnonzero(run_ids[r] == run)[-1]]
        indices = _t.Tensor._wrap(to_device(best.reshape(a.shape[:-1] + (1,)), self.device)).movedim(-1, axis)
        indices = _t.Tensor._wrap(indices._array.copy())
        values = self.gather(axis, indices)
        if not keepdim:
            values, indices = values.squeeze(axis), indices.squeeze(axis)
        return _t.MaxResult(values, indices)

    def aminmax(self, *, dim=None, keepdim=False):
        """``(min, max)`` over ``dim`` (None: all elements), as amin and amax (the gradient shared
        evenly among the elements equal to each)."""
        if dim is None:
            if self.numel() == 0:
                raise RuntimeError(
                    "aminmax(): cannot compute aminmax over an empty dimension as the operation has no identity."
                )
            if self.ndim == 0:
                return AminmaxResult(self.clone(), self.clone())
            return AminmaxResult(self.amin((), keepdim), self.amax((), keepdim))
        axis = self._dim(dim, "aminmax")
        if self.ndim == 0:
            return AminmaxResult(self.clone(), self.clone())
        if self.shape[axis] == 0:
            raise IndexError(f"aminmax: Expected reduction dim {dim} to have non-zero size.")
        return AminmaxResult(self.amin(axis, keepdim), self.amax(axis, keepdim))

    def msort(self):
        """The tensor sorted along its first dimension (values only)."""
        return self.sort(0).values

    # -- reducing scatters and indexed writes ------------------------------------------------------

    def scatter_reduce(self, dim, index, src, reduce, *, include_self=True):
        """A copy with ``src``'s elements reduced in at ``index`` along ``dim`` (``self[i][index[i][j]]
        op= src[i][j]`` for dim 1) by ``reduce``: sum, prod, mean, amax or amin; with
        ``include_self=False`` the positions written take only ``src``'s values. Differentiable as
        PyTorch's (see tensor_ops.ScatterReduce)."""
        what = "scatter_reduce"
        if reduce not in _SCATTER_REDUCTIONS:
            raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, got {reduce}")
        if not isinstance(src, _t.Tensor):
            raise TypeError(f"{what}(): argument 'src' must be a Tensor, got {_t._kind_name(src)}")
        if self.ndim == 0 and isinstance(index, _t.Tensor) and index.ndim == 0:
            return (
                self.reshape(1)
                .scatter_reduce(dim, index.reshape(1), src.reshape(1), reduce, include_self=include_self)
                .reshape(())
            )
        axis = self._dim(dim, what)
        if src.dtype != self.dtype:
            raise RuntimeError(
                f"{what}(): Expected self.dtype to be equal to src.dtype, got {self.dtype} and {src.dtype}"
            )
        if src.ndim != self.ndim:
            raise RuntimeError(f"{what}(): src has {src.ndim} dimensions, the tensor {self.ndim}")
        limit = tuple(min(n, m) for n, m in zip(self.shape, src.shape))
        idx = self._index(index, axis, what, limit, src.shape)
        return F.ScatterReduce.apply(self, idx, src, axis, reduce, include_self)

    def scatter_reduce_(self, dim, index, src, reduce, *, include_self=True):
        if (
            self.ndim == 0 and isinstance(index, _t.Tensor) and index.ndim == 0
        ):  # the out-of-place op's value, written back
            return self.copy_(self.scatter_reduce(dim, index, src, reduce, include_self=include_self))
        return self._inplace(
            "scatter_reduce_", _ByMethod("scatter_reduce", include_self=include_self), dim, index, src, reduce
        )

    def masked_scatter(self, mask, source):
        """A copy with ``source``'s first elements (row-major) written, in order, where the bool
        ``mask`` (broadcast with this tensor) is True; differentiable in both."""
        what = "masked_scatter"
        if not isinstance(mask, _t.Tensor) or mask.dtype != np.bool_:
            got = mask.dtype if isinstance(mask, _t.Tensor) else _t._kind_name(mask)
            raise RuntimeError(f"masked_scatter_ only supports boolean masks, but got mask with dtype {got}")
        if not isinstance(source, _t.Tensor):
            raise TypeError(f"{what}(): argument 'source' must be a Tensor, got {_t._kind_name(source)}")
        if source.dtype != self.dtype:
            raise RuntimeError(
                f"{what}: expected self and source to have same dtypes but got {self.dtype} and {source.dtype}"
            )
        shape = _t._broadcast_shape(mask.shape, self.shape, what, "mask")
        chosen = mask.expand(shape)
        positions = np.flatnonzero(chosen._host_array())
        if positions.size > source.numel():
            raise RuntimeError(
                f"{what}: Number of elements of source < number of ones in mask ({source.numel()} < {positions.size})"
            )
        values = source.reshape(-1)[: positions.size]
        base = _t.zeros(int(np.prod(shape)), dtype=self.dtype, device=self.device)
        where = _t.Tensor._wrap(to_device(positions.astype(np.int64), self.device))
        filled = base.scatter(0, where, values).reshape(shape)
        return _t.where(chosen, filled, self)

    def masked_scatter_(self, mask, source):
        if isinstance(mask, _t.Tensor) and np.broadcast_shapes(mask.shape, self.shape) != self.shape:
            raise RuntimeError(f"masked_scatter_: mask of shape {mask.shape} does not broadcast to {self.shape}")
        return self._inplace("masked_scatter_", _ByMethod("masked_scatter"), mask, source)

    def _index_put_key(self, what: str, indices) -> tuple:
        """``indices`` (a tuple or list of index tensors: integer, or bool masks) as a NumPy key of
        integer arrays, checked as PyTorch checks them."""
        if isinstance(indices, _t.Tensor) or not isinstance(indices, (tuple, list)):
            raise TypeError(f"{what}(): argument 'indices' must be tuple of Tensors, not {_t._kind_name(indices)}")
        key, d = [], 0
        for n, i in enumerate(indices):
            if not isinstance(i, _t.Tensor):
                raise TypeError(
                    f"{what}(): expected Tensor as element {n} in argument 'indices', got {_t._kind_name(i)}"
                )
            arr = i._array
            if arr.dtype == np.bool_ or arr.dtype == np.uint8:
                span = self.shape[d : d + arr.ndim]
                if tuple(span) != tuple(arr.shape):
                    raise IndexError(
                        f"The shape of the mask {list(arr.shape)} at index {d} does not match the shape of the "
                        f"indexed tensor {list(span)} at index {d}"
                    )
                key.extend(np.nonzero(arr.astype(bool)))
                d += arr.ndim
                continue
            if arr.dtype.kind not in "iu":
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            if d >= self.ndim:
                d += 1
                continue
            size = self.shape[d]
            if arr.size and not (int(arr.min()) >= -size and int(arr.max()) < size):
                bad = int(arr.min()) if int(arr.min()) < -size else int(arr.max())
                raise IndexError(f"index {bad} is out of bounds for dimension {d} with size {size}")
            key.append(arr.astype(np.int64, copy=False))
            d += 1
        if d > self.ndim:
            raise IndexError(f"too many indices for tensor of dimension {self.ndim} (got {d})")
        return tuple(key)

    def index_put(self, indices, values, accumulate=False):
        """A copy with ``values`` (broadcast) written at ``self[indices]`` (``indices``: a tuple of index
        tensors), or added there with ``accumulate=True`` (repeated indices summing); differentiable in
        both as PyTorch's."""
        key = self._index_put_key("index_put", indices)
        if not isinstance(values, _t.Tensor):
            raise TypeError(f"index_put(): argument 'values' must be a Tensor, got {_t._kind_name(values)}")
        if values.dtype != self.dtype:
            raise RuntimeError(
                "Index put requires the source and destination dtypes match, got "
                f"{self.dtype} for the destination and {values.dtype} for the source."
            )
        target = np.empty(self.shape, dtype=np.bool_)[key].shape
        try:
            fits = np.broadcast_shapes(values.shape, target) == target
        except ValueError:
            fits = False
        if not fits:
            raise RuntimeError(
                f"shape mismatch: value tensor of shape {list(values.shape)} cannot be broadcast to indexing "
                f"result of shape {list(target)}"
            )
        return F.IndexPut.apply(self, values, key=key, accumulate=bool(accumulate))

    def index_put_(self, indices, values, accumulate=False):
        return self._inplace("index_put_", _ByMethod("index_put", accumulate=accumulate), indices, values)

    def _flat_index(self, what: str, index):
        if not isinstance(index, _t.Tensor) or index.dtype != np.int64:
            got = index.dtype if isinstance(index, _t.Tensor) else _t._kind_name(index)
            raise RuntimeError(f"{what}(): Expected a long tensor for index, but got {got}")
        n = self.numel()
        arr = index._array
        if arr.size and not (int(arr.min()) >= -n and int(arr.max()) < n):
            bad = int(arr.min()) if int(arr.min()) < -n else int(arr.max())
            raise IndexError(f"out of range: tried to access index {bad} on a tensor of {n} elements.")
        return index

    def take(self, index):
        """The elements at ``index`` (int64, negative counting from the end) of the flattened tensor, in
        ``index``'s shape."""
        index = self._flat_index("take", index)
        return self.reshape(-1)[index]

    def put(self, index, source, accumulate=False):
        """A copy with ``source``'s elements written (or added, ``accumulate=True``) at ``index`` of the
        flattened tensor."""
        index = self._flat_index("put_", index)
        if not isinstance(source, _t.Tensor):
            raise TypeError(f"put(): argument 'source' must be a Tensor, got {_t._kind_name(source)}")
        if source.numel() != index.numel():
            raise IndexError(
                "put_(): Expected source and index to have the same number of elements, but got "
                f"source.numel() = {source.numel()}, index.numel() = {index.numel()}"
            )
        if source.dtype != self.dtype:
            raise RuntimeError(
                "put_(): self and source expected to have the same dtype, but got "
                f"self.dtype = {self.dtype} and source.dtype = {source.dtype}"
            )
        # written through the n-d positions (no reshape view of a flat result: put_ writes its value in place)
        flat = np.asarray(index._host_array()).reshape(-1) % max(self.numel(), 1)
        key = tuple(to_device(k, self.device) for k in np.unravel_index(flat, self.shape)) if self.ndim else ()
        return F.IndexPut.apply(
            self, source.reshape(-1) if self.ndim else source.reshape(()), key=key, accumulate=bool(accumulate)
        )

    def put_(self, index, source, accumulate=False):
        return self._inplace("put_", _ByMethod("put", accumulate=accumulate), index, source)

    # -- histograms, norms, products -----------------------------------------------------------------

    def histc(self, bins=100, min=0, max=0):
        """The counts of the elements in ``bins`` equal bins over [min, max] (the data's range when they
        are equal; the last bin holds max), outside the graph, in this tensor's dtype."""
        if self.dtype.kind not in "fV":
            raise NotImplementedError(f'"histogram_cpu" not implemented for {self.dtype}')
        if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins <= 0:
            raise RuntimeError(f"histogram(): bins must be > 0, but got {bins} for dimension 0")
        a = self._host_array().reshape(-1)
        lo, hi = float(min), float(max)
        if lo == hi and a.size:
            lo, hi = float(a.min()), float(a.max())
        if lo == hi:
            lo, hi = lo - 1, hi + 1
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise RuntimeError(f"histc: range of [{lo}, {hi}] is not finite")
        if not lo < hi:
            raise RuntimeError("histc: max must be larger than min")
        low, high = self.dtype.type(lo), self.dtype.type(hi)
        inside = a[(a >= low) & (a <= high)]
        position = ((inside - low) * bins / (high - low)).astype(np.int64)  # PyTorch's linear interpolation
        counts = np.bincount(np.minimum(position, bins - 1), minlength=bins)
        return _t.Tensor._wrap(to_device(counts.astype(self.dtype), self.device))

    def renorm(self, p, dim, maxnorm):
        """Each slice along ``dim`` whose ``p``-norm exceeds ``maxnorm`` scaled to norm ``maxnorm`` (by
        maxnorm / (norm + 1e-7), as PyTorch); differentiable through the norm."""
        if not p > 0:
            raise RuntimeError("renorm: non-positive-norm not supported")
        if not maxnorm >= 0:
            raise RuntimeError(f"renorm: expected maxnorm to be >= 0 but got {maxnorm}")
        if self.ndim < 2:
            raise RuntimeError(f"renorm: input needs at least 2 dimensions, got {self.ndim} dimensions")
        axis = self._dim(dim, "renorm")
        others = tuple(d for d in range(self.ndim) if d != axis)
        norm = self.norm(p, others, keepdim=True)
        factor = _t.where(norm > maxnorm, maxnorm / (norm + 1e-7), 1.0)
        return self * factor.to(self.dtype)

    def renorm_(self, p, dim, maxnorm):
        return self._inplace("renorm_", _ByMethod("_renorm_of_a_copy"), p, dim, maxnorm)

    def _renorm_of_a_copy(self, p, dim, maxnorm):
        """renorm of a clone: the norm's saved input must outlive renorm_'s write into this tensor."""
        return self.clone().renorm(p, dim, maxnorm)

    def kron(self, other):
        """The Kronecker product (any numbers of dimensions, the fewer padded with leading ones)."""
        if not isinstance(other, _t.Tensor):
            raise TypeError(f"kron(): argument 'other' must be a Tensor, got {_t._kind_name(other)}")
        ndim = max(self.ndim, other.ndim)
        a_shape = (1,) * (ndim - self.ndim) + self.shape
        b_shape = (1,) * (ndim - other.ndim) + other.shape
        a = self.reshape([n for size in a_shape for n in (size, 1)])
        b = other.reshape([n for size in b_shape for n in (1, size)])
        return (a * b).reshape([m * n for m, n in zip(a_shape, b_shape)])

    def inner(self, other):
        """The sums of products over the last dimension of both (a product if either is 0-d)."""
        if not isinstance(other, _t.Tensor):
            raise TypeError(f"inner(): argument 'other' must be a Tensor, got {_t._kind_name(other)}")
        if self.ndim == 0 or other.ndim == 0:
            return self * other
        if self.shape[-1] != other.shape[-1]:
            raise RuntimeError(
                "inner() the last dimension must match on both input tensors but got shapes "
                f"{list(self.shape)} and {list(other.shape)}"
            )
        from .tensor_functions import tensordot

        return tensordot(self, other, ([-1], [-1]))

    def cov(self, *, correction=1, fweights=None, aweights=None):
        """The covariance matrix of the variables (rows; a 1-D tensor is one variable) over the
        observations (columns), with integer frequency weights ``fweights`` and floating observation
        weights ``aweights``, as PyTorch's (and NumPy's) cov."""
        if self.ndim > 2:
            raise RuntimeError(
                f"cov(): expected input to have two or fewer dimensions but got an input with {self.ndim} dimensions"
            )
        if self.dtype == np.bool_:
            raise RuntimeError("cov(): bool dtype is not supported for input")
        x = self.reshape(1, -1) if self.ndim < 2 else self
        observations = x.shape[1]
        w = None
        for name, weights, integral in (("fweights", fweights, True), ("aweights", aweights, False)):
            if weights is None:
                continue
            if not isinstance(weights, _t.Tensor):
                raise TypeError(f"cov(): argument '{name}' must be a Tensor, got {_t._kind_name(weights)}")
            if weights.ndim > 1:
                raise RuntimeError(
                    f"cov(): expected {name} to have one or fewer dimensions but got {name} with "
                    f"{weights.ndim} dimensions"
                )
            if integral and weights.dtype.kind not in "iu":
                raise RuntimeError(
                    f"cov(): expected {name} to have integral dtype but got {name} with {weights.dtype} dtype"
                )
            if not integral and weights.dtype.kind not in "fV":
                raise RuntimeError(
                    f"cov(): expected {name} to have floating point dtype but got {name} with {weights.dtype} dtype"
                )
            if weights.numel() != observations:
                raise RuntimeError(
                    f"cov(): expected {name} to have the same numel as there are observations in the input but "
                    f"got {weights.numel()} != {observations}"
                )
            if observations and bool(np.any(weights._host_array() < 0)):
                raise RuntimeError(f"cov(): {name} cannot be negative")
            w = weights if w is None else w * weights
        if w is None:
            w_sum = observations
            average = x.sum(1) / observations
            norm_factor = observations - correction
        else:
            w_sum = w.sum()
            if not bool(w_sum._host_array() != 0):
                raise RuntimeError("cov(): weights sum to zero, can't be normalized")
            average = (x * w).sum(1) / w_sum
            if correction != 0 and aweights is not None:
                norm_factor = w_sum - correction * (w * aweights).sum() / w_sum
            else:
                norm_factor = w_sum - correction
        if bool(np.asarray(_t._array_of(norm_factor) <= 0)):
            warnings.warn(
                "cov(): degrees of freedom is <= 0. Correction should be strictly less than the number of "
                "observations.",
                UserWarning,
                stacklevel=2,
            )
            norm_factor = norm_factor * 0
        centered = x - average.unsqueeze(1)
        c = centered.mm((centered if w is None else centered * w).t())
        with np.errstate(divide="ignore", invalid="ignore"):
            out = c / norm_factor
        return out.squeeze()

    def corrcoef(self):
        """The Pearson correlation coefficients of the variables (rows), clipped to [-1, 1]."""
        if self.ndim > 2:
            raise RuntimeError(
                f"corrcoef(): expected input to have two or fewer dimensions but got an input with {self.ndim} "
                "dimensions"
            )
        c = self.cov()
        with np.errstate(divide="ignore", invalid="ignore"):
            if c.ndim == 0:
                return c / c
            stddev = c.diagonal().sqrt()
            c = c / stddev.reshape(-1, 1)
            c = c / stddev.reshape(1, -1)
        return c.clamp(-1, 1)

    # -- random fills --------------------------------------------------------------------------------

    def _fill_drawn(self, what: str, draw, generator) -> "_t.Tensor":
        """Overwrites the tensor (of any real dtype) with ``draw(rng)`` cast to its dtype."""
        if self.dtype.kind in "fV":
            return self._fill_random(what, draw, generator)
        values = to_device(np.asarray(draw(generator or get_generator())).astype(self.dtype), self.device)
        return self._inplace(what, _t._Overwrite, values, direct=lambda: self._array.__setitem__(Ellipsis, values))

    def random_(self, *args, generator=None, **kwargs):
        """Fills the tensor with integers drawn uniformly from [from, to - 1]: ``random_(to)``,
        ``random_(from, to)``; without ``to``, up to the largest integer the dtype holds exactly
        (2^24 for float32, 2^53 for float64, the maximum of an integer dtype), inclusive."""
        low, high = 0, None
        if len(args) > 2:
            raise TypeError(f"random_() takes at most 2 positional arguments (from, to), got {len(args)}")
        if len(args) == 2:
            low, high = args
        elif len(args) == 1:
            if "to" in kwargs:
                low = args[0]
            else:
                high = args[0]
        low = kwargs.pop("from", low)
        high = kwargs.pop("to", high)
        _t._no_extra(kwargs, "random_")
        for name, value in (("from", low), ("to", high)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise TypeError(f"random_(): argument '{name}' must be an int, got {_t._kind_name(value)}")
        dtype = self.dtype
        if dtype == np.bool_:
            top = 1
        elif dtype.kind in "iu":
            top = int(np.iinfo(dtype).max)
        else:
            top = 2 ** (8 if is_bfloat16(dtype) else _FLOAT_DIGITS[dtype.itemsize])
        if high is None:
            if not low <= top:
                raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={top}")
            inclusive_high = top
        else:
            if not low < high:
                raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
            inclusive_high = int(high) - 1
        if dtype.kind in "iub":
            bottom = 0 if dtype.kind in "ub" else int(np.iinfo(dtype).min)
            if low < bottom:
                raise RuntimeError(f"random_: from is out of bounds for {_dtype_name(dtype)}")
            if inclusive_high > top:
                raise RuntimeError(f"random_: to - 1 is out of bounds for {_dtype_name(dtype)}")
        shape = self.shape
        return self._fill_drawn(
            "random_",
            lambda rng: rng.integers(int(low), inclusive_high, size=shape, endpoint=True, dtype=np.int64),
            generator,
        )

    def exponential_(self, lambd=1.0, *, generator=None):
        """Fills the tensor with draws of the exponential distribution of rate ``lambd``."""
        if not lambd > 0:
            raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={lambd}")
        shape = self.shape
        return self._fill_random("exponential_", lambda rng: rng.exponential(1.0 / lambd, shape), generator)

    def geometric_(self, p, *, generator=None):
        """Fills the tensor with draws of the geometric distribution: the number of Bernoulli(p) trials
        up to the first success (1, 2, ...); integer tensors too."""
        if not 0 < p < 1:
            raise RuntimeError(f"geometric_ expects p to be in (0, 1), but got p={p}")
        shape = self.shape
        return self._fill_drawn("geometric_", lambda rng: rng.geometric(p, shape), generator)

    def cauchy_(self, median=0.0, sigma=1.0, *, generator=None):
        """Fills the tensor with draws of the Cauchy distribution at ``median`` with scale ``sigma``."""
        if not sigma > 0:
            raise RuntimeError(f"cauchy_ expects sigma > 0.0, but found sigma={sigma}")
        shape = self.shape
        return self._fill_random("cauchy_", lambda rng: median + sigma * rng.standard_cauchy(shape), generator)

    def log_normal_(self, mean=1.0, std=2.0, *, generator=None):
        """Fills the tensor with exp of draws of N(mean, std^2)."""
        if not std > 0:
            raise RuntimeError(f"log_normal_ expects std > 0.0, but found std={std}")
        shape = self.shape
        return self._fill_random("log_normal_", lambda rng: rng.lognormal(mean, std, shape), generator)

    # -- PyTorch's other names, predicates and casts ---------------------------------------------------

    def divide(self, other, *, rounding_mode=None):
        """``self / other``; with ``rounding_mode`` "trunc" or "floor" the quotient rounded toward zero
        or down, in the operands' promoted dtype (integers exactly), with a zero gradient."""
        if rounding_mode is None:
            return self / other
        if rounding_mode == "floor":
            return self // other
        if rounding_mode != "trunc":
            raise RuntimeError(
                f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found {rounding_mode!r}"
            )
        x, y = _t._promoted(self, other)
        if x.dtype.kind in "fV":
            return (x / y).trunc()
        a, b = x._array, _t._array_of(y)
        F._check_integer_divisor(a, b, "divide")
        quotient = a // b
        return _t.Tensor._wrap(as_array(quotient + ((a % b != 0) & ((a < 0) != (b < 0)))))

    def positive(self):
        """The tensor itself (refused for bool tensors, as PyTorch's unary ``+``)."""
        if self.dtype == np.bool_:
            raise RuntimeError("positive: The `+` operator, on a bool tensor is not supported.")
        return self

    def isposinf(self):
        return self._infinite(negative=False)

    def isneginf(self):
        return self._infinite(negative=True)

    def _infinite(self, negative: bool):
        """Where the tensor holds -inf (``negative``) or +inf: nowhere for integer and bool tensors."""
        if self.dtype.kind not in "fV":
            return _t.zeros(self.shape, dtype=_t.bool_, device=self.device)
        return self.isinf() & (self.signbit() if negative else ~self.signbit())

    def isreal(self):
        """True where the imaginary part is 0: everywhere for a real dtype."""
        if self.dtype.kind == "c":
            return _t.Tensor._wrap(as_array(np.imag(self._array) == 0))
        return _t.ones(self.shape, dtype=_t.bool_, device=self.device)

    def is_signed(self) -> bool:
        """Whether the dtype holds negative values (not bool or uint8)."""
        return self.dtype.kind not in "bu"

    def is_nonzero(self) -> bool:
        """The value of a one-element tensor as a bool (PyTorch's errors for no or several elements)."""
        if self.numel() != 1:
            count = "no values" if self.numel() == 0 else "more than one value"
            raise RuntimeError(f"is_nonzero: Boolean value of Tensor with {count} is ambiguous")
        return bool(self.item())

    def is_same_size(self, other) -> bool:
        _tensor_argument("is_same_size", "other", other)
        return self.shape == other.shape

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def is_cpu(self) -> bool:
        return self.device.type == "cpu"

    def get_device(self) -> int:
        """The GPU's index, or -1 on the CPU."""
        return -1 if self.device.type == "cpu" else self.device.index or 0

    def byte(self):
        return self.to(np.uint8)

    def char(self):
        return self.to(np.int8)

    def short(self):
        return self.to(np.int16)

    # -- inverse hyperbolic, angles, logaddexp2, fmax/fmin, float decomposition ---------------------------

    def acosh(self):
        return F.Acosh.apply(self._as_floating())

    def asinh(self):
        return F.Asinh.apply(self._as_floating())

    def atanh(self):
        return F.Atanh.apply(self._as_floating())

    arccosh, arcsinh, arctanh = acosh, asinh, atanh

    def deg2rad(self):
        return self._as_floating() * (math.pi / 180)

    def rad2deg(self):
        return self._as_floating() * (180 / math.pi)

    def _floating_pair(self, what: str, other) -> tuple:
        """This tensor and the Tensor ``other`` promoted together, which must give a floating dtype."""
        _tensor_argument(what, "other", other)
        x, y = _t._promoted(self, other)
        if x.dtype.kind not in "fV":
            raise _not_implemented(what, what, x.dtype)
        return x, y

    def logaddexp2(self, other):
        """log2(2^self + 2^other), without overflow."""
        return F.LogAddExp2.apply(*self._floating_pair("logaddexp2", other))

    def nextafter(self, other):
        """The next representable value after each element towards ``other``'s (the gradient: the
        output's to self, none to other, as PyTorch)."""
        return F.NextAfter.apply(*self._floating_pair("nextafter", other))

    def fmax(self, other):
        """The elementwise maximum in which a number beats NaN (NaN only where both are)."""
        _tensor_argument("fmax", "other", other)
        return F.FMax.apply(*_t._promoted(self, other))

    def fmin(self, other):
        """The elementwise minimum in which a number beats NaN (NaN only where both are)."""
        _tensor_argument("fmin", "other", other)
        return F.FMax.apply(*_t._promoted(self, other), minimum=True)

    def ldexp(self, other):
        """``self * 2^other`` (``2^other`` of an integer ``other`` in the default float dtype, as PyTorch)."""
        _tensor_argument("ldexp", "other", other)
        return self * (2.0**other)

    def frexp(self):
        """``(mantissa, exponent)``: self = mantissa * 2^exponent with |mantissa| in [0.5, 1), exponent int32."""
        if self.dtype.kind not in "fV":
            raise RuntimeError(f"frexp: torch.frexp() only supports floating-point dtypes, got {self.dtype}")
        return FrexpResult(*F.Frexp.apply(self))

    # -- special functions (computed in float64 and rounded once; see tensor_ops) -------------------------

    def lgamma(self):
        """log |Gamma(x)| (inf at 0 and the negative integers); its gradient is digamma."""
        return F.Lgamma.apply(self._as_floating())

    def digamma(self):
        """The logarithmic derivative of Gamma (-inf at +0, NaN at the negative integers)."""
        return F.Digamma.apply(self._as_floating())

    def polygamma(self, n):
        """The ``n``-th derivative of digamma (``n`` >= 0)."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"polygamma(): argument 'n' must be int, got {_t._kind_name(n)}")
        if n < 0:
            raise RuntimeError(f"polygamma(n, x) does not support negative n, got n={n}")
        return F.Polygamma.apply(self._as_floating(), int(n))

    def mvlgamma(self, p):
        """The multivariate log-gamma of dimension ``p``: sum over i < p of lgamma(x - i / 2), plus
        p (p - 1) / 4 log(pi)."""
        if isinstance(p, bool) or not isinstance(p, numbers.Integral):
            raise TypeError(f"mvlgamma(): argument 'p' must be int, got {_t._kind_name(p)}")
        if p < 1:
            raise RuntimeError(f"mvlgamma: p has to be greater than or equal to 1, got p={p}")
        x = self._as_floating()
        offsets = _t.tensor((np.arange(p) - (p - 1)) / 2, dtype=x.dtype, device=x.device)
        return (x.unsqueeze(-1) + offsets).lgamma().sum(-1) + p * (p - 1) / 4 * math.log(math.pi)

    def erfinv(self):
        """The inverse error function on [-1, 1] (+-inf at +-1, NaN beyond)."""
        return F.Erfinv.apply(self._as_floating())

    def i0(self):
        """The modified Bessel function of the first kind of order 0; its gradient is I1."""
        return F.I0.apply(self._as_floating())

    # -- integer ops ---------------------------------------------------------------------------------

    def _integer_op(self, what: str, kernel: str, other, ufunc, bool_ok: bool = True):
        """``ufunc`` of this tensor and ``other`` (a Tensor or a number) in their promoted dtype, which
        must be an integer one (or bool, with ``bool_ok``); NumPy's shifts are PyTorch's (a shift by a
        negative count or past the width gives 0, or -1 for a negative value shifted right)."""
        x, y = _t._promoted(self, other)
        if x.dtype.kind not in ("biu" if bool_ok else "iu"):
            raise _not_implemented(what, kernel, x.dtype)
        b = y._array if isinstance(y, _t.Tensor) else np.asarray(y).astype(x.dtype)[()]  # wrapped as PyTorch's
        return _t.Tensor._wrap(as_array(ufunc(x._array, b)))

    def bitwise_and(self, other):
        return self._integer_op("bitwise_and", "bitwise_and", other, np.bitwise_and)

    def bitwise_or(self, other):
        return self._integer_op("bitwise_or", "bitwise_or", other, np.bitwise_or)

    def bitwise_xor(self, other):
        return self._integer_op("bitwise_xor", "bitwise_xor", other, np.bitwise_xor)

    def bitwise_left_shift(self, other):
        return self._integer_op("bitwise_left_shift", "lshift", other, np.left_shift, bool_ok=False)

    def bitwise_right_shift(self, other):
        return self._integer_op("bitwise_right_shift", "rshift", other, np.right_shift, bool_ok=False)

    def gcd(self, other):
        """The greatest common divisor (non-negative; gcd(0, 0) = 0)."""
        _tensor_argument("gcd", "other", other)
        return self._integer_op("gcd", "gcd", other, np.gcd, bool_ok=False)

    def lcm(self, other):
        """The least common multiple (non-negative; 0 where either is 0)."""
        _tensor_argument("lcm", "other", other)
        return self._integer_op("lcm", "lcm", other, np.lcm, bool_ok=False)

    # -- sampling ------------------------------------------------------------------------------------

    def multinomial(self, num_samples, replacement=False, *, generator=None):
        """``num_samples`` category indices (int64) drawn for this 1-D tensor, or each row of this 2-D
        one, of non-negative weights (their sum need not be 1): independently with ``replacement``, else
        all distinct (by the exponential race: the largest weight / Exp(1) first, so weight-0 categories
        come only once the others are used up, as PyTorch's). From ``generator`` or deepkern's."""
        what = "multinomial"
        if self.dtype.kind not in "fV":
            raise RuntimeError(f"{what} only supports floating-point dtypes for input, got: {self.dtype}")
        if self.ndim not in (1, 2):
            raise RuntimeError(f"{what}: prob_dist must be 1 or 2 dim, got shape {self.shape}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral):
            raise TypeError(f"{what}(): argument 'num_samples' must be int, got {_t._kind_name(num_samples)}")
        if num_samples <= 0:
            raise RuntimeError(f"{what}: cannot sample n_sample <= 0 samples, got num_samples={num_samples}")
        categories = self.shape[-1]
        if not replacement and num_samples > categories:
            raise RuntimeError(
                f"{what}: cannot sample n_sample > prob_dist.size(-1) samples without replacement, got "
                f"num_samples={num_samples} and {categories} categories"
            )
        weights = np.asarray(self._host_array(), dtype=np.float64).reshape(-1, categories)
        if not np.all(np.isfinite(weights) & (weights >= 0)):
            raise RuntimeError(f"{what}: probability tensor contains either `inf`, `nan` or element < 0")
        if np.any(weights.sum(1) <= 0):
            raise RuntimeError(f"{what}: invalid multinomial distribution (sum of probabilities <= 0)")
        rng = generator or get_generator()
        if replacement:
            cdf = np.cumsum(weights, 1)
            draws = rng.random((len(weights), num_samples)) * cdf[:, -1:]
            last = categories - 1 - np.argmax(weights[:, ::-1] > 0, 1)  # a draw rounded up to the total: the last
            picks = np.empty(draws.shape, dtype=np.int64)
            for row, (c, d) in enumerate(zip(cdf, draws)):
                picks[row] = np.minimum(np.searchsorted(c, d, side="right"), last[row])
        else:
            keys = weights / rng.exponential(size=weights.shape)
            picks = np.argsort(-keys, axis=1, kind="stable")[:, :num_samples]
        picks = picks.astype(np.int64, copy=False).reshape(self.shape[:-1] + (num_samples,))
        return _t.Tensor._wrap(to_device(picks, self.device))

    # -- in place, second batch ------------------------------------------------------------------------

    acos_, asin_, atan_, atan2_, cosh_, sinh_ = map(_in_place, ["acos", "asin", "atan", "atan2", "cosh", "sinh"])
    arccos_, arcsin_, arctan_, arctan2_ = acos_, asin_, atan_, atan2_
    tan_, erf_, erfc_, exp2_, expm1_ = map(_in_place, ["tan", "erf", "erfc", "exp2", "expm1"])
    log10_, log1p_, log2_, sinc_, sign_ = map(_in_place, ["log10", "log1p", "log2", "sinc", "sign"])
    fix_, frac_, heaviside_, hypot_, xlogy_ = map(_in_place, ["fix", "frac", "heaviside", "hypot", "xlogy"])
    remainder_, fmod_, floor_divide_ = map(_in_place, ["remainder", "fmod", "floor_divide"])
    ldexp_, nextafter_ = map(_in_place, ["ldexp", "nextafter"])
    logit_, copysign_, divide_ = (_in_place(name, of_copy=True) for name in ["logit", "copysign", "divide"])
    acosh_, asinh_, atanh_, deg2rad_, rad2deg_ = map(_in_place, ["acosh", "asinh", "atanh", "deg2rad", "rad2deg"])
    arccosh_, arcsinh_, arctanh_, sgn_, negative_, absolute_ = acosh_, asinh_, atanh_, sign_, neg_, abs_
    lgamma_, digamma_, polygamma_ = map(_in_place, ["lgamma", "digamma", "polygamma"])
    mvlgamma_, erfinv_, i0_ = map(_in_place, ["mvlgamma", "erfinv", "i0"])
    logical_and_, logical_or_, logical_xor_, logical_not_ = map(
        _in_place, ["logical_and", "logical_or", "logical_xor", "logical_not"]
    )
    bitwise_and_, bitwise_or_, bitwise_xor_, bitwise_not_ = map(
        _in_place, ["bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not"]
    )
    bitwise_left_shift_, bitwise_right_shift_, gcd_, lcm_ = map(
        _in_place, ["bitwise_left_shift", "bitwise_right_shift", "gcd", "lcm"]
    )
    eq_, ne_, lt_, le_, gt_, ge_ = map(_compared_in_place, ["eq", "ne", "lt", "le", "gt", "ge"])
    greater_, greater_equal_, less_, less_equal_, not_equal_ = gt_, ge_, lt_, le_, ne_

    def float_power_(self, exponent):
        """In-place ``float_power``: only a float64 tensor holds its float64 result (as PyTorch)."""
        if self.dtype != np.float64:
            raise RuntimeError(
                f"float_power_: the base given to float_power_ has dtype {_dtype_name(self.dtype)} but the "
                "operation's result requires dtype float64"
            )
        return self._inplace("float_power_", _ByMethod("float_power"), exponent)

    def cumsum_(self, dim, dtype=None):
        return self._running_in_place("cumsum", dim, dtype)

    def cumprod_(self, dim, dtype=None):
        return self._running_in_place("cumprod", dim, dtype)

    def _running_in_place(self, name: str, dim, dtype):
        if dtype is not None and np.dtype(dtype) != self.dtype:
            raise RuntimeError(
                f"{name}_: Bad in-place call: input tensor dtype {_dtype_name(self.dtype)} and output tensor "
                f"dtype {_dtype_name(dtype)} should match"
            )
        return self._inplace(name + "_", _ByMethod(name, dtype=self.dtype), dim)  # wrapped in it, as PyTorch

    # -- memory: storage, strided views, in-place shape changes ----------------------------------------

    def _storage(self, what: str) -> np.ndarray:
        """The memory this tensor views (PyTorch's storage: the whole array it is a view of), as a 1-D array in
        memory order; NotImplementedError naming ``what`` for memory deepkern cannot address that way (not host
        memory, or a view of another dtype or of a non-contiguous array)."""
        arr = self._array
        root = autograd.buffer_of(arr)
        if (
            type(arr) is not np.ndarray
            or root.dtype != arr.dtype
            or not (root.flags.c_contiguous or root.flags.f_contiguous)
        ):
            raise NotImplementedError(
                f"{what}: needs a tensor in host memory that views one contiguous array of its dtype (this one is "
                f"on {self.device})"
            )
        return np.ndarray((root.size,), root.dtype, buffer=root)

    def storage_offset(self) -> int:
        """Where the first element lies in the tensor's storage, in elements (host memory only)."""
        return F.memory_geometry(self._array, self._storage("storage_offset"))[2]

    def data_ptr(self) -> int:
        """The address of the first element."""
        arr = self._array
        return int(arr.__array_interface__["data"][0]) if isinstance(arr, np.ndarray) else int(arr.data_ptr)

    def is_set_to(self, tensor) -> bool:
        """Whether ``tensor`` views the same memory from the same element with the same shape and strides."""
        _tensor_argument("is_set_to", "tensor", tensor)
        return (
            autograd.buffer_of(self._array) is autograd.buffer_of(tensor._array)
            and self.data_ptr() == tensor.data_ptr()
            and self.shape == tensor.shape
            and self.stride() == tensor.stride()
        )

    def is_shared(self) -> bool:
        """False: deepkern's tensors live in the memory of their process (see share_memory_)."""
        return False

    def share_memory_(self):
        """The tensor itself: deepkern does not move tensors to shared memory (its multiprocessing pickles the data)."""
        return self

    def is_inference(self) -> bool:
        """False: deepkern's inference_mode only stops recording, it makes no inference tensors."""
        return False

    def dim_order(self, *, ambiguity_check=False) -> tuple:
        """The dimensions from the outermost in memory to the innermost (``x.permute(order)`` is laid out row-major),
        PyTorch's choice where size-1 dimensions or equal strides allow several; with ``ambiguity_check=True``,
        RuntimeError there instead. (deepkern has no memory formats: the check takes only a bool.)"""
        if not isinstance(ambiguity_check, bool):
            raise TypeError("dim_order: the ambiguity_check argument must be a bool (deepkern has no memory formats)")
        sizes, strides = self.shape, self.stride()
        if ambiguity_check and (1 in sizes or any(a == b for a, b in zip(strides, strides[1:]))):
            raise RuntimeError(
                "The tensor does not have unique dim order, or cannot map to exact one of the given memory formats."
            )
        order, ambiguous = _dim_order(sizes, strides)
        if ambiguity_check and ambiguous:
            raise RuntimeError("The tensor does not have unique dim order.")
        return order

    def as_strided(self, size, stride, storage_offset=None):
        """The view of this tensor's storage (the memory it views, see storage_offset) with ``size``, ``stride``
        and ``storage_offset`` (in elements; by default the tensor's own), host memory only. Its elements are
        read-only where they overlap (PyTorch writes them in an unspecified order); the gradient of each goes
        to the tensor's element at its address (none to the storage outside the tensor)."""
        return self._strided_view("as_strided", size, stride, storage_offset)

    def _strided_view(self, what: str, size, stride, storage_offset):
        """as_strided, its checks and errors naming ``what``."""
        storage = self._storage(what)
        offset = F.memory_geometry(self._array, storage)[2] if storage_offset is None else int(storage_offset)
        size, stride = _checked_geometry(what, size, stride, offset, storage.size, self.dtype.itemsize)
        view = F.AsStrided.apply(self, storage=storage, size=size, stride=stride, offset=offset)
        return self._remember_base(view, _t._WholeView("strided", (size, stride, offset)))

    def _strided_elements(self, size, stride, offset) -> tuple:
        """The key (integer arrays, in the view's shape) of this tensor's elements at the addresses of the strided
        view ``(size, stride, offset)`` of its storage: how a write through such a view reaches the tensor."""
        own = F.strided_positions(*F.memory_geometry(self._array, self._storage("as_strided"))).reshape(-1)
        if F.overlapping(size, stride, offset):
            raise RuntimeError(_OVERLAP)
        wanted = F.strided_positions(size, stride, offset)
        order = np.argsort(own, kind="stable")
        found = np.minimum(np.searchsorted(own[order], wanted), max(own.size - 1, 0))
        if wanted.size and (own.size == 0 or not np.array_equal(own[order][found], wanted)):
            raise RuntimeError(
                f"a write through a strided view (sizes {list(size)}, strides {list(stride)}, storage offset {offset}) "
                f"that reaches memory outside the tensor of shape {self.shape} it was taken from is not supported "
                "while recording; write that tensor's base instead"
            )
        return np.unravel_index(order[found], self.shape) if self.ndim else ()

    def unfold(self, dimension, size, step):
        """Every slice of ``size`` elements along ``dimension`` that starts at a multiple of ``step``, along a new
        last dimension: a view (as_strided's, so host memory only; read-only where the slices overlap, step <
        size). The gradient of an element is the sum over the slices holding it."""
        axis = self._dim(dimension, "unfold")
        length = self.shape[axis] if self.ndim else 1
        if size < 0:
            raise RuntimeError(f"unfold: size is {size} but must be >= 0")
        if size > length:
            raise RuntimeError(f"unfold: maximum size for tensor at dimension {axis} is {length} but size is {size}")
        if step <= 0:
            raise RuntimeError(f"unfold: step is {step} but must be > 0")
        if self.ndim == 0:
            return self._strided_view("unfold", (size,), (1,), None)
        strides = self.stride()
        shape = self.shape[:axis] + ((length - size) // step + 1,) + self.shape[axis + 1 :] + (size,)
        stride = strides[:axis] + (strides[axis] * step,) + strides[axis + 1 :] + (strides[axis],)
        return self._strided_view("unfold", shape, stride, None)

    def _change_view_in_place(self, what: str, method: str, *args):
        """This tensor made its own view ``method(*args)`` (transposed, squeezed, ...) in place, as PyTorch's ``what``:
        refused on a leaf that requires grad, or on a view of one, while recording; counted as an in-place write
        (a value saved for a backward then raises there, as in PyTorch); the history continues through the view,
        and a view stays a view of its base (as its as_strided view; host memory only)."""
        self._recording_inplace(what, ())
        node = self._node
        base = node.view[0] if node is not None and node.view is not None else None
        if base is not None and base.is_leaf and autograd.is_grad_enabled():
            raise _t._leaf_in_place(what, "a view of a leaf tensor")
        if base is None and self._view_base is None:
            changed = getattr(self, method)(*args)
            self._array = changed._array
            autograd.bump_version(self._array)
            if changed._node is not None:
                changed._node.view = None  # the tensor's own memory, not a view of another tensor
                self._take_history(changed)
            return self
        with autograd.no_grad():
            changed = getattr(self, method)(*args)
        geometry = F.memory_geometry(changed._array, self._storage(what))
        self._array = changed._array
        autograd.bump_version(self._array)
        if base is not None:
            with autograd.enable_grad():
                self._take_history(base.as_strided(*geometry))
        else:
            base, _, base_array = self._view_base
            self._view_base = (base, _t._WholeView("strided", geometry), base_array)
        return self

    def squeeze_(self, dim=None):
        return self._change_view_in_place("squeeze_", "squeeze", dim)

    def unsqueeze_(self, dim):
        return self._change_view_in_place("unsqueeze_", "unsqueeze", dim)

    def transpose_(self, dim0, dim1):
        return self._change_view_in_place("transpose_", "transpose", dim0, dim1)

    swapaxes_ = swapdims_ = transpose_

    def t_(self):
        if self.ndim > 2:
            raise RuntimeError(f"t_(): expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self._change_view_in_place("t_", "t")

    def as_strided_(self, size, stride, storage_offset=None):
        return self._change_view_in_place("as_strided_", "as_strided", size, stride, storage_offset)

    def resize_(self, *sizes):
        """This tensor given the shape ``sizes`` in place, as PyTorch's: the elements of its storage from its first
        one, in memory order (the same shape: unchanged). Growing past the storage moves the tensor to new memory
        holding the old storage, then zeros (PyTorch leaves them uninitialized and grows the storage itself, so
        tensors sharing it see the move; here they keep the old memory). Refused for a tensor that requires grad,
        and growing memory shared with NumPy, as PyTorch refuses."""
        if self.requires_grad:
            raise RuntimeError("resize_: cannot resize variables that require grad")
        shape = _t._dims_args(sizes)
        for n in shape:
            if isinstance(n, bool) or not isinstance(n, numbers.Integral):
                raise TypeError(f"resize_(): argument 'size' must be tuple of ints, but found {type(n).__name__}")
            if n < 0:
                raise RuntimeError(f"resize_: Trying to create tensor with negative dimension {n}: {list(shape)}")
        shape = tuple(int(n) for n in shape)
        if shape == self.shape:
            return self
        storage = self._storage("resize_")
        offset, count = F.memory_geometry(self._array, storage)[2], math.prod(shape)
        if offset + count > storage.size:
            if autograd.is_exposed(storage):
                raise RuntimeError("resize_: Trying to resize storage that is not resizable (NumPy shares its memory)")
            grown = np.zeros(offset + count, self.dtype)
            grown[: storage.size] = storage
            storage = grown
        self._array = storage[offset : offset + count].reshape(shape)
        autograd.bump_version(self._array)
        if self._view_base is not None:
            base, _, base_array = self._view_base
            shared = count and autograd.buffer_of(self._array) is autograd.buffer_of(base._array)
            geometry = F.memory_geometry(self._array, storage)
            self._view_base = (base, _t._WholeView("strided", geometry), base_array) if shared else None
        return self

    def resize_as_(self, the_template):
        _tensor_argument("resize_as_", "the_template", the_template)
        return self.resize_(the_template.shape)

    def new_empty_strided(self, size, stride, *, dtype=None, device=None, requires_grad=False):
        """``deepkern.empty_strided`` with this tensor's dtype and device by default."""
        from .tensor_functions import empty_strided

        return empty_strided(
            size, stride, dtype=dtype or self.dtype, device=self._or_own_device(device), requires_grad=requires_grad
        )

    def new(self, *args, device=None):
        """PyTorch's legacy constructor: with sizes (ints, or one tuple: deepkern's shapes are tuples), an
        uninitialized tensor of them; with data (a list or an array), a tensor of it; with nothing, an empty one;
        in this tensor's dtype, on its device (or ``device``). A tensor of that dtype and device gives a view of
        it (an alias, as PyTorch's)."""
        device = self._or_own_device(device)
        if not args:
            return _t.empty(0, dtype=self.dtype, device=device)
        if len(args) == 1 and not isinstance(args[0], (tuple, numbers.Integral)):
            data = args[0]
            if isinstance(data, _t.Tensor):
                if data.dtype != self.dtype or data.device != device:
                    raise TypeError(
                        f"new(): expected a tensor of dtype {self.dtype} on {device}, got {data.dtype} on {data.device}"
                    )
                return data.view(data.shape)
            if isinstance(data, (numbers.Number, str)):
                raise TypeError(f"new(): data must be a sequence (got {type(data).__name__})")
            return _t.tensor(data, dtype=self.dtype, device=device)
        return _t.empty(*args, dtype=self.dtype, device=device)

    def nonzero_static(self, *, size, fill_value=-1):
        """The first ``size`` rows of ``nonzero()`` (int64), padded with rows of ``fill_value`` to ``size`` rows."""
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise TypeError(f"nonzero_static(): argument 'size' must be int, not {type(size).__name__}")
        if size < 0:
            raise RuntimeError(f"nonzero_static: 'size' must be an non-negative integer, got {size}")
        found = np.argwhere(_host(self))[:size]
        out = np.full((size, self.ndim), fill_value, dtype=np.int64)
        out[: len(found)] = found
        return _t.Tensor._wrap(to_device(out, self.device))

    # -- splits ---------------------------------------------------------------------------------------

    def split_with_sizes(self, split_sizes, dim=0):
        """Views along ``dim`` of the given sizes, which must be non-negative and add up to the dimension's size."""
        if not isinstance(split_sizes, (list, tuple)) or not all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in split_sizes
        ):
            raise TypeError(
                f"split_with_sizes(): argument 'split_sizes' must be tuple of ints, not {_t._kind_name(split_sizes)}"
            )
        axis = self._dim(dim, "split_with_sizes")
        sizes, size = [int(n) for n in split_sizes], self.shape[axis]
        if any(n < 0 for n in sizes):
            raise RuntimeError(
                f"split_with_sizes expects split_sizes have only non-negative entries, but got split_sizes={sizes}"
            )
        if sum(sizes) != size:
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's size at dimension "
                f"{axis}), but got split_sizes={sizes}"
            )
        return self.split(sizes, axis)

    def _split_along(self, what: str, least: int, axis: int, indices_or_sections):
        """hsplit/vsplit/dsplit: tensor_split along ``axis`` into equal parts (an int, which must divide the
        size) or at the given indices, for a tensor of at least ``least`` dimensions."""
        if self.ndim < least:
            raise RuntimeError(
                f"{what} requires a tensor with at least {least} dimension, but got a tensor with {self.ndim} "
                "dimensions!"
            )
        split = indices_or_sections
        if isinstance(split, numbers.Integral) and not isinstance(split, bool):
            size = self.shape[axis]
            if split == 0 or size % split:
                raise RuntimeError(
                    f"{what} attempted to split along dimension {axis}, but the size of the dimension {size} "
                    f"is not divisible by the split_size {split}!"
                )
        elif isinstance(split, _t.Tensor) or not isinstance(split, (list, tuple)):
            raise TypeError(
                f"{what}(): argument 'indices_or_sections' must be int or tuple of ints, not {_t._kind_name(split)}"
            )
        return self.tensor_split(split, axis)

    def hsplit(self, indices_or_sections):
        return self._split_along("hsplit", 1, 0 if self.ndim == 1 else 1, indices_or_sections)

    def vsplit(self, indices_or_sections):
        return self._split_along("vsplit", 2, 0, indices_or_sections)

    def dsplit(self, indices_or_sections):
        return self._split_along("dsplit", 3, 2, indices_or_sections)

    def narrow_copy(self, dim, start, length):
        """A copy of ``narrow(dim, start, length)`` (``start`` may count from the end)."""
        if self.ndim == 0:
            raise RuntimeError("narrow_copy(): narrow() cannot be applied to a 0-dim tensor.")
        axis = self._dim(dim, "narrow_copy")
        size, start, length = self.shape[axis], int(start), int(length)
        if not -size <= start <= size:
            raise IndexError(
                f"narrow_copy(): start out of range (expected to be in range of [{-size}, {size}], but got {start})"
            )
        start = start + size if start < 0 else start
        if length < 0 or start + length > size:
            raise RuntimeError(f"narrow_copy(): start ({start}) + length ({length}) exceeds dimension size ({size}).")
        return self.narrow(axis, start, length).clone()

    def unique_consecutive(self, return_inverse=False, return_counts=False, dim=None):
        """Each run of equal consecutive elements (slices along ``dim`` when given) kept once, optionally with the
        run of each element (``inverse``) and the runs' lengths (``counts``), outside the graph, as PyTorch's
        (NaN, unequal to itself, is a run of its own)."""
        a = _host(self)
        if dim is None:
            rows = a.reshape(-1, 1)
        else:
            if self.ndim == 0:
                raise IndexError(f"unique_consecutive: Dimension specified as {dim} but tensor has no dimensions")
            axis = self._dim(dim, "unique_consecutive")
            if a.size == 0 and a.shape[axis] != 0:
                raise RuntimeError(
                    "unique_consecutive: There are 0 sized dimensions, and they aren't selected, so unique cannot "
                    "be applied"
                )
            rows = np.moveaxis(a, axis, 0).reshape(a.shape[axis], a.size // max(a.shape[axis], 1))
        starts = np.ones(len(rows), dtype=bool)
        starts[1:] = np.any(rows[1:] != rows[:-1], axis=1)
        first = np.flatnonzero(starts)
        values = a.reshape(-1)[first] if dim is None else np.take(a, first, axis)
        inverse = (np.cumsum(starts) - 1).reshape(self.shape if dim is None else -1)
        out = [values]
        if return_inverse:
            out.append(inverse.astype(np.int64, copy=False))
        if return_counts:
            out.append(np.diff(np.append(first, len(rows))).astype(np.int64, copy=False))
        out = [_t.Tensor._wrap(to_device(o, self.device)) for o in out]
        return out[0] if len(out) == 1 else tuple(out)

    # -- scatters into views, index_reduce ------------------------------------------------------------

    def _scattered(self, what: str, src, key):
        """A copy with ``src`` (cast to this tensor's dtype; of exactly the slice's shape) written at ``key``; the
        gradient of the slice goes to ``src``."""
        _tensor_argument(what, "src", src)
        part = np.broadcast_to(np.empty((), dtype=bool), self.shape)[key].shape
        if src.shape != part:
            raise RuntimeError(
                f"{what}: expected src to have a size equal to the slice of self. src size = {list(src.shape)}, "
                f"slice size = {list(part)}"
            )
        return _t._SetItem.apply(self, src.to(self.dtype), key)

    def select_scatter(self, src, dim, index):
        """A copy with ``src`` as the slice ``select(dim, index)``."""
        if self.ndim == 0:
            raise IndexError("select_scatter: select() cannot be applied to a 0-dim tensor.")
        axis = self._dim(dim, "select_scatter")
        size = self.shape[axis]
        if not -size <= index < size:
            raise IndexError(
                f"select_scatter: select(): index {index} out of range for tensor of size {list(self.shape)} at "
                f"dimension {axis}"
            )
        return self._scattered("select_scatter", src, (slice(None),) * axis + (int(index) % size,))

    def slice_scatter(self, src, dim=0, start=None, end=None, step=1):
        """A copy with ``src`` as the slice ``start:end:step`` along ``dim``."""
        if self.ndim == 0:
            raise IndexError("slice_scatter: slice() cannot be applied to a 0-dim tensor.")
        axis = self._dim(dim, "slice_scatter")
        if step <= 0:
            raise RuntimeError(f"slice_scatter: slice step must be positive, got {step}")
        return self._scattered("slice_scatter", src, (slice(None),) * axis + (slice(start, end, step),))

    def diagonal_scatter(self, src, offset=0, dim1=0, dim2=1):
        """A copy with ``src`` as ``diagonal(offset, dim1, dim2)``."""
        _tensor_argument("diagonal_scatter", "src", src)
        d1, d2 = self._dim(dim1, "diagonal_scatter"), self._dim(dim2, "diagonal_scatter")
        if d1 == d2:
            raise RuntimeError(f"diagonal_scatter: diagonal dimensions cannot be identical {dim1}, {dim2}")
        part = self.detach().diagonal(offset, d1, d2).shape
        if src.shape != part:
            raise RuntimeError(
                "diagonal_scatter: expected src to have a size equal to the slice of self. src size = "
                f"{list(src.shape)}, slice size = {list(part)}"
            )
        return F.DiagonalScatter.apply(self, src.to(self.dtype), offset=int(offset), dim1=d1, dim2=d2)

    def index_reduce(self, dim, index, source, reduce, *, include_self=True):
        """A copy with ``source``'s slices reduced into the slices ``index`` along ``dim`` by ``reduce`` (prod, mean,
        amax or amin; integer means round down); with ``include_self=False`` the slices written take only
        ``source``'s values. Differentiable as PyTorch's (scatter_reduce's rules)."""
        what = "index_reduce"
        if reduce not in _INDEX_REDUCTIONS:
            raise RuntimeError(f"{what}(): Expected reduce to be one of prod, mean, amax or amin but got {reduce}.")
        _tensor_argument(what, "source", source)
        _tensor_argument(what, "index", index)
        if self.dtype == np.bool_:
            raise NotImplementedError(f"{what}: \"index_func_\" not implemented for 'Bool'")
        axis = self._dim(dim, what)
        if index.dtype not in (np.int32, np.int64):
            raise RuntimeError(f"{what}_(): Expected dtype int32/int64 for index but got: {index.dtype}")
        if index.ndim > 1:
            raise IndexError(
                f"{what}_(): Index is supposed to be a vector, but got dim: {index.ndim} with type: {index.dtype} "
                f"and size: {list(index.shape)}"
            )
        if source.dtype != self.dtype:
            raise RuntimeError(
                f"{what}_(): self ({self.dtype}) and source ({source.dtype}) must have the same scalar type"
            )
        if source.ndim != self.ndim or any(
            n != m for i, (n, m) in enumerate(zip(self.shape, source.shape)) if i != axis
        ):
            raise RuntimeError(
                f"{what}: source tensor shape must match self tensor shape, excluding the specified dimension. Got "
                f"self.shape = {list(self.shape)} source.shape = {list(source.shape)}"
            )
        count = source.shape[axis] if source.ndim else 1
        if index.numel() != count:
            raise RuntimeError(
                f"{what}_(): Number of indices ({index.numel()}) should be equal to source.size(dim): ({count}), "
                f"for dim: {dim}"
            )
        positions = _host(index).reshape(-1)
        if positions.size and not bool(np.all((positions >= 0) & (positions < (self.shape[axis] if self.ndim else 1)))):
            raise IndexError(f"{what}: index out of range in self (dimension {axis}, indices {positions.tolist()})")
        if self.ndim == 0:
            flat = self.reshape(1).index_reduce(
                0, index.reshape(1), source.reshape(1), reduce, include_self=include_self
            )
            return flat.reshape(())
        spread = index.to(_t.int64).reshape([-1 if i == axis else 1 for i in range(self.ndim)]).expand(*source.shape)
        return self.scatter_reduce(axis, spread, source, reduce, include_self=include_self)

    def index_reduce_(self, dim, index, source, reduce, *, include_self=True):
        return self._inplace(
            "index_reduce_", _ByMethodOfCopy("index_reduce", include_self=include_self), dim, index, source, reduce
        )

    # -- histograms -----------------------------------------------------------------------------------

    def histogram(self, bins=100, *, range=None, weight=None, density=False):
        """``(hist, bin_edges)`` of all elements: ``bins`` equal bins over ``range`` (by default the elements' min
        and max, widened by 0.5 either side when equal) or the bins between the edges of a 1-D tensor ``bins``;
        the counts, or the sums of ``weight`` (this tensor's shape), divided by the total and the bin widths with
        ``density``. Outside the graph, in this tensor's dtype (float32 or float64), as PyTorch's."""
        if isinstance(bins, _t.Tensor):
            if range is not None:
                raise TypeError("histogram(): range is taken only with an int bins, not with a Tensor of bin edges")
        elif isinstance(bins, bool) or not isinstance(bins, numbers.Integral):
            raise TypeError(f"histogram(): argument 'bins' must be int or Tensor, not {_t._kind_name(bins)}")
        if isinstance(weight, _t.Tensor) and weight.numel() == self.numel():
            weight = weight.reshape(-1)
        hist, edges = self.reshape(-1, 1)._histogramdd("histogram", [bins], range, weight, density)
        return HistogramResult(hist, edges[0])

    def _histogramdd(self, what: str, bins: list, range_, weight, density: bool) -> tuple:
        """``(hist, edges)`` of the rows of this (N, D) tensor: PyTorch's histogramdd with ``bins`` (one int or 1-D
        edges tensor per column), its placing of values on edges and its errors."""
        dtype, dims = self.dtype, self.shape[-1]
        if dtype not in (np.float32, np.float64):
            raise NotImplementedError(f"{what}: \"histogramdd\" not implemented for '{_dtype_name(dtype)}'")
        if range_ is not None and len(range_) != 2 * dims:
            raise RuntimeError(
                f"histogramdd: for a {dims}-dimensional histogram range should have {2 * dims} elements, but got "
                f"{len(range_)}"
            )
        weights = None
        if weight is not None:
            _tensor_argument(what, "weight", weight)
            if weight.shape != self.shape[:-1]:
                raise RuntimeError(
                    "histogramdd: if weight tensor is provided it should have the same shape as the input tensor "
                    f"excluding its innermost dimension, but got input with shape {list(self.shape)} and weight with "
                    f"shape {list(weight.shape)}"
                )
            if weight.dtype != dtype:
                raise RuntimeError(
                    "histogramdd: if weight tensor is provided, input tensor and weight tensor should have the "
                    f"same dtype, but got input({dtype}), and weight({weight.dtype})"
                )
            weights = _host(weight).reshape(-1)
        samples = _host(self).reshape(-1, dims)
        edges, kept, flat = [], np.ones(len(samples), dtype=bool), np.zeros(len(samples), dtype=np.int64)
        for d, b in enumerate(bins):
            column = samples[:, d]
            e = _bin_edges(what, d, b, column, range_, dtype)
            inside, position = _bin_positions(column, e, linear=not isinstance(b, _t.Tensor))
            kept &= inside
            flat = flat * (e.size - 1) + position
            edges.append(e)
        shape = tuple(e.size - 1 for e in edges)
        counts = np.bincount(flat[kept], weights=None if weights is None else weights[kept], minlength=math.prod(shape))
        hist = counts.reshape(shape).astype(dtype)
        if density:
            with np.errstate(invalid="ignore", divide="ignore"):
                hist = hist / dtype.type(hist.sum())
                for d, e in enumerate(edges):
                    hist = hist / np.diff(e).reshape([-1 if i == d else 1 for i in range(dims)])
        device = self.device
        return (
            _t.Tensor._wrap(to_device(hist.astype(dtype, copy=False), device)),
            [_t.Tensor._wrap(to_device(e, device)) for e in edges],
        )

    # -- diagonal fill, Python callables --------------------------------------------------------------

    def fill_diagonal_(self, fill_value, wrap=False):
        """Sets the main diagonal (all indices equal) to ``fill_value`` in place; with ``wrap``, a matrix taller than
        wide restarts its diagonal after every ``columns + 1`` rows, as NumPy's fill_diagonal (and PyTorch's for
        row-major tensors). The filled elements get no gradient."""
        if isinstance(fill_value, _t.Tensor) and fill_value.ndim == 0 and not fill_value.requires_grad:
            fill_value = fill_value.item()
        if isinstance(fill_value, bool) or not isinstance(fill_value, numbers.Number):
            raise TypeError(f"fill_diagonal_(): argument 'fill_value' must be Number, not {_t._kind_name(fill_value)}")
        if self.ndim < 2:
            raise RuntimeError(f"fill_diagonal_: dimensions must larger than 1, got shape {self.shape}")
        if self.ndim > 2 and len(set(self.shape)) != 1:
            raise RuntimeError(
                f"fill_diagonal_: all dimensions of input must be of equal length, got shape {self.shape}"
            )
        mask = np.zeros(self.shape, dtype=bool)
        if wrap and self.ndim == 2:
            rows, columns = self.shape
            mask.reshape(-1)[: rows * columns : columns + 1] = True
        else:
            mask[(np.arange(min(self.shape)),) * self.ndim] = True
        mask = _t.Tensor._wrap(to_device(mask, self.device))
        return self._inplace("fill_diagonal_", _ByMethod("masked_fill"), mask, fill_value)

    def _map_python(self, what: str, function, others: tuple):
        """Each element set to ``function`` of it (and of ``others``' elements there) as Python numbers, the result
        converted to this tensor's dtype, in place (counted as an in-place write); host memory only, not while a
        tensor requires grad, as PyTorch's apply_ and map_."""
        if self.requires_grad or any(o.requires_grad for o in others):
            raise RuntimeError(
                f"Can't call {what}() on Variable that requires grad. Use var.detach().{what}() instead."
            )
        if not isinstance(self._array, np.ndarray):
            raise RuntimeError(f"{what}: only implemented on CPU tensors, this one is on {self.device}")
        if not callable(function):
            raise TypeError(f"{what}(): '{type(function).__name__}' object is not callable")
        columns = [t.reshape(-1).tolist() for t in (self, *others)]
        results = [function(*values) for values in zip(*columns)]
        for r in results:
            if isinstance(r, str) or not isinstance(r, (numbers.Real, np.bool_)):
                raise TypeError(f"{what}(): must be real number, not {type(r).__name__}")
        values = np.array([self.dtype.type(r) for r in results], dtype=self.dtype).reshape(self.shape)
        self._write(what, lambda: self._array.__setitem__(Ellipsis, values))
        return self

    def apply_(self, callable):
        """``callable`` of each element (a Python number) written in its place (see _map_python)."""
        return self._map_python("apply_", callable, ())

    def map_(self, tensor, callable):
        """``callable(self_element, tensor_element)`` written into each element, ``tensor`` (of this tensor's dtype)
        broadcast to this tensor's shape (see _map_python)."""
        if not isinstance(tensor, _t.Tensor):
            raise TypeError(f"map_(): argument 'other' (position 1) must be Tensor, not {type(tensor).__name__}")
        if tensor.dtype != self.dtype:
            raise TypeError(f"map_: expected {self.type()} for 'other' (got {tensor.type()})")
        if _t._broadcast_shape(tensor.shape, self.shape, "map_", "other") != self.shape:
            raise RuntimeError(
                f"map_: other of shape {tensor.shape} does not broadcast to the tensor's shape {self.shape}"
            )
        return self._map_python("map_", callable, (tensor.expand(self.shape),))

    # -- conjugates and transposes (real tensors: identities) -------------------------------------------

    def conj(self):
        """The complex conjugate (a copy: deepkern has no lazy conjugate views); a real tensor itself."""
        return F.Conj.apply(self) if self.is_complex() else self

    conj_physical = conj

    def conj_physical_(self):
        if not self.is_complex():
            self._recording_inplace("conj_physical_", ())  # refused on a leaf that requires grad, as PyTorch
            return self
        return self._inplace("conj_physical_", _ByMethod("conj"))

    def resolve_conj(self):
        """The tensor itself (deepkern's conjugates are never lazy)."""
        return self

    def resolve_neg(self):
        """The tensor itself (deepkern has no lazy negation)."""
        return self

    def is_conj(self) -> bool:
        return False

    def is_neg(self) -> bool:
        return False

    @property
    def real(self):
        """A real tensor itself (the real part of a complex one is not supported)."""
        if self.is_complex():
            raise NotImplementedError("real: views of the real part of complex tensors are not supported by deepkern")
        return self

    @property
    def imag(self):
        if self.is_complex():
            raise NotImplementedError(
                "imag: views of the imaginary part of complex tensors are not supported by deepkern"
            )
        raise RuntimeError("imag is not implemented for tensors with non-complex dtypes.")

    @property
    def H(self):
        """The conjugate transpose of a matrix (2-D; a 0-d tensor's conj(), with PyTorch's deprecation warning)."""
        if self.ndim == 0:
            warnings.warn("Tensor.H is deprecated on 0-D tensors. Consider using x.conj().", UserWarning, stacklevel=2)
            return self.conj()
        if self.ndim != 2:
            hint = " For batches of matrices, consider using tensor.mH" if self.ndim > 2 else ""
            raise RuntimeError(f"tensor.H is only supported on matrices (2-D tensors). Got {self.ndim}-D tensor.{hint}")
        return self.transpose(0, 1).conj()

    @property
    def mH(self):
        """The conjugate transpose of a matrix or a batch of them (the last two dimensions)."""
        return self._adjoint("Tensor.mH is", "tensor.mH")

    def adjoint(self):
        return self._adjoint("adjoint() is", "tensor.adjoint()")

    def _adjoint(self, deprecated: str, name: str):
        if self.ndim == 0:
            warnings.warn(
                f"{deprecated} deprecated on 0-D tensors. Consider using x.conj().", UserWarning, stacklevel=3
            )
            return self.conj()
        if self.ndim == 1:
            raise RuntimeError(f"{name} is only supported on matrices or batches of matrices. Got 1-D tensor.")
        return self.transpose(-2, -1).conj()


for _name, _target in _ALIASES.items():
    setattr(LongTailMethods, _name, _alias(_name, _target))
