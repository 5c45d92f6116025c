"""The contract of deepkern.ops' activations: relu, gelu (exact and tanh) and their backward passes.

Every result is compared with the float64 references in tests/reference.py: relu exactly (sign of
zero and NaN included); float32 GELUs within ULP_BOUND ulp of the reference element by element
(also where the result is tiny or subnormal), float64 within ~1e-15 relative (scaled by how
precisely the reference itself is known, see _f64_tolerance). Inputs mix normal activations, the
negative tails, every magnitude from subnormal to huge, the zeros of gelu', ±0, ±inf and NaN; sizes
leave vector tails on every ISA and split over 2 threads unevenly; outputs are pre-filled with
NaN. Each test runs on every ISA the CPU supports (deepkern._C.last_isa confirms which ran) and
with 1 and 2 threads. Backward passes are also checked against finite differences in float64,
and everything against PyTorch where it is installed.
"""

from __future__ import annotations

import math

import deepkern
import numpy as np
import pytest
from deepkern.ops import gelu, gelu_backward, relu, relu_backward

from checks import raises_naming
from conftest import on_device, to_host
from reference import gelu_backward_ref, gelu_ref, relu_backward_ref, relu_ref

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]
#: Largest error allowed of the float32 GELUs, in ulp of the result: kernels.cpp measured at most
#: 7.8 (every 7th float in [-16, 16]); the margin covers the floats not measured.
ULP_BOUND = 9.0
#: The zeros of gelu' (exact, tanh form): the derivatives cancel there.
GELU_GRAD_ZEROS = (-0.75179152469356446, -0.75246142207101626)
SIZES = [0, 1, 7, 33, 257, 8191, 8209, 65537, 100003]

OPS = ["relu", "relu_backward", "gelu", "gelu_tanh", "gelu_backward", "gelu_tanh_backward"]
BACKWARD = {"relu_backward", "gelu_backward", "gelu_tanh_backward"}


def _approximate(op: str) -> str:
    return "tanh" if "tanh" in op else "none"


def _run(op: str, grad, x, out=None):
    if op == "relu":
        return relu(x, out=out)
    if op == "relu_backward":
        return relu_backward(grad, x, out=out)
    if op in ("gelu", "gelu_tanh"):
        return gelu(x, approximate=_approximate(op), out=out)
    return gelu_backward(grad, x, approximate=_approximate(op), out=out)


def _reference(op: str, grad, x) -> np.ndarray:
    if op == "relu":
        return relu_ref(x)
    if op == "relu_backward":
        return relu_backward_ref(grad, x)
    if op in ("gelu", "gelu_tanh"):
        return gelu_ref(x, _approximate(op))
    return gelu_backward_ref(grad, x, _approximate(op))


def _values(rng, n: int, dtype) -> np.ndarray:
    """n inputs: normal activations, the negative tails (tiny results), all magnitudes, the
    neighbourhoods of gelu's zeros, and about 1 in 30 special values (±0, ±inf, NaN, subnormals,
    huge), in random order."""
    dtype = np.dtype(dtype)
    top = 38 if dtype == F32 else 100  # float64: |x|^3 stays finite in the reference
    parts = [
        3.0 * rng.standard_normal(n),
        rng.uniform(-16.0, 6.0, n),
        np.where(rng.random(n) < 0.5, -1.0, 1.0) * 10.0 ** rng.uniform(-44 if dtype == F32 else -300, top, n),
        rng.choice(GELU_GRAD_ZEROS, n) + rng.uniform(-0.3, 0.3, n) * 10.0 ** rng.uniform(-7, 0, n),
    ]
    x = np.stack(parts, axis=1)[np.arange(n), rng.integers(0, 4, n)]
    specials = np.array(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
            1e-45,
            -1e-45,
            1e-39,
            -3e-39,
            3e38,
            -3e38,
            -14.3,
            -13.5,
            -10.7,
            -15.0,
            15.0,
            -16.0,
            16.0,
            1e19,
            -1e19,
        ]
    )
    pick = rng.random(n) < 1 / 30
    x[pick] = rng.choice(specials, int(pick.sum()))
    return x.astype(dtype)


def _grads(rng, n: int, dtype) -> np.ndarray:
    g = rng.standard_normal(n)
    g[rng.random(n) < 0.02] = 0.0
    return g.astype(dtype)


def _ulp_errors(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in ulp of ref rounded to float32 (subnormal: 2^-149); 0 where both are the same
    infinity."""
    with np.errstate(invalid="ignore", over="ignore"):
        spacing = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
        err = np.abs(got.astype(np.float64) - ref) / spacing
    return np.where(got.astype(np.float64) == ref, 0.0, err)


def _f64_tolerance(op: str, grad, x, ref) -> np.ndarray:
    """Allowed |got - ref| for float64: 2e-15 of the size of the terms (for gelu' near its zero,
    of the terms that cancel there), widened by the reference's own error, which grows with the
    argument of erfc and exp (x / sqrt 2 and w are rounded there); plus 1e-300 for results that
    underflow (x < -37, where scipy's ndtr gives 0 early; test_float64_matches_mpmath checks
    gelu(-30) = -1.5e-196)."""
    v = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scale = np.abs(ref)
        w = 2.0 * math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)
        if op == "gelu_backward":
            scale = np.maximum(scale, np.abs(grad * v * np.exp(-0.5 * v * v)) / math.sqrt(2 * math.pi))
        if op == "gelu_tanh_backward":
            s = np.exp(-np.abs(w))
            m = 2.0 * math.sqrt(2.0 / math.pi) * v * (1 + 3 * 0.044715 * v * v)
            scale = np.maximum(scale, np.abs(grad * s * m) / (1 + s) ** 2)
        argument = np.abs(w) if "tanh" in op else v * v
        return 2e-15 * scale * (2.0 + np.nan_to_num(argument, posinf=1e300)) + 1e-300


def _check(op: str, got: np.ndarray, grad, x, what: str = ""):
    ref = _reference(op, grad, x)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    assert got.dtype == x.dtype, f"{what}: dtype {got.dtype}, expected {x.dtype}"
    nan_got, nan_ref = np.isnan(got), np.isnan(ref)
    if np.any(nan_got != nan_ref):
        i = np.flatnonzero((nan_got != nan_ref).ravel())[0]
        raise AssertionError(
            f"{what}: NaN mismatch at flat index {i}: x={x.ravel()[i]!r} got "
            f"{got.ravel()[i]!r}, expected {ref.ravel()[i]!r}"
        )
    if op.startswith("relu"):
        expected = ref.astype(x.dtype)
        same = (got == expected) | nan_got
        same &= np.signbit(got) == np.signbit(expected)
        assert same.all(), f"{what}: {int((~same).sum())} elements differ from relu's exact results"
        return
    ok = nan_ref
    if x.dtype == F32:
        err = np.where(nan_ref, 0.0, _ulp_errors(got, np.where(nan_ref, 0.0, ref)))
        bad = err > ULP_BOUND
    else:
        with np.errstate(invalid="ignore"):
            err = np.abs(got - ref)
            bad = ~ok & ~(err <= _f64_tolerance(op, grad, x, ref)) & ~(got == ref)
    if bad.any():
        i = int(np.argmax(np.where(bad, err, -1)))
        raise AssertionError(
            f"{what}: {int(bad.sum())} elements off, worst x={x.ravel()[i]!r} "
            f"(grad {None if grad is None else grad.ravel()[i]!r}): got {got.ravel()[i]!r}, "
            f"expected {ref.ravel()[i]!r} (error {err.ravel()[i]:.3g}"
            f"{' ulp' if x.dtype == F32 else ''})"
        )


# ---- results against the references ---------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS)
def test_matches_reference(op, dtype, size, isa, threads, device, rng):
    x = _values(rng, size, dtype)
    grad = _grads(rng, size, dtype) if op in BACKWARD else None
    out = on_device(device, np.full(size, np.nan, dtype))
    deepkern._C.reset_isa_records()
    got = _run(op, on_device(device, grad), on_device(device, x), out=out)
    assert got is out
    if size and device != "cuda":
        assert deepkern._C.last_isa("activation") == isa
    _check(op, to_host(got), grad, x, f"{op} {dtype} n={size} {isa} {threads} threads on {device}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS)
def test_every_float_near_the_hard_places(op, dtype, isa):
    """Dense runs of consecutive floats where the float32 GELUs are hardest: results turning
    subnormal, the zeros of gelu', the tanh form's tail, and small |x|."""
    starts = [-14.4, -13.3, -10.8, -10.3, *GELU_GRAD_ZEROS, -1e-3, 0.0]
    x = np.concatenate(
        [np.float32(s) + np.arange(-3000, 3000, dtype=np.float32) * np.spacing(np.float32(s)) for s in starts]
    ).astype(dtype)
    grad = np.ones_like(x) if op in BACKWARD else None
    _check(op, _run(op, grad, x), grad, x, f"{op} {dtype} {isa}")


def test_tails_are_accurate_in_float32():
    """Where 0.5 x (1 + erf(x / sqrt 2)) has no correct digit, gelu is still within a few ulp
    (float64: correctly rounded to float32): values from mpmath."""
    x = np.array([-5.0, -8.0, -10.0, -12.0, -13.5], np.float32)
    exact = np.array(
        [
            -1.4332578593959695e-06,
            -4.976768459417427e-15,
            -7.619853024160526e-23,
            -2.1317785344932147e-32,
            -1.0555389862638154e-40,
        ]
    )
    assert np.all(_ulp_errors(gelu(x), exact) <= ULP_BOUND)
    assert np.all(_ulp_errors(gelu(x.astype(np.float64)).astype(np.float32), exact) <= 0.5)


def test_float64_matches_mpmath():
    """float64 results against mpmath (40 digits), deep tails included: within 1e-15 relative."""
    x = np.array([-30.0, -12.0, -5.0, -0.5, 0.0, 0.3, 2.0, 9.0])
    exact = {
        "gelu": [
            -1.472014178144456e-196,
            -2.1317785344932147e-32,
            -1.4332578593959695e-06,
            -0.15426876936299344,
            0.0,
            0.1853734266566858,
            1.9544997361036416,
            9.0,
        ],
        "gelu_tanh": [
            -0.0,
            -1.635985449353481e-61,
            -2.291796196629506e-07,
            -0.15428599017485609,
            0.0,
            0.18537092354275925,
            1.954597694087775,
            9.0,
        ],
        "gelu_backward": [
            -4.416031690708495e-195,
            -2.5578956616748956e-31,
            -7.146946001792295e-06,
            0.13250487534383715,
            0.5,
            0.7323277668271099,
            1.085231801078197,
            1.0,
        ],
        "gelu_tanh_backward": [
            -0.0,
            -5.290403352522559e-60,
            -1.5463619875325946e-06,
            0.1326300964653577,
            0.5,
            0.7322954516388018,
            1.0860992566236183,
            1.0,
        ],
    }
    for op, values in exact.items():
        got = _run(op, np.ones_like(x), x)
        ok = np.abs(got - np.array(values)) <= 1e-15 * np.abs(values)
        assert ok.all(), f"{op}: got {got[~ok]}, expected {np.array(values)[~ok]}"
    # at the zeros of gelu' the terms (~0.17) cancel: what is left is their rounding
    for op, zero in zip(("gelu_backward", "gelu_tanh_backward"), GELU_GRAD_ZEROS):
        assert abs(_run(op, np.ones(1), np.array([zero]))[0]) < 1e-16


# ---- layouts, shapes, outputs ---------------------------------------------------------------------


#: Views of a (6, 35, 2) array, taken the same way of its copy on any device.
STRIDED_VIEWS = {
    "transposed": lambda base: base[:, :, 0].T,
    "step": lambda base: base.reshape(-1)[::3],
    "reversed": lambda base: base[::-1, ::-2, 1],
    "3-D": lambda base: base.transpose(2, 0, 1),
    "contiguous": lambda base: base,
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS)
def test_strided_inputs_and_outputs(op, dtype, device, rng):
    base = _values(rng, 6 * 35 * 2, dtype).reshape(6, 35, 2)
    for name, view in STRIDED_VIEWS.items():
        x, x_on = view(base), view(on_device(device, base))
        grad = grad_on = None
        if op in BACKWARD:  # strided too
            grad_base = _grads(rng, x.size, dtype).reshape(x.shape[::-1])
            grad, grad_on = grad_base.T, on_device(device, grad_base).T
        got = _run(op, grad_on, x_on)
        assert got.shape == x.shape and got.flags.c_contiguous
        _check(op, to_host(got), grad, x, f"{op} {name} on {device}")
        # out as a strided view of a NaN buffer: written exactly there, the rest untouched
        buffer = on_device(device, np.full((2,) + x.shape[::-1], np.nan, dtype))
        out = buffer[1].T
        assert _run(op, grad_on, x_on, out=out) is out
        _check(op, to_host(out), grad, x, f"{op} {name} out= on {device}")
        assert np.isnan(to_host(buffer[0])).all(), f"{op} {name}: wrote outside out"
        if grad is not None:
            again = _run(op, on_device(device, np.ascontiguousarray(grad)), on_device(device, np.ascontiguousarray(x)))
            assert np.array_equal(to_host(got), to_host(again), equal_nan=True)


@pytest.mark.parametrize("op", ["relu", "gelu", "gelu_tanh_backward"])
def test_outputs_at_any_offset_split_over_threads(op, threads, rng):
    """Contiguous outputs starting anywhere in a cache line (the threads' ranges are cut on `out`'s
    64-byte boundaries): every element written once, nothing around it."""
    n = 70001
    x = _values(rng, n, F32)
    grad = _grads(rng, n, F32) if op in BACKWARD else None
    for offset in (1, 5, 15):
        buffer = np.full(n + 32, np.nan, np.float32)
        out = buffer[offset : offset + n]
        _check(op, _run(op, grad, x, out=out), grad, x, f"{op} offset {offset}")
        assert np.isnan(buffer[:offset]).all() and np.isnan(buffer[offset + n :]).all()


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (2, 1, 3)])
@pytest.mark.parametrize("op", OPS)
def test_shapes_including_empty_and_0d(op, shape, device, rng):
    x = np.asarray(rng.standard_normal(shape))
    grad = np.asarray(rng.standard_normal(shape)) if op in BACKWARD else None
    got = _run(op, on_device(device, grad), on_device(device, x))
    assert got.shape == shape and got.dtype == F64
    _check(op, to_host(got), grad, x, f"{op} {shape} on {device}")
    out = on_device(device, np.full(shape, np.nan))
    assert _run(op, on_device(device, grad), on_device(device, x), out=out) is out
    _check(op, to_host(out), grad, x, f"{op} {shape} out= on {device}")


def test_non_native_byte_order_and_lists_convert_once(rng):
    x = rng.standard_normal(33)
    swapped = x.astype(">f8")
    assert np.array_equal(gelu(swapped), gelu(x))
    assert np.array_equal(relu(list(x)), relu(x))


# ---- argument errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
def test_bad_dtypes_name_the_argument(op):
    x = np.zeros(4, np.float32)
    grad = np.zeros(4, np.float32) if op in BACKWARD else None
    with raises_naming(TypeError, "x", "int64"):
        _run(op, grad, np.zeros(4, np.int64))
    with raises_naming(TypeError, "x", "float16"):
        _run(op, grad, np.zeros(4, np.float16))
    with raises_naming(TypeError, "out", "float64"):
        _run(op, grad, x, out=np.zeros(4))
    if grad is not None:
        with raises_naming(TypeError, "grad", "float64"):
            _run(op, np.zeros(4), x)
        with raises_naming(TypeError, "grad", "int"):
            _run(op, np.zeros(4, np.int32), x)


@pytest.mark.parametrize("op", OPS)
def test_bad_shapes_and_outputs_name_the_argument(op):
    x = np.zeros((3, 4))
    grad = np.zeros((3, 4)) if op in BACKWARD else None
    if grad is not None:
        with raises_naming(ValueError, "grad", r"\(3, 4\)", r"\(4, 3\)"):
            _run(op, np.zeros((4, 3)), x)
        with raises_naming(ValueError, "grad", r"\(12,\)"):
            _run(op, np.zeros(12), x)
    with raises_naming(ValueError, "out", r"\(3, 4\)"):
        _run(op, grad, x, out=np.zeros((4, 3)))
    read_only = np.zeros((3, 4))
    read_only.flags.writeable = False
    with raises_naming(ValueError, "out", "read-only"):
        _run(op, grad, x, out=read_only)
    with raises_naming(ValueError, "out", "overlaps", "x"):
        _run(op, grad, x, out=x)
    if grad is not None:
        with raises_naming(ValueError, "out", "overlaps", "grad"):
            _run(op, grad, x, out=grad)
    with raises_naming(TypeError, "out", "ndarray"):
        _run(op, grad, x, out=[0.0] * 12)


@pytest.mark.parametrize("fn", [gelu, gelu_backward])
@pytest.mark.parametrize("approximate", ["erf", "Tanh", "", None, 1])
def test_bad_approximate(fn, approximate):
    x = np.zeros(3)
    args = (x, x) if fn is gelu_backward else (x,)
    with raises_naming(ValueError, "approximate", "'none'", "'tanh'"):
        fn(*args, approximate=approximate)


# ---- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["relu", "gelu", "gelu_tanh"])
def test_backward_matches_finite_differences(op, rng):
    x = np.concatenate([rng.uniform(-6, 6, 4000), rng.uniform(-12, -6, 200), list(GELU_GRAD_ZEROS)])
    if op == "relu":
        x = x[np.abs(x) > 1e-3]
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    forward = (lambda v: relu(v)) if op == "relu" else (lambda v: gelu(v, approximate=_approximate(op)))
    numeric = (forward(x + h) - forward(x - h)) / ((x + h) - (x - h))
    grad = rng.standard_normal(x.size)
    backward = relu_backward if op == "relu" else (lambda g, v: gelu_backward(g, v, approximate=_approximate(op)))
    analytic = backward(grad, x)
    err = np.abs(analytic - grad * numeric)
    assert np.all(err <= 1e-8 * np.abs(grad) * np.maximum(1.0, np.abs(numeric))), (
        f"{op}: worst at x={x[np.argmax(err)]!r}: {analytic[np.argmax(err)]!r} "
        f"vs {grad[np.argmax(err)] * numeric[np.argmax(err)]!r}"
    )


# ---- PyTorch ----------------------------------------------------------------------------------


def _torch_result(torch, op, grad, x):
    tx = torch.from_numpy(x).requires_grad_()
    if op.startswith("relu"):
        ty = torch.relu(tx)
    else:
        ty = torch.nn.functional.gelu(tx, approximate=_approximate(op))
    if op not in BACKWARD:
        return ty.detach().numpy()
    ty.backward(torch.from_numpy(grad))
    return tx.grad.numpy()


@pytest.mark.parametrize("op", OPS)
def test_matches_torch_float32(op, rng):
    """torch.relu / torch.nn.functional.gelu and their autograd gradients on the same float32
    inputs: relu bit for bit; GELU within 1e-6 (max(1, |x|) |grad|) absolute, PyTorch's own float32
    error (its erf is absolutely, not relatively, accurate, so its tails are off by far more
    than ours: test_tails_are_accurate_in_float32)."""
    torch = pytest.importorskip("torch")
    n = 20011
    x = np.concatenate([3 * rng.standard_normal(n), rng.uniform(-16, 6, n)]).astype(np.float32)
    grad = _grads(rng, x.size, F32)
    ours = _run(op, grad if op in BACKWARD else None, x)
    theirs = _torch_result(torch, op, grad, x)
    if op.startswith("relu"):
        assert np.array_equal(ours, theirs) and np.array_equal(np.signbit(ours), np.signbit(theirs))
        return
    _assert_near_torch(op, ours, theirs, grad, x, 1e-6)


def _assert_near_torch(op, ours, theirs, grad, x, tol):
    """|ours - theirs| <= tol max(1, |x|) |grad| (|grad| for backward passes), NaN where PyTorch
    has NaN, infinities equal."""
    scale = np.fmax(1.0, np.abs(x.astype(np.float64))) * (np.abs(grad) if op in BACKWARD else 1.0)
    ours = ours.astype(np.float64)
    assert np.array_equal(np.isnan(ours), np.isnan(theirs)), f"{op}: NaN at x={x[np.isnan(ours) != np.isnan(theirs)]}"
    with np.errstate(invalid="ignore"):
        ok = (ours == theirs) | (np.abs(ours - theirs) <= tol * scale) | np.isnan(theirs)
    i = int(np.argmin(ok))
    assert ok.all(), f"{op}: {int((~ok).sum())} off, first at x={x[i]!r}: {ours[i]!r} vs {theirs[i]!r}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS)
def test_special_values_match_torch(op, dtype):
    """±0, ±inf, NaN, tiny and large values give PyTorch's float64 results: the same NaNs (where
    its formulas give inf * 0) and infinities, values within 1e-14 max(1, |x|) (PyTorch's tanh
    form loses relative accuracy for x < 0 itself, from 1 + tanh). (float32 PyTorch has
    gelu(+inf) = NaN from its erf, an artefact, so float64 is the reference here.)"""
    torch = pytest.importorskip("torch")
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 5.0, -5.0, 20.0, -20.0, 1e10, -1e10])
    grad = np.linspace(0.5, 1.5, x.size)
    theirs = _torch_result(torch, op, grad, x)
    ours = _run(op, grad.astype(dtype) if op in BACKWARD else None, x.astype(dtype))
    _assert_near_torch(op, ours, theirs, grad, x, 1e-6 if dtype == F32 else 1e-14)
    if op == "relu":
        assert np.array_equal(np.signbit(ours), np.signbit(theirs))


# ---- bfloat16 relu on the kernel's own loop ------------------------------------------------------

BF16 = deepkern.bfloat16


@pytest.mark.parametrize("offset", [0, 1, 31])
def test_bfloat16_relu_and_backward_on_every_bit_pattern(isa, threads, offset, rng):
    """relu and relu_backward take bfloat16 arrays directly (no widening): every one of the 65536
    bit patterns (split over threads, the last ones at an odd offset), against the float32
    definitions: exact, a NaN kept with its payload, -0 kept, -inf to +0; the gradient passes
    where x > 0 or x is NaN and is +0 elsewhere, into NaN-filled outputs."""
    patterns = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    x = np.concatenate([np.zeros(offset, np.uint16), patterns]).view(BF16)[offset:]
    grad = rng.standard_normal(x.size).astype(np.float32).astype(BF16)
    xf = x.astype(np.float32)
    nan = np.isnan(xf)
    out = np.full(x.size, np.nan, np.float32).astype(BF16)
    assert relu(x, out=out) is out
    expected = np.where(nan, x, np.where(xf < 0, np.zeros_like(x), x))
    assert np.array_equal(out.view(np.uint16), expected.view(np.uint16)), f"relu on {isa}"
    grad_out = np.full(x.size, np.nan, np.float32).astype(BF16)
    relu_backward(grad, x, out=grad_out)
    expected = np.where(nan | (xf > 0), grad, np.zeros_like(grad))
    assert np.array_equal(grad_out.view(np.uint16), expected.view(np.uint16)), f"relu_backward on {isa}"


def test_bfloat16_relu_strided_mixed_and_bad_outputs(rng):
    """A strided bfloat16 input is read through a contiguous copy and a strided out written in place;
    a float32 grad with a bfloat16 x, or a float32 out, is a TypeError naming it."""
    x = rng.standard_normal((6, 10)).astype(BF16)
    view = x[::2, 1::3]
    out = np.zeros((6, 10), BF16)[1::2, 2::3]
    relu(view, out=out)
    assert np.array_equal(out.astype(np.float32), np.maximum(view.astype(np.float32), 0))
    assert np.array_equal(
        relu_backward(view, view).astype(np.float32), np.where(view.astype(np.float32) > 0, view.astype(np.float32), 0)
    )
    with raises_naming(TypeError, "grad", "bfloat16", "float32"):
        relu_backward(view.astype(np.float32), view)
    with raises_naming(TypeError, "out"):
        relu(view, out=np.zeros(view.shape, np.float32))
