"""The activation kernels of csrc/cuda/activation run on the host (tests/cuda_emulation): every
op and float dtype against the float64 references of test_activation.py (the same ulp bound and
tolerances as the CPU kernels, NaN, infinities, -0 and subnormals among the inputs), over the
16-byte vector path and its tail, misaligned arrays (the scalar path), sizes 0 and 1, and outputs
prefilled with NaN. Needs the source tree and a C++ compiler, not a GPU; the problems are small."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)
from test_activation import BACKWARD, DTYPES, OPS, _check, _grads, _values  # noqa: E402

#: deepkern::cuda::ActivationOp codes (csrc/cuda/activation/activation.h), by test_activation's op names.
CODES = {"relu": 0, "relu_backward": 1, "gelu": 2, "gelu_backward": 3, "gelu_tanh": 4, "gelu_tanh_backward": 5}
#: Sizes around the 16-byte packs (4 floats, 2 doubles) and past one block of 256 threads.
SIZES = [0, 1, 3, 4, 5, 8, 1027, 2 * 256 * 4 + 5]


def _aligned(values: np.ndarray, offset: int) -> np.ndarray:
    """A copy of `values` starting `offset` bytes past a 64-byte boundary."""
    raw = np.empty(values.nbytes + 64 + offset, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    view = raw[start : start + values.nbytes].view(values.dtype)
    view[...] = values
    return view


def _launch(op: str, grad, x: np.ndarray, out: np.ndarray) -> None:
    driver = emulation.load_driver("activation")
    g = grad if grad is not None else ctypes.c_void_p(None)
    driver.dk_activation(CODES[op], int(x.dtype == np.float64), g, x, out, x.size)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size", SIZES)
def test_matches_reference_aligned(op, dtype, size, rng):
    x = _aligned(_values(rng, size, dtype), 0)
    grad = _aligned(_grads(rng, size, dtype), 0) if op in BACKWARD else None
    out = _aligned(np.full(size, np.nan, dtype), 0)
    _launch(op, grad, x, out)
    _check(op, out, grad, x, f"{op} {dtype} n={size}")


@pytest.mark.parametrize(
    ("op", "misaligned"),
    [(op, name) for op in OPS for name in ("x", "grad", "out") if name != "grad" or op in BACKWARD],
)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_misaligned_arrays_take_the_scalar_path(op, dtype, misaligned, rng):
    size = 517
    itemsize = np.dtype(dtype).itemsize
    shift = {name: itemsize if name == misaligned else 0 for name in ("x", "grad", "out")}
    x = _aligned(_values(rng, size, dtype), shift["x"])
    grad = _aligned(_grads(rng, size, dtype), shift["grad"]) if op in BACKWARD else None
    out = _aligned(np.full(size, np.nan, dtype), shift["out"])
    _launch(op, grad, x, out)
    _check(op, out, grad, x, f"{op} {dtype}, {misaligned} misaligned")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_writes_nothing_past_the_end(dtype, rng):
    size = 13
    x = _aligned(_values(rng, size + 8, dtype), 0)
    out = _aligned(np.full(size + 8, np.nan, dtype), 0)
    _launch("gelu", None, x[:size], out[:size])
    _check("gelu", out[:size], None, x[:size])
    assert np.isnan(out[size:]).all(), "the kernel wrote past element n"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_special_values_keep_pytorchs_results(dtype):
    """relu keeps NaN and -0; gelu(-inf) and the derivatives at the infinities are NaN."""
    x = _aligned(np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, -1.0, 2.0, -20.0], dtype), 0)
    out = _aligned(np.empty(x.size, dtype), 0)
    _launch("relu", None, x, out)
    assert np.isnan(out[0]) and out[1] == 0 and np.signbit(out[1]) and out[3] == np.inf and out[4] == 0
    grad = _aligned(np.ones(x.size, dtype), 0)
    for op in ("gelu", "gelu_tanh", "gelu_backward", "gelu_tanh_backward"):
        _launch(op, grad if op in BACKWARD else None, x, out)
        _check(op, out, grad if op in BACKWARD else None, x, op)
        assert np.isnan(out[[0, 4]]).all(), f"{op}: NaN and -inf inputs give NaN"
    _launch("gelu_backward", grad, x, out)
    assert np.isnan(out[3]), "gelu_backward(+inf) is NaN (+inf * 0), as PyTorch's"


def test_cpu_and_emulated_kernels_share_their_math(rng):
    """The emulated kernels run activation_math.h as the CPU's float64 loops do: bit-equal results
    for float64 (one scalar formula, the same library erfc and exp)."""
    deepkern_ops = pytest.importorskip("deepkern.ops")
    x = _aligned(_values(rng, 999, np.float64), 0)
    grad = _aligned(_grads(rng, 999, np.float64), 0)
    out = _aligned(np.empty(x.size, np.float64), 0)
    for op, cpu in [
        ("gelu", lambda: deepkern_ops.gelu(x)),
        ("gelu_tanh", lambda: deepkern_ops.gelu(x, approximate="tanh")),
        ("gelu_backward", lambda: deepkern_ops.gelu_backward(grad, x)),
        ("gelu_tanh_backward", lambda: deepkern_ops.gelu_backward(grad, x, approximate="tanh")),
    ]:
        _launch(op, grad if op in BACKWARD else None, x, out)
        np.testing.assert_array_equal(out, cpu(), err_msg=op)
