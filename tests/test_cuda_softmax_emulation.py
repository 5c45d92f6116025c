"""The softmax kernels of csrc/cuda/softmax run on the host (tests/cuda_emulation): softmax,
log_softmax, their backward passes and cross entropy forward and backward against the float64
references, on each of the three row layouts the launcher picks (a thread per interleaved row, a
warp per short row, a block per long row), with special logits, ignored and bad targets, length
1 and zero sizes, outputs prefilled with NaN. Needs the source tree and a C++ compiler, not a GPU;
the problems are small."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)
from test_softmax import DTYPES, _backward_scale, _ce_backward_scale, _check, _logits  # noqa: E402

from reference import (  # noqa: E402
    cross_entropy_backward_ref,
    cross_entropy_ref,
    log_softmax_ref,
    softmax_backward_ref,
    softmax_ref,
)

NULL = ctypes.c_void_p(None)
#: (shape, dim): interleaved rows (thread per row), short rows (warp), long rows (block of 256),
#: length 1, zero sizes.
CASES = [
    ((3, 5, 4), 1),
    ((2, 7, 33), 0),
    ((5, 37), 1),
    ((2, 1500), 1),
    ((4, 1), 1),
    ((0, 6), 1),
    ((3, 0), 1),
]


def _sizes(shape, dim):
    return int(np.prod(shape[:dim])), shape[dim], int(np.prod(shape[dim + 1 :]))


def _driver():
    return emulation.load_driver("softmax")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "dim"), CASES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_forward_and_backward(dtype, shape, dim, log, rng):
    x = _logits(rng, shape, dtype)
    out = np.full(shape, np.nan, dtype)
    is_double = int(dtype == np.float64)
    _driver().dk_softmax(is_double, x, out, *_sizes(shape, dim), int(log))
    _check(out, (log_softmax_ref if log else softmax_ref)(x, dim), f"emulated softmax{shape}", dtype, axis=dim)
    y = (log_softmax_ref if log else softmax_ref)(_logits(rng, shape, dtype, special=False), dim).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    out = np.full(shape, np.nan, dtype)
    _driver().dk_softmax_backward(is_double, grad, y, out, *_sizes(shape, dim), int(log))
    want = softmax_backward_ref(grad, y, dim, log=log)
    _check(out, want, f"emulated backward{shape}", dtype, scale=_backward_scale(grad, y, dim, log))


def _cross_entropy(driver, dtype, x, t, weight, ignore_index, smoothing):
    batch, classes, inner = (x.shape[0], x.shape[1], int(np.prod(x.shape[2:]))) if x.ndim > 1 else (1, x.size, 1)
    loss = np.full(t.shape, np.nan, dtype)
    stats = np.full(t.shape + (3,), np.nan, dtype)
    bad = np.zeros(2, np.int64)
    w = NULL if weight is None else weight
    sizes = (batch, classes, inner, ignore_index, float(smoothing))
    driver.dk_cross_entropy_forward(int(dtype == np.float64), x, t, w, loss, stats, *sizes, bad)
    return loss, stats, bad, sizes


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(6, 9), (3, 1200), (4, 5, 3), (5, 1), (0, 3)], ids=str)
@pytest.mark.parametrize(("weighted", "smoothing"), [(False, 0.0), (True, 0.0), (True, 0.3), (False, 1.0)])
def test_cross_entropy_forward_and_backward(dtype, shape, weighted, smoothing, rng):
    x = _logits(rng, shape, dtype)
    x[np.isinf(x)] = -40.0
    t = rng.integers(0, shape[1], shape[:1] + shape[2:])
    if t.size > 1:
        t.reshape(-1)[1] = -7
    weight = rng.uniform(0.3, 2.0, shape[1]).astype(dtype) if weighted else None
    driver = _driver()
    loss, stats, bad, sizes = _cross_entropy(driver, dtype, x, t, weight, -7, smoothing)
    assert not bad.any()
    want, want_weight = cross_entropy_ref(x, t, weight, -7, smoothing)
    wmax = 1.0 if weight is None else float(weight.max(initial=1.0))
    _check(loss, want, f"emulated cross_entropy{shape}", dtype, scale=(1 + np.abs(want)) * wmax)
    np.testing.assert_array_equal(stats[..., 2], want_weight.astype(dtype))
    for grad in (rng.standard_normal(t.shape).astype(dtype), np.array([1.5], dtype)):
        out = np.full(shape, np.nan, dtype)
        driver.dk_cross_entropy_backward(
            int(dtype == np.float64), grad, grad.size, x, t, NULL if weight is None else weight, stats, out, *sizes, bad
        )
        assert not bad.any()
        want = cross_entropy_backward_ref(grad.reshape(()) if grad.size == 1 else grad, x, t, weight, -7, smoothing)
        scale = _ce_backward_scale(
            grad.reshape(()) if grad.size == 1 else grad, want_weight, weight, shape[1], smoothing, 2
        )
        _check(out, want, f"emulated cross_entropy_backward{shape}", dtype, scale=scale)


@pytest.mark.parametrize("shape", [(4, 10), (4, 10, 3), (2, 1100)], ids=str)
def test_bad_targets_are_recorded_and_not_used(shape, rng):
    x = _logits(rng, shape, np.float32, special=False)
    t = rng.integers(0, shape[1], shape[:1] + shape[2:])
    t.reshape(-1)[1] = 10_000
    loss, stats, bad, sizes = _cross_entropy(_driver(), np.float32, x, t, None, -100, 0.0)
    assert bad[0] == 1 and bad[1] == 10_000
    assert np.isnan(loss.reshape(-1)[1]) and np.isfinite(np.delete(loss.reshape(-1), 1)).all()
