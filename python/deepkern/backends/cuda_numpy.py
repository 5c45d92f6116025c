"""NumPy's protocols on :class:`deepkern._cuda.DeviceArray`, so code written with NumPy functions
and operators (``np.where``, ``np.exp``, ``a + b``, ``a.sum(axis)``, ...) computes on the GPU.

* ``__array_ufunc__`` (NEP 13): the ufuncs of :data:`UFUNCS` through ``__call__`` (array and number
  operands, ``out=``, ``dtype=``), ``add/multiply/maximum/minimum.reduce`` and ``np.add.at``;
* ``__array_function__`` (NEP 18): the functions of :data:`FUNCTIONS`;
* the arithmetic and comparison operators (in place too) and the ndarray methods of
  :data:`METHODS`.

Result dtypes follow NumPy's promotion (Python numbers are weak); an array of another dtype than
the kernel's is converted with ``DeviceArray.astype``. Whatever has no kernel raises
NotImplementedError (or TypeError for an operand that is not a DeviceArray or a number) naming
the function and 'cuda': nothing is copied to the host behind the caller's back.
:func:`install` attaches all of it to the class; ``backends/cuda.py`` calls it.
"""

from __future__ import annotations

import numbers
import operator

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

#: DeviceArray class -> the module of its kernels (deepkern._cuda; tests install a stand-in).
_MODULES: dict = {}

#: ufunc -> (kind, kernel op name) of deepkern._cuda.unary/binary.
UFUNCS = {
    **{
        u: ("unary", name)
        for u, name in [
            (np.negative, "negative"),
            (np.absolute, "abs"),
            (np.sign, "sign"),
            (np.exp, "exp"),
            (np.log, "log"),
            (np.sqrt, "sqrt"),
            (np.tanh, "tanh"),
            (np.square, "square"),
            (np.reciprocal, "reciprocal"),
            (np.log1p, "log1p"),
            (np.expm1, "expm1"),
            (np.sin, "sin"),
            (np.cos, "cos"),
            (np.isnan, "isnan"),
            (np.isinf, "isinf"),
            (np.isfinite, "isfinite"),
            (np.logical_not, "logical_not"),
        ]
    },
    **{
        u: ("binary", name)
        for u, name in [
            (np.add, "add"),
            (np.subtract, "subtract"),
            (np.multiply, "multiply"),
            (np.true_divide, "divide"),
            (np.power, "power"),
            (np.maximum, "maximum"),
            (np.minimum, "minimum"),
            (np.logaddexp, "logaddexp"),
            (np.equal, "equal"),
            (np.not_equal, "not_equal"),
            (np.less, "less"),
            (np.less_equal, "less_equal"),
            (np.greater, "greater"),
            (np.greater_equal, "greater_equal"),
            (np.logical_and, "logical_and"),
            (np.logical_or, "logical_or"),
            (np.logical_xor, "logical_xor"),
        ]
    },
}
#: The bitwise ufuncs on bools (the operators & | ^ ~) are the logical ones.
_BOOL_BITWISE = {
    np.bitwise_and: np.logical_and,
    np.bitwise_or: np.logical_or,
    np.bitwise_xor: np.logical_xor,
    np.invert: np.logical_not,
}
_LOGICAL = {np.logical_and, np.logical_or, np.logical_xor, np.logical_not}
#: ufunc.reduce -> reduction kernel.
_UFUNC_REDUCTIONS = {np.add: "sum", np.multiply: "prod", np.maximum: "max", np.minimum: "min"}


def _is_device(x) -> bool:
    return type(x) in _MODULES


def _kernels(arrays):
    """The kernel module of the first DeviceArray among ``arrays``."""
    return _MODULES[type(next(x for x in arrays if _is_device(x)))]


def _unsupported(what: str, why: str = "is not supported") -> NotImplementedError:
    return NotImplementedError(f"{what} {why} on device 'cuda'")


def _operand(x, what: str):
    """A DeviceArray, or a number as a Python scalar (NumPy scalars and 0-d host arrays included);
    TypeError otherwise (host arrays are never copied implicitly)."""
    if _is_device(x):
        return x
    if isinstance(x, np.ndarray) and x.ndim == 0:
        x = x[()]
    if isinstance(x, (np.generic, numbers.Number)) and not isinstance(x, (complex, np.complexfloating)):
        return x
    raise TypeError(
        f"{what} on device 'cuda': an operand is a {type(x).__name__}, not a DeviceArray or a real number"
        " (copy host data to the device first)"
    )


def _dtype_spec(x):
    """What ufunc.resolve_dtypes takes for an operand: dtypes for arrays and NumPy scalars, the
    types int/float for Python numbers (weak, as NumPy treats them), bool's dtype for bools."""
    if _is_device(x) or isinstance(x, np.generic):
        return x.dtype
    if isinstance(x, bool):
        return np.dtype(bool)
    return int if isinstance(x, numbers.Integral) else float


def _python_number(x):
    return x.item() if isinstance(x, np.generic) else x


def cast(a, dtype, what: str):
    """``a`` as ``dtype`` (a itself when it already is); TypeError naming ``what`` where the device
    cannot cast."""
    dtype = np.dtype(dtype)
    if a.dtype == dtype:
        return a
    try:
        return a.astype(dtype)
    except (TypeError, NotImplementedError) as exc:
        raise TypeError(f"{what} on device 'cuda' needs {a.dtype} converted to {dtype}: {exc}") from exc


def _device_of(operands) -> int:
    return next(x.device_index for x in operands if _is_device(x))


def _result_dtype(kernels, kind: str, op: str, dtype, what: str) -> np.dtype:
    name = kernels.elementwise_result_dtype(kind, op, np.dtype(dtype).name)
    if name is None:
        raise _unsupported(what, f"has no kernel for {np.dtype(dtype)}")
    return np.dtype(name)


def _deliver(result, out, what: str):
    """``result`` written into ``out`` (a DeviceArray of result's shape, cast as NumPy's
    'same_kind' allows), or result itself when out is None."""
    if out is None:
        return result
    if not _is_device(out):
        raise TypeError(f"{what} on device 'cuda': out must be a DeviceArray, got {type(out).__name__}")
    if tuple(out.shape) != tuple(result.shape):
        raise ValueError(f"{what}: out has shape {out.shape}, the result {result.shape}")
    if not np.can_cast(result.dtype, out.dtype, casting="same_kind"):
        raise TypeError(f"{what}: cannot write the {result.dtype} result into out of dtype {out.dtype}")
    out[...] = cast(result, out.dtype, what)
    return out


def _single_out(kwargs, what):
    out = kwargs.pop("out", None)
    if isinstance(out, tuple):
        if len(out) != 1:
            raise _unsupported(what, f"with {len(out)} outputs")
        out = out[0]
    return out


def _check_defaults(kwargs, what, **defaults):
    """Every keyword in kwargs is one of ``defaults`` at its default value (np._NoValue counts as
    unset); anything else is NotImplementedError naming it."""
    for key, value in kwargs.items():
        if key not in defaults:
            raise _unsupported(what, f"with {key}=")
        if value is not np._NoValue and value is not None and not _equal(value, defaults[key]):
            raise _unsupported(what, f"with {key}={value!r}")


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


# ---- ufuncs ------------------------------------------------------------------------------------


def _call_ufunc(ufunc, inputs, kwargs):
    what = f"np.{ufunc.__name__}"
    out = _single_out(kwargs, what)
    dtype = kwargs.pop("dtype", None)
    _check_defaults(kwargs, what, casting="same_kind", where=True, order="K", subok=True)
    operands = [_operand(x, what) for x in inputs]
    if ufunc in _BOOL_BITWISE and all(_dtype_spec(x) == np.dtype(bool) for x in operands):
        ufunc = _BOOL_BITWISE[ufunc]
    if ufunc not in UFUNCS:
        raise _unsupported(what)
    if not any(_is_device(x) for x in operands):
        raise TypeError(f"{what} on device 'cuda': no operand is a DeviceArray")
    kind, op = UFUNCS[ufunc]
    kernels = _kernels(operands)
    if ufunc in _LOGICAL:  # the kernels take bools: x != 0 for the others
        operands = [x if _dtype_spec(x) == np.dtype(bool) else _as_bool(x) for x in operands]
    specs = tuple(_dtype_spec(x) for x in operands) + (None,)
    if dtype is None:
        loop = ufunc.resolve_dtypes(specs)
    else:
        loop = ufunc.resolve_dtypes(specs, signature=(None,) * ufunc.nin + (np.dtype(dtype),))
    in_dtype, out_dtype = loop[0], loop[-1]
    if _result_dtype(kernels, kind, op, in_dtype, what) != out_dtype:
        raise _unsupported(what, f"has no kernel for {in_dtype} -> {out_dtype}")
    operands = [cast(x, in_dtype, what) if _is_device(x) else _python_number(x) for x in operands]
    arrays = [x for x in operands if _is_device(x)]
    shape = np.broadcast_shapes(*(x.shape for x in arrays))
    if out is not None and _is_device(out) and out.dtype == out_dtype:
        target = out
        # An input sharing memory with out other than as out itself is read from a copy.
        operands = [_unshared(x, out) for x in operands]
    else:
        target = kernels.empty(shape, out_dtype, _device_of(arrays))
    getattr(kernels, kind)(op, target, *operands)
    return target if target is out else _deliver(target, out, what)


def _as_bool(x):
    return np.not_equal(x, 0) if _is_device(x) else bool(x)


def _unshared(x, out):
    from ..ops._validate import overlaps

    if not _is_device(x) or x is out or not overlaps(x, out):
        return x
    same = x.data_ptr == out.data_ptr and x.shape == out.shape and x.strides == out.strides
    return x if same else x.copy()


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    """NEP 13: ``ufunc(...)``, the reductions ``np.add/multiply/maximum/minimum.reduce`` and
    ``np.add.at``."""
    if method == "__call__":
        return _call_ufunc(ufunc, inputs, kwargs)
    if method == "at" and ufunc is np.add:
        return _add_at(*inputs, **kwargs)
    if method == "reduce" and ufunc in _UFUNC_REDUCTIONS and len(inputs) == 1:
        kwargs.setdefault("axis", 0)
        out = _single_out(kwargs, f"np.{ufunc.__name__}.reduce")
        return _reduce(_UFUNC_REDUCTIONS[ufunc], inputs[0], out=out, **kwargs)
    raise _unsupported(f"np.{ufunc.__name__}.{method}")


# ---- reductions --------------------------------------------------------------------------------


def _reduce(op, a, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
    """``op`` (a reduction kernel name) of DeviceArray ``a`` over ``axis`` (None: all), with
    NumPy's result dtype (integers and bools sum in int64, integer means in float64)."""
    what = f"np.{op}"
    _check_defaults(kwargs, what, initial=None, where=True)
    if not _is_device(a):
        raise TypeError(f"{what} on device 'cuda': a is a {type(a).__name__}, not a DeviceArray")
    if op in ("argmax", "argmin") and axis is not None and not isinstance(axis, numbers.Integral):
        raise TypeError(f"{what}: axis must be an integer or None, got {axis!r}")
    axes = tuple(range(a.ndim)) if axis is None else normalize_axis_tuple(axis, a.ndim)
    if dtype is not None:
        a = cast(a, dtype, what)
    elif op in ("sum", "prod") and a.dtype.kind in "iu" or (op == "prod" and a.dtype == np.bool_):
        a = cast(a, np.int64, what)
    elif op == "mean" and a.dtype.kind in "biu":
        a = cast(a, np.float64, what)
    kernels = _kernels([a])
    out_dtype = _result_dtype(kernels, "reduce", op, a.dtype, what)
    kept = tuple(n for d, n in enumerate(a.shape) if d not in axes)
    result = kernels.empty(kept, out_dtype, a.device_index)
    kernels.reduce(op, result, a, list(axes))
    if keepdims:
        result = result.reshape(tuple(1 if d in axes else n for d, n in enumerate(a.shape)))
    return _deliver(result, out, what)


def _reduction(op):
    def fn(a, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        return _reduce(op, a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **kwargs)

    fn.__doc__ = f"np.{op} on a DeviceArray (axis: None, an int or a tuple; keepdims; out; dtype)."
    return fn


def _arg_reduction(op):
    def fn(a, axis=None, out=None, *, keepdims=False):
        return _reduce(op, a, axis=axis, out=out, keepdims=keepdims)

    fn.__doc__ = f"np.{op} on a DeviceArray (axis: None for the flat index, or an int; keepdims; out)."
    return fn


def _any(a, axis=None, out=None, keepdims=False, **kwargs):
    """np.any: whether some element along ``axis`` is nonzero."""
    return np.greater(_reduce("sum", _as_bool(a), axis=axis, keepdims=keepdims, **kwargs), 0, out=out)


def _all(a, axis=None, out=None, keepdims=False, **kwargs):
    """np.all: whether every element along ``axis`` is nonzero."""
    return np.equal(_reduce("sum", np.equal(a, 0), axis=axis, keepdims=keepdims, **kwargs), 0, out=out)


# ---- array functions ---------------------------------------------------------------------------


def _where(condition, x=None, y=None):
    """np.where(condition, x, y) with broadcasting; x and y DeviceArrays or numbers."""
    if x is None or y is None:
        raise _unsupported("np.where with one argument (nonzero)")
    operands = [_operand(v, "np.where") for v in (condition, x, y)]
    cond = operands[0]
    if _is_device(cond) and cond.dtype != np.bool_:
        cond = np.not_equal(cond, 0)
    elif not _is_device(cond):
        cond = bool(cond)
    values = operands[1:]
    dtype = np.result_type(*(_dtype_spec(v) if _is_device(v) or isinstance(v, np.generic) else v for v in values))
    values = [cast(v, dtype, "np.where") if _is_device(v) else _python_number(v) for v in values]
    arrays = [v for v in (cond, *values) if _is_device(v)]
    if not arrays:
        raise TypeError("np.where on device 'cuda': no operand is a DeviceArray")
    kernels = _kernels(arrays)
    out = kernels.empty(np.broadcast_shapes(*(v.shape for v in arrays)), dtype, _device_of(arrays))
    kernels.where(out, cond, *values)
    return out


def _broadcast_to(array, shape, subok=False):
    """np.broadcast_to: a stride-0 view."""
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    return _kernels([array]).broadcast_view(array, [operator.index(n) for n in shape])


def _reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    """np.reshape: a view of a C-contiguous array, else of a contiguous copy."""
    if order != "C" or copy is False:
        raise _unsupported(f"np.reshape with order={order!r}, copy={copy!r}")
    return _reshaped(a, shape if newshape is None else newshape)


def _transpose(a, axes=None):
    return a.transpose() if axes is None else a.transpose(tuple(axes))


def _moveaxis(a, source, destination):
    """np.moveaxis: a transposed view."""
    source = normalize_axis_tuple(source, a.ndim, "source")
    destination = normalize_axis_tuple(destination, a.ndim, "destination")
    if len(source) != len(destination):
        raise ValueError("`source` and `destination` arguments must have the same number of elements")
    order = [n for n in range(a.ndim) if n not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return a.transpose(tuple(order))


def _expand_dims(a, axis):
    """np.expand_dims: a view with extent-1 axes inserted."""
    axes = normalize_axis_tuple(axis, a.ndim + (len(axis) if isinstance(axis, (tuple, list)) else 1))
    return a[tuple(None if d in axes else slice(None) for d in range(a.ndim + len(axes)))]


def _squeeze(a, axis=None):
    """np.squeeze: a view without (the given) extent-1 axes."""
    if axis is None:
        axes = tuple(d for d, n in enumerate(a.shape) if n == 1)
    else:
        axes = normalize_axis_tuple(axis, a.ndim)
        if any(a.shape[d] != 1 for d in axes):
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return a[tuple(0 if d in axes else slice(None) for d in range(a.ndim))]


def _concatenate(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    """np.concatenate of DeviceArrays (axis None: flattened first)."""
    what = "np.concatenate"
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    for a in arrays:
        if not _is_device(a):
            raise TypeError(f"{what} on device 'cuda': an input is a {type(a).__name__}, not a DeviceArray")
    if axis is None:
        arrays, axis = [_reshaped(a, -1) for a in arrays], 0
    first = arrays[0]
    if first.ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = normalize_axis_tuple(axis, first.ndim)[0]
    for a in arrays:
        if a.ndim != first.ndim or any(m != n for d, (m, n) in enumerate(zip(a.shape, first.shape)) if d != axis):
            raise ValueError(
                f"{what}: all the input array dimensions except for the concatenation axis must match exactly,"
                f" got shapes {first.shape} and {a.shape}"
            )
    dtype = np.result_type(*(a.dtype for a in arrays)) if dtype is None else np.dtype(dtype)
    shape = list(first.shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    result = _kernels(arrays).empty(tuple(shape), dtype, first.device_index)
    start = 0
    for a in arrays:
        index = (slice(None),) * axis + (slice(start, start + a.shape[axis]),)
        result[index] = cast(a, dtype, what)
        start += a.shape[axis]
    return _deliver(result, out, what)


def _stack(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    """np.stack of DeviceArrays of one shape."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to stack")
    if any(not _is_device(a) or a.shape != arrays[0].shape for a in arrays):
        raise ValueError("np.stack on device 'cuda': all inputs must be DeviceArrays of the same shape")
    axis = normalize_axis_tuple(axis, arrays[0].ndim + 1)[0]
    return _concatenate([_expand_dims(a, axis) for a in arrays], axis=axis, out=out, dtype=dtype)


def _split(ary, indices_or_sections, axis=0):
    """np.split: views along ``axis`` (equal sections, or cuts at the given indices)."""
    axis = normalize_axis_tuple(axis, ary.ndim)[0]
    n = ary.shape[axis]
    if isinstance(indices_or_sections, numbers.Integral):
        sections = int(indices_or_sections)
        if sections <= 0 or n % sections:
            raise ValueError("array split does not result in an equal division")
        cuts = [n // sections * k for k in range(1, sections)]
    else:
        cuts = [int(c) for c in indices_or_sections]
    bounds = zip([0, *cuts], [*cuts, n])
    return [ary[(slice(None),) * axis + (slice(start, max(start, stop)),)] for start, stop in bounds]


def _filled_like(value):
    def fn(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
        dtype = a.dtype if dtype is None else np.dtype(dtype)
        shape = a.shape if shape is None else ((shape,) if isinstance(shape, numbers.Integral) else tuple(shape))
        kernels = _kernels([a])
        if value is None:
            return kernels.empty(shape, dtype, a.device_index)
        return kernels.full(shape, value, dtype, a.device_index)

    return fn


def _full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, *, device=None):
    return _filled_like(fill_value)(a, dtype=dtype, shape=shape)


def _clip(a, a_min=np._NoValue, a_max=np._NoValue, out=None, *, min=np._NoValue, max=np._NoValue, **kwargs):
    """np.clip as maximum then minimum (None: no bound on that side)."""
    low = a_min if min is np._NoValue else min
    high = a_max if max is np._NoValue else max
    result = a
    if low is not None and low is not np._NoValue:
        result = np.maximum(result, low, **kwargs)
    if high is not None and high is not np._NoValue:
        result = np.minimum(result, high, **kwargs)
    return _deliver(result if result is not a else a.copy(), out, "np.clip")


def _result_type(*arrays_and_dtypes):
    return np.result_type(*(x.dtype if _is_device(x) else x for x in arrays_and_dtypes))


def _size(a, axis=None):
    return a.size if axis is None else a.shape[axis]


# ---- gather and scatter ------------------------------------------------------------------------


def _indices(indices, what):
    """``indices`` as an int64 DeviceArray; IndexError for a non-integer one (as NumPy)."""
    if not _is_device(indices):
        raise TypeError(f"{what} on device 'cuda': indices are a {type(indices).__name__}, not a DeviceArray")
    if indices.dtype.kind not in "iu":
        raise IndexError(f"{what}: indices must be an integer array, got {indices.dtype}")
    return cast(indices, np.int64, what)


def _values(values, a, what):
    """``values`` as a DeviceArray of a's dtype on a's device (a number becomes a 0-d one)."""
    values = _operand(values, what)
    if _is_device(values):
        return cast(values, a.dtype, what)
    return _kernels([a]).full((), _python_number(values), a.dtype, a.device_index)


def _unshared_with(x, a):
    """``x``, or a copy of it where it shares memory with ``a`` (which the scatter writes)."""
    from ..ops._validate import overlaps

    return x.copy() if overlaps(x, a) else x


def _take_along_axis(arr, indices, axis=-1):
    """np.take_along_axis: int64 indices (negative ones from the end) broadcasting with ``arr`` off
    ``axis``; axis None takes from the flattened array. IndexError for an index out of bounds."""
    what = "np.take_along_axis"
    if not _is_device(arr):
        raise TypeError(f"{what} on device 'cuda': arr is a {type(arr).__name__}, not a DeviceArray")
    indices = _indices(indices, what)
    if axis is None:
        if indices.ndim != 1:
            raise ValueError(f"{what}: when axis=None, indices must have a single dimension, got {indices.shape}")
        arr, axis = _reshaped(arr, -1), 0
    if indices.ndim != arr.ndim:
        raise ValueError(f"{what}: indices of shape {indices.shape} and arr of shape {arr.shape} differ in dimensions")
    axis = normalize_axis_tuple(axis, arr.ndim)[0]
    shape = np.broadcast_shapes(arr.shape[:axis] + (1,) + arr.shape[axis + 1 :], indices.shape)
    kernels = _kernels([arr])
    out = kernels.empty(shape[:axis] + (indices.shape[axis],) + shape[axis + 1 :], arr.dtype, arr.device_index)
    kernels.take_along_axis(out, arr, indices, axis)
    return out


def _put_along_axis(arr, indices, values, axis):
    """np.put_along_axis (in place): values (DeviceArray or number) broadcast to the indexed shape;
    axis None puts into the flattened (C-contiguous) array. IndexError for an index out of bounds,
    with ``arr`` untouched. Where indices repeat a target, it gets one of its values."""
    what = "np.put_along_axis"
    if not _is_device(arr):
        raise TypeError(f"{what} on device 'cuda': arr is a {type(arr).__name__}, not a DeviceArray")
    indices = _indices(indices, what)
    target = arr
    if axis is None:
        if not arr.is_contiguous():
            raise _unsupported(f"{what} with axis=None into a non-contiguous array")
        if indices.ndim != 1:
            raise ValueError(f"{what}: when axis=None, indices must have a single dimension, got {indices.shape}")
        target, axis = _reshaped(arr, -1), 0
    if indices.ndim != target.ndim:
        raise ValueError(
            f"{what}: indices of shape {indices.shape} and arr of shape {target.shape} differ in dimensions"
        )
    axis = normalize_axis_tuple(axis, target.ndim)[0]
    values = _values(values, target, what)
    kernels = _kernels([target])
    kernels.scatter_along_axis(
        "put_along_axis", target, _unshared_with(indices, target), _unshared_with(values, target), axis
    )


def _add_at(a, indices, b=None):
    """np.add.at(a, indices, b): a[indices] += b with repeated indices accumulating (float32 and
    float64). ``indices``: an integer or an integer DeviceArray, alone or in a tuple after full
    slices (``(slice(None), idx)`` indexes axis 1) and before full slices or Ellipsis; negative
    indices count from the end. IndexError for one out of bounds, with ``a`` untouched."""
    what = "np.add.at"
    if b is None:
        raise TypeError(f"{what}: the values to add are missing")
    if not _is_device(a):
        raise TypeError(f"{what} on device 'cuda': a is a {type(a).__name__}, not a DeviceArray")
    if a.dtype not in (np.float32, np.float64):
        raise _unsupported(what, f"has no kernel for {a.dtype}")
    axis, index = _single_index(indices, what)
    if axis >= a.ndim:
        raise IndexError(f"{what}: too many indices for a of shape {a.shape}")
    kernels = _kernels([a])
    if not _is_device(index):  # one integer
        index = kernels.full((1,), index, np.int64, a.device_index)
        picked = ()
    else:
        index = _indices(index, what)
        picked = index.shape
    before, after = a.shape[:axis], a.shape[axis + 1 :]
    values = _values(b, a, what)
    n = index.size
    if len(picked) != 1:  # the picked dimensions merged into one (a copy), as the indices are flattened
        values = _reshaped(np.broadcast_to(values, before + picked + after), before + (n,) + after)
    index = _reshaped(index, (1,) * axis + (n,) + (1,) * len(after))
    kernels.scatter_along_axis("add.at", a, _unshared_with(index, a), _unshared_with(values, a), axis)


def _single_index(indices, what):
    """(axis, index) of an add.at key: one integer or integer array after ``axis`` full slices;
    NotImplementedError naming ``what`` for any other key."""
    key = indices if isinstance(indices, tuple) else (indices,)
    full = [isinstance(part, slice) and part == slice(None) or part is Ellipsis for part in key]
    positions = [k for k, is_full in enumerate(full) if not is_full]
    if len(positions) != 1 or Ellipsis in key[: positions[0]]:
        raise _unsupported(what, f"with indices {indices!r} (one integer or integer array after full slices)")
    index = key[positions[0]]
    if not (_is_device(index) or isinstance(index, (numbers.Integral, np.integer))) or isinstance(index, bool):
        raise _unsupported(what, f"with an index of type {type(index).__name__}")
    return positions[0], index if _is_device(index) else operator.index(index)


#: NumPy function -> its implementation on DeviceArrays (np.amax/np.amin are np.max/np.min's).
FUNCTIONS = {
    np.where: _where,
    np.take_along_axis: _take_along_axis,
    np.put_along_axis: _put_along_axis,
    np.sum: _reduction("sum"),
    np.prod: _reduction("prod"),
    np.mean: _reduction("mean"),
    np.max: _reduction("max"),
    np.amax: _reduction("max"),
    np.min: _reduction("min"),
    np.amin: _reduction("min"),
    np.argmax: _arg_reduction("argmax"),
    np.argmin: _arg_reduction("argmin"),
    np.any: _any,
    np.all: _all,
    np.broadcast_to: _broadcast_to,
    np.reshape: _reshape,
    np.transpose: _transpose,
    np.swapaxes: lambda a, axis1, axis2: a.swapaxes(axis1, axis2),
    np.moveaxis: _moveaxis,
    np.expand_dims: _expand_dims,
    np.squeeze: _squeeze,
    np.stack: _stack,
    np.concatenate: _concatenate,
    np.split: _split,
    np.zeros_like: _filled_like(0),
    np.ones_like: _filled_like(1),
    np.empty_like: _filled_like(None),
    np.full_like: _full_like,
    np.clip: _clip,
    np.copy: lambda a, order="K", subok=False: a.copy(),
    np.shape: lambda a: a.shape,
    np.ndim: lambda a: a.ndim,
    np.size: _size,
    np.result_type: _result_type,
}


def _array_function(self, func, types, args, kwargs):
    """NEP 18: the functions of FUNCTIONS; NotImplementedError naming any other."""
    impl = FUNCTIONS.get(func)
    if impl is None:
        raise _unsupported(f"np.{func.__name__}")
    return impl(*args, **kwargs)


# ---- operators and methods ---------------------------------------------------------------------


def _operator(ufunc, reflected=False, in_place=False):
    def method(self, other):
        if not (_is_device(other) or isinstance(other, (numbers.Number, np.generic, np.ndarray))):
            return NotImplemented
        if in_place:
            return ufunc(self, other, out=(self,))
        return ufunc(other, self) if reflected else ufunc(self, other)

    return method


_BINARY_OPERATORS = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "truediv": np.true_divide,
    "pow": np.power,
    "and": np.bitwise_and,
    "or": np.bitwise_or,
    "xor": np.bitwise_xor,
}
_COMPARISONS = {
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
}


def _scalar(convert):
    def method(self):
        if self.size != 1:
            raise ValueError(
                f"only one-element DeviceArrays can be converted to Python scalars, got shape {self.shape}"
            )
        return convert(self.item())

    return method


def _bool(self):
    if self.size != 1:
        raise ValueError(f"the truth value of a DeviceArray of shape {self.shape} is ambiguous (use .any() or .all())")
    return bool(self.item())


def _reshaped(self, *shape, order="C"):
    """``np.reshape(a, shape)``: the array's own reshape (a view when the array is C-contiguous,
    else a view of a contiguous copy, as NumPy copies when no view can express the result)."""
    if order != "C":
        raise _unsupported(f"reshape with order={order!r}")
    return self.reshape(*shape)


def _method(func):
    def method(self, *args, **kwargs):
        return func(self, *args, **kwargs)

    method.__doc__ = func.__doc__
    return method


#: ndarray methods added to DeviceArray.
METHODS = {
    "sum": _reduction("sum"),
    "prod": _reduction("prod"),
    "mean": _reduction("mean"),
    "max": _reduction("max"),
    "min": _reduction("min"),
    "argmax": _arg_reduction("argmax"),
    "argmin": _arg_reduction("argmin"),
    "any": _any,
    "all": _all,
    "clip": _clip,
    "squeeze": _squeeze,
    "ravel": lambda a: _reshaped(a, -1),
    "flatten": lambda a: _reshaped(a.copy(), -1),
}


def install(kernels) -> None:
    """Attaches the protocols, operators and methods to ``kernels.DeviceArray``, whose arrays then
    compute with ``kernels`` (deepkern._cuda: empty, full, unary, binary, where, reduce,
    take_along_axis, scatter_along_axis, broadcast_view, elementwise_result_dtype)."""
    cls = kernels.DeviceArray
    if cls in _MODULES:
        return
    _MODULES[cls] = kernels
    cls.__array_ufunc__ = _array_ufunc
    cls.__array_function__ = _array_function
    for name, ufunc in _BINARY_OPERATORS.items():
        setattr(cls, f"__{name}__", _operator(ufunc))
        setattr(cls, f"__r{name}__", _operator(ufunc, reflected=True))
        setattr(cls, f"__i{name}__", _operator(ufunc, in_place=True))
    for name, ufunc in _COMPARISONS.items():
        setattr(cls, f"__{name}__", _operator(ufunc))
    cls.__neg__ = lambda self: np.negative(self)
    cls.__pos__ = lambda self: self.copy()
    cls.__abs__ = lambda self: np.absolute(self)
    cls.__invert__ = lambda self: np.invert(self)
    cls.__float__ = _scalar(float)
    cls.__int__ = _scalar(int)
    cls.__bool__ = _bool
    cls.__hash__ = object.__hash__  # __eq__ is elementwise; identity hashing stays as before
    for name, func in METHODS.items():
        setattr(cls, name, _method(func))
