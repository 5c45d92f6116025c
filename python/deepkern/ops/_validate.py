"""Argument checks shared by the ops: each error names the argument and the shapes or values."""

from __future__ import annotations

import functools
import inspect

import numpy as np

from .. import _C
from ..backends import as_array, backend_of

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


@functools.cache
def bfloat16_dtype() -> np.dtype:
    """bfloat16, ml_dtypes' NumPy dtype (``deepkern.bfloat16``), importing ml_dtypes on first use:
    registering its dtypes costs a noticeable part of ``import deepkern``."""
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def is_bfloat16(dtype) -> bool:
    """Whether ``dtype`` is bfloat16, without importing ml_dtypes (its NumPy dtype is named so, of kind
    'V'; the kind is read first: NumPy builds a dtype's name string on every read)."""
    return getattr(dtype, "kind", None) == "V" and dtype.name == "bfloat16"


def is_floating_dtype(dtype) -> bool:
    """Whether ``dtype`` is a real floating-point dtype: NumPy's (kind 'f') or bfloat16 (which
    ml_dtypes gives kind 'V')."""
    return dtype.kind == "f" or is_bfloat16(dtype)


def astype(arr, dtype):
    """``arr.astype(dtype)``: a new C-contiguous array of the same values, rounded as NumPy and
    ml_dtypes round. A NumPy array going between float32 and bfloat16 (native byte order) is
    converted by deepkern's kernel (vectorized and threaded; ml_dtypes' own loop converts one value
    at a time), after a copy to C order where its layout needs one."""
    dtype = np.dtype(dtype)
    if (
        type(arr) is np.ndarray
        and arr.dtype != dtype
        and (arr.dtype == _F32 or is_bfloat16(arr.dtype))
        and (dtype == _F32 or is_bfloat16(dtype))
    ):
        if not (arr.flags.c_contiguous and arr.flags.aligned):
            arr = arr.copy(order="C")
        out = np.empty(arr.shape, dtype)
        _C.cast(arr, out)
        return out
    return arr.astype(dtype)


def as_float_array(x, name: str, op: str, *, bfloat16: bool = False):
    """``x`` as a float32 or float64 array (on its device; other data as an ndarray), without
    copying one that already is; with ``bfloat16``, a bfloat16 NumPy array too.

    Non-native byte order and strides that are not multiples of the item size are converted
    once (same values); any other dtype is a TypeError.
    """
    arr = x if isinstance(x, np.ndarray) else as_array(x)
    dtype = arr.dtype
    if dtype == _F32 or dtype == _F64:  # the common case first (dtype.name, which is_bfloat16 reads, is slow)
        if not isinstance(arr, np.ndarray) or arr.flags.aligned:  # strides are multiples of the item size
            return arr
    elif bfloat16 and isinstance(arr, np.ndarray) and is_bfloat16(dtype):
        return arr if arr.flags.aligned else arr.copy()
    elif dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise TypeError(f"{op}: {name} must be float32 or float64, got dtype {dtype}")
    # Non-native byte order or unaligned data: the same values, converted once (to NumPy's own
    # float32/float64 dtype objects, which the bindings recognise).
    return arr.astype(_F32 if dtype.itemsize == 4 else _F64)


def backward_needs(needs, op: str, names: str) -> tuple:
    """A backward's ``needs`` (which of its three gradients, ``names``, to compute) as three bools; a
    ValueError naming ``op`` for anything else."""
    try:
        flags = tuple(needs)
    except TypeError:
        flags = ()
    if len(flags) != 3:
        raise ValueError(f"{op}: needs must be three bools ({names}), got {needs!r}")
    return tuple(bool(v) for v in flags)


def check_output(out, name: str, op: str, shape: tuple, dtype: np.dtype, inputs: dict, backend):
    """``out`` must be a writeable, aligned array of ``backend`` of exactly ``shape`` and ``dtype``
    that overlaps none of ``inputs`` (name -> array) and none of its own elements."""
    check_array_type(out, name, op, backend)
    if out.dtype != dtype:
        raise TypeError(f"{op}: {name} must have dtype {dtype}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.writeable:
        raise ValueError(f"{op}: {name} is read-only")
    if not out.flags.aligned:  # the kernels write whole elements at multiples of the item size
        raise ValueError(f"{op}: {name} is not aligned to its item size ({out.itemsize} bytes)")
    if out.size and any(st == 0 and n > 1 for st, n in zip(out.strides, out.shape)):
        raise ValueError(f"{op}: {name} has a zero stride (elements that alias each other)")
    if out.size and sum((n - 1) * abs(st) for n, st in zip(out.shape, out.strides)) + out.itemsize < out.nbytes:
        raise ValueError(f"{op}: {name} (shape {out.shape}, strides {out.strides}) has elements that share memory")
    for other_name, other in inputs.items():
        if other is not None and overlaps(out, other):
            raise ValueError(f"{op}: {name} (shape {out.shape}) overlaps input {other_name} (shape {other.shape})")
    return out


def check_array_type(array, name: str, op: str, backend, why: str = "") -> None:
    """TypeError unless ``array`` is an array of ``backend`` (e.g. a numpy.ndarray on the CPU)."""
    kind = backend.array_type
    if not isinstance(array, kind):
        raise TypeError(
            f"{op}: {name} must be a {kind.__module__}.{kind.__qualname__}{why}, got {type(array).__name__}"
        )


_TOO_HARD = getattr(np, "exceptions", np).TooHardError  # numpy.TooHardError before NumPy 1.25


def overlaps(x, y) -> bool:
    """True when arrays x and y share memory (or when that is too costly to rule out). NumPy arrays
    are compared element by element; device arrays (with ``data_ptr``) by the byte ranges their
    elements span; arrays of two different types never share memory (two devices), and two arrays
    of a type deepkern cannot inspect are assumed to."""
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        if not np.may_share_memory(x, y):
            return False
        try:
            return bool(np.shares_memory(x, y, max_work=100_000))
        except _TOO_HARD:
            return True
    if type(x) is not type(y):
        return False
    if not (hasattr(x, "data_ptr") and hasattr(y, "data_ptr")):
        return True
    x_span, y_span = _byte_span(x), _byte_span(y)
    return x_span is not None and y_span is not None and x_span[0] < y_span[1] and y_span[0] < x_span[1]


def _byte_span(array):
    """[first, end) of the device addresses a device array's elements occupy; None when it is empty."""
    if array.size == 0:
        return None
    low = high = int(array.data_ptr)
    for n, stride in zip(array.shape, array.strides):  # byte strides, as NumPy's
        reach = (n - 1) * stride
        low, high = (low + reach, high) if reach < 0 else (low, high + reach)
    return low, high + array.itemsize


#: Bound of the integer arguments (sizes, strides, paddings, counts): the kernels index in int64,
#: so a larger value could not mean anything they can do.
INDEX_LIMIT = 2**62


def check_index(value: int, name: str, op: str) -> int:
    """``value`` (a Python int) if its magnitude is below INDEX_LIMIT, else a ValueError naming it."""
    if not -INDEX_LIMIT < value < INDEX_LIMIT:
        raise ValueError(f"{op}: {name} must be between -2**62 and 2**62, got {value}")
    return value


def check_int64_range(indices, name: str, op: str) -> None:
    """A ValueError naming ``indices`` when they are unsigned 64-bit values past int64's range: the
    kernels take int64, and converting them would wrap to negative numbers (a skipped index)."""
    if indices.dtype != np.uint64 or not indices.size:
        return
    lowest = int(indices.view(np.int64).min())  # the int64 reduction, on any device
    if lowest < 0:
        raise ValueError(f"{op}: {name} holds {lowest + 2**64}, past the int64 range of indices")


def check_scalar(value, name: str, op: str) -> float:
    """A real, finite-or-not Python/NumPy number as float; anything else is a TypeError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__}")
    return float(value)


def _is_floating_array(value) -> bool:
    return hasattr(value, "dtype") and is_floating_dtype(value.dtype)


def bfloat16_through_float32(fn=None, *, native=None):
    """``fn``, an element-wise op on float32/float64 arrays, taking bfloat16 arrays too: when every
    floating array among its arguments is bfloat16, they are widened to float32 (exact),
    ``fn`` runs on them and its float32 results are rounded to bfloat16 once, which is how PyTorch's
    CPU kernels compute bfloat16 element-wise ops. Arrays given by keyword count as at their
    positions. ``out=`` must then be a bfloat16 array of the result's shape; other keyword arguments
    (e.g. a bool ``mask=``) go to ``fn`` as they are.
    ``native(*floating arrays)``, where given and true, hands ``fn`` the bfloat16 arrays themselves
    (its kernel takes them)."""
    if fn is None:
        return functools.partial(bfloat16_through_float32, native=native)

    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def op(*args, out=None, **kwargs):
        if any(_is_floating_array(v) for v in kwargs.values()):  # arrays by keyword: bound to their positions
            bound = signature.bind(*args, **kwargs)
            args, kwargs = bound.args, bound.kwargs
        floats = [a for a in args if _is_floating_array(a)]
        if not floats or not all(is_bfloat16(a.dtype) for a in floats) or (native is not None and native(*floats)):
            return fn(*args, out=out, **kwargs)
        bf16 = floats[0].dtype
        wide = [astype(a, _F32) if is_bfloat16(getattr(a, "dtype", None)) else a for a in args]
        results = fn(*wide, **kwargs)
        single = not isinstance(results, tuple)
        results = [astype(r, bf16) if r.dtype == _F32 else r for r in ((results,) if single else results)]
        if out is not None:  # the first result is the one ``out`` holds
            backend = backend_of(out, results[0], op=fn.__name__)
            inputs = {f"argument {i}": a for i, a in enumerate(floats)}
            check_output(out, "out", fn.__name__, results[0].shape, bf16, inputs, backend)
            out[...] = results[0]
            results[0] = out
        return results[0] if single else tuple(results)

    return op
