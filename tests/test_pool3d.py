"""3-D pooling (F.max_pool3d, avg_pool3d, adaptive_avg_pool3d, adaptive_max_pool3d and their
layers), which runs the 2-D pooling kernels per depth plane and reduces along depth: against direct
float64 NumPy references (window by window, PyTorch's index and divisor rules), finite differences
and, where PyTorch is installed, PyTorch itself."""

from __future__ import annotations

import itertools
import math

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn
from deepkern.nn import functional as F

from checks import gradcheck, rand
from reference import rel_error


def _triple(v):
    return tuple(v) if isinstance(v, tuple) else (v,) * 3


def _out_size(n, k, s, p, d, ceil):
    """PyTorch's pooling output size along one dimension."""
    span = n + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def max_pool3d_ref(x, kernel, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(max over each window, flat D*H*W index of its first largest element in scan order)."""
    kernel = _triple(kernel)
    stride, padding, dilation = _triple(stride or kernel), _triple(padding), _triple(dilation)
    x = np.asarray(x, np.float64)
    sizes = x.shape[-3:]
    out = [_out_size(*a, ceil_mode) for a in zip(sizes, kernel, stride, padding, dilation)]
    best = np.full(x.shape[:-3] + tuple(out), -np.inf)
    where = np.full(best.shape, -1, np.int64)  # -1: no input seen yet (the first one is taken)
    for o in itertools.product(*map(range, out)):
        for taps in itertools.product(*map(range, kernel)):  # depth, then height, then width
            pos = [oi * s - p + t * d for oi, s, p, t, d in zip(o, stride, padding, taps, dilation)]
            if not all(0 <= q < n for q, n in zip(pos, sizes)):
                continue
            value, at = x[(..., *pos)], (..., *o)
            better = (where[at] == -1) | (value > best[at])
            best[at] = np.where(better, value, best[at])
            where[at] = np.where(better, (pos[0] * sizes[1] + pos[1]) * sizes[2] + pos[2], where[at])
    return best, where


def avg_pool3d_ref(x, kernel, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    kernel = _triple(kernel)
    stride, padding = _triple(stride or kernel), _triple(padding)
    x = np.asarray(x, np.float64)
    sizes = x.shape[-3:]
    out = [_out_size(n, k, s, p, 1, ceil_mode) for n, k, s, p in zip(sizes, kernel, stride, padding)]
    y = np.zeros(x.shape[:-3] + tuple(out))
    for o in itertools.product(*map(range, out)):
        starts = [oi * s - p for oi, s, p in zip(o, stride, padding)]
        ends = [min(a + k, n + p) for a, k, n, p in zip(starts, kernel, sizes, padding)]
        padded_size = math.prod(e - a for a, e in zip(starts, ends))
        lo = [max(a, 0) for a in starts]
        hi = [min(e, n) for e, n in zip(ends, sizes)]
        window = x[(..., *(slice(a, b) for a, b in zip(lo, hi)))]
        divisor = divisor_override or (padded_size if count_include_pad else math.prod(b - a for a, b in zip(lo, hi)))
        y[(..., *o)] = window.sum(axis=(-3, -2, -1)) / divisor
    return y


def _adaptive_windows(n, out):
    return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]


def adaptive_pool3d_ref(x, size):
    """(mean, max, flat D*H*W index of the first largest element) over each adaptive window."""
    x = np.asarray(x, np.float64)
    sizes = x.shape[-3:]
    size = tuple(n if s is None else s for n, s in zip(sizes, _triple(size)))
    mean, best = np.zeros(x.shape[:-3] + size), np.zeros(x.shape[:-3] + size)
    where = np.zeros(best.shape, np.int64)
    windows = [_adaptive_windows(n, s) for n, s in zip(sizes, size)]
    for o in itertools.product(*map(range, size)):
        bounds = [w[i] for w, i in zip(windows, o)]
        part = x[(..., *(slice(*b) for b in bounds))]
        mean[(..., *o)] = part.mean(axis=(-3, -2, -1))
        best[(..., *o)] = part.max(axis=(-3, -2, -1))
        first = np.argmax(part.reshape(part.shape[:-3] + (-1,)), axis=-1)  # scan order: first largest
        d, h, w = np.unravel_index(first, part.shape[-3:])
        where[(..., *o)] = ((d + bounds[0][0]) * sizes[1] + h + bounds[1][0]) * sizes[2] + w + bounds[2][0]
    return mean, best, where


# (input shape, kernel, stride, padding, dilation, ceil_mode): odd sizes, per-dimension arguments,
# padding up to half the kernel, dilation, ceil_mode windows past the end, unbatched, a zero batch.
MAX_CASES = [
    ((2, 3, 5, 6, 7), 2, None, 0, 1, False),
    ((2, 3, 5, 6, 7), (3, 2, 3), (2, 1, 2), (1, 1, 0), (1, 2, 1), True),
    ((3, 7, 6, 5), 3, 2, 1, 1, True),
    ((1, 2, 7, 5, 5), 3, 2, 1, (2, 1, 1), False),
    ((0, 2, 4, 4, 4), 2, 1, 0, 1, False),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", MAX_CASES, ids=str)
def test_max_pool3d_values_and_indices_match_the_reference(case, dtype):
    shape, kernel, stride, padding, dilation, ceil_mode = case
    rng = np.random.default_rng(sum(shape))
    x = rand(rng, shape, dtype)
    x.reshape(-1)[::3] = np.round(x.reshape(-1)[::3])  # ties: the first largest in scan order wins
    y, where = F.max_pool3d(dk.tensor(x), kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    ref, ref_where = max_pool3d_ref(x, kernel, stride, padding, dilation, ceil_mode)
    assert y.dtype == dtype and y.shape == ref.shape
    np.testing.assert_array_equal(y.numpy(), ref.astype(dtype))
    np.testing.assert_array_equal(where.numpy(), ref_where)
    layer = nn.MaxPool3d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    np.testing.assert_array_equal(layer(dk.tensor(x)).numpy(), ref.astype(dtype))


AVG_CASES = [
    ((2, 3, 5, 6, 7), 2, None, 0, False, True, None),
    ((2, 3, 5, 6, 7), (3, 2, 3), (2, 1, 2), (1, 1, 0), True, True, None),
    ((2, 3, 5, 6, 7), (3, 2, 3), (2, 1, 2), (1, 1, 0), True, False, None),
    ((2, 3, 7, 6, 5), 3, 2, 1, False, False, None),
    ((3, 5, 6, 7), 3, 2, 1, True, True, 7),
    ((0, 2, 4, 4, 4), 2, 1, 1, False, True, None),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", AVG_CASES, ids=str)
def test_avg_pool3d_matches_the_reference_with_pytorchs_divisors(case, dtype):
    shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor = case
    rng = np.random.default_rng(sum(shape) + 1)
    x = rand(rng, shape, dtype)
    args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor)
    y = F.avg_pool3d(dk.tensor(x), *args)
    ref = avg_pool3d_ref(x, *args)
    assert y.dtype == dtype and y.shape == ref.shape
    assert rel_error(y.numpy(), ref) < (1e-6 if dtype == np.float32 else 1e-14)
    assert rel_error(nn.AvgPool3d(*args)(dk.tensor(x)).numpy(), ref) < (1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("size", [(2, 4, 3), (None, 3, 1), 1, (5, 6, 7), (3, 2, 5)], ids=str)
def test_adaptive_pool3d_matches_the_reference(size):
    rng = np.random.default_rng(9)
    for shape in [(2, 3, 5, 6, 7), (3, 5, 6, 7)]:
        x = np.round(rng.standard_normal(shape), 1)  # ties
        mean, best, where = adaptive_pool3d_ref(x, size)
        assert rel_error(F.adaptive_avg_pool3d(dk.tensor(x), size).numpy(), mean) < 1e-14
        assert rel_error(nn.AdaptiveAvgPool3d(size)(dk.tensor(x)).numpy(), mean) < 1e-14
        got, got_where = F.adaptive_max_pool3d(dk.tensor(x), size, return_indices=True)
        np.testing.assert_array_equal(got.numpy(), best)
        np.testing.assert_array_equal(got_where.numpy(), where)
        np.testing.assert_array_equal(nn.AdaptiveMaxPool3d(size)(dk.tensor(x)).numpy(), best)


def test_pool3d_keeps_nan_and_inf_in_their_windows():
    """A NaN or an Inf reaches the outputs whose windows hold it, and no other."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((1, 2, 5, 4, 4))
    x[0, 0, 1, 1, 1], x[0, 1, 3, 2, 2], x[0, 1, 0, 0, 0] = np.nan, np.inf, -np.inf
    for size in [(3, 2, 2), 1, (5, 4, 4)]:
        mean, best, _ = adaptive_pool3d_ref(x, size)
        np.testing.assert_allclose(F.adaptive_avg_pool3d(dk.tensor(x), size).numpy(), mean, rtol=1e-14)
        np.testing.assert_array_equal(F.adaptive_max_pool3d(dk.tensor(x), size).numpy(), best)
    for args in [(2, 1, 1, False, True), (3, 2, 1, True, False)]:
        np.testing.assert_allclose(F.avg_pool3d(dk.tensor(x), *args).numpy(), avg_pool3d_ref(x, *args), rtol=1e-14)
    got = F.max_pool3d(dk.tensor(x), 2, 1).numpy()
    has_nan = avg_pool3d_ref(np.isnan(x).astype(float), 2, 1) > 0  # a window holding a NaN: NaN, as PyTorch
    np.testing.assert_array_equal(np.isnan(got), has_nan)
    np.testing.assert_array_equal(got[~has_nan], max_pool3d_ref(x, 2, 1)[0][~has_nan])


@pytest.mark.parametrize(
    "pool",
    [
        lambda t: F.max_pool3d(t, (3, 2, 3), (2, 1, 2), (1, 1, 0), (1, 2, 1), True),
        lambda t: F.avg_pool3d(t, (3, 2, 3), (2, 1, 2), (1, 1, 0), True, False),
        lambda t: F.avg_pool3d(t, 2, 1, 1, divisor_override=3),
        lambda t: F.adaptive_avg_pool3d(t, (2, 4, 3)),
        lambda t: F.adaptive_max_pool3d(t, (3, 2, 4)),
    ],
    ids=["max", "avg", "avg-divisor", "adaptive-avg", "adaptive-max"],
)
def test_pool3d_gradients_match_finite_differences(pool):
    rng = np.random.default_rng(4)
    x = dk.tensor(rng.standard_normal((2, 2, 5, 6, 7)), requires_grad=True)  # no ties: max is differentiable
    gradcheck(pool, x)


def test_pool3d_refuses_bad_arguments_naming_them():
    x = dk.tensor(np.ones((1, 1, 3, 4, 4)))
    with pytest.raises(ValueError, match="max_pool3d: padding must be between 0 and half of kernel_size"):
        F.max_pool3d(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"avg_pool3d: the output would be empty: input \(1, 1, 3, 4, 4\)"):
        F.avg_pool3d(x, (4, 2, 2))
    with pytest.raises(ValueError, match="avg_pool3d: divisor_override must be a non-zero int"):
        F.avg_pool3d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="max_pool3d: kernel_size must be an int or a tuple of 3 ints"):
        F.max_pool3d(x, (2, 2))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool3d: input must be 4-D \(C, D, H, W\) or 5-D"):
        F.adaptive_avg_pool3d(dk.tensor(np.ones((4, 4, 4))), 2)
    with pytest.raises(ValueError, match="adaptive_max_pool3d: output_size must be positive ints"):
        F.adaptive_max_pool3d(x, (2, 0, 2))
    with pytest.raises(TypeError, match="max_pool3d: input must be a floating-point tensor"):
        F.max_pool3d(dk.tensor(np.ones((1, 1, 2, 2, 2), np.int64)), 2)
    with pytest.raises(ValueError, match=r"MaxPool3d\(kernel_size=2.*expected \(N, C, D, H, W\) or \(C, D, H, W\)"):
        nn.MaxPool3d(2)(dk.tensor(np.ones((3, 4, 4))))


def test_pool3d_layers_match_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    x = np.round(rng.standard_normal((2, 3, 6, 7, 5)), 1)  # ties
    layers = [
        ("MaxPool3d", ((3, 2, 3), (2, 1, 2), 1), dict(ceil_mode=True, return_indices=True)),
        ("AvgPool3d", (3, 2, 1), dict(count_include_pad=False)),
        ("AvgPool3d", ((2, 3, 2),), dict(divisor_override=5, ceil_mode=True)),
        ("AdaptiveAvgPool3d", ((2, None, 3),), {}),
        ("AdaptiveMaxPool3d", (2,), dict(return_indices=True)),
    ]
    for name, args, kwargs in layers:
        theirs, ours = getattr(torch.nn, name)(*args, **kwargs), getattr(nn, name)(*args, **kwargs)
        assert repr(ours) == repr(theirs)
        tx, dx = torch.tensor(x, requires_grad=True), dk.tensor(x, requires_grad=True)
        t_out, d_out = theirs(tx), ours(dx)
        if isinstance(t_out, tuple):
            np.testing.assert_array_equal(d_out[1].numpy(), t_out[1].numpy())
            t_out, d_out = t_out[0], d_out[0]
        g = rng.standard_normal(tuple(t_out.shape))
        t_out.backward(torch.tensor(g))
        d_out.backward(dk.tensor(g))
        np.testing.assert_allclose(d_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
