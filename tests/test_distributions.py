"""deepkern.distributions against torch.distributions: log_prob, cdf, icdf, entropy and the moments, their
values and gradients (parameters and values) in float64 and float32 over broadcast batches; every KL pair
torch registers for these families; shapes, expand, enumerate_support, constraints, transforms and the
validation errors; finite-difference gradients; and samples (shape, dtype, support, reproducibility,
moments and quantiles of 20000 draws, rsample's gradients against their analytic expectations)."""

from __future__ import annotations

import math
import re
import zlib
from collections import namedtuple

import deepkern as dk
import deepkern.distributions as D
import numpy as np
import pytest

from checks import gradcheck
from reference import rel_error

torch = pytest.importorskip("torch")
TD = torch.distributions

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
TOL = {F32: 1e-5, F64: 1e-12}
#: Gradients through digamma meet torch's trigamma, which is accurate to 5e-10 relative only (deepkern's
#: polygamma(1) to 1e-15, against mpmath): float64 gradients of those are compared to this.
TRIGAMMA_TOL = 1e-8
#: The entropies whose gradients take trigamma.
TRIGAMMA_ENTROPIES = {"Gamma", "Chi2", "Beta", "Dirichlet", "StudentT"}


class _TorchDistributions:
    """torch.distributions, with the two classes it keeps in submodules."""

    LogitRelaxedBernoulli = TD.relaxed_bernoulli.LogitRelaxedBernoulli
    ExpRelaxedCategorical = TD.relaxed_categorical.ExpRelaxedCategorical

    def __getattr__(self, name):
        return getattr(TD, name)


LIBS = {"deepkern": D, "torch": _TorchDistributions()}


def _rng(*keys) -> np.random.Generator:
    """A generator fixed by ``keys`` (strings), so each test case draws its own reproducible values."""
    return np.random.default_rng([zlib.crc32(str(k).encode()) for k in keys])


def _tensor(lib, array, grad=False):
    """``array`` as a tensor of ``lib`` ("deepkern" or "torch")."""
    array = np.asarray(array)
    if lib == "torch":
        return torch.tensor(array, requires_grad=grad)
    return dk.tensor(array, requires_grad=grad)


def _numpy(t):
    """A tensor of either library as a NumPy array."""
    return t.detach().numpy()


def assert_close(got, want, what, dtype, tol=None, reference=None):
    """``got`` (deepkern) equals ``want`` (torch) in dtype, shape and non-finite positions, and within the
    relative tolerance of ``dtype`` elsewhere; or, given torch's float64 ``reference`` (for float32), is at
    least about as close to it as torch's float32 ``want`` is."""
    got_np, want_np = _numpy(got), _numpy(want)
    assert str(got_np.dtype) == str(want_np.dtype), f"{what}: dtype {got_np.dtype}, torch {want_np.dtype}"
    assert got_np.shape == want_np.shape, f"{what}: shape {got_np.shape}, torch {want_np.shape}"
    if got_np.dtype.kind in "biu":
        np.testing.assert_array_equal(got_np, want_np, err_msg=what)
        return
    ref = want_np.astype(np.float64)
    for name, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        differ = np.argwhere(test(got_np) != test(ref))
        assert not differ.size, f"{what}: {len(differ)} elements differ in being {name}, first at {differ[0]}"
    finite = np.isfinite(ref)
    tol = tol or TOL[np.dtype(dtype)]
    err = rel_error(got_np[finite], ref[finite])
    if err >= tol and reference is not None:
        exact = _numpy(reference)[finite]
        ours, theirs = rel_error(got_np[finite], exact), rel_error(ref[finite], exact)
        assert ours <= max(tol, 2 * theirs), f"{what}: error {ours:.3g} against float64, torch's float32 {theirs:.3g}"
        return
    assert err < tol, f"{what}: relative error {err:.3g}"


# -- the distributions, with random parameters and values ----------------------------------------------


def positive(rng, shape, low=0.5, high=2.0):
    return rng.uniform(low, high, shape)


def normal(rng, shape):
    return rng.standard_normal(shape)


def simplex(rng, shape):
    g = rng.gamma(1.0, size=shape)
    return g / g.sum(-1, keepdims=True)


def spd(rng, shape):
    a = rng.standard_normal(shape)
    return a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])


def tril(rng, shape):
    return np.tril(rng.standard_normal(shape), -1) + np.diag(rng.uniform(0.5, 2.0, shape[-1]))


def one_hot(rng, shape):
    return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]


def counts(rng, shape, n=10):
    flat = [rng.multinomial(n, simplex(rng, shape[-1:])) for _ in range(int(np.prod(shape[:-1])))]
    return np.array(flat, dtype=np.float64).reshape(shape)


#: make(M, p): the distribution of module M (deepkern.distributions or torch.distributions) with parameters
#: p (tensors of the library); params(rng): the NumPy parameters; value(rng, p, shape): values of ``shape``
#: (sample dims + batch + event) in the support for log_prob and cdf; methods: what to compare (a tuple
#: (method, names) keeps the parameters ``names`` out of the gradient); continuous: whether the value is
#: differentiable; frozen: parameters that never require grad.
Case = namedtuple("Case", "make params value methods continuous frozen", defaults=(True, frozenset()))
MOMENTS = ("mean", "variance", "stddev", "mode")
SCALAR = ("log_prob", "cdf", "icdf", "entropy", *MOMENTS)
LOC_SCALE = {"loc": lambda rng: normal(rng, (2, 3)), "scale": lambda rng: positive(rng, (3,))}


def _params(spec):
    return lambda rng: {name: draw(rng) for name, draw in spec.items()}


def real_values(rng, p, shape):
    return normal(rng, shape)


def positive_values(rng, p, shape):
    return np.exp(normal(rng, shape))


def unit_values(rng, p, shape):
    return rng.uniform(0.05, 0.95, shape)


def integer_values(high):
    return lambda rng, p, shape: rng.integers(0, high, shape).astype(np.float64)


CASES = {
    "Normal": Case(lambda M, p: M.Normal(p["loc"], p["scale"]), _params(LOC_SCALE), real_values, SCALAR),
    "Uniform": Case(
        lambda M, p: M.Uniform(p["low"], p["high"]),
        lambda rng: {"low": (low := normal(rng, (2, 3))), "high": low + positive(rng, (2, 3))},
        lambda rng, p, shape: p["low"] + rng.uniform(0, 1, shape) * (p["high"] - p["low"]),
        ("log_prob", "cdf", "icdf", "entropy", "mean", "variance", "stddev"),
    ),
    "Laplace": Case(lambda M, p: M.Laplace(p["loc"], p["scale"]), _params(LOC_SCALE), real_values, SCALAR),
    "Cauchy": Case(lambda M, p: M.Cauchy(p["loc"], p["scale"]), _params(LOC_SCALE), real_values, SCALAR),
    "Exponential": Case(
        lambda M, p: M.Exponential(p["rate"]),
        _params({"rate": lambda rng: positive(rng, (2, 3))}),
        positive_values,
        SCALAR,
    ),
    "Gamma": Case(
        lambda M, p: M.Gamma(p["concentration"], p["rate"]),
        _params(
            {"concentration": lambda rng: positive(rng, (2, 3), 0.5, 5.0), "rate": lambda rng: positive(rng, (3,))}
        ),
        positive_values,
        ("log_prob", ("cdf", {"concentration"}), "entropy", "mean", "variance", "stddev", "mode"),
    ),
    "Chi2": Case(
        lambda M, p: M.Chi2(p["df"]),
        _params({"df": lambda rng: positive(rng, (2, 3), 1.0, 6.0)}),
        positive_values,
        ("log_prob", "entropy", "mean", "variance", "mode"),
    ),
    "Beta": Case(
        lambda M, p: M.Beta(p["c1"], p["c0"]),
        _params({"c1": lambda rng: positive(rng, (2, 3), 0.5, 4.0), "c0": lambda rng: positive(rng, (3,), 0.5, 4.0)}),
        unit_values,
        ("log_prob", "entropy", *MOMENTS),
    ),
    "Dirichlet": Case(
        lambda M, p: M.Dirichlet(p["concentration"]),
        _params({"concentration": lambda rng: positive(rng, (2, 4), 0.3, 4.0)}),
        lambda rng, p, shape: simplex(rng, shape),
        ("log_prob", "entropy", *MOMENTS),
    ),
    "StudentT": Case(
        lambda M, p: M.StudentT(p["df"], p["loc"], p["scale"]),
        _params({"df": lambda rng: positive(rng, (2, 3), 0.5, 8.0), **LOC_SCALE}),
        real_values,
        ("log_prob", "entropy", *MOMENTS),
    ),
    "HalfNormal": Case(
        lambda M, p: M.HalfNormal(p["scale"]),
        _params({"scale": lambda rng: positive(rng, (2, 3))}),
        positive_values,
        SCALAR,
    ),
    "LogNormal": Case(lambda M, p: M.LogNormal(p["loc"], p["scale"]), _params(LOC_SCALE), positive_values, SCALAR),
    "Gumbel": Case(lambda M, p: M.Gumbel(p["loc"], p["scale"]), _params(LOC_SCALE), real_values, SCALAR),
    "MultivariateNormal(scale_tril)": Case(
        lambda M, p: M.MultivariateNormal(p["loc"], scale_tril=p["scale_tril"]),
        _params({"loc": lambda rng: normal(rng, (2, 3)), "scale_tril": lambda rng: tril(rng, (3, 3))}),
        real_values,
        ("log_prob", "entropy", "mean", "variance", "stddev", "mode"),
    ),
    "MultivariateNormal(covariance_matrix)": Case(
        lambda M, p: M.MultivariateNormal(p["loc"], covariance_matrix=p["cov"]),
        _params({"loc": lambda rng: normal(rng, (3,)), "cov": lambda rng: spd(rng, (2, 3, 3))}),
        real_values,
        ("log_prob", "entropy", "variance"),
    ),
    "MultivariateNormal(precision_matrix)": Case(
        lambda M, p: M.MultivariateNormal(p["loc"], precision_matrix=p["precision"]),
        _params({"loc": lambda rng: normal(rng, (2, 3)), "precision": lambda rng: spd(rng, (3, 3))}),
        real_values,
        ("log_prob", "entropy", "variance"),
    ),
    "Bernoulli(probs)": Case(
        lambda M, p: M.Bernoulli(probs=p["probs"]),
        _params({"probs": lambda rng: rng.uniform(0.05, 0.95, (2, 3))}),
        integer_values(2),
        ("log_prob", "entropy", *MOMENTS),
        False,
    ),
    "Bernoulli(logits)": Case(
        lambda M, p: M.Bernoulli(logits=p["logits"]),
        _params({"logits": lambda rng: normal(rng, (2, 3))}),
        integer_values(2),
        ("log_prob", "entropy", *MOMENTS),
        False,
    ),
    "Binomial(probs)": Case(
        lambda M, p: M.Binomial(10, probs=p["probs"]),
        _params({"probs": lambda rng: rng.uniform(0.05, 0.95, (2, 3))}),
        integer_values(11),
        ("log_prob", "entropy", *MOMENTS),
        False,
    ),
    "Binomial(logits)": Case(
        lambda M, p: M.Binomial(p["total_count"], logits=p["logits"]),
        _params({"total_count": lambda rng: np.array([3.0, 7.0, 12.0]), "logits": lambda rng: normal(rng, (2, 3))}),
        integer_values(4),
        ("log_prob", *MOMENTS),
        False,
        {"total_count"},
    ),
    "Categorical(probs)": Case(
        lambda M, p: M.Categorical(probs=p["probs"]),
        _params({"probs": lambda rng: positive(rng, (2, 5))}),
        lambda rng, p, shape: rng.integers(0, 5, shape),
        ("log_prob", "entropy", *MOMENTS),
        False,
    ),
    "Categorical(logits)": Case(
        lambda M, p: M.Categorical(logits=p["logits"]),
        _params({"logits": lambda rng: normal(rng, (2, 5))}),
        lambda rng, p, shape: rng.integers(0, 5, shape),
        ("log_prob", "entropy", "mode"),
        False,
    ),
    "OneHotCategorical": Case(
        lambda M, p: M.OneHotCategorical(logits=p["logits"]),
        _params({"logits": lambda rng: normal(rng, (2, 5))}),
        lambda rng, p, shape: one_hot(rng, shape),
        ("log_prob", "entropy", *MOMENTS),
        False,
    ),
    "Geometric(probs)": Case(
        lambda M, p: M.Geometric(probs=p["probs"]),
        _params({"probs": lambda rng: rng.uniform(0.05, 0.95, (2, 3))}),
        integer_values(8),
        ("log_prob", "entropy", *MOMENTS),
        False,
    ),
    "Geometric(logits)": Case(
        lambda M, p: M.Geometric(logits=p["logits"]),
        _params({"logits": lambda rng: normal(rng, (2, 3))}),
        integer_values(8),
        ("log_prob", "entropy", "mean", "variance"),
        False,
    ),
    "Poisson": Case(
        lambda M, p: M.Poisson(p["rate"]),
        _params({"rate": lambda rng: positive(rng, (2, 3), 0.5, 6.0)}),
        integer_values(9),
        ("log_prob", *MOMENTS),
        False,
    ),
    "Multinomial": Case(
        lambda M, p: M.Multinomial(10, logits=p["logits"]),
        _params({"logits": lambda rng: normal(rng, (2, 4))}),
        lambda rng, p, shape: counts(rng, shape),
        ("log_prob", "entropy", "mean", "variance"),
        False,
    ),
    "LogitRelaxedBernoulli": Case(
        lambda M, p: M.LogitRelaxedBernoulli(p["temperature"], probs=p["probs"]),
        _params({"temperature": lambda rng: positive(rng, ()), "probs": lambda rng: rng.uniform(0.1, 0.9, (2, 3))}),
        real_values,
        ("log_prob",),
    ),
    "RelaxedBernoulli": Case(
        lambda M, p: M.RelaxedBernoulli(p["temperature"], logits=p["logits"]),
        _params({"temperature": lambda rng: positive(rng, (3,)), "logits": lambda rng: normal(rng, (2, 3))}),
        unit_values,
        ("log_prob",),
    ),
    "ExpRelaxedCategorical": Case(
        lambda M, p: M.ExpRelaxedCategorical(p["temperature"], logits=p["logits"]),
        _params({"temperature": lambda rng: positive(rng, ()), "logits": lambda rng: normal(rng, (2, 4))}),
        lambda rng, p, shape: np.log(simplex(rng, shape)),
        ("log_prob",),
    ),
    "RelaxedOneHotCategorical": Case(
        lambda M, p: M.RelaxedOneHotCategorical(p["temperature"], probs=p["probs"]),
        _params({"temperature": lambda rng: positive(rng, ()), "probs": lambda rng: simplex(rng, (2, 4))}),
        lambda rng, p, shape: simplex(rng, shape),
        ("log_prob",),
    ),
    "Independent": Case(
        lambda M, p: M.Independent(M.Normal(p["loc"], p["scale"]), 1),
        _params(LOC_SCALE),
        real_values,
        ("log_prob", "entropy", "mean", "variance", "mode"),
    ),
    "MixtureSameFamily": Case(
        lambda M, p: M.MixtureSameFamily(M.Categorical(logits=p["logits"]), M.Normal(p["loc"], p["scale"])),
        _params(
            {
                "logits": lambda rng: normal(rng, (2, 4)),
                "loc": lambda rng: normal(rng, (2, 4)),
                "scale": lambda rng: positive(rng, (4,)),
            }
        ),
        real_values,
        ("log_prob", "cdf", "mean", "variance"),
    ),
    "MixtureSameFamily(Independent)": Case(
        lambda M, p: M.MixtureSameFamily(
            M.Categorical(probs=p["probs"]), M.Independent(M.Normal(p["loc"], p["scale"]), 1)
        ),
        _params(
            {
                "probs": lambda rng: simplex(rng, (2, 4)),
                "loc": lambda rng: normal(rng, (2, 4, 3)),
                "scale": lambda rng: positive(rng, (3,)),
            }
        ),
        real_values,
        ("log_prob", "mean", "variance"),
    ),
    "TransformedDistribution(tanh)": Case(
        lambda M, p: M.TransformedDistribution(M.Normal(p["loc"], p["scale"]), [M.transforms.TanhTransform()]),
        _params(LOC_SCALE),
        lambda rng, p, shape: rng.uniform(-0.95, 0.95, shape),
        ("log_prob",),
    ),
    "TransformedDistribution(affine)": Case(
        lambda M, p: M.TransformedDistribution(
            M.Normal(p["loc"], p["scale"]),
            [M.transforms.AffineTransform(p["shift"], -2.0), M.transforms.ExpTransform()],
        ),
        _params({**LOC_SCALE, "shift": lambda rng: normal(rng, (3,))}),
        positive_values,
        ("log_prob", "cdf", "icdf"),
    ),
    "TransformedDistribution(sigmoid, power)": Case(
        lambda M, p: M.TransformedDistribution(
            M.Laplace(p["loc"], p["scale"]),
            [M.transforms.SigmoidTransform(), M.transforms.PowerTransform(p["exponent"])],
        ),
        _params({**LOC_SCALE, "exponent": lambda rng: positive(rng, (3,))}),
        unit_values,
        ("log_prob", "cdf", "icdf"),
    ),
}
CASES["Uniform(0, 1)"] = Case(
    lambda M, p: M.Uniform(p["low"], p["high"]),
    _params({"low": lambda rng: rng.uniform(0, 0.4, (2, 3)), "high": lambda rng: rng.uniform(0.6, 1, (3,))}),
    unit_values,
    ("entropy",),
)
CASES["Uniform(wide)"] = Case(
    lambda M, p: M.Uniform(p["low"], p["high"]),
    _params({"low": lambda rng: rng.uniform(-1, 0, (2, 3)), "high": lambda rng: rng.uniform(1, 2, (3,))}),
    unit_values,
    ("entropy",),
)


def _build(lib, name, params, dtype, frozen=()):
    """The distribution of case ``name`` in ``lib`` and its parameter tensors (leaves that require grad,
    but for ``frozen`` ones)."""
    case = CASES[name]
    frozen = set(frozen) | set(case.frozen)
    tensors = {k: _tensor(lib, v.astype(dtype), grad=k not in frozen) for k, v in params.items()}
    return case.make(LIBS[lib], tensors), tensors


def _evaluate(dist, method, value):
    if method in ("log_prob", "cdf", "icdf"):
        return getattr(dist, method)(value)
    if method in ("entropy", "perplexity"):
        return getattr(dist, method)()
    return getattr(dist, method)


def _shape(name, params) -> tuple:
    dist, _ = _build("torch", name, params, F64)
    return tuple(dist.batch_shape) + tuple(dist.event_shape)


def _compare_with_gradients(compute, leaves, what, dtype, rng, tol=None, grad_tol=None):
    """``compute(lib, leaves(lib, dtype))`` (-> its output) in both libraries; the outputs equal, and the
    gradients of a random weighting of the output with respect to each leaf tensor of the dict
    ``leaves(lib, dtype)`` equal (to ``grad_tol``, default ``tol``). In float32 torch's float64 results are
    the reference where the two float32 results differ by more than the tolerance."""
    runs = {(lib, dtype): None for lib in LIBS}
    if dtype == F32:
        runs["torch", F64] = None
    weights = None
    for lib, run_dtype in runs:
        leaf = leaves(lib, run_dtype)
        out = compute(lib, leaf)
        weights = rng.standard_normal(tuple(out.shape)) if weights is None else weights
        if out.requires_grad:
            with np.errstate(invalid="ignore"):  # infinite outputs of both signs sum to NaN
                (out * _tensor(lib, weights.astype(_numpy(out).dtype))).sum().backward()
        grads = {
            key: _numpy(t.grad) if t.grad is not None else np.zeros(tuple(t.shape), _numpy(t).dtype)
            for key, t in leaf.items()
            if isinstance(t, (torch.Tensor, dk.Tensor)) and t.requires_grad
        }
        runs[lib, run_dtype] = (out, grads)
    (ours, our_grads), (theirs, their_grads) = runs["deepkern", dtype], runs["torch", dtype]
    reference, reference_grads = runs["torch", F64] if dtype == F32 else (None, {})
    assert_close(ours, theirs, what, dtype, tol, reference)
    assert sorted(our_grads) == sorted(their_grads), what
    for key, want in their_grads.items():
        exact = reference_grads.get(key)
        assert_close(
            dk.tensor(our_grads[key]),
            torch.tensor(want),
            f"{what}: d/d {key}",
            dtype,
            grad_tol or tol,
            None if exact is None else torch.tensor(exact),
        )


def _method_cases():
    for name, case in CASES.items():
        for method in case.methods:
            method, frozen = (method, set()) if isinstance(method, str) else method
            yield pytest.param(name, method, frozen, id=f"{name}.{method}")


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("name, method, frozen", list(_method_cases()))
def test_values_and_gradients_match_torch(name, method, frozen, dtype):
    """Each method's values, and the gradients with respect to every parameter (and the value), equal
    torch's, over broadcast batches with 4 values per event."""
    case = CASES[name]
    rng = _rng(name, method)
    params = case.params(rng)
    shape = (4,) + _shape(name, params)
    if method == "icdf":
        values = rng.uniform(0.05, 0.95, shape)
    else:
        values = np.asarray(case.value(rng, params, shape))
    differentiable = case.continuous and method in ("log_prob", "cdf", "icdf")

    def leaves(lib, dtype):
        dist, tensors = _build(lib, name, params, dtype, frozen)
        value = _tensor(lib, values.astype(dtype) if values.dtype.kind == "f" else values, grad=differentiable)
        return {**tensors, "value": value, "dist": dist}

    def compute(lib, leaf):
        return _evaluate(leaf["dist"], method, leaf["value"])

    trigamma = method == "entropy" and name in TRIGAMMA_ENTROPIES and dtype == F64
    _compare_with_gradients(compute, leaves, f"{name}.{method}", dtype, rng, grad_tol=trigamma and TRIGAMMA_TOL)


@pytest.mark.parametrize("name", CASES)
def test_shapes_flags_constraints_and_expand_match_torch(name):
    params = CASES[name].params(_rng(name, "shapes"))
    dists = {lib: _build(lib, name, params, F64)[0] for lib in LIBS}
    ours, theirs = dists["deepkern"], dists["torch"]
    assert ours.batch_shape == tuple(theirs.batch_shape) and ours.event_shape == tuple(theirs.event_shape)
    assert (ours.has_rsample, ours.has_enumerate_support) == (theirs.has_rsample, theirs.has_enumerate_support)
    assert sorted(ours.arg_constraints) == sorted(theirs.arg_constraints)
    for key, constraint in ours.arg_constraints.items():
        assert type(constraint).__name__ == type(theirs.arg_constraints[key]).__name__, key
    assert (ours.support.is_discrete, ours.support.event_dim) == (theirs.support.is_discrete, theirs.support.event_dim)
    assert repr(ours.support).split("(")[0] == repr(theirs.support).split("(")[0]
    sample = ours.sample((2,))
    assert sample.shape == (2,) + ours.batch_shape + ours.event_shape
    assert str(sample.dtype) == str(theirs.sample((2,)).dtype).replace("torch.", "")
    assert bool(ours.support.check(sample).all())
    # expand: new batch dimensions in front, the log_prob of a sample of it as torch's
    batch_shape = (5,) + ours.batch_shape
    expanded = {lib: dist.expand(batch_shape) for lib, dist in dists.items()}
    assert expanded["deepkern"].batch_shape == tuple(expanded["torch"].batch_shape) == batch_shape
    assert type(expanded["deepkern"]) is type(ours)
    value = expanded["deepkern"].sample()
    assert value.shape == batch_shape + ours.event_shape
    assert_close(
        expanded["deepkern"].log_prob(value),
        expanded["torch"].log_prob(torch.tensor(value.numpy())),
        f"{name}: log_prob of the expanded",
        F64,
    )


# -- KL divergences -----------------------------------------------------------------------------------------

#: The case standing for each family in the KL pairs.
KL_FAMILY_CASES = {
    "Bernoulli": "Bernoulli(probs)",
    "Beta": "Beta",
    "Binomial": "Binomial(probs)",
    "Categorical": "Categorical(logits)",
    "Cauchy": "Cauchy",
    "Dirichlet": "Dirichlet",
    "Exponential": "Exponential",
    "Gamma": "Gamma",
    "Geometric": "Geometric(probs)",
    "Gumbel": "Gumbel",
    "HalfNormal": "HalfNormal",
    "Independent": "Independent",
    "Laplace": "Laplace",
    "MultivariateNormal": "MultivariateNormal(scale_tril)",
    "Normal": "Normal",
    "OneHotCategorical": "OneHotCategorical",
    "Poisson": "Poisson",
    "TransformedDistribution": "LogNormal",
    "Uniform": "Uniform",
}
#: Uniforms inside [0, 1] (p of Uniform-Beta, -Exponential, -Gamma) and around it (q of Beta-Uniform), so
#: that the divergence is finite in places.
KL_SPECIAL_CASES = {
    ("Uniform", "Beta"): ("Uniform(0, 1)", "Beta"),
    ("Uniform", "Exponential"): ("Uniform(0, 1)", "Exponential"),
    ("Uniform", "Gamma"): ("Uniform(0, 1)", "Gamma"),
    ("Beta", "Uniform"): ("Beta", "Uniform(wide)"),
}


def _torch_kl_pairs():
    """The pairs of class names torch registers a KL divergence for, of the families deepkern has."""
    names = {(p.__name__, q.__name__) for p, q in TD.kl._KL_REGISTRY}
    return sorted((p, q) for p, q in names if hasattr(D, p) and hasattr(D, q))


def test_kl_registers_the_pairs_torch_registers():
    ours = {(p.__name__, q.__name__) for p, q in D.kl._KL_REGISTRY}
    assert ours == set(_torch_kl_pairs())


def _kl_cases():
    for p, q in _torch_kl_pairs():
        if (p, q) != ("ExponentialFamily", "ExponentialFamily"):
            yield KL_SPECIAL_CASES.get((p, q), (KL_FAMILY_CASES[p], KL_FAMILY_CASES[q]))
    yield "MultivariateNormal(covariance_matrix)", "MultivariateNormal(precision_matrix)"
    yield "HalfNormal", "HalfNormal"
    yield "Gumbel", "Gumbel"
    yield "Categorical(probs)", "Categorical(probs)"
    yield "Chi2", "Gamma"
    yield "Bernoulli(logits)", "Bernoulli(probs)"
    yield "Geometric(logits)", "Geometric(probs)"
    yield "Binomial(logits)", "Binomial(logits)"


#: KL pairs whose gradients take trigamma (see TRIGAMMA_TOL).
KL_TRIGAMMA = {"Beta", "Gamma", "Dirichlet", "Chi2"}


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("p_name, q_name", sorted(set(_kl_cases())))
def test_kl_divergence_matches_torch(p_name, q_name, dtype):
    """Values (inf where q does not cover p) and gradients with respect to both distributions' parameters."""
    rng = _rng("kl", p_name, q_name)
    p_params, q_params = CASES[p_name].params(rng), CASES[q_name].params(rng)

    def leaves(lib, dtype):
        p, p_tensors = _build(lib, p_name, p_params, dtype)
        q, q_tensors = _build(lib, q_name, q_params, dtype)
        return {
            **{f"p.{k}": v for k, v in p_tensors.items()},
            **{f"q.{k}": v for k, v in q_tensors.items()},
            "pq": (p, q),
        }

    def compute(lib, leaf):
        return LIBS[lib].kl_divergence(*leaf["pq"])

    trigamma = dtype == F64 and bool({p_name, q_name} & KL_TRIGAMMA)
    _compare_with_gradients(
        compute, leaves, f"KL({p_name} || {q_name})", dtype, rng, grad_tol=trigamma and TRIGAMMA_TOL
    )


def test_kl_dispatch_errors_and_register_kl_as_torch():
    def normal(M):
        return M.Normal(0.0, 1.0)

    def relaxed(M):  # a TransformedDistribution pair, whose base distributions have no KL
        return M.RelaxedBernoulli(torch_or_dk(M, 0.5), probs=0.3)

    pairs = {
        "cross exponential families": (normal, lambda M: M.Poisson(2.0), "Bregman"),
        "unregistered": (lambda M: M.Cauchy(0.0, 1.0), normal, "No KL"),
        "relaxed": (relaxed, relaxed, "No KL"),
        "binomial with more trials in q": (
            lambda M: M.Binomial(5, probs=0.3),
            lambda M: M.Binomial(8, probs=0.3),
            "total_count",
        ),
    }
    for make_p, make_q, needle in pairs.values():
        for M in LIBS.values():
            with pytest.raises(NotImplementedError, match=needle):
                M.kl_divergence(make_p(M), make_q(M))
    # the Bregman divergence of the log normalizer (the exponential families' fallback) is the closed form
    p, q = (
        D.Normal(dk.tensor([0.3, -1.0], dtype=dk.float64), 1.5),
        D.Normal(dk.tensor([1.0, 0.0], dtype=dk.float64), 0.7),
    )
    assert_close(D.kl._kl_expfamily_expfamily(p, q), D.kl_divergence(p, q), "Bregman KL", F64, 1e-10)
    for M in LIBS.values():  # a registered subclass pair wins; an ambiguous pair warns

        class Sub(M.Normal):
            pass

        try:
            M.register_kl(Sub, M.Normal)(lambda p, q: "sub")
            assert M.kl_divergence(Sub(0.0, 1.0), M.Normal(0.0, 1.0)) == "sub"
            M.register_kl(M.Normal, Sub)(lambda p, q: "normal")
            with pytest.warns(RuntimeWarning, match="Ambiguous"):
                M.kl_divergence(Sub(0.0, 1.0), Sub(0.0, 1.0))
        finally:
            for key in [(Sub, M.Normal), (M.Normal, Sub)]:
                M.kl._KL_REGISTRY.pop(key, None)
            M.kl._KL_MEMOIZE.clear()
    with pytest.raises(TypeError, match="Distribution subclass"):
        D.register_kl(int, D.Normal)


def torch_or_dk(M, value):
    """``value`` as a float32 tensor of the library of distributions module ``M``."""
    return torch.tensor(value) if M is not D else dk.tensor(value)


# -- the edges of the supports -----------------------------------------------------------------------------

#: name -> (make(M, T) -> (distribution, method, value, leaves)), T making tensors of M's library that require
#: grad; evaluated with validate_args=False, on probabilities 0 and 1 and values at and beyond the bounds.
EDGES = {
    "Bernoulli at probs 0 and 1": lambda M, T: (
        M.Bernoulli(probs=(p := T([0.0, 1.0, 0.0, 1.0, 0.5]))),
        "log_prob",
        T([0.0, 1.0, 1.0, 0.0, 1.0], False),
        [p],
    ),
    "Bernoulli entropy at 0 and 1": lambda M, T: (M.Bernoulli(probs=(p := T([0.0, 1.0, 0.3]))), "entropy", None, [p]),
    "Categorical with zero probs": lambda M, T: (
        M.Categorical(probs=(p := T([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]))),
        "log_prob",
        T([[0, 1], [0, 2]], False).long().mT,
        [p],
    ),
    "Categorical entropy with zero probs": lambda M, T: (
        M.Categorical(probs=(p := T([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]))),
        "entropy",
        None,
        [p],
    ),
    "Uniform at its bounds": lambda M, T: (
        M.Uniform((lo := T([0.0])), (hi := T([2.0]))),
        "log_prob",
        T([-1.0, 0.0, 1.0, 2.0, 3.0]),
        [lo, hi],
    ),
    "Uniform cdf beyond its bounds": lambda M, T: (
        M.Uniform((lo := T([0.0])), (hi := T([2.0]))),
        "cdf",
        T([-1.0, 0.0, 1.0, 2.0, 3.0]),
        [lo, hi],
    ),
    "Uniform icdf at 0 and 1": lambda M, T: (
        M.Uniform((lo := T([-1.0])), (hi := T([2.0]))),
        "icdf",
        T([0.0, 1.0]),
        [lo, hi],
    ),
    "Geometric at probs 1": lambda M, T: (
        M.Geometric(probs=(p := T([1.0, 1.0, 0.5]))),
        "log_prob",
        T([0.0, 1.0, 0.0], False),
        [p],
    ),
    "Binomial at probs 0 and 1": lambda M, T: (
        M.Binomial(4, probs=(p := T([0.0, 1.0, 0.0, 1.0]))),
        "log_prob",
        T([0.0, 4.0, 2.0, 2.0], False),
        [p],
    ),
    "Poisson at 0": lambda M, T: (M.Poisson((r := T([0.5, 3.0]))), "log_prob", T([0.0, 0.0], False), [r]),
    "Exponential at 0": lambda M, T: (M.Exponential((r := T([0.5]))), "log_prob", T([0.0]), [r]),
    "Exponential icdf at 0 and 1": lambda M, T: (M.Exponential((r := T([0.5]))), "icdf", T([0.0, 1.0]), [r]),
    "Gamma at 0": lambda M, T: (
        M.Gamma((a := T([1.0, 2.0, 0.5])), (b := T([1.5]))),
        "log_prob",
        T([0.0, 0.0, 0.0]),
        [a, b],
    ),
    "Gamma cdf at 0 and inf": lambda M, T: (
        M.Gamma(T([2.0], False), (b := T([1.5]))),
        "cdf",
        T([0.0, math.inf, 1.0]),
        [b],
    ),
    "Beta at 0 and 1": lambda M, T: (
        M.Beta((a := T([1.0, 2.0, 1.0])), (b := T([1.0, 1.0, 3.0]))),
        "log_prob",
        T([0.0, 0.0, 1.0]),
        [a, b],
    ),
    "Dirichlet on a face": lambda M, T: (M.Dirichlet((c := T([1.0, 2.0, 0.5]))), "log_prob", T([[0.0, 0.5, 0.5]]), [c]),
    "HalfNormal below 0": lambda M, T: (M.HalfNormal((s := T([1.5]))), "log_prob", T([-1.0, 0.0, 1.0]), [s]),
    "Laplace at its mode": lambda M, T: (
        M.Laplace((m := T([0.5])), (s := T([2.0]))),
        "log_prob",
        T([0.5, 0.5]),
        [m, s],
    ),
    "Normal icdf at 0 and 1": lambda M, T: (
        M.Normal((m := T([0.5])), (s := T([2.0]))),
        "icdf",
        T([0.0, 1.0, 0.5]),
        [m, s],
    ),
    "Normal cdf at infinities": lambda M, T: (
        M.Normal((m := T([0.5])), (s := T([2.0]))),
        "cdf",
        T([-math.inf, math.inf, 0.5]),
        [m, s],
    ),
    "KL Bernoulli at 0 and 1": lambda M, T: (
        None,
        lambda: M.kl_divergence(
            M.Bernoulli(probs=T([0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.0, 1.0, 0.5])),
            M.Bernoulli(probs=T([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5])),
        ),
        None,
        [],
    ),
    "KL Categorical with zero probs": lambda M, T: (
        None,
        lambda: M.kl_divergence(
            M.Categorical(probs=T([[0.0, 1.0], [0.5, 0.5]])), M.Categorical(probs=T([[0.5, 0.5], [1.0, 0.0]]))
        ),
        None,
        [],
    ),
}


@pytest.mark.parametrize("name", EDGES)
def test_support_edges_match_torch(name):
    """Values (inf, NaN and all) and gradients as torch's where the support and the parameters end."""
    rng = _rng("edges", name)

    def leaves(lib, dtype):
        made = []

        def T(values, grad=True):
            t = _tensor(lib, np.asarray(values, dtype=dtype), grad)
            made.append(t)
            return t

        dist, method, value, _ = EDGES[name](LIBS[lib], T)
        return {**{str(i): t for i, t in enumerate(made)}, "call": (dist, method, value)}

    def compute(lib, leaf):
        dist, method, value = leaf["call"]
        if dist is None:
            return method()
        dist._validate_args = False
        return _evaluate(dist, method, value)

    _compare_with_gradients(compute, leaves, name, F64, rng)


# -- finite differences -----------------------------------------------------------------------------------


def _leaf(values):
    return dk.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


GRADCHECKS = {
    "Normal.log_prob": (
        lambda m, s, x: D.Normal(m, s).log_prob(x),
        [[0.3, -1.0], [1.5, 0.7], [[0.1, 0.2], [-2.0, 1.0]]],
    ),
    "Gamma.log_prob": (lambda a, b, x: D.Gamma(a, b).log_prob(x), [[0.7, 3.0], [1.5, 0.4], [[0.5, 2.0], [3.0, 0.1]]]),
    "Gamma.cdf": (lambda b, x: D.Gamma(dk.tensor([0.7, 3.0], dtype=dk.float64), b).cdf(x), [[1.5, 0.4], [0.5, 2.0]]),
    "Beta.entropy": (lambda a, b: D.Beta(a, b).entropy(), [[0.7, 3.0], [1.5, 0.4]]),
    "Dirichlet.log_prob": (
        lambda c, x: D.Dirichlet(c, validate_args=False).log_prob(x),
        [[0.7, 3.0, 1.2], [0.2, 0.3, 0.5]],
    ),
    "StudentT.log_prob": (lambda df, x: D.StudentT(df, 0.5, 2.0).log_prob(x), [[1.5, 4.0], [0.3, -2.0]]),
    "MultivariateNormal.log_prob": (
        lambda m, L, x: D.MultivariateNormal(m, scale_tril=L.tril()).log_prob(x),
        [[0.3, -1.0], [[1.5, 0.0], [0.4, 0.8]], [[0.2, 0.1], [1.0, -1.0]]],
    ),
    "MultivariateNormal(precision).entropy": (
        lambda P: D.MultivariateNormal(dk.zeros(2, dtype=dk.float64), precision_matrix=P @ P.mT).entropy(),
        [[[1.5, 0.3], [0.4, 0.8]]],
    ),
    "Categorical.log_prob": (lambda z: D.Categorical(logits=z).log_prob(dk.tensor([0, 2])), [[0.3, -1.0, 2.0]]),
    "Binomial.log_prob": (lambda z: D.Binomial(6, logits=z).log_prob(dk.tensor([0.0, 3.0, 6.0])), [[0.3, -1.0, 2.0]]),
    "RelaxedOneHotCategorical.log_prob": (
        lambda t, z, x: D.RelaxedOneHotCategorical(t, logits=z, validate_args=False).log_prob(x),
        [0.7, [0.3, -1.0, 2.0], [0.2, 0.5, 0.3]],
    ),
    "TanhTransform (SAC) log_prob": (
        lambda m, s, x: D.TransformedDistribution(D.Normal(m, s), [D.TanhTransform()]).log_prob(x),
        [[0.3, -1.0], [1.5, 0.7], [0.9, -0.2]],
    ),
    "kl Normal-Normal": (lambda m, s: D.kl_divergence(D.Normal(m, s), D.Normal(0.2, 1.3)), [[0.3, -1.0], [1.5, 0.7]]),
    "kl Beta-Beta": (lambda a, b: D.kl_divergence(D.Beta(a, b), D.Beta(b, a)), [[0.7, 3.0], [1.5, 0.4]]),
    "kl MultivariateNormal": (
        lambda L, C: D.kl_divergence(
            D.MultivariateNormal(dk.zeros(2, dtype=dk.float64), scale_tril=L.tril()),
            D.MultivariateNormal(
                dk.ones(2, dtype=dk.float64), covariance_matrix=C @ C.mT + dk.eye(2, dtype=dk.float64)
            ),
        ),
        [[[1.5, 0.0], [0.4, 0.8]], [[1.0, 0.3], [-0.2, 0.5]]],
    ),
}


@pytest.mark.parametrize("name", GRADCHECKS)
def test_gradients_by_finite_differences(name):
    fn, inputs = GRADCHECKS[name]
    gradcheck(fn, *(_leaf(v) for v in inputs))


# -- sampling ---------------------------------------------------------------------------------------------

#: make(M, T): a distribution of module M with parameters made by T (a tensor of M's library) of batch (2,).
SAMPLED = {
    "Normal": lambda M, T: M.Normal(T([0.5, -1.0]), T([1.0, 2.5])),
    "Uniform": lambda M, T: M.Uniform(T([0.0, -2.0]), T([1.0, 3.0])),
    "Laplace": lambda M, T: M.Laplace(T([0.5, -1.0]), T([1.0, 0.3])),
    "Cauchy": lambda M, T: M.Cauchy(T([0.5, -1.0]), T([1.0, 0.3])),
    "Exponential": lambda M, T: M.Exponential(T([0.5, 3.0])),
    "Gamma": lambda M, T: M.Gamma(T([0.3, 4.0]), T([1.0, 2.0])),
    "Chi2": lambda M, T: M.Chi2(T([1.0, 5.0])),
    "Beta": lambda M, T: M.Beta(T([0.5, 3.0]), T([2.0, 0.7])),
    "Dirichlet": lambda M, T: M.Dirichlet(T([[0.5, 1.0, 2.0], [3.0, 3.0, 3.0]])),
    "StudentT": lambda M, T: M.StudentT(T([6.0, 9.0]), T([0.5, 0.0]), T([1.0, 2.0])),
    "HalfNormal": lambda M, T: M.HalfNormal(T([1.0, 0.5])),
    "LogNormal": lambda M, T: M.LogNormal(T([0.0, 1.0]), T([0.3, 0.5])),
    "Gumbel": lambda M, T: M.Gumbel(T([0.0, 1.0]), T([1.0, 0.5])),
    "MultivariateNormal": lambda M, T: M.MultivariateNormal(
        T([[0.0, 1.0], [2.0, -1.0]]), scale_tril=T([[1.0, 0.0], [0.5, 0.7]])
    ),
    "Bernoulli": lambda M, T: M.Bernoulli(probs=T([0.2, 0.7])),
    "Binomial": lambda M, T: M.Binomial(T([5.0, 12.0]), probs=T([0.3, 0.8])),
    "Categorical": lambda M, T: M.Categorical(probs=T([[0.2, 0.0, 0.5, 0.3], [0.1, 0.1, 0.1, 0.7]])),
    "OneHotCategorical": lambda M, T: M.OneHotCategorical(logits=T([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0]])),
    "OneHotCategoricalStraightThrough": lambda M, T: M.OneHotCategoricalStraightThrough(
        probs=T([[0.2, 0.8], [0.5, 0.5]])
    ),
    "Geometric": lambda M, T: M.Geometric(probs=T([0.3, 0.8])),
    "Poisson": lambda M, T: M.Poisson(T([0.5, 7.0])),
    "Multinomial": lambda M, T: M.Multinomial(6, probs=T([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])),
    "RelaxedBernoulli": lambda M, T: M.RelaxedBernoulli(T(0.5), probs=T([0.2, 0.7])),
    "RelaxedOneHotCategorical": lambda M, T: M.RelaxedOneHotCategorical(
        T(0.5), probs=T([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    ),
    "Independent": lambda M, T: M.Independent(M.Normal(T([[0.0, 1.0], [2.0, 3.0]]), T([1.0, 2.0])), 1),
    "MixtureSameFamily": lambda M, T: M.MixtureSameFamily(
        M.Categorical(probs=T([[0.3, 0.7], [0.5, 0.5]])), M.Normal(T([[-1.0, 2.0], [0.0, 0.5]]), T([0.5, 1.0]))
    ),
    "TransformedDistribution(tanh)": lambda M, T: M.TransformedDistribution(
        M.Normal(T([0.3, -1.0]), T([1.0, 0.5])), [M.transforms.TanhTransform()]
    ),
}
N = 20000


def _sampled(lib, name, dtype):
    return SAMPLED[name](LIBS[lib], lambda values: _tensor(lib, np.asarray(values, dtype=dtype)))


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", SAMPLED)
def test_sample_shape_dtype_support_and_reproducibility(name, dtype):
    dist, theirs = _sampled("deepkern", name, dtype), _sampled("torch", name, dtype)
    methods = ["sample"] + (["rsample"] if dist.has_rsample else [])
    assert dist.has_rsample == theirs.has_rsample
    for method in methods:
        for sample_shape in [(), (3,), (2, 3)]:
            dk.manual_seed(7)
            x = getattr(dist, method)(sample_shape)
            assert x.shape == sample_shape + dist.batch_shape + dist.event_shape, (method, sample_shape)
            assert str(x.dtype) == str(theirs.sample(sample_shape).dtype).replace("torch.", ""), method
            assert bool(dist.support.check(x).all()), f"{method}: values outside the support"
            dk.manual_seed(7)
            np.testing.assert_array_equal(getattr(dist, method)(sample_shape).numpy(), x.numpy())
        assert not np.array_equal(getattr(dist, method)((50,)).numpy(), getattr(dist, method)((50,)).numpy())


def _within(got, want, se, what):
    """``got`` within 5 standard errors ``se`` (plus the resolution of N draws) of ``want``."""
    bad = np.abs(got - want) > 5 * se + 3 / N
    assert not bad.any(), f"{what}: {got[bad]} vs {want[bad]} (standard error {np.broadcast_to(se, bad.shape)[bad]})"


@pytest.mark.parametrize("name", SAMPLED)
def test_sample_moments_and_quantiles(name):
    """Mean and variance of 20000 draws (where finite), the frequencies of the values of discrete scalars
    against exp(log_prob), and the cdf at the draws' quartiles, each within 5 standard errors."""
    dist = _sampled("deepkern", name, F64)
    dk.manual_seed(11)
    x = dist.sample((N,)).numpy().astype(np.float64)
    checked = 0
    try:
        mean, variance = dist.mean.numpy(), dist.variance.numpy()
    except NotImplementedError:
        mean = variance = np.full(x.shape[1:], np.nan)
    finite = np.isfinite(mean) & np.isfinite(variance)
    if finite.any():
        deviation2 = (x - x.mean(0)) ** 2
        _within(x.mean(0)[finite], mean[finite], (x.std(0) / math.sqrt(N))[finite], "mean")
        _within(deviation2.mean(0)[finite], variance[finite], (deviation2.std(0) / math.sqrt(N))[finite], "variance")
        checked += 1
    if dist.support.is_discrete and not dist.event_shape:
        dist._validate_args = False  # values beyond a Binomial's total count have probability 0
        for k in range(int(min(x.max(), 40)) + 1):
            p = (
                dist.log_prob(dk.full(dist.batch_shape, float(k), dtype=dk.float64).to(dist.sample().dtype))
                .exp()
                .numpy()
            )
            _within((x == k).mean(0), p, np.sqrt(p * (1 - p) / N), f"frequency of {k}")
        checked += 1
    elif not dist.event_shape and name not in ("Beta", "StudentT", "RelaxedBernoulli"):  # those have no cdf
        quartiles = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
        cdf = dist.cdf(dk.tensor(quartiles)).numpy()
        levels = np.array([0.25, 0.5, 0.75])[:, None]
        _within(cdf, np.broadcast_to(levels, cdf.shape), np.sqrt(levels * (1 - levels) / N), "cdf at the quartiles")
        checked += 1
    if name == "RelaxedBernoulli":  # P(X > 1/2) = P(logistic noise > -logit(p)) = p at any temperature
        _within((x > 0.5).mean(0), dist.probs.numpy(), np.sqrt(0.25 / N), "P(X > 1/2)")
        checked += 1
    if name == "RelaxedOneHotCategorical":  # the Gumbel-max trick: P(argmax = k) = p_k at any temperature
        frequencies = (x.argmax(-1)[..., None] == np.arange(3)).mean(0)
        _within(frequencies, dist.probs.numpy(), np.sqrt(0.25 / N), "P(argmax = k)")
        checked += 1
    assert checked, "nothing was checked"


# -- reparameterized gradients ----------------------------------------------------------------------------

EULER = 0.5772156649015329

#: name -> (params: {name: scalar value}, make(**per-sample leaves) -> distribution, f(sample) -> per-sample
#: statistic, {param: d E[f] / d param}); each draw gets its own copy of the parameters, so their gradients
#: are the per-draw derivatives, whose mean estimates d E[f] / d param.
RSAMPLE_GRADIENTS = {
    "Normal E[x^2]": ({"m": 0.7, "s": 1.3}, lambda m, s: D.Normal(m, s), lambda x: x**2, {"m": 1.4, "s": 2.6}),
    "Uniform E[x^2]": (
        {"lo": -0.5, "hi": 2.0},
        lambda lo, hi: D.Uniform(lo, hi),
        lambda x: x**2,
        {"lo": (2 * -0.5 + 2.0) / 3, "hi": (2 * 2.0 - 0.5) / 3},
    ),
    "Laplace E[x^2]": ({"m": 0.7, "b": 1.3}, lambda m, b: D.Laplace(m, b), lambda x: x**2, {"m": 1.4, "b": 4 * 1.3}),
    "Exponential E[x]": ({"r": 2.0}, lambda r: D.Exponential(r), lambda x: x, {"r": -1 / 4.0}),
    "Gamma(0.4) E[x]": ({"a": 0.4, "r": 2.0}, lambda a, r: D.Gamma(a, r), lambda x: x, {"a": 0.5, "r": -0.4 / 4}),
    "Gamma(3) E[x]": ({"a": 3.0, "r": 2.0}, lambda a, r: D.Gamma(a, r), lambda x: x, {"a": 0.5, "r": -3.0 / 4}),
    "Gamma(20) E[x]": ({"a": 20.0, "r": 0.5}, lambda a, r: D.Gamma(a, r), lambda x: x, {"a": 2.0, "r": -20.0 / 0.25}),
    "Chi2 E[x]": ({"k": 3.0}, lambda k: D.Chi2(k), lambda x: x, {"k": 1.0}),
    "Beta E[x]": (
        {"a": 0.8, "b": 2.5},
        lambda a, b: D.Beta(a, b),
        lambda x: x,
        {"a": 2.5 / 3.3**2, "b": -0.8 / 3.3**2},
    ),
    "StudentT E[x^2]": (
        {"df": 9.0, "m": 0.5, "s": 1.5},
        lambda df, m, s: D.StudentT(df, m, s),
        lambda x: x**2,
        {"df": -2 * 1.5**2 / 7**2, "m": 1.0, "s": 2 * 1.5 * 9 / 7},
    ),
    "LogNormal E[x]": (
        {"m": 0.2, "s": 0.5},
        lambda m, s: D.LogNormal(m, s),
        lambda x: x,
        {"m": math.exp(0.2 + 0.125), "s": 0.5 * math.exp(0.2 + 0.125)},
    ),
    "HalfNormal E[x]": ({"s": 1.5}, lambda s: D.HalfNormal(s), lambda x: x, {"s": math.sqrt(2 / math.pi)}),
    "Gumbel E[x]": ({"m": 0.5, "s": 2.0}, lambda m, s: D.Gumbel(m, s), lambda x: x, {"m": 1.0, "s": EULER}),
    "Independent(Normal) E[x^2]": (
        {"m": 0.7, "s": 1.3},
        lambda m, s: D.Independent(D.Normal(m.unsqueeze(-1), s.unsqueeze(-1)), 1),
        lambda x: x.sum(-1) ** 2,
        {"m": 1.4, "s": 2.6},
    ),
}


@pytest.mark.parametrize("name", RSAMPLE_GRADIENTS)
def test_rsample_gradients_estimate_the_analytic_derivative(name):
    values, make, f, expected = RSAMPLE_GRADIENTS[name]
    leaves = {k: dk.full((N,), v, dtype=dk.float64, requires_grad=True) for k, v in values.items()}
    dk.manual_seed(3)
    f(make(**leaves).rsample()).sum().backward()
    for key, want in expected.items():
        per_draw = leaves[key].grad.numpy()
        _within(np.array([per_draw.mean()]), np.array([want]), per_draw.std() / math.sqrt(N), f"{name}: d/d {key}")


def test_multivariate_and_dirichlet_rsample_gradients_estimate_the_analytic_derivative():
    """E[|x|^2] = |loc|^2 + |L|^2 for MultivariateNormal; E[x_0] = c_0 / sum(c) for Dirichlet."""
    loc = dk.tensor(np.tile([0.5, -1.0], (N, 1)), requires_grad=True)
    scale_tril = dk.tensor(np.tile([[1.2, 0.0], [0.4, 0.7]], (N, 1, 1)), requires_grad=True)
    dk.manual_seed(4)
    D.MultivariateNormal(loc, scale_tril=scale_tril).rsample().pow(2).sum().backward()
    for leaf, value in ((loc, [0.5, -1.0]), (scale_tril, [[1.2, 0.0], [0.4, 0.7]])):
        per_draw = leaf.grad.numpy()
        _within(per_draw.mean(0), 2 * np.array(value), per_draw.std(0) / math.sqrt(N), "MultivariateNormal")
    c = np.array([0.6, 2.0, 1.4])
    concentration = dk.tensor(np.tile(c, (N, 1)), requires_grad=True)
    D.Dirichlet(concentration).rsample()[:, 0].sum().backward()
    per_draw = concentration.grad.numpy()
    want = np.array([c.sum() - c[0], -c[0], -c[0]]) / c.sum() ** 2
    _within(per_draw.mean(0), want, per_draw.std(0) / math.sqrt(N), "Dirichlet")


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
def test_gamma_and_dirichlet_rsample_gradients_equal_torchs_at_the_draws(dtype):
    """The implicit gradients at deepkern's draws equal torch's _standard_gamma_grad and Dirichlet backward
    at the same draws, over concentrations reaching each branch of their approximations."""
    rng = _rng("implicit", dtype)
    alpha = np.repeat([0.05, 0.4, 0.9, 2.0, 5.0, 7.9, 9.0, 30.0, 200.0], 300).astype(dtype)
    rate = rng.uniform(0.5, 2.0, alpha.shape).astype(dtype)
    a, r = dk.tensor(alpha, requires_grad=True), dk.tensor(rate, requires_grad=True)
    x = D.Gamma(a, r).rsample()
    x.backward(dk.ones(x.shape, dtype=dtype))
    standard = torch.tensor(x.detach().numpy()) * torch.tensor(rate)
    want = torch._standard_gamma_grad(torch.tensor(alpha), standard) / torch.tensor(rate)
    assert_close(a.grad, want, "Gamma: d x / d concentration", dtype)
    assert_close(r.grad, -torch.tensor(x.detach().numpy()) / torch.tensor(rate), "Gamma: d x / d rate", dtype)

    concentration = np.exp(rng.uniform(-2.5, 4.0, (400, 3))).astype(dtype)
    c = dk.tensor(concentration, requires_grad=True)
    y = D.Dirichlet(c).rsample()
    weights = rng.standard_normal(y.shape).astype(dtype)
    y.backward(dk.tensor(weights))
    draws = torch.tensor(y.detach().numpy())
    want = TD.dirichlet._Dirichlet_backward(draws, torch.tensor(concentration), torch.tensor(weights))
    # PyTorch computes the Taylor branches near 0 and 1 in float32 for float32 draws, deepkern in float64
    assert_close(c.grad, want, "Dirichlet: backward", dtype, 1e-10 if dtype == F64 else 1e-4)


# -- validation -------------------------------------------------------------------------------------------

#: what -> (make(M, T), needles the message names); each raises the same exception type in both libraries.
INVALID = {
    "Normal with a negative scale": (
        lambda M, T: M.Normal(T([0.0, 1.0]), T([1.0, -1.0])),
        ["scale", r"\(2,\)", "GreaterThan"],
    ),
    "Normal with a NaN loc": (lambda M, T: M.Normal(T([math.nan]), T([1.0])), ["loc", "Real"]),
    "Bernoulli probs above 1": (lambda M, T: M.Bernoulli(probs=T([0.5, 1.5])), ["probs", r"\(2,\)"]),
    "Bernoulli with probs and logits": (lambda M, T: M.Bernoulli(probs=T([0.5]), logits=T([0.0])), ["probs", "logits"]),
    "Bernoulli with neither": (lambda M, T: M.Bernoulli(), ["probs", "logits"]),
    "Categorical of a 0-d probs": (lambda M, T: M.Categorical(probs=T(0.5)), ["probs", "one-dimensional"]),
    "Categorical of negative probs": (lambda M, T: M.Categorical(probs=T([[0.5, -0.1]])), ["probs", "Simplex"]),
    "Uniform with low above high": (lambda M, T: M.Uniform(T([0.0, 2.0]), T([1.0, 1.0])), ["low", "LessThan"]),
    "Gamma with a zero concentration": (lambda M, T: M.Gamma(T([0.0]), T([1.0])), ["concentration"]),
    "Beta with a negative concentration0": (lambda M, T: M.Beta(T([1.0]), T([-1.0])), ["concentration"]),
    "Dirichlet of a 0-d concentration": (lambda M, T: M.Dirichlet(T(1.0)), ["concentration", "one-dimensional"]),
    "Dirichlet of a negative concentration": (lambda M, T: M.Dirichlet(T([1.0, -1.0])), ["concentration"]),
    "Exponential of a zero rate": (lambda M, T: M.Exponential(T([0.0, 1.0])), ["rate"]),
    "Poisson of a negative rate": (lambda M, T: M.Poisson(T([-1.0])), ["rate"]),
    "Geometric of probs 0": (lambda M, T: M.Geometric(probs=T([0.0, 0.5])), ["probs", "positive"]),
    "Binomial of a fractional count": (lambda M, T: M.Binomial(T([2.5]), probs=T([0.5])), ["total_count"]),
    "Multinomial of a tensor count": (lambda M, T: M.Multinomial(T([2.0]), probs=T([0.5, 0.5])), ["inhomogeneous"]),
    "StudentT of a negative df": (lambda M, T: M.StudentT(T([-1.0])), ["df"]),
    "LogNormal of a zero scale": (lambda M, T: M.LogNormal(T([0.0]), T([0.0])), ["scale"]),
    "MultivariateNormal of a 0-d loc": (lambda M, T: M.MultivariateNormal(T(0.0), scale_tril=T([[1.0]])), ["loc"]),
    "MultivariateNormal without a matrix": (lambda M, T: M.MultivariateNormal(T([0.0, 0.0])), ["Exactly one"]),
    "MultivariateNormal with two matrices": (
        lambda M, T: M.MultivariateNormal(T([0.0]), covariance_matrix=T([[1.0]]), scale_tril=T([[1.0]])),
        ["Exactly one"],
    ),
    "MultivariateNormal of a 1-d matrix": (
        lambda M, T: M.MultivariateNormal(T([0.0]), covariance_matrix=T([1.0])),
        ["covariance_matrix", "two-dimensional"],
    ),
    "MultivariateNormal of an indefinite covariance": (
        lambda M, T: M.MultivariateNormal(T([0.0, 0.0]), covariance_matrix=T([[1.0, 2.0], [2.0, 1.0]])),
        ["covariance_matrix", "PositiveDefinite"],
    ),
    "MultivariateNormal of an asymmetric precision": (
        lambda M, T: M.MultivariateNormal(T([0.0, 0.0]), precision_matrix=T([[1.0, 0.5], [0.0, 1.0]])),
        ["precision_matrix"],
    ),
    "MultivariateNormal of an upper scale_tril": (
        lambda M, T: M.MultivariateNormal(T([0.0, 0.0]), scale_tril=T([[1.0, 0.5], [0.0, 1.0]])),
        ["scale_tril", "LowerCholesky"],
    ),
    "Independent of too many dims": (
        lambda M, T: M.Independent(M.Normal(T([0.0]), T([1.0])), 2),
        ["reinterpreted_batch_ndims"],
    ),
    "MixtureSameFamily of a Normal mixture": (
        lambda M, T: M.MixtureSameFamily(M.Normal(T([0.0]), T([1.0])), M.Normal(T([0.0]), T([1.0]))),
        ["Categorical"],
    ),
    "MixtureSameFamily of a wrong count": (
        lambda M, T: M.MixtureSameFamily(M.Categorical(probs=T([0.5, 0.5])), M.Normal(T([0.0, 1.0, 2.0]), T([1.0]))),
        [r"\(2\)", r"\(3\)"],
    ),
    "TransformedDistribution of a non-transform": (
        lambda M, T: M.TransformedDistribution(M.Normal(T([0.0]), T([1.0])), "exp"),
        ["transforms"],
    ),
    "log_prob outside the support": (lambda M, T: M.Bernoulli(probs=T([0.3])).log_prob(T([0.5])), ["value", "Boolean"]),
    "log_prob of a negative Gamma value": (lambda M, T: M.Gamma(T([1.0]), T([1.0])).log_prob(T([-1.0])), ["value"]),
    "log_prob of a category out of range": (
        lambda M, T: M.Categorical(probs=T([0.5, 0.5])).log_prob(T([2.0])),
        ["value", "IntegerInterval"],
    ),
    "log_prob of a vector off the simplex": (
        lambda M, T: M.Dirichlet(T([1.0, 1.0])).log_prob(T([0.5, 0.6])),
        ["Simplex"],
    ),
    "log_prob of a value of the wrong event shape": (
        lambda M, T: M.MultivariateNormal(T([0.0, 0.0]), scale_tril=T([[1.0, 0.0], [0.0, 1.0]])).log_prob(T([0.0])),
        ["event_shape"],
    ),
    "log_prob of a value of another batch": (
        lambda M, T: M.Normal(T([0.0, 1.0, 2.0]), T([1.0])).log_prob(T([0.0, 1.0])),
        ["broadcastable", r"\(2,\)"],
    ),
    "log_prob of a number": (lambda M, T: M.Normal(T([0.0]), T([1.0])).log_prob(0.5), ["must be a Tensor"]),
    "cdf outside the support": (lambda M, T: M.Uniform(T([0.0]), T([1.0])).cdf(T([2.0])), ["value", "Interval"]),
    "Gamma.cdf differentiated in the concentration": (
        lambda M, T: M.Gamma(T([2.0], True), T([1.0])).cdf(T([1.0])).sum().backward(),
        ["derivative for 'igamma: input' is not implemented"],
    ),
}


def _raised(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return error
    raise AssertionError("nothing was raised")


@pytest.mark.parametrize("what", INVALID)
def test_invalid_arguments_raise_torchs_errors(what):
    make, needles = INVALID[what]
    errors = {
        lib: _raised(
            lambda lib=lib: make(
                LIBS[lib], lambda v, grad=False, lib=lib: _tensor(lib, np.asarray(v, np.float32), grad)
            )
        )
        for lib in LIBS
    }
    assert isinstance(errors["deepkern"], type(errors["torch"])), (errors["deepkern"], errors["torch"])
    for needle in needles:
        assert re.search(needle, str(errors["deepkern"])), (needle, str(errors["deepkern"]))


def test_validation_switches():
    """validate_args=False, and Distribution.set_default_validate_args(False), skip the checks."""
    assert D.Normal(0.0, -1.0, validate_args=False).scale.item() == -1.0
    assert D.Bernoulli(probs=0.3, validate_args=False).log_prob(dk.tensor(0.5)).shape == ()
    with pytest.raises(ValueError):
        D.Distribution.set_default_validate_args("yes")
    try:
        D.Distribution.set_default_validate_args(False)
        assert D.Normal(0.0, -1.0).scale.item() == -1.0
        with pytest.raises(ValueError, match="scale"):
            D.Normal(0.0, -1.0, validate_args=True)
    finally:
        D.Distribution.set_default_validate_args(True)
    with pytest.raises(ValueError, match="scale"):
        D.Normal(0.0, -1.0)


# -- the rest of the API ----------------------------------------------------------------------------------

ENUMERATED = {
    "Bernoulli": lambda M, T: M.Bernoulli(probs=T([[0.2, 0.7, 0.5]])),
    "Binomial": lambda M, T: M.Binomial(4, logits=T([0.2, -0.7])),
    "Categorical": lambda M, T: M.Categorical(logits=T([[0.2, 0.7, 0.5], [0.0, 1.0, 2.0]])),
    "OneHotCategorical": lambda M, T: M.OneHotCategorical(probs=T([[0.2, 0.3, 0.5]])),
    "Independent(Bernoulli, 0)": lambda M, T: M.Independent(M.Bernoulli(probs=T([0.2, 0.7])), 0),
}


@pytest.mark.parametrize("name", ENUMERATED)
def test_enumerate_support_matches_torch(name):
    dists = {lib: ENUMERATED[name](LIBS[lib], lambda v, lib=lib: _tensor(lib, np.asarray(v))) for lib in LIBS}
    for expand in (True, False):
        assert_close(
            dists["deepkern"].enumerate_support(expand),
            dists["torch"].enumerate_support(expand),
            f"{name}: {expand}",
            F64,
        )
    support = dists["deepkern"].enumerate_support()
    assert_close(
        dists["deepkern"].log_prob(support), dists["torch"].log_prob(_torch(support)), f"{name}: log_prob", F64
    )


def _torch(t):
    return torch.tensor(t.numpy())


def test_enumeration_errors_as_torch():
    for M in LIBS.values():
        with pytest.raises(NotImplementedError, match="Inhomogeneous"):
            M.Binomial(torch_or_dk(M, [2.0, 3.0]), probs=torch_or_dk(M, [0.5, 0.5])).enumerate_support()
        with pytest.raises(NotImplementedError, match="cartesian"):
            M.Independent(M.Bernoulli(probs=torch_or_dk(M, [0.5, 0.5])), 1).enumerate_support()
        with pytest.raises(NotImplementedError):
            M.Normal(0.0, 1.0).enumerate_support()


CONSTRAINTS = {
    "real": (lambda C: C.real, [0.0, -math.inf, math.nan, 2.0]),
    "positive": (lambda C: C.positive, [0.0, 1.0, -1.0, math.inf]),
    "nonnegative": (lambda C: C.nonnegative, [0.0, 1.0, -1.0]),
    "unit_interval": (lambda C: C.unit_interval, [0.0, 1.0, 1.5, -0.1]),
    "interval": (lambda C: C.interval(-1.0, 2.0), [-1.0, 2.0, 2.5]),
    "half_open_interval": (lambda C: C.half_open_interval(-1.0, 2.0), [-1.0, 2.0, 0.0]),
    "greater_than": (lambda C: C.greater_than(1.0), [1.0, 1.5]),
    "greater_than_eq": (lambda C: C.greater_than_eq(1.0), [1.0, 0.5]),
    "less_than": (lambda C: C.less_than(1.0), [1.0, 0.5]),
    "boolean": (lambda C: C.boolean, [0.0, 1.0, 0.5]),
    "nonnegative_integer": (lambda C: C.nonnegative_integer, [0.0, 3.0, 1.5, -1.0]),
    "positive_integer": (lambda C: C.positive_integer, [0.0, 3.0, 1.5]),
    "integer_interval": (lambda C: C.integer_interval(0, 3), [0.0, 3.0, 4.0, 1.5]),
    "simplex": (lambda C: C.simplex, [[0.2, 0.8], [0.5, 0.6], [-0.1, 1.1]]),
    "one_hot": (lambda C: C.one_hot, [[0.0, 1.0], [1.0, 1.0], [0.5, 0.5]]),
    "real_vector": (lambda C: C.real_vector, [[0.0, 1.0], [math.nan, 1.0]]),
    "independent": (lambda C: C.independent(C.positive, 1), [[1.0, 2.0], [1.0, -2.0]]),
    "multinomial": (lambda C: C.multinomial(3), [[1.0, 2.0], [2.0, 2.0], [-1.0, 2.0]]),
    "lower_triangular": (lambda C: C.lower_triangular, [[[1.0, 0.0], [2.0, -1.0]], [[1.0, 1.0], [0.0, 1.0]]]),
    "lower_cholesky": (lambda C: C.lower_cholesky, [[[1.0, 0.0], [2.0, 1.0]], [[1.0, 0.0], [2.0, -1.0]]]),
    "corr_cholesky": (lambda C: C.corr_cholesky, [[[1.0, 0.0], [0.6, 0.8]], [[1.0, 0.0], [0.6, 0.9]]]),
    "square": (lambda C: C.square, [[[1.0, 0.0], [2.0, 1.0]]]),
    "symmetric": (lambda C: C.symmetric, [[[1.0, 2.0], [2.0, 1.0]], [[1.0, 2.0], [0.0, 1.0]]]),
    "positive_definite": (lambda C: C.positive_definite, [[[2.0, 1.0], [1.0, 2.0]], [[1.0, 2.0], [2.0, 1.0]]]),
    "positive_semidefinite": (lambda C: C.positive_semidefinite, [[[1.0, 1.0], [1.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]]]),
    "cat": (lambda C: C.cat([C.positive, C.real], dim=-1, lengths=[1, 2]), [[1.0, -1.0, 0.0], [-1.0, 1.0, 2.0]]),
    "stack": (lambda C: C.stack([C.positive, C.real], dim=-1), [[1.0, -1.0], [-1.0, 1.0]]),
    "MixtureSameFamilyConstraint": (lambda C: C.MixtureSameFamilyConstraint(C.positive), [1.0, -1.0]),
}


@pytest.mark.parametrize("name", CONSTRAINTS)
def test_constraints_match_torch(name):
    make, values = CONSTRAINTS[name]
    ours, theirs = make(D.constraints), make(TD.constraints)
    assert (ours.is_discrete, ours.event_dim) == (theirs.is_discrete, theirs.event_dim)
    assert repr(ours) == repr(theirs)
    assert_close(ours.check(dk.tensor(values)), theirs.check(torch.tensor(values)), name, F64)


def test_dependent_constraints_as_torch():
    for C in (D.constraints, TD.constraints):
        assert C.is_dependent(C.dependent) and not C.is_dependent(C.real)
        with pytest.raises(ValueError, match="dependent"):
            C.dependent.check(0.0)
        with pytest.raises(NotImplementedError):
            C.dependent.event_dim  # noqa: B018 - raises
        assert C.dependent(is_discrete=True, event_dim=1).event_dim == 1
    assert D.constraints.is_dependent(D.Uniform.support) and not D.constraints.is_dependent(D.Normal.support)
    assert D.Uniform.support.event_dim == 0


def _transforms(M, T):
    """The transforms to compare (torch's and deepkern's alike), with their parameters made by T."""
    t = M.transforms
    return {
        "exp": t.ExpTransform(),
        "exp.inv": t.ExpTransform().inv,
        "power": t.PowerTransform(T([0.5, 2.0, -1.5])),
        "sigmoid": t.SigmoidTransform(),
        "softplus": t.SoftplusTransform(),
        "tanh": t.TanhTransform(),
        "abs": t.AbsTransform(),
        "affine": t.AffineTransform(T([0.5, -1.0, 2.0]), T([2.0, -0.5, 1.5])),
        "affine(number)": t.AffineTransform(0.5, -3.0),
        "affine(event_dim=1)": t.AffineTransform(T([0.5, -1.0, 2.0]), T([2.0, -0.5, 1.5]), event_dim=1),
        "compose": t.ComposeTransform([t.AffineTransform(0.5, 2.0), t.TanhTransform(), t.ExpTransform()]),
        "independent(sigmoid)": t.IndependentTransform(t.SigmoidTransform(), 1),
        "softmax": t.SoftmaxTransform(),
        "identity": t.identity_transform,
    }


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(_transforms(TD, torch.tensor)))
def test_transforms_match_torch(name, dtype):
    """Forward, inverse and log|det J| values and gradients (input and parameters), and the attributes."""
    rng = _rng("transform", name)
    x = rng.uniform(0.2, 1.5, (4, 3)) * rng.choice([-1, 1], (4, 3))
    if name == "power":
        x = np.abs(x)
    with torch.no_grad():  # values in the codomain, for the inverse
        y = _numpy(_transforms(TD, torch.tensor)[name](torch.tensor(x)))

    def leaves(lib, dtype):
        made = {}

        def T(values):
            made[str(len(made))] = _tensor(lib, np.asarray(values, dtype), True)
            return made[str(len(made) - 1)]

        transform = _transforms(LIBS[lib], T)[name]
        return {
            **made,
            "x": _tensor(lib, x.astype(dtype), True),
            "y": _tensor(lib, y.astype(dtype), True),
            "t": transform,
        }

    def forward(lib, leaf):
        return leaf["t"](leaf["x"])

    def inverse(lib, leaf):
        return leaf["t"].inv(leaf["y"])

    def log_det(lib, leaf):
        return leaf["t"].log_abs_det_jacobian(leaf["x"], leaf["t"](leaf["x"]))

    for what, compute in (("forward", forward), ("inverse", inverse), ("log_abs_det_jacobian", log_det)):
        if what == "log_abs_det_jacobian" and name in ("abs", "softmax"):
            continue  # neither library defines it
        _compare_with_gradients(compute, leaves, f"{name}: {what}", dtype, rng)
    ours, theirs = (_transforms(M, lambda v, lib=lib: _tensor(lib, np.asarray(v)))[name] for lib, M in LIBS.items())
    assert (ours.bijective, ours.domain.event_dim, ours.codomain.event_dim) == (
        theirs.bijective,
        theirs.domain.event_dim,
        theirs.codomain.event_dim,
    )
    assert (repr(ours.domain), repr(ours.codomain)) == (repr(theirs.domain), repr(theirs.codomain))
    assert ours.forward_shape((5, 3)) == tuple(theirs.forward_shape((5, 3)))
    assert ours.inverse_shape((5, 3)) == tuple(theirs.inverse_shape((5, 3)))
    if name not in ("abs", "softmax"):
        assert_close(_as_tensor(dk, ours.sign), _as_tensor(torch, theirs.sign), f"{name}: sign", F64)


def _as_tensor(lib, sign):
    """A transform's sign (an int or a tensor) as a float64 tensor of ``lib``."""
    return lib.tensor(np.asarray(sign.numpy() if hasattr(sign, "numpy") else sign, dtype=np.float64))


def test_transform_equality_caching_and_inverses():
    t = D.transforms
    assert t.ExpTransform() == t.ExpTransform() and t.ExpTransform() != t.SigmoidTransform()
    assert t.ExpTransform().inv == t.ExpTransform().inv and t.ExpTransform().inv != t.ExpTransform()
    assert t.AffineTransform(1.0, 2.0) == t.AffineTransform(1.0, 2.0) != t.AffineTransform(1.0, 3.0)
    assert t.AffineTransform(dk.tensor([1.0]), 2.0) == t.AffineTransform(dk.tensor([1.0]), 2.0)
    assert t.PowerTransform(dk.tensor(2.0)) != t.PowerTransform(dk.tensor(3.0))
    assert t.ComposeTransform([t.ExpTransform()]) == t.ComposeTransform([t.ExpTransform()])
    tanh = t.TanhTransform()
    assert tanh.inv.inv is tanh and tanh.inv.inv.inv is tanh.inv
    cached = tanh.with_cache(1)  # SAC: the log_prob of an action reuses its pre-tanh value exactly
    x = dk.tensor([0.5, 20.0])
    assert cached.inv(cached(x)) is x and cached.with_cache(1) is cached
    assert tanh.inv(tanh(x)) is not x
    with pytest.raises(ValueError, match="cache_size"):
        t.ExpTransform(cache_size=2)
    with pytest.raises(NotImplementedError):
        t.Transform()(x)
    assert t.identity_transform(x) is x


NUMBER_PARAMETERS = {
    "Normal": lambda M: M.Normal(0.5, 2.0),
    "Bernoulli": lambda M: M.Bernoulli(0.3),
    "Beta": lambda M: M.Beta(2.0, 3.0),
    "Gamma": lambda M: M.Gamma(2.0, 3.0),
    "Chi2": lambda M: M.Chi2(3.0),
    "Uniform": lambda M: M.Uniform(-1.0, 2),
    "Gumbel": lambda M: M.Gumbel(0.5, 2.0),
    "HalfNormal": lambda M: M.HalfNormal(2.0),
    "LogNormal": lambda M: M.LogNormal(0.5, 2.0),
    "StudentT": lambda M: M.StudentT(3.0),
    "Geometric": lambda M: M.Geometric(logits=0.5),
    "Poisson": lambda M: M.Poisson(3),
    "Binomial": lambda M: M.Binomial(5, 0.3),
}


@pytest.mark.parametrize("name", NUMBER_PARAMETERS)
def test_number_parameters_as_torch(name):
    """Python numbers give a scalar batch of the default dtype, as in torch."""
    ours, theirs = (NUMBER_PARAMETERS[name](M) for M in LIBS.values())
    assert ours.batch_shape == tuple(theirs.batch_shape) and ours.event_shape == tuple(theirs.event_shape)
    x = ours.sample((3,))
    assert x.shape == (3,) + ours.batch_shape and str(x.dtype) == str(theirs.sample((3,)).dtype).replace("torch.", "")
    assert_close(ours.log_prob(x), theirs.log_prob(_torch(x)), f"{name}.log_prob", F32)
    assert_close(ours.mean, theirs.mean, f"{name}.mean", F32)
    assert repr(ours) == repr(theirs)


def test_sample_n_perplexity_mode_and_straight_through():
    normal = D.Normal(dk.tensor([0.0, 1.0]), 2.0)
    with pytest.warns(FutureWarning, match="sample_n"):
        assert normal.sample_n(4).shape == (4, 2)
    np.testing.assert_allclose(normal.perplexity().numpy(), normal.entropy().exp().numpy())
    for M in LIBS.values():
        with pytest.raises(NotImplementedError, match="mode"):
            M.TransformedDistribution(M.Normal(0.0, 1.0), [M.transforms.TanhTransform()]).mode  # noqa: B018
    # the straight-through estimator: one-hot samples, the gradient of the probabilities
    weights = np.array([[0.3, -1.0, 2.0]])
    grads = {}
    for lib, M in LIBS.items():
        logits = _tensor(lib, [[0.2, -0.5, 1.0]], True)
        x = M.OneHotCategoricalStraightThrough(logits=logits).rsample()
        assert sorted(_numpy(x).ravel().tolist()) == [0.0, 0.0, 1.0]
        (x * _tensor(lib, weights)).sum().backward()
        grads[lib] = logits.grad
    assert_close(grads["deepkern"], grads["torch"], "straight-through gradient", F64)


def test_exponential_family_entropy_by_bregman_divergence():
    """The Bregman form of the entropy (ExponentialFamily.entropy) equals torch's and the closed form;
    Poisson, without a carrier measure, has none, as in torch."""
    for make in (lambda M, T: M.Normal(T([0.3, -1.0]), T([1.5, 0.4])), lambda M, T: M.Exponential(T([0.3, 2.0]))):
        ours, theirs = (make(M, lambda v, lib=lib: _tensor(lib, np.asarray(v))) for lib, M in LIBS.items())
        bregman = D.ExponentialFamily.entropy(ours)
        assert_close(bregman, TD.ExponentialFamily.entropy(theirs), "Bregman entropy", F64)
        assert_close(bregman, ours.entropy(), "closed-form entropy", F64, 1e-10)
    for M in LIBS.values():
        with pytest.raises(NotImplementedError):
            M.Poisson(torch_or_dk(M, [2.0])).entropy()


def test_expand_of_a_subclass_needs_its_own_expand():
    for M in LIBS.values():

        class Shifted(M.Normal):
            def __init__(self, loc):
                super().__init__(loc, 1.0)

        with pytest.raises(NotImplementedError, match="custom .expand"):
            Shifted(torch_or_dk(M, [0.0])).expand((3, 1))

        class Plain(M.Normal):
            pass

        assert type(Plain(torch_or_dk(M, [0.0]), 1.0).expand((3, 1))) is Plain


def test_lazy_parameters_and_missing_declarations():
    probs = dk.tensor([0.2, 0.9], requires_grad=True)
    bernoulli = D.Bernoulli(probs=probs)
    assert "logits" not in bernoulli.__dict__
    logits = bernoulli.logits
    assert bernoulli.__dict__["logits"] is logits and logits.requires_grad
    later = D.Bernoulli(probs=probs)
    with dk.no_grad():  # computed with gradients enabled even when first read under no_grad, as in torch
        assert later.logits.requires_grad

    class Bare(D.Distribution):
        pass

    with pytest.warns(UserWarning, match="arg_constraints"):
        bare = Bare(validate_args=True)
    with pytest.warns(UserWarning, match="support"):
        bare._validate_sample(dk.tensor(0.0))


#: (deepkern's gather, diagonal, lgamma and digamma have no second derivative yet, so Categorical's,
#: MultivariateNormal's and the Gamma family's log_prob are differentiable once only.)
SECOND_DERIVATIVES = {
    "Normal.log_prob": (
        lambda M, m, s: M.Normal(m, s).log_prob(torch_or_dk(M, [0.5, -1.0]).double()),
        [[0.3, -1.0], [1.5, 0.7]],
    ),
    "Poisson.log_prob": (lambda M, r: M.Poisson(r).log_prob(torch_or_dk(M, [2.0, 0.0]).double()), [[0.7, 3.0]]),
    "kl Normal-Laplace": (
        lambda M, m, s: M.kl_divergence(M.Normal(m, s), M.Laplace(0.2, 1.3)),
        [[0.3, -1.0], [1.5, 0.7]],
    ),
}


@pytest.mark.parametrize("name", SECOND_DERIVATIVES)
def test_second_derivatives_match_torch(name):
    """Hessian-vector products (create_graph=True through the first gradient), as for a gradient penalty."""
    make, values = SECOND_DERIVATIVES[name]
    results = {}
    for lib, grad in {"deepkern": dk.autograd.grad, "torch": torch.autograd.grad}.items():
        leaves = [_tensor(lib, np.asarray(v, np.float64), True) for v in values]
        first = grad(make(LIBS[lib], *leaves).sum(), leaves, create_graph=True)
        second = grad(sum((g * 1.7).sum() for g in first), leaves)
        results[lib] = [*first, *second]
    for i, (got, want) in enumerate(zip(results["deepkern"], results["torch"])):
        assert_close(got, want, f"{name}: derivative {i}", F64)
