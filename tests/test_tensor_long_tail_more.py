"""More of PyTorch's tensor long tail (quantile, nanmedian, mode, aminmax, var_mean, scatter_reduce,
masked_scatter, index_put, put/take, histc, renorm, vander, cartesian_prod, combinations, block_diag,
kron, tensordot, inner, trapezoid, cov, corrcoef and the random fills): values and gradients against
PyTorch in float64 on random inputs of odd sizes, gradients also by finite differences, NaN and
zero-size rules, errors, and the random fills by their moments and reproducibility."""

from __future__ import annotations

import math

import deepkern as dk
import numpy as np
import pytest

from checks import gradcheck, raises_naming

torch = pytest.importorskip("torch")

_INDEX = np.array([[2, 0, 2, 1, 0], [1, 1, 1, 2, 0], [0, 2, 0, 0, 2], [2, 2, 1, 0, 1]])
_MASK = np.array([[[True, False, True, True]], [[False, False, True, False]], [[True, True, False, True]]])


def _with_nan(rng, shape, fraction=0.3):
    x = rng.standard_normal(shape)
    return np.where(rng.random(shape) < fraction, np.nan, x)


def _quantile_case(interpolation, q, **kw):
    def call(m, a):
        qq = m.tensor(q, dtype=m.float64) if isinstance(q, list) else q
        return m.quantile(a, qq, interpolation=interpolation, **kw)

    return (lambda r: [r.standard_normal((4, 7))], call)


def _scatter_reduce_case(reduce, include_self):
    return (
        lambda r: [r.standard_normal((4, 3)), np.round(r.standard_normal((4, 5)) * 2) / 2],
        lambda m, a, s: a.scatter_reduce(1, m.tensor(_INDEX), s, reduce, include_self=include_self),
    )


# name -> (inputs made from rng, the call on either library's module and tensors)
CASES = {
    **{
        f"quantile_{i}": _quantile_case(i, [0.1, 0.5, 0.77, 1.0], dim=1, keepdim=True)
        for i in ("linear", "lower", "higher", "midpoint", "nearest")
    },
    "quantile_all": _quantile_case("linear", 0.35),
    "quantile_all_keepdim": _quantile_case("midpoint", [0.0, 0.6], keepdim=True),
    "quantile_dim0": _quantile_case("linear", 0.8, dim=0),
    "quantile_half_ranks": (
        lambda r: [r.standard_normal(5)],
        lambda m, a: a.quantile(m.tensor([0.125, 0.375, 0.625, 0.875], dtype=m.float64), interpolation="nearest"),
    ),
    "nanquantile": (lambda r: [_with_nan(r, (5, 6))], lambda m, a: m.nanquantile(a, 0.4, dim=1)),
    "nanquantile_q": (
        lambda r: [_with_nan(r, (3, 7))],
        lambda m, a: a.nanquantile(m.tensor([0.2, 0.9], dtype=m.float64), dim=0, interpolation="midpoint"),
    ),
    "nanmedian_all": (lambda r: [_with_nan(r, (4, 5))], lambda m, a: m.nanmedian(a)),
    "nanmedian_dim": (lambda r: [_with_nan(r, (5, 6))], lambda m, a: a.nanmedian(1, keepdim=True).values),
    "mode": (lambda r: [r.integers(0, 3, (5, 4)).astype(float)], lambda m, a: m.mode(a, 0).values),
    "mode_last": (lambda r: [r.integers(-2, 2, (3, 7)).astype(float)], lambda m, a: a.mode(keepdim=True).values),
    "aminmax_all": (
        lambda r: [np.round(r.standard_normal((3, 5)))],
        lambda m, a: m.stack(list(m.aminmax(a, keepdim=True))),
    ),
    "aminmax_dim": (lambda r: [r.standard_normal((3, 5))], lambda m, a: m.stack(list(a.aminmax(dim=0)))),
    "var_mean": (
        lambda r: [r.standard_normal((3, 5))],
        lambda m, a: m.stack(list(m.var_mean(a, 1, correction=0, keepdim=True))),
    ),
    "std_mean": (lambda r: [r.standard_normal((3, 5))], lambda m, a: m.stack(list(m.std_mean(a, (0, 1), False)))),
    **{
        f"scatter_reduce_{reduce}_{include}": _scatter_reduce_case(reduce, include)
        for reduce in ("sum", "prod", "mean", "amax", "amin")
        for include in (True, False)
    },
    "scatter_reduce_amax_ties": (  # self and src tie often: the gradient is shared among them
        lambda r: [np.round(r.standard_normal((4, 3))), np.round(r.standard_normal((4, 5)))],
        lambda m, a, s: a.scatter_reduce(1, m.tensor(_INDEX), s, "amax"),
    ),
    "scatter_reduce_amin_ties": (
        lambda r: [np.round(r.standard_normal((4, 3))), np.round(r.standard_normal((4, 5)))],
        lambda m, a, s: m.scatter_reduce(a, 1, m.tensor(_INDEX), s, "amin", include_self=False),
    ),
    "scatter_reduce_prod_zeros": (
        lambda r: [
            np.array([[1.5, 0.0, 2.0], [0.0, 3.0, -1.0]]),
            np.array([[0.0, 2.0, 0.0, 4.0], [0.5, 0.0, 2.0, 0.0]]),
        ],
        lambda m, a, s: m.scatter_reduce(a, 1, m.tensor([[0, 0, 1, 2], [1, 1, 0, 0]]), s, "prod"),
    ),
    "masked_scatter": (
        lambda r: [r.standard_normal((2, 4)), r.standard_normal((4, 7))],
        lambda m, a, s: a.masked_scatter(m.tensor(_MASK), s),
    ),
    "index_put": (
        lambda r: [r.standard_normal((3, 4)), r.standard_normal(4)],
        lambda m, a, v: m.index_put(a, (m.tensor([0, 2, 0]),), v),
    ),
    "index_put_accumulate": (
        lambda r: [r.standard_normal((3, 4)), r.standard_normal(3)],
        lambda m, a, v: a.index_put((m.tensor([0, 2, 0]), m.tensor([1, -1, 1])), v, accumulate=True),
    ),
    "index_put_mask": (
        lambda r: [r.standard_normal((3, 4)), r.standard_normal(4)],
        lambda m, a, v: a.index_put((m.tensor([True, False, True]),), v),
    ),
    "put": (
        lambda r: [r.standard_normal((3, 4)), r.standard_normal(3)],
        lambda m, a, s: a.put(m.tensor([0, -2, 5]), s),
    ),
    "put_accumulate": (
        lambda r: [r.standard_normal((3, 4)), r.standard_normal(3)],
        lambda m, a, s: m.put(a, m.tensor([7, 7, 1]), s, accumulate=True),
    ),
    "take": (lambda r: [r.standard_normal((3, 4))], lambda m, a: m.take(a, m.tensor([[0, -2], [5, 5], [11, 3]]))),
    "msort": (lambda r: [r.standard_normal((5, 3))], lambda m, a: m.msort(a)),
    "renorm": (lambda r: [r.standard_normal((3, 4))], lambda m, a: m.renorm(a, 2, 1, 1.5)),
    "renorm_p3": (lambda r: [r.standard_normal((3, 4, 2))], lambda m, a: a.renorm(3, 0, 1.0)),
    "renorm_inf": (lambda r: [r.standard_normal((3, 5))], lambda m, a: a.renorm(math.inf, 0, 0.5)),
    "cartesian_prod": (
        lambda r: [r.standard_normal(3), r.standard_normal(2), r.standard_normal(1)],
        lambda m, a, b, c: m.cartesian_prod(a, b, c),
    ),
    "combinations": (lambda r: [r.standard_normal(5)], lambda m, a: m.combinations(a)),
    "combinations_replacement": (
        lambda r: [r.standard_normal(4)],
        lambda m, a: m.combinations(a, 3, with_replacement=True),
    ),
    "block_diag": (
        lambda r: [r.standard_normal((2, 3)), r.standard_normal(2), np.array(1.5), r.standard_normal((3, 1))],
        lambda m, a, b, c, d: m.block_diag(a, b, c, d),
    ),
    "kron": (lambda r: [r.standard_normal((2, 3)), r.standard_normal((2, 2, 1))], lambda m, a, b: m.kron(a, b)),
    "kron_vector": (lambda r: [r.standard_normal(3), r.standard_normal(2)], lambda m, a, b: a.kron(b)),
    "tensordot": (
        lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal((4, 2, 5))],
        lambda m, a, b: m.tensordot(a, b, dims=([0, 2], [1, 0])),
    ),
    "tensordot_int": (
        lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal((3, 4, 5))],
        lambda m, a, b: m.tensordot(a, b),
    ),
    "tensordot_broadcast": (
        lambda r: [r.standard_normal((2, 3, 1)), r.standard_normal((4, 2, 5))],
        lambda m, a, b: m.tensordot(a, b, dims=([0, 2], [1, 0])),
    ),
    "inner": (lambda r: [r.standard_normal((2, 3)), r.standard_normal((4, 3))], lambda m, a, b: m.inner(a, b)),
    "inner_scalar": (lambda r: [r.standard_normal((2, 3)), np.array(1.7)], lambda m, a, b: a.inner(b)),
    "trapezoid_x": (
        lambda r: [r.standard_normal((5, 3)), np.sort(r.standard_normal(5))],
        lambda m, y, x: m.trapezoid(y, x, dim=0),
    ),
    "trapezoid_x_full": (
        lambda r: [r.standard_normal((3, 5)), r.standard_normal((3, 5))],
        lambda m, y, x: m.trapezoid(y, x),
    ),
    "trapezoid_dx": (lambda r: [r.standard_normal((5, 3))], lambda m, y: m.trapezoid(y, dx=0.3)),
    "trapz": (lambda r: [r.standard_normal((4, 3))], lambda m, y: m.trapz(y, dim=0)),
    "cov": (lambda r: [r.standard_normal((3, 7))], lambda m, a: m.cov(a)),
    "cov_weights": (
        lambda r: [r.standard_normal((3, 5)), r.uniform(0.1, 1.0, 5)],
        lambda m, a, w: m.cov(a, correction=2, fweights=m.tensor([1, 2, 3, 1, 1]), aweights=w),
    ),
    "cov_vector": (lambda r: [r.standard_normal(6)], lambda m, a: a.cov(correction=0)),
    "corrcoef": (lambda r: [r.standard_normal((3, 6))], lambda m, a: m.corrcoef(a)),
}


def _compare(name, rng, call=None):
    arrays = CASES[name][0](rng)
    call = call or CASES[name][1]
    tensors = [dk.tensor(a, requires_grad=True) for a in arrays]
    out = call(dk, *tensors)
    refs = [torch.tensor(a, requires_grad=True) for a in arrays]
    ref = call(torch, *refs)
    assert out.shape == tuple(ref.shape) and out.dtype == np.float64, (out.shape, ref.shape, out.dtype)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    return tensors, out, refs, ref


@pytest.mark.parametrize("name", sorted(CASES))
def test_more_long_tail_matches_torch_in_values_and_gradients(name, rng):
    tensors, out, refs, ref = _compare(name, rng)
    weights = rng.standard_normal(out.shape)
    (out * dk.tensor(weights)).sum().backward()
    (ref * torch.tensor(weights)).sum().backward()
    for t, r in zip(tensors, refs):
        expected = np.zeros(r.shape) if r.grad is None else r.grad.numpy()
        got = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


FINITE_DIFFERENCE_CASES = [
    "quantile_linear",
    "quantile_midpoint",
    "nanquantile",
    "var_mean",
    "std_mean",
    "scatter_reduce_prod_True",
    "scatter_reduce_prod_False",
    "scatter_reduce_prod_zeros",
    "scatter_reduce_mean_False",
    "scatter_reduce_amax_True",
    "masked_scatter",
    "index_put_accumulate",
    "renorm",
    "renorm_p3",
    "kron",
    "tensordot_broadcast",
    "trapezoid_x",
    "cov_weights",
    "corrcoef",
]


@pytest.mark.parametrize("name", FINITE_DIFFERENCE_CASES)
def test_more_long_tail_gradients_by_finite_differences(name, rng):
    tensors = [dk.tensor(a, requires_grad=True) for a in CASES[name][0](rng)]
    gradcheck(lambda *ts: CASES[name][1](dk, *ts), *tensors)


def test_vander_matches_torch_and_its_gradient_is_exact(rng):
    """torch.vander's values (its backward fails in torch itself: an in-place cumprod), and ours
    by finite differences, also at x = 0."""
    x = np.append(rng.standard_normal(4), 0.0)
    for n, increasing in ((None, False), (3, True), (0, False), (1, True), (6, False)):
        got = dk.vander(dk.tensor(x), n, increasing)
        ref = torch.vander(torch.tensor(x), n, increasing)
        assert got.shape == tuple(ref.shape)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-13, atol=1e-14)
    ints = dk.vander(dk.tensor([1, 2, 3], dtype=dk.int32), 3)
    assert (
        ints.dtype == np.int64 and ints.tolist() == torch.vander(torch.tensor([1, 2, 3], dtype=torch.int32), 3).tolist()
    )
    gradcheck(lambda t: dk.vander(t, 4), dk.tensor(x, requires_grad=True))


def test_values_and_indices_follow_torch(rng):
    x = rng.integers(-2, 3, (4, 6)).astype(np.float64)
    for dim in (0, 1, -1):
        got, ref = dk.tensor(x).mode(dim), torch.tensor(x).mode(dim)
        np.testing.assert_array_equal(got.values.numpy(), ref.values.numpy())
        np.testing.assert_array_equal(got.indices.numpy(), ref.indices.numpy())
    ints = rng.integers(0, 4, (3, 9))
    got, ref = dk.mode(dk.tensor(ints), 1, keepdim=True), torch.mode(torch.tensor(ints), 1, keepdim=True)
    np.testing.assert_array_equal(got.values.numpy(), ref.values.numpy())
    np.testing.assert_array_equal(got.indices.numpy(), ref.indices.numpy())
    y = _with_nan(rng, (5, 7))
    got, ref = dk.tensor(y).nanmedian(1), torch.tensor(y).nanmedian(1)
    np.testing.assert_array_equal(got.values.numpy(), ref.values.numpy())
    np.testing.assert_array_equal(got.indices.numpy(), ref.indices.numpy())
    result = dk.aminmax(dk.tensor(x), dim=1)
    assert result.min.tolist() == x.min(1).tolist() and result.max.tolist() == x.max(1).tolist()
    assert dk.tensor([True, False]).aminmax() == (dk.tensor(False), dk.tensor(True))
    for scalar in (dk.tensor(4.0).mode(), dk.tensor(4.0).nanmedian(0), dk.tensor(4.0).aminmax(dim=0)):
        assert [t.item() for t in scalar] in ([4.0, 0], [4.0, 4.0])
    counts = dk.histc(dk.tensor(rng.standard_normal(200)), bins=7)
    ref = torch.histc(torch.tensor(counts.numpy() * 0 + 1), bins=7)  # same shapes/dtypes
    assert counts.dtype == np.float64 and counts.shape == tuple(ref.shape)
    for data, kw in [
        (rng.standard_normal(301), {"bins": 13}),
        (rng.standard_normal(100).astype(np.float32), {"bins": 5, "min": -1, "max": 1}),
        (np.array([1.0, 2.0, 1.0, 3.0]), {"bins": 4, "min": 0, "max": 3}),
        (np.array([1.0, 1.0]), {"bins": 4}),
        (np.array([1.0, np.nan, 1.0]), {"bins": 3, "min": 0, "max": 2}),
        (np.zeros(0), {"bins": 4}),
    ]:
        np.testing.assert_array_equal(dk.tensor(data).histc(**kw).numpy(), torch.tensor(data).histc(**kw).numpy())
    assert not dk.histc(dk.tensor([1.0, 2.0], requires_grad=True), 3).requires_grad


def test_nan_and_empty_rules_follow_torch():
    nan = math.nan
    rows = np.array([[1.0, 5.0, 3.0, 2.0], [4.0, nan, 0.0, 7.0], [nan, nan, nan, nan]])
    for fn in ("quantile", "nanquantile"):
        for dim in (None, 1):
            got = getattr(dk.tensor(rows), fn)(0.4, dim=dim).numpy()
            ref = getattr(torch.tensor(rows), fn)(0.4, dim=dim).numpy()
            np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(dk.tensor(rows).nanmedian(1).values.numpy(), [2.0, 4.0, nan])
    assert dk.tensor(rows).nanmedian().item() == torch.tensor(rows).nanmedian().item()
    assert math.isnan(dk.tensor(np.zeros(0)).nanmedian().item())
    amax = dk.tensor([1.0, 2.0, 3.0]).scatter_reduce(0, dk.tensor([0, 0]), dk.tensor([4.0, nan]), "amax")
    assert math.isnan(amax[0].item()) and amax[1:].tolist() == [2.0, 3.0]
    ints = dk.tensor([1, 2, 3]).scatter_reduce(0, dk.tensor([0, 0]), dk.tensor([4, 5]), "mean")
    assert ints.tolist() == [3, 2, 3] and ints.dtype == np.int64
    ints = dk.tensor([1, 2, 3]).scatter_reduce(0, dk.tensor([0, 0]), dk.tensor([4, 5]), "mean", include_self=False)
    assert ints.tolist() == [4, 2, 3]
    # zero sizes where torch allows them
    assert dk.zeros(0, 2).mode(1).values.shape == (0,)
    assert dk.aminmax(dk.zeros(2, 0), dim=0).min.shape == (0,)
    assert dk.combinations(dk.tensor([1.0, 2.0, 3.0]), r=0).shape == (0,)
    assert dk.combinations(dk.tensor([1.0, 2.0, 3.0]), r=4).shape == (0, 4)
    assert dk.block_diag().shape == (1, 0)
    assert dk.trapezoid(dk.zeros(2, 0)).tolist() == [0.0, 0.0]
    assert dk.vander(dk.zeros(0), 3).shape == (0, 3)
    assert dk.take(dk.zeros(0), dk.tensor(np.zeros(0, dtype=np.int64))).shape == (0,)
    assert dk.tensor([1.0, 2.0]).masked_scatter(dk.tensor([False, False]), dk.zeros(0)).tolist() == [1.0, 2.0]
    assert dk.zeros(3).index_put((dk.tensor(np.zeros(0, dtype=np.int64)),), dk.zeros(0)).tolist() == [0.0] * 3
    assert dk.tensordot(dk.ones(2, 0), dk.ones(0, 3), 1).tolist() == [[0.0] * 3] * 2
    with pytest.warns(UserWarning, match="degrees of freedom"):
        assert np.isnan(dk.cov(dk.ones(2, 1)).numpy()).all()
    assert math.isnan(dk.corrcoef(dk.ones(4)).item())


def test_in_place_forms_write_the_tensor_and_record_the_change(rng):
    x, src = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))

    def run(lib):
        leaf, source = lib.tensor(x, requires_grad=True), lib.tensor(src, requires_grad=True)
        y = leaf * 1.0
        assert y.masked_scatter_(lib.tensor([[True], [False], [True]]).expand(3, 5), source * 2) is y
        y.index_put_((lib.tensor([0, 2]), lib.tensor([4, 4])), source[0, :2], accumulate=True)
        y.put_(lib.tensor([1, 14]), source[1, :2] * 3)
        y.renorm_(2, 0, 1.0)
        y.scatter_reduce_(1, lib.tensor(_INDEX[:3]), source, "amax", include_self=False)
        (y * y).sum().backward()
        return y.detach().numpy(), leaf.grad.numpy(), source.grad.numpy()

    for got, ref in zip(run(dk), run(torch)):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    with raises_naming(RuntimeError, "put_", "leaf"):
        dk.zeros(3, requires_grad=True).put_(dk.tensor([0]), dk.ones(1))


def test_bad_arguments_raise_naming_them():
    x = dk.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=dk.float64)
    q64 = dk.tensor([0.5], dtype=dk.float64)
    cases = [
        (RuntimeError, ["quantile", r"q must be in the range \[0, 1\]", "1.5"], lambda: x.quantile(1.5)),
        (RuntimeError, ["quantile", "range", "nan"], lambda: x.quantile(math.nan)),
        (RuntimeError, ["nanquantile", "q values", "range"], lambda: x.nanquantile(q64 - 1)),
        (RuntimeError, ["quantile", "q tensor", "same dtype"], lambda: x.quantile(dk.tensor([0.5]))),
        (RuntimeError, ["quantile", "q must be a scalar or 1D"], lambda: x.quantile(q64.reshape(1, 1))),
        (RuntimeError, ["quantile", "interpolation", "foo"], lambda: x.quantile(0.5, interpolation="foo")),
        (RuntimeError, ["quantile", "float or double"], lambda: dk.tensor([1, 2]).quantile(0.5)),
        (RuntimeError, ["quantile", "non-empty"], lambda: dk.zeros(2, 0).quantile(0.5, dim=0)),
        (TypeError, ["quantile", "q"], lambda: x.quantile("half")),
        (IndexError, ["quantile", "dim"], lambda: x.quantile(0.5, dim=2)),
        (IndexError, ["nanmedian", "non-zero size"], lambda: dk.zeros(2, 0).nanmedian(1)),
        (IndexError, ["mode", "non-zero size"], lambda: dk.zeros(2, 0).mode(1)),
        (RuntimeError, ["aminmax", "empty"], lambda: dk.zeros(0).aminmax()),
        (IndexError, ["aminmax", "non-zero size"], lambda: dk.zeros(2, 0).aminmax(dim=1)),
        (RuntimeError, ["std_mean", "floating"], lambda: dk.std_mean(dk.tensor([1, 2]))),
        (RuntimeError, ["var_mean", "floating"], lambda: dk.var_mean(dk.tensor([1, 2]))),
        (
            RuntimeError,
            ["reduce", "sum, prod, mean, amax or amin", "add"],
            lambda: x.scatter_reduce(0, dk.tensor([[0]]), x, "add"),
        ),
        (RuntimeError, ["scatter_reduce", "dtype"], lambda: x.scatter_reduce(0, dk.tensor([[0]]), x.float(), "sum")),
        (IndexError, ["scatter_reduce", "out of bounds"], lambda: x.scatter_reduce(0, dk.tensor([[2]]), x, "sum")),
        (TypeError, ["scatter_reduce", "src"], lambda: x.scatter_reduce(0, dk.tensor([[0]]), 1.0, "sum")),
        (RuntimeError, ["masked_scatter", "boolean"], lambda: x.masked_scatter(dk.tensor([1, 0, 1]), x)),
        (
            RuntimeError,
            ["masked_scatter", "Number of elements of source"],
            lambda: x.masked_scatter(dk.tensor([True, False, True]), dk.ones(3, dtype=dk.float64)),
        ),
        (RuntimeError, ["masked_scatter", "same dtypes"], lambda: x.masked_scatter(dk.tensor([True]), dk.ones(6))),
        (
            RuntimeError,
            ["masked_scatter_", "broadcast"],
            lambda: dk.zeros(3).masked_scatter_(dk.tensor([[True, False, True]] * 2), dk.ones(6)),
        ),
        (RuntimeError, ["Index put", "dtypes match"], lambda: x.index_put((dk.tensor([0]),), dk.ones(3))),
        (IndexError, ["index 5", "out of bounds", "dimension 0"], lambda: x.index_put((dk.tensor([5]),), x[0])),
        (IndexError, ["too many indices"], lambda: dk.zeros(3).index_put((dk.tensor([0]), dk.tensor([0])), dk.ones(1))),
        (
            RuntimeError,
            ["shape mismatch", r"\[2\]", r"\[3\]"],
            lambda: x.index_put((dk.tensor([0, 1]), dk.tensor([0, 1])), dk.ones(3, dtype=dk.float64)),
        ),
        (IndexError, ["shape of the mask"], lambda: dk.zeros(3).index_put((dk.tensor([True, False]),), dk.ones(1))),
        (IndexError, ["long, int, byte or bool"], lambda: dk.zeros(3).index_put((dk.tensor([0.0]),), dk.ones(1))),
        (
            TypeError,
            ["index_put", "indices", "tuple of Tensors"],
            lambda: dk.zeros(3).index_put(dk.tensor([0]), dk.ones(1)),
        ),
        (TypeError, ["index_put", "element 0", "NoneType"], lambda: dk.zeros(3).index_put((None,), dk.ones(1))),
        (IndexError, ["put_", "same number of elements"], lambda: x.put(dk.tensor([0, 1]), x[0])),
        (RuntimeError, ["put_", "same dtype"], lambda: x.put(dk.tensor([0]), dk.ones(1))),
        (RuntimeError, ["put_", "long tensor"], lambda: x.put_(dk.tensor([0.0]), x[0, :1])),
        (IndexError, ["out of range", "index 6", "6 elements"], lambda: x.take(dk.tensor([6]))),
        (IndexError, ["out of range", "index -7"], lambda: x.take(dk.tensor([-7]))),
        (RuntimeError, ["take", "long tensor"], lambda: x.take(dk.tensor([1], dtype=dk.int32))),
        (RuntimeError, ["bins must be > 0", "-1"], lambda: x.histc(-1)),
        (RuntimeError, ["histc", "max must be larger than min"], lambda: x.histc(4, min=3, max=1)),
        (RuntimeError, ["histc", "not finite"], lambda: dk.tensor([1.0, math.nan]).histc(3)),
        (RuntimeError, ["histc", "not finite"], lambda: x.histc(3, min=0, max=math.inf)),
        (NotImplementedError, ["histogram", "int64"], lambda: dk.tensor([1, 2]).histc(3)),
        (RuntimeError, ["renorm", "at least 2 dimensions"], lambda: dk.ones(3).renorm(2, 0, 1)),
        (RuntimeError, ["renorm", "non-positive-norm"], lambda: x.renorm(0, 0, 1)),
        (RuntimeError, ["renorm", "maxnorm", "-1"], lambda: x.renorm(2, 0, -1)),
        (RuntimeError, ["x must be a one-dimensional tensor"], lambda: dk.vander(x)),
        (RuntimeError, ["N must be non-negative"], lambda: dk.vander(dk.ones(2), -1)),
        (RuntimeError, ["meshgrid", "same dtype"], lambda: dk.cartesian_prod(dk.tensor([1, 2]), dk.ones(2))),
        (RuntimeError, ["Expect a 1D vector"], lambda: dk.cartesian_prod(x, x)),
        (RuntimeError, ["Expect a non-negative number", "-1"], lambda: dk.combinations(dk.ones(3), r=-1)),
        (RuntimeError, ["Expect a 1D vector"], lambda: dk.combinations(x)),
        (RuntimeError, ["block_diag", "2 or fewer dimensions", "Input 1"], lambda: dk.block_diag(x, dk.ones(1, 1, 1))),
        (RuntimeError, ["tensordot", "dims >= 0", "-1"], lambda: dk.tensordot(x, x, -1)),
        (RuntimeError, ["tensordot", "dims < ndim", "3"], lambda: dk.tensordot(x, x, 3)),
        (
            RuntimeError,
            ["contracted dimensions need to match", "size 3 in dim 1", "size 2 in dim 0"],
            lambda: dk.tensordot(x, x, 1),
        ),
        (RuntimeError, ["both inputs should have same dtype"], lambda: dk.tensordot(x, dk.ones(3, 2), 1)),
        (RuntimeError, ["same length"], lambda: dk.tensordot(x, x, ([0, 1], [0]))),
        (
            RuntimeError,
            ["inner", "last dimension must match", r"\[2, 3\]", r"\[4\]"],
            lambda: dk.inner(x, dk.ones(4, dtype=dk.float64)),
        ),
        (RuntimeError, ["trapezoid", "one `x` value for each sample point"], lambda: dk.trapezoid(x, dk.ones(2))),
        (TypeError, ["trapezoid", "not both"], lambda: dk.trapezoid(x, x, dx=2)),
        (RuntimeError, ["cov", "two or fewer dimensions", "3"], lambda: dk.cov(dk.ones(2, 2, 2))),
        (RuntimeError, ["cov", "fweights", "integral dtype"], lambda: x.cov(fweights=dk.ones(3))),
        (RuntimeError, ["cov", "aweights", "floating point dtype"], lambda: x.cov(aweights=dk.tensor([1, 1, 1]))),
        (RuntimeError, ["cov", "fweights cannot be negative"], lambda: x.cov(fweights=dk.tensor([1, -1, 1]))),
        (RuntimeError, ["cov", "fweights", "same numel", "2 != 3"], lambda: x.cov(fweights=dk.tensor([1, 1]))),
        (RuntimeError, ["cov", "weights sum to zero"], lambda: x.cov(fweights=dk.tensor([0, 0, 0]))),
        (RuntimeError, ["corrcoef", "two or fewer dimensions"], lambda: dk.corrcoef(dk.ones(2, 2, 2))),
        (TypeError, ["kron", "other"], lambda: x.kron(2.0)),
    ]
    for exc, needles, make in cases:
        with raises_naming(exc, *needles):
            make()
    # and torch refuses the same calls (the same exception class where it is a Python one)
    tx = torch.tensor(x.numpy())
    with pytest.raises(RuntimeError):
        tx.quantile(1.5)
    with pytest.raises(IndexError):
        tx.take(torch.tensor([6]))


def _moments(t: dk.Tensor) -> tuple:
    a = t.numpy().astype(np.float64)
    return a.mean(), a.var()


N_DRAWS = 40000


def test_random_fills_have_their_distributions():
    dk.manual_seed(11)
    mean, var = _moments(dk.empty(N_DRAWS, dtype=dk.float64).exponential_(2.5))
    assert abs(mean - 0.4) < 0.01 and abs(var - 0.16) < 0.01
    g = dk.empty(N_DRAWS).geometric_(0.3)
    mean, var = _moments(g)
    assert g.dtype == np.float32 and g.numpy().min() >= 1 and np.all(g.numpy() == np.round(g.numpy()))
    assert abs(mean - 1 / 0.3) < 0.05 and abs(var - 0.7 / 0.09) < 0.4
    gi = dk.zeros(N_DRAWS, dtype=dk.int64).geometric_(0.5)
    assert gi.dtype == np.int64 and abs(_moments(gi)[0] - 2.0) < 0.03
    c = dk.empty(N_DRAWS, dtype=dk.float64).cauchy_(1.5, 0.5).numpy()
    quartiles = np.percentile(c, [25, 50, 75])  # a Cauchy has no moments: its quartiles median -/+ sigma
    np.testing.assert_allclose(quartiles, [1.0, 1.5, 2.0], atol=0.03)
    ln = dk.empty(N_DRAWS, dtype=dk.float64).log_normal_(0.2, 0.5).numpy()
    assert ln.min() > 0 and abs(np.log(ln).mean() - 0.2) < 0.01 and abs(np.log(ln).std() - 0.5) < 0.01
    r = dk.empty(N_DRAWS).random_(3, 9).numpy()
    assert set(np.unique(r)) == set(range(3, 9))
    assert abs(r.mean() - 5.5) < 0.03 and abs(r.var() - 35 / 12) < 0.06
    assert set(np.unique(dk.zeros(2000, dtype=dk.int64).random_(4).numpy())) == {0, 1, 2, 3}
    assert set(np.unique(dk.zeros(2000, dtype=dk.bool).random_().numpy())) == {False, True}
    big = dk.empty(N_DRAWS).random_().numpy()
    assert big.min() >= 0 and big.max() <= 2**24 and abs(big.mean() / 2**23 - 1) < 0.02
    assert dk.empty(N_DRAWS, dtype=dk.float64).random_().numpy().max() > 2**50
    top = (
        dk.zeros(2000, dtype=dk.uint8).random_(from_=250) if False else dk.zeros(2000, dtype=dk.uint8).random_(250, 256)
    )
    assert set(np.unique(top.numpy())) == set(range(250, 256))
    kw = dk.empty(2000).random_(**{"from": 7}).numpy()
    assert kw.min() >= 7 and kw.max() > 2**20
    assert set(np.unique(dk.empty(2000).random_(2, to=4).numpy())) == {2, 3}


@pytest.mark.parametrize(
    "fill",
    [
        lambda t, **kw: t.random_(0, 1000, **kw),
        lambda t, **kw: t.exponential_(1.5, **kw),
        lambda t, **kw: t.geometric_(0.2, **kw),
        lambda t, **kw: t.cauchy_(**kw),
        lambda t, **kw: t.log_normal_(**kw),
    ],
)
def test_random_fills_are_reproducible_and_write_in_place(fill):
    dk.manual_seed(5)
    t = dk.empty(7, 3)
    assert fill(t) is t and t.dtype == np.float32
    first = t.numpy().copy()
    dk.manual_seed(5)
    np.testing.assert_array_equal(fill(dk.empty(7, 3)).numpy(), first)
    assert not np.array_equal(fill(dk.empty(7, 3)).numpy(), first)  # the generator moved on
    gen = np.random.default_rng(3)
    a = fill(dk.empty(5), generator=gen).numpy()
    np.testing.assert_array_equal(fill(dk.empty(5), generator=np.random.default_rng(3)).numpy(), a)
    base = dk.zeros(4, 3)
    fill(base[1])  # a view: written through into its base
    assert np.any(base.numpy()[1] != 0) and not np.any(base.numpy()[[0, 2, 3]])
    with raises_naming(RuntimeError, "leaf"):
        fill(dk.zeros(3, requires_grad=True))


def test_random_fills_refuse_bad_arguments():
    t = dk.empty(3)
    cases = [
        (["exponential_", "lambda > 0.0", "lambda=0"], lambda: t.exponential_(0)),
        (["geometric_", r"p to be in \(0, 1\)", "p=1"], lambda: t.geometric_(1)),
        (["geometric_", "p=0"], lambda: t.geometric_(0)),
        (["cauchy_", "sigma > 0.0", "sigma=0"], lambda: t.cauchy_(0, 0)),
        (["log_normal_", "std > 0.0", "std=0"], lambda: t.log_normal_(1, 0)),
        (["random_", "'from' to be less than 'to'", "from=5 >= to=5"], lambda: t.random_(5, 5)),
        (["random_", "from=0 >= to=-1"], lambda: t.random_(-1)),
        (["random_", "from is out of bounds", "uint8"], lambda: dk.zeros(3, dtype=dk.uint8).random_(-1, 5)),
        (["random_", "to - 1 is out of bounds", "int8"], lambda: dk.zeros(3, dtype=dk.int8).random_(0, 1000)),
        (["exponential_", "floating"], lambda: dk.zeros(3, dtype=dk.int64).exponential_()),
        (["cauchy_", "floating"], lambda: dk.zeros(3, dtype=dk.int64).cauchy_()),
    ]
    for needles, make in cases:
        with raises_naming(RuntimeError, *needles):
            make()
    with raises_naming(TypeError, "random_", "from"):
        t.random_(1.5, 3)
    with raises_naming(TypeError, "random_", "unexpected|bogus"):
        t.random_(bogus=3)
