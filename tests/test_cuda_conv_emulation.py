"""The convolution kernels of csrc/cuda/conv run on host threads (tests/cuda_emulation): forward,
data gradient and weight gradient (with and without splitting K, bias gradient) on the FP32 tile
(simt), the TF32 and the BF16 tile (mma), against float64 NumPy, over stride, padding (also one
more at the end), dilation, groups, the tails of both tile dimensions and of K, and zero batch.
Needs the source tree and a C++ compiler, not a GPU; the problems are small (every GPU thread is a
host thread)."""

from __future__ import annotations

import ctypes

import ml_dtypes
import numpy as np
import pytest

from reference import conv2d_backward_ref, conv2d_out_size, conv2d_pads, conv2d_ref

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)

FP32, TF32, BF16 = 0, 1, 2
DTYPE = {FP32: np.float32, TF32: np.float32, BF16: ml_dtypes.bfloat16}
#: Largest error allowed, relative to the same sums over absolute values, per element.
TOLERANCE = {FP32: 1e-5, TF32: 2e-3, BF16: 2e-2}
PRECISIONS = [pytest.param(FP32, id="fp32"), pytest.param(TF32, id="tf32"), pytest.param(BF16, id="bf16")]

# (x shape, w shape, stride, padding, dilation, groups): each reaches a tile tail, K crossing
# slices, and one feature of the geometry.
GEOMETRIES = [
    pytest.param((2, 3, 9, 8), (5, 3, 3, 3), 1, 1, 1, 1, id="m-two-tiles-pad1"),
    pytest.param((1, 3, 6, 6), (130, 3, 3, 3), 1, 0, 1, 1, id="n-two-tiles"),
    pytest.param((2, 4, 11, 10), (6, 2, 3, 2), (2, 3), (1, 2), (2, 1), 2, id="stride-dilation-groups"),
    pytest.param((1, 2, 7, 5), (3, 2, 4, 2), 1, "same", 1, 1, id="same-even-kernel"),
    pytest.param((1, 40, 5, 5), (4, 40, 1, 1), 1, 0, 1, 1, id="1x1-deep-k"),
    pytest.param((2, 6, 7, 7), (6, 1, 3, 3), 2, 1, 1, 6, id="depthwise"),
]


def _geometry(x_shape, w_shape, stride, padding, dilation, groups):
    """The 16 Conv2dShape fields (int64) and (P, Q)."""
    stride, dilation = (tuple(v) if isinstance(v, tuple) else (v, v) for v in (stride, dilation))
    (pt, _), (pl, _) = conv2d_pads(padding, w_shape[2:], dilation)
    p, q = conv2d_out_size(x_shape[2:], w_shape[2:], stride, padding, dilation)
    n, c, h, w = x_shape
    fields = [n, c, h, w, w_shape[0], w_shape[2], w_shape[3], groups, *stride, pt, pl, *dilation, p, q]
    return np.array(fields, dtype=np.int64), (p, q)


def _inputs(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _check(got, ref, scale, precision):
    got = got.astype(np.float64)
    assert got.shape == ref.shape
    assert np.all(np.isfinite(got)), "non-finite values in the result"
    error = np.abs(got - ref) / np.maximum(scale, 1e-30)
    assert error.max(initial=0.0) <= TOLERANCE[precision], f"max relative error {error.max()}"


def _abs(a):
    return np.abs(a.astype(np.float64))


def _null():
    return ctypes.c_void_p(None)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", GEOMETRIES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_forward(rng, precision, x_shape, w_shape, stride, padding, dilation, groups, with_bias):
    dtype = DTYPE[precision]
    fields, (p, q) = _geometry(x_shape, w_shape, stride, padding, dilation, groups)
    x, w = _inputs(rng, x_shape, dtype), _inputs(rng, w_shape, dtype)
    b = _inputs(rng, w_shape[0], dtype) if with_bias else None
    y = np.full((x_shape[0], w_shape[0], p, q), np.nan, dtype)  # written, never read
    emulation.load_driver("conv").dk_conv2d_forward(fields, precision, x, w, _null() if b is None else b, y)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    ref = conv2d_ref(x, w, b, **options)
    scale = conv2d_ref(_abs(x), _abs(w), None if b is None else _abs(b), **options)
    _check(y, ref, scale, precision)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", GEOMETRIES)
def test_backward_data(rng, precision, x_shape, w_shape, stride, padding, dilation, groups):
    dtype = DTYPE[precision]
    fields, (p, q) = _geometry(x_shape, w_shape, stride, padding, dilation, groups)
    x, w = _inputs(rng, x_shape, dtype), _inputs(rng, w_shape, dtype)
    gy = _inputs(rng, (x_shape[0], w_shape[0], p, q), dtype)
    gx = np.full(x_shape, np.nan, dtype)
    emulation.load_driver("conv").dk_conv2d_backward_data(fields, precision, gy, w, gx)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    ref = conv2d_backward_ref(gy, x, w, **options)[0]
    scale = conv2d_backward_ref(_abs(gy), x, _abs(w), **options)[0]
    _check(gx, ref, scale, precision)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "misaligned"])
def test_forward_weight_rows_vector_and_element_loads(rng, precision, offset):
    """The forward weights go through the GEMM's strided loaders: 16-byte loads when every row of
    (C/groups)*R*S = 40 elements starts on 16 bytes, element loads when the array starts one element
    in (the same results either way)."""
    dtype = DTYPE[precision]
    x_shape, w_shape = (2, 10, 6, 5), (9, 10, 2, 2)
    fields, (p, q) = _geometry(x_shape, w_shape, 1, 1, 1, 1)
    x = _inputs(rng, x_shape, dtype)
    size = int(np.prod(w_shape))
    store = np.zeros(size + 16, dtype)
    start = (-store.ctypes.data % 16) // store.itemsize + offset  # 16-byte aligned plus `offset` elements
    w = store[start : start + size].reshape(w_shape)
    w[...] = _inputs(rng, w_shape, dtype)
    assert (w.ctypes.data % 16 == 0) == (offset == 0)
    y = np.full((2, 9, p, q), np.nan, dtype)
    emulation.load_driver("conv").dk_conv2d_forward(fields, precision, x, w, _null(), y)
    _check(y, conv2d_ref(x, w, padding=1), conv2d_ref(_abs(x), _abs(w), padding=1), precision)


def _weight_gradient(rng, precision, geometry, splits, with_bias=True):
    x_shape, w_shape, stride, padding, dilation, groups = geometry
    dtype = DTYPE[precision]
    fields, (p, q) = _geometry(x_shape, w_shape, stride, padding, dilation, groups)
    x, w = _inputs(rng, x_shape, dtype), _inputs(rng, w_shape, dtype)
    gy = _inputs(rng, (x_shape[0], w_shape[0], p, q), dtype)
    gw = np.full(w_shape, np.nan, dtype)
    gb = np.full(w_shape[0], np.nan, dtype) if with_bias else None
    driver = emulation.load_driver("conv")
    plan = np.zeros(2, np.int64)
    driver.dk_conv2d_weight_plan(fields, 108, splits, plan)
    workspace = np.full(max(int(plan[1]) // 4, 1), np.nan, np.float32)
    driver.dk_conv2d_backward_weight(fields, precision, gy, x, gw, _null() if gb is None else gb, splits, workspace)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    _, ref_w, ref_b = conv2d_backward_ref(gy, x, w, **options)
    _, scale_w, scale_b = conv2d_backward_ref(_abs(gy), _abs(x), w, **options)
    _check(gw, ref_w, scale_w, precision)
    if gb is not None:
        _check(gb, ref_b, scale_b, precision)
    return plan


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", GEOMETRIES)
def test_backward_weight(rng, precision, x_shape, w_shape, stride, padding, dilation, groups):
    _weight_gradient(rng, precision, (x_shape, w_shape, stride, padding, dilation, groups), splits=1)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("splits", [2, 3, 7])
def test_backward_weight_split_k(rng, precision, splits):
    # K = 2 * 9 * 8 = 144 outputs: 2 and 3 splits of 96 and 64 (whole 32-slices, the last short);
    # 7 asks for more splits than K has 32-slices, so fewer run (each with work).
    geometry = ((2, 3, 9, 8), (5, 3, 3, 3), 1, 1, 1, 1)
    _weight_gradient(rng, precision, geometry, splits=splits, with_bias=splits != 3)


def test_split_choice(rng):
    """Small tiles over a long K split; many tiles, or a short K, do not; the workspace fits."""
    big_k, _ = _geometry((32, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, 1)
    many_tiles, _ = _geometry((32, 512, 7, 7), (4096, 512, 3, 3), 1, 1, 1, 1)
    short_k, _ = _geometry((1, 64, 8, 8), (64, 64, 3, 3), 1, 1, 1, 1)
    driver = emulation.load_driver("conv")
    plans = {}
    for name, fields in [("big_k", big_k), ("many_tiles", many_tiles), ("short_k", short_k)]:
        plan = np.zeros(2, np.int64)
        driver.dk_conv2d_weight_plan(fields, 132, 4, plan)
        plans[name] = plan.copy()
    assert plans["big_k"][0] > 1
    assert plans["many_tiles"][0] == 1
    assert plans["short_k"][0] == 1
    assert plans["big_k"][1] == 4 * 64 * 64 * 9 * 4  # 4 splits of the float32 weight gradient


@pytest.mark.parametrize("precision", PRECISIONS)
def test_zero_batch(rng, precision):
    """No images: forward and data gradient write nothing; the weight and bias gradients are 0."""
    dtype = DTYPE[precision]
    fields, (p, q) = _geometry((0, 3, 5, 5), (4, 3, 3, 3), 1, 1, 1, 1)
    x, w = np.zeros((0, 3, 5, 5), dtype), _inputs(rng, (4, 3, 3, 3), dtype)
    gy = np.zeros((0, 4, p, q), dtype)
    driver = emulation.load_driver("conv")
    driver.dk_conv2d_forward(fields, precision, x, w, _null(), gy)
    driver.dk_conv2d_backward_data(fields, precision, gy, w, x)
    gw, gb = np.full((4, 3, 3, 3), np.nan, dtype), np.full(4, np.nan, dtype)
    driver.dk_conv2d_backward_weight(fields, precision, gy, x, gw, gb, 1, _null())
    assert np.all(gw.astype(np.float64) == 0.0) and np.all(gb.astype(np.float64) == 0.0)
