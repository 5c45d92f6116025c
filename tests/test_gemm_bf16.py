"""bfloat16 matrix multiplies on the CPU: ops.matmul/gemm/linear, Tensor ``@`` and nn.Linear.

The reference is the float64 product of the bfloat16 inputs (exact values), and the bound is the
float32 accumulation's: |err| <= K * 2^-22 * sum_p |a_ip| |b_pj| (four times the unit roundoff per
term), plus half a bfloat16 unit (2^-8 relative) for a bfloat16 result. Every case runs on every
tier the CPU has (the ``isa`` fixture: emulated on generic/avx2, AVX512-BF16 under avx512 where the
CPU has it, AMX tiles under amx), with odd sizes that leave tails in every tile dimension, K = 0,
strided and transposed operands and NaN-filled outputs; PyTorch's bfloat16 matmul, where installed,
is a second yardstick: deepkern's error is at most twice its error on the same inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import deepkern
import numpy as np
import pytest
from deepkern import _C, nn, ops
from test_gemm import LAYOUTS, OUT_LAYOUTS, make_operand

from checks import raises_naming, runs_transposed
from conftest import SUPPORTED_ISAS

BF16 = deepkern.bfloat16
TAILS = (1, 15, 17, 31, 33, 65, 257)
# (M, N, K): every size of TAILS in every position, at most 257 x 257 x 65 work.
SHAPES = [
    (1, 1, 1),
    (15, 17, 31),
    (17, 31, 33),
    (31, 33, 65),
    (33, 65, 257),
    (65, 257, 15),
    (257, 15, 17),
    (1, 257, 33),
    (257, 1, 65),
    (33, 33, 1),
    (257, 257, 65),
]


def bf16_rand(rng, shape):
    return rng.standard_normal(shape).astype(BF16)


def cpu_flags() -> set:
    """The CPU's feature flags as Linux lists them (an oracle independent of deepkern's CPUID code)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    raise AssertionError("/proc/cpuinfo has no flags line")


def expected_tier(isa: str) -> str:
    if isa == "amx":
        return "amx"
    if isa == "avx512" and "avx512_bf16" in cpu_flags():
        return "avx512_bf16"
    return f"emulated {isa}"


def error_bound(a, b, bf16_out: bool):
    """The bound of the module docstring for op(a) @ op(b) given as 2-D float64 arrays."""
    k = a.shape[1]
    magnitude = np.abs(a) @ np.abs(b)
    bound = k * 2.0**-22 * magnitude
    if bf16_out:
        bound = bound + 2.0**-8 * np.abs(a @ b)
    return bound + 1e-30


def assert_within_bound(got, a, b, what, bf16_out=True, alpha=1.0, extra=None):
    """``got`` (any float dtype) against alpha * a @ b (+ ``extra``), a and b exact bfloat16 values."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ref = alpha * (a64 @ b64) + (0.0 if extra is None else extra)
    got64 = np.asarray(got, np.float64)
    assert got64.shape == ref.shape, f"{what}: shape {got64.shape}, expected {ref.shape}"
    assert not np.isnan(got64).any(), f"{what}: NaN in the result (an element not written?)"
    bound = abs(alpha) * error_bound(a64, b64, False)
    if bf16_out:
        bound = bound + 2.0**-8 * np.abs(ref)
    excess = np.abs(got64 - ref) - bound
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.size else None
    assert excess.size == 0 or excess[worst] <= 0, (
        f"{what}: error {abs(got64 - ref)[worst]:.3g} above the bound {bound[worst]:.3g} at {worst}"
    )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul_on_every_tier(isa, threads, shape, rng):
    m, n, k = shape
    a, b = bf16_rand(rng, (m, k)), bf16_rand(rng, (k, n))
    _C.reset_isa_records()
    out = np.full((m, n), np.nan, BF16)
    got = ops.matmul(a, b, out=out)
    assert got is out and got.dtype == BF16
    assert _C.last_isa("gemm_bf16") == isa
    assert _C.gemm_bf16_kernel_name().startswith(expected_tier(isa))
    assert_within_bound(got, a, b, f"matmul {shape} on {isa}")


def test_every_tier_the_cpu_has_is_reachable():
    """amx is among the ISAs exactly when the CPU lists AMX (Linux lists it only where the tiles can be
    enabled), or on any AVX-512 CPU where the build emulates the tiles (tools/amx-emulation-check);
    avx512 reaches VDPBF16PS where the CPU lists AVX512-BF16."""
    flags = cpu_flags()
    has_avx512 = {"avx512f", "avx512vl", "avx512dq", "avx512bw", "fma"} <= flags
    has_amx = {"amx_tile", "amx_bf16"} <= flags or _C.build_options["amx_emulation"]
    assert ("amx" in SUPPORTED_ISAS) == (has_avx512 and has_amx)
    names = set()
    for isa in SUPPORTED_ISAS:
        with_isa = _C.active_isa()
        _C.set_active_isa(isa)
        try:
            names.add(_C.gemm_bf16_kernel_name().split(" ")[0])
        finally:
            _C.set_active_isa(with_isa)
    expected = {expected_tier(isa).split(" ")[0] for isa in SUPPORTED_ISAS}
    assert names == expected


@pytest.mark.parametrize("isa_name", SUPPORTED_ISAS)
def test_deepkern_isa_forces_each_tier(isa_name):
    """DEEPKERN_ISA at start-up picks the tier, as set_active_isa does."""
    code = "import deepkern; print(deepkern._C.gemm_bf16_kernel_name())"
    env = dict(os.environ, DEEPKERN_ISA=isa_name)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().startswith(expected_tier(isa_name)), run.stdout


# (M, N, K) around the blocked driver's edges: M at every remainder of the 12-row tile and around
# its 192-row block, N around the 32-column panel and the 256-column block, K odd and even, below
# and above the 512-deep K block (split into equal blocks, the last one odd); a packed (transposed) A
# is packed once for all blocks of columns up to 2^20 values.
BLOCK_EDGE_SHAPES = [(m, 33, 21) for m in range(12, 25)] + [
    (191, 255, 64),
    (192, 256, 513),
    (193, 257, 1025),
    (205, 288, 147),
    (64, 300, 576),
    (1040, 260, 1009),  # a packed A over 2^20 values: packed again for each block of columns
]


@pytest.mark.parametrize("shape", BLOCK_EDGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("layout_a", ["C", "slice", "neg_rows", "T"])
def test_block_edges_with_a_in_place_or_packed(isa, shape, layout_a, rng):
    """Contiguous rows of A (at any row stride) are read in place (any K, the rows past the last
    whole tile through the strip kernel), a transposed A is packed: both against the float64
    reference, into a NaN-filled float32 result that every element must overwrite."""
    m, n, k = shape
    a = make_operand(rng, (m, k), layout_a, BF16)
    b = bf16_rand(rng, (k, n))
    c = np.full((m, n), np.nan, np.float32)
    zero = np.zeros(1, np.int64)
    _C.gemm(a, b, c, zero, zero, zero, k, 1.0, 0.0, None, 0, False)
    assert_within_bound(c, a, b, f"{shape} A {layout_a} on {isa}", bf16_out=False)


# (M, N, K) with a transposed A: narrow C (the swap on tiers with mr < nr; N = 1 then takes the
# GEMV of C^T), a wide one that stays, odd K and a K over the 512-deep block.
TRANSPOSED_A_SHAPES = [(200, 10, 37), (97, 1, 64), (1040, 48, 33), (64, 17, 515), (40, 40, 9), (13, 70, 21)]


@pytest.mark.parametrize("shape", TRANSPOSED_A_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("layout_b", ["C", "T", "slice"])
@pytest.mark.parametrize("epilogue", ["plain", "row_bias_relu", "col_bias_beta"])
@pytest.mark.parametrize("out_dtype", ["float32", "bfloat16"])
def test_transposed_a_narrow_c_computed_as_c_transposed(isa, threads, shape, layout_b, epilogue, out_dtype, rng):
    """A transposed A (its columns contiguous: dW = dG^T X) with a narrow C runs as C^T = B^T A^T
    (asserted through last_gemm_bf16_path), B read as A's panels in every layout, C written through
    its transposed strides with the epilogue's bias on the swapped axis: against float64 into a
    NaN-filled result."""
    m, n, k = shape
    dtype = np.float32 if out_dtype == "float32" else BF16
    a = make_operand(rng, (m, k), "T", BF16)
    b = make_operand(rng, (k, n), layout_b, BF16)
    bias_axis = {"plain": 0, "row_bias_relu": 1, "col_bias_beta": 2}[epilogue]
    bias = bf16_rand(rng, m if bias_axis == 1 else n).astype(dtype) if bias_axis else None
    beta = -1.25 if epilogue == "col_bias_beta" else 0.0
    c = rng.standard_normal((m, n)).astype(dtype) if beta else np.full((m, n), np.nan, dtype)
    c0 = c.astype(np.float64)
    zero = np.zeros(1, np.int64)
    _C.gemm(a, b, c, zero, zero, zero, k, 0.75, beta, bias, bias_axis, epilogue == "row_bias_relu")
    swapped = runs_transposed(m, n, _C.gemm_bf16_kernel_name())
    path = _C.last_gemm_bf16_path()
    assert path == ("transposed " if swapped else "") + ("gemv" if swapped and n == 1 else "blocked"), path
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    pre = 0.75 * (a64 @ b64) + (beta * c0 if beta else 0.0)
    if bias_axis:
        pre = pre + (bias.astype(np.float64)[:, None] if bias_axis == 1 else bias.astype(np.float64))
    ref = np.maximum(pre, 0) if epilogue == "row_bias_relu" else pre
    bound = 0.75 * error_bound(a64, b64, False) + 2.0**-20 * np.abs(pre)
    if out_dtype == "bfloat16":
        bound = bound + 2.0**-8 * np.abs(ref)
    err = np.abs(c.astype(np.float64) - ref)
    assert not np.isnan(err).any(), f"{shape} on {isa}: an element not written"
    assert np.all(err <= bound), f"{shape} B {layout_b} {epilogue} on {isa}: worst {err.max():.3g}"


@pytest.mark.parametrize("out_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("bias_axis", [1, 2], ids=["row_bias", "col_bias"])
@pytest.mark.parametrize("relu", [False, True])
def test_merge_with_beta_bias_and_relu(isa, out_dtype, bias_axis, relu, rng):
    """The merge's every term at once through the binding: alpha, beta * c, a bias per row or per
    column and ReLU, for both result dtypes, on a size with tails in every block dimension."""
    m, n, k = 37, 70, 45
    dtype = np.float32 if out_dtype == "float32" else BF16
    a, b = bf16_rand(rng, (m, k)), bf16_rand(rng, (k, n))
    bias = bf16_rand(rng, m if bias_axis == 1 else n).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    c0 = c.astype(np.float64)
    zero = np.zeros(1, np.int64)
    _C.gemm(a, b, c, zero, zero, zero, k, 0.75, -1.25, bias, bias_axis, relu)
    bias2 = bias.astype(np.float64)[:, None] if bias_axis == 1 else bias.astype(np.float64)
    pre = 0.75 * (a.astype(np.float64) @ b.astype(np.float64)) - 1.25 * c0 + bias2
    ref = np.maximum(pre, 0) if relu else pre
    bound = 0.75 * error_bound(a.astype(np.float64), b.astype(np.float64), False) + 2.0**-20 * np.abs(pre)
    if out_dtype == "bfloat16":
        bound = bound + 2.0**-8 * np.abs(ref)
    err = np.abs(c.astype(np.float64) - ref)
    assert np.all(err <= bound), f"merge on {isa} ({out_dtype}, axis {bias_axis}, relu={relu}): worst {err.max():.3g}"


def test_k_zero_gives_zeros_and_beta_c(isa):
    a, b = np.zeros((5, 0), BF16), np.zeros((0, 7), BF16)
    got = ops.matmul(a, b, out=np.full((5, 7), np.nan, BF16))
    assert np.array_equal(got.astype(np.float64), np.zeros((5, 7)))
    c = np.arange(35, dtype=np.float32).reshape(5, 7).astype(BF16)
    expected = (c.astype(np.float32) * np.float32(-2)).astype(BF16)
    got = ops.gemm(a, b, alpha=3.0, beta=-2.0, c=c.copy())
    assert np.array_equal(got.astype(np.float32), expected.astype(np.float32))


@pytest.mark.parametrize("layout_a", LAYOUTS[:-1])  # "swapped" byte order: not a bfloat16 layout
@pytest.mark.parametrize("layout_b", ["C", "T", "neg_both", "bcast"])
def test_strided_and_transposed_operands(isa, layout_a, layout_b, rng):
    a = make_operand(rng, (33, 65), layout_a, BF16)
    b = make_operand(rng, (65, 31), layout_b, BF16)
    assert_within_bound(ops.matmul(a, b), a, b, f"matmul {layout_a} @ {layout_b} on {isa}")


@pytest.mark.parametrize("layout_b", ["C", "neg_rows", "slice", "T"])
def test_single_row_with_alpha_beta(isa, layout_b, rng):
    """m == 1 (the GEMV path where B's rows are contiguous), A strided, into a bfloat16 c with beta."""
    a = make_operand(rng, (1, 257), "slice", BF16)
    b = make_operand(rng, (257, 65), layout_b, BF16)
    c = bf16_rand(rng, (1, 65))
    c0 = c.astype(np.float64)
    got = ops.gemm(a, b, alpha=-0.5, beta=2.0, c=c)
    assert_within_bound(got, a, b, f"single row @ {layout_b}", alpha=-0.5, extra=2.0 * c0)


@pytest.mark.parametrize("out_layout", sorted(OUT_LAYOUTS))
def test_gemm_alpha_beta_into_strided_c(isa, out_layout, rng):
    m, n, k = 17, 33, 31
    view, big_shape = OUT_LAYOUTS[out_layout]
    big = bf16_rand(rng, big_shape(m, n))
    c = view(big)
    c0, outside = c.copy(), big.copy()
    mask = np.ones(big.shape, bool)
    view(mask)[...] = False
    a, b = bf16_rand(rng, (k, m)), bf16_rand(rng, (n, k))  # used transposed
    got = ops.gemm(a, b, trans_a=True, trans_b=True, alpha=0.5, beta=-1.5, c=c)
    assert got is c
    assert np.array_equal(big[mask].view(np.uint16), outside[mask].view(np.uint16)), "wrote outside c"
    assert_within_bound(got, a.T, b.T, f"gemm into {out_layout} c", alpha=0.5, extra=-1.5 * c0.astype(np.float64))


def test_gemm_never_reads_c_with_beta_zero(isa, rng):
    a, b = bf16_rand(rng, (31, 17)), bf16_rand(rng, (17, 65))
    got = ops.gemm(a, b, c=np.full((31, 65), np.nan, BF16))
    assert_within_bound(got, a, b, "gemm over NaN c")


@pytest.mark.parametrize("relu", [False, True])
def test_linear_with_bias_and_relu(isa, relu, rng):
    x, w, bias = bf16_rand(rng, (3, 5, 33)), bf16_rand(rng, (17, 33)), bf16_rand(rng, 17)
    got = ops.linear(x, w, bias, relu=relu)
    assert got.dtype == BF16 and got.shape == (3, 5, 17)
    x2 = x.reshape(-1, 33).astype(np.float64)
    ref = x2 @ w.astype(np.float64).T + bias.astype(np.float64)
    if relu:
        ref = np.maximum(ref, 0)
    bound = error_bound(x2, w.astype(np.float64).T, False) + 2.0**-8 * np.abs(ref)
    assert np.all(np.abs(got.reshape(-1, 17).astype(np.float64) - ref) <= bound)


def test_float32_result_through_the_binding(isa, rng):
    """_C.gemm takes bfloat16 a and b with a float32 c: the float32 accumulation, not rounded."""
    a, b = bf16_rand(rng, (65, 257)), bf16_rand(rng, (257, 33))
    c = np.full((65, 33), np.nan, np.float32)
    zero = np.zeros(1, np.int64)
    _C.gemm(a, b, c, zero, zero, zero, 257, 1.0, 0.0, None, 0, False)
    assert_within_bound(c, a, b, "float32 c", bf16_out=False)


def test_rounding_is_to_nearest_even_as_ml_dtypes(isa):
    """1 x 1 products whose exact float32 values sit between bfloat16 numbers round as ml_dtypes does."""
    values = np.array([1.0, 1.0078125, 1.00390625, -3.0, 2.0**-10, 1.5], np.float32).astype(BF16)
    a, b = values[:, None], values[None, :]
    expected = (a.astype(np.float32) * b.astype(np.float32)).astype(BF16)
    got = ops.matmul(a, b)
    assert np.array_equal(got.view(np.uint16), expected.view(np.uint16))


def test_special_values_propagate(isa):
    a = np.array([[np.inf, 1.0], [np.nan, 1.0], [1.0, 1.0]], np.float32).astype(BF16)
    b = np.array([[2.0], [3.0]], np.float32).astype(BF16)
    got = ops.matmul(a, b).astype(np.float64)[:, 0]
    assert got[0] == np.inf and np.isnan(got[1]) and got[2] == 5.0


def test_bad_dtypes_are_named(rng):
    a, f = bf16_rand(rng, (3, 4)), rng.standard_normal((4, 2)).astype(np.float32)
    with raises_naming(TypeError, "matmul", "bfloat16", "float32"):
        ops.matmul(a, f)
    with raises_naming(TypeError, "gemm", "bfloat16", "float32"):
        ops.gemm(a, f)
    with raises_naming(TypeError, "linear", "bias", "bfloat16", "float32"):
        ops.linear(a, bf16_rand(rng, (2, 4)), np.zeros(2, np.float32))
    with raises_naming(TypeError, "matmul", "b", "float16"):
        ops.matmul(a, f.astype(np.float16))
    zero = np.zeros(1, np.int64)
    with raises_naming(TypeError, "gemm", "b", "bfloat16", "float32"):
        _C.gemm(a, f, np.zeros((3, 2), BF16), zero, zero, zero, 4, 1.0, 0.0, None, 0, False)
    with raises_naming(TypeError, "gemm", "c", "bfloat16", "float64"):
        _C.gemm(a, a.T.copy(), np.zeros((3, 3)), zero, zero, zero, 4, 1.0, 0.0, None, 0, False)
    with raises_naming(ValueError, "gemm", "b", r"\(\.\.\., 4, 3\)", r"\(3, 4\)"):
        _C.gemm(a, a, np.zeros((3, 3), BF16), zero, zero, zero, 4, 1.0, 0.0, None, 0, False)


def test_tensor_casts_and_matmul_backward(isa, rng):
    x32, w32 = rng.standard_normal((7, 33)).astype(np.float32), rng.standard_normal((33, 5)).astype(np.float32)
    x = deepkern.tensor(x32).to(deepkern.bfloat16).requires_grad_()
    w = deepkern.tensor(w32).bfloat16().requires_grad_()
    assert x.dtype == BF16 and w.dtype == BF16 and x.type() == "deepkern.BFloat16Tensor"
    assert np.array_equal(x.detach().numpy().view(np.uint16), x32.astype(BF16).view(np.uint16))  # nearest even
    y = x @ w
    assert y.dtype == BF16
    g = bf16_rand(rng, (7, 5))
    y.backward(deepkern.tensor(g))
    assert x.grad.dtype == BF16 and w.grad.dtype == BF16
    xb, wb = x.detach().numpy(), w.detach().numpy()
    assert_within_bound(y.detach().numpy(), xb, wb, "x @ w")
    assert_within_bound(x.grad.numpy(), g, wb.T, "grad x = g w^T")
    assert_within_bound(w.grad.numpy(), xb.T, g, "grad w = x^T g")


def test_linear_layer_forward_and_backward(isa, rng):
    layer = nn.Linear(65, 17).bfloat16()
    assert layer.weight.dtype == BF16 and layer.bias.dtype == BF16
    x = deepkern.tensor(bf16_rand(rng, (9, 65))).requires_grad_()
    y = layer(x)
    assert y.dtype == BF16
    g = bf16_rand(rng, (9, 17))
    y.backward(deepkern.tensor(g))
    xb, wb = x.detach().numpy(), layer.weight.detach().numpy()
    assert_within_bound(x.grad.numpy(), g, wb, "grad_x = g W")
    assert_within_bound(layer.weight.grad.numpy(), g.T, xb, "grad_W = g^T x")
    ref_gb = g.astype(np.float64).sum(axis=0)
    bound = error_bound(np.ones((1, 9)), np.abs(g.astype(np.float64)), False)[0] + 2.0**-8 * np.abs(ref_gb)
    assert np.all(np.abs(layer.bias.grad.numpy().astype(np.float64) - ref_gb) <= bound)


@pytest.mark.parametrize("shape", [(33, 65, 257), (257, 31, 1024), (1, 257, 65)], ids=str)
def test_no_worse_than_twice_pytorch(isa, shape, rng):
    torch = pytest.importorskip("torch")
    m, n, k = shape
    a, b = bf16_rand(rng, (m, k)), bf16_rand(rng, (k, n))
    ref = a.astype(np.float64) @ b.astype(np.float64)
    ours = ops.matmul(a, b).astype(np.float64)
    theirs = (
        (torch.from_numpy(a.astype(np.float32)).bfloat16() @ torch.from_numpy(b.astype(np.float32)).bfloat16())
        .float()
        .numpy()
        .astype(np.float64)
    )
    err_ours, err_theirs = np.linalg.norm(ours - ref), np.linalg.norm(theirs - ref)
    assert err_ours <= 2 * err_theirs, f"{shape} on {isa}: error {err_ours:.3g}, PyTorch's {err_theirs:.3g}"
