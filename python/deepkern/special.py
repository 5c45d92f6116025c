"""``deepkern.special``: PyTorch's ``torch.special``, with its names, arguments, dtypes and edge values.

The functions deepkern's Tensor already has (``digamma``, ``erf``, ``logit``, ``softmax``, ...) are
that method under torch.special's name; the others are Functions whose kernels compute in float64
(NumPy only) and round once to the input's dtype, with PyTorch's gradients, differentiable again
where PyTorch's are (create_graph=True). Where PyTorch has no gradient (``zeta`` and ``gammainc`` with
respect to their first argument) a backward that needs it raises NotImplementedError, as there;
``bessel_j0`` and ``bessel_j1`` are not differentiable at all (their results do not require grad).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import tensor_ops as F
from .autograd import Function
from .backends import device_of, to_device
from .tensor import Tensor, _category, _promoted, get_default_dtype, tensor, where

__all__ = [
    "bessel_j0",
    "bessel_j1",
    "digamma",
    "entr",
    "erf",
    "erfc",
    "erfcx",
    "erfinv",
    "exp2",
    "expit",
    "expm1",
    "gammainc",
    "gammaincc",
    "gammaln",
    "i0",
    "i0e",
    "i1",
    "i1e",
    "log1p",
    "log_ndtr",
    "log_softmax",
    "logit",
    "logsumexp",
    "multigammaln",
    "ndtr",
    "ndtri",
    "polygamma",
    "psi",
    "round",
    "sinc",
    "softmax",
    "xlog1py",
    "xlogy",
    "zeta",
]

_SQRT1_2 = math.sqrt(0.5)
_SQRT_PI = math.sqrt(math.pi)
_EPS = np.finfo(np.float64).eps / 2  # 2^-53: a term below it relative to a sum changes nothing
_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


# -- float64 kernels (of host arrays of one shape; elementwise) --------------------------------------------


def _square_parts(x):
    """``(hi, lo)`` with hi + lo = x^2 exactly (Dekker's product; lo is 0 where x^2 overflows)."""
    hi = x * x
    split = x * 134217729.0  # 2^27 + 1: x's upper 26 bits
    upper = split - (split - x)
    lower = x - upper
    lo = ((upper * upper - hi) + 2 * upper * lower) + lower * lower
    return hi, np.where(np.isfinite(lo), lo, 0.0)


def _erfcx(x):
    """exp(x^2) erfc(x): below 26 the C library's erfc (1 ulp) times exp(x^2) of the exact square; beyond,
    where erfc underflows, its continued fraction, 1e-17 relative there in 12 terms."""
    out = np.empty_like(x)
    near = x < 26
    v = x[near]
    hi, lo = _square_parts(v)
    out[near] = np.exp(hi) * np.exp(lo) * _erfc(v)
    out[~near] = 1 / (_SQRT_PI * _erfc_fraction(x[~near], 1))
    return out


def _erfc_fraction(v, last: int):
    """The continued fraction v + (k/2) / (v + ((k+1)/2) / (v + ...)) from k = ``last`` (12 levels deep in all),
    1 / (sqrt(pi) erfcx(v)) for ``last`` 1: 1e-17 relative for v >= 26."""
    fraction = v.copy()
    for k in range(12, last - 1, -1):
        fraction = v + (k / 2) / fraction
    return fraction


def _gauss(x):
    """exp(-x^2 / 2), of the exact square (exp(-x^2 / 2) of the rounded square is x^2 ulps off in the tails)."""
    hi, lo = _square_parts(x)
    return np.exp(-0.5 * hi) * np.exp(-0.5 * lo)


def _ndtr(x):
    """The standard normal CDF: below -1, exp(-x^2 / 2) (of the exact square) erfcx(-x / sqrt(2)) / 2, which
    keeps its relative accuracy in the far tail (erfc(-x / sqrt(2)) loses x^2 ulps to the rounded argument
    there); above, (1 + erf(x / sqrt(2))) / 2."""
    out = np.empty_like(x)
    left = x < -1
    v = x[left]
    out[left] = 0.5 * _erfcx(-v * _SQRT1_2) * _gauss(v)
    out[~left] = 0.5 * (1 + _erf(x[~left] * _SQRT1_2))
    return out


def _log_ndtr(x):
    """log of the normal CDF: below -1, log(erfcx(-x / sqrt(2)) / 2) - x^2 / 2, above, log1p(-erfc(x / sqrt(2)) / 2)."""
    out = np.empty_like(x)
    left = x < -1
    v = x[left]
    hi, lo = _square_parts(v)
    out[left] = (np.log(0.5 * _erfcx(-v * _SQRT1_2)) - 0.5 * lo) - 0.5 * hi
    out[~left] = np.log1p(-0.5 * _erfc(x[~left] * _SQRT1_2))
    return out


def _log_ndtr_derivative(x):
    """h = pdf / cdf = sqrt(2 / pi) / erfcx(-x / sqrt(2)): no cancellation or overflow in either tail."""
    return math.sqrt(2 / math.pi) / _erfcx(-x * _SQRT1_2)


def _log_ndtr_second_derivative(x):
    """h' = -h (h + x); far left, where h + x cancels (h ~ -x), h + x = sqrt(2) (1 / (sqrt(pi) erfcx(t)) - t)
    with t = -x / sqrt(2) is the tail of erfcx's continued fraction, (1/2) / (t + 1 / (t + ...))."""
    h = _log_ndtr_derivative(x)
    gap = h + x
    far = x < -26 / _SQRT1_2
    gap[far] = math.sqrt(2) * 0.5 / _erfc_fraction(-x[far] * _SQRT1_2, 2)
    return -h * gap


def _ndtri(p):
    """The normal quantile by Cephes' ndtri (as PyTorch's): a rational function of p - 1/2 in the middle,
    of 1 / sqrt(-2 log q) in the tails (q = p or 1 - p, whichever is below e^-2). +-inf at 1 and 0."""
    out = np.full(p.shape, np.nan)
    out[p == 0] = -np.inf
    out[p == 1] = np.inf
    middle = (p > F._EXP_MINUS_2) & (p <= 1 - F._EXP_MINUS_2)
    w = p[middle] - 0.5
    w2 = w * w
    out[middle] = (w + w * (w2 * F._horner(w2, F._NDTRI_P0) / F._horner(w2, F._NDTRI_Q0))) * math.sqrt(2 * math.pi)
    tail = (p > 0) & (p < 1) & ~middle
    upper = p[tail] > 0.5
    r = np.sqrt(-2 * np.log(np.where(upper, 1 - p[tail], p[tail])))
    z = 1 / r
    correction = np.where(
        r < 8,
        z * F._horner(z, F._NDTRI_P1) / F._horner(z, F._NDTRI_Q1),
        z * F._horner(z, F._NDTRI_P2) / F._horner(z, F._NDTRI_Q2),
    )
    x = r - np.log(r) / r - correction
    out[tail] = np.where(upper, x, -x)
    return out


def _entr(x):
    """-x log x; 0 at 0, -inf below."""
    return np.where(x > 0, -x * np.log(np.where(x > 0, x, 1)), np.where(x == 0, 0.0, np.where(np.isnan(x), x, -np.inf)))


def _scaled_bessel_i(x, odd: bool):
    """exp(-|x|) I0(x) (``odd`` False) or exp(-|x|) I1(x) from Cephes' Chebyshev series (those of
    tensor_ops' I0 and I1, without the exp(|x|) they multiply by)."""
    small, large = (F._I1_SMALL, F._I1_LARGE) if odd else (F._I0_SMALL, F._I0_LARGE)
    a = np.abs(x)
    out = np.empty_like(a)
    near = a <= 8
    v = a[near]
    out[near] = F._chebyshev(v / 2 - 2, small) * (v if odd else 1)
    v = a[~near]
    out[~near] = F._chebyshev(32 / v - 2, large) / np.sqrt(v)
    return np.where(x < 0, -out, out) if odd else out


def _i1(x):
    return F._bessel_i(x, F._I1_SMALL, F._I1_LARGE, odd=True)


#: The trapezoidal rule's nodes on a period: exact for J_n(x), |x| <= 20, up to J_64(20) ~ 1e-25.
_J_NODES = np.linspace(0, 2 * math.pi, 64, endpoint=False)
#: The terms of Hankel's asymptotic series of J0 and J1 summed (k < 40): the rest is below 1e-16 at |x| > 20.
_HANKEL_TERMS = 40


def _bessel_j(x, order: int):
    """J0 or J1 (``order``) of real x: for |x| <= 20 by the trapezoidal rule on (1 / 2 pi) integral of
    cos(x sin t) (J0) or sin(t) sin(x sin t) (J1) over a period, which converges geometrically (5e-16
    absolute; J1's terms all share its sign near 0, so small x keep their relative accuracy); beyond, by
    Hankel's expansion with cos and sin of x itself (no x - pi/4 rounding: accurate for any finite x)."""
    a = np.abs(x)
    out = np.empty_like(a)
    near = a <= 20
    phase = a[near, None] * np.sin(_J_NODES)
    if order == 0:
        out[near] = np.cos(phase).mean(axis=1)
    else:
        out[near] = (np.sin(_J_NODES) * np.sin(phase)).mean(axis=1)
    v = a[~near]
    mu = 4.0 * order * order
    term, p, q = np.ones_like(v), np.ones_like(v), np.zeros_like(v)
    for k in range(1, _HANKEL_TERMS):
        term = term * (mu - (2 * k - 1) ** 2) / (8 * k * v)
        if k % 2:
            q += term if k % 4 == 1 else -term
        else:
            p += term if k % 4 == 0 else -term
    cos, sin = np.cos(v), np.sin(v)
    if order == 0:
        out[~near] = ((p + q) * cos + (p - q) * sin) / np.sqrt(math.pi * v)
    else:
        out[~near] = ((p + q) * sin - (p - q) * cos) / np.sqrt(math.pi * v)
    return np.where(x < 0, -out, out) if order else out


#: B_2j / (2j)!, j = 1..12 (tensor_ops' Euler-Maclaurin corrections of the Hurwitz zeta function).
_ZETA_CORRECTIONS = F._EULER_MACLAURIN


def _zeta(x, q):
    """The Hurwitz zeta function sum_k (q + k)^-x, by Cephes' zeta (as PyTorch's): the terms summed until
    one is below 2^-53 of the sum, or at least 10 of them and up to q + k > 9; then Euler-Maclaurin's tail
    with up to 12 Bernoulli corrections. inf at x = 1 and at q = 0, -1, -2, ...; NaN for x < 1, and for
    q < 0 unless x is an integer."""
    out = np.full(x.shape, np.nan)
    out[x == 1] = np.inf
    rest = (x != 1) & ~(x < 1)  # (NaN x too)
    pole = rest & (q <= 0) & (q == np.floor(q))
    out[pole] = np.inf
    run = rest & ~pole & ~((q <= 0) & (x != np.floor(x)))
    xs, s = x[run], q[run] ** -x[run]
    a, b, done = q[run].copy(), np.zeros_like(s), np.zeros(s.shape, bool)
    active, summed = np.arange(s.size), 0
    while active.size:  # the direct sum, each element until its terms are negligible (or past q + k > 9)
        summed += 1
        a[active] += 1
        b[active] = a[active] ** -xs[active]
        s[active] += b[active]
        small = np.abs(b[active]) < _EPS * s[active]
        done[active[small]] = True
        active = active[~small & ((summed < 9) | (a[active] <= 9))]
    tail = ~done
    w, b, xt = a[tail], b[tail], xs[tail]
    total = s[tail] + b * w / (xt - 1) - 0.5 * b
    rising, going = np.ones_like(w), np.ones(w.shape, bool)
    for j, c in enumerate(_ZETA_CORRECTIONS):  # c (x)_(2j+1) w^(-x-2j-1), while they matter
        rising = rising * (xt + 2 * j)
        b = b / w
        term = rising * b * c
        total = np.where(going, total + term, total)
        going &= ~(np.abs(term) < _EPS * np.abs(total))
        rising = rising * (xt + 2 * j + 1)
        b = b / w
    s[tail] = total
    out[run] = s
    return out


def _log1pmx(s):
    """log(1 + s) - s for |s| < 1/2, without cancellation: by the series of log1p in u = s / (2 + s)
    (|u| <= 1/3), -s u + 2 (u^3 / 3 + u^5 / 5 + ...)."""
    u = s / (2 + s)
    u2 = u * u
    series, power = np.zeros_like(u), u * u2
    for k in range(1, 18):  # u^35 / 35 < 1e-18 u^2
        series += power / (2 * k + 1)
        power = power * u2
    return -s * u + 2 * series


def _lgamma1p(a):
    """lgamma(1 + a), accurate near a = 0 and 1 (where it vanishes)."""
    out = F._lgamma(1 + a)
    near_0 = np.abs(a) <= 0.5
    out[near_0] = F._lgamma_near_2(a[near_0]) - np.log1p(a[near_0])
    near_1 = np.abs(a - 1) < 0.5
    out[near_1] = F._lgamma_near_2(a[near_1] - 1)
    return out


def _gamma_density_scaled(a, x):
    """x^a e^-x / Gamma(a) (finite positive a and x): for a >= 10 as sqrt(a / 2 pi) exp(a (log(x / a) - (x - a)
    / a) - stirling(a)), free of the cancellation between a log x, x and lgamma(a); below, directly."""
    out = np.exp(a * np.log(x) - x - F._lgamma(a))
    large = a >= 10
    v, w = a[large], x[large]
    stirling = F._horner(1 / (v * v), F._STIRLING) / v  # lgamma(v) - ((v - 1/2) log v - v + log(2 pi) / 2)
    exponent = v * np.log(w / v) - (w - v)  # a log x - x - (a log a - a)
    sigma = (w - v) / v
    near = np.abs(sigma) < 0.5
    exponent[near] = v[near] * _log1pmx(sigma[near])
    out[large] = np.sqrt(v / (2 * math.pi)) * np.exp(exponent - stirling)
    return out


def _iterate(step, state, limit=100_000):
    """Runs ``step(state, index)`` (which updates the arrays of dict ``state`` at ``index`` and returns the
    mask of those that converged) on the elements not converged yet, until none is left (``limit``: a bound
    far above the ~9 sqrt(a) < 3000 steps the series take where Temme's expansion does not take over)."""
    active = np.arange(next(iter(state.values())).size)
    for _ in range(limit):
        if not active.size:
            break
        active = active[~step(state, active)]


def _lower_series(a, x):
    """P(a, x) by its series x^a e^-x / Gamma(a + 1) sum_n x^n / ((a + 1) ... (a + n))."""
    state = {"r": a.copy(), "term": np.ones_like(a), "sum": np.ones_like(a)}

    def step(s, i):
        s["r"][i] += 1
        s["term"][i] *= x[i] / s["r"][i]
        s["sum"][i] += s["term"][i]
        return ~(s["term"][i] > _EPS * s["sum"][i])

    _iterate(step, state)
    return state["sum"] * _gamma_density_scaled(a, x) / a


def _upper_fraction(a, x):
    """Q(a, x) by Legendre's continued fraction (modified Lentz), x^a e^-x / Gamma(a) / (x + 1 - a - 1 (1 - a)
    / (x + 3 - a - 2 (2 - a) / (x + 5 - a - ...))): for x > a, where it converges fast."""
    tiny = 1e-300
    b = x + 1 - a
    state = {"n": np.zeros_like(a), "b": b, "c": np.full_like(a, 1 / tiny), "d": 1 / b, "h": 1 / b}

    def step(s, i):
        s["n"][i] += 1
        n = s["n"][i]
        an = -n * (n - a[i])
        s["b"][i] += 2
        d = an * s["d"][i] + s["b"][i]
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = s["b"][i] + an / s["c"][i]
        c = np.where(np.abs(c) < tiny, tiny, c)
        s["d"][i], s["c"][i] = 1 / d, c
        delta = c / d
        s["h"][i] *= delta
        return ~(np.abs(delta - 1) > _EPS)  # (NaN stops too)

    _iterate(step, state)
    return state["h"] * _gamma_density_scaled(a, x)


def _upper_series(a, x):
    """Q(a, x) for x <= 1.1: 1 - x^a / Gamma(a + 1) - x^a / Gamma(a) sum_(n>=1) (-x)^n / (n! (a + n)), the
    first difference by expm1 (no cancellation when a is small)."""
    state = {"n": np.zeros_like(a), "power": np.ones_like(a), "sum": np.zeros_like(a)}

    def step(s, i):
        s["n"][i] += 1
        n = s["n"][i]
        s["power"][i] *= -x[i] / n
        term = s["power"][i] / (a[i] + n)
        s["sum"][i] += term
        return ~(np.abs(term) > _EPS * np.abs(s["sum"][i]))

    _iterate(step, state)
    log_x = np.log(x)
    return -np.expm1(a * log_x - _lgamma1p(a)) - np.exp(a * log_x - F._lgamma(a)) * state["sum"]


#: Taylor coefficients in eta (lowest power first) of c_0, c_1 and c_2 of Temme's uniform expansion
#: Q(a, x) = erfc(eta sqrt(a / 2)) / 2 + exp(-a eta^2 / 2) / sqrt(2 pi a) sum_k c_k(eta) a^-k, with
#: eta^2 / 2 = lambda - 1 - log(lambda), lambda = x / a (DLMF 8.12): derived (exactly, in rationals) from
#: c_0 = 1 / (lambda - 1) - 1 / eta and c_k = c_(k-1)' / eta + (-1)^k g_k / (lambda - 1), g_k Stirling's
#: coefficients of Gamma*(a). Enough for 1e-16 at a >= 1e5 and |lambda - 1| < 0.3 (|eta| < 0.34).
_TEMME = [
    [-0.3333333333333333, 0.08333333333333333, -0.014814814814814815, 0.0011574074074074073, 0.0003527336860670194]
    + [-0.0001787551440329218, 3.919263178522438e-05, -2.185448510679992e-06, -1.85406221071516e-06]
    + [8.296711340953087e-07, -1.7665952736826078e-07, 6.707853543401498e-09, 1.0261809784240309e-08]
    + [-4.382036018453353e-09, 9.14769958223679e-10],
    [-0.001851851851851852, -0.003472222222222222, 0.0026455026455026454, -0.0009902263374485596]
    + [0.00020576131687242798, -4.018775720164609e-07, -1.8098550334489977e-05, 7.64916091608111e-06]
    + [-1.6120900894563446e-06, 4.647127802807434e-09],
    [0.004133597883597883, -0.0026813271604938273, 0.0007716049382716049, 2.0093878600823047e-06],
]


def _temme(a, x, upper: bool):
    """P(a, x) or Q(a, x) (``upper``) by Temme's expansion (see _TEMME), for large a and x near a, where the
    series and fraction need ~sqrt(a) terms. The smaller of P and Q is exp(-z^2) (erfcx(z) / 2 +- sum / sqrt(2
    pi a)), z^2 = a eta^2 / 2 = -a log1pmx((x - a) / a): no cancellation in its tail; the other is 1 minus it."""
    sigma = (x - a) / a
    half_eta_squared = -_log1pmx(sigma)
    eta = np.copysign(np.sqrt(2 * half_eta_squared), sigma)
    series = sum(F._horner(eta, c[::-1]) * a**-k for k, c in enumerate(_TEMME))
    sign = np.where(sigma >= 0, 1.0, -1.0)
    smaller = np.exp(-a * half_eta_squared) * (
        0.5 * _erfcx(np.sqrt(a * half_eta_squared)) + sign * series / np.sqrt(2 * math.pi * a)
    )
    return np.where((sigma >= 0) == upper, smaller, 1 - smaller)


def _gammainc(a, x, upper: bool):
    """The regularized incomplete gamma function P(a, x) (``upper`` False) or Q(a, x) = 1 - P(a, x): Temme's
    expansion for a >= 1e5 and |x - a| < 0.3 a; elsewhere the series and continued fraction that Cephes'
    igam/igamc (PyTorch's) choose, each where it converges without cancellation. Edge values as PyTorch's:
    NaN for a < 0 or x < 0; P(0, x > 0) = 1; P(a, 0) = 0; P(inf, finite x) = 0; P(a, inf) = 1."""
    out = np.full(a.shape, np.nan)
    # PyTorch's edge cases, in its order of precedence (the first that applies wins).
    cases = [
        ((x < 0) | (a < 0), np.nan),
        (a == 0, np.where(x > 0, 0.0 if upper else 1.0, np.nan)),
        (x == 0, 1.0 if upper else 0.0),
        (np.isinf(a), np.where(np.isinf(x), np.nan, 1.0 if upper else 0.0)),
        (np.isinf(x), 0.0 if upper else 1.0),
    ]
    taken = np.zeros(a.shape, bool)
    for mask, value in cases:
        mask = mask & ~taken
        out[mask] = np.broadcast_to(value, a.shape)[mask]
        taken |= mask
    run = ~taken
    asymptotic = run & (a >= 1e5) & (np.abs(x - a) < 0.3 * a)
    out[asymptotic] = _temme(a[asymptotic], x[asymptotic], upper)
    run &= ~asymptotic
    va, vx = a[run], x[run]
    # The series or fraction that gives P or Q without cancellation (the other is 1 minus it).
    if upper:
        fraction = (vx > 1.1) & (vx >= va)
        series = (vx <= 1.1) & ~np.where(vx <= 0.5, -0.4 / np.log(vx) < va, vx * 1.1 < va)
        from_p = ~fraction & ~series
    else:
        from_q = (vx > 1) & (vx > va)
        fraction, from_p = from_q & (vx > 1.1), ~from_q
        series = from_q & ~fraction
    result = np.empty_like(va)
    result[fraction] = _upper_fraction(va[fraction], vx[fraction])
    result[series] = _upper_series(va[series], vx[series])
    result[from_p] = _lower_series(va[from_p], vx[from_p])
    complement = from_p if upper else ~from_p
    result[complement] = 1 - result[complement]
    out[run] = result
    return out


# -- Functions ----------------------------------------------------------------------------------------------


def _in_float64(kernel):
    """``kernel`` (of float64 host arrays, elementwise) on arrays of one dtype and device, broadcast together:
    computed in float64 in host memory without NumPy's warnings, rounded once to their dtype, on their device."""

    def apply(*arrays):
        dtype, device = arrays[0].dtype, device_of(arrays[0])
        host = np.broadcast_arrays(*(np.asarray(to_device(a, "cpu"), dtype=np.float64) for a in arrays))
        with np.errstate(all="ignore"):  # (overflow to inf in the cast too, as PyTorch silently)
            out = kernel(*(h.reshape(-1) for h in host)).reshape(host[0].shape).astype(dtype, copy=False)
        return to_device(out, device)

    return apply


def _unary(name: str, kernel, derivative, graph_derivative):
    """A Function computing ``kernel`` in float64 whose gradient is ``g * derivative(a)`` (a float64 kernel)
    and, for create_graph=True, ``g * graph_derivative(x)`` (Tensor ops)."""
    return F._pointwise(name, _in_float64(kernel), _in_float64(derivative), graph_derivative)


def _i1_slope(x, i0, i1, scaled: bool, where, sign):
    """d/dx I1(x) = I0(x) - I1(x) / x, or that of exp(-|x|) I1(x), i0 - i1 (sign(x) + 1 / x), with 1/2 at 0
    (PyTorch's i1_backward and i1e_backward): on arrays (``where``, ``sign``: NumPy's) or Tensors."""
    zero = x == 0
    safe = where(zero, 1.0, x)
    return where(zero, 0.5, i0(safe) - i1(safe) * ((sign(safe) if scaled else 0) + 1 / safe))


def _tensor_sign(x):
    return x.sign()


Entr = _unary("Entr", _entr, lambda x: -(1 + np.log(x)), lambda x: -(x.log() + 1))
Erfcx = _unary(
    "Erfcx", _erfcx, lambda x: 2 * x * _erfcx(x) - 2 / _SQRT_PI, lambda x: 2 * x * Erfcx.apply(x) - 2 / _SQRT_PI
)
Ndtr = _unary(
    "Ndtr",
    _ndtr,
    lambda x: _gauss(x) / math.sqrt(2 * math.pi),
    lambda x: (x * x * -0.5).exp() * (1 / math.sqrt(2 * math.pi)),
)
Ndtri = _unary(
    "Ndtri",
    _ndtri,
    lambda p: math.sqrt(2 * math.pi) * np.exp(0.5 * _ndtri(p) ** 2),
    lambda p: (Ndtri.apply(p).square() * 0.5).exp() * math.sqrt(2 * math.pi),
)
# log_ndtr' = h = pdf / cdf, and h' = -h (h + x) (no underflow of 1 / erfcx^2 in the right tail).
LogNdtrSlope = _unary(
    "LogNdtrSlope",
    _log_ndtr_derivative,
    _log_ndtr_second_derivative,
    lambda x: -LogNdtrSlope.apply(x) * (LogNdtrSlope.apply(x) + x),
)
LogNdtr = _unary("LogNdtr", _log_ndtr, _log_ndtr_derivative, lambda x: LogNdtrSlope.apply(x))
I0e = _unary(
    "I0e",
    lambda x: _scaled_bessel_i(x, False),
    lambda x: _scaled_bessel_i(x, True) - np.sign(x) * _scaled_bessel_i(x, False),
    lambda x: I1e.apply(x) - x.sign() * I0e.apply(x),
)
I1e = _unary(
    "I1e",
    lambda x: _scaled_bessel_i(x, True),
    lambda x: _i1_slope(
        x, lambda v: _scaled_bessel_i(v, False), lambda v: _scaled_bessel_i(v, True), True, np.where, np.sign
    ),
    lambda x: _i1_slope(x, I0e.apply, I1e.apply, True, where, _tensor_sign),
)
I1 = _unary(
    "I1",
    _i1,
    lambda x: _i1_slope(
        x, lambda v: F._bessel_i(v, F._I0_SMALL, F._I0_LARGE, odd=False), _i1, False, np.where, np.sign
    ),
    lambda x: _i1_slope(x, lambda v: v.i0(), I1.apply, False, where, _tensor_sign),
)


def _binary(name: str, kernel, gradients, graph_gradients, refused=None):
    """A Function of two arrays of one dtype (broadcast together) computing ``kernel`` in float64;
    ``gradients(g, a, b)`` and, for create_graph=True, ``graph_gradients(g, x, y)`` (Tensor ops) give the
    gradients of both (each summed over the axes its operand was broadcast along). ``refused``: PyTorch's
    message for the first argument's gradient, which it does not implement (NotImplementedError when needed)."""

    def refuse(ctx):
        if refused is not None and ctx.needs_input_grad[0]:
            raise NotImplementedError(refused)

    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _in_float64(kernel)(a, b)

    def backward(ctx, g):
        refuse(ctx)
        a, b = ctx.saved_tensors
        return tuple(
            F.unbroadcast(d, a_.shape) if need else None
            for d, a_, need in zip(gradients(g, a, b), (a, b), ctx.needs_input_grad)
        )

    def backward_graph(ctx, io, g):
        refuse(ctx)
        a, b = ctx.saved_tensors
        return tuple(
            F.unbroadcast_tensor(d, a_.shape) if need else None
            for d, a_, need in zip(graph_gradients(g, io.input(0, a), io.input(1, b)), (a, b), ctx.needs_input_grad)
        )

    methods = {"forward": forward, "backward": backward, "backward_graph": backward_graph}
    return type(name, (Function,), {k: staticmethod(v) for k, v in methods.items()})


def _xlog(log):
    """x log(y) (``log``: np.log or np.log1p), 0 where x is 0 unless y is NaN, as PyTorch's xlogy."""
    return lambda x, y: np.where((x == 0) & ~np.isnan(y), 0.0, x * log(y))


def _xlog_gradients(log, shift: float):
    """PyTorch's gradients of xlogy (``log`` np.log, ``shift`` 0) and xlog1py (np.log1p, 1): xlogy(g, y), 0
    where x == 0 and y <= -shift; g x / (y + shift)."""

    def gradients(g, x, y):
        return np.where((x == 0) & (y <= -shift), 0.0, _xlog(log)(g, y)), g * x / (y + shift)

    return gradients


def _xlog_graph(shift: float, function):
    """:func:`_xlog_gradients` as Tensor ops, through the Function ``function()`` (XLogY or XLog1pY)."""

    def gradients(g, x, y):
        return where((x == 0) & (y <= -shift), 0.0, function().apply(g, y)), g * x / (y + shift)

    return gradients


def _gamma_density(a, x):
    """d/dx P(a, x) = x^(a - 1) e^-x / Gamma(a): PyTorch's formula, and for a >= 10 (x finite, positive)
    the one without its cancellation."""
    out = np.exp((a - 1) * np.log(x) - x - F._lgamma(a))
    fine = (a >= 10) & (a < np.inf) & (x > 0) & (x < np.inf)
    out[fine] = _gamma_density_scaled(a[fine], x[fine]) / x[fine]
    return out


def _gamma_density_graph(g, a, x):
    return g * ((a - 1) * x.log() - x - a.lgamma()).exp()


XLogY = _binary("XLogY", _xlog(np.log), _xlog_gradients(np.log, 0.0), _xlog_graph(0.0, lambda: XLogY))
XLog1pY = _binary("XLog1pY", _xlog(np.log1p), _xlog_gradients(np.log1p, 1.0), _xlog_graph(1.0, lambda: XLog1pY))
Zeta = _binary(
    "Zeta",
    _zeta,
    lambda g, x, q: (None, g * -x * _in_float64(_zeta)(x + 1, q)),
    lambda g, x, q: (None, g * -x * Zeta.apply(x + 1, q)),
    refused="the derivative for 'zeta' is not implemented.",
)
GammaInc = _binary(
    "GammaInc",
    lambda a, x: _gammainc(a, x, upper=False),
    lambda g, a, x: (None, g * _in_float64(_gamma_density)(a, x)),
    lambda g, a, x: (None, _gamma_density_graph(g, a, x)),
    refused="the derivative for 'igamma: input' is not implemented.",
)
GammaIncC = _binary(
    "GammaIncC",
    lambda a, x: _gammainc(a, x, upper=True),
    lambda g, a, x: (None, -g * _in_float64(_gamma_density)(a, x)),
    lambda g, a, x: (None, -_gamma_density_graph(g, a, x)),
    refused="the derivative for 'igammac: input' is not implemented.",
)


# -- the public functions ------------------------------------------------------------------------------------

#: PyTorch's names of integer and bool dtypes in its "not implemented for" errors.
_TORCH_DTYPE_NAMES = {
    "int64": "Long",
    "int32": "Int",
    "int16": "Short",
    "int8": "Char",
    "uint8": "Byte",
    "bool": "Bool",
}


def _input(what: str, input, name: str = "input", position: int = 1):
    """``input`` (a Tensor, or PyTorch's TypeError) in a floating dtype (integers and bools: the default one)."""
    if not isinstance(input, Tensor):
        raise TypeError(
            f"special_{what}(): argument '{name}' (position {position}) must be Tensor, not {type(input).__name__}"
        )
    return input._as_floating()


def _pair(what: str, input, other, numbers_allowed: bool = True, kernel: str = ""):
    """``(input, other)`` as two Tensors of their promoted floating dtype on one device, broadcastable: one of
    them may be a number where ``numbers_allowed``; integer operands are the default float dtype, or refused as
    PyTorch refuses them (``kernel``: its kernel's name in the message)."""
    tensors = [isinstance(v, Tensor) for v in (input, other)]
    if not numbers_allowed or not any(tensors):
        for position, (name, value) in enumerate((("input", input), ("other", other)), start=1):
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"special_{what}(): argument '{name}' (position {position}) must be Tensor, not "
                    f"{type(value).__name__}"
                )
    for name, value in (("input", input), ("other", other)):
        if not isinstance(value, (Tensor, numbers.Real)):
            raise TypeError(
                f"special_{what}(): argument '{name}' must be a Tensor or a number, got {type(value).__name__}"
            )
    x, y = _promoted(input, other)
    like = x if isinstance(x, Tensor) else y
    if _category(like.dtype) < 2:
        if kernel:
            raise NotImplementedError(f"\"{kernel}_cpu\" not implemented for '{_TORCH_DTYPE_NAMES[like.dtype.name]}'")
        x, y = (v.to(get_default_dtype()) if isinstance(v, Tensor) else v for v in (x, y))
        like = x if isinstance(x, Tensor) else y
    x, y = (v if isinstance(v, Tensor) else tensor(v, dtype=like.dtype, device=like.device) for v in (x, y))
    try:
        np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        dim = next(i for i, (m, n) in enumerate(zip(x.shape[::-1], y.shape[::-1])) if m != n and 1 not in (m, n))
        raise RuntimeError(
            f"The size of tensor a ({x.shape[-1 - dim]}) must match the size of tensor b ({y.shape[-1 - dim]}) at "
            f"non-singleton dimension {max(x.ndim, y.ndim) - 1 - dim}"
        ) from None
    return x, y


def entr(input):
    """Elementwise entropy -x log(x): 0 at 0, -inf for x < 0."""
    return Entr.apply(_input("entr", input))


def erfcx(input):
    """The scaled complementary error function exp(x^2) erfc(x), without its overflow and underflow."""
    return Erfcx.apply(_input("erfcx", input))


def ndtr(input):
    """The standard normal CDF, with its relative accuracy in the left tail (see _ndtr)."""
    return Ndtr.apply(_input("ndtr", input))


def ndtri(input):
    """The standard normal quantile (the inverse of ndtr): -inf at 0, inf at 1, NaN outside [0, 1]."""
    return Ndtri.apply(_input("ndtri", input))


def log_ndtr(input):
    """log(ndtr(x)), accurate in both tails."""
    return LogNdtr.apply(_input("log_ndtr", input))


def i0e(input):
    """The exponentially scaled modified Bessel function of order 0, exp(-|x|) I0(x)."""
    return I0e.apply(_input("i0e", input))


def i1(input):
    """The modified Bessel function of the first kind of order 1."""
    return I1.apply(_input("i1", input))


def i1e(input):
    """The exponentially scaled modified Bessel function of order 1, exp(-|x|) I1(x)."""
    return I1e.apply(_input("i1e", input))


def bessel_j0(input):
    """The Bessel function of the first kind of order 0 (no gradient, as PyTorch's)."""
    return Tensor._wrap(_in_float64(lambda x: _bessel_j(x, 0))(_input("bessel_j0", input)._array))


def bessel_j1(input):
    """The Bessel function of the first kind of order 1 (no gradient, as PyTorch's)."""
    return Tensor._wrap(_in_float64(lambda x: _bessel_j(x, 1))(_input("bessel_j1", input)._array))


def xlogy(input, other):
    """``input * log(other)``, 0 where input is 0 (unless other is NaN); one of them may be a number.
    Its gradient with respect to input is log(other) (PyTorch's, also where input is 0)."""
    return XLogY.apply(*_pair("xlogy", input, other))


def xlog1py(input, other):
    """``input * log1p(other)``, 0 where input is 0 (unless other is NaN); one of them may be a number."""
    return XLog1pY.apply(*_pair("xlog1py", input, other))


def zeta(input, other):
    """The Hurwitz zeta function sum_k (other + k)^-input; one of them may be a number. Differentiable with
    respect to ``other`` only, as PyTorch's."""
    return Zeta.apply(*_pair("zeta", input, other))


def gammainc(input, other):
    """The regularized lower incomplete gamma function P(input, other) (both Tensors, floating). Differentiable
    with respect to ``other`` only, as PyTorch's."""
    return GammaInc.apply(*_pair("gammainc", input, other, numbers_allowed=False, kernel="igamma"))


def gammaincc(input, other):
    """The regularized upper incomplete gamma function Q(input, other) = 1 - P(input, other)."""
    return GammaIncC.apply(*_pair("gammaincc", input, other, numbers_allowed=False, kernel="igammac"))


# -- torch.special's names of Tensor methods ------------------------------------------------------------------


def digamma(input):
    return _input("digamma", input).digamma()


psi = digamma


def gammaln(input):
    return _input("gammaln", input).lgamma()


def _integer(what: str, name: str, position: int, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"special_{what}(): argument '{name}' (position {position}) must be int, not {type(value).__name__}"
        )


def polygamma(n, input):
    _integer("polygamma", "n", 1, n)
    return _input("polygamma", input, position=2).polygamma(n)


def multigammaln(input, p):
    _integer("multigammaln", "p", 2, p)
    return _input("multigammaln", input).mvlgamma(p)


def erf(input):
    return _input("erf", input).erf()


def erfc(input):
    return _input("erfc", input).erfc()


def erfinv(input):
    return _input("erfinv", input).erfinv()


def exp2(input):
    return _input("exp2", input).exp2()


def expm1(input):
    return _input("expm1", input).expm1()


def log1p(input):
    return _input("log1p", input).log1p()


def expit(input):
    """The logistic sigmoid."""
    return _input("expit", input).sigmoid()


def logit(input, eps=None):
    return _input("logit", input).logit(eps)


def sinc(input):
    return _input("sinc", input).sinc()


def i0(input):
    return _input("i0", input).i0()


def round(input, *, decimals=0):  # noqa: A001 (PyTorch's name)
    if not isinstance(input, Tensor):
        _input("round", input)
    return input.round(decimals)


def softmax(input, dim, *, dtype=None):
    _input("softmax", input)
    return input.softmax(dim, dtype)


def log_softmax(input, dim, *, dtype=None):
    _input("log_softmax", input)
    return input.log_softmax(dim, dtype)


def logsumexp(input, dim, keepdim=False):
    return _input("logsumexp", input).logsumexp(dim, keepdim)
