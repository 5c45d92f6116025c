"""Pooling on the GPU (``deepkern._cuda.max_pool2d`` ... ``adaptive_avg_pool2d_backward``, the ops
and the nn layers on 'cuda' arrays and tensors) against the float64 references of test_pool.py and
against the CPU op: its cases (padding, dilation, ceil_mode, count_include_pad, divisor_override),
float32 and float64, NaN and ties, zero sizes, NaN-prefilled outputs, strided inputs through the
ops, a max backward pass that is deterministic (bit-equal to the CPU's, run after run) and refuses
bad indices without writing. The binding's checks run on a GPU; those that need none (arguments
that are not device arrays) run everywhere the module is built. (test_pool.py itself runs on
'cuda' too, through its ``device`` fixture.)"""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn, ops
from deepkern.ops import pool as pool_ops
from test_pool import ADAPTIVE_CASES, AVG_CASES, DTYPES, MAX_CASES, _case_id, _params, _shape, check

from checks import raises_naming
from reference import (
    adaptive_avg_pool2d_backward_ref,
    adaptive_avg_pool2d_ref,
    avg_pool2d_backward_ref,
    avg_pool2d_ref,
    max_pool2d_backward_ref,
    max_pool2d_ref,
)

needs_gpu = pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
compiled = pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")

if dk.cuda.is_compiled():
    from deepkern import _cuda

#: The pooling kernels: every public function of deepkern.ops.pool but the size helper.
FUNCTIONS = [name for name in pool_ops.__all__ if name != "pool_output_size"]


def gpu(host):
    return _cuda.from_cpu(np.ascontiguousarray(host))


def nan_gpu(shape, dtype):
    return gpu(np.full(shape, np.nan, dtype))


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", MAX_CASES, ids=[_case_id(c) for c in MAX_CASES])
def test_max_pool2d_matches_reference_and_cpu(case, dtype, rng):
    x = rng.integers(-3, 4, size=_shape(case)).astype(dtype)  # ties in most windows
    out, idx = ops.max_pool2d(gpu(x), return_indices=True, **_params(case))
    ref, ref_idx = max_pool2d_ref(x, **_params(case))
    np.testing.assert_array_equal(out.to_cpu(), ref.astype(dtype))
    np.testing.assert_array_equal(idx.to_cpu(), ref_idx)
    cpu_out, cpu_idx = ops.max_pool2d(x, return_indices=True, **_params(case))
    np.testing.assert_array_equal(out.to_cpu(), cpu_out)
    np.testing.assert_array_equal(idx.to_cpu(), cpu_idx)

    g = rng.standard_normal(ref.shape).astype(dtype)
    gx = ops.max_pool2d_backward(gpu(g), x.shape, idx)
    check(gx.to_cpu(), max_pool2d_backward_ref(g, x.shape, ref_idx), dtype, "max backward")
    np.testing.assert_array_equal(gx.to_cpu(), ops.max_pool2d_backward(g, x.shape, cpu_idx))


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_max_pool2d_nan_as_the_cpu(dtype, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    x[0, 1, 2, 3] = x[1, 2, 5, 5] = x[1, 2, 5, 6] = np.nan
    out, idx = ops.max_pool2d(gpu(x), 3, 2, 1, ceil_mode=True, return_indices=True)
    cpu_out, cpu_idx = ops.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    assert np.isnan(cpu_out).any()
    np.testing.assert_array_equal(out.to_cpu(), cpu_out)
    np.testing.assert_array_equal(idx.to_cpu(), cpu_idx)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("out_plane", [1, 127, 128, 389])
def test_max_backward_is_deterministic_with_collisions(out_plane, dtype, rng):
    """Arbitrary indices, many on a few targets: the CPU's sums bit for bit, and the same bits on
    every run."""
    g = rng.standard_normal((5, 1, out_plane)).astype(dtype)
    idx = rng.integers(-1, 6, size=g.shape).astype(np.int64)
    idx[2] = rng.integers(0, 35, size=out_plane)
    first = ops.max_pool2d_backward(gpu(g), (5, 5, 7), gpu(idx)).to_cpu()
    check(first, max_pool2d_backward_ref(g, (5, 5, 7), idx), dtype, "collisions")
    np.testing.assert_array_equal(first, ops.max_pool2d_backward(g, (5, 5, 7), idx))
    for _ in range(3):
        np.testing.assert_array_equal(ops.max_pool2d_backward(gpu(g), (5, 5, 7), gpu(idx)).to_cpu(), first)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("bad_value", [-2, 35, 1 << 40])
def test_max_backward_bad_index_leaves_grad_x(bad_value, rng):
    g = gpu(rng.standard_normal((2, 4, 4)).astype(np.float32))
    idx = rng.integers(0, 35, size=(2, 4, 4)).astype(np.int64)
    idx[1, 2, 3] = bad_value
    gx = nan_gpu((2, 5, 7), np.float32)
    shape = (2, 5, 7, 4, 4, 1, 1, 1, 1, 0, 0, 1, 1)
    with raises_naming(ValueError, "max_pool2d_backward", str(bad_value), "27", "35"):
        _cuda.max_pool2d_backward(g, gpu(idx), gx, shape)
    assert np.isnan(gx.to_cpu()).all()
    with raises_naming(ValueError, "max_pool2d_backward", "indices", str(bad_value)):
        ops.max_pool2d_backward(g, (2, 5, 7), gpu(idx))


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", AVG_CASES, ids=[_case_id(c) for c in AVG_CASES])
def test_avg_pool2d_matches_reference_and_cpu(case, dtype, rng):
    x = rng.standard_normal(_shape(case)).astype(dtype)
    params = _params(case)
    out = ops.avg_pool2d(gpu(x), **params).to_cpu()
    check(out, avg_pool2d_ref(x, **params), dtype, "avg forward")
    check(out, ops.avg_pool2d(x, **params), dtype, "avg forward vs CPU")
    g = rng.standard_normal(out.shape).astype(dtype)
    gx = ops.avg_pool2d_backward(gpu(g), x.shape, **params).to_cpu()
    check(gx, avg_pool2d_backward_ref(g, x.shape, **params), dtype, "avg backward")
    check(gx, ops.avg_pool2d_backward(g, x.shape, **params), dtype, "avg backward vs CPU")


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("x_shape", "size"), ADAPTIVE_CASES)
def test_adaptive_avg_pool2d_matches_reference_and_cpu(x_shape, size, dtype, rng):
    x = rng.standard_normal(x_shape).astype(dtype)
    out = ops.adaptive_avg_pool2d(gpu(x), size).to_cpu()
    check(out, adaptive_avg_pool2d_ref(x, size), dtype, "adaptive forward")
    np.testing.assert_array_equal(out, ops.adaptive_avg_pool2d(x, size))
    g = rng.standard_normal(out.shape).astype(dtype)
    gx = ops.adaptive_avg_pool2d_backward(gpu(g), x.shape).to_cpu()
    check(gx, adaptive_avg_pool2d_backward_ref(g, x.shape), dtype, "adaptive backward")
    np.testing.assert_array_equal(gx, ops.adaptive_avg_pool2d_backward(g, x.shape))


@pytest.mark.cuda
@needs_gpu
def test_large_planes_and_many_blocks(rng):
    """More outputs than the grid's blocks cover at once in some launches, and large planes for the
    one-block-per-plane scatter."""
    x = rng.standard_normal((2, 3, 300, 301)).astype(np.float32)
    out, idx = ops.max_pool2d(gpu(x), 3, 2, 1, return_indices=True)
    cpu_out, cpu_idx = ops.max_pool2d(x, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(out.to_cpu(), cpu_out)
    np.testing.assert_array_equal(idx.to_cpu(), cpu_idx)
    g = rng.standard_normal(cpu_out.shape).astype(np.float32)
    gx = ops.max_pool2d_backward(gpu(g), x.shape, idx).to_cpu()
    np.testing.assert_array_equal(gx, ops.max_pool2d_backward(g, x.shape, cpu_idx))
    big = rng.standard_normal((1 << 17, 1, 2, 2)).astype(np.float32)
    np.testing.assert_array_equal(ops.avg_pool2d(gpu(big), 2).to_cpu(), ops.avg_pool2d(big, 2))


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("name", FUNCTIONS)
def test_zero_planes_write_nothing(name):
    """planes == 0 (a batch of 0 through the ops): nothing is read or written and no kernel fails."""
    shape = (0, 4, 4, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1)
    empty = gpu(np.zeros((0, 1, 4, 4), np.float32))
    empty_out = gpu(np.zeros((0, 1, 2, 2), np.float32))
    empty_idx = gpu(np.zeros((0, 1, 2, 2), np.int64))
    args = {
        "max_pool2d": (empty, empty_out, empty_idx, shape),
        "max_pool2d_backward": (empty_out, empty_idx, empty, shape),
        "avg_pool2d": (empty, empty_out, shape, True, 0),
        "avg_pool2d_backward": (empty_out, empty, shape, True, 0),
        "adaptive_avg_pool2d": (empty, empty_out, shape),
        "adaptive_avg_pool2d_backward": (empty_out, empty, shape),
    }[name]
    getattr(_cuda, name)(*args)
    assert ops.max_pool2d(gpu(np.zeros((0, 2, 5, 5), np.float32)), 2).shape == (0, 2, 2, 2)


@pytest.mark.cuda
@needs_gpu
def test_ops_on_strided_inputs_and_outputs(rng):
    x = rng.standard_normal((2, 3, 10, 9)).astype(np.float64)
    xd = gpu(np.ascontiguousarray(x.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)  # a non-contiguous view
    out = nan_gpu((2, 3, 4, 9), np.float64)[:, :, :, ::2]
    result = ops.avg_pool2d(xd, 3, 2, 1, count_include_pad=False, out=out)
    assert result is out
    check(result.to_cpu(), avg_pool2d_ref(x, 3, 2, 1, count_include_pad=False), np.dtype(np.float64))


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize(
    "layer",
    [
        lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        lambda: nn.AvgPool2d((3, 2), (2, 1), (1, 0), count_include_pad=False),
        lambda: nn.AdaptiveAvgPool2d((3, 5)),
    ],
    ids=["max", "avg", "adaptive"],
)
def test_nn_layers_forward_and_backward_on_cuda_tensors(layer, rng):
    x = rng.standard_normal((2, 3, 11, 12)).astype(np.float32)
    g = None
    results = []
    for device in ("cpu", "cuda"):
        t = dk.tensor(x, requires_grad=True)
        y = layer()(t.cuda() if device == "cuda" else t)
        if g is None:
            g = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(dk.tensor(g).cuda() if device == "cuda" else dk.tensor(g))
        results.append((np.asarray(y.cpu().numpy()), np.asarray(t.grad.numpy())))
    (y_cpu, gx_cpu), (y_gpu, gx_gpu) = results
    check(y_gpu, y_cpu.astype(np.float64), np.dtype(np.float32), "forward")
    check(gx_gpu, gx_cpu.astype(np.float64), np.dtype(np.float32), "backward")


@pytest.mark.cuda
@needs_gpu
def test_binding_rejects_bad_arguments():
    x = gpu(np.ones((1, 2, 6, 6), np.float32))
    shape = (2, 6, 6, 3, 3, 2, 2, 2, 2, 0, 0, 1, 1)

    def run(x=x, out=None, indices=None, shape=shape):
        out = gpu(np.ones((2, 3, 3), np.float32)) if out is None else out
        _cuda.max_pool2d(x, out, indices, shape)

    with raises_naming(TypeError, "max_pool2d", "x", "int32"):
        run(x=gpu(np.ones((1, 2, 6, 6), np.int32)))
    with raises_naming(TypeError, "max_pool2d", "out", "float64"):
        run(out=gpu(np.ones((2, 3, 3), np.float64)))
    with raises_naming(TypeError, "max_pool2d", "indices", "int64"):
        run(indices=gpu(np.ones((2, 3, 3), np.int32)))
    with raises_naming(ValueError, "max_pool2d", "out", "18"):
        run(out=gpu(np.ones((2, 3, 4), np.float32)))
    with raises_naming(ValueError, "max_pool2d", "x", "72"):
        run(x=gpu(np.ones((1, 2, 6, 5), np.float32)))
    with raises_naming(ValueError, "max_pool2d", "x", "C-contiguous"):
        run(x=gpu(np.ones((1, 2, 6, 6), np.float32)).transpose(0, 1, 3, 2))
    with raises_naming(ValueError, "max_pool2d", "out", "x"):
        run(out=x.reshape(-1)[:18].reshape(2, 3, 3))
    indices = gpu(np.zeros((2, 3, 3), np.int64))
    with raises_naming(ValueError, "max_pool2d", "overlaps", "indices"):
        run(x=gpu(np.ones((1, 2, 6, 6), np.float64)), out=indices.view(np.float64), indices=indices)
    with raises_naming(ValueError, "max_pool2d", "kernel_h"):
        run(shape=(2, 6, 6, 3, 3, 0, 2, 2, 2, 0, 0, 1, 1))
    with raises_naming(ValueError, "avg_pool2d", "dilation"):
        _cuda.avg_pool2d(x, gpu(np.ones(18, np.float32)), (2, 6, 6, 3, 3, 2, 2, 2, 2, 0, 0, 2, 1), True, 0)
    with raises_naming(ValueError, "adaptive_avg_pool2d", "too large"):
        _cuda.adaptive_avg_pool2d(x, gpu(np.ones(18, np.float32)), (0, 1 << 40, 6, 1 << 40, 3, 1, 1, 1, 1, 0, 0, 1, 1))


@compiled
@pytest.mark.parametrize("name", FUNCTIONS)
def test_binding_wants_device_arrays(name):
    """Host arrays are refused with a TypeError naming the argument, before any GPU work."""
    host = np.ones(4, np.float32)
    shape = (1, 2, 2, 1, 1, 2, 2, 2, 2, 0, 0, 1, 1)
    args = {
        "max_pool2d": (host, host, None, shape),
        "max_pool2d_backward": (host, np.zeros(1, np.int64), host, shape),
        "avg_pool2d": (host, host, shape, True, 0),
        "avg_pool2d_backward": (host, host, shape, True, 0),
        "adaptive_avg_pool2d": (host, host, shape),
        "adaptive_avg_pool2d_backward": (host, host, shape),
    }[name]
    with raises_naming(TypeError, name, "DeviceArray"):
        getattr(_cuda, name)(*args)


@compiled
def test_backend_has_every_pooling_entry():
    """The CUDA backend maps each pooling kernel name to the _cuda function of that name."""
    from deepkern.backends import cuda as cuda_backend

    if cuda_backend._cuda is None:
        pytest.skip(f"deepkern._cuda does not import: {cuda_backend.import_error}")
    backend = cuda_backend.CUDABackend()
    for name in FUNCTIONS:
        assert getattr(backend, name) is getattr(_cuda, name)
