"""Batch normalization on the GPU (``deepkern._cuda.batch_norm_forward/backward``, the ops and the
BatchNorm layers on 'cuda' arrays and tensors) against the float64 references and the CPU op:
training and evaluation, float32 and float64, 2-D and 4-D inputs, channels 1 to 1000, millions of
values in a channel, NaN-prefilled outputs, results that repeat bit for bit. The binding's checks run
on a GPU; those that need none (arguments that are not device arrays) run everywhere the module is
built. (test_norm.py itself runs on 'cuda' too, through its ``device`` fixture.)"""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import ops
from test_norm import DTYPES, check

from checks import raises_naming
from reference_nn import batch_norm_backward_ref, batch_norm_ref

needs_gpu = pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
compiled = pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")

if dk.cuda.is_compiled():
    from deepkern import _cuda

SHAPES = [(2, 1), (7, 3), (3, 1000), (4099, 5), (2, 3, 5, 7), (5, 16, 9, 10), (2, 2, 1000, 1001)]


def gpu(host):
    return _cuda.from_cpu(np.ascontiguousarray(host))


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_binding_matches_reference_and_cpu(shape, dtype, training, rng):
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    ref, ref_m, ref_v = batch_norm_ref(x, rm, rv, w, b, training=training)
    dm, dv = gpu(rm), gpu(rv)
    out = gpu(np.full(shape, np.nan, dtype))
    save_mean, save_invstd = gpu(np.full(c, np.nan)), gpu(np.full(c, np.nan))
    kernel_shape = (shape[0], c, int(np.prod(shape[2:], dtype=np.int64)))
    _cuda.batch_norm_forward(
        gpu(x), gpu(w), gpu(b), dm, dv, out, save_mean, save_invstd, kernel_shape, training, 0.1, 1e-5
    )
    check(out.to_cpu(), ref, dtype, "out")
    check(dm.to_cpu(), ref_m, dtype, "running_mean")
    check(dv.to_cpu(), ref_v, dtype, "running_var")
    cpu_out, cpu_mean, cpu_invstd = ops.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training)
    np.testing.assert_allclose(save_mean.to_cpu(), cpu_mean, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(save_invstd.to_cpu(), cpu_invstd, rtol=1e-12)
    g = rng.standard_normal(shape).astype(dtype)
    grads = ops.batch_norm_backward(gpu(g), gpu(x), gpu(w), save_mean, save_invstd, training)
    mean = cpu_mean if training else rm.astype(np.float64)
    refs = batch_norm_backward_ref(g, x, w, mean, 1 / np.square(cpu_invstd) - 1e-5, training)
    for got, want, name in zip(grads, refs, ("grad_x", "grad_weight", "grad_bias")):
        check(got.to_cpu(), want, dtype, name)
    again = ops.batch_norm_backward(gpu(g), gpu(x), gpu(w), save_mean, save_invstd, training)
    for first, second in zip(grads, again):
        np.testing.assert_array_equal(first.to_cpu(), second.to_cpu())  # a fixed reduction order


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("layer", ["1d", "2d"])
def test_layers_on_cuda_tensors_match_the_cpu(layer, rng):
    shape = (16, 6) if layer == "1d" else (4, 6, 7, 5)
    x, g = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    results = []
    for device in ("cpu", "cuda"):
        module = (dk.nn.BatchNorm1d if layer == "1d" else dk.nn.BatchNorm2d)(6).to(device)
        t = dk.tensor(x, requires_grad=True)
        y = module(t.to(device))
        y.backward(dk.tensor(g).to(device))
        results.append((y.detach().cpu().numpy(), t.grad.numpy(), module.running_var.cpu().numpy()))
    for got, want, name in zip(results[1], results[0], ("out", "grad_x", "running_var")):
        check(got, want.astype(np.float64), np.dtype(np.float32), name)


@pytest.mark.cuda
@needs_gpu
def test_binding_rejects_bad_arguments():
    x = gpu(np.ones((4, 3, 5), np.float32))
    stats = gpu(np.zeros(3)), gpu(np.zeros(3))

    def run(x=x, weight=None, out=None, save_mean=None, shape=(4, 3, 5), training=True):
        out = gpu(np.zeros((4, 3, 5), np.float32)) if out is None else out
        save_mean = stats[0] if save_mean is None else save_mean
        _cuda.batch_norm_forward(x, weight, None, None, None, out, save_mean, stats[1], shape, training, 0.1, 1e-5)

    with raises_naming(TypeError, "batch_norm_forward", "x", "int32"):
        run(x=gpu(np.ones((4, 3, 5), np.int32)))
    with raises_naming(TypeError, "batch_norm_forward", "weight", "float64"):
        run(weight=gpu(np.ones(3)))
    with raises_naming(TypeError, "batch_norm_forward", "save_mean", "float64"):
        run(save_mean=gpu(np.zeros(3, np.float32)))
    with raises_naming(ValueError, "batch_norm_forward", "out", "60"):
        run(out=gpu(np.zeros(59, np.float32)))
    with raises_naming(ValueError, "batch_norm_forward", "out", "C-contiguous"):
        run(out=gpu(np.zeros((5, 3, 4), np.float32)).transpose(2, 1, 0))
    with raises_naming(ValueError, "batch_norm_forward", "out", "x"):
        run(out=x)
    with raises_naming(ValueError, "batch_norm_forward", "more than 1 value per channel"):
        run(shape=(1, 60, 1), x=x.reshape(60), out=gpu(np.zeros(60, np.float32)))
    with raises_naming(ValueError, "batch_norm_forward", "running_mean and running_var"):
        run(training=False)


@compiled
@pytest.mark.parametrize("name", ["batch_norm_forward", "batch_norm_backward"])
def test_binding_wants_device_arrays(name):
    """Host arrays are refused with a TypeError naming the argument, before any GPU work."""
    host, stat = np.ones(8, np.float32), np.zeros(2)
    args = {
        "batch_norm_forward": (host, None, None, None, None, host, stat, stat, (2, 2, 2), True, 0.1, 1e-5),
        "batch_norm_backward": (host, host, None, stat, stat, host, None, None, (2, 2, 2), True),
    }[name]
    with raises_naming(TypeError, name, "DeviceArray"):
        getattr(_cuda, name)(*args)


@compiled
def test_backend_has_the_norm_entries():
    from deepkern.backends import cuda as cuda_backend

    if cuda_backend._cuda is None:
        pytest.skip(f"deepkern._cuda does not import: {cuda_backend.import_error}")
    backend = cuda_backend.CUDABackend()
    for name in ("batch_norm_forward", "batch_norm_backward"):
        assert getattr(backend, name) is getattr(_cuda, name)
