"""The pooling kernels of csrc/cuda/pool run on the host (tests/cuda_emulation): max, average
and adaptive average pooling, forward and backward, float32 and float64, against the float64
references of test_pool.py's cases (padding, dilation, ceil_mode, count_include_pad,
divisor_override), with NaN-prefilled outputs, NaN and ties in the windows, zero sizes, indices
that collide across the scatter's chunks, and bad indices (recorded, grad_x untouched). The
backward passes are compared with the CPU op too: the max and adaptive ones sum in the CPU's order,
so they agree bit for bit. Needs the source tree and a C++ compiler, not a GPU; the problems are
small."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)
from test_pool import ADAPTIVE_CASES, AVG_CASES, DTYPES, MAX_CASES, TOL, _case_id, _pair, _params, _shape, check  # noqa: E402

from reference import (  # noqa: E402
    adaptive_avg_pool2d_backward_ref,
    adaptive_avg_pool2d_ref,
    avg_pool2d_backward_ref,
    avg_pool2d_ref,
    max_pool2d_backward_ref,
    max_pool2d_ref,
    pool_output_size_ref,
)

#: dk_pool's op codes (tests/cuda_emulation/pool_driver.cpp).
MAX, AVG, AVG_BACKWARD, ADAPTIVE, ADAPTIVE_BACKWARD = range(5)
#: The max backward kernel's chunk: one output per thread of its 128-thread blocks.
CHUNK = 128

NULL = ctypes.c_void_p(None)


def _driver():
    return emulation.load_driver("pool")


def _kernel_shape(x_shape, case=None, out_hw=None) -> np.ndarray:
    """The 13-field shape tuple deepkern._C's pooling functions take, for ``case``'s window (or the
    default window and ``out_hw``: the adaptive and max backward calls)."""
    planes = int(np.prod(x_shape[:-2]))
    h, w = x_shape[-2:]
    if case is None:
        return np.array([planes, h, w, *out_hw, 1, 1, 1, 1, 0, 0, 1, 1], np.int64)
    kernel = _pair(case["kernel_size"])
    stride = kernel if case["stride"] is None else _pair(case["stride"])
    padding, dilation = _pair(case["padding"]), _pair(case.get("dilation", 1))
    out_hw = [
        pool_output_size_ref(n, k, s, p, d, case["ceil_mode"])
        for n, k, s, p, d in zip((h, w), kernel, stride, padding, dilation)
    ]
    return np.array([planes, h, w, *out_hw, *kernel, *stride, *padding, *dilation], np.int64)


def _run(op, shape, src, dst, indices=None, count_include_pad=True, divisor_override=None):
    is_double = int(src.dtype == np.float64)
    ind = NULL if indices is None else indices
    _driver().dk_pool(op, is_double, shape, src, dst, ind, int(count_include_pad), divisor_override or 0)


def _max_backward(shape, grad_out, indices, grad_x) -> np.ndarray:
    """Runs the check and the scatter; returns the bad-index record (position, index, found)."""
    bad = np.zeros(3, np.int64)
    _driver().dk_max_pool_backward(int(grad_out.dtype == np.float64), shape, grad_out, indices, grad_x, bad)
    return bad


def _nan(shape, dtype) -> np.ndarray:
    return np.full(shape, np.nan, dtype)


# Every third case: the drivers run each block's threads as fibers on the host, so the cases stay few.
EMU_MAX = MAX_CASES[::3]
EMU_AVG = AVG_CASES[::3]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", EMU_MAX, ids=[_case_id(c) for c in EMU_MAX])
def test_max_pool2d_matches_reference(case, dtype, rng):
    x = rng.integers(-3, 4, size=_shape(case)).astype(dtype)  # ties in most windows
    shape = _kernel_shape(x.shape, case)
    ref, ref_idx = max_pool2d_ref(x, **_params(case))
    out, idx = _nan(ref.shape, dtype), np.full(ref.shape, -7, np.int64)
    _run(MAX, shape, x, out, idx)
    np.testing.assert_array_equal(out, ref.astype(dtype))
    np.testing.assert_array_equal(idx, ref_idx)
    out_only = _nan(ref.shape, dtype)
    _run(MAX, shape, x, out_only)  # without indices
    np.testing.assert_array_equal(out_only, out)

    g = rng.standard_normal(ref.shape).astype(dtype)
    gx = _nan(x.shape, dtype)
    assert not _max_backward(_kernel_shape(x.shape, out_hw=ref.shape[-2:]), g, idx, gx)[2]
    check(gx, max_pool2d_backward_ref(g, x.shape, idx), dtype, "max backward")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_max_pool2d_nan_wins_and_padding_only_windows(dtype, rng):
    """A NaN in a window gives NaN (the last one in row-major order sets the index); a window over
    padding only (dilation) gives -inf and index -1."""
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    x[0, 1, 2, 3] = x[1, 2, 5, 5] = x[1, 2, 5, 6] = np.nan
    case = dict(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)
    shape = _kernel_shape(x.shape, case)
    ref, ref_idx = max_pool2d_ref(x, **case)
    out, idx = _nan(ref.shape, dtype), np.zeros(ref.shape, np.int64)
    _run(MAX, shape, x, out, idx)
    assert np.isnan(ref).any()
    np.testing.assert_array_equal(out, ref.astype(dtype))
    np.testing.assert_array_equal(idx, ref_idx)

    x = rng.standard_normal((1, 1, 1, 4)).astype(dtype)
    case = dict(kernel_size=(1, 2), stride=1, padding=(0, 1), dilation=(1, 5), ceil_mode=False)
    shape = _kernel_shape(x.shape, case)
    ref, ref_idx = max_pool2d_ref(x, **case)
    assert (ref_idx == -1).any()
    out, idx = _nan(ref.shape, dtype), np.zeros(ref.shape, np.int64)
    _run(MAX, shape, x, out, idx)
    np.testing.assert_array_equal(out, ref.astype(dtype))
    np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("out_plane", [1, CHUNK - 1, CHUNK, 3 * CHUNK + 5])
def test_max_backward_collisions_across_chunks(out_plane, dtype, rng):
    """Arbitrary indices (as the contract allows: not only a window's), many on a few targets
    within and across the scatter's chunks, -1 among them: the float64 reference, and the CPU op
    bit for bit (both add each target's values in output order)."""
    ops = pytest.importorskip("deepkern.ops")
    planes, in_h, in_w = 3, 5, 7
    g = rng.standard_normal((planes, 1, out_plane)).astype(dtype)
    idx = rng.integers(-1, 6, size=g.shape).astype(np.int64)  # targets 0..5 and -1
    idx[1] = rng.integers(0, in_h * in_w, size=out_plane)  # spread over the plane
    gx = _nan((planes, in_h, in_w), dtype)
    bad = _max_backward(_kernel_shape(gx.shape, out_hw=(1, out_plane)), g, idx, gx)
    assert not bad[2]
    check(gx, max_pool2d_backward_ref(g, gx.shape, idx), dtype, "collisions")
    np.testing.assert_array_equal(gx, ops.max_pool2d_backward(g, gx.shape, idx))


@pytest.mark.parametrize("bad_value", [-2, 35, 1 << 40])
def test_max_backward_bad_index_recorded_and_nothing_written(bad_value, rng):
    g = rng.standard_normal((2, 4, 4)).astype(np.float32)
    idx = rng.integers(0, 35, size=g.shape).astype(np.int64)
    idx[1, 2, 3] = bad_value
    gx = _nan((2, 5, 7), np.float32)
    position, index, found = _max_backward(_kernel_shape(gx.shape, out_hw=(4, 4)), g, idx, gx)
    assert found and position == 16 + 2 * 4 + 3 and index == bad_value
    assert np.isnan(gx).all(), "grad_x was written although an index was refused"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", EMU_AVG, ids=[_case_id(c) for c in EMU_AVG])
def test_avg_pool2d_matches_reference(case, dtype, rng):
    x = rng.standard_normal(_shape(case)).astype(dtype)
    shape = _kernel_shape(x.shape, case)
    params = _params(case)
    opts = dict(count_include_pad=case["count_include_pad"], divisor_override=case["divisor_override"])
    ref = avg_pool2d_ref(x, **params)
    out = _nan(ref.shape, dtype)
    _run(AVG, shape, x, out, **opts)
    check(out, ref, dtype, "avg forward")

    g = rng.standard_normal(ref.shape).astype(dtype)
    gx = _nan(x.shape, dtype)
    _run(AVG_BACKWARD, shape, g, gx, **opts)
    check(gx, avg_pool2d_backward_ref(g, x.shape, **params), dtype, "avg backward")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("x_shape", "size"), ADAPTIVE_CASES)
def test_adaptive_avg_pool2d_matches_reference_and_cpu(x_shape, size, dtype, rng):
    ops = pytest.importorskip("deepkern.ops")
    x = rng.standard_normal(x_shape).astype(dtype)
    ref = adaptive_avg_pool2d_ref(x, size)
    shape = _kernel_shape(x.shape, out_hw=ref.shape[-2:])
    out = _nan(ref.shape, dtype)
    _run(ADAPTIVE, shape, x, out)
    check(out, ref, dtype, "adaptive forward")
    np.testing.assert_array_equal(out, ops.adaptive_avg_pool2d(x, size))

    g = rng.standard_normal(ref.shape).astype(dtype)
    gx = _nan(x.shape, dtype)
    _run(ADAPTIVE_BACKWARD, shape, g, gx)
    check(gx, adaptive_avg_pool2d_backward_ref(g, x.shape), dtype, "adaptive backward")
    np.testing.assert_array_equal(gx, ops.adaptive_avg_pool2d_backward(g, x.shape))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_many_planes_and_blocks(dtype, rng):
    """More outputs than one block of threads and more planes than one block of the scatter."""
    x = rng.standard_normal((3, 7, 19, 23)).astype(dtype)
    case = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(2, 1), ceil_mode=True)
    shape = _kernel_shape(x.shape, case)
    ref, ref_idx = max_pool2d_ref(x, **case)
    out, idx = _nan(ref.shape, dtype), np.zeros(ref.shape, np.int64)
    _run(MAX, shape, x, out, idx)
    np.testing.assert_array_equal(out, ref.astype(dtype))
    np.testing.assert_array_equal(idx, ref_idx)
    g = rng.standard_normal(ref.shape).astype(dtype)
    gx = _nan(x.shape, dtype)
    _max_backward(_kernel_shape(x.shape, out_hw=ref.shape[-2:]), g, idx, gx)
    check(gx, max_pool2d_backward_ref(g, x.shape, idx), dtype, "max backward")


@pytest.mark.parametrize("op", [MAX, AVG, AVG_BACKWARD, ADAPTIVE, ADAPTIVE_BACKWARD, "max_backward"])
def test_zero_sizes_touch_nothing(op, rng):
    """planes == 0: nothing is read or written; the backward passes of planes with no outputs
    write zeros."""
    x = rng.standard_normal((1, 4, 4)).astype(np.float32)
    dst = _nan((1, 4, 4), np.float32)
    empty = _kernel_shape((0, 4, 4), out_hw=(2, 2))
    if op == "max_backward":
        _max_backward(empty, x, np.zeros(4, np.int64), dst)
    else:
        _run(op, empty, x, dst, np.zeros(4, np.int64) if op == MAX else None)
    assert np.isnan(dst).all()
    if op in (AVG_BACKWARD, ADAPTIVE_BACKWARD, "max_backward"):
        no_outputs = _kernel_shape((1, 4, 4), out_hw=(0, 2))
        if op == "max_backward":
            _max_backward(no_outputs, x, np.zeros(1, np.int64), dst)
        else:
            _run(op, no_outputs, x, dst)
        np.testing.assert_array_equal(dst, 0)


def test_avg_backward_matches_cpu(rng):
    """Each input element's sum in the CPU's order: the float64 results agree with the CPU op to
    the last bits that a different order could change."""
    ops = pytest.importorskip("deepkern.ops")
    case = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False, divisor_override=None)
    x_shape = (2, 3, 11, 10)
    shape = _kernel_shape(x_shape, case)
    g = rng.standard_normal((2, 3, *shape[3:5])).astype(np.float64)
    gx = _nan(x_shape, np.float64)
    _run(AVG_BACKWARD, shape, g, gx, count_include_pad=False)
    cpu = ops.avg_pool2d_backward(g, x_shape, 3, 2, 1, True, False)
    np.testing.assert_allclose(gx, cpu, rtol=TOL[np.dtype(np.float64)], atol=1e-15)
