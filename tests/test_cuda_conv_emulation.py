"""The convolution kernels of csrc/cuda/conv run on the host (tests/cuda_emulation): forward,
data gradient and weight gradient (with and without splitting K, bias gradient) on the FP32 tile
(simt), the TF32 and the BF16 tile (mma), against float64 NumPy, over stride, padding (also one
more at the end), dilation, groups, the tails of both tile dimensions and of K, and zero batch;
the depthwise kernels (groups == channels) against float64 NumPy and the CPU op, over odd sizes,
stride, dilation, padding beyond half the kernel, channel multipliers, kernel sizes with and
without weights in registers, tile tails, zero batch and the weight gradient's determinism; the
1x1 convolutions that run on the GEMM itself; and which path each shape takes. Needs the source
tree and a C++ compiler, not a GPU; the problems are small (every GPU thread is a fiber on the host)."""

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


def _workspace(driver, fields):
    """The forward and data-gradient workspace of the shape (garbage-filled), or null when none."""
    size = np.zeros(1, np.int64)
    driver.dk_conv2d_workspace_bytes(fields, size)
    return np.full(int(size[0]) // 8, -7, np.int64) if size[0] > 0 else _null()


def _last_path(driver):
    path = np.zeros(1, np.int64)
    driver.dk_conv2d_last_path(path)
    return PATHS[int(path[0])]


PATHS = ("none", "implicit_gemm", "depthwise", "gemm_1x1")  # conv.h's Conv2dPath


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", GEOMETRIES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_forward(rng, precision, x_shape, w_shape, stride, padding, dilation, groups, with_bias):
    dtype = DTYPE[precision]
    fields, (p, q) = _geometry(x_shape, w_shape, stride, padding, dilation, groups)
    x, w = _inputs(rng, x_shape, dtype), _inputs(rng, w_shape, dtype)
    b = _inputs(rng, w_shape[0], dtype) if with_bias else None
    y = np.full((x_shape[0], w_shape[0], p, q), np.nan, dtype)  # written, never read
    driver = emulation.load_driver("conv")
    driver.dk_conv2d_forward(fields, precision, x, w, _null() if b is None else b, y, _workspace(driver, fields))
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
    driver = emulation.load_driver("conv")
    driver.dk_conv2d_backward_data(fields, precision, gy, w, gx, _workspace(driver, fields))
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
    emulation.load_driver("conv").dk_conv2d_forward(fields, precision, x, w, _null(), y, _null())
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
    driver.dk_conv2d_forward(fields, precision, x, w, _null(), gy, _null())
    driver.dk_conv2d_backward_data(fields, precision, gy, w, x, _null())
    gw, gb = np.full((4, 3, 3, 3), np.nan, dtype), np.full(4, np.nan, dtype)
    driver.dk_conv2d_backward_weight(fields, precision, gy, x, gw, gb, 1, _null())
    assert np.all(gw.astype(np.float64) == 0.0) and np.all(gb.astype(np.float64) == 0.0)


# --- depthwise kernels and the 1x1 GEMM path ---------------------------------------------------------

# (x shape, w shape, stride, padding, dilation): groups = channels. 3x3 and 5x5 keep their weights
# in registers, the others read them from memory; each reaches an odd size or a tile tail.
DEPTHWISE = [
    pytest.param((2, 5, 9, 11), (5, 1, 3, 3), 1, 1, 1, id="3x3-odd"),
    pytest.param((1, 4, 13, 10), (4, 1, 3, 3), 2, 1, 1, id="3x3-stride2"),
    pytest.param((2, 3, 11, 9), (3, 1, 3, 3), 1, 2, 2, id="3x3-dilation2"),
    pytest.param((1, 3, 6, 7), (3, 1, 3, 3), (1, 2), 3, 1, id="3x3-pad-beyond-half"),
    pytest.param((2, 3, 8, 9), (6, 1, 3, 3), 1, 1, 1, id="3x3-multiplier2"),
    pytest.param((1, 2, 12, 11), (4, 1, 5, 5), 2, 2, 1, id="5x5-stride2-multiplier2"),
    pytest.param((1, 3, 10, 9), (6, 1, 2, 3), (2, 1), (1, 2), (1, 2), id="2x3-generic"),
    pytest.param((1, 2, 13, 12), (2, 1, 3, 3), 3, 4, (2, 3), id="3x3-stride3-dilation"),
    pytest.param((1, 2, 4, 70), (2, 1, 3, 3), 1, 1, 1, id="wide-two-column-tiles"),
    pytest.param((1, 2, 67, 3), (2, 1, 3, 3), 1, 1, 1, id="tall-two-row-tiles"),
    pytest.param((1, 20, 3, 3), (20, 1, 3, 3), 1, 1, 1, id="many-channels-per-block"),
]


#: The depthwise kernels compute float32 data in full FP32 whatever the precision (tf32 runs the fp32
#: kernels: test_path_of_each_shape covers it), bfloat16 data with FP32 sums.
DEPTHWISE_PRECISIONS = [pytest.param(FP32, id="fp32"), pytest.param(BF16, id="bf16")]


def _depthwise_geometry(x_shape, w_shape, stride, padding, dilation):
    return _geometry(x_shape, w_shape, stride, padding, dilation, x_shape[1])


def _cpu_op(*arrays):
    """The arrays as float32 for the CPU op (deepkern.ops on NumPy arrays: csrc/cpu/conv)."""
    return [None if a is None else np.ascontiguousarray(a, dtype=np.float32) for a in arrays]


@pytest.mark.parametrize("precision", DEPTHWISE_PRECISIONS)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation", DEPTHWISE)
def test_depthwise_forward_and_data_gradient(rng, precision, x_shape, w_shape, stride, padding, dilation):
    """Against float64 NumPy and the CPU op on the same values; outputs prefilled with NaN."""
    from deepkern import ops

    dtype = DTYPE[precision]
    groups = x_shape[1]
    fields, (p, q) = _depthwise_geometry(x_shape, w_shape, stride, padding, dilation)
    x, w, b = _inputs(rng, x_shape, dtype), _inputs(rng, w_shape, dtype), _inputs(rng, w_shape[0], dtype)
    gy = _inputs(rng, (x_shape[0], w_shape[0], p, q), dtype)
    y, gx = np.full(gy.shape, np.nan, dtype), np.full(x_shape, np.nan, dtype)
    driver = emulation.load_driver("conv")
    driver.dk_conv2d_forward(fields, precision, x, w, b, y, _workspace(driver, fields))
    assert _last_path(driver) == "depthwise"
    driver.dk_conv2d_backward_data(fields, precision, gy, w, gx, _workspace(driver, fields))
    assert _last_path(driver) == "depthwise"
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    scale_y = conv2d_ref(_abs(x), _abs(w), _abs(b), **options)
    scale_x = conv2d_backward_ref(_abs(gy), x, _abs(w), **options)[0]
    _check(y, conv2d_ref(x, w, b, **options), scale_y, precision)
    _check(gx, conv2d_backward_ref(gy, x, w, **options)[0], scale_x, precision)
    _check(y, ops.conv2d(*_cpu_op(x, w, b), **options).astype(np.float64), scale_y, precision)
    cpu_gx = ops.conv2d_backward(*_cpu_op(gy, x, w), needs=(True, False, False), **options)[0]
    _check(gx, cpu_gx.astype(np.float64), scale_x, precision)


def _depthwise_weight_gradient(driver, fields, precision, gy, x, w_shape, splits, with_bias=True):
    dtype = DTYPE[precision]
    gw = np.full(w_shape, np.nan, dtype)
    gb = np.full(w_shape[0], np.nan, dtype) if with_bias else None
    plan = np.zeros(2, np.int64)
    driver.dk_conv2d_weight_plan(fields, 108, splits, plan)
    workspace = np.full(max(int(plan[1]) // 4, 1), np.nan, np.float32)
    driver.dk_conv2d_backward_weight(fields, precision, gy, x, gw, _null() if gb is None else gb, splits, workspace)
    assert _last_path(driver) == "depthwise"
    return gw, gb


@pytest.mark.parametrize("precision", DEPTHWISE_PRECISIONS)
@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation", DEPTHWISE[:8])
def test_depthwise_weight_gradient(rng, precision, splits, x_shape, w_shape, stride, padding, dilation):
    """grad_w and grad_bias against float64 NumPy and the CPU op, with N*P*Q in one block's range or
    split over three; 5x5 has three groups of taps (9, 9 and 7)."""
    from deepkern import ops

    dtype = DTYPE[precision]
    fields, (p, q) = _depthwise_geometry(x_shape, w_shape, stride, padding, dilation)
    x, w = _inputs(rng, x_shape, dtype), _inputs(rng, w_shape, dtype)
    gy = _inputs(rng, (x_shape[0], w_shape[0], p, q), dtype)
    driver = emulation.load_driver("conv")
    gw, gb = _depthwise_weight_gradient(driver, fields, precision, gy, x, w_shape, splits, with_bias=splits == 1)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=x_shape[1])
    _, ref_w, ref_b = conv2d_backward_ref(gy, x, w, **options)
    _, scale_w, scale_b = conv2d_backward_ref(_abs(gy), _abs(x), w, **options)
    _check(gw, ref_w, scale_w, precision)
    _, cpu_w, cpu_b = ops.conv2d_backward(*_cpu_op(gy, x, w), needs=(False, True, True), **options)
    _check(gw, cpu_w.astype(np.float64), scale_w, precision)
    if gb is not None:
        _check(gb, ref_b, scale_b, precision)
        _check(gb, cpu_b.astype(np.float64), scale_b, precision)


@pytest.mark.parametrize("precision", DEPTHWISE_PRECISIONS)
def test_depthwise_weight_gradient_is_deterministic(rng, precision):
    """Two runs with the same splits give the same bits (fixed-order sums, no atomics); N*P*Q = 2 * 17
    * 15 = 510 positions is not a multiple of the 256 threads of a block."""
    dtype = DTYPE[precision]
    x_shape, w_shape = (2, 3, 17, 15), (3, 1, 3, 3)
    fields, (p, q) = _depthwise_geometry(x_shape, w_shape, 1, 1, 1)
    x, gy = _inputs(rng, x_shape, dtype), _inputs(rng, (2, 3, p, q), dtype)
    driver = emulation.load_driver("conv")
    first = _depthwise_weight_gradient(driver, fields, precision, gy, x, w_shape, splits=2)
    second = _depthwise_weight_gradient(driver, fields, precision, gy, x, w_shape, splits=2)
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()  # bit for bit (and no NaN left)
        assert np.all(np.isfinite(a.astype(np.float64)))


def test_depthwise_split_choice():
    """Few channels over many positions split (at most one split per 4096 positions); many channels,
    or few positions, do not; the workspace holds each split's (taps + 1) sums per channel."""
    driver = emulation.load_driver("conv")

    def plan(x_shape, w_shape, splits=4):
        fields, _ = _depthwise_geometry(x_shape, w_shape, 1, 1, 1)
        out = np.zeros(2, np.int64)
        driver.dk_conv2d_weight_plan(fields, 132, splits, out)
        return out

    few_channels = plan((32, 8, 56, 56), (8, 1, 3, 3))
    assert 1 < few_channels[0] <= 32 * 56 * 56 // 4096
    assert plan((32, 1024, 7, 7), (1024, 1, 3, 3))[0] == 1
    assert plan((1, 8, 8, 8), (8, 1, 3, 3))[0] == 1
    assert plan((1, 8, 8, 8), (16, 1, 3, 3), splits=4)[1] == 4 * 16 * (9 + 1) * 4


@pytest.mark.parametrize("precision", DEPTHWISE_PRECISIONS)
def test_depthwise_zero_batch(rng, precision):
    """No images: nothing to write forward and backward; the weight and bias gradients are 0."""
    dtype = DTYPE[precision]
    x_shape, w_shape = (0, 4, 6, 5), (8, 1, 3, 3)
    fields, (p, q) = _depthwise_geometry(x_shape, w_shape, 1, 1, 1)
    x, w, gy = np.zeros(x_shape, dtype), _inputs(rng, w_shape, dtype), np.zeros((0, 8, p, q), dtype)
    driver = emulation.load_driver("conv")
    driver.dk_conv2d_forward(fields, precision, x, w, _null(), gy, _null())
    driver.dk_conv2d_backward_data(fields, precision, gy, w, x, _null())
    gw, gb = _depthwise_weight_gradient(driver, fields, precision, gy, x, w_shape, splits=2)
    assert np.all(gw.astype(np.float64) == 0.0) and np.all(gb.astype(np.float64) == 0.0)


# (x shape, w shape, stride, padding, groups, path): 1x1 stride 1 without padding and groups runs
# on the GEMM; one change of each sends it back to the implicit GEMM; groups == channels of any
# kernel size to the depthwise kernels (with one channel it is an ordinary convolution).
PATH_CASES = [
    pytest.param((2, 33, 6, 5), (20, 33, 1, 1), 1, 0, 1, "gemm_1x1", id="1x1"),
    pytest.param((3, 8, 1, 7), (5, 8, 1, 1), 1, 0, 1, "gemm_1x1", id="1x1-one-row"),
    pytest.param((2, 6, 6, 5), (4, 6, 1, 1), 2, 0, 1, "implicit_gemm", id="1x1-stride2"),
    pytest.param((2, 6, 6, 5), (4, 6, 1, 1), 1, 1, 1, "implicit_gemm", id="1x1-padded"),
    pytest.param((2, 6, 6, 5), (4, 3, 1, 1), 1, 0, 2, "implicit_gemm", id="1x1-groups2"),
    pytest.param((2, 6, 6, 5), (6, 1, 1, 1), 1, 0, 6, "depthwise", id="1x1-depthwise"),
    pytest.param((2, 1, 6, 5), (3, 1, 3, 3), 1, 1, 1, "implicit_gemm", id="one-channel"),
]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,groups,path", PATH_CASES)
def test_path_of_each_shape(rng, precision, x_shape, w_shape, stride, padding, groups, path):
    """Forward (with bias) and data gradient on the path the shape takes, against float64 NumPy;
    the workspace is requested only where the 1x1 GEMM needs its batch offsets."""
    dtype = DTYPE[precision]
    fields, (p, q) = _geometry(x_shape, w_shape, stride, padding, 1, groups)
    x, w, b = _inputs(rng, x_shape, dtype), _inputs(rng, w_shape, dtype), _inputs(rng, w_shape[0], dtype)
    gy = _inputs(rng, (x_shape[0], w_shape[0], p, q), dtype)
    y, gx = np.full(gy.shape, np.nan, dtype), np.full(x_shape, np.nan, dtype)
    driver = emulation.load_driver("conv")
    workspace = _workspace(driver, fields)
    assert isinstance(workspace, np.ndarray) == (path == "gemm_1x1")
    driver.dk_conv2d_forward(fields, precision, x, w, b, y, workspace)
    assert _last_path(driver) == path
    driver.dk_conv2d_backward_data(fields, precision, gy, w, gx, workspace)
    assert _last_path(driver) == path
    options = dict(stride=stride, padding=padding, groups=groups)
    _check(y, conv2d_ref(x, w, b, **options), conv2d_ref(_abs(x), _abs(w), _abs(b), **options), precision)
    ref_gx, scale_gx = (
        conv2d_backward_ref(gy, x, w, **options)[0],
        conv2d_backward_ref(_abs(gy), x, _abs(w), **options)[0],
    )
    _check(gx, ref_gx, scale_gx, precision)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_1x1_zero_batch(rng, precision):
    dtype = DTYPE[precision]
    fields, _ = _geometry((0, 5, 4, 3), (6, 5, 1, 1), 1, 0, 1, 1)
    x, w, y = np.zeros((0, 5, 4, 3), dtype), _inputs(rng, (6, 5, 1, 1), dtype), np.zeros((0, 6, 4, 3), dtype)
    driver = emulation.load_driver("conv")
    driver.dk_conv2d_forward(fields, precision, x, w, _null(), y, _null())
    driver.dk_conv2d_backward_data(fields, precision, y, w, x, _null())
    assert _last_path(driver) == "gemm_1x1"
