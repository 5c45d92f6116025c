"""Normalization on the GPU against the float64 references and the CPU op. Batch norm
(``deepkern._cuda.batch_norm_forward/backward``, the ops and the BatchNorm layers on 'cuda' arrays
and tensors): training and evaluation, float32 and float64, 2-D and 4-D inputs, channels 1 to 1000,
millions of values in a channel, NaN-prefilled outputs, results that repeat bit for bit. Layer and
group norm (the ops and the LayerNorm/GroupNorm layers, through the ``device`` fixture, so the same
checks also run on the CPU): rows of 1 to 4097 elements, 0 to 300 rows, unaligned and transposed
inputs, large offsets, no weight or bias, odd channels and groups, spatial size 1, parameter
gradients that repeat bit for bit. The bindings' checks run on a GPU; those that need none
(arguments that are not device arrays) run everywhere the module is built. (test_norm.py itself
runs on 'cuda' too, through its ``device`` fixture.)"""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import ops
from test_norm import DTYPES, check

from checks import check as check_rel
from checks import raises_naming
from conftest import on_device, to_host
from reference_nn import (
    batch_norm_backward_ref,
    batch_norm_ref,
    group_norm_backward_ref,
    group_norm_ref,
    layer_norm_backward_ref,
    layer_norm_ref,
)

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


NORM_ENTRIES = [
    "batch_norm_forward",
    "batch_norm_backward",
    "layer_norm_forward",
    "layer_norm_backward",
    "group_norm_forward",
    "group_norm_backward",
]


@compiled
@pytest.mark.parametrize("name", NORM_ENTRIES)
def test_binding_wants_device_arrays(name):
    """Host arrays are refused with a TypeError naming the argument, before any GPU work."""
    host, stat = np.ones(8, np.float32), np.zeros(2)
    args = {
        "batch_norm_forward": (host, None, None, None, None, host, stat, stat, (2, 2, 2), True, 0.1, 1e-5),
        "batch_norm_backward": (host, host, None, stat, stat, host, None, None, (2, 2, 2), True),
        "layer_norm_forward": (host, None, None, host, stat, stat, (2, 4), 1e-5),
        "layer_norm_backward": (host, host, None, stat, stat, host, None, None, (2, 4)),
        "group_norm_forward": (host, None, None, host, stat, stat, (2, 2, 2), 1, 1e-5),
        "group_norm_backward": (host, host, None, stat, stat, host, None, None, (2, 2, 2), 1),
    }[name]
    with raises_naming(TypeError, name, "DeviceArray"):
        getattr(_cuda, name)(*args)


@compiled
def test_backend_has_the_norm_entries():
    from deepkern.backends import cuda as cuda_backend

    if cuda_backend._cuda is None:
        pytest.skip(f"deepkern._cuda does not import: {cuda_backend.import_error}")
    backend = cuda_backend.CUDABackend()
    for name in NORM_ENTRIES:
        assert getattr(backend, name) is getattr(_cuda, name)


# ---- layer and group normalization ---------------------------------------------------------------


def _norm_ops(groups):
    """(forward, backward, float64 forward reference, float64 backward reference) of layer norm over
    the last axis (groups None) or group norm."""
    if groups is None:
        return ops.layer_norm, ops.layer_norm_backward, layer_norm_ref, layer_norm_backward_ref
    return ops.group_norm, ops.group_norm_backward, group_norm_ref, group_norm_backward_ref


def _check_norm_on(device, x, groups, w, b, rng, eps=1e-5, x_on_device=None):
    """The op on ``device`` (x, or ``x_on_device`` when given: a strided or unaligned copy of it)
    into a NaN-prefilled out, against the float64 references and the CPU op; the backward pass
    twice, the second run bit for bit the first."""
    forward, backward, forward_ref, backward_ref = _norm_ops(groups)
    size = x.shape[-1] if groups is None else groups
    ref_size = (size,) if groups is None else groups
    dx = on_device(device, x) if x_on_device is None else x_on_device
    dw, db = on_device(device, w, b)
    out = on_device(device, np.full(x.shape, np.nan, x.dtype))
    result, mean, rstd = forward(dx, size, dw, db, eps=eps, out=out)
    assert result is out
    ref, ref_mean, ref_rstd = forward_ref(x, ref_size, w, b, eps=eps)
    check_rel(out, ref, x.dtype, "out")
    mean, rstd = to_host(mean), to_host(rstd)
    assert mean.dtype == np.float64 and rstd.dtype == np.float64
    stat_tol = 1e-6 if x.dtype == np.float32 else 1e-12
    spread = np.sqrt(np.maximum(1 / np.square(ref_rstd) - eps, 0)) if ref_rstd.size else ref_rstd
    np.testing.assert_allclose(mean, ref_mean, rtol=stat_tol, atol=stat_tol * (1 + np.max(spread, initial=0)))
    np.testing.assert_allclose(rstd, ref_rstd, rtol=10 * stat_tol)
    cpu_out = forward(x, size, w, b, eps=eps)[0]
    np.testing.assert_allclose(to_host(out), cpu_out, rtol=1e-5 if x.dtype == np.float32 else 1e-12, atol=1e-5)

    g = rng.standard_normal(x.shape).astype(x.dtype)
    dg, dmean, drstd = on_device(device, g, mean, rstd)
    grads = backward(dg, dx, size, dw, dmean, drstd)
    refs = backward_ref(g, x, ref_size, w, eps=eps)
    w_terms = w if groups is None or w is None else w.reshape((-1,) + (1,) * (x.ndim - 2))
    terms = float(np.linalg.norm(g * (1 if w is None else w_terms)) * np.max(rstd, initial=1e-3))
    for got, want, name, floor in zip(grads, refs, ("grad_x", "grad_weight", "grad_bias"), (terms, 1e-3, 1e-3)):
        check_rel(got, want, x.dtype, name, floor=floor)
    again = backward(dg, dx, size, dw, dmean, drstd)
    for first, second in zip(grads, again):
        np.testing.assert_array_equal(to_host(first), to_host(second))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("d", [1, 31, 32, 33, 768, 1500, 4097])
@pytest.mark.parametrize("rows", [1, 7, 300])
def test_layer_norm_matches_reference_and_cpu(device, d, rows, dtype, rng):
    x = (rng.standard_normal((rows, d)) * 3 + 1).astype(dtype)
    w, b = (rng.standard_normal(d).astype(dtype) for _ in range(2))
    _check_norm_on(device, x, None, w, b, rng)


@pytest.mark.parametrize("affine", ["weight", "none"])
def test_layer_norm_without_bias_or_weight_and_empty_shapes(device, affine, rng):
    w = rng.standard_normal(64).astype(np.float32) if affine == "weight" else None
    _check_norm_on(device, rng.standard_normal((2, 3, 64)).astype(np.float32), None, w, None, rng)
    for shape in ((0, 64), (3, 0)):
        x = np.zeros(shape, np.float32)
        out, mean, rstd = ops.layer_norm(on_device(device, x), shape[1])
        assert out.shape == shape and to_host(mean).shape == (shape[0],)
        assert np.isnan(to_host(rstd)).all()
        if shape[0] == 0:  # no rows: the parameter gradients are zeros
            dx = on_device(device, x)
            _, gw, gb = ops.layer_norm_backward(dx, dx, 64, None, mean, rstd)
            np.testing.assert_array_equal(to_host(gw), np.zeros(64, np.float32))
            np.testing.assert_array_equal(to_host(gb), np.zeros(64, np.float32))


def test_layer_norm_unaligned_and_transposed_inputs(device, rng):
    """A float32 row start that is not 16-byte aligned (the single-element loads) and a transposed
    input (copied once by the op)."""
    buffer = (rng.standard_normal(5 * 768 + 1) * 2).astype(np.float32)
    x = buffer[1:].reshape(5, 768)
    unaligned = on_device(device, buffer)[1:].reshape(5, 768)
    _check_norm_on(device, x, None, rng.standard_normal(768).astype(np.float32), None, rng, x_on_device=unaligned)
    xt = rng.standard_normal((40, 9)).astype(np.float32)
    _check_norm_on(device, np.ascontiguousarray(xt.T), None, None, None, rng, x_on_device=on_device(device, xt).T)


@pytest.mark.parametrize("d", [768, 4097])
def test_layer_norm_large_offset_keeps_float32_accuracy(device, d, rng):
    """Rows of 1e4 + N(0, 1) in float32 keep float32's accuracy (layer and group norm)."""
    x = (1e4 + rng.standard_normal((6, d))).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    out, mean, rstd = ops.layer_norm(on_device(device, x), d)
    check_rel(out, layer_norm_ref(x, (d,))[0], np.float32, "out", tol=1e-5)
    gx = ops.layer_norm_backward(on_device(device, g), on_device(device, x), d, None, mean, rstd)[0]
    check_rel(gx, layer_norm_backward_ref(g, x, (d,))[0], np.float32, "grad_x", tol=1e-5)
    x3 = x.reshape(3, 2, d)
    check_rel(ops.group_norm(on_device(device, x3), 2)[0], group_norm_ref(x3, 2)[0], np.float32, "group", tol=1e-5)


GROUP_CASES = [
    ((2, 4), 2),
    ((3, 9, 7), 3),
    ((2, 5, 3), 1),
    ((2, 6, 1, 1), 6),
    ((2, 15, 300), 5),
    ((3, 8, 33), 1),
    ((4, 32, 9, 9), 8),
    ((1, 2, 2600), 1),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,groups", GROUP_CASES, ids=str)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_group_norm_matches_reference_and_cpu(device, shape, groups, dtype, affine, rng):
    x = (rng.standard_normal(shape) * 2 - 3).astype(dtype)
    w, b = (rng.standard_normal(shape[1]).astype(dtype) if affine else None for _ in range(2))
    _check_norm_on(device, x, groups, w, b, rng)


@pytest.mark.parametrize("layer", ["layer_norm", "group_norm"])
def test_norm_layers_on_device_tensors_match_the_cpu(device, layer, rng):
    shape = (4, 6, 7, 5)
    x, g = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    results = []
    for dev in ("cpu", device):
        module = (dk.nn.LayerNorm((7, 5)) if layer == "layer_norm" else dk.nn.GroupNorm(3, 6)).to(dev)
        t = dk.tensor(x, requires_grad=True)
        y = module(t.to(dev))
        y.backward(dk.tensor(g).to(dev))
        grads = (module.weight.grad.cpu().numpy(), module.bias.grad.cpu().numpy())
        results.append((y.detach().cpu().numpy(), t.grad.numpy()) + grads)
    for got, want, name in zip(results[1], results[0], ("out", "grad_x", "grad_weight", "grad_bias")):
        check(got, want.astype(np.float64), np.dtype(np.float32), name)


@pytest.mark.cuda
@needs_gpu
def test_layer_and_group_norm_bindings_reject_bad_arguments():
    x = gpu(np.ones((4, 6), np.float32))
    stats = gpu(np.zeros(4)), gpu(np.zeros(4))

    def layer(x=x, out=None, save_mean=None, shape=(4, 6), eps=1e-5, weight=None):
        out = gpu(np.zeros((4, 6), np.float32)) if out is None else out
        save_mean = stats[0] if save_mean is None else save_mean
        _cuda.layer_norm_forward(x, weight, None, out, save_mean, stats[1], shape, eps)

    with raises_naming(TypeError, "layer_norm_forward", "x", "int32"):
        layer(x=gpu(np.ones((4, 6), np.int32)))
    with raises_naming(TypeError, "layer_norm_forward", "weight", "float64"):
        layer(weight=gpu(np.ones(6)))
    with raises_naming(TypeError, "layer_norm_forward", "save_mean", "float64"):
        layer(save_mean=gpu(np.zeros(4, np.float32)))
    with raises_naming(ValueError, "layer_norm_forward", "out", "24"):
        layer(out=gpu(np.zeros(23, np.float32)))
    with raises_naming(ValueError, "layer_norm_forward", "out", "x"):
        layer(out=x)
    with raises_naming(ValueError, "layer_norm_forward", "eps"):
        layer(eps=-1.0)
    with raises_naming(ValueError, "layer_norm_forward", "shape"):
        layer(shape=(-4, -6))
    with raises_naming(ValueError, "group_norm_forward", "groups", "4"):
        _cuda.group_norm_forward(x, None, None, gpu(np.zeros((4, 6), np.float32)), *stats, (1, 4, 6), 3, 1e-5)
    with raises_naming(ValueError, "group_norm_backward", "grad_x", "grad_out"):
        _cuda.group_norm_backward(x, x, None, *stats, x, None, None, (1, 4, 6), 4)


def test_the_norm_cuda_benchmark_suite_cases():
    """norm-cuda: layer norm of (8192, 768) and (4096, 4096), forward and forward+backward, on the GPU
    beside PyTorch's F.layer_norm; its autograd implementations (run here on small host arrays) give
    the float64 formulas' output and grad_x."""
    from deepkern.bench import norm as bench_norm
    from deepkern.bench import registry

    suite = registry.get_suite("norm-cuda")
    assert (suite.unavailable() is None) == dk.cuda.is_available()
    cases = suite.cases(False)
    assert sorted((c.shape, c.layout) for c in cases) == sorted(
        (shape, layout) for shape in ((8192, 768), (4096, 4096)) for layout in ("fwd", "fwd+bwd")
    )
    assert all(c.device == "cuda" and c.metric == "bytes" for c in cases)
    torch = pytest.importorskip("torch")
    for backward in (False, True):
        case = bench_norm._layer_norm_case("small", (33, 48), backward, device="cuda")
        (inputs,) = case.make_inputs()
        ref = bench_norm._layer_norm_numpy(*(a.astype(np.float64) for a in inputs))
        check_rel(case.impls["deepkern"](*inputs), ref, np.float32, f"deepkern backward={backward}")
        theirs = case.impls["torch"](*(torch.from_numpy(a) for a in inputs)).detach().numpy()
        check_rel(theirs, ref, np.float32, f"torch backward={backward}")
