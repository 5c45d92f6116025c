"""deepkern.special against torch.special: values in float64 and float32 (wide ranges, tails, edge values,
odd shapes, non-contiguous and zero-size inputs), result dtypes, gradients and second derivatives, and
errors; against mpmath where torch is less accurate (ndtr's left tail, log_ndtr's derivatives far left,
the Bessel functions of large arguments, gammainc near its transition and for large a); and gradients
against finite differences (checks.gradcheck)."""

from __future__ import annotations

import deepkern as dk
import deepkern.special as special
import numpy as np
import pytest

from checks import gradcheck

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
EDGES = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e-300, -1e-300, 1e300, -1e300, 1.0, -1.0])


def wide(rng, n=600):
    """Both signs over 80 orders of magnitude, a dense middle, and the edge values."""
    magnitudes = np.exp(rng.uniform(-40, 6, n)) * rng.choice([-1.0, 1.0], n)
    return np.concatenate([rng.uniform(-30, 30, n), magnitudes, EDGES])


def probabilities(rng, n=600):
    return np.concatenate(
        [rng.uniform(0, 1, n), np.exp(-rng.uniform(0, 700, n)), 1 - np.exp(-rng.uniform(0, 36, n))]
        + [np.array([0.0, 1.0, -0.5, 1.5, np.nan, 5e-324, 0.5, np.inf])]
    )


def bessel_i_range(rng, n=600):
    return np.concatenate([wide(rng, n), rng.uniform(-720, 720, n)])


def bessel_j_range(rng, n=600):
    return np.concatenate([rng.uniform(-25, 25, n), np.exp(rng.uniform(-30, 3, n)), EDGES[:5]])


def log_ndtr_range(rng, n=600):
    return np.concatenate([wide(rng, n), -np.exp(rng.uniform(0, 12, n))])


# name: (inputs, float64 rtol and atol against torch). torch's ndtr is 0.5 (1 + erf(x / sqrt 2)), accurate
# to 1e-16 absolute only (0 below -8.3; deepkern's keeps its relative accuracy: see the mpmath tests); its
# Bessel J are off by up to 4e-7 (at 5 < x < 10; deepkern's: 5e-16 absolute, see the mpmath tests).
UNARY = {
    "entr": (wide, 1e-15, 0),
    "erfcx": (wide, 1e-13, 0),
    "ndtr": (wide, 1e-13, 2.3e-16),
    "log_ndtr": (log_ndtr_range, 1e-13, 0),
    "ndtri": (probabilities, 1e-13, 0),
    "i0e": (bessel_i_range, 1e-13, 0),
    "i1": (bessel_i_range, 1e-13, 0),
    "i1e": (bessel_i_range, 1e-13, 0),
    "bessel_j0": (bessel_j_range, 0, 1e-6),
    "bessel_j1": (bessel_j_range, 0, 1e-6),
}

# name: (inputs where torch's first and second derivatives are accurate, differentiable twice in torch)
GRADIENT_INPUTS = {
    "entr": lambda rng: np.concatenate([rng.uniform(0.01, 5, 40), [0.0, -1.0]]),
    "erfcx": lambda rng: np.concatenate([rng.uniform(-8, 10, 40), [0.0]]),
    "ndtr": lambda rng: rng.uniform(-30, 8, 40),
    "ndtri": lambda rng: np.concatenate([rng.uniform(1e-3, 1 - 1e-3, 40), [0.0, 1.0, 0.5]]),
    "log_ndtr": lambda rng: rng.uniform(-10, 8, 40),  # (torch's derivatives cancel further left: see the mpmath test)
    "i0e": lambda rng: np.concatenate([rng.uniform(-30, 30, 40), [0.0]]),
    "i1": lambda rng: np.concatenate([rng.uniform(-30, 30, 40), [0.0]]),
    "i1e": lambda rng: np.concatenate([rng.uniform(-30, 30, 40), [0.0]]),
}

# (name, arguments after the input, keyword arguments) of torch.special's names of deepkern Tensor methods
ALIASES = [
    ("digamma", (), {}),
    ("psi", (), {}),
    ("gammaln", (), {}),
    ("multigammaln", (3,), {}),
    ("erf", (), {}),
    ("erfc", (), {}),
    ("erfinv", (), {}),
    ("exp2", (), {}),
    ("expm1", (), {}),
    ("log1p", (), {}),
    ("expit", (), {}),
    ("logit", (), {}),
    ("logit", (0.2,), {}),
    ("sinc", (), {}),
    ("i0", (), {}),
    ("round", (), {}),
    ("round", (), {"decimals": 2}),
    ("softmax", (1,), {}),
    ("softmax", (0,), {"dtype": "float64"}),
    ("log_softmax", (-1,), {}),
    ("logsumexp", ((0, 1),), {}),
    ("logsumexp", (1, True), {}),
]


def check_close(got, expected, rtol, atol=0.0, x=None, what=""):
    """|got - expected| <= atol + rtol |expected| elementwise, NaN and infinities exactly where ``expected``
    has them; the message names the worst element (and its input ``x``)."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    inputs = np.broadcast_to(np.nan if x is None else x, expected.shape)
    nan_differs = np.isnan(got) != np.isnan(expected)
    assert not nan_differs.any(), f"{what}: NaN differs at x={inputs[nan_differs][:5]}"
    inf = np.isinf(expected)
    assert np.array_equal(got[inf], expected[inf]) and not np.isinf(got[~inf]).any(), f"{what}: infinities differ"
    finite = np.isfinite(expected)
    error = np.abs(got[finite] - expected[finite]) - rtol * np.abs(expected[finite])
    if error.size and error.max() > atol:
        worst = int(np.argmax(error))
        raise AssertionError(
            f"{what}: {int((error > atol).sum())} elements off, worst at x={inputs[finite][worst]!r}: got "
            f"{got[finite][worst]!r}, expected {expected[finite][worst]!r} (rtol {rtol}, atol {atol})"
        )


def exact(f, *columns, dps=50):
    """mpmath's ``f`` (of mpf numbers) at each row of the float64 ``columns``, computed with ``dps`` digits."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(dps):
        return np.array([float(f(*(mpmath.mpf(float(v)) for v in row))) for row in zip(*columns)])


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_float64_matches_torch(name, rng):
    torch = pytest.importorskip("torch")
    sample, rtol, atol = UNARY[name]
    x = sample(rng)
    x = np.concatenate([x, np.zeros(-x.size % 15)]).reshape(-1, 3, 5)
    ours = getattr(special, name)(dk.tensor(x).permute(2, 0, 1))  # a non-contiguous input of odd shape
    theirs = getattr(torch.special, name)(torch.tensor(x).permute(2, 0, 1))
    assert ours.dtype == F64 and ours.shape == tuple(theirs.shape)
    check_close(ours.numpy(), theirs.numpy(), rtol, atol, x.transpose(2, 0, 1), name)
    empty = getattr(special, name)(dk.zeros(0, 4, dtype=dk.float64))
    assert empty.shape == (0, 4) and empty.dtype == F64


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_float32_is_the_float64_value_rounded(name, rng):
    """float32 results are the float64 values rounded once: within one float32 ulp of torch's float64
    result of the same (float32) inputs (mpmath's for the Bessel J), NaN and infinities where it has them."""
    sample, _, atol = UNARY[name]
    with np.errstate(over="ignore"):  # (1e300 is inf in float32)
        x = sample(rng).astype(F32)
    ours = getattr(special, name)(dk.tensor(x)).numpy()
    assert ours.dtype == F32
    if name.startswith("bessel_j"):
        reference, atol = bessel_j_reference(int(name[-1]), x), 1e-45
    else:
        torch = pytest.importorskip("torch")
        reference = getattr(torch.special, name)(torch.tensor(x, dtype=torch.float64)).numpy()
    with np.errstate(over="ignore"):
        check_close(ours, reference.astype(F32), 1.2e-7, max(atol, 1e-45), x, name)


def bessel_j_reference(order: int, x) -> np.ndarray:
    mpmath = pytest.importorskip("mpmath")
    finite = np.isfinite(x)
    out = np.full(np.shape(x), np.nan)
    out[finite] = exact(lambda v: mpmath.besselj(order, v), np.asarray(x, np.float64)[finite], dps=30)
    return out


@pytest.mark.parametrize(
    "input_dtype, default, expected",
    [(np.int64, np.float32, F32), (np.bool_, np.float32, F32), (np.int32, np.float64, F64), (np.float64, None, F64)],
)
def test_integer_and_bool_inputs_give_the_default_float_dtype(input_dtype, default, expected):
    torch = pytest.importorskip("torch")
    values = np.array([0, 1, 1, 0, 1]).astype(input_dtype)
    previous = dk.get_default_dtype()
    if default is not None:
        dk.set_default_dtype(default)
        torch.set_default_dtype(getattr(torch, np.dtype(default).name))
    try:
        for name in ("ndtr", "entr", "i1e", "erfcx", "bessel_j0", "expit", "gammaln"):
            ours, theirs = getattr(special, name)(dk.tensor(values)), getattr(torch.special, name)(torch.tensor(values))
            assert ours.dtype == expected and str(theirs.dtype) == f"torch.{expected.name}", name
            check_close(ours.numpy(), theirs.numpy(), 1e-6 if expected == F32 else 1e-13, 0, values, name)
    finally:
        dk.set_default_dtype(previous)
        torch.set_default_dtype(torch.float32)


def test_bfloat16_inputs_stay_bfloat16(rng):
    """(Also for the functions that torch has no bfloat16 kernel of: erfcx, ndtri, log_ndtr, bessel_j0/j1, zeta.)"""
    torch = pytest.importorskip("torch")
    x = rng.uniform(0.01, 3, 50)
    bf16 = dk.tensor(x).to(dk.bfloat16)
    for name in ("ndtr", "i0e", "i1", "i1e", "entr"):
        ours = getattr(special, name)(bf16)
        theirs = getattr(torch.special, name)(torch.tensor(x).to(torch.bfloat16))
        assert ours.dtype == dk.bfloat16
        check_close(ours.float().numpy(), theirs.float().numpy(), 1e-2, 1e-2, x, name)
    for name in ("erfcx", "ndtri", "log_ndtr", "bessel_j0"):
        ours = getattr(special, name)(bf16 / 4)
        theirs = getattr(torch.special, name)(torch.tensor(x).to(torch.bfloat16).float() / 4)
        assert ours.dtype == dk.bfloat16
        check_close(ours.float().numpy(), theirs.to(torch.bfloat16).float().numpy(), 2**-8, 0, x, name)  # 1 ulp


@pytest.mark.parametrize("name", sorted(GRADIENT_INPUTS))
def test_unary_gradients_and_second_derivatives_match_torch(name, rng):
    torch = pytest.importorskip("torch")
    x = GRADIENT_INPUTS[name](rng)
    weights = rng.uniform(0.5, 2, x.shape)  # (positive: sums of the infinite derivatives at the poles stay inf)
    ours, theirs = dk.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    total = (getattr(torch.special, name)(theirs) * torch.tensor(weights)).sum()
    (gt,) = torch.autograd.grad(total, theirs, create_graph=True)
    for create_graph in (False, True):  # the backward's kernel, and its create_graph=True form
        value = (getattr(special, name)(ours) * dk.tensor(weights)).sum()
        (g,) = dk.autograd.grad(value, ours, create_graph=create_graph)
        check_close(g.detach().numpy(), gt.detach().numpy(), 1e-12, 1e-300, x, f"{name}'")
    (h,) = dk.autograd.grad(g.sum(), ours)
    (ht,) = torch.autograd.grad(gt.sum(), theirs)
    check_close(h.numpy(), ht.numpy(), 1e-11, 1e-300, x, f"{name}''")


@pytest.mark.parametrize("name", sorted(GRADIENT_INPUTS))
def test_unary_gradients_by_finite_differences(name, rng):
    """The first derivative against central differences of the values, the second (double backward)
    against central differences of the first."""
    smooth = {"entr": (0.2, 4), "ndtri": (0.05, 0.95), "ndtr": (-6, 6), "log_ndtr": (-20, 6)}.get(name, (-6, 6))
    x = rng.uniform(*smooth, (2, 3))
    function = getattr(special, name)
    gradcheck(function, dk.tensor(x, requires_grad=True), tol=1e-6)

    def derivative(values):
        t = dk.tensor(values, requires_grad=True)
        (g,) = dk.autograd.grad(function(t).sum(), t, create_graph=True)
        return t, g

    t, g = derivative(x)
    (second,) = dk.autograd.grad(g.sum(), t)
    step = 1e-5 * np.maximum(np.abs(x), 1)
    differences = (derivative(x + step)[1].detach().numpy() - derivative(x - step)[1].detach().numpy()) / (2 * step)
    check_close(second.numpy(), differences, 1e-6, 1e-8, x, f"{name}''")


def test_bessel_j_are_not_differentiable():
    """As torch's: their results do not require grad even when the input does."""
    x = dk.tensor([0.5, 2.0], dtype=dk.float64, requires_grad=True)
    assert not special.bessel_j0(x).requires_grad and not special.bessel_j1(x).requires_grad


def test_tails_against_mpmath(rng):
    """Where torch is less accurate: ndtr far left (torch: 0 below -8.3), log_ndtr's first and second
    derivatives far left, erfcx past 26 (where erfc underflows), ndtri of tiny p, i0e/i1e/i1 of large x."""
    mpmath = pytest.importorskip("mpmath")
    x = -np.exp(rng.uniform(np.log(5), np.log(38), 30))
    check_close(special.ndtr(dk.tensor(x)).numpy(), exact(mpmath.ncdf, x), 2e-15, 0, x, "ndtr")
    check_close(special.log_ndtr(dk.tensor(x)).numpy(), exact(lambda v: mpmath.log(mpmath.ncdf(v)), x), 1e-15)
    far = -np.exp(rng.uniform(np.log(40), np.log(1e6), 20))
    t = dk.tensor(far, requires_grad=True)
    (g,) = dk.autograd.grad(special.log_ndtr(t).sum(), t, create_graph=True)
    (h,) = dk.autograd.grad(g.sum(), t)
    slope = exact(lambda v: mpmath.npdf(v) / mpmath.ncdf(v), far)
    check_close(g.detach().numpy(), slope, 2e-15, 0, far, "log_ndtr'")
    curvature = exact(lambda v: -mpmath.npdf(v) / mpmath.ncdf(v) * (mpmath.npdf(v) / mpmath.ncdf(v) + v), far)
    check_close(h.numpy(), curvature, 1e-14, 0, far, "log_ndtr''")
    big = np.exp(rng.uniform(np.log(26), np.log(1e150), 20))
    check_close(special.erfcx(dk.tensor(big)).numpy(), exact(lambda v: mpmath.exp(v * v) * mpmath.erfc(v), big), 1e-15)
    p = np.exp(-rng.uniform(50, 740, 20))
    quantiles = special.ndtri(dk.tensor(p)).numpy()
    roots = exact(lambda v, q: mpmath.findroot(lambda t: mpmath.log(mpmath.ncdf(t) / v), q), p, quantiles)
    check_close(quantiles, roots, 1e-15, 0, p, "ndtri")
    y = rng.uniform(30, 700, 20)
    for name, order in (("i0e", 0), ("i1e", 1)):
        reference = exact(lambda v: mpmath.besseli(order, v) * mpmath.exp(-v), y)  # noqa: B023 (used at once)
        check_close(getattr(special, name)(dk.tensor(y)).numpy(), reference, 2e-15, 0, y, name)
    y = np.float32([89.0, 91.0])  # finite in float32 (torch's float32 i1 overflows past 88.7)
    check_close(special.i1(dk.tensor(y)).numpy(), exact(lambda v: mpmath.besseli(1, v), y).astype(F32), 1.2e-7)


@pytest.mark.parametrize("order", [0, 1])
def test_bessel_j_against_mpmath(order, rng):
    """5e-16 absolute up to 20 (the trapezoidal rule), and 2.5e-16 of the amplitude sqrt(2 / pi x) beyond
    (Hankel's expansion with cos and sin of x itself: torch's cos(x - pi/4) loses |x| ulps, 4e-7 at 1e10);
    J0 even, J1 odd; NaN at +-inf and NaN, as torch's."""
    x = np.concatenate([rng.uniform(0, 25, 200), np.exp(rng.uniform(-30, 3, 30)), [0.0, 20.0, 5e-324]])
    big = np.concatenate([np.exp(rng.uniform(np.log(20), np.log(1e15), 30)), [1e300]])
    name = f"bessel_j{order}"
    ours = getattr(special, name)(dk.tensor(np.concatenate([x, big, -x, -big, [np.inf, -np.inf, np.nan]]))).numpy()
    exact = bessel_j_reference(order, np.concatenate([x, big]))
    small_x = x < 1e-3  # J0 ~ 1, J1 ~ x / 2 there: relative accuracy
    check_close(ours[: x.size][small_x], exact[: x.size][small_x], 2.3e-16, 5e-324, x[small_x], name)
    check_close(ours[: x.size], exact[: x.size], 0, 6e-16, x, name)
    amplitude = np.sqrt(2 / (np.pi * big))
    assert np.all(np.abs(ours[x.size : x.size + big.size] - exact[x.size :]) <= 2.5e-16 * amplitude), name
    n = x.size + big.size
    assert np.array_equal(ours[n : 2 * n], ours[:n] * (-1) ** order), f"{name} is even/odd"
    assert np.isnan(ours[2 * n :]).all()


BINARY = {
    # name: (input sampler, other sampler, float64 rtol against torch)
    "xlogy": (lambda rng, n: rng.uniform(-5, 5, n), lambda rng, n: np.exp(rng.uniform(-30, 30, n)), 1e-15),
    "xlog1py": (lambda rng, n: rng.uniform(-5, 5, n), lambda rng, n: np.exp(rng.uniform(-30, 30, n)) - 0.999, 1e-15),
    "zeta": (lambda rng, n: 1 + np.exp(rng.uniform(-8, 4, n)), lambda rng, n: np.exp(rng.uniform(-6, 8, n)), 1e-13),
    "gammainc": (lambda rng, n: np.exp(rng.uniform(-8, 3, n)), lambda rng, n: np.exp(rng.uniform(-8, 4, n)), 1e-12),
    "gammaincc": (lambda rng, n: np.exp(rng.uniform(-8, 3, n)), lambda rng, n: np.exp(rng.uniform(-8, 4, n)), 1e-12),
}
#: Every combination of these pairs, for the edge values of the binary functions.
BINARY_EDGES = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.5, 0.5, np.inf, -np.inf, np.nan, 1e-300, 15.0, -1.5])


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_float64_matches_torch(name, rng):
    """Random values, every pair of edge values, broadcasting and a non-contiguous operand."""
    torch = pytest.importorskip("torch")
    first, second, rtol = BINARY[name]
    a, b = first(rng, 400), second(rng, 400)
    if name.startswith("gammainc"):  # torch's asymptotic branch (a > 20 near x = a) is off by 1e-9: avoided here
        a = np.concatenate([a, rng.uniform(20, 300, 100)])
        b = np.concatenate([b, a[-100:] * rng.choice([0.5, 1.4], 100)])
    edge_a, edge_b = np.meshgrid(BINARY_EDGES, BINARY_EDGES)
    a, b = np.concatenate([a, edge_a.ravel()]), np.concatenate([b, edge_b.ravel()])
    ours = getattr(special, name)(dk.tensor(a), dk.tensor(b))
    theirs = getattr(torch.special, name)(torch.tensor(a), torch.tensor(b))
    check_close(ours.numpy(), theirs.numpy(), rtol, 1e-300, a, name)
    column, rows = first(rng, 4)[:, None, None], second(rng, 15).reshape(3, 5)  # (4, 1, 1) with (5, 3)
    ours = getattr(special, name)(dk.tensor(column), dk.tensor(rows).T)
    theirs = getattr(torch.special, name)(torch.tensor(column), torch.tensor(rows).T)
    assert ours.shape == (4, 5, 3)
    check_close(ours.numpy(), theirs.numpy(), rtol, 1e-300, None, name)
    empty = getattr(special, name)(dk.zeros(0, 1, dtype=dk.float64), dk.tensor(rows[0]))
    assert empty.shape == (0, 5) and empty.dtype == F64


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_float32_numbers_and_promotion_match_torch(name, rng):
    torch = pytest.importorskip("torch")
    first, second, _ = BINARY[name]
    with np.errstate(over="ignore"):  # (e^30 - 0.999 is inf in float32)
        a, b = first(rng, 200).astype(F32), second(rng, 200).astype(F32)
    ours = getattr(special, name)(dk.tensor(a), dk.tensor(b)).numpy()
    reference = getattr(torch.special, name)(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    assert ours.dtype == F32
    with np.errstate(over="ignore"):
        check_close(ours, reference.numpy().astype(F32), 1.2e-7, 1e-40, a, name)
    integers = np.round(np.abs(a) * 3).astype(np.int64) + 1
    pairs = [
        (a, b[:1].astype(np.float64)),
        (integers, b),
        (a.astype(np.float64), b[0]),
    ]  # arrays, 0-d: as torch promotes
    if not name.startswith("gammainc"):  # (gammainc takes Tensors only)
        pairs += [(a, 2.5), (1.5, b), (integers, 3)]
    for x, y in pairs:  # the dtype as torch promotes; the values of torch's float64 computation, rounded
        ours = getattr(special, name)(*(dk.tensor(v) if isinstance(v, (np.ndarray, np.generic)) else v for v in (x, y)))
        args = [torch.tensor(v) if isinstance(v, (np.ndarray, np.generic)) else v for v in (x, y)]
        dtype = getattr(torch.special, name)(*args).dtype
        assert f"torch.{ours.dtype}" == str(dtype), (name, ours.dtype, dtype)
        exact = getattr(torch.special, name)(*(v.double() if isinstance(v, torch.Tensor) else v for v in args))
        check_close(
            ours.numpy(), exact.to(dtype).numpy(), 1.2e-7 if dtype == torch.float32 else 1e-13, 1e-40, None, name
        )


# name: (input values, other values, which arguments torch differentiates)
BINARY_GRADIENTS = {
    "xlogy": (
        lambda rng: np.concatenate([rng.uniform(-3, 3, 20), [0, 0, 0, 2]]),
        lambda rng: np.concatenate([rng.uniform(0.1, 3, 20), [2.0, 0.0, -1.0, 0.0]]),
        (0, 1),
    ),
    "xlog1py": (
        lambda rng: np.concatenate([rng.uniform(-3, 3, 20), [0, 0, 0, 2]]),
        lambda rng: np.concatenate([rng.uniform(-0.9, 3, 20), [2.0, -1.0, -2.0, -1.0]]),
        (0, 1),
    ),
    "zeta": (lambda rng: rng.uniform(1.5, 6, 24), lambda rng: rng.uniform(0.2, 5, 24), (1,)),
    "gammainc": (lambda rng: rng.uniform(0.1, 15, 24), lambda rng: rng.uniform(0.01, 30, 24), (1,)),
    "gammaincc": (lambda rng: rng.uniform(0.1, 15, 24), lambda rng: rng.uniform(0.01, 30, 24), (1,)),
}


@pytest.mark.parametrize("name", sorted(BINARY_GRADIENTS))
def test_binary_gradients_match_torch(name, rng):
    """First and second derivatives of each argument torch differentiates (xlogy's with respect to its
    input at input 0 is log(other), torch's; deepkern's Tensor.xlogy gives 0 there), and torch's
    NotImplementedError for the others."""
    torch = pytest.importorskip("torch")
    first, second, differentiable = BINARY_GRADIENTS[name]
    a, b = first(rng), second(rng)
    for which in (0, 1):
        ours = [dk.tensor(a, requires_grad=which == 0), dk.tensor(b, requires_grad=which == 1)]
        theirs = [torch.tensor(a, requires_grad=which == 0), torch.tensor(b, requires_grad=which == 1)]
        value, expected = getattr(special, name)(*ours).sum(), getattr(torch.special, name)(*theirs).sum()
        if which not in differentiable:
            with pytest.raises(NotImplementedError) as info:
                torch.autograd.grad(expected, theirs[which])
            with pytest.raises(NotImplementedError, match=f"^{info.value}$"):
                value.backward()
            continue
        (gt,) = torch.autograd.grad(expected, theirs[which], create_graph=True)
        (plain,) = dk.autograd.grad(value, ours[which], retain_graph=True)
        (g,) = dk.autograd.grad(value, ours[which], create_graph=True)
        for result in (plain, g):  # the backward's kernel, and its create_graph=True form
            check_close(result.detach().numpy(), gt.detach().numpy(), 1e-13, 1e-300, [a, b][which], f"d{name}/d{which}")
        assert g.requires_grad == gt.requires_grad
        if gt.requires_grad:
            (h,) = dk.autograd.grad(g.sum(), ours[which])
            (ht,) = torch.autograd.grad(gt.sum(), theirs[which])
            check_close(h.numpy(), ht.numpy(), 1e-12, 1e-300, [a, b][which], f"d2{name}/d{which}2")
        x = [dk.tensor(a[:6].reshape(2, 3)), dk.tensor(b[:6].reshape(2, 3))]
        x[which].requires_grad_(True)
        gradcheck(getattr(special, name), *x, tol=1e-6)


def test_zeta_against_mpmath(rng):
    """Real orders, negative q with integer orders (summed from q up, as Cephes and torch do), large q."""
    mpmath = pytest.importorskip("mpmath")
    x = np.concatenate([1 + np.exp(rng.uniform(-10, 3, 40)), rng.integers(2, 12, 10).astype(float), [3.0, 1.5]])
    q = np.concatenate([np.exp(rng.uniform(-8, 12, 40)), rng.uniform(-30, -0.01, 10), [-2.5, 1e10]])
    reference = exact(mpmath.zeta, x, q, dps=120)  # (mpmath's zeta of large q needs the digits)
    check_close(special.zeta(dk.tensor(x), dk.tensor(q)).numpy(), reference, 3e-14, 0, x, "zeta")


def incomplete_gamma_reference(a, x, upper: bool):
    mpmath = pytest.importorskip("mpmath")
    bounds = (lambda v: (v, mpmath.inf)) if upper else (lambda v: (0, v))
    return exact(lambda u, v: mpmath.gammainc(u, *bounds(v), regularized=True), a, x, dps=40)


@pytest.mark.parametrize("upper", [False, True])
def test_gammainc_against_mpmath(upper, rng):
    """Every branch: tiny and small a and x (the series of Q), x near a (where torch's asymptotic
    expansion is 1e-9 off: a > 20, |x - a| < 0.3 a), the deep tails, and a in the thousands."""
    a = np.concatenate([np.exp(rng.uniform(-12, 3, 30)), rng.uniform(20, 400, 20), np.exp(rng.uniform(6, 9, 10))])
    x = np.concatenate(
        [np.exp(rng.uniform(-12, 4, 30)), a[30:50] * rng.uniform(0.75, 1.3, 20), a[50:] * rng.uniform(0.5, 2, 10)]
    )
    ours = (special.gammaincc if upper else special.gammainc)(dk.tensor(a), dk.tensor(x)).numpy()
    reference = incomplete_gamma_reference(a, x, upper)
    check_close(ours, reference, 5e-13, 1e-300, a, "Q" if upper else "P")  # (deep tails: a |log(x / a)| ulps)


def test_gammainc_for_large_a():
    """Temme's expansion (a >= 1e5, |x - a| < 0.3 a), where the series would need ~sqrt(a) terms: against
    mpmath up to a = 1e6 (where it converges), P + Q = 1, P(a + 1, x) = P(a, x) - x^a e^-x / Gamma(a + 1)
    (mpmath's density) beyond, and continuity across a = 1e5 (the series below, the expansion above)."""
    mpmath = pytest.importorskip("mpmath")
    a = np.repeat([1e5, 3e5, 1e6], 5)
    x = a * np.tile([0.99, 0.999, 1.0, 1.001, 1.003], 3)
    lower = exact(lambda u, v: mpmath.gammainc(u, 0, v, regularized=True), a, x, dps=40)
    upper = exact(lambda u, v: 1 - mpmath.gammainc(u, 0, v, regularized=True), a, x, dps=40)
    check_close(special.gammainc(dk.tensor(a), dk.tensor(x)).numpy(), lower, 1e-14, 0, a, "P")
    check_close(special.gammaincc(dk.tensor(a), dk.tensor(x)).numpy(), upper, 1e-14, 0, a, "Q")
    a = np.array([3e6, 1e9, 2e12, 5e15, 9e15])  # (a + 1 exact)
    x = a * (1 + np.array([1e-3, -3e-5, 1e-6, 3e-8, -1e-8]))
    p, q = special.gammainc(dk.tensor(a), dk.tensor(x)).numpy(), special.gammaincc(dk.tensor(a), dk.tensor(x)).numpy()
    check_close(p + q, np.ones_like(p), 2e-16)
    next_p = special.gammainc(dk.tensor(a + 1), dk.tensor(x)).numpy()
    density = exact(lambda u, v: mpmath.exp(u * mpmath.log(v) - v - mpmath.loggamma(u + 1)), a, x, dps=40)
    check_close(next_p, p - density, 1e-13, 1e-300, a, "P(a + 1, x)")
    for ratio in (0.8, 0.999, 1.0, 1.002, 1.25):
        values = special.gammainc(dk.tensor(np.array([np.nextafter(1e5, 0), 1e5])), dk.tensor(np.full(2, ratio * 1e5)))
        check_close(values.numpy()[:1], values.numpy()[1:], 1e-13, 1e-300, ratio, "across a = 1e5")


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-13), ("float32", 2e-6)])
def test_aliases_match_torch(dtype, rtol, rng):
    torch = pytest.importorskip("torch")
    x = rng.uniform(0.05, 0.95, (4, 6)).astype(dtype)
    for name, args, kwargs in ALIASES:  # (a dtype by its name)
        ours = getattr(special, name)(
            dk.tensor(x).T, *args, **{k: np.dtype(v) if k == "dtype" else v for k, v in kwargs.items()}
        )
        theirs = getattr(torch.special, name)(
            torch.tensor(x).T, *args, **{k: getattr(torch, v) if k == "dtype" else v for k, v in kwargs.items()}
        )
        assert f"torch.{ours.dtype}" == str(theirs.dtype), name
        check_close(ours.numpy(), theirs.numpy(), rtol, 0, None, name)


def test_polygamma_and_multigammaln_match_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.uniform(1.05, 1.95, (2, 3))
    t = dk.tensor(x, requires_grad=True)
    for n in (0, 2, 3):  # (torch's trigamma, n = 1, is 5e-10 off: see the mpmath test)
        theirs = torch.special.polygamma(n, torch.tensor(x)).numpy()
        check_close(special.polygamma(n, t).detach().numpy(), theirs, 1e-13, 0, None, f"polygamma {n}")
    (g,) = dk.autograd.grad(special.multigammaln(t + 2, 2).sum(), t)
    tt = torch.tensor(x, requires_grad=True)
    (gt,) = torch.autograd.grad(torch.special.multigammaln(tt + 2, 2).sum(), tt)
    check_close(g.numpy(), gt.numpy(), 1e-13, 0, None, "multigammaln'")


def test_polygamma_against_mpmath(rng):
    mpmath = pytest.importorskip("mpmath")
    x = np.concatenate([rng.uniform(0.05, 30, 20), -rng.uniform(0.05, 10, 5)])
    for n in (1, 2):
        reference = exact(lambda v: mpmath.polygamma(n, v), x, dps=30)  # noqa: B023 (used at once)
        check_close(special.polygamma(n, dk.tensor(x)).numpy(), reference, 1e-14, 0, x, f"polygamma {n}")


ERROR_CALLS = [
    ("ndtr", (1.0,)),
    ("erfcx", ([1.0],)),
    ("i1e", (None,)),
    ("digamma", (2,)),
    ("round", (1.5,)),
    ("polygamma", (1.5, "t")),
    ("multigammaln", ("t", 1.5)),
    ("gammainc", ("t", 2.0)),
    ("gammaincc", (2.0, "t")),
    ("gammainc", ("i", "i")),
    ("xlogy", (2.0, 3.0)),
    ("zeta", ("t", "t4")),
]


@pytest.mark.parametrize("name, args", ERROR_CALLS)
def test_errors_match_torch(name, args):
    """torch's exception type and message (with its argument names) for wrong arguments."""
    torch = pytest.importorskip("torch")
    values = {"t": np.array([1.5, 2.5]), "t4": np.ones(4) * 2, "i": np.array([1, 2])}
    with pytest.raises(Exception) as theirs:
        getattr(torch.special, name)(*(torch.tensor(values[a]) if a in values else a for a in args))
    with pytest.raises(type(theirs.value)) as ours:
        getattr(special, name)(*(dk.tensor(values[a]) if a in values else a for a in args))
    if name == "xlogy":  # torch lists its overloads; deepkern names the arguments
        assert "input" in str(ours.value) and "Tensor" in str(ours.value)
    else:
        assert str(ours.value) == str(theirs.value)


def test_on_each_device(device, rng):
    x, y = rng.uniform(0.1, 4, (3, 4)), rng.uniform(0.1, 4, (3, 4))
    for name in ("ndtr", "i1e", "erfcx", "bessel_j1"):
        ours = getattr(special, name)(dk.tensor(x, device=device))
        assert ours.device == dk.device(device)
        np.testing.assert_array_equal(ours.cpu().numpy(), getattr(special, name)(dk.tensor(x)).numpy())
    ours = special.gammaincc(dk.tensor(x, device=device), dk.tensor(y, device=device))
    np.testing.assert_array_equal(ours.cpu().numpy(), special.gammaincc(dk.tensor(x), dk.tensor(y)).numpy())
