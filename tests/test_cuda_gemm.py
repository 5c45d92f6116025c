"""Matrix multiply on the GPU: every kernel (simt FP32, mma TF32/BF16, the Hopper kernel where it is
built and the device is sm_90) forced in turn and checked to have run, against float64 NumPy and the
CPU op: odd and zero sizes, transposes, strided and negative-stride views, batched broadcast,
alpha/beta (C not read when beta == 0), bias by rows and columns, ReLU, allow_tf32 on and off,
bfloat16, nn.Linear and Tensor @, and the binding's refusals. The GPU cases skip, with the reason,
where no GPU is usable; the settings and refusals that need none run everywhere."""

from __future__ import annotations

import contextlib

import deepkern as dk
import ml_dtypes
import numpy as np
import pytest
from deepkern import ops
from deepkern.backends import cuda as cuda_backend

from checks import check, raises_naming
from conftest import on_device, to_host
from reference import gemm_ref, matmul_ref

AVAILABLE = dk.cuda.is_available()
BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.dtype(np.float32)
#: ||out - ref|| / ||ref|| bounds: FP32 as the CPU's float32; TF32 inputs keep 10 mantissa bits;
#: BF16 inputs are exact here (made in bfloat16) and the result is rounded to bfloat16 (8 bits).
TOL = {"fp32": 1e-5, "tf32": 1e-3, "bf16": 1e-2}


def gpu(test):
    """Marks a test as needing a usable GPU (marker cuda; skipped with the reason elsewhere)."""
    skip = pytest.mark.skipif(not AVAILABLE, reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
    return pytest.mark.cuda(skip(test))


if dk.cuda.is_compiled():
    from deepkern import _cuda


@contextlib.contextmanager
def forced(kernel: str, allow_tf32: bool = False):
    """Every GEMM inside runs `kernel` ('automatic' to let deepkern choose), with allow_tf32 set.
    The sm90 kernel skips (saying why) where it is not built or the device is not sm_90, or it
    declines the problem: forcing it there is a refusal, tested as the other kernels' below."""
    _cuda.set_gemm_kernel(kernel)
    cuda_backend.matmul.allow_tf32 = allow_tf32
    try:
        yield
    except ValueError as e:
        if kernel == "sm90" and "sm90 kernel" in str(e):
            pytest.skip(f"the sm90 kernel does not run here: {e}")
        raise
    finally:
        _cuda.set_gemm_kernel("automatic")
        cuda_backend.matmul.allow_tf32 = False


#: (kernel, precision): precision 'fp32'/'tf32' computes float32 arrays, 'bf16' bfloat16 ones.
KERNELS = [
    pytest.param("simt", "fp32", id="simt-fp32"),
    pytest.param("mma", "tf32", id="mma-tf32"),
    pytest.param("mma", "bf16", id="mma-bf16"),
    pytest.param("sm90", "tf32", id="sm90-tf32"),
    pytest.param("sm90", "bf16", id="sm90-bf16"),
]


@contextlib.contextmanager
def running(kernel: str, precision: str):
    """Forces `kernel` for `precision` (see forced), then checks that it ran."""
    with forced(kernel, allow_tf32=precision == "tf32"):
        yield
    assert _cuda.last_gemm_kernel() == kernel


def rand(rng, shape, precision):
    dtype = BF16 if precision == "bf16" else F32
    return rng.standard_normal(shape).astype(dtype)


def dtype_of(precision):
    return BF16 if precision == "bf16" else F32


def operand(rng, shape, how, precision):
    """A logical `shape` matrix on the GPU as `how`: 'contiguous', 'transposed' (the transpose of
    a contiguous array), 'strided' (every 2nd row, every 3rd column of a bigger one), 'negative'
    (both axes reversed)."""
    r, c = shape
    if how == "contiguous":
        return on_device("cuda", rand(rng, shape, precision))
    if how == "transposed":
        return on_device("cuda", rand(rng, (c, r), precision)).T
    if how == "strided":
        return on_device("cuda", rand(rng, (2 * r + 1, 3 * c + 2), precision))[1::2, 2::3]
    return on_device("cuda", rand(rng, shape, precision))[::-1, ::-1]


SHAPES = [(1, 1, 1), (7, 33, 129), (129, 7, 33), (131, 257, 67), (2, 3, 263), (127, 1, 5), (1, 130, 17)]


@gpu
@pytest.mark.parametrize("kernel,precision", KERNELS)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_matmul_sizes(rng, kernel, precision, m, n, k):
    a, b = rand(rng, (m, k), precision), rand(rng, (k, n), precision)
    out = on_device("cuda", np.full((m, n), np.nan, dtype_of(precision)))
    with running(kernel, precision):
        got = ops.matmul(*on_device("cuda", a, b), out=out)
    assert got is out
    check(got, matmul_ref(a, b), dtype_of(precision), f"{kernel} {precision} {m}x{n}x{k}", tol=TOL[precision])
    if precision == "fp32":  # FP32 agrees with the CPU op as closely as both agree with float64
        check(got, ops.matmul(a, b).astype(np.float64), F32, "vs the CPU op", tol=2 * TOL["fp32"])


@gpu
@pytest.mark.parametrize("kernel,precision", KERNELS)
@pytest.mark.parametrize("m,n,k", [(0, 5, 3), (5, 0, 3), (5, 3, 0), (0, 0, 0)])
def test_zero_sizes(rng, kernel, precision, m, n, k):
    a, b = rand(rng, (m, k), precision), rand(rng, (k, n), precision)
    c = rand(rng, (m, n), precision)
    bias = rand(rng, (n,), precision)
    with forced(kernel, allow_tf32=precision == "tf32"):  # nothing to multiply: any kernel may run
        got = ops.gemm(
            *on_device("cuda", a, b), alpha=2.0, beta=0.5, c=on_device("cuda", c), bias=on_device("cuda", bias)
        )
    check(
        got,
        gemm_ref(a, b, alpha=2.0, beta=0.5, c=c, bias=bias),
        dtype_of(precision),
        "k = 0: beta c + bias",
        tol=TOL[precision],
    )


@gpu
@pytest.mark.parametrize("kernel,precision", KERNELS)
@pytest.mark.parametrize("storage", ["contiguous", "transposed", "strided", "negative"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_transposes_and_views(rng, kernel, precision, storage, trans_a, trans_b):
    m, n, k = 67, 45, 131
    a = operand(rng, (k, m) if trans_a else (m, k), storage, precision)
    b = operand(rng, (n, k) if trans_b else (k, n), storage, precision)
    with running(kernel, precision):
        got = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    ref = gemm_ref(to_host(a), to_host(b), trans_a=trans_a, trans_b=trans_b)
    check(got, ref, dtype_of(precision), f"{storage} trans_a={trans_a} trans_b={trans_b}", tol=TOL[precision])


@gpu
@pytest.mark.parametrize("kernel,precision", KERNELS)
@pytest.mark.parametrize(
    "a_shape,b_shape",
    [
        ((2, 1, 33, 17), (3, 17, 9)),
        ((5, 7, 130), (130,)),
        ((130,), (4, 130, 6)),
        ((19,), (19,)),
        ((1, 3, 8), (2, 1, 8, 5)),
    ],
)
def test_batched_broadcast_and_vectors(rng, kernel, precision, a_shape, b_shape):
    a, b = rand(rng, a_shape, precision), rand(rng, b_shape, precision)
    with running(kernel, precision):
        got = ops.matmul(*on_device("cuda", a, b))
    check(
        to_host(got).reshape(np.shape(matmul_ref(a, b))),
        matmul_ref(a, b),
        dtype_of(precision),
        "batched",
        tol=TOL[precision],
    )


@gpu
@pytest.mark.parametrize("kernel,precision", KERNELS)
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.5, 0.0), (1.0, 1.0), (0.75, -2.0)])
def test_alpha_beta_c_unread_when_beta_is_zero(rng, kernel, precision, alpha, beta):
    m, n, k = 45, 140, 77
    a, b = rand(rng, (m, k), precision), rand(rng, (k, n), precision)
    c_host = rand(rng, (m, n), precision) if beta != 0 else np.full((m, n), np.nan, dtype_of(precision))
    big = on_device("cuda", np.full((m + 2, 2 * n), np.nan, dtype_of(precision)))
    c = big[1 : m + 1, ::2]  # a strided view; everything else must stay NaN
    c[...] = on_device("cuda", c_host)
    with running(kernel, precision):
        got = ops.gemm(*on_device("cuda", a, b), alpha=alpha, beta=beta, c=c)
    assert got is c
    check(
        got,
        gemm_ref(a, b, alpha=alpha, beta=beta, c=c_host),
        dtype_of(precision),
        f"alpha={alpha} beta={beta}",
        tol=TOL[precision],
    )
    host = to_host(big).astype(np.float64)
    host[1 : m + 1, ::2] = np.nan
    assert np.isnan(host).all(), "elements outside C were written"


@gpu
@pytest.mark.parametrize("kernel,precision", KERNELS)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("axis", [1, 2])
def test_bias_rows_cols_and_relu(rng, kernel, precision, relu, axis):
    m, n, k = 70, 33, 40
    a, b = rand(rng, (m, k), precision), rand(rng, (k, n), precision)
    bias = rand(rng, (m if axis == 1 else n,), precision)
    c = on_device("cuda", np.full((m, n), np.nan, dtype_of(precision)))
    zero = np.zeros(1, np.int64)
    backend = dk.backends.backend_of(c)
    with running(kernel, precision):
        backend.gemm(*on_device("cuda", a, b), c, zero, zero, zero, k, 1.0, 0.0, on_device("cuda", bias), axis, relu)
    ref = a.astype(np.float64) @ b.astype(np.float64) + (
        bias.astype(np.float64)[:, None] if axis == 1 else bias.astype(np.float64)
    )
    if relu:
        ref = np.where(ref < 0, 0.0, ref)
    check(c, ref, dtype_of(precision), f"bias axis {axis} relu={relu}", tol=TOL[precision])


@gpu
def test_allow_tf32_chooses_the_precision_of_float32(rng):
    m, n, k = 256, 256, 512
    a, b = rand(rng, (m, k), "fp32"), rand(rng, (k, n), "fp32")
    ref = matmul_ref(a, b)
    da, db = on_device("cuda", a, b)
    with forced("automatic", allow_tf32=False):
        full = to_host(ops.matmul(da, db))
        assert _cuda.last_gemm_kernel() == "simt"
    with forced("automatic", allow_tf32=True):
        tf32 = to_host(ops.matmul(da, db))
        assert _cuda.last_gemm_kernel() in ("mma", "sm90")
    check(full, ref, F32, "allow_tf32=False", tol=TOL["fp32"])
    check(tf32, ref, F32, "allow_tf32=True", tol=TOL["tf32"])
    # TF32 keeps 10 mantissa bits of the inputs: over K = 512 its error is far above FP32's.
    assert np.linalg.norm(tf32 - ref) > 10 * np.linalg.norm(full - ref), "allow_tf32=True ran in full FP32"


@gpu
def test_bfloat16_results_no_worse_than_twice_torchs(rng):
    torch = pytest.importorskip("torch")
    m, n, k = 192, 160, 1024
    a, b = rand(rng, (m, k), "bf16"), rand(rng, (k, n), "bf16")
    ref = matmul_ref(a, b)
    got = to_host(ops.matmul(*on_device("cuda", a, b)))
    assert got.dtype == BF16
    ta = torch.from_numpy(a.astype(np.float32)).to("cuda", torch.bfloat16)
    tb = torch.from_numpy(b.astype(np.float32)).to("cuda", torch.bfloat16)
    theirs = (ta @ tb).float().cpu().numpy().astype(np.float64)
    ours_error = np.linalg.norm(got.astype(np.float64) - ref)
    assert ours_error <= 2 * np.linalg.norm(theirs - ref) + 1e-12 * np.linalg.norm(ref)


@gpu
def test_batch_beyond_one_launch(rng):
    # More matrices than one launch's grid holds (65535 along y): the launchers loop.
    batch = 70000
    a, b = rand(rng, (batch, 2, 3), "fp32"), rand(rng, (3, 2), "fp32")
    for kernel, precision in (("simt", "fp32"), ("mma", "tf32")):
        with running(kernel, precision):
            got = ops.matmul(*on_device("cuda", a, b))
        check(got, matmul_ref(a, b), F32, f"{kernel} batch {batch}", tol=TOL[precision])


@gpu
def test_linear_layer_and_tensor_matmul_on_cuda(rng):
    x = rng.standard_normal((5, 3, 40)).astype(np.float32)
    layer = dk.nn.Linear(40, 24)
    expected = layer(dk.tensor(x)).detach().numpy().astype(np.float64)
    layer.to("cuda")
    got = layer(dk.tensor(x).to("cuda"))
    assert got.device.type == "cuda"
    check(got.detach().cpu().numpy(), expected, F32, "nn.Linear on cuda vs the CPU", tol=2 * TOL["fp32"])
    w = rng.standard_normal((40, 7)).astype(np.float32)
    prod = dk.tensor(x).to("cuda") @ dk.tensor(w).to("cuda")
    check(prod.cpu().numpy(), matmul_ref(x, w), F32, "Tensor @ on cuda", tol=TOL["fp32"])


@gpu
def test_forcing_a_kernel_that_cannot_take_the_problem_says_why(rng):
    a32 = on_device("cuda", rand(rng, (8, 8), "fp32"))
    a16 = on_device("cuda", rand(rng, (8, 8), "bf16"))
    with forced("mma", allow_tf32=False), raises_naming(ValueError, "mma kernel", "tf32 or bf16"):
        ops.matmul(a32, a32)
    with forced("simt"), raises_naming(ValueError, "simt kernel", "float32"):
        ops.matmul(a16, a16)


@gpu
def test_float64_and_mixed_bfloat16_are_refused(rng):
    a64 = on_device("cuda", rng.standard_normal((4, 4)))
    with raises_naming(NotImplementedError, "float64", "cuda"):
        ops.matmul(a64, a64)
    a16, a32 = on_device("cuda", rand(rng, (4, 4), "bf16"), rand(rng, (4, 4), "fp32"))
    with raises_naming(TypeError, "same dtype", "bfloat16"):
        ops.matmul(a16, a32)


@gpu
def test_binding_refuses_bad_arguments_naming_them(rng):
    a, b = on_device("cuda", rand(rng, (4, 5), "fp32"), rand(rng, (5, 3), "fp32"))
    c = on_device("cuda", np.zeros((4, 3), np.float32))
    one = np.zeros(1, np.int64)

    def call(**changes):
        args = dict(a=a, b=b, c=c, a_offsets=one, b_offsets=one, c_offsets=one, k=5, alpha=1.0, beta=0.0,
                    bias=None, bias_axis=0, relu=False, precision="fp32")  # fmt: skip
        args.update(changes)
        _cuda.gemm(**args)

    with raises_naming(TypeError, "b", "float32", "bfloat16"):
        call(b=on_device("cuda", rand(rng, (5, 3), "bf16")))
    with raises_naming(ValueError, "a", r"\(\.\.\., 4, 6\)"):
        call(k=6)
    with raises_naming(ValueError, r"a_offsets\[0\] = 1", "outside"):
        call(a_offsets=np.ones(1, np.int64))
    with raises_naming(ValueError, "b_offsets", "shape"):
        call(b_offsets=np.zeros(2, np.int64))
    with raises_naming(TypeError, "c_offsets", "int64"):
        call(c_offsets=np.zeros(1, np.int32))
    with raises_naming(ValueError, "c", "overlaps", "a"):
        call(c=a[:, :3])
    with raises_naming(ValueError, "bias", r"\(3,\)"):
        call(bias=on_device("cuda", np.zeros(4, np.float32)), bias_axis=2)
    with raises_naming(ValueError, "bias_axis"):
        call(bias_axis=1)
    with raises_naming(ValueError, "precision", "fp16"):
        call(precision="fp16")


# --- no GPU needed -----------------------------------------------------------------------------


def test_allow_tf32_is_a_bool_defaulting_to_false():
    assert cuda_backend.matmul.allow_tf32 is False
    for bad in (1, "yes", None, np.bool_(True)):
        with raises_naming(TypeError, "allow_tf32", "bool"):
            cuda_backend.matmul.allow_tf32 = bad
    assert cuda_backend.matmul.allow_tf32 is False
    cuda_backend.matmul.allow_tf32 = True
    try:
        assert cuda_backend.matmul.allow_tf32 is True
    finally:
        cuda_backend.matmul.allow_tf32 = False


@pytest.mark.parametrize("op", ["matmul", "gemm", "linear"])
def test_bfloat16_on_the_cpu_runs_the_cpu_kernel(rng, op):
    """Host bfloat16 arrays take the CPU's bfloat16 GEMM (tests/test_gemm_bf16.py), giving bfloat16."""
    a = rng.standard_normal((3, 3)).astype(BF16)
    got = getattr(ops, op)(a, a)
    assert isinstance(got, np.ndarray) and got.dtype == BF16
    a64 = a.astype(np.float64)
    ref = a64 @ (a64.T if op == "linear" else a64)
    assert np.all(np.abs(got.astype(np.float64) - ref) <= 2.0**-8 * np.abs(ref) + 1e-5 * (np.abs(a64) ** 2).sum())


@pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")
def test_kernel_choice_names_and_refusals():
    assert _cuda.gemm_kernel() == "automatic"
    with raises_naming(ValueError, "set_gemm_kernel", "'simt'", "'tensor'"):
        _cuda.set_gemm_kernel("tensor")
    try:
        for name in ("simt", "mma", "sm90", "automatic"):
            _cuda.set_gemm_kernel(name)
            assert _cuda.gemm_kernel() == name
    finally:
        _cuda.set_gemm_kernel("automatic")
    assert _cuda.last_gemm_kernel() in ("automatic", "simt", "mma", "sm90")


@pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")
def test_binding_refuses_host_arrays_naming_the_argument():
    host = np.zeros((2, 2), np.float32)
    one = np.zeros(1, np.int64)
    with raises_naming(TypeError, "gemm: a", "DeviceArray", "ndarray"):
        _cuda.gemm(host, host, host, one, one, one, 2, 1.0, 0.0, None, 0, False, "fp32")


def test_the_gpu_benchmark_suite_says_why_it_cannot_run_and_lists_every_precision():
    from deepkern.bench import registry

    suite = registry.get_suite("gemm-cuda")
    reason = suite.unavailable()
    assert (reason is None) == AVAILABLE
    if reason is not None:
        assert "GPU" in reason and dk.cuda.unavailable_reason() in reason
    cases = suite.cases(False)
    assert all(case.device == "cuda" and {"deepkern"} <= set(case.impls) for case in cases)
    squares = {(case.layout.split()[-1], case.shape[0]) for case in cases if case.label == "square"}
    assert squares == {
        ("fp32", 2048),
        ("fp32", 4096),
        ("fp32", 8192),
        ("tf32", 4096),
        ("tf32", 8192),
        ("bf16", 4096),
        ("bf16", 8192),
    }
    quick = suite.cases(True)
    bf16 = next(case for case in quick if case.layout.endswith("bf16"))
    a, b = bf16.make_inputs()[0]
    assert a.dtype == np.uint16 and a.shape == (bf16.shape[0], bf16.shape[2]) and b.shape == bf16.shape[2:0:-1]
