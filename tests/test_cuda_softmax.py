"""The softmax family on the GPU (``deepkern._cuda.softmax``, ``softmax_backward``,
``cross_entropy_forward``, ``cross_entropy_backward`` and the ops and nn functions on 'cuda'
arrays) against the float64 references of test_softmax.py and against the CPU op: each of the
kernels' row layouts (a thread per interleaved row, a warp per row up to 1024 elements, a block
per longer row), special logits, ignored and out-of-range targets, strided and transposed inputs,
NaN-prefilled outputs, zero sizes. The binding's checks run on a GPU too; those that need no GPU
(arguments that are not device arrays) run everywhere the module is built."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import ops
from deepkern.nn import functional as F
from test_softmax import DTYPES, _backward_scale, _ce_backward_scale, _check, _logits

from checks import raises_naming
from reference import cross_entropy_backward_ref, cross_entropy_ref, log_softmax_ref, softmax_backward_ref, softmax_ref

needs_gpu = pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
compiled = pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")

if dk.cuda.is_compiled():
    from deepkern import _cuda

#: (shape, dim) reaching each kernel: interleaved rows, warp rows (<= 1024), block rows, length 1, zeros.
LAYOUTS = [((33, 17, 9), 1), ((7, 300, 2), 0), ((65, 1000), 1), ((3, 1024), 1), ((5, 1025), 1), ((2, 40000), 1)]
LAYOUTS += [((9, 1), 1), ((0, 7), 1), ((6, 0), 1)]


def gpu(host):
    return None if host is None else _cuda.from_cpu(np.ascontiguousarray(host))


def host(device_array):
    return dk.backends.to_device(device_array, "cpu")


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "dim"), LAYOUTS, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_matches_reference_and_cpu(dtype, shape, dim, log, rng):
    x = _logits(rng, shape, dtype)
    fn, ref = (ops.log_softmax, log_softmax_ref) if log else (ops.softmax, softmax_ref)
    out = gpu(np.full(shape, np.nan, dtype))
    assert fn(gpu(x), dim, out=out) is out
    got = host(out)
    _check(got, ref(x, dim), f"cuda {fn.__name__}{shape}", dtype, axis=dim)
    _check(got, fn(x, dim).astype(np.float64), f"cuda vs cpu {fn.__name__}{shape}", dtype, axis=dim)
    y = fn(_logits(rng, shape, dtype, special=False), dim)
    grad = rng.standard_normal(shape).astype(dtype)
    back = ops.log_softmax_backward if log else ops.softmax_backward
    got = host(back(gpu(grad), gpu(y), dim, out=gpu(np.full(shape, np.nan, dtype))))
    scale = _backward_scale(grad, y, dim, log)
    _check(got, softmax_backward_ref(grad, y, dim, log=log), f"cuda {back.__name__}{shape}", dtype, scale=scale)


@pytest.mark.cuda
@needs_gpu
def test_softmax_of_strided_and_transposed_device_arrays(rng):
    x = _logits(rng, (300, 50), np.float32)
    xt = gpu(x).T  # (50, 300), not contiguous: the op copies it once
    _check(ops.softmax(xt, 0), softmax_ref(x.T, 0), "transposed softmax", np.float32, axis=0)
    _check(ops.log_softmax(gpu(x)[::3], 1), log_softmax_ref(x[::3], 1), "strided log_softmax", np.float32, axis=1)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(64, 10), (8, 3000), (4, 7, 5, 3), (1500, 3), (0, 5), (17,)], ids=str)
@pytest.mark.parametrize(("weighted", "smoothing"), [(False, 0.0), (True, 0.1), (False, 1.0)])
def test_cross_entropy_matches_reference_and_cpu(dtype, shape, weighted, smoothing, rng):
    x = _logits(rng, shape, dtype)
    x[np.isinf(x)] = -30.0
    classes = shape[1] if len(shape) > 1 else shape[0]
    t = rng.integers(0, classes, shape[:1] + shape[2:] if len(shape) > 1 else ())
    if t.size > 2:
        t.reshape(-1)[2] = -100
    weight = rng.uniform(0.3, 2.0, classes).astype(dtype) if weighted else None
    options = {"label_smoothing": smoothing}
    loss, stats = ops.cross_entropy(gpu(x), gpu(t), gpu(weight), **options)
    want, want_weight = cross_entropy_ref(x, t, weight, label_smoothing=smoothing)
    wmax = 1.0 if weight is None else float(weight.max(initial=1.0))
    _check(host(loss), want, f"cuda cross_entropy{shape}", dtype, scale=(1 + np.abs(want)) * wmax)
    cpu_loss, cpu_stats = ops.cross_entropy(x, t, weight, **options)
    np.testing.assert_array_equal(host(stats)[..., 2], cpu_stats[..., 2])
    grad = rng.standard_normal(t.shape).astype(dtype)
    out = gpu(np.full(shape, np.nan, dtype))
    ops.cross_entropy_backward(gpu(grad), gpu(x), gpu(t), stats, gpu(weight), **options, out=out)
    scale = _ce_backward_scale(grad, want_weight, weight, classes, smoothing, x.ndim)
    want = cross_entropy_backward_ref(grad, x, t, weight, label_smoothing=smoothing)
    _check(host(out), want, f"cuda cross_entropy_backward{shape}", dtype, scale=scale)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("shape", [(4, 10), (4, 10, 3), (2, 2000)], ids=str)
def test_cross_entropy_refuses_an_out_of_range_target(shape):
    x = gpu(np.zeros(shape, np.float32))
    t = np.zeros(shape[:1] + shape[2:], np.int64)
    t.reshape(-1)[-1] = shape[1]
    with raises_naming(ValueError, "cross_entropy_forward", f"target {shape[1]} is out of range for {shape[1]}"):
        ops.cross_entropy(x, gpu(t))
    # the nn function (the host check is skipped for device targets) reports the kernel's error
    with raises_naming(ValueError, f"target {shape[1]} is out of range"):
        F.cross_entropy(dk.tensor(x), gpu(t))


@pytest.mark.cuda
@needs_gpu
def test_nn_cross_entropy_trains_on_the_gpu_as_on_the_cpu(rng):
    x = _logits(rng, (16, 12), np.float64, special=False)
    t = rng.integers(0, 12, 16)
    grads = []
    for device in ("cpu", "cuda"):
        logits = dk.tensor(x, requires_grad=True, device=device)
        F.cross_entropy(F.log_softmax(logits, dim=1), dk.backends.to_device(t, device), label_smoothing=0.2).backward()
        grads.append(np.asarray(host(logits.grad._array)))
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12, atol=1e-14)


@pytest.mark.cuda
@needs_gpu
def test_binding_rejects_bad_arguments():
    x = gpu(np.ones((2, 3), np.float32))
    out = gpu(np.ones((2, 3), np.float32))
    with raises_naming(TypeError, "softmax", "x", "int32"):
        _cuda.softmax(gpu(np.ones((2, 3), np.int32)), out, 2, 3, 1, False)
    with raises_naming(ValueError, "softmax", "out", "6 elements"):
        _cuda.softmax(x, gpu(np.ones(5, np.float32)), 2, 3, 1, False)
    with raises_naming(ValueError, "softmax", "out overlaps x"):
        _cuda.softmax(x, x, 2, 3, 1, False)
    with raises_naming(ValueError, "softmax", "outer, length, inner", ">= 0"):
        _cuda.softmax(x, out, -1, 3, 1, False)
    with raises_naming(TypeError, "cross_entropy_forward", "target", "int64"):
        args = (gpu(np.ones(2, np.float32)), gpu(np.ones(6, np.float32)), 2, 3, 1, -100, 0.0)
        _cuda.cross_entropy_forward(x, gpu(np.zeros(2, np.int32)), None, *args)
    with raises_naming(ValueError, "cross_entropy_forward", "label_smoothing"):
        args = (gpu(np.ones(2, np.float32)), gpu(np.ones(6, np.float32)), 2, 3, 1, -100, 2.0)
        _cuda.cross_entropy_forward(x, gpu(np.zeros(2, np.int64)), None, *args)


@compiled
@pytest.mark.parametrize("name", ["softmax", "softmax_backward", "cross_entropy_forward", "cross_entropy_backward"])
def test_binding_wants_device_arrays(name):
    """Host arrays are refused with a TypeError naming the argument, before any GPU work."""
    a = np.ones(6, np.float32)
    t = np.zeros(2, np.int64)
    calls = {
        "softmax": (a, a, 2, 3, 1, False),
        "softmax_backward": (a, a, a, 2, 3, 1, False),
        "cross_entropy_forward": (a, t, None, a, a, 2, 3, 1, -100, 0.0),
        "cross_entropy_backward": (a, a, t, None, a, a, 2, 3, 1, -100, 0.0),
    }
    with raises_naming(TypeError, name, "DeviceArray"):
        getattr(_cuda, name)(*calls[name])
