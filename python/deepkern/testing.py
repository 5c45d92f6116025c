"""``deepkern.testing``: PyTorch's ``torch.testing``: ``assert_close`` (with its default tolerances per
dtype, its handling of Python numbers, None, bools and nested sequences and mappings, and its failure
messages) and ``make_tensor``. (``assert_allclose``, deprecated in PyTorch, is left out.)

Messages print deepkern's shapes, dtypes and devices: ``(2, 3)`` and ``float32`` where PyTorch prints
``torch.Size([2, 3])`` and ``torch.float32``.
"""

from __future__ import annotations

import cmath
import collections.abc
import functools
import math
import warnings

import numpy as np

from . import random
from .backends import CPU_DEVICE, to_device
from .ops._validate import is_bfloat16
from .tensor import Tensor, _promote_types, as_tensor
from .tensor_long_tail import _finfo

__all__ = ["assert_close", "make_tensor"]

#: PyTorch's default (rtol, atol) per dtype name; other dtypes (integers, bool) compare exactly.
_TOLERANCES = {
    "float16": (0.001, 1e-5),
    "bfloat16": (0.016, 1e-5),
    "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7),
    "complex64": (1.3e-6, 1e-5),
    "complex128": (1e-7, 1e-7),
}
#: The dtype name of each Python number type (as PyTorch reads them).
_NUMBER_DTYPES = {int: "int64", float: "float64", complex: "complex128"}


class _Mismatch(Exception):
    """A failed comparison: the exception type to raise, its message and the item it occurred at."""

    def __init__(self, kind, message: str, item=()):
        super().__init__(message)
        self.kind, self.message, self.item = kind, message, item

    def error(self, msg=None) -> Exception:
        if isinstance(msg, str):
            return self.kind(msg)
        message = self.message
        if self.item:
            message += f"\n\nThe failure occurred for item {''.join(str([i]) for i in self.item)}"
        return self.kind(msg(message) if callable(msg) else message)


class _Unsupported(Exception):
    """The inputs are not of the kind a comparison handles."""


def _dtype_name(dtype) -> str:
    return "bfloat16" if is_bfloat16(dtype) else np.dtype(dtype).name


def _tolerances(names, rtol, atol, item) -> tuple:
    """``(rtol, atol)``: the given pair, or the loosest defaults of the dtypes ``names``."""
    if (rtol is None) != (atol is None):
        raise _Mismatch(
            ValueError,
            "Both 'rtol' and 'atol' must be either specified or omitted, but got no "
            f"{'rtol' if rtol is None else 'atol'}.",
            item,
        )
    if rtol is not None:
        return rtol, atol
    pairs = [_TOLERANCES.get(n, (0.0, 0.0)) for n in names]
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


def _difference_message(identifier: str, extra: str, abs_diff, abs_idx, rel_diff, rel_idx, rtol, atol) -> str:
    equality = rtol == 0 and atol == 0
    lines = [f"{identifier} are not {'equal' if equality else 'close'}!", "", extra]
    for kind, diff, idx, tol in (("absolute", abs_diff, abs_idx, atol), ("relative", rel_diff, rel_idx, rtol)):
        line = (
            f"{kind.title()} difference: {diff}"
            if idx is None
            else f"Greatest {kind} difference: {diff} at index {idx}"
        )
        lines.append(line if equality else f"{line} (up to {tol} allowed)")
    return "\n".join(lines)


def _scalar_message(actual, expected, rtol, atol) -> str:
    abs_diff = abs(actual - expected)
    rel_diff = float("inf") if expected == 0 else abs_diff / abs(expected)
    return _difference_message(
        "Scalars", f"Expected {expected} but got {actual}.", abs_diff, None, rel_diff, None, rtol, atol
    )


def _compare_numbers(actual, expected, rtol, atol, equal_nan: bool, check_dtype: bool, item) -> None:
    actual, expected = (v.item() if isinstance(v, np.number) else v for v in (actual, expected))
    rtol, atol = _tolerances([_NUMBER_DTYPES[type(v)] for v in (actual, expected)], rtol, atol, item)
    if check_dtype and type(actual) is not type(expected):
        raise _Mismatch(AssertionError, f"The (d)types do not match: {type(actual)} != {type(expected)}.", item)
    if actual == expected or (equal_nan and cmath.isnan(actual) and cmath.isnan(expected)):
        return
    difference = abs(actual - expected)
    if cmath.isfinite(difference) and difference <= atol + rtol * abs(expected):
        return
    raise _Mismatch(AssertionError, _scalar_message(actual, expected, rtol, atol), item)


def _as_tensor_like(value):
    """A Tensor, or a NumPy array as a tensor (PyTorch compares any two tensor-likes of related types)."""
    return value if isinstance(value, Tensor) else as_tensor(value)


def _host(t: Tensor) -> np.ndarray:
    return t._host_array() if t.device == CPU_DEVICE else t.cpu()._array


def _compare_tensors(actual, expected, options: dict, item) -> None:
    related = isinstance(actual, type(expected)) or isinstance(expected, type(actual))
    if not related or (not options["allow_subclasses"] and type(actual) is not type(expected)):
        raise _Unsupported
    actual, expected = _as_tensor_like(actual), _as_tensor_like(expected)
    rtol, atol = _tolerances([_dtype_name(t.dtype) for t in (actual, expected)], options["rtol"], options["atol"], item)

    def mismatch(attribute, a, e):
        return _Mismatch(AssertionError, f"The values for attribute '{attribute}' do not match: {a} != {e}.", item)

    if actual.shape != expected.shape:
        raise mismatch("shape", actual.shape, expected.shape)
    if options["check_stride"] and actual.stride() != expected.stride():
        raise mismatch("stride()", actual.stride(), expected.stride())
    if options["check_device"] and actual.device != expected.device:
        raise mismatch("device", actual.device, expected.device)
    if options["check_dtype"] and actual.dtype != expected.dtype:
        raise mismatch("dtype", _dtype_name(actual.dtype), _dtype_name(expected.dtype))
    a, e = _host(actual), _host(expected)
    if a.dtype != e.dtype:
        common = _promote_types(a.dtype, e.dtype)
        a, e = a.astype(common), e.astype(common)
    _compare_values(a, e, rtol, atol, options["equal_nan"], item)


def _compare_values(a: np.ndarray, e: np.ndarray, rtol, atol, equal_nan: bool, item) -> None:
    """PyTorch's isclose of the arrays (of one dtype), and its message where they differ."""
    floating = a.dtype.kind in "fc" or is_bfloat16(a.dtype)
    work = a.dtype if a.dtype.kind in "fc" else np.float32 if floating else np.int64  # (NumPy's bfloat16: float32)
    a, e = a.astype(work, copy=False), e.astype(work, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(a - e)
        matches = (a == e) | (np.isfinite(error) & (error <= atol + np.abs(rtol * e)))
        if equal_nan:
            matches |= np.isnan(a) & np.isnan(e)
    if matches.all():
        return
    if a.ndim == 0:
        raise _Mismatch(AssertionError, _scalar_message(a.item(), e.item(), rtol, atol), item)
    mismatched = int((~matches).sum())
    extra = f"Mismatched elements: {mismatched} / {matches.size} ({mismatched / matches.size:.1%})"
    abs_diff = np.where(matches, 0, error).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_diff = abs_diff / np.abs(e.reshape(-1))
    if not floating:  # PyTorch divides integer differences in its default float dtype
        rel_diff = rel_diff.astype(np.float32)
    rel_diff[matches.reshape(-1)] = 0

    def greatest(diff):  # (the first NaN, if any, as PyTorch's max)
        at = int(np.argmax(diff))
        return diff[at].item(), tuple(int(i) for i in np.unravel_index(at, a.shape))

    message = _difference_message("Tensor-likes", extra, *greatest(abs_diff), *greatest(rel_diff), rtol, atol)
    raise _Mismatch(AssertionError, message, item)


def _compare(actual, expected, options: dict, item=()) -> None:
    """Recurses through sequences and mappings; compares the leaves (None, bools, numbers, tensor-likes)."""
    if all(isinstance(v, collections.abc.Sequence) and not isinstance(v, str) for v in (actual, expected)):
        if len(actual) != len(expected):
            raise _Mismatch(
                AssertionError, f"The length of the sequences mismatch: {len(actual)} != {len(expected)}", item
            )
        for i, (a, e) in enumerate(zip(actual, expected)):
            _compare(a, e, options, (*item, i))
        return
    mapping = collections.abc.Mapping
    if isinstance(actual, mapping) and isinstance(expected, mapping):
        if set(actual) != set(expected):
            missing, additional = set(expected) - set(actual), set(actual) - set(expected)
            raise _Mismatch(
                AssertionError,
                f"The keys of the mappings do not match:\nMissing keys in the actual mapping: {sorted(missing)}\n"
                f"Additional keys in the actual mapping: {sorted(additional)}",
                item,
            )
        try:
            keys = sorted(actual)
        except TypeError:
            keys = list(actual)
        for key in keys:
            _compare(actual[key], expected[key], options, (*item, key))
        return
    if actual is None or expected is None:
        if not (actual is None and expected is None):
            raise _Mismatch(AssertionError, f"None mismatch: {actual} is not {expected}", item)
        return
    booleans = (bool, np.bool_)
    if isinstance(actual, booleans) and isinstance(expected, booleans):
        if bool(actual) is not bool(expected):
            raise _Mismatch(AssertionError, f"Booleans mismatch: {bool(actual)} is not {bool(expected)}", item)
        return
    if all(isinstance(v, (int, float, complex, np.number)) and not isinstance(v, booleans) for v in (actual, expected)):
        number_options = {k: options[k] for k in ("equal_nan", "check_dtype")}
        _compare_numbers(actual, expected, options["rtol"], options["atol"], item=item, **number_options)
        return
    try:
        if isinstance(actual, (Tensor, np.ndarray)) and isinstance(expected, (Tensor, np.ndarray)):
            _compare_tensors(actual, expected, options, item)
            return
    except _Unsupported:
        pass
    raise _Mismatch(
        TypeError, f"No comparison pair was able to handle inputs of type {type(actual)} and {type(expected)}.", item
    )


def assert_close(
    actual,
    expected,
    *,
    allow_subclasses=True,
    rtol=None,
    atol=None,
    equal_nan=False,
    check_device=True,
    check_dtype=True,
    check_layout=True,
    check_stride=False,
    msg=None,
):
    """Asserts that ``actual`` and ``expected`` are close: |actual - expected| <= atol + rtol |expected|
    elementwise (infinities only when equal, NaN only with ``equal_nan``), with PyTorch's defaults per
    dtype (float32 1.3e-6 / 1e-5, float64 1e-7 / 1e-7, bfloat16 1.6e-2 / 1e-5, float16 1e-3 / 1e-5,
    integers and bools exactly) unless both ``rtol`` and ``atol`` are given; tensors must agree in shape
    and (unless told not to check) device, dtype and stride. Tensors, NumPy arrays, Python numbers, bools
    and None, in possibly nested sequences and mappings. ``msg`` (a string, or a function of the message)
    replaces the message. (deepkern has one layout; ``check_layout`` is accepted.)"""
    __tracebackhide__ = True
    options = {
        "allow_subclasses": allow_subclasses,
        "rtol": rtol,
        "atol": atol,
        "equal_nan": equal_nan,
        "check_device": check_device,
        "check_dtype": check_dtype,
        "check_stride": check_stride,
    }
    try:
        _compare(actual, expected, options)
    except _Mismatch as mismatch:
        raise mismatch.error(msg) from None


def _interval(dtype, low, high, lowest: float, highest: float, default_low: float, default_high: float):
    """PyTorch's checks and clamping of make_tensor's [low, high) to what ``dtype`` holds."""
    low = default_low if low is None else low
    high = default_high if high is None else high
    floating = dtype.kind in "fc" or is_bfloat16(dtype)
    if any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        raise ValueError(f"`low` and `high` cannot be NaN, but got low={low} and high={high}")
    if low == high and floating:
        warnings.warn(
            "Passing `low==high` to `torch.testing.make_tensor` for floating or complex types is deprecated since "
            "2.1 and will be removed in 2.3. Use `torch.full(...)` instead.",
            FutureWarning,
            stacklevel=3,
        )
    elif low >= high:
        raise ValueError(f"`low` must be less than `high`, but got {low} >= {high}")
    elif high < lowest or low >= highest:
        raise ValueError(
            f"The value interval specified by `low` and `high` is [{low}, {high}), but {_dtype_name(dtype)} only "
            f"supports [{lowest}, {highest})"
        )
    low, high = min(max(low, lowest), highest), min(max(high, lowest), highest)
    return (low, high) if floating else (math.ceil(low), math.ceil(high))


def make_tensor(
    *shape,
    dtype,
    device,
    low=None,
    high=None,
    requires_grad=False,
    noncontiguous=False,
    exclude_zero=False,
    memory_format=None,
):
    """A tensor of ``shape`` (given as ``make_tensor(2, 3, ...)`` or ``make_tensor((2, 3), ...)``) filled
    with values drawn uniformly from [low, high) by deepkern's default generator: by default [-9, 9) for
    floating and complex dtypes (real and imaginary parts), [-9, 10) for integers, {False, True} for bool,
    the bounds clamped to the dtype's range. ``noncontiguous``: a view of every other element of a tensor
    twice as wide in its last dimension (for more than one element); ``exclude_zero``: zeros replaced by
    the dtype's smallest normal number (1 for integers). deepkern tensors are row-major: ``memory_format``
    must be None."""
    if len(shape) == 1 and isinstance(shape[0], collections.abc.Sequence):
        shape = shape[0]
    shape = tuple(shape)
    dtype = np.dtype(dtype)
    if memory_format is not None:
        if noncontiguous:
            raise ValueError(
                f"The parameters `noncontiguous` and `memory_format` are mutually exclusive, but got "
                f"noncontiguous={noncontiguous} and memory_format={memory_format}"
            )
        raise NotImplementedError("make_tensor: deepkern tensors are row-major; memory_format must be None")
    integral = dtype.kind in "biu"
    if requires_grad and integral:
        raise ValueError(
            f"`requires_grad=True` is not supported for boolean and integral dtypes, but got dtype={_dtype_name(dtype)}"
        )
    noncontiguous = noncontiguous and functools.reduce(lambda x, y: x * y, shape, 1) > 1
    if noncontiguous:
        shape = (*shape[:-1], 2 * shape[-1])
    generator = random.get_generator()
    if dtype.kind == "b":
        low, high = _interval(dtype, low, high, 0, 2, 0, 2)
        values = generator.integers(low, high, shape).astype(dtype)
    elif integral:
        info = np.iinfo(dtype)
        low, high = _interval(dtype, low, high, int(info.min), int(info.max) + (dtype != np.int64), -9, 10)
        values = generator.integers(low, high, shape, dtype=np.int64 if dtype.kind == "i" else np.uint64)
        values = values.astype(dtype)
    elif dtype.kind in "fc" or is_bfloat16(dtype):
        info = _finfo(_real(dtype))
        low, high = _interval(dtype, low, high, float(info.min), float(info.max), -9, 9)
        parts = (2,) if dtype.kind == "c" else ()
        if high - low >= float(info.max):  # the width overflows: draw half of it and double
            values = 2 * generator.uniform(low / 2, high / 2, shape + parts)
        else:
            values = generator.uniform(low, high, shape + parts)
        values = (values[..., 0] + 1j * values[..., 1] if parts else values).astype(dtype)
    else:
        raise TypeError(f"The requested dtype '{_dtype_name(dtype)}' is not supported by make_tensor().")
    if noncontiguous:
        values = values[..., 1::2]
    if exclude_zero:
        values[values == 0] = 1 if integral else _finfo(_real(dtype)).tiny
    result = Tensor._wrap(to_device(values, CPU_DEVICE if device is None else device))
    return result.requires_grad_(requires_grad and not integral)


def _real(dtype):
    """The dtype of a complex dtype's parts (a real dtype itself)."""
    return {"complex64": np.dtype(np.float32), "complex128": np.dtype(np.float64)}.get(dtype.name, dtype)
