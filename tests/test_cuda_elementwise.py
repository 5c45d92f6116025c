"""Elementwise maps and reductions on device arrays through NumPy's protocols (ufuncs, array
functions, operators, methods), against NumPy in float64 on the same values.

Every test runs on 'cuda' (the kernels; skipped, with the reason, where no GPU is usable) and on
'standin' (tests/cuda_standin.py: host memory and NumPy behind the compiled module's op tables),
which checks the Python dispatch (dtypes, broadcasting, out=, axes, views) on every machine."""

from __future__ import annotations

import itertools
import re
import warnings

import deepkern as dk
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")

if dk.cuda.is_compiled():
    import cuda_standin
    from deepkern import _cuda
    from deepkern.backends import cuda_numpy

GPU = dk.cuda.is_compiled() and dk.cuda.is_available()


@pytest.fixture(
    params=[
        "standin",
        pytest.param(
            "cuda",
            marks=[pytest.mark.cuda, pytest.mark.skipif(not GPU, reason="no usable GPU")],
        ),
    ]
)
def dev(request):
    return request.param


def put(dev, a):
    a = np.asarray(a)
    return cuda_standin.StandInArray(a.copy()) if dev == "standin" else _cuda.from_cpu(a)


def get(x):
    assert type(x) in (cuda_standin.StandInArray, _cuda.DeviceArray), f"got {type(x).__name__}"
    return x.to_cpu()


TOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-14}
FLOATS = [np.float32, np.float64]


def assert_matches(got, ref, dtype, what="", scale=1.0):
    """``got`` (a device array) has ``ref``'s shape and ``dtype``, and its values are ``ref``'s
    (float64) within a few units of ``dtype``'s rounding, relative to ref or to ``scale`` (the
    magnitude rounding errors grow with: the sum of |terms| for a sum); NaN where ref is NaN,
    infinities equal."""
    host = get(got)
    dtype = np.dtype(dtype)
    assert host.dtype == dtype, f"{what}: dtype {host.dtype}, expected {dtype}"
    assert host.shape == np.shape(ref), f"{what}: shape {host.shape}, expected {np.shape(ref)}"
    if dtype.kind in "biu":
        np.testing.assert_array_equal(host, ref, err_msg=what)
        return
    ref = np.asarray(ref, np.float64)
    atol = 4 * TOL[dtype] * np.asarray(scale, np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite (isclose has them equal)
        close = np.isclose(host.astype(np.float64), ref, rtol=4 * TOL[dtype], atol=0, equal_nan=True)
        close |= np.abs(host.astype(np.float64) - ref) <= atol
    assert close.all(), (
        f"{what}: {np.count_nonzero(~close)} elements differ, e.g. {host[~close][:3]} vs {ref[~close][:3]}"
    )


def values(rng, shape, dtype, special=True):
    """Random values of ``dtype`` with NaN, +-Inf and +-0 among them (when ``special``)."""
    a = rng.standard_normal(shape) * 3
    if special and a.size >= 6:
        flat = a.reshape(-1)
        picks = rng.choice(a.size, 6, replace=False)
        flat[picks] = [np.nan, np.inf, -np.inf, 0.0, -0.0, np.nan]
    return a.astype(dtype)


# ---- ufuncs ------------------------------------------------------------------------------------

UNARY = [np.negative, np.abs, np.sign, np.exp, np.log, np.sqrt, np.tanh, np.square, np.reciprocal]
UNARY += [np.log1p, np.expm1, np.sin, np.cos, np.isnan, np.isinf, np.isfinite]
SHAPES = [(), (0,), (1,), (7,), (3, 5), (2, 0, 3), (4, 1, 33)]


@pytest.mark.parametrize("ufunc", UNARY, ids=lambda u: u.__name__)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_unary_ufuncs(dev, rng, ufunc, dtype):
    for shape in SHAPES:
        a = values(rng, shape, dtype)
        with np.errstate(all="ignore"):
            ref = ufunc(a.astype(np.float64))
            expected_dtype = ufunc(a).dtype
        assert_matches(ufunc(put(dev, a)), ref, expected_dtype, f"{ufunc.__name__}{shape}")


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_unary_on_strided_and_reversed_views(dev, rng, dtype):
    a = values(rng, (9, 14), dtype)
    d = put(dev, a)
    for key in [(slice(None, None, 2), slice(1, None, 3)), (slice(None, None, -1), slice(None, None, -2))]:
        assert_matches(np.exp(d[key]), np.exp(a[key].astype(np.float64)), dtype, f"exp of view {key}")
    assert_matches(-d.T, -a.T.astype(np.float64), dtype, "negative of transpose")
    assert_matches(abs(d[::-1]), np.abs(a[::-1]), dtype, "abs of reversed")


BINARY = [np.add, np.subtract, np.multiply, np.divide, np.power, np.maximum, np.minimum, np.logaddexp]
COMPARE = [np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal]
PAIRS = [((5,), (5,)), ((3, 4), (4,)), ((2, 1, 3), (1, 5, 1)), ((0, 3), (1, 3)), ((1,), ()), ((4, 1), (0,))]


@pytest.mark.parametrize("ufunc", BINARY + COMPARE, ids=lambda u: u.__name__)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_binary_ufuncs_broadcast(dev, rng, ufunc, dtype):
    for sa, sb in PAIRS:
        a, b = values(rng, sa, dtype), values(rng, sb, dtype)
        if ufunc is np.power:
            a = np.abs(a)  # a real result where the exponent is fractional
        with np.errstate(all="ignore"):
            ref = ufunc(a.astype(np.float64), b.astype(np.float64))
            expected_dtype = ufunc(a, b).dtype
        assert_matches(ufunc(put(dev, a), put(dev, b)), ref, expected_dtype, f"{ufunc.__name__}{sa}{sb}")


@pytest.mark.parametrize("ufunc", BINARY + COMPARE, ids=lambda u: u.__name__)
def test_binary_with_numbers_keeps_the_array_dtype(dev, rng, ufunc):
    a = np.abs(values(rng, (3, 7), np.float32, special=False)) + 0.5
    d = put(dev, a)
    a64 = a.astype(np.float64)
    for number in (2, 0.5, -1.25, True):
        n32 = float(np.float32(number))  # the number as the float32 kernel sees it
        with np.errstate(all="ignore"):
            for got, ref, dtype in [
                (ufunc(d, number), ufunc(a64, n32), ufunc(a, number).dtype),
                (ufunc(number, d), ufunc(n32, a64), ufunc(number, a).dtype),
            ]:
                assert dtype in (np.float32, np.bool_)  # Python numbers are weak: float32 stays
                assert_matches(got, ref, dtype, f"{ufunc.__name__} with {number!r}")


def test_operators(dev, rng):
    a, b = values(rng, (4, 6), np.float64), values(rng, (6,), np.float64)
    x, y = put(dev, a), put(dev, b)
    with np.errstate(all="ignore"):
        cases = {
            "x + y": (x + y, a + b),
            "2 - x": (2 - x, 2 - a),
            "x * 3": (x * 3, a * 3),
            "1 / x": (1 / x, 1 / a),
            "x / y": (x / y, a / b),
            "abs(x) ** 0.5": (abs(x) ** 0.5, np.abs(a) ** 0.5),
            "2 ** y": (2**y, 2**b),
            "-x": (-x, -a),
            "x < y": (x < y, a < b),
            "x >= 0": (x >= 0, a >= 0),
            "x == y": (x == y, a == b),
            "x != x": (x != x, a != a),
            "(x > 0) & (y < 0)": ((x > 0) & (y < 0), (a > 0) & (b < 0)),
            "(x > 0) | (y < 0)": ((x > 0) | (y < 0), (a > 0) | (b < 0)),
            "(x > 0) ^ (y < 0)": ((x > 0) ^ (y < 0), (a > 0) ^ (b < 0)),
            "~(x > 0)": (~(x > 0), ~(a > 0)),
        }
    for what, (got, ref) in cases.items():
        assert_matches(got, ref, ref.dtype, what)


def test_in_place_operators_write_the_array(dev, rng):
    a, b = values(rng, (5, 3), np.float32, special=False), values(rng, (3,), np.float32, special=False)
    x, y = put(dev, a), put(dev, b)
    before = x
    x += y
    x *= 2
    x -= 1.5
    x /= y
    assert x is before
    assert_matches(x, (((a.astype(np.float64) + b) * 2) - 1.5) / b, np.float32, "in place chain")
    view = x[1:4, ::-1]
    view += 100
    host = get(x)
    expected = ((((a.astype(np.float64) + b) * 2) - 1.5) / b).astype(np.float32)
    expected[1:4, ::-1] += np.float32(100)
    np.testing.assert_allclose(host, expected, rtol=1e-6)


def test_out_argument(dev, rng):
    a, b = values(rng, (3, 4), np.float64), values(rng, (4,), np.float64)
    x, y = put(dev, a), put(dev, b)
    out = put(dev, np.full((3, 4), np.nan))
    assert np.add(x, y, out=out) is out
    assert_matches(out, a + b, np.float64, "add out=")
    wide = put(dev, np.full((2, 3, 4), np.nan))
    assert np.multiply(x, y, out=(wide,)) is wide  # inputs broadcast to out's shape
    assert_matches(wide, np.broadcast_to(a * b, (2, 3, 4)), np.float64, "multiply out= broadcast")
    flags = put(dev, np.zeros((3, 4), bool))
    np.less(x, y, out=flags)
    assert_matches(flags, a < b, np.bool_, "less out=")
    with pytest.raises(ValueError, match="shape|broadcast"):
        np.add(x, y, out=put(dev, np.zeros((4, 3))))
    with pytest.raises(TypeError, match="cannot write"):
        np.add(x, y, out=flags)  # float64 into bool is not a same-kind cast


def test_out_overlapping_an_input_reads_the_input_first(dev, rng):
    a = values(rng, (6, 6), np.float64, special=False)
    x = put(dev, a)
    np.add(x, x.T, out=x)  # out shares memory with x.T without being it
    assert_matches(x, a + a.T, np.float64, "x += x.T")


def test_logical_ufuncs(dev, rng):
    p, q = rng.random((4, 5)) < 0.5, rng.random((5,)) < 0.5
    x, y = put(dev, p), put(dev, q)
    for ufunc in (np.logical_and, np.logical_or, np.logical_xor, np.equal, np.not_equal):
        assert_matches(ufunc(x, y), ufunc(p, q), np.bool_, ufunc.__name__)
    assert_matches(np.logical_not(x), ~p, np.bool_, "logical_not")
    a = values(rng, (4, 5), np.float32)
    assert_matches(np.logical_and(put(dev, a), y), np.logical_and(a, q), np.bool_, "logical_and of floats")


def test_maximum_minimum_propagate_nan(dev):
    a = np.array([np.nan, 1.0, np.nan, -np.inf, 2.0])
    b = np.array([0.0, np.nan, np.nan, 1.0, np.inf])
    for ufunc in (np.maximum, np.minimum):
        assert_matches(ufunc(put(dev, a), put(dev, b)), ufunc(a, b), np.float64, ufunc.__name__)


def test_where(dev, rng):
    for sc, sx, sy in [((4, 5), (4, 5), (4, 5)), ((4, 1), (5,), ()), ((0, 3), (1, 3), (3,)), ((), (2, 2), (2, 2))]:
        c = rng.random(sc) < 0.5
        x, y = values(rng, sx, np.float32), values(rng, sy, np.float32)
        got = np.where(put(dev, c), put(dev, x), put(dev, y))
        assert_matches(got, np.where(c, x, y), np.float32, f"where {sc} {sx} {sy}")
    c = rng.random((3, 4)) < 0.5
    x = values(rng, (3, 4), np.float64)
    assert_matches(np.where(put(dev, c), put(dev, x), 0), np.where(c, x, 0), np.float64, "where(c, x, 0)")
    assert_matches(np.where(put(dev, c), 1.5, put(dev, x)), np.where(c, 1.5, x), np.float64, "where(c, 1.5, x)")
    assert_matches(np.where(put(dev, x), 1.0, 0.0), np.where(x, 1.0, 0.0), np.float64, "where(float cond)")


# ---- reductions --------------------------------------------------------------------------------

REDUCTIONS = ["sum", "mean", "max", "min", "prod", "argmax", "argmin"]


def all_axis_sets(ndim):
    return [None] + [c for k in range(ndim + 1) for c in itertools.combinations(range(ndim), k)]


@pytest.mark.parametrize("op", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_reductions_over_every_axis_set(dev, rng, op, dtype):
    for shape in [(3, 4, 5), (2, 1, 7)]:
        a = values(rng, shape, dtype, special=False)
        if op == "prod":
            a = (1 + a / 10).astype(dtype)
        d = put(dev, a)
        axis_sets = all_axis_sets(len(shape))
        if op in ("argmax", "argmin"):
            axis_sets = [None, *range(len(shape))]
        for axis, keepdims in itertools.product(axis_sets, (False, True)):
            ref = getattr(np, op)(a.astype(np.float64), axis=axis, keepdims=keepdims)
            expected_dtype = getattr(np, op)(a, axis=axis, keepdims=keepdims).dtype
            what = f"{op}{shape} axis={axis} keepdims={keepdims}"
            scale = np.sum(np.abs(a.astype(np.float64)), axis=axis, keepdims=keepdims) if op == "sum" else 1.0
            scale = np.mean(np.abs(a.astype(np.float64)), axis=axis, keepdims=keepdims) if op == "mean" else scale
            assert_matches(getattr(np, op)(d, axis=axis, keepdims=keepdims), ref, expected_dtype, what, scale)
            assert_matches(getattr(d, op)(axis=axis, keepdims=keepdims), ref, expected_dtype, what + " method", scale)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_long_reductions_and_strided_inputs(dev, rng, dtype):
    a = values(rng, (3, 9001), dtype, special=False)
    d = put(dev, a)
    tol_sum = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}[np.dtype(dtype)]
    got = get(d.sum(axis=1))
    ref = a.astype(np.float64).sum(axis=1)
    assert np.max(np.abs(got - ref)) <= tol_sum * np.abs(a.astype(np.float64)).sum(axis=1).max()
    for op in ("max", "min", "argmax", "argmin"):
        assert_matches(getattr(d, op)(axis=1), getattr(a, op)(axis=1), getattr(a, op)(axis=1).dtype, op)
        view = d[:, ::-3]
        ref_view = a[:, ::-3]
        assert_matches(
            getattr(view, op)(axis=1), getattr(ref_view, op)(axis=1), getattr(ref_view, op)(axis=1).dtype, op
        )
    t = d.T  # (9001, 3): the reduced axis is the strided one
    assert_matches(t.max(axis=0), a.T.max(axis=0), dtype, "max over a transposed axis")


def test_reductions_propagate_nan(dev, rng):
    a = values(rng, (4, 6), np.float64, special=False)
    a[1, 2] = a[1, 4] = a[3, 0] = np.nan
    d = put(dev, a)
    for op in ("max", "min", "sum", "mean"):
        for axis in (None, 0, 1):
            assert_matches(getattr(d, op)(axis=axis), getattr(a, op)(axis=axis), np.float64, f"{op} axis={axis}")
    for op in ("argmax", "argmin"):  # the first NaN's index
        for axis in (None, 0, 1):
            ref = getattr(np, op)(a, axis=axis)
            assert_matches(getattr(np, op)(d, axis=axis), ref, np.int64, f"{op} axis={axis}")


def test_empty_reductions(dev):
    a = np.zeros((0, 3))
    d = put(dev, a)
    assert_matches(d.sum(axis=0), a.sum(axis=0), np.float64, "sum of empty")
    assert_matches(np.prod(d, axis=0), np.prod(a, axis=0), np.float64, "prod of empty")
    with warnings.catch_warnings():  # NumPy warns of the empty mean it computes
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = a.mean(axis=0)
    assert_matches(d.mean(axis=0), ref, np.float64, "mean of empty (NaN)")
    assert_matches(d.max(axis=1), a.max(axis=1), np.float64, "max over a non-empty axis of no rows")
    for op in ("max", "min", "argmax"):
        with pytest.raises(ValueError, match="zero-size|empty|identity"):
            getattr(d, op)(axis=0)


def test_ufunc_reduce_and_out(dev, rng):
    a = values(rng, (3, 4), np.float32, special=False)
    d = put(dev, a)
    assert_matches(np.add.reduce(d), np.add.reduce(a.astype(np.float64)), np.float32, "add.reduce (axis 0)")
    assert_matches(np.maximum.reduce(d, axis=1), a.max(axis=1), np.float32, "maximum.reduce")
    out = put(dev, np.full((1, 4), np.nan, np.float32))
    assert np.sum(d, axis=0, keepdims=True, out=out) is out
    assert_matches(out, a.astype(np.float64).sum(axis=0, keepdims=True), np.float32, "sum out=")


def test_bool_sum_any_all(dev, rng):
    m = rng.random((5, 6)) < 0.3
    d = put(dev, m)
    assert_matches(d.sum(), m.sum(), np.int64, "sum of bools")
    assert_matches(np.sum(d, axis=1), m.sum(axis=1), np.int64, "sum of bools axis=1")
    assert_matches(d.any(axis=0), m.any(axis=0), np.bool_, "any")
    assert_matches(np.all(d, axis=1), m.all(axis=1), np.bool_, "all")
    assert bool(d.any()) == m.any() and float(d.sum()) == m.sum()


# ---- array functions ---------------------------------------------------------------------------


def test_shape_functions_give_numpys_views(dev, rng):
    a = values(rng, (2, 3, 4), np.float64)
    d = put(dev, a)
    cases = {
        "broadcast_to": (np.broadcast_to(put(dev, a[:, :1]), (5, 2, 3, 4)), np.broadcast_to(a[:, :1], (5, 2, 3, 4))),
        "reshape": (np.reshape(d, (6, 4)), a.reshape(6, 4)),
        "reshape of a transpose": (np.reshape(d.T, -1), a.T.reshape(-1)),
        "reshape of a view": (np.reshape(d[:, ::2], (2, -1)), a[:, ::2].reshape(2, -1)),
        "transpose": (np.transpose(d, (1, 2, 0)), a.transpose(1, 2, 0)),
        "swapaxes": (np.swapaxes(d, 0, 2), a.swapaxes(0, 2)),
        "moveaxis": (np.moveaxis(d, 0, -1), np.moveaxis(a, 0, -1)),
        "moveaxis pairs": (np.moveaxis(d, (0, 1), (2, 0)), np.moveaxis(a, (0, 1), (2, 0))),
        "expand_dims": (np.expand_dims(d, 1), np.expand_dims(a, 1)),
        "expand_dims tuple": (np.expand_dims(d, (0, -1)), np.expand_dims(a, (0, -1))),
        "squeeze": (np.squeeze(put(dev, a[:1, :, :1])), np.squeeze(a[:1, :, :1])),
        "squeeze axis": (put(dev, a[:1]).squeeze(0), a[:1].squeeze(0)),
        "stack": (np.stack([d, d * 2], axis=1), np.stack([a, a * 2], axis=1)),
        "concatenate": (np.concatenate([d, d[:, :1]], axis=1), np.concatenate([a, a[:, :1]], axis=1)),
        "concatenate None": (np.concatenate([d, d], axis=None), np.concatenate([a, a], axis=None)),
        "clip": (np.clip(d, -1, 0.5), np.clip(a, -1, 0.5)),
        "ravel": (d.T.ravel(), a.T.ravel()),
    }
    for what, (got, ref) in cases.items():
        assert_matches(got, ref, np.float64, what)
    for got, ref in zip(np.split(d, [1, 3], axis=2), np.split(a, [1, 3], axis=2)):
        assert_matches(got, ref, np.float64, "split")
    for got, ref in zip(np.split(d, 3, axis=1), np.split(a, 3, axis=1)):
        assert_matches(got, ref, np.float64, "split in sections")
    assert np.shape(d) == a.shape and np.ndim(d) == 3 and np.size(d) == a.size


def test_like_functions(dev, rng):
    d = put(dev, values(rng, (3, 2), np.float32))
    assert_matches(np.zeros_like(d), np.zeros((3, 2)), np.float32, "zeros_like")
    assert_matches(np.ones_like(d, dtype=np.float64), np.ones((3, 2)), np.float64, "ones_like")
    assert_matches(np.full_like(d, 7.5), np.full((3, 2), 7.5), np.float32, "full_like")
    e = np.empty_like(d)
    assert e.shape == (3, 2) and e.dtype == np.float32 and type(e) is type(d)


# ---- gather and scatter ------------------------------------------------------------------------


def _along_case(rng, ndim):
    """A random array shape, an axis, and an index shape that broadcasts with it off the axis."""
    a_shape = tuple(int(n) for n in rng.integers(1, 5, ndim))
    axis = int(rng.integers(ndim))
    index_shape = tuple(
        int(rng.integers(0, 5)) if d == axis else (n if rng.random() < 0.6 else 1) for d, n in enumerate(a_shape)
    )
    return a_shape, axis, index_shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_], ids=lambda d: np.dtype(d).name)
def test_take_along_axis(dev, rng, dtype):
    for ndim in (1, 2, 3, 4, 3):
        a_shape, axis, index_shape = _along_case(rng, ndim)
        a = (rng.standard_normal(a_shape) * 5).astype(dtype)
        index = rng.integers(-a_shape[axis], a_shape[axis], index_shape)  # negative ones count from the end
        for ax in (axis, axis - ndim):
            got = np.take_along_axis(put(dev, a), put(dev, index), axis=ax)
            assert_matches(got, np.take_along_axis(a, index, ax), dtype, f"take {a_shape} {index_shape} axis {ax}")
    a = rng.standard_normal((2, 6, 3))
    index = rng.integers(-6, 6, (2, 4, 1)).astype(np.int32)  # broadcast along the last axis; int32 indices
    assert_matches(np.take_along_axis(put(dev, a), put(dev, index), 1), np.take_along_axis(a, index, 1), np.float64)
    flat = rng.integers(-36, 36, (7,))
    assert_matches(np.take_along_axis(put(dev, a), put(dev, flat), None), np.take_along_axis(a, flat, None), np.float64)
    strided = a.transpose(2, 0, 1)[:, :, ::2]
    index = rng.integers(0, 3, (3, 2, 5))
    got = np.take_along_axis(put(dev, a).transpose(2, 0, 1)[:, :, ::2], put(dev, index), 2)
    assert_matches(got, np.take_along_axis(strided, index, 2), np.float64, "take from a strided view")
    empty = np.take_along_axis(put(dev, a), put(dev, np.zeros((2, 0, 3), np.int64)), 1)
    assert_matches(empty, np.zeros((2, 0, 3)), np.float64, "take nothing")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64], ids=lambda d: np.dtype(d).name)
def test_put_along_axis(dev, rng, dtype):
    for ndim in (1, 2, 3, 3):
        a_shape = tuple(int(n) for n in rng.integers(1, 6, ndim))
        axis = int(rng.integers(ndim))
        picks = np.argsort(rng.random(a_shape), axis=axis)  # distinct targets along the axis
        k = int(rng.integers(0, a_shape[axis] + 1))
        index = np.take(picks, np.arange(k), axis=axis) - a_shape[axis] * int(rng.integers(2))
        a = (rng.standard_normal(a_shape) * 5).astype(dtype)
        for v in ((rng.standard_normal(index.shape) * 5).astype(dtype), dtype(3), 2.5):
            ref = a.copy()
            np.put_along_axis(ref, index, v, axis)
            d = put(dev, a)
            assert np.put_along_axis(d, put(dev, index), put(dev, v) if isinstance(v, np.ndarray) else v, axis) is None
            assert_matches(d, ref, dtype, f"put {a_shape} axis {axis} {k} picks of {type(v).__name__}")
    a = np.zeros((3, 4), dtype)
    index = np.array([0, -1, 5])
    ref = a.copy()
    np.put_along_axis(ref, index, np.arange(3, dtype=dtype), None)
    d = put(dev, a)
    np.put_along_axis(d, put(dev, index), put(dev, np.arange(3, dtype=dtype)), None)
    assert_matches(d, ref, dtype, "put into the flattened array")


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_add_at_accumulates_repeated_indices(dev, rng, dtype):
    a = values(rng, (5, 4, 3), dtype, special=False)
    rows = rng.integers(-5, 5, (17,))  # an embedding's backward: repeated rows accumulate
    cols = rng.integers(-4, 4, (2, 6))
    cases = [
        (rows, values(rng, (17, 4, 3), dtype, special=False)),
        ((slice(None), cols), values(rng, (5, 2, 6, 3), dtype, special=False)),
        ((slice(None), slice(None), 2), values(rng, (5, 4), dtype, special=False)),
        ((-1, Ellipsis), values(rng, (3,), dtype, special=False)),  # broadcast values
        (rows, 1.5),
        (rows[:0], values(rng, (0, 4, 3), dtype, special=False)),
    ]
    for key, v in cases:
        ref = a.astype(np.float64)
        scale = np.abs(ref)
        np.add.at(ref, key, v)
        np.add.at(scale, key, np.abs(v))
        d = put(dev, a)
        dkey = tuple(put(dev, k) if isinstance(k, np.ndarray) else k for k in key) if isinstance(key, tuple) else key
        dkey = put(dev, dkey) if isinstance(dkey, np.ndarray) else dkey
        assert np.add.at(d, dkey, put(dev, v) if isinstance(v, np.ndarray) else v) is None
        assert_matches(d, ref, dtype, f"add.at {key!r}", scale)


def test_bad_indices_are_refused_and_nothing_written(dev, rng):
    a = values(rng, (3, 5), np.float32, special=False)
    index = rng.integers(-5, 5, (3, 2))
    index[1, 1] = 7
    d = put(dev, a)
    with pytest.raises(IndexError, match="index 7 is out of bounds for axis 1 with size 5"):
        np.take_along_axis(d, put(dev, index), 1)
    with pytest.raises(IndexError, match="index 7 is out of bounds for axis 1 with size 5"):
        np.put_along_axis(d, put(dev, index), 1.0, 1)
    with pytest.raises(IndexError, match="index -4 is out of bounds for axis 0 with size 3"):
        np.add.at(d, put(dev, np.array([0, -4, 2])), 1.0)
    assert_matches(d, a, np.float32, "a after the refused scatters")
    with pytest.raises(IndexError, match="integer"):
        np.take_along_axis(d, put(dev, np.zeros((3, 2))), 1)
    with pytest.raises(ValueError):
        np.take_along_axis(d, put(dev, np.zeros((2,), np.int64)), 1)
    with pytest.raises(NotImplementedError, match="add.at.*cuda"):
        np.add.at(d, (put(dev, index), put(dev, index)), 1.0)
    with pytest.raises(NotImplementedError, match="add.at.*int64.*cuda"):
        np.add.at(put(dev, np.zeros(3, np.int64)), put(dev, np.array([0])), 1)


def test_gather_scatter_tensor_ops_match_the_cpu(tensor_device, rng):
    x = rng.standard_normal((6, 5)).astype(np.float32)
    labels = rng.integers(0, 5, (6,))
    labels[2] = -100
    results = {}
    for device in ("cpu", tensor_device):
        a = dk.tensor(x, device=device, requires_grad=True)
        values, indices = a.max(dim=1)
        F = dk.nn.functional
        t = dk.tensor(labels, device=device)
        loss = values.sum() + F.cross_entropy(a, t, label_smoothing=0.1) + F.nll_loss(F.log_softmax(a, dim=1), t)
        loss.backward()
        results[device] = [v.cpu().numpy() for v in (loss.detach(), indices, a.grad)]
    for what, cpu, other in zip(("loss", "indices", "a.grad"), results["cpu"], results[tensor_device]):
        assert other.dtype == cpu.dtype and other.shape == cpu.shape, what
        np.testing.assert_allclose(other, cpu, rtol=1e-5, atol=1e-6, err_msg=what)


# ---- what is refused ---------------------------------------------------------------------------


def test_unsupported_functions_name_the_function_and_cuda(dev, rng):
    d = put(dev, values(rng, (3, 4), np.float32))
    for call, name in [
        (lambda: np.cumsum(d), "cumsum"),
        (lambda: np.multiply.at(d, 0, 1.0), "multiply.at"),
        (lambda: np.add.accumulate(d), "add.accumulate"),
        (lambda: np.arctan2(d, d), "arctan2"),
        (lambda: np.where(d > 0), "where"),
        (lambda: np.take(d, 0), "take"),
        (lambda: np.exp(d, where=d > 0), "where="),
    ]:
        with pytest.raises(NotImplementedError, match=f"{name}.*cuda"):
            call()


def test_host_arrays_are_refused_not_copied(dev, rng):
    a = values(rng, (3,), np.float32)
    d = put(dev, a)
    for call in (lambda: d + a, lambda: a + d, lambda: np.add(d, a), lambda: np.where(d > 0, a, d)):
        with pytest.raises(TypeError, match="cuda.*ndarray|ndarray.*cuda"):
            call()
    with pytest.raises(TypeError):
        np.asarray(d)


def test_no_kernel_for_a_dtype_is_named(dev):
    d = put(dev, np.arange(4, dtype=np.int64))
    assert_matches(d + 1, np.arange(4) + 1, np.int64, "int64 add")
    assert_matches(d.max(), np.int64(3), np.int64, "int64 max")
    with pytest.raises(NotImplementedError, match="np.add has no kernel for int32 on device 'cuda'"):
        np.add(put(dev, np.zeros(3, np.int32)), put(dev, np.zeros(3, np.int32)))
    with pytest.raises(NotImplementedError, match="np.negative has no kernel for float16 on device 'cuda'"):
        -put(dev, np.zeros(3, np.float16))


def test_ambiguous_truth_value(dev):
    d = put(dev, np.zeros(3))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(d)
    assert not bool(put(dev, np.zeros(1)))


@pytest.mark.cuda
@pytest.mark.skipif(not GPU, reason="no usable GPU")
def test_binding_checks_name_the_arguments():
    f32 = _cuda.from_cpu(np.ones((3, 4), np.float32))
    f64 = _cuda.from_cpu(np.ones((3, 4), np.float64))
    out = _cuda.empty((3, 4), np.float32)
    i64 = _cuda.from_cpu(np.zeros((3, 4), np.int64))
    idx = _cuda.from_cpu(np.array([[0, -1]] * 3, np.int64))
    bad = _cuda.from_cpu(np.array([[0, -5]] * 3, np.int64))
    cases = [
        (lambda: _cuda.binary("nope", out, f32, f32), ValueError, "unknown op 'nope'"),
        (lambda: _cuda.binary("add", out, f32, f64), TypeError, "a is float32 and b float64"),
        (lambda: _cuda.binary("add", _cuda.empty((3, 4), np.float64), f32, 1.0), TypeError, "out is float64"),
        (lambda: _cuda.binary("less", out, f32, f32), TypeError, "out is float32, expected bool"),
        (lambda: _cuda.binary("add", _cuda.empty((4, 3), np.float32), f32, 1), ValueError, "a of shape"),
        (lambda: _cuda.binary("add", out, f32, np.ones(4)), TypeError, "b must be a DeviceArray or a real number"),
        (lambda: _cuda.binary("add", out, 1.0, 2.0), TypeError, "a or b must be a DeviceArray"),
        (lambda: _cuda.unary("exp", out, _cuda.empty((3, 4), np.int64)), TypeError, "no CUDA kernel for int64"),
        (lambda: _cuda.binary("add", f32[:, 1:], f32[:, :3], 1.0), ValueError, "out overlaps a"),
        (lambda: _cuda.unary("exp", _cuda.broadcast_view(out[:1], [3, 4]), f32), ValueError, "broadcast view"),
        (lambda: _cuda.where(out, f32, f32, f32), TypeError, "condition is float32"),
        (lambda: _cuda.reduce("sum", _cuda.empty((3,), np.float32), f32, [0]), ValueError, "expected (4,)"),
        (lambda: _cuda.reduce("max", _cuda.empty((4,), np.float32), f32, [5]), ValueError, "axis 5"),
        (lambda: _cuda.reduce("max", out[0], _cuda.empty((0, 4), np.float32), [0]), ValueError, "zero-size"),
        (lambda: _cuda.take_along_axis(out, f32, idx.astype(np.float32), 1), TypeError, "indices are float32"),
        (lambda: _cuda.take_along_axis(out, f32, idx[0], 1), ValueError, "same number of dimensions"),
        (lambda: _cuda.take_along_axis(out, f32, idx, 2), ValueError, "axis 2 is out of bounds"),
        (lambda: _cuda.take_along_axis(f32, f32, idx, 1), ValueError, "out has shape (3, 4), expected (3, 2)"),
        (lambda: _cuda.take_along_axis(f32[:, :2], f32, idx, 1), ValueError, "out overlaps a"),
        (lambda: _cuda.scatter_along_axis("put_along_axis", f32, idx, f64, 1), TypeError, "values are float64"),
        (lambda: _cuda.scatter_along_axis("add.at", f32, idx, out, 1), ValueError, "values of shape (3, 4)"),
        (lambda: _cuda.scatter_along_axis("add.at", f32, idx, f32[:, :2], 1), ValueError, "a overlaps"),
        (lambda: _cuda.scatter_along_axis("add.at", i64, idx, i64[:, :2].copy(), 1), TypeError, "no CUDA kernel"),
        (lambda: _cuda.take_along_axis(out[:, :2], f32, bad, 1), IndexError, "index -5 is out of bounds for axis 1"),
    ]
    for call, error, text in cases:
        with pytest.raises(error, match=re.escape(text)):
            call()
    _cuda.binary("add", f32, f32, 1.0)  # in place: out is a itself
    np.testing.assert_array_equal(f32.to_cpu(), np.full((3, 4), 2, np.float32))


# ---- NumPy's promotion (needs DeviceArray.astype between dtypes) -------------------------------


@pytest.fixture
def casts(dev):
    """Skips (with the reason) where the device cannot convert float32 to float64 yet."""
    probe = put(dev, np.ones(1, np.float32))
    try:
        converted = probe.astype(np.float64)
    except (TypeError, NotImplementedError) as exc:
        pytest.skip(f"DeviceArray.astype cannot cast yet: {exc}")
    assert get(converted).dtype == np.float64
    return dev


def test_promotion_follows_numpy(casts, rng):
    dev = casts
    a32, a64 = values(rng, (3, 4), np.float32), values(rng, (4,), np.float64)
    i64 = rng.integers(-5, 5, (3, 4))
    with np.errstate(all="ignore"):
        cases = [
            (put(dev, a32) + put(dev, a64), a32.astype(np.float64) + a64),
            (put(dev, i64) / put(dev, i64 + 10), i64 / (i64 + 10)),
            (put(dev, i64) * 0.5, i64 * 0.5),
            (np.exp(put(dev, i64)), np.exp(i64)),
            (put(dev, a32) + np.float64(1.5), a32 + np.float64(1.5)),
            (np.where(put(dev, i64 > 0), put(dev, a32), put(dev, a64)), np.where(i64 > 0, a32, a64)),
            (np.mean(put(dev, i64), axis=0), np.mean(i64, axis=0)),
            (np.sum(put(dev, a32), dtype=np.float64), np.sum(a32, dtype=np.float64)),
            (
                np.concatenate([put(dev, a32), put(dev, np.broadcast_to(a64, (3, 4)))]),
                np.concatenate([a32, np.broadcast_to(a64, (3, 4))]),
            ),
        ]
    for k, (got, ref) in enumerate(cases):
        assert_matches(got, ref, ref.dtype, f"promotion case {k}")
    out = put(dev, np.full((3, 4), np.nan))
    np.add(put(dev, a32), 1, out=out)  # a float32 result written into float64 out
    assert_matches(out, (a32 + np.float32(1)).astype(np.float64), np.float64, "float32 result into float64 out")


# ---- Tensors on the GPU ------------------------------------------------------------------------


@pytest.fixture
def tensor_device(dev, monkeypatch):
    """The device name Tensors use for ``dev``: the stand-in registered as a backend for the test."""
    if dev == "standin":
        monkeypatch.setitem(dk.backends._BACKENDS, "standin", cuda_standin.StandInBackend())
    return dev


def test_tensor_ops_with_autograd_match_the_cpu(tensor_device, rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y = rng.standard_normal((5,)).astype(np.float32)
    target = rng.standard_normal((4, 5)).astype(np.float32)
    results = {}
    for device in ("cpu", tensor_device):
        a = dk.tensor(x, device=device, requires_grad=True)
        b = dk.tensor(y, device=device, requires_grad=True)
        t = dk.tensor(target, device=device)
        labels = dk.tensor((target > 0).astype(np.float32), device=device)
        z = (a * b + a).exp() * 0.1 - a.abs().sqrt()
        w = dk.where(a > 0, z, a * 2)
        F = dk.nn.functional
        loss = F.mse_loss(w, t) + w.sum() * 0.01 + w.mean(dim=1).sum() + (w / 3).tanh().mean()
        loss = loss + F.log_softmax(w, dim=1).mean() + F.binary_cross_entropy_with_logits(z, labels)
        loss.backward()
        assert loss.device.type == device
        results[device] = [v.cpu().numpy() for v in (loss.detach(), a.grad, b.grad)]
    for what, cpu, other in zip(("loss", "a.grad", "b.grad"), results["cpu"], results[tensor_device]):
        assert other.dtype == cpu.dtype and other.shape == cpu.shape, what
        np.testing.assert_allclose(other, cpu, rtol=1e-5, atol=1e-6, err_msg=what)


# ---- tables (no GPU needed) --------------------------------------------------------------------


def test_every_ufunc_maps_to_a_compiled_kernel():
    ops = _cuda.elementwise_ops()
    for ufunc, (kind, name) in cuda_numpy.UFUNCS.items():
        assert name in ops[kind], f"np.{ufunc.__name__} maps to {kind} {name}, which deepkern._cuda lacks"
    assert set(ops["reduce"]) == set(REDUCTIONS)
    for dtype in ("float32", "float64"):
        for kind in ("unary", "binary", "reduce"):
            for name in ops[kind]:
                if name.startswith("logical"):
                    continue
                assert _cuda.elementwise_result_dtype(kind, name, dtype) is not None, (kind, name, dtype)
    assert _cuda.elementwise_result_dtype("binary", "less", "float32") == "bool"
    assert _cuda.elementwise_result_dtype("reduce", "argmax", "float32") == "int64"
    assert _cuda.elementwise_result_dtype("reduce", "sum", "bool") == "int64"
    assert _cuda.elementwise_result_dtype("unary", "exp", "int64") is None
    assert _cuda.elementwise_result_dtype("binary", "add", "float16") is None


def test_the_device_array_class_speaks_numpy():
    cls = _cuda.DeviceArray
    for name in ("__array_ufunc__", "__array_function__", "__add__", "__radd__", "__iadd__", "__lt__", "sum", "argmax"):
        assert name in cls.__dict__, name
    with pytest.raises(ValueError, match="unknown op 'nope'"):
        _cuda.elementwise_result_dtype("unary", "nope", "float32")


def test_binding_refuses_what_is_not_a_device_array():
    host = np.ones(3, np.float32)
    cases = [
        (
            lambda: _cuda.unary("exp", host, host),
            TypeError,
            "cuda exp: out must be a deepkern._cuda.DeviceArray, got ndarray",
        ),
        (
            lambda: _cuda.binary("add", None, 1.0, 2.0),
            TypeError,
            "cuda add: out must be a deepkern._cuda.DeviceArray, got NoneType",
        ),
        (lambda: _cuda.where(host, True, 1.0, 2.0), TypeError, "cuda where: out must be a deepkern._cuda.DeviceArray"),
        (lambda: _cuda.reduce("sum", host, host, [0]), TypeError, "cuda sum: out must be a deepkern._cuda.DeviceArray"),
        (lambda: _cuda.broadcast_view(host, [2, 3]), TypeError, "broadcast_to: a must be a deepkern._cuda.DeviceArray"),
        (lambda: _cuda.unary("cosh", host, host), ValueError, "unknown op 'cosh'"),
        (lambda: _cuda.reduce("median", host, host, [0]), ValueError, "unknown op 'median'"),
        (
            lambda: _cuda.take_along_axis(host, host, host, 0),
            TypeError,
            "cuda take_along_axis: out must be a deepkern._cuda.DeviceArray, got ndarray",
        ),
        (
            lambda: _cuda.scatter_along_axis("add.at", host, host, host, 0),
            TypeError,
            "cuda add.at: out must be a deepkern._cuda.DeviceArray, got ndarray",
        ),
        (lambda: _cuda.scatter_along_axis("max.at", host, host, host, 0), ValueError, "unknown op 'max.at'"),
    ]
    for call, error, text in cases:
        with pytest.raises(error, match=re.escape(text)):
            call()
