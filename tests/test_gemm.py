"""The contract of deepkern.ops.matmul, deepkern.ops.gemm and deepkern.ops.linear.

Every result is compared with the float64 NumPy reference (tests/reference.py) computed from the
same inputs: ||out - ref|| / ||ref|| below 1e-5 for float32 and 1e-12 for float64. Outputs are
pre-filled with NaN so an element the kernel forgets to write fails, and outputs that are views of
a bigger array check that nothing outside the view was touched. The cases run on every device
(the ``device`` fixture): inputs and outputs live there, views are taken there.
"""

from __future__ import annotations

import concurrent.futures
import re

import deepkern
import numpy as np
import pytest
from deepkern.ops import gemm, linear, matmul
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks import F32, F64, TOL, check, check_non_finite, rand, runs_transposed, sprinkle_non_finite
from conftest import TESTED_ISAS, on_device, ones_on, to_host
from reference import gemm_ref, linear_ref, magnitude_floor, matmul_ref, rel_error

DTYPES = [F32, F64]


# ----------------------------------------------------------------------------------------------
# helpers


# Layouts of a logical 2-D operand of shape (rows, cols), each built from fresh random data.
LAYOUTS = ["C", "F", "T", "slice", "T_slice", "neg_rows", "neg_cols", "neg_both", "bcast", "swapped"]


def make_operand(rng, shape, layout, dtype, device="cpu"):
    """A logical (rows, cols) operand in ``layout``, its storage on ``device`` (views taken there)."""
    r, c = shape

    def stored(*storage_shape):
        return on_device(device, rand(rng, storage_shape, dtype))

    if layout == "C":
        return stored(r, c)
    if layout == "F":  # column-major: the transpose of a C-contiguous (c, r) array holding it
        return on_device(device, rand(rng, (r, c), dtype).T.copy()).T
    if layout == "T":  # transposed view of a C-contiguous array
        return stored(c, r).T
    if layout == "slice":  # rows step 2, columns step 3 from an offset
        return stored(2 * r, 3 * c + 1)[::2, 1::3]
    if layout == "T_slice":
        return stored(2 * c, 3 * r + 1)[::2, 1::3].T
    if layout == "neg_rows":
        return stored(r, c)[::-1]
    if layout == "neg_cols":
        return stored(r, c)[:, ::-1]
    if layout == "neg_both":
        return stored(r, c)[::-1, ::-1]
    if layout == "bcast":  # every row the same, row stride 0 (read-only input)
        return np.broadcast_to(stored(1, c), (r, c))
    if layout == "swapped":  # non-native byte order
        return on_device(device, rand(rng, (r, c), dtype).astype(np.dtype(dtype).newbyteorder("S")))
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


def make_out(m, n, layout, dtype, device="cpu", values=None):
    """A ``(m, n)`` view (holding ``values``, else NaN) of a bigger NaN-filled array on ``device``,
    the bigger array, and the mask of the view's elements in it."""
    view_of, big_shape = OUT_LAYOUTS[layout]
    big = np.full(big_shape(m, n), np.nan, dtype=dtype)
    if values is not None:
        view_of(big)[...] = values
    mask = np.zeros(big.size, dtype=bool)
    mask[view_of(np.arange(big.size).reshape(big.shape)).ravel()] = True
    big = on_device(device, big)
    out = view_of(big)
    assert out.shape == (m, n)
    return out, big, mask.reshape(big.shape)


def check_untouched(big, mask, what=""):
    outside = to_host(big)[~mask]
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
def test_matmul_sizes(device, isa, dtype, m, n, k, rng):
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    da, db, out = on_device(device, a, b, np.full((m, n), np.nan, dtype=dtype))
    got = matmul(da, db, out=out)
    assert got is out
    check(out, matmul_ref(a, b), dtype, f"matmul {isa} {dtype} M={m} N={n} K={k}")
    check(matmul(da, db), matmul_ref(a, b), dtype, f"matmul (new array) {isa} {dtype} M={m} N={n} K={k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m,n,k", [(300, 3100, 600), (500, 70, 1100), (70, 2200, 300), (250, 3090, 1030)])
def test_matmul_several_cache_blocks(device, isa, threads, dtype, m, n, k, rng):
    # Larger than mc (<= 240), kc (<= 1024) and nc (<= 3072 for float32, 2048 for float64) on every
    # ISA, so every blocking loop runs more than once (with 1 thread; with 2 the threads split C; 300
    # rows of K = 600 in float32 on AVX-512 are one row block, see test_matmul_one_row_block_past_mc).
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    out = on_device(device, np.full((m, n), np.nan, dtype=dtype))
    matmul(*on_device(device, a, b), out=out)
    check(out, matmul_ref(a, b), dtype, f"matmul {isa} threads={threads} M={m} N={n} K={k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m,k", [(241, 64), (300, 300), (480, 64), (481, 64), (250, 1030)])
def test_matmul_one_row_block_past_mc(device, isa, threads, dtype, m, k, rng):
    # Up to twice mc rows (240 on AVX-512) make one row block when their A block holds no more than
    # mc x kc elements: B's panels are then read in place (K <= 256) or packed one at a time; 481 rows,
    # or 250 rows of K = 1030, take several row blocks. Bias and ReLU in the epilogue of the last K block.
    n = 70
    wide = rand(rng, (k, n + 9), dtype)
    a, b, bias = rand(rng, (m, k), dtype), wide[:, 5 : 5 + n], rand(rng, (n,), dtype)
    da, db, dbias = on_device(device, a, b, bias)
    out = on_device(device, np.full((m, n), np.nan, dtype=dtype))
    matmul(da, db, out=out)
    check(out, matmul_ref(a, np.ascontiguousarray(b)), dtype, f"matmul {isa} threads={threads} M={m} N={n} K={k}")
    check(
        gemm(da, db, bias=dbias, relu=True),
        gemm_ref(a, np.ascontiguousarray(b), bias=bias, relu=True),
        dtype,
        f"gemm bias relu {isa} threads={threads} M={m} N={n} K={k}",
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m", [2, 4, 6, 8, 10, 16, 20, 64, 68, 128])
def test_matmul_last_row_panel(device, isa, dtype, m, rng):
    # The last row panel of C goes to a short micro-kernel (4 or 8 rows of 12 on AVX-512, 2 or 4
    # of 6 on AVX2): written straight into C when its rows match, else through the edge tile.
    for n, k in ((64, 37), (70, 300)):
        a, b, bias = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype), rand(rng, (n,), dtype)
        da, db, dbias, out = on_device(device, a, b, bias, np.full((m, n), np.nan, dtype=dtype))
        matmul(da, db, out=out)
        check(out, matmul_ref(a, b), dtype, f"matmul {isa} M={m} N={n} K={k}")
        check(
            gemm(da, db, bias=dbias, relu=True),
            gemm_ref(a, b, bias=bias, relu=True),
            dtype,
            f"gemm bias relu {isa} M={m} N={n} K={k}",
        )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m", [13, 240, 241])
@pytest.mark.parametrize("k", [255, 256, 257])
def test_matmul_b_rows_read_in_place(device, isa, threads, dtype, m, k, rng):
    # Up to 240 rows of C and 256 of B, full panels of a B with contiguous rows are read where they
    # lie, at B's row stride (here a column slice of a wider array); the tail panel, deeper B and
    # taller C are packed.
    n = 70
    wide = rand(rng, (k, n + 9), dtype)
    a, b = rand(rng, (m, k), dtype), wide[:, 5 : 5 + n]
    da, db, out = on_device(device, a, b, np.full((m, n), np.nan, dtype=dtype))
    matmul(da, db, out=out)
    check(out, matmul_ref(a, np.ascontiguousarray(b)), dtype, f"matmul {isa} threads={threads} M={m} N={n} K={k}")
    np.testing.assert_array_equal(to_host(db), b)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m,n,k", [(33, 65, 4096), (1, 300, 4096), (300, 1, 4096), (13, 1, 4096)])
def test_matmul_long_k(device, isa, dtype, m, n, k, rng):
    # float32 must stay under 1e-5 for K up to 4096 (also through the GEMV paths, M or N == 1).
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    check(matmul(*on_device(device, a, b)), matmul_ref(a, b), dtype, f"matmul {isa} M={m} N={n} K={k}")


# ----------------------------------------------------------------------------------------------
# the dot-product path: A's rows and B's columns contiguous along K (x @ W.T), few rows, deep K

# (m, n, k, path): n not a multiple of any tier's dot tile, K tails of every SIMD width; the dot path
# takes up to 32 rows, K at least 20 per row, and A within 512 KB or A and B within 16 MB.
DOT_CASES = [
    (2, 7, 257, "dot"),
    (4, 6, 1024, "dot"),
    (5, 13, 333, "dot"),
    (9, 50, 999, "dot"),
    (17, 31, 4099, "dot"),
    (30, 70, 4608, "dot"),  # A 553 KB (float32): past L2, but A and B fit half an L3
    (32, 9, 4800, "dot"),
    (30, 50, 599, "blocked"),  # K under 20 per row
    (33, 9, 4800, "blocked"),  # too many rows
    (49, 70, 4608, "blocked"),
    (1, 9, 4800, "gemv"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m,n,k,path", DOT_CASES)
def test_dot_path_for_rows_and_columns_along_k(isa, threads, dtype, m, n, k, path, rng):
    """linear and gemm of x (m, k) by W.T (W (n, k): B's columns contiguous along K) under every ISA:
    the bias, ReLU, alpha and beta epilogue, NaN-prefilled and column-major C, A rows read backwards,
    against the float64 reference; and the path the product took."""
    x, w, bias = rand(rng, (m, k), dtype), rand(rng, (n, k), dtype), rand(rng, (n,), dtype)
    what = f"{isa} threads={threads} M={m} N={n} K={k}"
    check(linear(x, w, bias), linear_ref(x, w, bias), dtype, f"linear {what}")
    assert deepkern._C.last_gemm_path() == path, what
    for layout in ("C", "F"):
        c0 = rand(rng, (m, n), dtype)
        c, big, mask = make_out(m, n, layout, dtype, values=c0)
        ref = gemm_ref(x[::-1], w.T, alpha=-0.5, beta=0.25, c=c0, bias=bias, relu=True)
        gemm(x[::-1], w.T, alpha=-0.5, beta=0.25, c=c, bias=bias, relu=True)
        check(c, ref, dtype, f"gemm {layout} {what}")
        check_untouched(big, mask, what)
        assert deepkern._C.last_gemm_path() == path, what
    for layout in ("colslice", "F"):  # alpha 1, beta 0: the sums written straight into C's rows, or merged
        out, big, mask = make_out(m, n, layout, dtype)
        gemm(x, w.T, c=out, beta=0.0)
        check(out, matmul_ref(x, w.T), dtype, f"gemm NaN-prefilled {layout} {what}")
        check_untouched(big, mask, what)


# (M, N, K) of dW = dG^T X: a narrow C (runs as C^T on tiles wider than tall), a wide one that stays,
# N = 1 (a GEMV either way), odd sizes.
TRANSPOSED_A_CASES = [(1024, 48, 300), (200, 10, 37), (97, 1, 64), (40, 40, 9), (13, 70, 21)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m,n,k", TRANSPOSED_A_CASES)
def test_narrow_c_with_a_transposed_a_runs_as_c_transposed(isa, threads, dtype, m, n, k, rng):
    """gemm of dG^T (A's columns contiguous) by X under every ISA: a narrow C computes C^T = X^T dG
    (asserted through last_gemm_path, as the kernel's tile says), with alpha, beta, a bias (C^T's
    per-row one) and ReLU, into row- and column-major C and a NaN-prefilled one, against float64."""
    dg, x = rand(rng, (k, m), dtype), rand(rng, (k, n), dtype)
    kernel = deepkern._C.gemm_kernel_name(double_precision=dtype == F64)
    path = "gemv" if n == 1 else "transposed blocked" if runs_transposed(m, n, kernel) else "blocked"
    what = f"{isa} threads={threads} M={m} N={n} K={k}"
    bias = rand(rng, (n,), dtype)
    for layout in ("C", "F"):
        c0 = rand(rng, (m, n), dtype)
        c, big, mask = make_out(m, n, layout, dtype, values=c0)
        ref = gemm_ref(dg.T, x, alpha=-0.5, beta=0.25, c=c0, bias=bias, relu=True)
        gemm(dg.T, x, alpha=-0.5, beta=0.25, c=c, bias=bias, relu=True)
        check(c, ref, dtype, f"gemm {layout} {what}")
        check_untouched(big, mask, what)
        assert deepkern._C.last_gemm_path() == path, what
    out = np.full((m, n), np.nan, dtype)
    gemm(dg.T, x, c=out, beta=0.0)
    check(out, matmul_ref(dg.T, x), dtype, f"gemm NaN-prefilled {what}")
    assert deepkern._C.last_gemm_path() == path, what


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dot_path_gives_the_direct_sums_of_non_finite_inputs(isa, dtype, rng):
    """Inf and NaN in x or W give what the direct sums give (0 * Inf is NaN), as the blocked path."""
    x = sprinkle_non_finite(rng, rand(rng, (6, 777), dtype), 4)
    w = sprinkle_non_finite(rng, rand(rng, (13, 777), dtype), 4)
    w[5, :] = 0.0  # zeros against x's Inf: NaN
    with np.errstate(invalid="ignore"):
        ref = x.astype(np.float64) @ w.T.astype(np.float64)
    got = linear(x, w)
    assert deepkern._C.last_gemm_path() == "dot"
    check_non_finite(got, ref, dtype, f"{isa} non-finite")


# ----------------------------------------------------------------------------------------------
# layouts

LAYOUT_PAIRS = sorted(
    {(la, "C") for la in LAYOUTS}
    | {("C", lb) for lb in LAYOUTS}
    | {(la, la) for la in LAYOUTS}
    | {("T", "C"), ("C", "T"), ("T", "T"), ("F", "T")}
)
LAYOUT_SHAPES = [(37, 41, 29), (1, 45, 33), (45, 1, 33), (1, 1, 9), (130, 70, 300)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout_a,layout_b", LAYOUT_PAIRS)
def test_matmul_layouts(device, isa, dtype, layout_a, layout_b, rng):
    for m, n, k in LAYOUT_SHAPES:
        a = make_operand(rng, (m, k), layout_a, dtype, device)
        b = make_operand(rng, (k, n), layout_b, dtype, device)
        a_before, b_before = to_host(a).copy(), to_host(b).copy()
        out = on_device(device, np.full((m, n), np.nan, dtype=dtype))
        matmul(a, b, out=out)
        check(
            out,
            matmul_ref(a_before, b_before),
            dtype,
            f"matmul {isa} a {layout_a} {a.shape} strides {a.strides}, b {layout_b} {b.shape} strides {b.strides}",
        )
        np.testing.assert_array_equal(to_host(a), a_before)
        np.testing.assert_array_equal(to_host(b), b_before)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("out_layout", list(OUT_LAYOUTS))
@pytest.mark.parametrize("m,n,k", [(37, 41, 29), (1, 45, 33), (45, 1, 33), (130, 70, 300), (5, 6, 0)])
def test_matmul_out_views(device, isa, dtype, out_layout, m, n, k, rng):
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    out, big, mask = make_out(m, n, out_layout, dtype, device)
    got = matmul(*on_device(device, a, b), out=out)
    assert got is out
    what = f"matmul {isa} out {out_layout} strides {out.strides} M={m} N={n} K={k}"
    check(out, matmul_ref(a, b), dtype, what)
    check_untouched(big, mask, what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("storage", ["C", "F", "neg_both"])
def test_gemm_transposes(device, isa, dtype, trans_a, trans_b, storage, rng):
    for m, n, k in [(37, 41, 29), (1, 45, 33), (45, 1, 33), (250, 40, 270)]:
        a = make_operand(rng, (k, m) if trans_a else (m, k), storage, dtype, device)
        b = make_operand(rng, (n, k) if trans_b else (k, n), storage, dtype, device)
        got = gemm(a, b, trans_a=trans_a, trans_b=trans_b)
        check(
            got,
            gemm_ref(to_host(a), to_host(b), trans_a, trans_b),
            dtype,
            f"gemm {isa} trans_a={trans_a} trans_b={trans_b} {storage} a {a.shape} b {b.shape}",
        )


# ----------------------------------------------------------------------------------------------
# gemm: alpha, beta, c; bias and ReLU epilogue

GEMM_SHAPES = [(37, 41, 29), (1, 45, 33), (45, 1, 33), (30, 50, 600), (130, 70, 300), (4, 6, 0)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("c_layout", ["C", "F", "strided"])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-1.75, 0.0), (1.0, 1.0), (0.5, -0.75), (0.0, 2.0)])
def test_gemm_alpha_beta(device, isa, dtype, c_layout, alpha, beta, rng):
    for m, n, k in GEMM_SHAPES:
        a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
        c_before = rand(rng, (m, n), dtype) if beta != 0 else None  # beta == 0 keeps c NaN: it must not be read
        c, big, mask = make_out(m, n, c_layout, dtype, device, c_before)
        ref = gemm_ref(a, b, alpha=alpha, beta=beta, c=to_host(c).copy())
        got = gemm(*on_device(device, a, b), alpha=alpha, beta=beta, c=c)
        assert got is c
        what = f"gemm {isa} alpha={alpha} beta={beta} c {c_layout} strides {c.strides} M={m} N={n} K={k}"
        check(c, ref, dtype, what)
        check_untouched(big, mask, what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gemm_without_c(device, isa, dtype, rng):
    a, b = rand(rng, (23, 19), dtype), rand(rng, (19, 31), dtype)
    da, db = on_device(device, a, b)
    check(gemm(da, db, alpha=2.5), gemm_ref(a, b, alpha=2.5), dtype, "gemm alpha=2.5 without c")
    check(gemm(da, db, beta=0), gemm_ref(a, b), dtype, "gemm beta=0 without c")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(
    "c_layout,beta", [("none", 0.0)] + [(lay, beta) for lay in ("C", "F", "strided") for beta in (0.0, 0.5)]
)
def test_gemm_bias_relu(device, isa, dtype, relu, c_layout, beta, rng):
    for m, n, k in GEMM_SHAPES + [(7, 5, 0), (1, 1, 0), (0, 4, 3)]:
        a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
        bias = rand(rng, (n,), dtype)
        da, db, dbias = on_device(device, a, b, bias)
        what = f"gemm {isa} bias relu={relu} beta={beta} c {c_layout} M={m} N={n} K={k}"
        if c_layout == "none":
            ref = gemm_ref(a, b, bias=bias, relu=relu)
            got = gemm(da, db, bias=dbias, relu=relu, alpha=1.0)
            check(got, ref, dtype, what)
        else:
            c, big, mask = make_out(m, n, c_layout, dtype, device, rand(rng, (m, n), dtype) if beta != 0 else None)
            ref = gemm_ref(a, b, alpha=0.75, beta=beta, c=to_host(c).copy(), bias=bias, relu=relu)
            got = gemm(da, db, alpha=0.75, beta=beta, c=c, bias=dbias, relu=relu)
            assert got is c
            check(c, ref, dtype, what)
            check_untouched(big, mask, what)
        if relu and ref.size >= 20 and k > 0:  # the inputs do exercise the clamp (guards the test itself)
            assert (ref == 0).any() and (ref > 0).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_gemm_k0_epilogue(device, isa, dtype, relu, rng):
    # K == 0: the product is all zeros, so the result is relu(beta * c + bias).
    m, n = 9, 35
    a, b = on_device(device, np.empty((m, 0), dtype), np.empty((0, n), dtype))
    c0 = rand(rng, (m, n), dtype)
    bias = rand(rng, (n,), dtype)
    expected = (0.5 * c0.astype(np.float64)) + bias.astype(np.float64)
    if relu:
        expected = np.maximum(expected, 0.0)
    c, dbias = on_device(device, c0.copy(), bias)
    gemm(a, b, alpha=3.0, beta=0.5, c=c, bias=dbias, relu=relu)
    check(c, expected, dtype, f"gemm K=0 beta=0.5 bias relu={relu}")
    c_nan = on_device(device, np.full((m, n), np.nan, dtype))
    gemm(a, b, beta=0.0, c=c_nan, bias=dbias, relu=relu)
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
def test_linear(device, isa, dtype, with_bias, relu, x_shape, n_out, rng):
    x = rand(rng, x_shape, dtype)
    w = rand(rng, (n_out, x_shape[-1]), dtype)
    bias = rand(rng, (n_out,), dtype) if with_bias else None
    ref = linear_ref(x, w, bias, relu)
    what = f"linear {isa} x {x_shape} weight {w.shape} bias={with_bias} relu={relu}"
    dx, dw, dbias, out = on_device(device, x, w, bias, np.full(ref.shape, np.nan, dtype))
    check(linear(dx, dw, dbias, relu=relu), ref, dtype, what)
    assert linear(dx, dw, dbias, relu=relu, out=out) is out
    check(out, ref, dtype, what + " out=")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_linear_views(device, isa, dtype, rng):
    # Non-contiguous x (leading axes that do not merge) and weight, and an `out` view whose
    # leading axes do not merge either.
    x, w, bias, big = on_device(
        device,
        rand(rng, (3, 8, 13), dtype),
        rand(rng, (13, 9), dtype),
        rand(rng, (18,), dtype),
        np.full((3, 8, 12), np.nan, dtype),
    )
    x, w, bias = x[:, ::2, :], w.T, bias[::2]  # w: (9, 13), a transposed view
    out = big[:, ::2, 1:10]
    mask = np.zeros(big.shape, bool)
    mask[:, ::2, 1:10] = True
    got = linear(x, w, bias, relu=True, out=out)
    assert got is out
    check(
        out,
        linear_ref(to_host(x), to_host(w), to_host(bias), True),
        dtype,
        "linear with strided x, weight.T and out view",
    )
    check_untouched(big, mask, "linear out view")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_linear_k0(device, dtype, rng):
    x, w, bias = on_device(device, np.empty((4, 0), dtype), np.empty((6, 0), dtype), rand(rng, (6,), dtype))
    expected = np.broadcast_to(np.maximum(to_host(bias).astype(np.float64), 0.0), (4, 6))
    check(linear(x, w, bias, relu=True), expected, dtype, "linear in_features=0 relu")
    check(linear(x, w), np.zeros((4, 6)), dtype, "linear in_features=0 no bias")


# ----------------------------------------------------------------------------------------------
# 1-D promotion, batches, dtypes


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matmul_1d(device, isa, dtype, rng):
    for k, n in [(7, 5), (1, 1), (300, 257), (0, 4), (5, 0)]:
        v, mat, v_storage = rand(rng, (k,), dtype), rand(rng, (k, n), dtype), rand(rng, (2 * k,), dtype)
        dv, dmat, dv_storage, out = on_device(device, v, mat, v_storage, np.full((n,), np.nan, dtype))
        check(matmul(dv, dmat), matmul_ref(v, mat), dtype, f"1-D ({k},) @ ({k}, {n})")
        check(matmul(dmat.T, dv), matmul_ref(mat.T, v), dtype, f"2-D ({n}, {k}) @ 1-D ({k},)")
        check(
            matmul(dv_storage[::-2], dmat), matmul_ref(v_storage[::-2], mat), dtype, f"strided 1-D ({k},) @ ({k}, {n})"
        )
        assert matmul(dv, dmat, out=out) is out
        check(out, matmul_ref(v, mat), dtype, "1-D @ 2-D out=")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", [0, 1, 7, 1000])
def test_matmul_vector_dot(device, isa, dtype, k, rng):
    u, v = rand(rng, (k,), dtype), rand(rng, (k,), dtype)
    du, dv, out = on_device(device, u, v, np.full((), np.nan, dtype))
    got = matmul(du, dv)
    ref = matmul_ref(u, v)
    assert np.ndim(got) == 0 and got.dtype == dtype, f"1-D @ 1-D gave {type(got)} {np.shape(got)}"
    if device == "cpu":  # a NumPy scalar, as NumPy's matmul gives
        assert isinstance(got, np.generic) and not isinstance(got, np.ndarray), f"1-D @ 1-D gave {type(got)}"
    floor = magnitude_floor(u[None, :], v[:, None])  # one dot product may cancel
    check(np.asarray(to_host(got)), np.asarray(ref), dtype, f"1-D @ 1-D K={k}", floor)
    assert matmul(du, dv, out=out) is out
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
def test_matmul_batched(device, isa, threads, dtype, shape_a, shape_b, rng):
    a, b = rand(rng, shape_a, dtype), rand(rng, shape_b, dtype)
    ref = matmul_ref(a, b)
    what = f"matmul {shape_a} @ {shape_b} {isa} threads={threads}"
    da, db, out = on_device(device, a, b, np.full(ref.shape, np.nan, dtype))
    check(matmul(da, db), ref, dtype, what)
    assert matmul(da, db, out=out) is out
    check(out, ref, dtype, what + " out=")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matmul_batched_views(device, isa, threads, dtype, rng):
    # Batch axes with negative strides, transposed matrices, broadcast (stride-0) batch axes and an
    # output whose batch and matrix axes are all strided.
    a, b, big = on_device(
        device, rand(rng, (4, 3, 9, 6), dtype), rand(rng, (18, 5), dtype), np.full((5, 3, 13, 7), np.nan, dtype)
    )
    a = a[::-1, :, :, ::-1].transpose(0, 1, 3, 2)  # (4, 3, 6, 9)
    b = np.broadcast_to(b[::2], (3, 9, 5))  # batch stride 0
    out = big[::-1][:4][:, :, 1::2, 1:6]
    assert out.shape == (4, 3, 6, 5)
    mask = np.zeros(big.shape, bool)
    mask[::-1][:4][:, :, 1::2, 1:6] = True
    assert matmul(a, b, out=out) is out
    what = f"matmul batched views a strides {a.strides}, b strides {b.strides}, out strides {out.strides}"
    check(out, matmul_ref(to_host(a), to_host(b)), dtype, what)
    check_untouched(big, mask, what)


def test_mixed_dtypes_give_float64(device, rng):
    a32, b64, v32 = rand(rng, (13, 17), F32), rand(rng, (17, 11), F64), rand(rng, (17,), F32)
    da32, db64, dv32 = on_device(device, a32, b64, v32)
    for a, b, da, db in [(a32, b64, da32, db64), (b64.T, a32.T, db64.T, da32.T)]:
        got = matmul(da, db)
        assert got.dtype == np.result_type(a.dtype, b.dtype) == F64
        check(got, matmul_ref(a, b), F64, f"matmul {a.dtype} @ {b.dtype}")
    check(matmul(dv32, db64), matmul_ref(v32, b64), F64, "matmul 1-D float32 @ float64")


def test_python_lists(rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    got = matmul(a.tolist(), b.tolist())
    check(got, matmul_ref(a, b), F64, "matmul of lists")
    check(gemm(a.tolist(), b.T.tolist(), trans_b=True), gemm_ref(a, b), F64, "gemm of lists")
    bias = rng.standard_normal(2)
    check(
        linear(a.tolist(), b.T.tolist(), bias.tolist(), relu=True),
        linear_ref(a, b.T, bias, True),
        F64,
        "linear of lists",
    )
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


# The device fixture is one value per test, the same for every example.
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY_SETTINGS
@given(
    m=shape_dim,
    n=shape_dim,
    k=shape_dim,
    layout_a=st.sampled_from(LAYOUTS),
    layout_b=st.sampled_from(LAYOUTS),
    out_layout=st.sampled_from(list(OUT_LAYOUTS)),
    dtype=st.sampled_from(DTYPES),
    isa=st.sampled_from(TESTED_ISAS),
    seed=st.integers(0, 2**32 - 1),
)
def test_matmul_property(device, m, n, k, layout_a, layout_b, out_layout, dtype, isa, seed):
    rng = np.random.default_rng(seed)
    a = make_operand(rng, (m, k), layout_a, dtype, device)
    b = make_operand(rng, (k, n), layout_b, dtype, device)
    out, big, mask = make_out(m, n, out_layout, dtype, device)
    with _with_isa(isa):
        assert matmul(a, b, out=out) is out
    what = (
        f"matmul {isa} M={m} N={n} K={k} a {layout_a} strides {a.strides} b {layout_b} "
        f"strides {b.strides} out {out_layout} strides {out.strides}"
    )
    a, b = to_host(a), to_host(b)
    check(out, matmul_ref(a, b), dtype, what, magnitude_floor(a, b))
    check_untouched(big, mask, what)


@PROPERTY_SETTINGS
@given(
    m=shape_dim,
    n=shape_dim,
    k=shape_dim,
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    layout=st.sampled_from(["C", "F", "slice", "neg_both"]),
    c_layout=st.sampled_from(list(OUT_LAYOUTS)),
    alpha=st.sampled_from([1.0, -0.5, 2.0]),
    beta=st.sampled_from([0.0, 1.0, -0.25]),
    with_bias=st.booleans(),
    relu=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    isa=st.sampled_from(TESTED_ISAS),
    seed=st.integers(0, 2**32 - 1),
)
def test_gemm_property(
    device, m, n, k, trans_a, trans_b, layout, c_layout, alpha, beta, with_bias, relu, dtype, isa, seed
):
    rng = np.random.default_rng(seed)
    a = make_operand(rng, (k, m) if trans_a else (m, k), layout, dtype, device)
    b = make_operand(rng, (n, k) if trans_b else (k, n), layout, dtype, device)
    bias = rand(rng, (n,), dtype) if with_bias else None
    c, big, mask = make_out(m, n, c_layout, dtype, device, rand(rng, (m, n), dtype) if beta != 0 else None)
    c_before = to_host(c).copy()
    with _with_isa(isa):
        got = gemm(
            a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, c=c, bias=on_device(device, bias), relu=relu
        )
    assert got is c
    a, b = to_host(a), to_host(b)
    ref = gemm_ref(a, b, trans_a, trans_b, alpha, beta, c_before, bias, relu)
    what = (
        f"gemm {isa} M={m} N={n} K={k} trans_a={trans_a} trans_b={trans_b} {layout} alpha={alpha} "
        f"beta={beta} bias={with_bias} relu={relu} c {c_layout} strides {c.strides}"
    )
    check(c, ref, dtype, what, magnitude_floor(a, b, trans_a, trans_b, alpha, beta, c_before, bias))
    check_untouched(big, mask, what)


# ----------------------------------------------------------------------------------------------
# concurrency


def test_concurrent_python_threads(device, threads):
    shapes = [(70, 80, 90), (1, 500, 300), (33, 17, 257), (130, 70, 300), (300, 1, 200), (5, 3, 0)]
    rng = np.random.default_rng(1234)
    jobs = []
    for i in range(8):
        dtype = DTYPES[i % 2]
        m, n, k = shapes[i % len(shapes)]
        a = make_operand(rng, (m, k), LAYOUTS[i % len(LAYOUTS)], dtype, device)
        b = make_operand(rng, (k, n), "T" if i % 3 else "C", dtype, device)
        jobs.append((a, b, dtype, matmul_ref(to_host(a), to_host(b))))

    def worker(job):
        a, b, dtype, ref = job
        errors = []
        for rep in range(25):
            out = on_device(device, np.full(ref.shape, np.nan, dtype))
            matmul(a, b, out=out)
            err = rel_error(to_host(out), ref)
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


def test_matmul_rank_errors(device):
    a, scalar = on_device(device, np.ones((3, 3)), np.array(2.0))
    with pytest.raises(
        ValueError, match=_m("matmul: a and b must have at least 1 dimension, got shapes () and (3, 3)")
    ):
        matmul(scalar, a)
    with pytest.raises(ValueError, match=_m("got shapes (3, 3) and ()")):
        matmul(a, scalar)


def test_gemm_rank_errors(device):
    vector, square, cube = on_device(device, np.ones(3), np.ones((3, 3)), np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match=_m("gemm: a and b must be 2-D, got shapes (3,) and (3, 3)")):
        gemm(vector, square)
    with pytest.raises(ValueError, match=_m("gemm: a and b must be 2-D, got shapes (2, 3, 3) and (3, 3)")):
        gemm(cube, square)


def test_inner_dimension_errors(device):
    with pytest.raises(
        ValueError, match=r"matmul: inner dimensions differ: a has shape \(2, 3\).*b has shape \(4, 5\)"
    ):
        matmul(ones_on(device, (2, 3)), ones_on(device, (4, 5)))
    with pytest.raises(ValueError, match=r"inner dimensions differ: a has shape \(3,\).*b has shape \(4,\)"):
        matmul(ones_on(device, (3,)), ones_on(device, (4,)))
    with pytest.raises(
        ValueError, match=r"matmul: batch dimensions of a \(2, 3, 4\) and b \(3, 4, 5\) do not broadcast"
    ):
        matmul(ones_on(device, (2, 3, 4)), ones_on(device, (3, 4, 5)))
    with pytest.raises(
        ValueError, match=r"gemm: inner dimensions differ: op\(a\) has shape \(3, 2\), op\(b\) has shape \(3, 5\)"
    ):
        gemm(ones_on(device, (2, 3)), ones_on(device, (3, 5)), trans_a=True)
    with pytest.raises(ValueError, match=r"gemm: inner dimensions differ.*b \(5, 4\), trans_b=True"):
        gemm(ones_on(device, (2, 3)), ones_on(device, (5, 4)), trans_b=True)


@pytest.mark.parametrize("bad", [np.int32, np.float16, np.complex64, np.bool_], ids=lambda t: np.dtype(t).name)
def test_unsupported_dtypes(device, bad):
    good, wrong, wrong_bias = on_device(device, np.ones((3, 3)), np.ones((3, 3), dtype=bad), np.ones(3, dtype=bad))
    name = np.dtype(bad).name
    with pytest.raises(TypeError, match=_m(f"matmul: a must be float32 or float64, got dtype {name}")):
        matmul(wrong, good)
    with pytest.raises(TypeError, match=_m(f"matmul: b must be float32 or float64, got dtype {name}")):
        matmul(good, wrong)
    with pytest.raises(TypeError, match=_m(f"gemm: b must be float32 or float64, got dtype {name}")):
        gemm(good, wrong)
    with pytest.raises(TypeError, match=_m(f"gemm: bias must be float32 or float64, got dtype {name}")):
        gemm(good, good, bias=wrong_bias)
    with pytest.raises(TypeError, match=_m(f"linear: x must be float32 or float64, got dtype {name}")):
        linear(wrong, good)
    with pytest.raises(TypeError, match=_m(f"linear: weight must be float32 or float64, got dtype {name}")):
        linear(good, wrong)


def test_non_numeric_inputs(device):
    good = on_device(device, np.ones((2, 2)))
    for junk in [None, "abc", np.array([object(), object()]), np.array(["1.0", "2.0"])]:
        with pytest.raises(TypeError, match="matmul: a must be float32 or float64, got dtype"):
            matmul(junk, good)
        with pytest.raises(TypeError, match="gemm: b must be float32 or float64, got dtype"):
            gemm(good, junk)


def test_mixed_dtype_errors_in_gemm_and_linear(device):
    a32, a64, bias64 = on_device(device, np.ones((3, 3), np.float32), np.ones((3, 3)), np.ones(3))
    with pytest.raises(TypeError, match=_m("gemm: a and b must have the same dtype, got float32 and float64")):
        gemm(a32, a64)
    with pytest.raises(TypeError, match=_m("linear: x and weight must have the same dtype, got float64 and float32")):
        linear(a64, a32)
    with pytest.raises(TypeError, match=_m("gemm: bias must have dtype float32, got float64")):
        gemm(a32, a32, bias=bias64)


def test_out_errors(device):
    a, b = on_device(device, np.ones((3, 4)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=_m("matmul: out must have shape (3, 5), got (5, 3)")):
        matmul(a, b, out=on_device(device, np.empty((5, 3))))
    with pytest.raises(ValueError, match=_m("matmul: out must have shape (3, 5), got (15,)")):
        matmul(a, b, out=on_device(device, np.empty((15,))))
    with pytest.raises(TypeError, match=_m("matmul: out must have dtype float64, got float32")):
        matmul(a, b, out=on_device(device, np.empty((3, 5), np.float32)))
    with pytest.raises(ValueError, match=_m("gemm: c must have shape (3, 5), got (3, 4)")):
        gemm(a, b, c=on_device(device, np.empty((3, 4))))
    with pytest.raises(TypeError, match=_m("gemm: c must have dtype float64, got float32")):
        gemm(a, b, c=on_device(device, np.empty((3, 5), np.float32)))
    with pytest.raises(ValueError, match=_m("linear: out must have shape (3, 4), got (3, 5)")):
        linear(a, ones_on(device, (4, 4)), out=on_device(device, np.empty((3, 5))))


def test_out_errors_of_numpy_outputs():
    """What only a host array can be: a list, a read-only array, elements aliased by a zero stride."""
    a, b = np.ones((3, 4)), np.ones((4, 5))
    with pytest.raises(TypeError, match=_m("matmul: out must be a numpy.ndarray, got list")):
        matmul(a, b, out=[[0.0] * 5] * 3)
    ro = np.empty((3, 5))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=_m("matmul: out is read-only")):
        matmul(a, b, out=ro)
    aliased = np.lib.stride_tricks.as_strided(np.empty(5), shape=(3, 5), strides=(0, 8), writeable=True)
    with pytest.raises(ValueError, match=_m("matmul: out has a zero stride")):
        matmul(a, b, out=aliased)
    overlapping = np.lib.stride_tricks.as_strided(np.empty(9), shape=(3, 5), strides=(16, 8), writeable=True)
    with pytest.raises(ValueError, match=_m("matmul: out (shape (3, 5), strides (16, 8)) has elements that share")):
        matmul(a, b, out=overlapping)


def test_out_overlap_errors(device):
    sq = ones_on(device, (4, 4))
    with pytest.raises(ValueError, match=_m("matmul: out (shape (4, 4)) overlaps input a (shape (4, 4))")):
        matmul(sq, ones_on(device, (4, 4)), out=sq)
    with pytest.raises(ValueError, match=_m("matmul: out (shape (4, 4)) overlaps input b (shape (4, 4))")):
        matmul(ones_on(device, (4, 4)), sq.T, out=sq)
    big = ones_on(device, (4, 8))
    with pytest.raises(ValueError, match=_m("matmul: out (shape (4, 4)) overlaps input a (shape (4, 4))")):
        matmul(big[:, :4], ones_on(device, (4, 4)), out=big[:, 2:6])  # partial overlap
    with pytest.raises(ValueError, match=_m("gemm: c (shape (4, 4)) overlaps input a (shape (4, 4))")):
        gemm(sq, ones_on(device, (4, 4)), c=sq, beta=1.0)
    buf = ones_on(device, (5, 4))
    with pytest.raises(ValueError, match=_m("gemm: c (shape (4, 4)) overlaps input bias (shape (4,))")):
        gemm(ones_on(device, (4, 4)), ones_on(device, (4, 4)), c=buf[1:], bias=buf[1])
    x = ones_on(device, (3, 3))
    with pytest.raises(ValueError, match=_m("linear: out (shape (3, 3)) overlaps input x (shape (3, 3))")):
        linear(x, ones_on(device, (3, 3)), out=x)
    # Interleaved but disjoint views do not overlap: allowed, and correct.
    inter = np.zeros((4, 8))
    inter[:, ::2] = np.arange(16.0).reshape(4, 4)
    b = np.arange(16.0).reshape(4, 4) / 7
    ref = matmul_ref(inter[:, ::2], b)
    inter = on_device(device, inter)
    out_view = inter[:, 1::2]
    matmul(inter[:, ::2], on_device(device, b), out=out_view)
    check(out_view, ref, F64, "matmul with out interleaved with a")


def test_gemm_beta_without_c(device):
    with pytest.raises(ValueError, match=_m("gemm: beta=0.5 needs c")):
        gemm(*on_device(device, np.ones((2, 3)), np.ones((3, 4))), beta=0.5)


def test_scalar_argument_errors(device):
    a, c = on_device(device, np.ones((2, 2)), np.empty((2, 2)))
    for bad in ["1", None, True, 1j, np.ones(1)]:
        with pytest.raises(TypeError, match="gemm: alpha must be a real number"):
            gemm(a, a, alpha=bad)
        with pytest.raises(TypeError, match="gemm: beta must be a real number"):
            gemm(a, a, beta=bad, c=c)


def test_bias_shape_errors(device):
    a, b = ones_on(device, (3, 4)), ones_on(device, (4, 5))
    with pytest.raises(ValueError, match=_m("gemm: bias must have shape (5,), got (6,)")):
        gemm(a, b, bias=ones_on(device, (6,)))
    with pytest.raises(ValueError, match=_m("gemm: bias must have shape (5,), got (1, 5)")):
        gemm(a, b, bias=ones_on(device, (1, 5)))
    with pytest.raises(ValueError, match=_m("gemm: bias must have shape (5,), got (3,)")):
        gemm(a, b, bias=ones_on(device, (3,)))  # M, not N
    with pytest.raises(ValueError, match=_m("linear: bias must have shape (5,), got (4,)")):
        linear(a, ones_on(device, (5, 4)), ones_on(device, (4,)))


def test_linear_shape_errors(device):
    with pytest.raises(
        ValueError,
        match=_m("linear: x's last dimension must equal in_features=7 of weight (5, 7), got x of shape (3, 6)"),
    ):
        linear(ones_on(device, (3, 6)), ones_on(device, (5, 7)))
    with pytest.raises(ValueError, match=_m("got x of shape ()")):
        linear(on_device(device, np.array(1.0)), ones_on(device, (5, 1)))
    with pytest.raises(ValueError, match=_m("linear: weight must be 2-D (out_features, in_features), got shape (7,)")):
        linear(ones_on(device, (3, 7)), ones_on(device, (7,)))
