"""The contract of deepkern.ops.matmul, deepkern.ops.gemm and deepkern.ops.linear.

Every result is compared with the float64 NumPy reference (tests/reference.py) computed from the
same inputs: ||out - ref|| / ||ref|| below 1e-5 for float32 and 1e-12 for float64. Outputs are
pre-filled with NaN so an element the kernel forgets to write fails, and outputs that are views of
a bigger array check that nothing outside the view was touched.
"""

from __future__ import annotations

import concurrent.futures
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deepkern
from deepkern.ops import gemm, linear, matmul

from checks import F32, F64, TOL, check, rand
from conftest import SUPPORTED_ISAS
from reference import gemm_ref, linear_ref, magnitude_floor, matmul_ref, rel_error

DTYPES = [F32, F64]


# ----------------------------------------------------------------------------------------------
# helpers


# Layouts of a logical 2-D operand of shape (rows, cols), each built from fresh random data.
LAYOUTS = ["C", "F", "T", "slice", "T_slice", "neg_rows", "neg_cols", "neg_both", "bcast", "swapped"]


def make_operand(rng, shape, layout, dtype):
    r, c = shape
    if layout == "C":
        return rand(rng, (r, c), dtype)
    if layout == "F":
        return np.asfortranarray(rand(rng, (r, c), dtype))
    if layout == "T":  # transposed view of a C-contiguous array
        return rand(rng, (c, r), dtype).T
    if layout == "slice":  # rows step 2, columns step 3 from an offset
        return rand(rng, (2 * r, 3 * c + 1), dtype)[::2, 1::3]
    if layout == "T_slice":
        return rand(rng, (2 * c, 3 * r + 1), dtype)[::2, 1::3].T
    if layout == "neg_rows":
        return rand(rng, (r, c), dtype)[::-1]
    if layout == "neg_cols":
        return rand(rng, (r, c), dtype)[:, ::-1]
    if layout == "neg_both":
        return rand(rng, (r, c), dtype)[::-1, ::-1]
    if layout == "bcast":  # every row the same, row stride 0 (read-only input)
        return np.broadcast_to(rand(rng, (1, c), dtype), (r, c))
    if layout == "swapped":  # non-native byte order
        return rand(rng, (r, c), dtype).astype(np.dtype(dtype).newbyteorder("S"))
    raise AssertionError(layout)


# Output layouts: (function of a bigger array giving the view, shape of the bigger array).
OUT_LAYOUTS = {
    "C": (lambda big: big, lambda m, n: (m, n)),
    "F": (lambda big: big.T, lambda m, n: (n, m)),  # column-major view (transposed C array)
    "colslice": (lambda big: big[:, 2:-3], lambda m, n: (m, n + 5)),
    "strided": (lambda big: big[1::2, 2::3], lambda m, n: (2 * m + 1, 3 * n + 2)),
    "neg": (lambda big: big[::-1, ::-1], lambda m, n: (m, n)),
    "T_strided": (lambda big: big[::3, 1::2].T, lambda m, n: (3 * n, 2 * m + 1)),
}


def make_out(m, n, layout, dtype):
    """A NaN-filled ``(m, n)`` view of a bigger NaN-filled array, and the mask of the view's
    elements in the bigger array."""
    view_of, big_shape = OUT_LAYOUTS[layout]
    big = np.full(big_shape(m, n), np.nan, dtype=dtype)
    out = view_of(big)
    assert out.shape == (m, n)
    mask = np.zeros(big.size, dtype=bool)
    mask[view_of(np.arange(big.size).reshape(big.shape)).ravel()] = True
    return out, big, mask.reshape(big.shape)


def check_untouched(big, mask, what=""):
    outside = big[~mask]
    assert np.isnan(outside).all(), (
        f"{what}: {int((~np.isnan(outside)).sum())} elements outside the output view were written"
    )


# ----------------------------------------------------------------------------------------------
# sizes

SIZES = [0, 1, 2, 7, 17, 33, 127, 255, 257, 3, 5, 11, 13, 31, 61, 97, 131, 251]


def _covering_shapes():
    """Every size in every one of M, N, K, with partners rotated through the list."""
    shapes = set()
    count = len(SIZES)
    for i, s in enumerate(SIZES):
        p, q = SIZES[(i + 5) % count], SIZES[(i + 11) % count]
        shapes.update({(s, p, q), (q, s, p), (p, q, s)})
    return sorted(shapes)


SIZE_SHAPES = _covering_shapes()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m,n,k", SIZE_SHAPES)
def test_matmul_sizes(isa, dtype, m, n, k, rng):
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    out = np.full((m, n), np.nan, dtype=dtype)
    got = matmul(a, b, out=out)
    assert got is out
    check(out, matmul_ref(a, b), dtype, f"matmul {isa} {dtype} M={m} N={n} K={k}")
    check(matmul(a, b), matmul_ref(a, b), dtype, f"matmul (new array) {isa} {dtype} M={m} N={n} K={k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m,n,k", [(300, 3100, 600), (500, 70, 1100), (70, 2200, 300), (250, 3090, 1030)])
def test_matmul_several_cache_blocks(isa, threads, dtype, m, n, k, rng):
    # Larger than mc (<= 240), kc (<= 1024) and nc (<= 3072 for float32, 2048 for float64) on every
    # ISA, so every blocking loop runs more than once (with 1 thread; with 2 the threads split C).
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    out = np.full((m, n), np.nan, dtype=dtype)
    matmul(a, b, out=out)
    check(out, matmul_ref(a, b), dtype, f"matmul {isa} threads={threads} M={m} N={n} K={k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m", [2, 4, 6, 8, 10, 16, 20, 64, 68, 128])
def test_matmul_last_row_panel(isa, dtype, m, rng):
    # The last row panel of C goes to a short micro-kernel (4 or 8 rows of 12 on AVX-512, 2 or 4
    # of 6 on AVX2): written straight into C when its rows match, else through the edge tile.
    for n, k in ((64, 37), (70, 300)):
        a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
        out = np.full((m, n), np.nan, dtype=dtype)
        matmul(a, b, out=out)
        check(out, matmul_ref(a, b), dtype, f"matmul {isa} M={m} N={n} K={k}")
        bias = rand(rng, (n,), dtype)
        check(gemm(a, b, bias=bias, relu=True), gemm_ref(a, b, bias=bias, relu=True), dtype,
              f"gemm bias relu {isa} M={m} N={n} K={k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m,n,k", [(33, 65, 4096), (1, 300, 4096), (300, 1, 4096), (13, 1, 4096)])
def test_matmul_long_k(isa, dtype, m, n, k, rng):
    # float32 must stay under 1e-5 for K up to 4096 (also through the GEMV paths, M or N == 1).
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    check(matmul(a, b), matmul_ref(a, b), dtype, f"matmul {isa} M={m} N={n} K={k}")


# ----------------------------------------------------------------------------------------------
# layouts

LAYOUT_PAIRS = sorted({(la, "C") for la in LAYOUTS} | {("C", lb) for lb in LAYOUTS}
                      | {(la, la) for la in LAYOUTS} | {("T", "C"), ("C", "T"), ("T", "T"), ("F", "T")})
LAYOUT_SHAPES = [(37, 41, 29), (1, 45, 33), (45, 1, 33), (1, 1, 9), (130, 70, 300)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout_a,layout_b", LAYOUT_PAIRS)
def test_matmul_layouts(isa, dtype, layout_a, layout_b, rng):
    for m, n, k in LAYOUT_SHAPES:
        a = make_operand(rng, (m, k), layout_a, dtype)
        b = make_operand(rng, (k, n), layout_b, dtype)
        a_before, b_before = a.copy(), b.copy()
        out = np.full((m, n), np.nan, dtype=dtype)
        matmul(a, b, out=out)
        check(out, matmul_ref(a, b), dtype,
              f"matmul {isa} a {layout_a} {a.shape} strides {a.strides}, b {layout_b} {b.shape} strides {b.strides}")
        np.testing.assert_array_equal(a, a_before)
        np.testing.assert_array_equal(b, b_before)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("out_layout", list(OUT_LAYOUTS))
@pytest.mark.parametrize("m,n,k", [(37, 41, 29), (1, 45, 33), (45, 1, 33), (130, 70, 300), (5, 6, 0)])
def test_matmul_out_views(isa, dtype, out_layout, m, n, k, rng):
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    out, big, mask = make_out(m, n, out_layout, dtype)
    got = matmul(a, b, out=out)
    assert got is out
    what = f"matmul {isa} out {out_layout} strides {out.strides} M={m} N={n} K={k}"
    check(out, matmul_ref(a, b), dtype, what)
    check_untouched(big, mask, what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("storage", ["C", "F", "neg_both"])
def test_gemm_transposes(isa, dtype, trans_a, trans_b, storage, rng):
    for m, n, k in [(37, 41, 29), (1, 45, 33), (45, 1, 33), (250, 40, 270)]:
        a = make_operand(rng, (k, m) if trans_a else (m, k), storage, dtype)
        b = make_operand(rng, (n, k) if trans_b else (k, n), storage, dtype)
        got = gemm(a, b, trans_a=trans_a, trans_b=trans_b)
        check(got, gemm_ref(a, b, trans_a, trans_b), dtype,
              f"gemm {isa} trans_a={trans_a} trans_b={trans_b} {storage} a {a.shape} b {b.shape}")


# ----------------------------------------------------------------------------------------------
# gemm: alpha, beta, c; bias and ReLU epilogue

GEMM_SHAPES = [(37, 41, 29), (1, 45, 33), (45, 1, 33), (30, 50, 600), (130, 70, 300), (4, 6, 0)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("c_layout", ["C", "F", "strided"])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-1.75, 0.0), (1.0, 1.0), (0.5, -0.75), (0.0, 2.0)])
def test_gemm_alpha_beta(isa, dtype, c_layout, alpha, beta, rng):
    for m, n, k in GEMM_SHAPES:
        a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
        c, big, mask = make_out(m, n, c_layout, dtype)
        if beta != 0:
            c[...] = rand(rng, (m, n), dtype)  # beta == 0 keeps c NaN: it must not be read
        c_before = c.copy()
        ref = gemm_ref(a, b, alpha=alpha, beta=beta, c=c_before)
        got = gemm(a, b, alpha=alpha, beta=beta, c=c)
        assert got is c
        what = f"gemm {isa} alpha={alpha} beta={beta} c {c_layout} strides {c.strides} M={m} N={n} K={k}"
        check(c, ref, dtype, what)
        check_untouched(big, mask, what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gemm_without_c(isa, dtype, rng):
    a, b = rand(rng, (23, 19), dtype), rand(rng, (19, 31), dtype)
    check(gemm(a, b, alpha=2.5), gemm_ref(a, b, alpha=2.5), dtype, "gemm alpha=2.5 without c")
    check(gemm(a, b, beta=0), gemm_ref(a, b), dtype, "gemm beta=0 without c")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("c_layout,beta", [("none", 0.0)] + [(lay, beta) for lay in ("C", "F", "strided")
                                                              for beta in (0.0, 0.5)])
def test_gemm_bias_relu(isa, dtype, relu, c_layout, beta, rng):
    for m, n, k in GEMM_SHAPES + [(7, 5, 0), (1, 1, 0), (0, 4, 3)]:
        a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
        bias = rand(rng, (n,), dtype)
        what = f"gemm {isa} bias relu={relu} beta={beta} c {c_layout} M={m} N={n} K={k}"
        if c_layout == "none":
            ref = gemm_ref(a, b, bias=bias, relu=relu)
            got = gemm(a, b, bias=bias, relu=relu, alpha=1.0)
            check(got, ref, dtype, what)
        else:
            c, big, mask = make_out(m, n, c_layout, dtype)
            if beta != 0:
                c[...] = rand(rng, (m, n), dtype)
            ref = gemm_ref(a, b, alpha=0.75, beta=beta, c=c.copy(), bias=bias, relu=relu)
            got = gemm(a, b, alpha=0.75, beta=beta, c=c, bias=bias, relu=relu)
            assert got is c
            check(c, ref, dtype, what)
            check_untouched(big, mask, what)
        if relu and ref.size >= 20 and k > 0:  # the inputs do exercise the clamp (guards the test itself)
            assert (ref == 0).any() and (ref > 0).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_gemm_k0_epilogue(isa, dtype, relu, rng):
    # K == 0: the product is all zeros, so the result is relu(beta * c + bias).
    m, n = 9, 35
    a, b = np.empty((m, 0), dtype), np.empty((0, n), dtype)
    c0 = rand(rng, (m, n), dtype)
    bias = rand(rng, (n,), dtype)
    expected = (0.5 * c0.astype(np.float64)) + bias.astype(np.float64)
    if relu:
        expected = np.maximum(expected, 0.0)
    c = c0.copy()
    gemm(a, b, alpha=3.0, beta=0.5, c=c, bias=bias, relu=relu)
    check(c, expected, dtype, f"gemm K=0 beta=0.5 bias relu={relu}")
    c_nan = np.full((m, n), np.nan, dtype)
    gemm(a, b, beta=0.0, c=c_nan, bias=bias, relu=relu)
    expected0 = np.broadcast_to(bias.astype(np.float64), (m, n))
    check(c_nan, np.maximum(expected0, 0.0) if relu else expected0, dtype, f"gemm K=0 beta=0 bias relu={relu}")


LINEAR_CASES = [
    # x shape, out_features
    ((5, 7), 11),
    ((7,), 11),
    ((2, 3, 7), 4),
    ((1, 300), 1),
    ((64, 300), 130),
    ((0, 7), 6),
    ((4, 7), 0),
    ((4, 0), 6),
    ((2, 0, 5), 3),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("x_shape,n_out", LINEAR_CASES, ids=[f"x{x}-out{n}".replace(" ", "") for x, n in LINEAR_CASES])
def test_linear(isa, dtype, with_bias, relu, x_shape, n_out, rng):
    x = rand(rng, x_shape, dtype)
    w = rand(rng, (n_out, x_shape[-1]), dtype)
    bias = rand(rng, (n_out,), dtype) if with_bias else None
    ref = linear_ref(x, w, bias, relu)
    what = f"linear {isa} x {x_shape} weight {w.shape} bias={with_bias} relu={relu}"
    check(linear(x, w, bias, relu=relu), ref, dtype, what)
    out = np.full(ref.shape, np.nan, dtype)
    assert linear(x, w, bias, relu=relu, out=out) is out
    check(out, ref, dtype, what + " out=")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_linear_views(isa, dtype, rng):
    # Non-contiguous x (leading axes that do not merge) and weight, and an `out` view whose
    # leading axes do not merge either.
    x = rand(rng, (3, 8, 13), dtype)[:, ::2, :]
    w = rand(rng, (13, 9), dtype).T  # (9, 13), transposed view
    bias = rand(rng, (18,), dtype)[::2]
    big = np.full((3, 8, 12), np.nan, dtype)
    out = big[:, ::2, 1:10]
    mask = np.zeros(big.shape, bool)
    mask[:, ::2, 1:10] = True
    got = linear(x, w, bias, relu=True, out=out)
    assert got is out
    check(out, linear_ref(x, w, bias, True), dtype, "linear with strided x, weight.T and out view")
    check_untouched(big, mask, "linear out view")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_linear_k0(dtype, rng):
    bias = rand(rng, (6,), dtype)
    x, w = np.empty((4, 0), dtype), np.empty((6, 0), dtype)
    expected = np.broadcast_to(np.maximum(bias.astype(np.float64), 0.0), (4, 6))
    check(linear(x, w, bias, relu=True), expected, dtype, "linear in_features=0 relu")
    check(linear(x, w), np.zeros((4, 6)), dtype, "linear in_features=0 no bias")


# ----------------------------------------------------------------------------------------------
# 1-D promotion, batches, dtypes


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matmul_1d(isa, dtype, rng):
    for k, n in [(7, 5), (1, 1), (300, 257), (0, 4), (5, 0)]:
        v, mat = rand(rng, (k,), dtype), rand(rng, (k, n), dtype)
        check(matmul(v, mat), matmul_ref(v, mat), dtype, f"1-D ({k},) @ ({k}, {n})")
        check(matmul(mat.T, v), matmul_ref(mat.T, v), dtype, f"2-D ({n}, {k}) @ 1-D ({k},)")
        v_strided = rand(rng, (2 * k,), dtype)[::-2]
        check(matmul(v_strided, mat), matmul_ref(v_strided, mat), dtype, f"strided 1-D ({k},) @ ({k}, {n})")
        out = np.full((n,), np.nan, dtype)
        assert matmul(v, mat, out=out) is out
        check(out, matmul_ref(v, mat), dtype, "1-D @ 2-D out=")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", [0, 1, 7, 1000])
def test_matmul_vector_dot(isa, dtype, k, rng):
    u, v = rand(rng, (k,), dtype), rand(rng, (k,), dtype)
    got = matmul(u, v)
    ref = matmul_ref(u, v)
    assert np.ndim(got) == 0 and not isinstance(got, np.ndarray), f"1-D @ 1-D gave {type(got)} {np.shape(got)}"
    assert isinstance(got, np.generic) and got.dtype == dtype
    floor = magnitude_floor(u[None, :], v[:, None])  # one dot product may cancel
    check(np.asarray(got), np.asarray(ref), dtype, f"1-D @ 1-D K={k}", floor)
    out = np.full((), np.nan, dtype)
    assert matmul(u, v, out=out) is out
    check(out, np.asarray(ref), dtype, f"1-D @ 1-D K={k} out=", floor)


BATCH_CASES = [
    ((3, 1, 5, 7), (4, 7, 2)),
    ((2, 3, 4), (4, 5)),
    ((4, 5), (2, 5, 6)),
    ((6,), (2, 6, 3)),
    ((2, 1, 4, 6), (6,)),
    ((1, 3, 4), (5, 4, 2)),
    ((1, 1, 9, 8), (1, 8, 1)),
    ((0, 3, 4), (4, 5)),
    ((2, 0, 3, 4), (1, 4, 5)),
    ((3, 0, 4), (3, 4, 5)),
    ((3, 4, 0), (3, 0, 5)),
    ((0,), (2, 0, 3)),
    ((64, 9, 10), (64, 10, 11)),
    ((3, 130, 70), (1, 70, 300)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape_a,shape_b", BATCH_CASES, ids=[f"{a}@{b}".replace(" ", "") for a, b in BATCH_CASES])
def test_matmul_batched(isa, threads, dtype, shape_a, shape_b, rng):
    a, b = rand(rng, shape_a, dtype), rand(rng, shape_b, dtype)
    ref = matmul_ref(a, b)
    what = f"matmul {shape_a} @ {shape_b} {isa} threads={threads}"
    check(matmul(a, b), ref, dtype, what)
    out = np.full(ref.shape, np.nan, dtype)
    assert matmul(a, b, out=out) is out
    check(out, ref, dtype, what + " out=")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matmul_batched_views(isa, threads, dtype, rng):
    # Batch axes with negative strides, transposed matrices, broadcast (stride-0) batch axes and an
    # output whose batch and matrix axes are all strided.
    a = rand(rng, (4, 3, 9, 6), dtype)[::-1, :, :, ::-1].transpose(0, 1, 3, 2)  # (4, 3, 6, 9)
    b = np.broadcast_to(rand(rng, (18, 5), dtype)[::2], (3, 9, 5))  # batch stride 0
    big = np.full((5, 3, 13, 7), np.nan, dtype)
    out = big[::-1][:4][:, :, 1::2, 1:6]
    assert out.shape == (4, 3, 6, 5)
    mask = np.zeros(big.shape, bool)
    mask[::-1][:4][:, :, 1::2, 1:6] = True
    assert matmul(a, b, out=out) is out
    what = f"matmul batched views a strides {a.strides}, b strides {b.strides}, out strides {out.strides}"
    check(out, matmul_ref(a, b), dtype, what)
    check_untouched(big, mask, what)


def test_mixed_dtypes_give_float64(rng):
    a32, b64 = rand(rng, (13, 17), F32), rand(rng, (17, 11), F64)
    for a, b in [(a32, b64), (b64.T, a32.T)]:
        got = matmul(a, b)
        assert got.dtype == np.result_type(a.dtype, b.dtype) == F64
        check(got, matmul_ref(a, b), F64, f"matmul {a.dtype} @ {b.dtype}")
    v32 = rand(rng, (17,), F32)
    check(matmul(v32, b64), matmul_ref(v32, b64), F64, "matmul 1-D float32 @ float64")


def test_python_lists(rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    got = matmul(a.tolist(), b.tolist())
    check(got, matmul_ref(a, b), F64, "matmul of lists")
    check(gemm(a.tolist(), b.T.tolist(), trans_b=True), gemm_ref(a, b), F64, "gemm of lists")
    bias = rng.standard_normal(2)
    check(linear(a.tolist(), b.T.tolist(), bias.tolist(), relu=True), linear_ref(a, b.T, bias, True), F64,
          "linear of lists")
    dot = matmul(a[0].tolist(), b[:, 0].tolist())
    assert isinstance(dot, np.float64)
    check(np.asarray(dot), matmul_ref(a[0], b[:, 0]), F64, "matmul of 1-D lists")


# ----------------------------------------------------------------------------------------------
# property tests

shape_dim = st.integers(min_value=0, max_value=70)


def _with_isa(isa):
    class _Ctx:
        def __enter__(self):
            self.previous = deepkern._C.active_isa()
            deepkern._C.set_active_isa(isa)

        def __exit__(self, *exc):
            deepkern._C.set_active_isa(self.previous)

    return _Ctx()


@settings(max_examples=300, deadline=None)
@given(m=shape_dim, n=shape_dim, k=shape_dim, layout_a=st.sampled_from(LAYOUTS),
       layout_b=st.sampled_from(LAYOUTS), out_layout=st.sampled_from(list(OUT_LAYOUTS)),
       dtype=st.sampled_from(DTYPES), isa=st.sampled_from(SUPPORTED_ISAS),
       seed=st.integers(0, 2**32 - 1))
def test_matmul_property(m, n, k, layout_a, layout_b, out_layout, dtype, isa, seed):
    rng = np.random.default_rng(seed)
    a = make_operand(rng, (m, k), layout_a, dtype)
    b = make_operand(rng, (k, n), layout_b, dtype)
    out, big, mask = make_out(m, n, out_layout, dtype)
    with _with_isa(isa):
        assert matmul(a, b, out=out) is out
    what = (f"matmul {isa} M={m} N={n} K={k} a {layout_a} strides {a.strides} b {layout_b} "
            f"strides {b.strides} out {out_layout} strides {out.strides}")
    check(out, matmul_ref(a, b), dtype, what, magnitude_floor(a, b))
    check_untouched(big, mask, what)


@settings(max_examples=300, deadline=None)
@given(m=shape_dim, n=shape_dim, k=shape_dim, trans_a=st.booleans(), trans_b=st.booleans(),
       layout=st.sampled_from(["C", "F", "slice", "neg_both"]), c_layout=st.sampled_from(list(OUT_LAYOUTS)),
       alpha=st.sampled_from([1.0, -0.5, 2.0]), beta=st.sampled_from([0.0, 1.0, -0.25]),
       with_bias=st.booleans(), relu=st.booleans(), dtype=st.sampled_from(DTYPES),
       isa=st.sampled_from(SUPPORTED_ISAS), seed=st.integers(0, 2**32 - 1))
def test_gemm_property(m, n, k, trans_a, trans_b, layout, c_layout, alpha, beta, with_bias, relu, dtype,
                       isa, seed):
    rng = np.random.default_rng(seed)
    a = make_operand(rng, (k, m) if trans_a else (m, k), layout, dtype)
    b = make_operand(rng, (n, k) if trans_b else (k, n), layout, dtype)
    bias = rand(rng, (n,), dtype) if with_bias else None
    c, big, mask = make_out(m, n, c_layout, dtype)
    if beta != 0:
        c[...] = rand(rng, (m, n), dtype)
    c_before = c.copy()
    ref = gemm_ref(a, b, trans_a, trans_b, alpha, beta, c_before, bias, relu)
    with _with_isa(isa):
        got = gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, c=c, bias=bias, relu=relu)
    assert got is c
    what = (f"gemm {isa} M={m} N={n} K={k} trans_a={trans_a} trans_b={trans_b} {layout} alpha={alpha} "
            f"beta={beta} bias={with_bias} relu={relu} c {c_layout} strides {c.strides}")
    check(c, ref, dtype, what, magnitude_floor(a, b, trans_a, trans_b, alpha, beta, c_before, bias))
    check_untouched(big, mask, what)


# ----------------------------------------------------------------------------------------------
# concurrency


def test_concurrent_python_threads(threads):
    shapes = [(70, 80, 90), (1, 500, 300), (33, 17, 257), (130, 70, 300), (300, 1, 200), (5, 3, 0)]
    rng = np.random.default_rng(1234)
    jobs = []
    for i in range(8):
        dtype = DTYPES[i % 2]
        m, n, k = shapes[i % len(shapes)]
        a = make_operand(rng, (m, k), LAYOUTS[i % len(LAYOUTS)], dtype)
        b = make_operand(rng, (k, n), "T" if i % 3 else "C", dtype)
        jobs.append((a, b, dtype, matmul_ref(a, b)))

    def worker(job):
        a, b, dtype, ref = job
        errors = []
        for rep in range(25):
            out = np.full(ref.shape, np.nan, dtype)
            matmul(a, b, out=out)
            err = rel_error(out, ref)
            if not err < TOL[dtype]:
                errors.append((rep, err))
        return a.shape, b.shape, dtype, errors

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(worker, jobs))
    bad = [r for r in results if r[3]]
    assert not bad, f"wrong results under concurrency (a shape, b shape, dtype, [(rep, rel error)]): {bad}"


# ----------------------------------------------------------------------------------------------
# bad input: the right exception, a message naming the argument and the shapes


def _m(text):
    return re.escape(text)


def test_matmul_rank_errors():
    a = np.ones((3, 3))
    with pytest.raises(ValueError, match=_m("matmul: a and b must have at least 1 dimension, got shapes () and (3, 3)")):
        matmul(np.array(2.0), a)
    with pytest.raises(ValueError, match=_m("got shapes (3, 3) and ()")):
        matmul(a, 2.0)


def test_gemm_rank_errors():
    with pytest.raises(ValueError, match=_m("gemm: a and b must be 2-D, got shapes (3,) and (3, 3)")):
        gemm(np.ones(3), np.ones((3, 3)))
    with pytest.raises(ValueError, match=_m("gemm: a and b must be 2-D, got shapes (2, 3, 3) and (3, 3)")):
        gemm(np.ones((2, 3, 3)), np.ones((3, 3)))


def test_inner_dimension_errors():
    with pytest.raises(ValueError, match=r"matmul: inner dimensions differ: a has shape \(2, 3\).*b has shape \(4, 5\)"):
        matmul(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"inner dimensions differ: a has shape \(3,\).*b has shape \(4,\)"):
        matmul(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"matmul: batch dimensions of a \(2, 3, 4\) and b \(3, 4, 5\) do not broadcast"):
        matmul(np.ones((2, 3, 4)), np.ones((3, 4, 5)))
    with pytest.raises(ValueError, match=r"gemm: inner dimensions differ: op\(a\) has shape \(3, 2\), op\(b\) has shape \(3, 5\)"):
        gemm(np.ones((2, 3)), np.ones((3, 5)), trans_a=True)
    with pytest.raises(ValueError, match=r"gemm: inner dimensions differ.*b \(5, 4\), trans_b=True"):
        gemm(np.ones((2, 3)), np.ones((5, 4)), trans_b=True)


@pytest.mark.parametrize("bad", [np.int32, np.float16, np.complex64, np.bool_], ids=lambda t: np.dtype(t).name)
def test_unsupported_dtypes(bad):
    good = np.ones((3, 3))
    wrong = np.ones((3, 3), dtype=bad)
    name = np.dtype(bad).name
    with pytest.raises(TypeError, match=_m(f"matmul: a must be float32 or float64, got dtype {name}")):
        matmul(wrong, good)
    with pytest.raises(TypeError, match=_m(f"matmul: b must be float32 or float64, got dtype {name}")):
        matmul(good, wrong)
    with pytest.raises(TypeError, match=_m(f"gemm: b must be float32 or float64, got dtype {name}")):
        gemm(good, wrong)
    with pytest.raises(TypeError, match=_m(f"gemm: bias must be float32 or float64, got dtype {name}")):
        gemm(good, good, bias=np.ones(3, dtype=bad))
    with pytest.raises(TypeError, match=_m(f"linear: x must be float32 or float64, got dtype {name}")):
        linear(wrong, good)
    with pytest.raises(TypeError, match=_m(f"linear: weight must be float32 or float64, got dtype {name}")):
        linear(good, wrong)


def test_non_numeric_inputs():
    good = np.ones((2, 2))
    for junk in [None, "abc", np.array([object(), object()]), np.array(["1.0", "2.0"])]:
        with pytest.raises(TypeError, match="matmul: a must be float32 or float64, got dtype"):
            matmul(junk, good)
        with pytest.raises(TypeError, match="gemm: b must be float32 or float64, got dtype"):
            gemm(good, junk)


def test_mixed_dtype_errors_in_gemm_and_linear():
    a32, a64 = np.ones((3, 3), np.float32), np.ones((3, 3))
    with pytest.raises(TypeError, match=_m("gemm: a and b must have the same dtype, got float32 and float64")):
        gemm(a32, a64)
    with pytest.raises(TypeError, match=_m("linear: x and weight must have the same dtype, got float64 and float32")):
        linear(a64, a32)
    with pytest.raises(TypeError, match=_m("gemm: bias must have dtype float32, got float64")):
        gemm(a32, a32, bias=np.ones(3))


def test_out_errors():
    a, b = np.ones((3, 4)), np.ones((4, 5))
    with pytest.raises(ValueError, match=_m("matmul: out must have shape (3, 5), got (5, 3)")):
        matmul(a, b, out=np.empty((5, 3)))
    with pytest.raises(ValueError, match=_m("matmul: out must have shape (3, 5), got (15,)")):
        matmul(a, b, out=np.empty(15))
    with pytest.raises(TypeError, match=_m("matmul: out must have dtype float64, got float32")):
        matmul(a, b, out=np.empty((3, 5), np.float32))
    with pytest.raises(TypeError, match=_m("matmul: out must be a numpy.ndarray, got list")):
        matmul(a, b, out=[[0.0] * 5] * 3)
    ro = np.empty((3, 5))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=_m("matmul: out is read-only")):
        matmul(a, b, out=ro)
    aliased = np.lib.stride_tricks.as_strided(np.empty(5), shape=(3, 5), strides=(0, 8), writeable=True)
    with pytest.raises(ValueError, match=_m("matmul: out has a zero stride")):
        matmul(a, b, out=aliased)
    with pytest.raises(ValueError, match=_m("gemm: c must have shape (3, 5), got (3, 4)")):
        gemm(a, b, c=np.empty((3, 4)))
    with pytest.raises(TypeError, match=_m("gemm: c must have dtype float64, got float32")):
        gemm(a, b, c=np.empty((3, 5), np.float32))
    with pytest.raises(ValueError, match=_m("linear: out must have shape (3, 4), got (3, 5)")):
        linear(a, np.ones((4, 4)), out=np.empty((3, 5)))


def test_out_overlap_errors():
    sq = np.ones((4, 4))
    with pytest.raises(ValueError, match=_m("matmul: out (shape (4, 4)) overlaps input a (shape (4, 4))")):
        matmul(sq, np.ones((4, 4)), out=sq)
    with pytest.raises(ValueError, match=_m("matmul: out (shape (4, 4)) overlaps input b (shape (4, 4))")):
        matmul(np.ones((4, 4)), sq.T, out=sq)
    big = np.ones((4, 8))
    with pytest.raises(ValueError, match=_m("matmul: out (shape (4, 4)) overlaps input a (shape (4, 4))")):
        matmul(big[:, :4], np.ones((4, 4)), out=big[:, 2:6])  # partial overlap
    with pytest.raises(ValueError, match=_m("gemm: c (shape (4, 4)) overlaps input a (shape (4, 4))")):
        gemm(sq, np.ones((4, 4)), c=sq, beta=1.0)
    buf = np.ones((5, 4))
    with pytest.raises(ValueError, match=_m("gemm: c (shape (4, 4)) overlaps input bias (shape (4,))")):
        gemm(np.ones((4, 4)), np.ones((4, 4)), c=buf[1:], bias=buf[1])
    x = np.ones((3, 3))
    with pytest.raises(ValueError, match=_m("linear: out (shape (3, 3)) overlaps input x (shape (3, 3))")):
        linear(x, np.ones((3, 3)), out=x)
    # Interleaved but disjoint views do not overlap: allowed, and correct.
    inter = np.zeros((4, 8))
    inter[:, ::2] = np.arange(16.0).reshape(4, 4)
    a_view, out_view = inter[:, ::2], inter[:, 1::2]
    b = np.arange(16.0).reshape(4, 4) / 7
    ref = matmul_ref(a_view, b)
    matmul(a_view, b, out=out_view)
    check(out_view, ref, F64, "matmul with out interleaved with a")


def test_gemm_beta_without_c():
    with pytest.raises(ValueError, match=_m("gemm: beta=0.5 needs c")):
        gemm(np.ones((2, 3)), np.ones((3, 4)), beta=0.5)


def test_scalar_argument_errors():
    a = np.ones((2, 2))
    for bad in ["1", None, True, 1j, np.ones(1)]:
        with pytest.raises(TypeError, match="gemm: alpha must be a real number"):
            gemm(a, a, alpha=bad)
        with pytest.raises(TypeError, match="gemm: beta must be a real number"):
            gemm(a, a, beta=bad, c=np.empty((2, 2)))


def test_bias_shape_errors():
    a, b = np.ones((3, 4)), np.ones((4, 5))
    with pytest.raises(ValueError, match=_m("gemm: bias must have shape (5,), got (6,)")):
        gemm(a, b, bias=np.ones(6))
    with pytest.raises(ValueError, match=_m("gemm: bias must have shape (5,), got (1, 5)")):
        gemm(a, b, bias=np.ones((1, 5)))
    with pytest.raises(ValueError, match=_m("gemm: bias must have shape (5,), got (3,)")):
        gemm(a, b, bias=np.ones(3))  # M, not N
    with pytest.raises(ValueError, match=_m("linear: bias must have shape (5,), got (4,)")):
        linear(a, np.ones((5, 4)), np.ones(4))


def test_linear_shape_errors():
    with pytest.raises(ValueError, match=_m("linear: x's last dimension must equal in_features=7 of weight (5, 7), "
                                            "got x of shape (3, 6)")):
        linear(np.ones((3, 6)), np.ones((5, 7)))
    with pytest.raises(ValueError, match=_m("got x of shape ()")):
        linear(np.array(1.0), np.ones((5, 1)))
    with pytest.raises(ValueError, match=_m("linear: weight must be 2-D (out_features, in_features), got shape (7,)")):
        linear(np.ones((3, 7)), np.ones(7))
