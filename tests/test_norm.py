"""Batch normalization's fused kernels (``deepkern.ops.batch_norm`` and ``batch_norm_backward``,
``deepkern._C.batch_norm_forward/backward``) against the float64 references of reference_nn.py:
training and evaluation, float32 and float64, 2-D (N, C) and 4-D inputs, channels 1 to 1000,
a channel of millions of values, a large mean beside a small spread (where a one-pass variance
cancels), running statistics updated in place (also non-contiguous ones), NaN-prefilled outputs,
strided inputs, zero batch sizes, every thread count, and the BatchNorm layers' autograd on top.
The cases run on every device of the ``device`` fixture."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn, ops

from checks import raises_naming
from conftest import on_device, to_host
from reference_nn import batch_norm_backward_ref, batch_norm_ref

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]
#: Relative error bounds against float64 (statistics in float64; one rounding per output in float32).
TOL = {F32: 2e-6, F64: 1e-13}

SHAPES = [
    (2, 1),
    (7, 3),
    (3, 1000),
    (130, 300),
    (4099, 5),
    (2, 3, 5, 7),
    (4, 5, 1, 1),
    (1, 2, 33),
    (5, 16, 9, 10),
    (2, 7, 3, 4, 5),
]


def check(got, ref, dtype, what="", condition=1.0):
    """``got`` equals the float64 ``ref`` to the dtype's bound times ``condition``, relative to
    the reference's scale."""
    got, ref = np.asarray(to_host(got), np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, what
    scale = max(1.0, float(np.max(np.abs(ref), initial=0)))
    err = float(np.max(np.abs(got - ref), initial=0)) / scale
    assert err <= TOL[np.dtype(dtype)] * 4 * condition, f"{what}: error {err:.3g}"


def _stats(x, training, running):
    """The mean and variance the forward normalizes with (float64)."""
    if not training:
        return running
    x64 = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    return x64.mean(axis=axes), x64.var(axis=axes)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_forward_and_backward_match_reference(device, shape, dtype, training, affine, rng):
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + rng.standard_normal((1, c) + (1,) * (len(shape) - 2))).astype(dtype)
    w, b = (rng.standard_normal(c).astype(dtype) for _ in range(2)) if affine else (None, None)
    rm, rv = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    ref, ref_m, ref_v = batch_norm_ref(x, rm, rv, w, b, training=training, momentum=0.3, eps=1e-4)
    stats = _stats(x, training, (rm.astype(np.float64), rv.astype(np.float64)))
    dm, dv = on_device(device, rm), on_device(device, rv)
    dw, db = (None, None) if w is None else (on_device(device, w), on_device(device, b))
    out = on_device(device, np.full(shape, np.nan, dtype))
    result, save_mean, save_invstd = ops.batch_norm(
        on_device(device, x), dw, db, dm, dv, training=training, momentum=0.3, eps=1e-4, out=out
    )
    assert result is out
    check(out, ref, dtype, "out")
    check(dm, ref_m, dtype, "running_mean")
    check(dv, ref_v, dtype, "running_var")
    np.testing.assert_allclose(to_host(save_mean), stats[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_host(save_invstd), 1 / np.sqrt(stats[1] + 1e-4), rtol=1e-12)

    g = rng.standard_normal(shape).astype(dtype)
    grads = ops.batch_norm_backward(on_device(device, g), on_device(device, x), dw, save_mean, save_invstd, training)
    refs = batch_norm_backward_ref(g, x, w, stats[0], stats[1], training, eps=1e-4)
    for got, want, name in zip(grads, refs, ("grad_x", "grad_weight", "grad_bias")):
        check(got, want, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_large_mean_small_spread_keeps_the_variance(device, dtype, rng):
    """Values 1e4 + N(0, 1): a one-pass E[x^2] - E[x]^2 in float32 loses every digit; the
    two-pass float64 statistics keep the float32 accuracy of the normalized values (float64: the
    centring's condition, |mean| / std = 1e4, bounds what any float64 computation keeps)."""
    x = (1e4 + rng.standard_normal((64, 2, 50, 40))).astype(dtype)
    out, _, _ = ops.batch_norm(on_device(device, x), training=True)
    condition = 1e4 if dtype == F64 else 1.0
    check(out, batch_norm_ref(x, None, None, training=True)[0], dtype, "out", condition)


def test_millions_of_values_per_channel(device, rng):
    x = (rng.standard_normal((3, 2, 1024, 1024)) * 5 + 2).astype(np.float32)
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    ref, ref_m, ref_v = batch_norm_ref(x, rm, rv, training=True)
    dm, dv = on_device(device, rm), on_device(device, rv)
    out, save_mean, save_invstd = ops.batch_norm(on_device(device, x), None, None, dm, dv, training=True)
    check(out, ref, F32, "out")
    check(dm, ref_m, F32, "running_mean")
    check(dv, ref_v, F32, "running_var")
    g = rng.standard_normal(x.shape).astype(np.float32)
    grads = ops.batch_norm_backward(on_device(device, g), on_device(device, x), None, save_mean, save_invstd, True)
    stats = _stats(x, True, None)
    for got, want, name in zip(grads, batch_norm_backward_ref(g, x, None, *stats, True), ("gx", "gw", "gb")):
        check(got, want, F32, name)


def test_threads(device, threads, rng):
    """Channels split over the threads (a shape big enough to be split)."""
    x = rng.standard_normal((8, 37, 20, 13)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    out, m, s = ops.batch_norm(on_device(device, x), training=True)
    check(out, batch_norm_ref(x, None, None, training=True)[0], F32, "out")
    grads = ops.batch_norm_backward(on_device(device, g), on_device(device, x), None, m, s, True)
    for got, want, name in zip(grads, batch_norm_backward_ref(g, x, None, *_stats(x, True, None), True), "xwb"):
        check(got, want, F32, f"grad {name}")


def test_strided_input_and_output_and_running_statistics(device, rng):
    x = rng.standard_normal((6, 4, 5)).astype(np.float64)
    big = on_device(device, np.full((6, 4, 11), np.nan))
    out = big[:, :, ::2][:, :, :5] if device != "cpu" else big[:, :, 1::2]
    rm_big, rv_big = on_device(device, np.zeros(8)), on_device(device, np.ones(8))
    rm, rv = rm_big[::2], rv_big[::2]
    xt = on_device(device, np.ascontiguousarray(x.transpose(2, 1, 0))).transpose(2, 1, 0)
    result, _, _ = ops.batch_norm(xt, None, None, rm, rv, training=True, momentum=0.5, out=out)
    ref, ref_m, ref_v = batch_norm_ref(x, np.zeros(4), np.ones(4), training=True, momentum=0.5)
    assert result is out
    check(out, ref, F64, "out")
    check(rm, ref_m, F64, "running_mean (strided, written back)")
    check(rv, ref_v, F64, "running_var (strided, written back)")
    assert (to_host(rm_big)[1::2] == 0).all() and (to_host(rv_big)[1::2] == 1).all()


def test_zero_batch_in_evaluation(device):
    x = on_device(device, np.zeros((0, 3, 4), np.float32))
    rm, rv = on_device(device, np.zeros(3, np.float32)), on_device(device, np.ones(3, np.float32))
    out, m, s = ops.batch_norm(x, None, None, rm, rv)
    assert out.shape == (0, 3, 4)
    gx, gw, gb = ops.batch_norm_backward(x, x, None, m, s, False)
    assert gx.shape == (0, 3, 4)
    np.testing.assert_array_equal(to_host(gw), 0)
    np.testing.assert_array_equal(to_host(gb), 0)


def test_evaluation_gradient_does_not_read_the_input(device, rng):
    """In evaluation the input's gradient is grad * weight / sqrt(running_var + eps), whatever x is:
    a NaN or inf input leaves it finite (it had been NaN from (x - mean) * 0), as PyTorch's."""
    x = rng.standard_normal((4, 3, 5))
    x[0, 1, 2], x[2, 0, 0] = np.nan, np.inf
    g, w = rng.standard_normal(x.shape), rng.uniform(0.5, 2.0, 3)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    dx, dg, dw, drm, drv = on_device(device, x, g, w, rm, rv)
    _, mean, invstd = ops.batch_norm(dx, dw, None, drm, drv)
    gx = to_host(ops.batch_norm_backward(dg, dx, dw, mean, invstd, False)[0])
    np.testing.assert_allclose(gx, g * (w / np.sqrt(rv + 1e-5))[None, :, None], rtol=1e-12)


def test_backward_computes_only_what_is_needed(device, rng):
    x = on_device(device, rng.standard_normal((4, 3, 5)))
    _, m, s = ops.batch_norm(x, training=True)
    gx, gw, gb = ops.batch_norm_backward(x, x, None, m, s, True, needs=(False, True, False))
    assert gx is None and gb is None and gw.shape == (3,)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layer", ["1d", "2d"])
def test_layers_train_and_eval_with_autograd(device, layer, dtype, rng):
    shape = (6, 4) if layer == "1d" else (3, 4, 5, 6)
    module = (nn.BatchNorm1d if layer == "1d" else nn.BatchNorm2d)(4)
    module = module.double() if dtype == F64 else module
    if device != "cpu":
        module = module.to(device)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    t = dk.tensor(x, requires_grad=True)
    y = module(t.to(device) if device != "cpu" else t)
    y.backward(dk.tensor(g).to(device) if device != "cpu" else dk.tensor(g))
    w = np.ones(4)
    ref, _, _ = batch_norm_ref(x, None, None, w, np.zeros(4), training=True)
    check(y.detach().cpu().numpy(), ref, dtype, "train forward")
    stats = _stats(x, True, None)
    ref_gx, ref_gw, ref_gb = batch_norm_backward_ref(g, x, w, *stats, True)
    check(t.grad.numpy(), ref_gx, dtype, "grad_x")
    check(module.weight.grad.cpu().numpy(), ref_gw, dtype, "grad_weight")
    check(module.bias.grad.cpu().numpy(), ref_gb, dtype, "grad_bias")
    module.eval()
    rm, rv = module.running_mean.cpu().numpy(), module.running_var.cpu().numpy()
    y = module(dk.tensor(x).to(device) if device != "cpu" else dk.tensor(x))
    check(y.detach().cpu().numpy(), batch_norm_ref(x, rm, rv, w, np.zeros(4))[0], dtype, "eval forward")


def test_bad_arguments_are_named(device):
    x = on_device(device, np.ones((4, 3, 2), np.float32))
    with raises_naming(ValueError, "batch_norm", "weight", r"\(3,\)"):
        ops.batch_norm(x, on_device(device, np.ones(4, np.float32)))
    with raises_naming(TypeError, "batch_norm", "bias", "float32"):
        ops.batch_norm(x, None, on_device(device, np.ones(3)))
    with raises_naming(ValueError, "batch_norm", "at least 2 dimensions"):
        ops.batch_norm(on_device(device, np.ones(3, np.float32)), training=True)
    with raises_naming(ValueError, "batch_norm", "more than 1 value per channel"):
        ops.batch_norm(on_device(device, np.ones((1, 3), np.float32)), training=True)
    with raises_naming(ValueError, "batch_norm", "running_mean and running_var"):
        ops.batch_norm(x)
    with raises_naming(ValueError, "batch_norm", "eps"):
        ops.batch_norm(x, training=True, eps=-1.0)
    with raises_naming(ValueError, "batch_norm_backward", "save_mean"):
        ops.batch_norm_backward(x, x, None, on_device(device, np.zeros(3, np.float32)), None, True)
    with raises_naming(ValueError, "batch_norm_backward", "grad_out"):
        ops.batch_norm_backward(on_device(device, np.ones((4, 3), np.float32)), x, None, None, None, True)
