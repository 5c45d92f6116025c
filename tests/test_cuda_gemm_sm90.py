"""The Hopper GEMM (wgmma fed by TMA, csrc/cuda/gemm/gemm_sm90.cu) on an sm_90 GPU: bf16 products
around its 128 x 256 x 64 tile edges in the four layouts, the epilogue (alpha, beta * C, bias,
ReLU, strided C), batches, and the problems it declines, which other kernels then run. Each case
asserts which kernel ran (``_cuda.last_gemm_kernel``) and compares with float64 NumPy. Skipped,
with the reason, without an sm_90 GPU or a module built for it."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest

from conftest import to_host

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}"),
]


def _sm90_missing() -> str:
    """Why the sm90 kernel cannot run here ('' when it can)."""
    if not dk.cuda.is_available():
        return "no usable GPU"
    if not {"90", "90a"} & set(dk.cuda.compiled_archs()):
        return f"deepkern._cuda was built for sm {dk.cuda.compiled_archs()}, without 90a"
    capability = tuple(dk.cuda.get_device_properties(0)["capability"])
    if capability != (9, 0):
        return f"needs an sm_90 GPU, GPU 0 has compute capability {capability}"
    return ""


_MISSING = _sm90_missing()
needs_sm90 = pytest.mark.skipif(bool(_MISSING), reason=_MISSING)

#: The kernel declines problems with fewer output elements (m * n * batch) than this.
MIN_OUTPUT_ELEMENTS = 128 * 128
LAYOUTS = ["NN", "NT", "TN", "TT"]
# (m, n, k) around the tile edges (m: 64 per consumer, 128 per tile; n: 256; k: 64 per stage), odd
# K, m = 1; every m * n reaches MIN_OUTPUT_ELEMENTS. The last one has more tiles than an H200 has
# SMs, so persistent blocks take several tiles and the stage ring wraps within and across tiles.
SIZES = [
    (1, 16640, 64),
    (63, 272, 72),
    (64, 256, 200),
    (65, 255, 64),
    (127, 257, 72),
    (128, 128, 200),
    (129, 129, 8),
    (255, 65, 72),
    (256, 64, 1),
    (257, 64, 200),
    (4096, 2048, 256),
]


@pytest.fixture
def bf16():
    return np.dtype(pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes").bfloat16)


@pytest.fixture
def kernel():
    """Sets the process-wide GEMM kernel choice for the test (``kernel("sm90")``); back to
    automatic afterwards."""
    from deepkern import _cuda

    yield _cuda.set_gemm_kernel
    _cuda.set_gemm_kernel("automatic")


def last_kernel() -> str:
    from deepkern import _cuda

    return _cuda.last_gemm_kernel()


def operand(rng, rows, cols, transposed, dtype, pad=True):
    """A random (rows, cols) matrix of ``dtype`` on the GPU and its host copy. Stored as itself or,
    with ``transposed``, as the transpose of a (cols, rows) matrix; with ``pad`` the stored rows
    are padded to a multiple of 8 elements (16 bytes, as TMA needs), the view slicing them off."""
    stored_rows, stored_cols = (cols, rows) if transposed else (rows, cols)
    width = -(-stored_cols // 8) * 8 if pad else stored_cols
    host = rng.standard_normal((stored_rows, width)).astype(dtype)
    dev = dk.backends.to_device(host, "cuda")[:, :stored_cols]
    host = host[:, :stored_cols]
    return (dev.T, host.T) if transposed else (dev, host)


def check_close(got, ref, magnitude, k, what, *, output_rounding=2.0**-8, input_rounding=0.0):
    """``got`` (on any device) is ``ref`` (float64) up to an FP32 sum of k products, inputs
    rounded with relative error ``input_rounding`` (TF32) and the result with ``output_rounding``
    (bf16): |got - ref| <= output_rounding |ref| + (input_rounding + (k + 4) 2^-23) ``magnitude``
    (the sum of the absolute values of the terms) in every element, and NaN-free."""
    got = to_host(got)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    got = got.astype(np.float64)
    assert not np.isnan(got).any(), f"{what}: {int(np.isnan(got).sum())} NaN elements (not written?)"
    bound = output_rounding * np.abs(ref) + (input_rounding + (k + 4) * 2.0**-23) * magnitude
    excess = np.abs(got - ref) - bound
    if (excess > 0).any():
        worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
        raise AssertionError(
            f"{what}: {int((excess > 0).sum())} elements off; worst at {tuple(map(int, worst))}: "
            f"got {got[worst]!r}, expected {ref[worst]!r} (bound {bound[worst]:.3g})"
        )


def f64(x):
    return np.asarray(x).astype(np.float64)


@needs_sm90
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("m,n,k", SIZES, ids=str)
def test_matmul_runs_on_sm90(rng, bf16, kernel, layout, m, n, k):
    kernel("sm90")
    a, a_host = operand(rng, m, k, layout[0] == "T", bf16)
    b, b_host = operand(rng, k, n, layout[1] == "T", bf16)
    got = dk.ops.matmul(a, b)
    assert last_kernel() == "sm90"
    check_close(got, f64(a_host) @ f64(b_host), np.abs(f64(a_host)) @ np.abs(f64(b_host)), k, f"{layout} {m}x{n}x{k}")


@needs_sm90
def test_automatic_choice_takes_sm90_for_large_bf16(rng, bf16):
    a, a_host = operand(rng, 256, 512, False, bf16)
    b, b_host = operand(rng, 512, 384, False, bf16)
    got = dk.ops.matmul(a, b)
    assert last_kernel() == "sm90"
    check_close(got, f64(a_host) @ f64(b_host), np.abs(f64(a_host)) @ np.abs(f64(b_host)), 512, "automatic")


@needs_sm90
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("beta", [0.0, -0.75])
@pytest.mark.parametrize("relu", [False, True])
def test_epilogue(rng, bf16, kernel, layout, beta, relu):
    """alpha, beta * C (C NaN-filled when beta is 0: never read then), bias per column, ReLU."""
    kernel("sm90")
    m, n, k, alpha = 129, 257, 136, 1.5
    a, a_host = operand(rng, m, k, layout[0] == "T", bf16)
    b, b_host = operand(rng, k, n, layout[1] == "T", bf16)
    bias_host = rng.standard_normal(n).astype(bf16)
    c_host = rng.standard_normal((m, n)).astype(bf16) if beta else np.full((m, n), np.nan, bf16)
    c = dk.backends.to_device(c_host, "cuda")
    got = dk.ops.gemm(a, b, alpha=alpha, beta=beta, c=c, bias=dk.backends.to_device(bias_host, "cuda"), relu=relu)
    assert last_kernel() == "sm90"
    c_term = beta * f64(c_host) if beta else 0.0
    ref = alpha * (f64(a_host) @ f64(b_host)) + c_term + f64(bias_host)
    magnitude = abs(alpha) * (np.abs(f64(a_host)) @ np.abs(f64(b_host))) + np.abs(c_term) + np.abs(f64(bias_host))
    check_close(got, np.maximum(ref, 0.0) if relu else ref, magnitude, k, f"{layout} beta={beta} relu={relu}")


@needs_sm90
@pytest.mark.parametrize("transposed_c", [False, True])
def test_strided_c(rng, bf16, kernel, transposed_c):
    """C written (and read, beta != 0) through its strides: a slice of wider rows, or a transpose;
    the elements around it stay as they were."""
    kernel("sm90")
    m, n, k = 200, 130, 64
    a, a_host = operand(rng, m, k, False, bf16)
    b, b_host = operand(rng, k, n, True, bf16)
    shape = (n, m + 5) if transposed_c else (m, n + 3)
    full_host = rng.standard_normal(shape).astype(bf16)
    full = dk.backends.to_device(full_host, "cuda")
    c = full[:, :m].T if transposed_c else full[:, :n]
    c_host = full_host[:, :m].T if transposed_c else full_host[:, :n]
    dk.ops.gemm(a, b, beta=0.5, c=c)
    assert last_kernel() == "sm90"
    ref = f64(a_host) @ f64(b_host) + 0.5 * f64(c_host)
    check_close(c, ref, np.abs(f64(a_host)) @ np.abs(f64(b_host)) + np.abs(0.5 * f64(c_host)), k, "strided C")
    around = to_host(full)
    if transposed_c:
        assert (around[:, m:].astype(np.float64) == full_host[:, m:].astype(np.float64)).all()
    else:
        assert (around[:, n:].astype(np.float64) == full_host[:, n:].astype(np.float64)).all()


@needs_sm90
@pytest.mark.parametrize("broadcast_b", [False, True])
def test_batched(rng, bf16, kernel, broadcast_b):
    """A batch of uniformly spaced matrices (a 3-D TMA map), B shared by all when broadcast."""
    kernel("sm90")
    batch, m, n, k = 3, 130, 200, 72
    a_host = rng.standard_normal((batch, m, k)).astype(bf16)
    b_host = rng.standard_normal((k, n) if broadcast_b else (batch, k, n)).astype(bf16)
    got = dk.ops.matmul(dk.backends.to_device(a_host, "cuda"), dk.backends.to_device(b_host, "cuda"))
    assert last_kernel() == "sm90"
    check_close(got, f64(a_host) @ f64(b_host), np.abs(f64(a_host)) @ np.abs(f64(b_host)), k, "batched")


def declined_cases(rng, bf16):
    """(name, a, b, a_host, b_host) of products the sm90 kernel does not take."""
    m, n, k = 160, 256, 72
    b, b_host = operand(rng, k, n, False, bf16)
    cases = []
    a, a_host = operand(rng, m, k, False, np.float32)
    b32, b32_host = operand(rng, k, n, False, np.float32)
    # float32 with B's columns contiguous: declined as FP32, and as TF32 (which needs B's rows contiguous)
    cases.append(("float32, B N-major", a, b32, a_host, b32_host))
    a, a_host = operand(rng, m, 73, False, bf16, pad=False)  # rows 146 bytes apart
    b73, b73_host = operand(rng, 73, n, True, bf16)
    cases.append(("row stride not a multiple of 16 bytes", a, b73, a_host, b73_host))
    a_wide, a_wide_host = operand(rng, m, k + 8, False, bf16)
    cases.append(("base not 16-byte aligned", a_wide[:, 1 : k + 1], b, a_wide_host[:, 1 : k + 1], b_host))
    b40, b40_host = operand(rng, (k + 8) // 2, n, False, bf16)
    cases.append(("no contiguous dim", a_wide[:, ::2], b40, a_wide_host[:, ::2], b40_host))
    a, a_host = operand(rng, 64, k, False, bf16)
    b_small, b_small_host = operand(rng, k, 64, False, bf16)
    cases.append(("64 x 64 output: below the size threshold", a, b_small, a_host, b_small_host))
    stack_host = rng.standard_normal((2, 3, m, k)).astype(bf16)
    stack = dk.backends.to_device(stack_host, "cuda")
    cases.append(("batch offsets not uniformly spaced", stack[:, :2], b, stack_host[:, :2], b_host))
    return cases


@needs_sm90
def test_declined_problems_run_on_other_kernels(rng, bf16):
    for name, a, b, a_host, b_host in declined_cases(rng, bf16):
        got = dk.ops.matmul(a, b)
        assert last_kernel() != "sm90", name
        ref, magnitude = f64(a_host) @ f64(b_host), np.abs(f64(a_host)) @ np.abs(f64(b_host))
        if a_host.dtype == np.float32:  # FP32 or TF32, as the backend chooses for float32
            check_close(got, ref, magnitude, a_host.shape[-1], name, output_rounding=0.0, input_rounding=2.0**-8)
        else:
            check_close(got, ref, magnitude, a_host.shape[-1], name)


@needs_sm90
def test_forcing_sm90_on_a_declined_problem_raises(rng, bf16, kernel):
    kernel("sm90")
    for name, a, b, _, _ in declined_cases(rng, bf16):
        with pytest.raises((ValueError, RuntimeError)) as raised:
            dk.ops.matmul(a, b)
        assert str(raised.value), f"{name}: the error says nothing"


def direct_gemm(a, b, c, k, *, alpha=1.0, beta=0.0, bias=None, bias_axis=0, relu=False, precision="bf16"):
    """One matrix through deepkern._cuda.gemm (the binding the CUDA backend calls)."""
    from deepkern import _cuda

    zero = np.zeros(1, dtype=np.int64)
    _cuda.gemm(a, b, c, zero, zero, zero, k, alpha, beta, bias, bias_axis, relu, precision)


@needs_sm90
def test_bias_per_row(rng, bf16, kernel):
    kernel("sm90")
    m, n, k = 140, 300, 96
    a, a_host = operand(rng, m, k, True, bf16)
    b, b_host = operand(rng, k, n, False, bf16)
    bias_host = rng.standard_normal(m).astype(bf16)
    c = dk.backends.to_device(np.full((m, n), np.nan, bf16), "cuda")
    direct_gemm(a, b, c, k, alpha=-2.0, bias=dk.backends.to_device(bias_host, "cuda"), bias_axis=1, relu=True)
    assert last_kernel() == "sm90"
    ref = -2.0 * (f64(a_host) @ f64(b_host)) + f64(bias_host)[:, None]
    magnitude = 2.0 * (np.abs(f64(a_host)) @ np.abs(f64(b_host))) + np.abs(f64(bias_host))[:, None]
    check_close(c, np.maximum(ref, 0.0), magnitude, k, "bias per row")


@needs_sm90
@pytest.mark.parametrize("m,n,k", [(1, 16640, 32), (129, 257, 40), (300, 520, 1000)], ids=str)
def test_tf32_k_major_runs_on_sm90(rng, kernel, m, n, k):
    """float32 data as TF32: A's rows and B's columns contiguous (the layout wgmma takes)."""
    kernel("sm90")
    a, a_host = operand(rng, m, k, False, np.float32)
    b, b_host = operand(rng, k, n, True, np.float32)
    bias_host = rng.standard_normal(n).astype(np.float32)
    c_host = rng.standard_normal((m, n)).astype(np.float32)
    c = dk.backends.to_device(c_host, "cuda")
    bias = dk.backends.to_device(bias_host, "cuda")
    direct_gemm(a, b, c, k, alpha=0.5, beta=2.0, bias=bias, bias_axis=2, precision="tf32")
    assert last_kernel() == "sm90"
    ref = 0.5 * (f64(a_host) @ f64(b_host)) + 2.0 * f64(c_host) + f64(bias_host)
    magnitude = 0.5 * (np.abs(f64(a_host)) @ np.abs(f64(b_host))) + 2.0 * np.abs(f64(c_host)) + np.abs(f64(bias_host))
    check_close(c, ref, magnitude, k, f"tf32 {m}x{n}x{k}", output_rounding=0.0, input_rounding=2.0**-8)


@needs_sm90
@pytest.mark.parametrize("layout", ["NN", "TN", "TT"])
def test_tf32_other_layouts_run_elsewhere(rng, layout):
    m, n, k = 200, 300, 64
    a, a_host = operand(rng, m, k, layout[0] == "T", np.float32)
    b, b_host = operand(rng, k, n, layout[1] == "T", np.float32)
    c = dk.backends.to_device(np.full((m, n), np.nan, np.float32), "cuda")
    direct_gemm(a, b, c, k, precision="tf32")
    assert last_kernel() not in ("sm90", "automatic")
    magnitude = np.abs(f64(a_host)) @ np.abs(f64(b_host))
    check_close(c, f64(a_host) @ f64(b_host), magnitude, k, layout, output_rounding=0.0, input_rounding=2.0**-8)
