"""The normalization kernels of csrc/cuda/norm run on the host (tests/cuda_emulation), against
the float64 references of reference_nn.py and the CPU ops. Batch norm: training and evaluation,
forward (statistics, normalization, running statistics, the float64 saved statistics) and backward
(each gradient alone or together), float32 and float64, 2-D and 4-D inputs, channels 1 to 300, a
large mean beside a small spread, NaN-prefilled outputs and zero channels. Layer norm: rows of 1 to
4097 elements (a warp per row, a block per row, the registers' overflow read from memory), float4
and single-element loads, 0, 1, 7 and 100 rows, large offsets, no weight or bias, parameter
gradients that repeat bit for bit. Group norm: one group, odd channels and groups, spatial size 1,
groups longer than the registers hold. Needs the source tree and a C++ compiler, not a GPU; the
problems are small."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)
from test_norm import DTYPES, check  # noqa: E402

from checks import check as check_rel  # noqa: E402
from reference_nn import (  # noqa: E402
    batch_norm_backward_ref,
    batch_norm_ref,
    group_norm_backward_ref,
    group_norm_ref,
    layer_norm_backward_ref,
    layer_norm_ref,
)

NULL = ctypes.c_void_p(None)
SHAPES = [(2, 1), (9, 3), (5, 300), (2, 3, 5, 7), (3, 2, 300), (1, 4, 1, 2)]


def _kernel_shape(x: np.ndarray) -> np.ndarray:
    return np.array([x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64))], np.int64)


def _arg(a):
    return NULL if a is None else a


def forward(x, w, b, rm, rv, training, momentum=0.1, eps=1e-5):
    c = x.shape[1]
    out = np.full(x.shape, np.nan, x.dtype)
    save_mean, save_invstd = np.full(c, np.nan), np.full(c, np.nan)
    driver = emulation.load_driver("norm")
    driver.dk_batch_norm_forward(
        int(x.dtype == np.float64),
        _kernel_shape(x),
        x,
        _arg(w),
        _arg(b),
        _arg(rm),
        _arg(rv),
        out,
        save_mean,
        save_invstd,
        int(training),
        float(momentum),
        float(eps),
    )
    return out, save_mean, save_invstd


def backward(g, x, w, save_mean, save_invstd, training, needs=(True, True, True)):
    c = x.shape[1]
    grads = [np.full(shape, np.nan, x.dtype) if need else None for shape, need in zip((x.shape, c, c), needs)]
    driver = emulation.load_driver("norm")
    driver.dk_batch_norm_backward(
        int(x.dtype == np.float64),
        _kernel_shape(x),
        g,
        x,
        _arg(w),
        save_mean,
        save_invstd,
        *map(_arg, grads),
        int(training),
    )
    return grads


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_matches_reference_and_cpu(shape, dtype, training, rng):
    ops = pytest.importorskip("deepkern.ops")
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    ref, ref_m, ref_v = batch_norm_ref(x, rm, rv, w, b, training=training, momentum=0.3)
    cpu_m, cpu_v = rm.copy(), rv.copy()
    cpu_out, cpu_mean, cpu_invstd = ops.batch_norm(x, w, b, cpu_m, cpu_v, training=training, momentum=0.3)
    out, save_mean, save_invstd = forward(x, w, b, rm, rv, training, momentum=0.3)
    check(out, ref, dtype, "out")
    check(rm, ref_m, dtype, "running_mean")
    check(rv, ref_v, dtype, "running_var")
    np.testing.assert_allclose(save_mean, cpu_mean, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(save_invstd, cpu_invstd, rtol=1e-13)
    np.testing.assert_allclose(out, cpu_out, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-6)

    g = rng.standard_normal(shape).astype(dtype)
    mean = save_mean if training else rm.astype(np.float64)
    var = 1 / np.square(save_invstd) - 1e-5
    refs = batch_norm_backward_ref(g, x, w, mean, var, training)
    for got, want, name in zip(backward(g, x, w, save_mean, save_invstd, training), refs, ("gx", "gw", "gb")):
        check(got, want, dtype, name)


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True)])
def test_each_gradient_alone(needs, rng):
    x = rng.standard_normal((4, 3, 6))
    g = rng.standard_normal(x.shape)
    _, save_mean, save_invstd = forward(x, None, None, None, None, True)
    refs = batch_norm_backward_ref(g, x, None, x.mean(axis=(0, 2)), x.var(axis=(0, 2)), True)
    for got, want, need in zip(backward(g, x, None, save_mean, save_invstd, True, needs), refs, needs):
        assert (got is not None) == need
        if need:
            check(got, want, np.dtype(np.float64), str(needs))


def test_large_mean_small_spread(rng):
    x = (1e4 + rng.standard_normal((40, 2, 30))).astype(np.float32)
    out, _, _ = forward(x, None, None, None, None, True)
    check(out, batch_norm_ref(x, None, None, training=True)[0], np.dtype(np.float32), "out")


def test_zero_channels_touch_nothing():
    x = np.zeros((3, 0, 4), np.float32)
    out, save_mean, _ = forward(x, None, None, None, None, True)
    assert out.shape == (3, 0, 4) and save_mean.shape == (0,)


# ---- layer and group normalization ---------------------------------------------------------------


def _nan(shape, dtype=np.float64):
    return np.full(shape, np.nan, dtype)


def _row_norm(group, backward, shape, a, b, w, bias, mean, rstd, out, gw, gb, eps):
    driver = emulation.load_driver("norm")
    driver.dk_row_norm(
        int(a.dtype == np.float64),
        int(group),
        int(backward),
        np.array(shape, np.int64),
        a,
        _arg(b),
        _arg(w),
        _arg(bias),
        mean,
        rstd,
        _arg(out),
        _arg(gw),
        _arg(gb),
        float(eps),
    )


def _kernel_layout(x, groups):
    """(kernel shape, statistics shape, parameter count) of layer norm over x's last axis (groups
    None) or group norm of x (N, C, ...)."""
    if groups is None:
        rows, d = int(np.prod(x.shape[:-1], dtype=np.int64)), x.shape[-1]
        return (rows, d), x.shape[:-1], d
    n, c = x.shape[:2]
    return (n, c, int(np.prod(x.shape[2:], dtype=np.int64)), groups), (n, groups), c


def norm_forward(x, groups, w=None, b=None, eps=1e-5):
    """(out, save_mean, save_rstd) from the GPU kernels: layer norm over x's last axis (groups None)
    or group norm; outputs NaN-prefilled."""
    shape, stats, _ = _kernel_layout(x, groups)
    out, mean, rstd = _nan(x.shape, x.dtype), _nan(stats), _nan(stats)
    _row_norm(groups is not None, False, shape, x, None, w, b, mean, rstd, out, None, None, eps)
    return out, mean, rstd


def norm_backward(g, x, groups, w, mean, rstd, needs=(True, True, True)):
    """(grad_x, grad_weight, grad_bias) from the GPU kernels (None where not in needs)."""
    shape, _, params = _kernel_layout(x, groups)
    grads = [_nan(s, x.dtype) if need else None for s, need in zip((x.shape, params, params), needs)]
    _row_norm(groups is not None, True, shape, g, x, w, None, mean, rstd, *grads, 0.0)
    return grads


def _check_against_reference_and_cpu(x, groups, w, b, rng, eps=1e-5):
    """Forward and backward against the float64 references and the CPU ops; returns the gradients."""
    dtype = x.dtype
    op = "layer_norm" if groups is None else "group_norm"
    size = x.shape[-1] if groups is None else groups
    out, mean, rstd = norm_forward(x, groups, w, b, eps)
    if groups is None:
        ref, ref_mean, ref_rstd = layer_norm_ref(x, (size,), w, b, eps=eps)
    else:
        ref, ref_mean, ref_rstd = group_norm_ref(x, groups, w, b, eps=eps)
    check_rel(out, ref, dtype, f"{op} out")
    # The mean from T partial sums of x - x[0]: T's accuracy relative to the spread.
    spread = np.sqrt(np.maximum(1 / np.square(ref_rstd) - eps, 0)) if ref_rstd.size else ref_rstd
    stat_tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(mean, ref_mean, rtol=stat_tol, atol=stat_tol * (1 + np.max(spread, initial=0)))
    np.testing.assert_allclose(rstd, ref_rstd, rtol=10 * stat_tol)
    cpu = getattr(pytest.importorskip("deepkern.ops"), op)(x, size, w, b, eps)
    np.testing.assert_allclose(out, cpu[0], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)

    g = rng.standard_normal(x.shape).astype(dtype)
    grads = norm_backward(g, x, groups, w, mean, rstd)
    if groups is None:
        refs = layer_norm_backward_ref(g, x, (size,), w, eps=eps)
        w_terms = w
    else:
        refs = group_norm_backward_ref(g, x, groups, w, eps=eps)
        w_terms = None if w is None else w.reshape((-1,) + (1,) * (x.ndim - 2))
    terms = float(np.linalg.norm(g * (1 if w is None else w_terms)) * np.max(rstd, initial=1e-3))
    for got, want, name, floor in zip(grads, refs, ("grad_x", "grad_weight", "grad_bias"), (terms, 1e-3, 1e-3)):
        check_rel(got, want, dtype, f"{op} {name}", floor=floor)
    return g, mean, rstd, grads


LAYER_LENGTHS = [1, 31, 32, 33, 768, 1500, 4097]


@pytest.mark.parametrize("d", LAYER_LENGTHS)
@pytest.mark.parametrize("rows", [1, 7])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_layer_norm_float32(d, rows, affine, rng):
    x = (rng.standard_normal((rows, d)) * 3 + 1).astype(np.float32)
    w, b = (rng.standard_normal(d).astype(np.float32) for _ in range(2)) if affine else (None, None)
    _check_against_reference_and_cpu(x, None, w, b, rng)


@pytest.mark.parametrize("d", [33, 1500])
def test_layer_norm_float64_and_unaligned_rows(d, rng):
    """float64 rows, and float32 rows of a multiple of 4 elements that are not 16-byte aligned (the
    single-element loads)."""
    x = rng.standard_normal((3, d)) * 3 + 1
    _check_against_reference_and_cpu(x, None, rng.standard_normal(d), rng.standard_normal(d), rng)
    buffer = (rng.standard_normal(3 * 768 + 1) * 2).astype(np.float32)
    x32 = buffer[1:].reshape(3, 768)
    assert x32.ctypes.data % 16 != 0
    _check_against_reference_and_cpu(x32, None, rng.standard_normal(768).astype(np.float32), None, rng)


@pytest.mark.parametrize("d", [768, 4097])
def test_layer_norm_large_offset_keeps_float32_accuracy(d, rng):
    """Rows of 1e4 + N(0, 1) in float32: the shifted sums and the split mean keep float32's
    accuracy, as the CPU's float64 statistics do."""
    x = (1e4 + rng.standard_normal((5, d))).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    out, mean, rstd = norm_forward(x, None)
    check_rel(out, layer_norm_ref(x, (d,))[0], np.float32, "out", tol=1e-5)
    gx = norm_backward(g, x, None, None, mean, rstd)[0]
    check_rel(gx, layer_norm_backward_ref(g, x, (d,))[0], np.float32, "grad_x", tol=1e-5)
    x4 = x.reshape(5, 1, d)
    check_rel(norm_forward(x4, 1)[0], group_norm_ref(x4, 1)[0], np.float32, "group_norm out", tol=1e-5)


def test_layer_norm_parameter_gradients_repeat_bit_for_bit(rng):
    """100 rows: 4 parts of 25 rows, summed in order; two runs give the same bits."""
    x = rng.standard_normal((100, 33)).astype(np.float32)
    w = rng.standard_normal(33).astype(np.float32)
    g, mean, rstd, grads = _check_against_reference_and_cpu(x, None, w, None, rng)
    again = norm_backward(g, x, None, w, mean, rstd)
    for first, second in zip(grads, again):
        np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("groups", [None, 3], ids=["layer", "group"])
@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True)])
def test_each_norm_gradient_alone(groups, needs, rng):
    x = rng.standard_normal((4, 6, 5)).astype(np.float32)
    w = rng.standard_normal(5 if groups is None else 6).astype(np.float32)
    _, mean, rstd = norm_forward(x, groups, w)
    g = rng.standard_normal(x.shape).astype(np.float32)
    if groups is None:
        refs = layer_norm_backward_ref(g, x, (5,), w)
    else:
        refs = group_norm_backward_ref(g, x, groups, w)
    for got, want, need in zip(norm_backward(g, x, groups, w, mean, rstd, needs), refs, needs):
        assert (got is not None) == need
        if need:
            check_rel(got, want, np.float32, str(needs), floor=1e-3)


def test_layer_norm_empty_rows_and_empty_length():
    """0 rows: nothing written, the parameter gradients 0. Rows of 0 elements: NaN statistics."""
    x = np.zeros((0, 16), np.float32)
    _, mean, _ = norm_forward(x, None)
    assert mean.shape == (0,)
    gx, gw, gb = norm_backward(x, x, None, None, mean, mean)
    assert gx.shape == (0, 16)
    np.testing.assert_array_equal(gw, np.zeros(16, np.float32))
    np.testing.assert_array_equal(gb, np.zeros(16, np.float32))
    out, mean, rstd = norm_forward(np.zeros((3, 0), np.float32), None)
    assert out.shape == (3, 0) and np.isnan(mean).all() and np.isnan(rstd).all()


GROUP_CASES = [
    ((2, 4), 2),  # spatial 1
    ((3, 9, 7), 3),  # odd channels and groups
    ((2, 5, 3), 1),  # one group
    ((2, 6, 1, 1), 6),
    ((2, 15, 300), 5),  # spatial beyond a block's threads
    ((3, 8, 33), 1),  # channels changing inside a thread's step
    ((1, 2, 2600), 1),  # a group longer than the registers hold
]


@pytest.mark.parametrize("shape,groups", GROUP_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_group_norm_matches_reference_and_cpu(shape, groups, dtype, rng):
    x = (rng.standard_normal(shape) * 2 - 3).astype(dtype)
    w, b = (rng.standard_normal(shape[1]).astype(dtype) for _ in range(2))
    _check_against_reference_and_cpu(x, groups, w, b, rng)


def test_group_norm_without_affine_repeats_and_empty_batch(rng):
    x = rng.standard_normal((5, 6, 7)).astype(np.float32)
    g, mean, rstd, grads = _check_against_reference_and_cpu(x, 2, None, None, rng)
    again = norm_backward(g, x, 2, None, mean, rstd)
    for first, second in zip(grads, again):
        np.testing.assert_array_equal(first, second)
    empty = np.zeros((0, 4, 3), np.float32)
    _, mean, _ = norm_forward(empty, 2)
    _, gw, gb = norm_backward(empty, empty, 2, None, mean, mean)
    np.testing.assert_array_equal(gw, np.zeros(4, np.float32))
    np.testing.assert_array_equal(gb, np.zeros(4, np.float32))
