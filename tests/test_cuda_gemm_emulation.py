"""The GEMM kernels of csrc/cuda/gemm run on the host (tests/cuda_emulation): FP32 (simt), TF32
and BF16 (mma) against float64 NumPy, over the tails of every tile dimension, every operand layout
the kernels load differently (contiguous along k, along m/n, strided, negative strides,
misaligned), batches with broadcast operands, and the epilogue. Needs the source tree and a C++
compiler, not a GPU; the problems are small (every GPU thread is a fiber on the host)."""

from __future__ import annotations

import ctypes

import ml_dtypes
import numpy as np
import pytest

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)

SIMT, MMA = 1, 2
FP32, TF32, BF16 = 0, 1, 2
BIAS_NONE, BIAS_ROWS, BIAS_COLS = 0, 1, 2
#: Largest error allowed, relative to sum |alpha a_ik b_kj| + |beta c| + |bias| per element.
TOLERANCE = {FP32: 1e-5, TF32: 2e-3, BF16: 2e-2}


def _strides(x: np.ndarray) -> np.ndarray:
    return np.array([s // x.itemsize for s in x.strides[-2:]], dtype=np.int64)


def _layout(rng, rows: int, cols: int, how: str, dtype):
    """A rows x cols view: "row" (C order), "col" (transposed storage), "padded" / "padded-col"
    (the same with each stored row padded to a multiple of 16 elements, so whole 16-byte chunks can
    be loaded, with tails), "strided" (every other row and column), "negative" (both axes
    reversed), "misaligned" (C order one element in)."""
    values = rng.standard_normal((rows, cols)).astype(dtype)
    if how == "row":
        return values
    if how == "col":
        return np.ascontiguousarray(values.T).T
    if how.startswith("padded"):
        stored = values.T if how == "padded-col" else values
        store = np.zeros((stored.shape[0], -(-stored.shape[1] // 16) * 16 + 16), dtype)
        store[:, : stored.shape[1]] = stored
        view = store[:, : stored.shape[1]]
        return view.T if how == "padded-col" else view
    if how == "strided":
        store = np.zeros((2 * rows + 1, 2 * cols + 1), dtype)
        store[1::2, 1::2] = values
        return store[1::2, 1::2]
    if how == "negative":
        return np.ascontiguousarray(values[::-1, ::-1])[::-1, ::-1]
    store = np.zeros(rows * cols + 1, dtype)
    store[1:] = values.reshape(-1)
    return store[1:].reshape(rows, cols)


def _run(
    kernel, precision, a, b, c, *, offsets=None, m, n, k, batch=1, alpha=1.0, beta=0.0, bias=None, axis=0, relu=False
):
    emulation.load_driver("gemm").dk_gemm(
        kernel, precision, a, _strides(a), b, _strides(b), c, _strides(c),
        ctypes.c_void_p(None) if offsets is None else offsets,
        m, n, k, batch, alpha, beta, ctypes.c_void_p(None) if bias is None else bias, axis, relu,
    )  # fmt: skip


def _check(result, a, b, c_before, precision, *, alpha=1.0, beta=0.0, bias=None, axis=0, relu=False):
    """result == relu?(alpha a @ b + beta c + bias) within TOLERANCE (float64 reference)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = alpha * (a64 @ b64)
    scale = np.abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0.0:
        ref = ref + beta * c_before.astype(np.float64)
        scale = scale + np.abs(beta * c_before.astype(np.float64))
    if bias is not None:
        b_term = bias.astype(np.float64)[:, None] if axis == BIAS_ROWS else bias.astype(np.float64)[None, :]
        ref, scale = ref + b_term, scale + np.abs(b_term)
    if relu:
        ref = np.maximum(ref, 0.0)
    got = result.astype(np.float64)
    assert np.all(np.isfinite(got)), "non-finite values in the result"
    error = np.abs(got - ref) / np.maximum(scale, 1e-30)
    assert error.max(initial=0.0) <= TOLERANCE[precision], f"max relative error {error.max()}"


CASES = [
    pytest.param(SIMT, FP32, id="simt-fp32"),
    pytest.param(MMA, TF32, id="mma-tf32"),
    pytest.param(MMA, BF16, id="mma-bf16"),
]
DTYPE = {FP32: np.float32, TF32: np.float32, BF16: ml_dtypes.bfloat16}


@pytest.mark.parametrize("kernel,precision", CASES)
@pytest.mark.parametrize(
    "a_how,b_how",
    [
        ("row", "row"),
        ("col", "col"),
        ("padded", "padded"),
        ("padded-col", "padded-col"),
        ("padded", "padded-col"),
        ("padded-col", "padded"),
        ("strided", "negative"),
        ("negative", "strided"),
        ("misaligned", "row"),
        ("row", "misaligned"),
    ],
)
def test_layouts_and_tails(rng, kernel, precision, a_how, b_how):
    # 130 x 129: two tiles each way with tails of 2 and 1; k = 37 crosses slices of 8, 16 and 32.
    m, n, k = 130, 129, 37
    dtype = DTYPE[precision]
    a, b = _layout(rng, m, k, a_how, dtype), _layout(rng, k, n, b_how, dtype)
    c = np.full((m, n), np.nan, dtype)  # beta == 0: C is not read
    _run(kernel, precision, a, b, c, m=m, n=n, k=k)
    _check(c, a, b, None, precision)


@pytest.mark.parametrize("kernel,precision", CASES)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 3, 5), (17, 9, 70), (3, 5, 0)])
def test_odd_sizes_and_the_epilogue(rng, kernel, precision, m, n, k):
    dtype = DTYPE[precision]
    a, b = _layout(rng, m, k, "row", dtype), _layout(rng, k, n, "col", dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    before = c.copy()
    bias = rng.standard_normal(n).astype(dtype)
    _run(kernel, precision, a, b, c, m=m, n=n, k=k, alpha=-0.75, beta=0.5, bias=bias, axis=BIAS_COLS, relu=True)
    _check(c, a, b, before, precision, alpha=-0.75, beta=0.5, bias=bias, axis=BIAS_COLS, relu=True)


@pytest.mark.parametrize("kernel,precision", CASES)
def test_batch_offsets_broadcast_and_row_bias(rng, kernel, precision):
    # Three matrices of A, one B shared by all (offset 0 each time), C with a transposed layout.
    batch, m, n, k = 3, 9, 20, 24
    dtype = DTYPE[precision]
    a = rng.standard_normal((batch, m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.full((batch, n, m), np.nan, dtype).transpose(0, 2, 1)
    bias = rng.standard_normal(m).astype(dtype)
    offsets = np.concatenate([np.arange(batch) * m * k, np.zeros(batch), np.arange(batch) * m * n]).astype(np.int64)
    emulation.load_driver("gemm").dk_gemm(
        kernel, precision, a, _strides(a), b, _strides(b), c, _strides(c), offsets, m, n, k, batch,
        2.0, 0.0, bias, BIAS_ROWS, False,
    )  # fmt: skip
    for i in range(batch):
        _check(c[i], a[i], b, None, precision, alpha=2.0, bias=bias, axis=BIAS_ROWS)


def test_a_forced_kernel_that_cannot_take_the_problem_says_why(rng):
    a = rng.standard_normal((4, 4)).astype(np.float32)
    c = np.zeros((4, 4), np.float32)
    with pytest.raises(RuntimeError, match="mma kernel computes tf32 or bf16"):
        _run(MMA, FP32, a, a, c, m=4, n=4, k=4)
    bf = a.astype(ml_dtypes.bfloat16)
    with pytest.raises(RuntimeError, match="simt kernel computes float32 data only"):
        _run(SIMT, BF16, bf, bf, bf.copy(), m=4, n=4, k=4)
