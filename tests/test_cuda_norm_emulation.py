"""The batch normalization kernels of csrc/cuda/norm run on host threads (tests/cuda_emulation):
training and evaluation, forward (statistics, normalization, running statistics, the float64 saved
statistics) and backward (each gradient alone or together), float32 and float64, 2-D and 4-D
inputs, channels 1 to 300, a large mean beside a small spread, NaN-prefilled outputs and zero
channels, against the float64 references of reference_nn.py and the CPU op. Needs the source
tree and a C++ compiler, not a GPU; the problems are small."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)
from test_norm import DTYPES, check  # noqa: E402

from reference_nn import batch_norm_backward_ref, batch_norm_ref  # noqa: E402

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
