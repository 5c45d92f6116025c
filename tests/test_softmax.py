"""The contract of deepkern.ops' softmax family: softmax, log_softmax, their backward passes and
cross entropy with class-index targets (forward and backward), and the nn functions on them.

Every result is compared with the float64 references of tests/reference.py, computed from the
same float32/float64 values: within a few float32 roundings (float64: ~1e-13) of the reference,
relative to the row's scale. Inputs mix ordinary logits, logits of +-1e4 (where exp(x - lse)
computed from a rounded lse would be 1e-3 off), -inf entries and whole -inf rows, rows of length 1
and zero sizes; every axis of 1- to 4-D arrays (inner > 1 takes the strided rows); outputs are
pre-filled with NaN. The kernels run on every ISA, with 1 and 2 threads, and on every device of
the `device` fixture; the gradients of the nn functions are also checked by finite differences.
"""

from __future__ import annotations

import deepkern
import numpy as np
import pytest
from deepkern import _C, ops
from deepkern.nn import functional as F

from checks import gradcheck, raises_naming
from conftest import on_device, to_host
from reference import (
    cross_entropy_backward_ref,
    cross_entropy_ref,
    log_softmax_ref,
    softmax_backward_ref,
    softmax_ref,
)

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]
#: Relative tolerance (of the row's largest magnitude) by dtype: float32 results go through an
#: exponential (< 2 ulp), a sum of up to a few thousand terms in vector lanes and a division.
RTOL = {F32: 2e-6, F64: 1e-13}
#: (shape, dim) cases: contiguous rows (last axis), interleaved rows (inner > 1), length 1, zeros.
CASES = [
    ((7,), 0),
    ((5, 33), -1),
    ((3, 1), 1),
    ((1, 1000), 1),
    ((4, 2100), -1),
    ((6, 5, 7), 1),
    ((2, 19, 3, 5), 1),
    ((3, 4, 5), 0),
    ((2, 3, 17), 2),
    ((0, 5), 1),
    ((4, 0), 1),
    ((4, 0, 3), 0),
    ((), 0),
]


def _check(got, want, what: str, dtype, axis=None, scale=None) -> None:
    """got equals want (NaN where want is NaN, infinities equal) within RTOL of each row's scale
    (its largest magnitude along ``axis``, or ``scale``: the magnitudes of the terms that cancel)."""
    got = to_host(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}"
    g = got.astype(np.float64)
    assert np.array_equal(np.isnan(g), np.isnan(want)), f"{what}: NaN at other places than the reference"
    finite = np.isfinite(want)
    assert np.array_equal(g[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]), f"{what}: infinities differ"
    scale = np.where(finite, np.abs(want) if scale is None else scale, 0)
    if axis is not None and want.size:
        scale = np.maximum(scale, np.max(scale, axis=axis, keepdims=True))
    with np.errstate(invalid="ignore"):
        bad = finite & ~(np.abs(g - want) <= RTOL[np.dtype(dtype)] * (scale + 1e-30))
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {g.size} differ; first at {np.argwhere(bad)[0]}: "
        f"got {g[tuple(np.argwhere(bad)[0])]!r}, expected {want[tuple(np.argwhere(bad)[0])]!r}"
    )


def _logits(rng, shape, dtype, special=True):
    """Random logits with (``special``) some +-1e4, -inf entries and, where rows allow, a -inf row."""
    x = rng.standard_normal(shape) * 3
    if special and x.size:
        flat = x.reshape(-1)
        picks = rng.integers(0, flat.size, max(1, flat.size // 8))
        flat[picks] = rng.choice([1e4, -1e4, -np.inf, 30.0, -30.0], picks.size)
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "dim"), CASES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_matches_reference(device, dtype, shape, dim, log, rng):
    x = _logits(rng, shape, dtype)
    out = on_device(device, np.full(shape, np.nan, dtype))
    fn, ref = (ops.log_softmax, log_softmax_ref) if log else (ops.softmax, softmax_ref)
    result = fn(on_device(device, x), dim, out=out)
    assert result is out
    _check(result, ref(x, dim), f"{fn.__name__}{shape} dim={dim}", dtype, axis=dim if shape else None)
    # softmax of a row holding a -inf everywhere is NaN, as PyTorch's
    if x.ndim == 2 and x.shape[1] > 0 and x.shape[0] > 0:
        x[0] = -np.inf
        got = to_host(fn(on_device(device, x), 1))
        assert np.isnan(got[0]).all(), "a row of -inf must give NaN"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "dim"), CASES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_backward_matches_reference(device, dtype, shape, dim, log, rng):
    x = _logits(rng, shape, dtype, special=False)
    y = (log_softmax_ref(x, dim) if log else softmax_ref(x, dim)).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    fn = ops.log_softmax_backward if log else ops.softmax_backward
    out = on_device(device, np.full(shape, np.nan, dtype))
    result = fn(on_device(device, grad), on_device(device, y), dim, out=out)
    want = softmax_backward_ref(grad, y, dim, log=log)
    _check(result, want, f"{fn.__name__}{shape} dim={dim}", dtype, scale=_backward_scale(grad, y, dim, log))


def _backward_scale(grad, y, dim, log):
    """The magnitudes of the terms a backward pass subtracts: |y| (|g| + sum |g y|), or |g| + exp(y) sum |g|."""
    g = np.abs(grad.astype(np.float64)).reshape(np.shape(y) or (1,))
    v = y.astype(np.float64).reshape(g.shape)
    if log:
        scale = g + np.exp(v) * g.sum(axis=dim, keepdims=True)
    else:
        scale = np.abs(v) * (g + np.abs(g * v).sum(axis=dim, keepdims=True))
    return scale.reshape(np.shape(y))


def test_softmax_takes_strided_inputs_and_outputs(device, rng):
    x = _logits(rng, (6, 40), F32)[::2, ::3]
    out = on_device(device, np.full((3, 14, 2), np.nan, F32))[:, :, 0]
    result = ops.softmax(on_device(device, x), 1, out=out)
    _check(result, softmax_ref(x, 1), "strided softmax", F32, axis=1)


def test_softmax_kernels_run_on_every_isa_and_thread_count(isa, threads, rng):
    # 40 x 3000 floats: several threads' worth of rows, contiguous and interleaved
    x = _logits(rng, (40, 3000), F32)
    _C.reset_isa_records()
    _check(ops.log_softmax(x, 1), log_softmax_ref(x, 1), f"log_softmax {isa}", F32, axis=1)
    assert _C.last_isa("softmax") == isa
    xt = np.ascontiguousarray(x.T)
    _check(ops.softmax(xt, 0), softmax_ref(xt, 0), f"softmax dim 0 {isa}", F32, axis=0)
    t = rng.integers(0, 3000, 40)
    loss, stats = ops.cross_entropy(x, t, label_smoothing=0.1)
    _check(loss, cross_entropy_ref(x, t, label_smoothing=0.1)[0], f"cross_entropy {isa}", F32)


# ---- cross entropy ------------------------------------------------------------------------------

CE_CASES = [((8, 10), None), ((5, 1), None), ((1, 3000), None), ((4, 7, 3, 2), None), ((11,), None), ((0, 4), None)]


def _targets(rng, x_shape, ignore_index, with_ignored=True):
    classes = x_shape[1] if len(x_shape) > 1 else x_shape[0]
    shape = x_shape[:1] + x_shape[2:] if len(x_shape) > 1 else ()
    t = rng.integers(0, max(classes, 1), shape)
    if with_ignored and t.size > 1:
        t.reshape(-1)[0] = ignore_index
    return t


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [c[0] for c in CE_CASES], ids=str)
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
@pytest.mark.parametrize("smoothing", [0.0, 0.25, 1.0])
def test_cross_entropy_matches_reference(device, dtype, shape, weighted, smoothing, rng):
    x = _logits(rng, shape, dtype)
    x[np.isinf(x)] = 20.0  # finite losses (an -inf target logit is an inf loss, checked below)
    classes = shape[1] if len(shape) > 1 else shape[0]
    weight = rng.uniform(0.2, 2.0, classes).astype(dtype) if weighted else None
    t = _targets(rng, shape, -3)
    options = {"ignore_index": -3, "label_smoothing": smoothing}
    xd, td, wd = on_device(device, x, t, weight)
    loss, stats = ops.cross_entropy(xd, td, wd, **options)
    want_loss, want_weight = cross_entropy_ref(x, t, weight, **options)
    # log(sum exp) of a row whose max dominates is log(1 + tiny): absolute errors of 1 ulp of 1
    wmax = 1.0 if weight is None else float(weight.max(initial=1.0))
    _check(loss, want_loss, f"cross_entropy loss {shape}", dtype, scale=(1 + np.abs(want_loss)) * wmax)
    np.testing.assert_array_equal(to_host(stats)[..., 2], want_weight.astype(dtype))
    for grad in (rng.standard_normal(t.shape).astype(dtype), np.array(0.37, dtype)):
        out = on_device(device, np.full(shape, np.nan, dtype))
        result = ops.cross_entropy_backward(on_device(device, grad), xd, td, stats, wd, **options, out=out)
        assert result is out
        want = cross_entropy_backward_ref(grad, x, t, weight, **options)
        scale = _ce_backward_scale(grad, want_weight, weight, classes, smoothing, x.ndim)
        _check(result, want, f"cross_entropy_backward {shape} grad{grad.shape}", dtype, scale=scale)


def _ce_backward_scale(grad, target_weight, weight, classes, smoothing, ndim):
    """|g_i| times the sum of sample i's target weights (the terms softmax * sum(q) - q cancels)."""
    total = (1 - smoothing) * target_weight + smoothing * (classes if weight is None else float(weight.sum()))
    per_sample = np.abs(np.broadcast_to(grad.astype(np.float64), target_weight.shape)) * total
    return np.expand_dims(per_sample, 1 if ndim > 1 else 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cross_entropy_special_logits(device, dtype):
    x = np.array([[1e4, -1e4, 0.0], [-np.inf, 2.0, 1.0], [-np.inf, -np.inf, -np.inf], [3.0, np.nan, 1.0]], dtype)
    t = np.array([0, 0, 1, 2])
    loss, _ = ops.cross_entropy(*on_device(device, x, t))
    want, _ = cross_entropy_ref(x, t)
    got = to_host(loss)
    assert got[0] == 0 and got[1] == np.inf and np.isnan(got[2]) and np.isnan(got[3]), got
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("special", [np.inf, np.nan])
def test_cross_entropy_without_smoothing_reads_only_the_targets_weight(device, dtype, special):
    """Without label smoothing the loss and its gradient involve only the target class's weight (as in
    PyTorch): an infinite or NaN weight of another class changes neither (it had made the gradient NaN)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5)).astype(dtype)
    t = np.array([1, 2, 3, 4])
    weight = rng.uniform(0.5, 2.0, 5).astype(dtype)
    weight[0] = special  # class 0 is no sample's target
    grad = rng.standard_normal(4).astype(dtype)
    xd, td, wd = on_device(device, x, t, weight)
    loss, stats = ops.cross_entropy(xd, td, wd)
    result = ops.cross_entropy_backward(on_device(device, grad), xd, td, stats, wd)
    want_loss, want_weight = cross_entropy_ref(x, t, weight)
    want = cross_entropy_backward_ref(grad, x, t, weight)
    assert np.isfinite(to_host(result)).all()
    _check(loss, want_loss, "loss", dtype, scale=(1 + np.abs(want_loss)) * 2)
    _check(result, want, "gradient", dtype, scale=_ce_backward_scale(grad, want_weight, None, 5, 0.0, 2))


def test_cross_entropy_zero_classes_with_every_target_ignored(device):
    x = np.zeros((3, 0), np.float32)
    t = np.full(3, -100)
    loss, stats = ops.cross_entropy(*on_device(device, x, t))
    np.testing.assert_array_equal(to_host(loss), np.zeros(3, np.float32))
    grad = ops.cross_entropy_backward(on_device(device, np.ones(3, np.float32)), *on_device(device, x, t), stats)
    assert to_host(grad).shape == (3, 0)


@pytest.mark.parametrize("bad", [10, -1, 2**40])
def test_cross_entropy_refuses_a_target_out_of_range(device, bad):
    x = np.zeros((4, 10), np.float32)
    t = np.array([1, bad, 2, -100])
    with raises_naming(ValueError, f"target {bad} is out of range for 10 classes"):
        ops.cross_entropy(*on_device(device, x, t))
    loss, stats = ops.cross_entropy(*on_device(device, x, np.array([1, 2, 3, 4])))
    with raises_naming(ValueError, f"target {bad} is out of range"):
        ops.cross_entropy_backward(on_device(device, np.ones(4, np.float32)), *on_device(device, x, t), stats)


def test_cross_entropy_refuses_unsigned_targets_past_int64(device):
    """uint64 targets are taken as int64: one past its range (2**64 - 100 would wrap to the default
    ignore_index) is a ValueError, not an ignored row; smaller ones are ordinary class indices."""
    x = np.zeros((2, 5), np.float32)
    for bad in (2**64 - 100, 2**63):
        t = np.array([1, bad], np.uint64)
        with raises_naming(ValueError, "target", str(bad), "int64"):
            ops.cross_entropy(*on_device(device, x, t))
    loss, _ = ops.cross_entropy(*on_device(device, x, np.array([1, 4], np.uint64)))
    np.testing.assert_allclose(to_host(loss), np.full(2, np.log(5)), rtol=1e-6)


def test_bad_arguments_name_the_argument(rng):
    x = rng.standard_normal((3, 4))
    with raises_naming(ValueError, "softmax", "dim 2", r"\(3, 4\)"):
        ops.softmax(x, 2)
    with raises_naming(TypeError, "softmax", "dim"):
        ops.softmax(x, 1.0)
    with raises_naming(TypeError, "softmax", "x", "int64"):
        ops.softmax(np.zeros((2, 2), np.int64))
    with raises_naming(ValueError, "softmax_backward", "grad", r"\(3, 4\)"):
        ops.softmax_backward(np.ones((4, 3)), x)
    with raises_naming(TypeError, "log_softmax_backward", "grad", "float32"):
        ops.log_softmax_backward(np.ones((3, 4), np.float32), x)
    with raises_naming(ValueError, "softmax", "out", r"\(3, 4\)"):
        ops.softmax(x, out=np.empty((4, 3)))
    with raises_naming(ValueError, "cross_entropy", "target", r"\(3,\)"):
        ops.cross_entropy(x, np.zeros(2, np.int64))
    with raises_naming(TypeError, "cross_entropy", "target", "integer"):
        ops.cross_entropy(x, np.zeros(3))
    with raises_naming(ValueError, "cross_entropy", "weight", r"\(4,\)"):
        ops.cross_entropy(x, np.zeros(3, np.int64), np.ones(3))
    with raises_naming(ValueError, "cross_entropy", "label_smoothing"):
        ops.cross_entropy(x, np.zeros(3, np.int64), label_smoothing=1.5)
    loss, stats = ops.cross_entropy(x, np.zeros(3, np.int64))
    with raises_naming(ValueError, "cross_entropy_backward", "grad", r"\(3,\)"):
        ops.cross_entropy_backward(np.ones(2), x, np.zeros(3, np.int64), stats)
    with raises_naming(ValueError, "cross_entropy_backward", "stats"):
        ops.cross_entropy_backward(np.ones(3), x, np.zeros(3, np.int64), stats[:, :2])


def test_bindings_check_sizes_and_arrays():
    x = np.zeros((2, 3), np.float32)
    with raises_naming(ValueError, "softmax", "x", "12 elements"):
        _C.softmax(x, np.empty_like(x), 2, 3, 2, False)
    with raises_naming(ValueError, "softmax", "outer, length, inner", ">= 0"):
        _C.softmax(x, np.empty_like(x), -2, -3, 1, False)
    with raises_naming(ValueError, "softmax", "overflows"):
        _C.softmax(x, np.empty_like(x), 2**40, 2**40, 1, False)
    with raises_naming(ValueError, "softmax", "out"):
        _C.softmax(x, x, 2, 3, 1, False)
    with raises_naming(TypeError, "cross_entropy_forward", "target", "int64"):
        _C.cross_entropy_forward(
            x, np.zeros(2, np.int32), None, np.empty(2, np.float32), np.empty(6, np.float32), 2, 3, 1, -100, 0.0
        )
    with raises_naming(ValueError, "cross_entropy_forward", "label_smoothing"):
        _C.cross_entropy_forward(
            x, np.zeros(2, np.int64), None, np.empty(2, np.float32), np.empty(6, np.float32), 2, 3, 1, -100, np.nan
        )
    loss, stats = np.full(2, np.nan, np.float32), np.full(6, np.nan, np.float32)
    _C.cross_entropy_forward(x, np.array([0, 2]), None, loss, stats, 2, 3, 1, -100, 0.0)
    np.testing.assert_allclose(loss, np.log(3), rtol=1e-6)


# ---- nn functions: autograd, PyTorch's semantics ---------------------------------------------------


@pytest.mark.parametrize(("shape", "dim"), [((4, 5), 1), ((3, 4, 2), 1), ((2, 3, 4), 0), ((5,), 0)], ids=str)
def test_softmax_gradients_match_finite_differences(device, shape, dim, rng):
    x = deepkern.tensor(rng.standard_normal(shape), requires_grad=True, device=device)
    gradcheck(lambda x: F.softmax(x, dim=dim), x)
    gradcheck(lambda x: F.log_softmax(x, dim=dim), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradients_match_finite_differences(device, reduction, rng):
    x = deepkern.tensor(rng.standard_normal((5, 4, 3)), requires_grad=True, device=device)
    t = rng.integers(0, 4, (5, 3))
    t[0, 0] = -100  # ignored
    w = rng.uniform(0.5, 2.0, 4)
    target, weight = on_device(device, t, w)
    gradcheck(lambda x: F.cross_entropy(x, target, weight, ignore_index=-100, reduction=reduction), x)
    gradcheck(lambda x: F.cross_entropy(x, target, label_smoothing=0.3, reduction=reduction), x)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nn_functions_match_pytorch(device, dtype, reduction, rng):
    torch = pytest.importorskip("torch")
    x = _logits(rng, (6, 5, 3), dtype)
    x[np.isinf(x)] = -50.0
    t = rng.integers(0, 5, (6, 3))
    t[1, 2] = -1
    w = rng.uniform(0.5, 2.0, 5).astype(dtype)
    options = {"ignore_index": -1, "label_smoothing": 0.2, "reduction": reduction}
    xt = deepkern.tensor(x, requires_grad=True, device=device)
    loss = F.cross_entropy(xt, on_device(device, t), on_device(device, w), **options)
    loss.sum().backward()
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tx, torch.tensor(t), torch.tensor(w, dtype=torch.float64), **options)
    tloss.sum().backward()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == F32 else {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(to_host(loss.detach()._array), tloss.detach().numpy(), **tol)
    np.testing.assert_allclose(to_host(xt.grad._array), tx.grad.numpy(), **tol)
    for fn, tfn in ((F.softmax, torch.softmax), (F.log_softmax, torch.log_softmax)):
        got = to_host(fn(deepkern.tensor(x, device=device), dim=2)._array)
        np.testing.assert_allclose(got, tfn(torch.tensor(x, dtype=torch.float64), 2).numpy(), **tol)


def test_nn_layers_use_the_kernels(rng):
    x = _logits(rng, (4, 6), F32, special=False)
    _C.reset_isa_records()
    got = deepkern.nn.LogSoftmax(dim=1)(deepkern.tensor(x))
    assert _C.last_isa("softmax") is not None, "LogSoftmax did not run the softmax kernels"
    _check(got._array, log_softmax_ref(x, 1), "LogSoftmax", F32, axis=1)
    _C.reset_isa_records()
    loss = deepkern.nn.CrossEntropyLoss(label_smoothing=0.1)(deepkern.tensor(x), rng.integers(0, 6, 4))
    assert _C.last_isa("softmax") is not None, "CrossEntropyLoss did not run the softmax kernels"
    assert loss._array.dtype == F32
