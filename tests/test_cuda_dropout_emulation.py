"""The dropout kernels of csrc/cuda/dropout run on the host (tests/cuda_emulation): masks and
outputs exactly the reference's (the Philox stream of tests/reference.py, so exactly what the CPU
kernels give), for both float dtypes, sizes around the 4-element quads and past one block of 256
threads, the counter's carry past 2**64, the vector path (aligned arrays) and the element path
(misaligned arrays), NaN-prefilled outputs and nothing written past the end. Needs the source tree
and a C++ compiler, not a GPU."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)
from test_cuda_activation_emulation import _aligned  # noqa: E402
from test_dropout import BIG_SEED, DTYPES, _exact, _values  # noqa: E402

from reference import dropout_ref  # noqa: E402

SIZES = [0, 1, 3, 4, 5, 7, 8, 1027, 2 * 256 * 4 + 5]


def _forward(x, p, seed, offset, shift=None):
    """(y, mask) from the emulated kernel; `shift`: bytes each array starts past a 64-byte boundary."""
    shift = shift or {}
    x = _aligned(x, shift.get("x", 0))
    y = _aligned(np.full(x.size + 8, np.nan, x.dtype), shift.get("y", 0))
    mask = _aligned(np.full(x.size + 8, 7, np.uint8), shift.get("mask", 0))
    emulation.load_driver("dropout").dk_dropout(
        int(x.dtype == np.float64), x, y, mask, x.size, float(p), ctypes.c_uint64(seed), ctypes.c_uint64(offset)
    )
    assert np.isnan(y[x.size :]).all() and (mask[x.size :] == 7).all(), "the kernel wrote past element n"
    return y[: x.size], mask[: x.size]


def _check(y, mask, x, p, seed, offset, what):
    _, mask_ref = dropout_ref(x, p, seed, offset)
    assert set(np.unique(mask)) <= {0, 1}, f"{what}: mask bytes other than 0 and 1"
    np.testing.assert_array_equal(mask.astype(bool), mask_ref, err_msg=f"{what}: mask")
    np.testing.assert_array_equal(y, _exact(x, mask_ref, p), err_msg=f"{what}: y")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_matches_reference(size, dtype, rng):
    x = _values(rng, size, dtype)
    for p, seed, offset in [(0.3, 1, 0), (0.5, BIG_SEED, 2**64 - 3), (0.0, 5, 9), (1.0, 5, 9)]:
        y, mask = _forward(x, p, seed, offset)
        _check(y, mask, x, p, seed, offset, f"n={size} {dtype} p={p} offset={offset}")


@pytest.mark.parametrize("misaligned", ["x", "y", "mask"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_misaligned_arrays_take_the_element_path(misaligned, dtype, rng):
    x = _values(rng, 517, dtype)
    shift = {misaligned: np.dtype(dtype).itemsize if misaligned != "mask" else 1}
    y, mask = _forward(x, 0.4, 77, 3, shift)
    _check(y, mask, x, 0.4, 77, 3, f"{misaligned} misaligned")


@pytest.mark.parametrize("size", [0, 1, 5, 1027])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shift", [0, 1])
def test_backward_multiplies_by_the_mask(size, dtype, shift, rng):
    grad = _aligned(_values(rng, size, dtype), 0)
    mask = _aligned((rng.random(size) < 0.6).astype(np.uint8), shift)
    out = _aligned(np.full(size + 4, np.nan, dtype), 0)
    emulation.load_driver("dropout").dk_dropout_backward(int(dtype == np.float64), grad, mask, out, size, 0.4)
    np.testing.assert_array_equal(out[:size], _exact(grad, mask.astype(bool), 0.4))
    assert np.isnan(out[size:]).all(), "the kernel wrote past element n"
