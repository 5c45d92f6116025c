"""The elementwise kernels of csrc/cuda/elementwise run on the host (tests/cuda_emulation):
every unary and binary op, where, and every reduction against NumPy in float64 on the same values
(NaN, infinities and -0 among them), over contiguous operands (16-byte accesses and their tails),
strided, reversed and broadcast ones, numbers as operands, in place, and the reductions' three
modes (a thread, a warp or a block per output). Needs the source tree and a C++ compiler, not a GPU;
the problems are small (every GPU thread is a fiber on the host)."""

from __future__ import annotations

import ctypes
import itertools
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)

#: deepkern::cuda::DType codes (csrc/cuda/array.h).
CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.int64): 5, np.dtype(np.bool_): 6}
FLOATS = [np.float32, np.float64]
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-13}


def _op_names(kind: str) -> list:
    """The op names of DK_<KIND>_OPS in csrc/cuda/elementwise/elementwise.h, in enum order."""
    header = Path(__file__).resolve().parents[1] / "csrc" / "cuda" / "elementwise" / "elementwise.h"
    if not header.exists():
        pytest.skip("the source tree (csrc/) is not here")
    text = header.read_text()
    body = re.search(rf"#define DK_{kind}_OPS\(X\)(.*?)(?:\n#define|\n\n)", text, re.S).group(1)
    return re.findall(r"X\((\w+), \w+\)", body)


def _operand(x, keep):
    """The driver's arguments for an operand: data, dtype, ndim, shape, strides, value (a null
    pointer and the number for a number; a null pointer for a missing operand)."""
    if not isinstance(x, np.ndarray):
        dummy = np.zeros(1, np.int64)
        keep.append(dummy)
        return [ctypes.c_void_p(None), 0, 0, dummy, dummy, float(x or 0)]
    shape = np.array(x.shape or (0,), np.int64)
    strides = np.array([s // x.itemsize for s in x.strides] or [0], np.int64)
    keep += [shape, strides]
    return [ctypes.c_void_p(x.__array_interface__["data"][0]), CODES[x.dtype], x.ndim, shape, strides, 0.0]


def _map(kind, op, out, *operands):
    keep = []
    args = [arg for x in (*operands, None, None)[:3] for arg in _operand(x, keep)]
    emulation.load_driver("elementwise").dk_elementwise_map(kind, op, *_operand(out, keep)[:5], *args)


def unary(name, out, a):
    _map(0, _op_names("UNARY").index(name), out, a)


def binary(name, out, a, b):
    _map(1, _op_names("BINARY").index(name), out, a, b)


def where(out, condition, a, b):
    _map(2, 0, out, condition, a, b)


def reduce(name, out, a, axes):
    keep = []
    axes_array = np.array(list(axes) or [0], np.int64)
    emulation.load_driver("elementwise").dk_elementwise_reduce(
        _op_names("REDUCE").index(name), *_operand(out, keep)[:5], *_operand(a, keep)[:5], axes_array, len(axes)
    )


def values(rng, shape, dtype, special=True):
    a = rng.standard_normal(shape) * 3
    if special and a.size > 6:
        flat = a.reshape(-1)
        flat[rng.choice(a.size, 4, replace=False)] = [np.nan, np.inf, -np.inf, -0.0]
    return a.astype(dtype)


def empty(shape, dtype):
    """An output prefilled with NaN (floats) or a value no op gives here."""
    return np.full(shape, np.nan if np.dtype(dtype).kind == "f" else 77, dtype)


def check(got, ref, what, scale=1.0):
    ref = np.asarray(ref)
    assert got.dtype == ref.dtype, f"{what}: dtype {got.dtype}, expected {ref.dtype}"
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, ref, err_msg=what)
        return
    tol = TOL[got.dtype]
    with np.errstate(invalid="ignore"):
        close = np.isclose(got, ref, rtol=tol, atol=0, equal_nan=True)
        close |= np.abs(got.astype(np.float64) - ref) <= tol * np.asarray(scale)
    assert close.all(), f"{what}: {got[~close][:4]} vs {ref[~close][:4]}"


LAYOUTS = [((37,), np.s_[...]), ((5, 9), np.s_[:, ::-2]), ((3, 4, 6), np.s_[::2, 1:, ::3]), ((), np.s_[...])]


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_unary_ops(rng, dtype):
    for name in _op_names("UNARY"):
        if name == "logical_not":
            continue
        numpy_op = np.abs if name == "abs" else getattr(np, name)
        for shape, key in LAYOUTS:
            a = values(rng, shape, dtype)[key]
            with np.errstate(all="ignore"):
                ref = numpy_op(a)
            out = empty(ref.shape, ref.dtype)
            unary(name, out, a)
            check(out, ref, f"{name} {np.dtype(dtype)} {shape}[{key}]")
        row = values(rng, (1, 7), dtype)  # broadcast along the output's rows
        with np.errstate(all="ignore"):
            ref = np.broadcast_to(numpy_op(row), (3, 7))
        out = empty(ref.shape, ref.dtype)
        unary(name, out, row)
        check(out, ref, f"{name} broadcast")


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_binary_ops(rng, dtype):
    for name in _op_names("BINARY"):
        if name.startswith("logical"):
            continue
        numpy_op = getattr(np, name)
        for sa, sb in [((33,), (33,)), ((4, 5), (5,)), ((2, 1, 3), (1, 4, 1)), ((3, 5), ())]:
            a, b = values(rng, sa, dtype), values(rng, sb, dtype)
            if name == "power":
                a = np.abs(a)
            with np.errstate(all="ignore"):
                ref = numpy_op(a, b)
                ref_number = np.broadcast_to(numpy_op(a, dtype(1.5)), ref.shape)
                ref_reflected = np.broadcast_to(numpy_op(dtype(-0.5), a), ref.shape)
            out = empty(ref.shape, ref.dtype)
            binary(name, out, a, b)
            check(out, ref, f"{name} {sa} {sb}")
            out = empty(ref.shape, ref.dtype)
            binary(name, out, a, 1.5)
            check(out, ref_number, f"{name} {sa} with 1.5")
            out = empty(ref.shape, ref.dtype)
            binary(name, out, -0.5, a)
            check(out, ref_reflected, f"{name} -0.5 with {sa}")
        a, b = values(rng, (6, 8), dtype), np.asfortranarray(values(rng, (6, 8), dtype))
        with np.errstate(all="ignore"):
            ref = numpy_op(a[::-1], b)
        out = empty(ref.shape, ref.dtype)
        binary(name, out, a[::-1], b)
        check(out, ref, f"{name} of reversed and strided views")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_], ids=lambda d: np.dtype(d).name)
def test_where(rng, dtype):
    condition = rng.random((4, 6)) < 0.5
    x = (rng.standard_normal((4, 6)) * 5).astype(dtype)
    y = (rng.standard_normal((6,)) * 5).astype(dtype)
    out = empty((4, 6), dtype)
    where(out, condition, x, y)
    check(out, np.where(condition, x, y), "where")
    out = empty((4, 6), dtype)
    where(out, condition[:, :1], 1, x)
    check(out, np.where(condition[:, :1], dtype(1), x), "where with a number")


def test_bool_and_int64_ops(rng):
    p, q = rng.random((5, 7)) < 0.5, rng.random((7,)) < 0.5
    for name in ("logical_and", "logical_or", "logical_xor", "equal", "not_equal"):
        out = empty((5, 7), bool)
        binary(name, out, p, q)
        check(out, getattr(np, name)(p, q), name)
    out = empty((5, 7), bool)
    unary("logical_not", out, p)
    check(out, ~p, "logical_not")
    i, j = rng.integers(-9, 9, (6, 5)), rng.integers(-9, 9, (5,))
    for name in ("add", "subtract", "multiply", "maximum", "minimum", "less", "greater_equal"):
        ref = getattr(np, name)(i, j)
        out = empty(ref.shape, ref.dtype)
        binary(name, out, i, j)
        check(out, ref, f"int64 {name}")
    for name in ("negative", "abs", "sign", "square"):
        out = empty(i.shape, np.int64)
        unary(name, out, i)
        check(out, getattr(np, name)(i), f"int64 {name}")


def test_in_place(rng):
    a = values(rng, (9, 8), np.float32, special=False)
    ref = a + np.float32(1)
    binary("add", a, a, 1.0)
    check(a, ref, "add in place")
    view = a[::2, 1:]
    ref = np.exp(view)
    unary("exp", view, view)
    check(view, ref, "exp in place on a strided view")


REDUCTIONS = _op_names("REDUCE") if Path(__file__).resolve().parents[1].joinpath("csrc").exists() else []


def _reference(name, a, axes):
    """NumPy's reduction over `axes`; argmax/argmin as the flat index over the reduced axes."""
    if name.startswith("arg"):
        kept = [d for d in range(a.ndim) if d not in axes]
        flat = np.moveaxis(a, sorted(axes), range(len(kept), a.ndim)).reshape(*(a.shape[d] for d in kept), -1)
        return getattr(np, name)(flat, axis=-1)
    return getattr(np, name)(a, axis=tuple(axes))


@pytest.mark.parametrize("name", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_reductions(rng, name, dtype):
    a = values(rng, (3, 4, 5), dtype, special=False)
    if name == "prod":
        a = (1 + a / 10).astype(dtype)
    if name in ("max", "min", "argmax", "argmin"):
        a[1, 2, 3] = a[2, 0, 1] = a[2, 0, 4] = np.nan  # NaN wins; the first one's index
    cases = [(a, axes) for k in range(4) for axes in itertools.combinations(range(3), k)]
    cases += [(a[:, ::-1, ::2], (1,)), (a.transpose(2, 0, 1), (0, 2))]  # strided and permuted inputs
    if name != "prod":  # (a long product under- or overflows in an order-dependent way)
        cases.append((values(rng, (2, 4100), dtype, special=False), (1,)))  # a block per output
    cases.append((values(rng, (40, 70), dtype, special=False), (0,)))  # a thread per output
    for x, axes in cases:
        ref = _reference(name, x, axes)
        out = empty(ref.shape, ref.dtype)
        reduce(name, out, x, axes)
        scale = np.sum(np.abs(x.astype(np.float64)), axis=axes) if name in ("sum", "mean") else 1.0
        check(out, ref, f"{name} of {x.shape} over {axes}", scale)


@pytest.mark.parametrize("name", ["sum", "mean", "prod"])
def test_empty_reductions_give_the_identity(name):
    a = np.zeros((0, 3))
    with warnings.catch_warnings():  # NumPy warns of the mean of nothing (NaN)
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = getattr(np, name)(a, axis=0)
    out = empty((3,), np.float64)
    reduce(name, out, a, (0,))
    check(out, ref, f"{name} of nothing")


def test_bool_sum_and_int64_extremes(rng):
    m = rng.random((5, 6)) < 0.3
    out = empty((5,), np.int64)
    reduce("sum", out, m, (1,))
    check(out, m.sum(axis=1), "sum of bools")
    i = rng.integers(-(2**62), 2**62, (7, 6))
    i[3, 2] = np.iinfo(np.int64).min
    for name in ("max", "min", "argmax", "argmin"):
        ref = _reference(name, i, (0,))
        out = empty(ref.shape, np.int64)
        reduce(name, out, i, (0,))
        check(out, ref, f"int64 {name}")


# ---- gather and scatter along an axis (gather.cu) ----------------------------------------------

ALONG_OPS = {"take": 0, "put": 1, "add": 2}


def along_axis(op, a, index, other, axis):
    """Runs the kernel; the index it refused, or None."""
    keep, bad = [], np.zeros(2, np.int64)
    emulation.load_driver("elementwise").dk_along_axis(
        ALONG_OPS[op], *_operand(a, keep)[:5], *_operand(index, keep)[:5], *_operand(other, keep)[:5], axis, bad
    )
    return bad[1] if bad[0] else None


def check_indices(index, extent):
    keep, bad = [], np.zeros(2, np.int64)
    emulation.load_driver("elementwise").dk_check_indices(*_operand(index, keep)[:5], extent, bad)
    return bad[1] if bad[0] else None


def _along_case(rng, ndim):
    """a random array shape, an axis, and an index shape broadcasting with it off the axis."""
    a_shape = tuple(int(n) for n in rng.integers(1, 5, ndim))
    axis = int(rng.integers(ndim))
    index_shape = tuple(
        int(rng.integers(0, 6)) if d == axis else (n if rng.random() < 0.6 else 1) for d, n in enumerate(a_shape)
    )
    if rng.random() < 0.3:  # a broadcast along some other dimension instead
        d = int(rng.integers(ndim))
        if d != axis and index_shape[d] > 1:
            a_shape = a_shape[:d] + (1,) + a_shape[d + 1 :]
    return a_shape, axis, index_shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_], ids=lambda d: np.dtype(d).name)
def test_take_along_axis(rng, dtype):
    for ndim in (1, 2, 3, 4, 2, 3):
        a_shape, axis, index_shape = _along_case(rng, ndim)
        a = (rng.standard_normal(a_shape) * 5).astype(dtype)
        index = rng.integers(-a_shape[axis], a_shape[axis], index_shape)
        ref = np.take_along_axis(a, index, axis)
        out = empty(ref.shape, dtype)
        assert along_axis("take", a, index, out, axis) is None
        check(out, ref, f"take {a_shape} {index_shape} axis {axis}")
    a = values(rng, (6, 8), dtype, special=False).astype(dtype)[::-1, ::2]  # strided input and index
    index = rng.integers(-4, 4, (9, 6)).T[:, ::2]
    out = empty(index.shape, dtype)
    assert along_axis("take", a, index, out, 1) is None
    check(out, np.take_along_axis(a, index, 1), "take from strided views")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64], ids=lambda d: np.dtype(d).name)
def test_put_along_axis(rng, dtype):
    for ndim in (1, 2, 3, 3):
        a_shape = tuple(int(n) for n in rng.integers(1, 6, ndim))
        axis = int(rng.integers(ndim))
        k = int(rng.integers(0, a_shape[axis] + 1))  # distinct targets along the axis: no repeats
        picks = np.argsort(rng.random(a_shape), axis=axis)
        index = np.take(picks, np.arange(k), axis=axis) - a_shape[axis] * (rng.random() < 0.5)
        a = (rng.standard_normal(a_shape) * 5).astype(dtype)
        v = (rng.standard_normal(index.shape[-1:] if rng.random() < 0.5 else index.shape) * 5).astype(dtype)
        ref = a.copy()
        np.put_along_axis(ref, index, v, axis)
        assert along_axis("put", a, index, v, axis) is None
        check(a, ref, f"put {a_shape} axis {axis} {k} picks")


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_add_at_accumulates_repeated_indices(rng, dtype):
    for ndim in (1, 2, 3):
        a_shape, axis, index_shape = _along_case(rng, ndim)
        a = values(rng, a_shape, dtype, special=False)
        index = rng.integers(-a_shape[axis], a_shape[axis], index_shape)  # repeats among them
        shape = np.broadcast_shapes(a_shape[:axis] + (1,) + a_shape[axis + 1 :], index_shape)
        v = values(rng, shape, dtype, special=False)
        key = [np.minimum(k, n - 1) for k, n in zip(np.indices(shape, sparse=True), a_shape)]
        key[axis] = np.broadcast_to(index, shape)
        ref = a.astype(np.float64)
        np.add.at(ref, tuple(key), v)
        assert along_axis("add", a, index, v, axis) is None
        scale = np.abs(a).astype(np.float64)
        np.add.at(scale, tuple(key), np.abs(v))
        check(a, ref.astype(dtype), f"add.at {a_shape} {index_shape} axis {axis}", scale)
    a = np.zeros((3, 4), dtype)  # every row added into row 1 many times
    index = np.ones((50, 1), np.int64)
    v = values(rng, (50, 4), dtype, special=False)
    assert along_axis("add", a, index, v, 0) is None
    ref = np.zeros((3, 4))
    ref[1] = v.astype(np.float64).sum(axis=0)
    check(a, ref.astype(dtype), "add.at into one row", np.abs(v).sum(axis=0))


def test_bad_indices_are_recorded_not_used(rng):
    a = values(rng, (3, 5), np.float32, special=False)
    for bad_value in (5, -6, 1 << 40):
        index = rng.integers(-5, 5, (3, 4))
        index[2, 1] = bad_value
        out = empty((3, 4), np.float32)
        assert along_axis("take", a, index, out, 1) == bad_value
        assert check_indices(index, 5) == bad_value
        before = a.copy()
        assert along_axis("add", a, index, np.ones((3, 4), np.float32), 1) == bad_value
        good = np.ones((3, 4), bool)
        good[2, 1] = False
        ref = before.astype(np.float64)
        np.add.at(ref, (np.broadcast_to(np.arange(3)[:, None], (3, 4))[good], index[good]), 1.0)
        check(a, ref.astype(np.float32), "add.at skips the bad index")
    assert check_indices(rng.integers(-5, 5, (4, 3)).T, 5) is None
    assert check_indices(np.zeros((2, 3), np.int64), 0) == 0  # nothing is in bounds of an empty axis


def test_empty_along_axis():
    a = np.ones((3, 0), np.float64)
    out = empty((3, 0), np.float64)
    assert along_axis("take", a, np.zeros((3, 0), np.int64), out, 1) is None
    assert along_axis("add", np.ones((2, 3)), np.zeros((0, 3), np.int64), np.ones((0, 3)), 0) is None
    assert check_indices(np.zeros((0, 3), np.int64), 0) is None
